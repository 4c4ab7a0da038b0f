"""The doorbell's Redis consumer: a send from this process is fetched at once, not at the consumer's next poll, and
an idle consumer still idles (no busy loop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.runtime.queue import QUEUE, Doorbell
from tests.services import REDIS, fresh_redis_namespace

IDLE_MS = 2_000  # long, so that a prompt fetch and a poll cannot be mistaken for each other


@pytest.fixture
def doorbell() -> Iterator[Doorbell]:
    with fresh_redis_namespace() as namespace:
        bell = Doorbell(lambda run_id, key, attempt: None, redis_url=REDIS, namespace=namespace)
        yield bell
        bell.close()


def next_in_thread(consumer: Any) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(next(consumer)), daemon=True)
    thread.start()
    return thread, got


def test_a_send_from_this_process_wakes_its_idle_consumer(doorbell: Doorbell) -> None:
    # Given an idle consumer (its queue empty) waiting up to 2 s
    consumer = doorbell.broker.consume(QUEUE, prefetch=4, timeout=IDLE_MS)
    thread, got = next_in_thread(consumer)
    time.sleep(0.2)
    assert thread.is_alive()  # idling, not spinning back with nothing

    # When this process rings a step's doorbell
    started = time.monotonic()
    doorbell.ring("01RUN", "step", 1)
    thread.join(IDLE_MS / 1000 * 2)

    # Then the consumer stops idling at once; its next fetch has the message
    assert time.monotonic() - started < IDLE_MS / 1000 / 2
    message = got[0] or next(consumer)
    assert message is not None and message.args == ("01RUN", "step", 1)
    consumer.close()


def test_an_idle_consumer_waits_its_timeout_between_fetches(doorbell: Doorbell) -> None:
    # Given an empty queue and a consumer with a short idle timeout
    consumer = doorbell.broker.consume(QUEUE, prefetch=4, timeout=300)

    # When it is asked for a message and nothing is sent
    started = time.monotonic()
    assert next(consumer) is None

    # Then it has idled about the timeout (not returned at once to poll again)
    assert 0.25 <= time.monotonic() - started < 3.0
    consumer.close()
