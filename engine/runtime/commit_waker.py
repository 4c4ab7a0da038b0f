"""Waking asyncio streams when a run's events commit: the live views' (the API's and the UI's Server-Sent Events)
way to notice a commit at once instead of polling the database.

The orchestrator signals each settled commit on ``committed`` (a thread condition, with ``settled_count``);
:func:`waker` gives the one :class:`CommitWaker` of an orchestrator, whose thread (running only while streams
listen) puts ``None`` on every registered asyncio queue after each commit::

    queue: asyncio.Queue[Any] = asyncio.Queue()
    found = waker(runtime.orchestrator)
    found.add(asyncio.get_running_loop(), queue)
    try:
        ...  # read, then await queue.get() (with a timeout: another process's commits are not signalled)
    finally:
        found.remove(queue)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import Any

from engine.runtime.orchestrator import Orchestrator


class CommitWaker:
    """Turns the orchestrator's ``committed`` notifications (a thread condition) into wake-ups of the streams'
    asyncio queues: one thread per orchestrator, only while streams listen."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator
        self._lock = threading.Lock()
        self._queues: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = {}
        self._thread: threading.Thread | None = None

    def add(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        with self._lock:
            self._queues[id(queue)] = (loop, queue)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ionflux-sse-waker", daemon=True)
                self._thread.start()

    def remove(self, queue: asyncio.Queue[Any]) -> None:
        with self._lock:
            self._queues.pop(id(queue), None)

    def _run(self) -> None:
        committed = self.orchestrator.committed
        seen = self.orchestrator.settled_count
        while True:
            with committed:
                if self.orchestrator.settled_count == seen:
                    committed.wait(1.0)
                now = self.orchestrator.settled_count
            with self._lock:
                if not self._queues:
                    self._thread = None
                    return
                listening = list(self._queues.values())
            if now != seen:
                seen = now
                for loop, queue in listening:
                    with contextlib.suppress(RuntimeError):  # that stream's loop has closed
                        loop.call_soon_threadsafe(queue.put_nowait, None)


_wakers: weakref.WeakKeyDictionary[Orchestrator, CommitWaker] = weakref.WeakKeyDictionary()
_wakers_lock = threading.Lock()


def waker(orchestrator: Orchestrator) -> CommitWaker:
    """The orchestrator's one waker (made on first use)."""
    with _wakers_lock:
        found = _wakers.get(orchestrator)
        if found is None:
            found = _wakers[orchestrator] = CommitWaker(orchestrator)
        return found
