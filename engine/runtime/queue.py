"""The doorbell: a Dramatiq actor whose message says "step K of run R, attempt A, may be ready".

Messages carry no data and decide nothing: a worker claims the step in the database before running it, so a
lost, duplicated or redelivered message never loses or doubles a result. Redis when ``IONFLUX_REDIS_URL`` is set;
otherwise Dramatiq's in-process StubBroker, with the same actor and the same worker code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications

log = logging.getLogger("ionflux.queue")
QUEUE = "steps"
ACTOR = "ionflux_step"

Handler = Callable[[str, str, int], None]


class _Bell:
    """Rung by this process's own sends: its idle Redis consumers fetch at once instead of at their next poll."""

    def __init__(self) -> None:
        self._rung = threading.Condition()
        self.count = 0

    def ring(self) -> None:
        with self._rung:
            self.count += 1
            self._rung.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Until a ring after ``seen`` (the count read before the fetch that found nothing), or ``timeout``."""
        with self._rung:
            if self.count == seen:
                self._rung.wait(timeout)


class _PromptConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer polls: with nothing to fetch it sleeps, backing off up to the worker's idle timeout
    (20 ms), so a step started by a process that runs workers itself waited ~10 ms on average for its first hop
    through Redis. This one asks Redis without backing off and then idles on the process's bell instead: a send from
    this process is fetched at once (by this process's consumer, usually; any may take it), one from another
    process within the idle timeout as before, and an idle worker still asks Redis about once per timeout."""

    def __init__(self, broker: PromptRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        # a timeout of 0: the fetch itself never sleeps (the idling is __next__'s, on the bell)
        super().__init__(broker, queue_name, prefetch, 0)  # type: ignore[no-untyped-call]
        self.bell = broker.bell
        self.idle_seconds = timeout / 1000

    def __next__(self) -> Any:
        seen = self.bell.count  # read before fetching: a send during the fetch is not slept through
        message = super().__next__()  # type: ignore[no-untyped-call]
        if message is None:
            self.bell.wait(seen, self.idle_seconds)
        return message


class PromptRedisBroker(RedisBroker):
    """A RedisBroker whose consumers wake when this process sends (``_PromptConsumer``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.bell = _Bell()

    @property
    def consumer_class(self) -> type[_PromptConsumer]:
        return _PromptConsumer


class Doorbell:
    def __init__(self, handler: Handler, *, redis_url: str | None = None, namespace: str = "ionflux") -> None:
        # No TimeLimit middleware: step timeouts are the flow's (durable timers), not the queue's. Retries stay,
        # for infrastructure errors (the database away for a moment): the step is claimed again after a backoff.
        middleware = [AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), Retries(max_retries=200)]
        self.broker: dramatiq.Broker
        if redis_url:
            # heartbeat_timeout: how soon Redis hands a dead consumer's unacked messages to others (the reconciler
            # covers the same case from the database side)
            self.broker = PromptRedisBroker(
                url=redis_url, namespace=namespace, middleware=middleware, heartbeat_timeout=15000
            )
        else:
            self.broker = StubBroker(middleware=middleware)
        self.embedded = not redis_url
        self.actor = dramatiq.actor(
            broker=self.broker, actor_name=ACTOR, queue_name=QUEUE, min_backoff=200, max_backoff=10_000
        )(handler)
        self.broker.declare_queue(QUEUE)

    def ring(self, run_id: str, key: str, attempt: int) -> None:
        try:
            self.actor.send(run_id, key, attempt)
            if isinstance(self.broker, PromptRedisBroker):
                self.broker.bell.ring()
        except Exception as e:  # the step is recorded as queued; the reconciler rings again later
            log.warning("could not enqueue %s/%s#%d (%s); the reconciler will retry", run_id, key, attempt, e)

    def start_worker(self, threads: int) -> dramatiq.Worker:
        worker = dramatiq.Worker(self.broker, queues={QUEUE}, worker_threads=threads, worker_timeout=20)
        worker.start()
        return worker

    def close(self) -> None:
        self.broker.close()
        if isinstance(self.broker, RedisBroker):
            # RedisBroker.close() is a no-op in Dramatiq 1.x: without this its pooled sockets stay open until the
            # garbage collector finds them (and a ResourceWarning surfaces in whatever code runs then)
            self.broker.client.close()
            self.broker.client.connection_pool.disconnect()
