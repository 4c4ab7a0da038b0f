"""The event bus: ``event.publish`` writes to it, event triggers and live run views read from it.

Two implementations with one contract. ``LocalBus`` is in-process (the embedded install: ``ionflux up`` is one
process). ``NatsBus`` talks to NATS: a subject captured by a JetStream stream is published with JetStream (the
server acknowledges it, returns its stream sequence, and drops a duplicate ``Nats-Msg-Id`` within the stream's
window, so a step retried after a crash does not publish twice); any other subject gets core NATS, flushed so
the server has it before the step succeeds. Which stream captures a subject is asked of the server (and
remembered for a few seconds), so a new stream takes effect without a restart.

Subjects follow NATS: dot-separated tokens; subscribers may use ``*`` (one token) and ``>`` (the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

log = logging.getLogger("ionflux.bus")
T = TypeVar("T")

#: how long NatsBus trusts what it learnt about which stream captures a subject
STREAM_CACHE_SECONDS = 10.0
#: how many recent message ids the in-process bus remembers to drop duplicates (JetStream keeps a time window)
DEDUP_WINDOW = 10_000


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    data: bytes
    sequence: int | None = None  # the stream sequence (JetStream) or the in-process bus's counter
    msg_id: str | None = None  # the publisher's de-duplication id, when it gave one
    stream: str | None = None


Handler = Callable[[Message], None]


class BusError(Exception):
    """The bus could not take the message (unreachable, timed out); worth another attempt."""


class Bus(Protocol):
    def publish(self, subject: str, data: bytes, *, msg_id: str | None = None, durable: bool = True) -> int | None:
        """Publish; the stream sequence when the bus assigns one. ``durable=False``: fire and forget (live views)."""
        ...

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler`` for each message on a matching subject; returns the function that unsubscribes."""
        ...

    def consume(self, pattern: str, name: str, handler: Handler, since: datetime | None = None) -> Callable[[], None]:
        """Like ``subscribe``, durably: messages published while nobody consumes are delivered later (JetStream),
        each to one of the consumers sharing ``name``, and redelivered until ``handler`` returns. A consumer made
        now starts with the messages published from ``since`` on (its trigger's arming), not the stream's past."""
        ...

    def forget(self, pattern: str, name: str) -> None:
        """Delete the durable consumer ``name`` of ``pattern`` (its trigger is disarmed: what is published from now
        on is not kept for it). Nothing happens if there is none."""
        ...

    def close(self) -> None: ...


