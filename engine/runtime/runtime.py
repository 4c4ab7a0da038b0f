"""A process's runtime: the database, the orchestrator, the doorbell, worker threads and the ticker.

The same object serves ``ionflux up`` and ``ionflux run`` (embedded: in-process broker, worker threads here) and
``ionflux worker`` (Redis): only the broker differs. The ticker thread sends this worker's heartbeat, fires due
timers and runs the reconciler; every process with workers runs one, and the database keeps them from stepping
on each other (timer rows are deleted by whoever fires them; claims decide who runs a step).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import dramatiq
import sqlalchemy as sa

from engine.core.state import RunStatus, StepError
from engine.errors import IonfluxError
from engine.nodetypes.registry import Registry
from engine.runtime import extensions
from engine.runtime.blobs import BlobStore
from engine.runtime.config import RuntimeConfig
from engine.runtime.event_triggers import EventTriggers
from engine.runtime.execute import execute
from engine.runtime.modules import ModuleRegistry
from engine.runtime.orchestrator import Orchestrator, StepResult, Work
from engine.runtime.queue import Doorbell
from engine.runtime.triggers import Triggers
from engine.steps.bus import Bus, LocalBus, NatsBus
from engine.steps.email import SmtpSettings
from engine.steps.http import HttpPolicy
from engine.steps.llm import LlmSettings
from engine.steps.registry import ExecutorRegistry, Integrations
from engine.steps.sandbox import Sandbox
from engine.steps.wasm import Resolver, SandboxPolicy
from engine.store import ids
from engine.store.db import Checkpoints, make_engine, migrate, reading
from engine.store.tables import runs

log = logging.getLogger("ionflux.runtime")
T = TypeVar("T")

#: how long a finished step's result is retried against an unreachable database before the attempt is given up
#: (it is then re-run from the queue: at-least-once, never lost)
RECORD_PATIENCE_SECONDS = 300.0
EVENT_SYNC_SECONDS = 2.0
# how soon an event another process accepted (``ionflux publish``) is started
INBOX_POLL_SECONDS = 1.0  # how soon a newly activated event trigger starts consuming


def retrying(fn: Callable[[], T], patience: float = RECORD_PATIENCE_SECONDS) -> T:
    """Call ``fn``, retrying while the database is unreachable (connection errors only, with backoff)."""
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return fn()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
            if time.monotonic() > deadline:
                raise
            log.warning("database unreachable (%s); retrying in %.2fs", type(e).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def integrations(
    config: RuntimeConfig, bus: Bus, wasm: tuple[Sandbox, Resolver, SandboxPolicy] | None = None
) -> Integrations:
    """The built-ins' settings from the runtime configuration."""
    return Integrations(
        http=HttpPolicy(
            allow_networks=tuple(ipaddress.ip_network(n, strict=False) for n in config.http_allow_networks),
            timeout_seconds=config.http_timeout_seconds,
            put_blob=BlobStore(config.blob_dir).put,
        ),
        slack_api_url=config.slack_api_url,
        smtp=SmtpSettings(config.smtp_url, config.smtp_sender, config.http_timeout_seconds),
        llm=LlmSettings(
            dict(config.llm_models) if config.llm_models is not None else LlmSettings().models,
            config.llm_api_base,
            config.llm_timeout_seconds,
        ),
        bus=bus,
        wasm=wasm,
    )