def covers(outer: str, inner: str) -> bool:
    """Whether every subject ``inner`` matches is matched by ``outer`` (both may have wildcards)."""
    want, got = outer.split("."), inner.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or got[i] == ">" or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` is one or more tokens."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


class LocalBus:
    """In-process pub/sub. Handlers run in the publisher's thread, in subscription order; one that raises is
    logged and does not stop the others (a broken trigger must not fail the step that published)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[tuple[int, str, Handler]] = []
        self._next_sub = 0
        self._sequence = 0
        self._seen: OrderedDict[str, int] = OrderedDict()

    def publish(self, subject: str, data: bytes, *, msg_id: str | None = None, durable: bool = True) -> int | None:
        with self._lock:
            if msg_id is not None and msg_id in self._seen:
                return self._seen[msg_id]  # a retried publish: already delivered once
            self._sequence += 1
            sequence = self._sequence
            if msg_id is not None:
                self._seen[msg_id] = sequence
                if len(self._seen) > DEDUP_WINDOW:
                    self._seen.popitem(last=False)
            handlers = [h for _, pattern, h in self._subs if matches(pattern, subject)]
        message = Message(subject, data, sequence, msg_id)
        for handler in handlers:
            try:
                handler(message)
            except Exception:
                log.exception("a subscriber to %s failed on a message", subject)
        return sequence if durable else None

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        with self._lock:
            self._next_sub += 1
            sub_id = self._next_sub
            self._subs.append((sub_id, pattern, handler))

        def unsubscribe() -> None:
            with self._lock:
                self._subs = [s for s in self._subs if s[0] != sub_id]

        return unsubscribe

    def consume(self, pattern: str, name: str, handler: Handler, since: datetime | None = None) -> Callable[[], None]:
        # in-process, nothing can be published while this process is down: a subscription is as durable
        return self.subscribe(pattern, handler)

    def forget(self, pattern: str, name: str) -> None:
        return None  # nothing outlives a subscription here

    def close(self) -> None:
        with self._lock:
            self._subs.clear()


class NatsBus:
    """NATS through nats-py, which is asyncio: one event-loop thread owns the connection, and the synchronous
    callers (worker threads) hand it coroutines. Connects on first use and reconnects by itself."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, name: str = "ionflux", stream: str = "IONFLUX_EVENTS"
    ) -> None:
        self.url = url
        self.stream = stream  # the stream IONFLUX creates for event-trigger subjects no other stream captures
        self.timeout = timeout
        self._name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ionflux-nats", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._connect_lock = threading.Lock()
        self._streams: dict[str, tuple[str | None, float]] = {}  # subject -> (stream, valid until); loop thread only

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout or self.timeout)
        except FutureTimeout:
            future.cancel()
            raise BusError(f"NATS at {self.url} did not answer within {timeout or self.timeout:g}s") from None

    def _connection(self) -> Any:
        with self._connect_lock:
            if self._nc is None or self._nc.is_closed:
                import nats

                async def connect() -> Any:
                    return await nats.connect(
                        self.url,
                        name=self._name,
                        connect_timeout=self.timeout,
                        max_reconnect_attempts=-1,  # keep trying: a NATS restart must not need an IONFLUX restart
                        allow_reconnect=True,
                    )

                try:
                    self._nc = self._call(connect(), self.timeout * 2)
                except BusError:
                    raise
                except Exception as e:  # nats raises its own errors and OSError subclasses
                    raise BusError(f"cannot connect to NATS at {self.url}: {type(e).__name__}: {e}") from None
            return self._nc

    def publish(self, subject: str, data: bytes, *, msg_id: str | None = None, durable: bool = True) -> int | None:
        nc = self._connection()
        if not durable:  # a live view's message (a token, a log line): sent in order, not waited for
            asyncio.run_coroutine_threadsafe(nc.publish(subject, data), self._loop)
            return None

        async def send() -> int | None:
            stream = await self._stream_for(nc, subject)
            if stream is not None:
                headers = {"Nats-Msg-Id": msg_id} if msg_id else None
                ack = await nc.jetstream().publish(subject, data, timeout=self.timeout, stream=stream, headers=headers)
                return int(ack.seq)
            await nc.publish(subject, data)
            await nc.flush(timeout=self.timeout)
            return None

        try:
            return self._call(send())
        except BusError:
            raise
        except Exception as e:
            raise BusError(f"NATS at {self.url} refused {subject!r}: {type(e).__name__}: {e}") from None

    async def _stream_for(self, nc: Any, subject: str) -> str | None:
        """The JetStream stream capturing ``subject``, if any (asked once per STREAM_CACHE_SECONDS). Asking
        first, rather than trying a JetStream publish, matters: a core subscriber on the subject would take the
        publish as a request it never answers, and the step would wait for the timeout."""
        now = time.monotonic()
        cached = self._streams.get(subject)
        if cached is not None and cached[1] > now:
            return cached[0]
        from nats.js.errors import NotFoundError

        try:
            name: str | None = await nc.jetstream().find_stream_name_by_subject(subject)
        except NotFoundError:
            name = None
        except Exception:  # JetStream not enabled on this server: every subject is plain NATS
            name = None
        self._streams[subject] = (name, now + STREAM_CACHE_SECONDS)
        return name

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        nc = self._connection()

        async def deliver(msg: Any) -> None:  # a core subscription: it sees every message, with no sequence
            try:
                handler(Message(msg.subject, msg.data))
            except Exception:
                log.exception("a subscriber to %s failed on a message", msg.subject)

        async def sub() -> Any:
            return await nc.subscribe(pattern, cb=deliver)

        subscription = self._call(sub())

        def unsubscribe() -> None:
            try:
                self._call(subscription.unsubscribe())
            except Exception:
                log.debug("unsubscribing from %s failed (connection closed?)", pattern)

        return unsubscribe

    def consume(self, pattern: str, name: str, handler: Handler, since: datetime | None = None) -> Callable[[], None]:
        """A durable pull consumer ``name`` on the stream capturing ``pattern`` (created, or extended with the
        pattern, as ``self.stream``, when no stream captures it); ``handler`` runs in a worker thread and the
        message is acknowledged after it returns (an exception: redelivered after ``ack_wait``). A consumer made
        here starts at ``since`` (else at the stream's start); one that exists goes on where it was."""
        nc = self._connection()
        stop = asyncio.Event()

        async def setup() -> Any:
            from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

            js = nc.jetstream()
            stream = await self._ensure_stream(js, pattern)
            config = ConsumerConfig(
                durable_name=name,
                filter_subject=pattern,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL if since is None else DeliverPolicy.BY_START_TIME,
                opt_start_time=since,
                ack_wait=30,
            )
            return await js.pull_subscribe(pattern, durable=name, stream=stream, config=config)

        subscription = self._call(setup(), self.timeout * 2)

        async def pump() -> None:
            try:
                await consume_until_stopped()
            finally:
                with contextlib.suppress(Exception):  # the connection may be closing already
                    await subscription.unsubscribe()

        async def consume_until_stopped() -> None:
            from nats.errors import TimeoutError as NatsTimeout

            while not stop.is_set():
                try:
                    batch = await subscription.fetch(32, timeout=1)
                except NatsTimeout:
                    continue
                except Exception as e:  # the connection is reconnecting: try again shortly
                    log.debug("fetching from %s: %s", name, e)
                    await asyncio.sleep(0.5)
                    continue
                for msg in batch:
                    meta = msg.metadata
                    headers = msg.headers or {}
                    message = Message(
                        msg.subject, msg.data, meta.sequence.stream, headers.get("Nats-Msg-Id"), meta.stream
                    )
                    try:
                        await asyncio.get_running_loop().run_in_executor(None, handler, message)
                    except Exception:
                        log.exception("the consumer %s failed on a message of %s; it comes back", name, msg.subject)
                        await msg.nak(delay=1)
                        continue
                    await msg.ack()

        task = asyncio.run_coroutine_threadsafe(pump(), self._loop)

        def unsubscribe() -> None:
            self._loop.call_soon_threadsafe(stop.set)
            try:
                task.result(timeout=self.timeout)
            except Exception:
                task.cancel()

        return unsubscribe

    def forget(self, pattern: str, name: str) -> None:
        nc = self._connection()

        async def delete() -> None:
            from nats.js.errors import NotFoundError

            js = nc.jetstream()
            try:
                stream = await js.find_stream_name_by_subject(pattern)
                await js.delete_consumer(stream, name)
            except NotFoundError:  # no stream, or another process deleted it first
                pass

        try:
            self._call(delete())
        except BusError:
            raise
        except Exception as e:
            raise BusError(
                f"NATS at {self.url} could not delete the consumer {name!r}: {type(e).__name__}: {e}"
            ) from None

    async def _ensure_stream(self, js: Any, pattern: str) -> str:
        """The stream capturing ``pattern``: a user's stream when one does, else IONFLUX's, extended with it."""
        from nats.js.errors import NotFoundError

        try:
            found: str = await js.find_stream_name_by_subject(pattern)
            return found
        except NotFoundError:
            pass
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(name=self.stream, subjects=[pattern])
            return self.stream
        subjects = [s for s in (info.config.subjects or []) if not covers(pattern, s)]
        if not any(covers(s, pattern) for s in subjects):
            subjects.append(pattern)
        info.config.subjects = subjects
        await js.update_stream(info.config)
        self._streams.clear()  # publishes must see the new capture at once
        return self.stream

    def flush(self) -> None:
        """Wait until the server has processed everything sent so far (tests; live views)."""
        nc = self._connection()
        self._call(nc.flush(timeout=self.timeout))

    def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                self._call(self._nc.drain())
            except Exception:
                log.debug("draining the NATS connection failed; closing it", exc_info=True)
                with contextlib.suppress(Exception):
                    self._call(self._nc.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