class Runtime:
    def __init__(
        self,
        config: RuntimeConfig,
        *,
        registry: Registry | None = None,
        executors: ExecutorRegistry | None = None,
        extension_modules: tuple[str, ...] = (),
        bus: Bus | None = None,
    ) -> None:
        self.config = config
        self.db = make_engine(config.database_url, pool_size=config.worker_threads + 4)
        self.checkpoints = Checkpoints(self.db)
        config.blob_dir.mkdir(parents=True, exist_ok=True)
        retrying(lambda: migrate(self.db), patience=30)
        # the event bus: event.publish, event triggers and live run views (LLM tokens) share it
        self.bus: Bus = bus or (
            NatsBus(config.nats_url, stream=config.events_stream) if config.nats_url else LocalBus()
        )
        self.sandbox = Sandbox()
        self.modules = ModuleRegistry(self.db, self.sandbox)
        if registry is None or executors is None:
            settings = integrations(config, self.bus, (self.sandbox, self.modules.resolve, config.sandbox))
            registry, executors = extensions.load(extension_modules, settings)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{ids.new_id()[-8:]}"
        self.orchestrator = Orchestrator(self.db, config, registry, executors, self.worker_id)
        self.doorbell = Doorbell(self.handle, redis_url=config.redis_url, namespace=config.queue_namespace)
        self.orchestrator.doorbell = self.doorbell.ring
        self.orchestrator.timer_scheduled = lambda at: self._wake.set()
        self._wake = threading.Event()
        self.triggers = Triggers(self.db, lambda version: self.orchestrator.plan(version).flow)
        self.scheduler = False  # whether this process fires cron triggers (`ionflux up`, `ionflux scheduler`)
        self.events = EventTriggers(self.triggers, self.bus, accepted=self._inbox_has_news)
        self._inbox_news = threading.Event()  # an event was accepted here: dispatch now, not at the next poll
        self._inflight: set[str] = set()
        self._to_release: list[Work] = []
        self._inflight_lock = threading.Lock()
        self._worker: dramatiq.Worker | None = None
        self._ticker: threading.Thread | None = None
        self._heart: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the actor ------------------------------------------------------------------------------------------

    def handle(self, run_id: str, key: str, attempt: int) -> None:
        """A doorbell message: claim the step, run it, and keep going with the run's next step while there is one."""
        token = f"{run_id}/{key}#{attempt}"
        with self._inflight_lock:
            if token in self._inflight:
                return  # this process is running that very attempt (a redelivered message)
            inflight = frozenset(self._inflight)
            self._inflight.add(token)
        try:
            work = self.orchestrator.claim(run_id, key, attempt, inflight)
        finally:
            with self._inflight_lock:
                self._inflight.discard(token)
        while work is not None:
            if self._stop.is_set():  # shutting down: the claimed step goes back to the queue once we retire
                return
            work = self._run(work)

    def _run(self, work: Work) -> Work | None:
        token = f"{work.run_id}/{work.key}#{work.attempt}"
        with self._inflight_lock:
            self._inflight.add(token)
        try:
            try:
                result = execute(self.orchestrator, work, self.bus)
            except IonfluxError as e:  # a configuration fault the user must fix (the secret key, say)
                result = StepResult(error=StepError(e.code, f"{work.key}: {e.message} ({e.hint})"))
            except Exception as e:  # the database away while preparing the step: not the step's fault
                log.warning("could not prepare %s/%s (%s); it goes back to the queue", work.run_id, work.key, e)
                self._give_back(work)
                return None
            try:
                return retrying(lambda: self.orchestrator.complete(work, result))
            except Exception as e:
                log.error("could not record %s/%s (%s); it goes back to the queue", work.run_id, work.key, e)
                self._give_back(work)
                return None
        finally:
            with self._inflight_lock:
                self._inflight.discard(token)

    def _give_back(self, work: Work) -> None:
        """Return a claimed step to the queue now, or from the ticker once the database answers again (a claim
        by a live worker is never taken over, so a step nobody gives back would wait forever)."""
        with self._inflight_lock:
            self._to_release.append(work)
        self._release_pending()

    def _release_pending(self) -> None:
        with self._inflight_lock:
            pending, self._to_release = self._to_release, []
        for i, work in enumerate(pending):
            try:
                self.orchestrator.release(work)
            except sa.exc.SQLAlchemyError:
                with self._inflight_lock:
                    self._to_release.extend(pending[i:])
                return

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self, threads: int | None = None, *, scheduler: bool = False) -> Runtime:
        """Start worker threads and the ticker in this process (``scheduler``: it fires cron triggers too)."""
        self.scheduler = scheduler
        self._beat()
        self._worker = self.doorbell.start_worker(threads or self.config.worker_threads)
        self._ticker = threading.Thread(target=self._tick, name="ionflux-ticker", daemon=True)
        self._ticker.start()
        # its own thread: a ticker busy firing many timers must not make this worker look dead to the others
        self._heart = threading.Thread(target=self._heartbeat_loop, name="ionflux-heartbeat", daemon=True)
        self._heart.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.stop()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._heart is not None:
            self._heart.join(timeout=5)
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self.orchestrator.retire()
        self.doorbell.close()
        self.events.close()
        self.bus.close()
        self.sandbox.close()
        self.db.dispose()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _beat(self) -> None:
        self.orchestrator.heartbeat(socket.gethostname(), os.getpid())

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.config.heartbeat_seconds):
            try:
                self._beat()
            except Exception as e:
                log.warning("heartbeat: %s: %s", type(e).__name__, e)

    def _tick(self) -> None:
        last_reconcile = last_sync = last_inbox = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            # each duty on its own: one that fails (the NATS server away) must not stop the others
            ok = True
            if now - last_sync >= EVENT_SYNC_SECONDS:
                ok &= self._duty("event triggers", self.events.sync)  # consume for newly armed ones, not disarmed
                last_sync = now
            ok &= self._duty("timers", self.orchestrator.fire_due_timers)
            if self.scheduler:
                ok &= self._duty("cron triggers", self._fire_crons)
            # the inbox is polled once a second (other processes accept events too), at once after news here
            if self._inbox_news.is_set() or now - last_inbox >= INBOX_POLL_SECONDS:
                self._inbox_news.clear()
                ok &= self._duty("trigger inbox", self.dispatch_triggers)
                last_inbox = now
            if self._to_release:
                ok &= self._duty("releases", self._release_pending)
            if self.checkpoints.due():  # SQLite: the log copied into the database file off the steps' path
                ok &= self._duty("checkpoint", self.checkpoints.run_if_due)
            if now - last_reconcile >= max(self.config.heartbeat_seconds, 1.0):
                ok &= self._duty("reconciler", self.orchestrator.reconcile)
                last_reconcile = now
            wait = self.config.tick_seconds if ok else self.config.tick_seconds * 5
            with contextlib.suppress(Exception):  # the database away: wait the plain tick
                due = self.orchestrator.next_timer_at()
                if due is not None:
                    wait = min(wait, max(0.0, (due - datetime.now(UTC)).total_seconds()))
                cron = self.triggers.next_wake() if self.scheduler else None
                if cron is not None:
                    wait = min(wait, max(0.0, (cron - datetime.now(UTC)).total_seconds()))
            self._wake.wait(wait)
            self._wake.clear()

    @staticmethod
    def _duty(name: str, action: Callable[[], Any]) -> bool:
        try:
            action()
            return True
        except Exception as e:  # the database away, say: keep ticking, it comes back
            log.warning("ticker (%s): %s: %s", name, type(e).__name__, e)
            return False

    def _fire_crons(self) -> None:
        if self.triggers.fire_due():
            self._inbox_news.set()

    def _inbox_has_news(self) -> None:
        self._inbox_news.set()
        self._wake.set()

    def dispatch_triggers(self) -> list[str]:
        """Start the runs of accepted trigger events (each exactly once, whichever process gets there first)."""
        started = []
        for inbox_id in self.triggers.pending():
            run_id = self.orchestrator.start_from_inbox(inbox_id)
            if run_id is not None:
                started.append(run_id)
        return started

    # --- waiting --------------------------------------------------------------------------------------------

    def status(self, run_id: str) -> RunStatus:
        with reading(self.db) as conn:
            return RunStatus(conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).scalar_one())

    def wait(self, run_id: str, timeout: float = 60.0, *, until_idle: bool = True, poll: float = 0.1) -> RunStatus:
        """Wait until the run finishes (or, with until_idle, waits for a person or is paused).

        Changes recorded by this process wake the waiter at once; ``poll`` bounds how late a change recorded by
        another process (a separate worker) is noticed.
        """
        deadline = time.monotonic() + timeout
        idle = {RunStatus.AWAITING_APPROVAL, RunStatus.PAUSED} if until_idle else set()
        orchestrator = self.orchestrator
        while True:
            seen = orchestrator.settled_count
            status = orchestrator.finished_here(run_id) or retrying(lambda: self.status(run_id), patience=timeout)
            left = deadline - time.monotonic()
            if status.finished or status in idle or left <= 0:
                return status
            with orchestrator.committed:
                if orchestrator.settled_count == seen:
                    orchestrator.committed.wait(min(poll, left))
