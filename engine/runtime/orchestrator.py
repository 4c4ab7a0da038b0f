"""The orchestrator: records events, advances runs and hands out step work, one transaction per event.

Every change to a run goes through :meth:`Orchestrator._record` inside a transaction that holds the run's row
lock: the event is appended to ``run_events``, the machine computes the new state, and the projection
(``runs``, the changed ``run_steps`` rows, timers, approvals, child runs) is written in the same transaction.
Only after the commit are doorbells rung (queue messages) and the in-process state cache updated, so a crash at
any point leaves either the whole event or none of it.

State is rebuilt from events: each process keeps the newest state of the runs it touched (keyed by the run's
event count, ``runs.seq``), and when another process recorded events since, it replays only those. A run's state
is therefore never serialised as a whole per step (10,000-item loops stay flat).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.core import events as ev
from engine.core.codec import event_from_json, event_to_json, kind_of, timer_from_json, timer_to_json
from engine.core.decisions import CancelStep, FinishRun, RequestApproval, ScheduleTimer, StartChildRun, StartStep
from engine.core.machine import InvalidEvent, Transition, advance
from engine.core.plan import Plan, compile_plan
from engine.core.state import RunState, RunStatus, StepError, StepKey, StepState, StepStatus, Timer
from engine.dsl.canonical import version_id as content_id
from engine.dsl.inputs import RunInputError, run_input
from engine.dsl.model import AnyNode, Flow, ForeachNode
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.nodetypes.registry import Registry
from engine.runtime import payloads
from engine.runtime.blobs import BlobStore
from engine.runtime.config import RuntimeConfig
from engine.runtime.secrets import SecretStore
from engine.runtime.writes import Conflict, Insert, Pending, upsert, writes_for
from engine.steps.registry import ExecutorRegistry
from engine.store import ids
from engine.store.db import is_postgres, reading, utc
from engine.store.tables import (
    LOCAL_OWNER,
    approvals,
    credit_ledger,
    flow_versions,
    flows,
    run_events,
    run_steps,
    runs,
    timers,
    trigger_inbox,
    workers,
)

SETTLED = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.AWAITING_APPROVAL, RunStatus.PAUSED}
)
NATIVE_TYPES = frozenset({"foreach", "approval", "delay", "flow.call"})  # carried out by the machine itself


class _Stale(Exception):
    """This process's copy of a run is missing or behind: redo the transaction under the run's lock."""


class RunNotFoundError(IonfluxError):
    code = "run.not_found"


class FlowNotFoundError(IonfluxError):
    code = "flow.not_found"


class FlowTakenError(IonfluxError):
    """Raised when a flow id belongs to another owner (ids are unique in an installation)."""

    code = "flow.id_taken"


class RunRefusedError(IonfluxError):
    """Raised when a flow cannot run here (a node type without executor) or an action does not apply."""

    code = "run.refused"


class ChildRefusedError(IonfluxError):
    """Raised when ``flow.call`` names a flow that does not let flows call it (no ``flow`` trigger)."""

    code = "flow.not_callable"


@dataclass(frozen=True, slots=True)
class Work:
    """A claimed step attempt: everything a worker needs to execute it."""

    run_id: str
    key: StepKey
    attempt: int
    node_type: str
    plan: Plan
    state: RunState


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a worker reports for an attempt: an output or an error, plus what the step record keeps."""

    output: Any = None
    error: StepError | None = None
    logs: tuple[tuple[str, str], ...] = ()
    input_preview: str | None = None
    input_ref: str | None = None  # the whole input in the blob store, when the preview had to cut it
    cost_cion: float = 0.0
    usage: dict[str, Any] | None = None  # what a metered step measured (LLM: model, tokens, latency, cost)


@dataclass(slots=True)
class _Run:
    id: str
    seq: int
    plan: Plan
    state: RunState
    parent_run_id: str | None
    parent_step: str | None


@dataclass(slots=True)
class _Tx:
    conn: sa.Connection
    runs: dict[str, _Run] = field(default_factory=dict)
    doorbells: list[tuple[str, str, int]] = field(default_factory=list)
    chained: Work | None = None
    claim: bool = False  # the caller is a worker that continues with one started step itself
    timer_at: datetime | None = None
    pending: list[Pending] = field(default_factory=list)  # event writes, flushed just before the commit
    inserts: list[Insert] = field(default_factory=list)  # plain rows (ledger lines), flushed with them


class Orchestrator:
    def __init__(
        self,
        db: sa.Engine,
        config: RuntimeConfig,
        registry: Registry,
        executors: ExecutorRegistry,
        worker_id: str,
    ) -> None:
        self.db = db
        self.config = config
        self.registry = registry
        self.executors = executors
        self.worker_id = worker_id
        self.blobs = BlobStore(config.blob_dir)
        self.secrets = SecretStore(db, config.secret_key)
        self.postgres = is_postgres(db)
        self.doorbell: Callable[[str, str, int], None] = lambda run_id, key, attempt: None
        self.timer_scheduled: Callable[[datetime], None] = lambda at: None
        self._plans: dict[str, Plan] = {}
        self._owners: dict[str, str] = {}  # flow id -> owner
        self._writes = writes_for(self.postgres)
        # run id -> (seq, state, parent run id, parent step) as this process last recorded or read it
        self._cache: OrderedDict[str, tuple[int, RunState, str | None, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.cache_size = 512
        #: notified when a commit of this process settles a run (waiters in the same process need not poll)
        self.committed = threading.Condition()
        self.settled_count = 0  # how many such commits so far (a waiter compares it to know it missed none)

    # --- flows ----------------------------------------------------------------------------------------------

    def save_flow(self, text: str, file: str = "<flow>", owner: str = LOCAL_OWNER) -> tuple[str, str]:
        """Validate and store a flow version (idempotent: the version id is the content id). -> (flow id, version)

        A flow id is unique in the installation: another owner's flow with the same id is refused (choose another
        id); saving a deleted flow of the same owner brings it back."""
        flow = load_flow(text, file, registry=self.registry)
        self.check_runnable(flow, file)
        version = content_id(flow)
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            holder = conn.execute(sa.select(flows.c.owner_id).where(flows.c.id == flow.id)).scalar()
            if holder is None:
                conn.execute(
                    flows.insert().values(id=flow.id, owner_id=owner, name=flow.name, created_at=now, updated_at=now)
                )
            elif holder != owner:
                raise FlowTakenError(
                    f"{file}: the flow id {flow.id!r} is taken in this installation",
                    hint="give the flow another `id`",
                )
            if conn.execute(sa.select(flow_versions.c.id).where(flow_versions.c.id == version)).first() is None:
                conn.execute(flow_versions.insert().values(id=version, flow_id=flow.id, source=text, created_at=now))
            conn.execute(
                flows.update()
                .where(flows.c.id == flow.id)
                .values(latest_version=version, name=flow.name, updated_at=now, deleted_at=None)
            )
        self._owners[flow.id] = owner
        return flow.id, version

    def owner_of(self, flow_id: str) -> str:
        """The owner of a flow (whose secrets its steps read); cached: a flow never changes owner."""
        owner = self._owners.get(flow_id)
        if owner is None:
            with self.db.connect() as conn:
                owner = conn.execute(sa.select(flows.c.owner_id).where(flows.c.id == flow_id)).scalar()
            if owner is None:
                return LOCAL_OWNER  # not stored (yet): not cached, so a later save by any owner is seen
            owner = str(owner)
            self._owners[flow_id] = owner
        return owner

    def check_runnable(self, flow: Flow, file: str = "<flow>") -> None:
        """Refuse a flow that uses a node type with no executor here (before any run exists)."""
        missing: dict[str, str] = {}

        def visit(nodes: tuple[AnyNode, ...]) -> None:
            for node in nodes:
                if node.type not in NATIVE_TYPES and node.type not in self.executors:
                    missing.setdefault(node.type, node.id)
                if isinstance(node, ForeachNode):
                    visit(node.do)

        visit(flow.nodes)
        visit(flow.on_failure)
        if missing:
            listed = ", ".join(f"{t!r} (node {n!r})" for t, n in sorted(missing.items()))
            raise RunRefusedError(
                f"{file}: flow {flow.id!r} cannot run in this installation: no executor for {listed}",
                hint="these node types validate but run in a later release or need an extension; the types that run "
                "today are: " + ", ".join(sorted(NATIVE_TYPES | set(self.executors))),
            )

    def plan(self, version: str, conn: sa.Connection | None = None) -> Plan:
        """The compiled plan of a stored version (``conn``: inside a transaction, which SQLite must reuse)."""
        plan = self._plans.get(version)
        if plan is None:
            source = self._scalar(sa.select(flow_versions.c.source).where(flow_versions.c.id == version), conn)
            if source is None:
                raise FlowNotFoundError(f"flow version {version} is not stored", hint="`ionflux runs` lists runs")
            plan = compile_plan(load_flow(source, f"version {version}", registry=self.registry), self.registry)
            self._plans[version] = plan
        return plan

    def _scalar(self, query: Any, conn: sa.Connection | None) -> Any:
        """One value, read in the caller's transaction if there is one (SQLite has one writer: never open a second)."""
        if conn is not None:
            return conn.execute(query).scalar()
        with self.db.begin() as own:
            return own.execute(query).scalar()

    def latest_version(self, flow_id: str, conn: sa.Connection | None = None) -> str:
        version = self._scalar(sa.select(flows.c.latest_version).where(flows.c.id == flow_id), conn)
        if version is None:
            raise FlowNotFoundError(f"no flow with id {flow_id!r} is stored", hint="save it first (`ionflux run FILE`)")
        return str(version)

    # --- runs -----------------------------------------------------------------------------------------------

    def start_run(self, version: str, input: Any = None, *, trigger_kind: str = "manual", trigger: Any = None) -> str:
        """Create a run and start it. Invalid input is refused before the run exists (RunInputError)."""
        plan = self.plan(version)
        value = run_input(plan.flow, input)
        run_id = ids.new_id()
        with self._transaction() as tx:
            self._create_run(tx, run_id, plan, value, trigger_kind, trigger, None, None)
        self._after(tx)
        return run_id

    def start_from_inbox(self, inbox_id: str) -> str | None:
        """Start the run an accepted trigger event asks for, exactly once: marking the event started and creating
        the run are one transaction, and only the dispatcher whose mark lands creates it. An input the flow
        refuses marks the event refused, with the problems. -> the run id (None: another dispatcher had it)."""
        now = self._now()
        with self._transaction() as tx:
            row = tx.conn.execute(
                sa.select(trigger_inbox).where(trigger_inbox.c.id == inbox_id, trigger_inbox.c.status == "accepted")
            ).first()
            if row is None:
                return None
            run_id = ids.new_id()
            claimed = tx.conn.execute(
                trigger_inbox.update()
                .where(trigger_inbox.c.id == inbox_id, trigger_inbox.c.status == "accepted")
                .values(status="started", run_id=run_id, processed_at=now)
            )
            if claimed.rowcount != 1:
                return None
            plan = self.plan(row.version_id, tx.conn)
            try:
                value = run_input(plan.flow, row.input)
            except RunInputError as e:
                tx.conn.execute(
                    trigger_inbox.update()
                    .where(trigger_inbox.c.id == inbox_id)
                    .values(status="refused", run_id=None, error={"code": e.code, "message": e.message})
                )
                return None
            self._create_run(tx, run_id, plan, value, row.kind, row.trigger, None, None)
        self._after(tx)
        return run_id

    def cancel(self, run_id: str, by: str | None = None) -> None:
        self._request(run_id, ev.CancelRequested(self._now(), by))

    def pause(self, run_id: str) -> None:
        self._request(run_id, ev.PauseRequested(self._now()))

    def resume(self, run_id: str) -> None:
        self._request(run_id, ev.ResumeRequested(self._now()))

    def approve(
        self, run_id: str, approved: bool = True, *, by: str | None = None, comment: str | None = None, node: str = ""
    ) -> StepKey:
        """Decide the run's pending approval (``node`` picks one when several wait)."""
        with self._transaction() as tx:
            run = self._lock_run(tx, run_id)
            waiting = [
                k for k, s in run.state.steps.items() if s.status is StepStatus.RUNNING and s.waiting == "approval"
            ]
            chosen = [k for k in waiting if not node or str(k) == node or k.node == node]
            if len(chosen) != 1:
                names = ", ".join(str(k) for k in waiting) or "none"
                raise RunRefusedError(
                    f"run {run_id}: {'no' if not chosen else 'more than one'} approval matches "
                    f"(waiting for a decision: {names})",
                    hint="name the approval step (the API's `step`, the CLI's --node)"
                    if chosen
                    else f"name one of the steps waiting ({names}), or check the run: `ionflux run-show {run_id}`",
                )
            key = chosen[0]
            now = self._now()
            step = run.state.step(key)
            self._record(tx, run, ev.ApprovalDecided(now, key, approved, by, comment))
            tx.conn.execute(
                approvals.update()
                .where(
                    approvals.c.run_id == run_id,
                    approvals.c.run_attempt == step.run_attempt,
                    approvals.c.step_key == str(key),
                    approvals.c.attempt == step.attempt,
                )
                .values(decided_at=now, approved=approved, decided_by=by)
            )
        self._after(tx)
        return key

    def rerun(self, run_id: str, version: str | None = None, from_node: str | None = None) -> None:
        """Re-run a failed or cancelled run from its failed steps, optionally on another version of its flow;
        ``from_node``: re-run any finished run from that node (it and what depends on it run again)."""
        with self._transaction() as tx:
            run = self._lock_run(tx, run_id)
            if version is not None:
                plan = self.plan(version, tx.conn)
                if plan.flow.id != run.plan.flow.id:
                    raise RunRefusedError(
                        f"version {version} belongs to flow {plan.flow.id!r}, not {run.plan.flow.id!r}",
                        hint="re-run on a version of the same flow",
                    )
                self.check_runnable(plan.flow)
                run.plan = plan
            try:
                event = ev.RerunRequested(self._now(), from_node)
                self._record(tx, run, event, extra={"version": run.plan.version_id})
            except InvalidEvent as e:
                hint = "wait for the run to finish, or cancel it first"
                if from_node is not None and run.state.status.finished:
                    hint = "name a node of the flow's main nodes (not an on_failure node)"
                raise RunRefusedError(str(e), hint=hint) from None
            tx.conn.execute(runs.update().where(runs.c.id == run_id).values(version_id=run.plan.version_id))
        self._after(tx)

    def finished_here(self, run_id: str) -> RunStatus | None:
        """The run's final status if this process recorded it finished, else None: a waiter woken by this
        process's own commit needs no query to see it (a finished run changes again only when re-run)."""
        with self._lock:
            cached = self._cache.get(run_id)
        status = cached[1].status if cached is not None else None
        return status if status is not None and status.finished else None

    def state(self, run_id: str) -> RunState:
        with self._transaction() as tx:
            state: RunState = self._lock_run(tx, run_id).state
        return state

    def _request(self, run_id: str, event: ev.Event) -> None:
        with self._transaction() as tx:
            self._record(tx, self._lock_run(tx, run_id), event)
        self._after(tx)

    # --- worker side ----------------------------------------------------------------------------------------

    def claim(self, run_id: str, key_text: str, attempt: int, inflight: frozenset[str] = frozenset()) -> Work | None:
        """Take a queued step attempt for this worker; None if it is done, cancelled or someone else runs it."""
        with self._transaction() as tx:
            run = self._lock_run_if_any(tx, run_id)
            if run is None:
                return None
            key = StepKey.parse(key_text)
            step = run.state.step(key)
            if step.status is not StepStatus.RUNNING or step.attempt != attempt or step.waiting is not None:
                return None
            # claimed by this process but not running here (given back, or a restart with the same id): free
            mine_too = f"{run_id}/{key_text}#{attempt}" not in inflight
            row = (run_id, step.run_attempt, key_text, attempt)
            if not self._writes.claim(tx.conn, row, self.worker_id, mine_too=mine_too):
                return None  # another live worker (or thread) runs it; the reconciler handles dead ones
            return Work(run_id, key, attempt, run.plan.nodes[key.node].type, run.plan, run.state)

    def complete(self, work: Work, result: StepResult) -> Work | None:
        """Record an attempt's result; returns the next step of the run this worker should run itself, if any."""
        error = result.error
        output: Any = None
        value: Any = None
        if error is None:
            try:
                output, value = payloads.store(
                    result.output,
                    self.blobs,
                    inline_limit=self.config.inline_payload_bytes,
                    max_bytes=self.config.max_payload_bytes,
                    what=f"the output of {work.key}",
                )
            except payloads.PayloadTooLargeError as e:
                error = StepError(e.code, f"{work.key}: {e.message}")
            except (TypeError, ValueError) as e:
                error = StepError("step.output_invalid", f"{work.key}: the output is not JSON: {e}")
        result = replace(result, output=value, error=error)
        try:  # optimistic: from this process's copy of the run, without locking it first (one round trip less)
            return self._complete(work, result, output, error, optimistic=True)
        except (Conflict, _Stale):
            return self._complete(work, result, output, error, optimistic=False)

    def _complete(
        self, work: Work, result: StepResult, output: Any, error: StepError | None, *, optimistic: bool
    ) -> Work | None:
        with self._transaction(claim=True) as tx:
            run = self._cached_run(tx, work.run_id) if optimistic else self._lock_run_if_any(tx, work.run_id)
            if run is None:
                return None
            step = run.state.step(work.key)
            if step.status is not StepStatus.RUNNING or step.attempt != work.attempt or step.waiting is not None:
                if optimistic:
                    raise _Stale  # maybe this copy is behind; look again under the lock
                return None  # late (timed out, cancelled) or a duplicate: the recorded result stands
            now = self._now()
            event: ev.Event
            if error is None:
                event = ev.StepSucceeded(now, work.key, work.attempt, result.output, result.cost_cion)  # JSON value
            else:
                event = ev.StepFailed(now, work.key, work.attempt, error, result.cost_cion)
            extra_row = {
                "logs": [list(line) for line in result.logs] or None,
                "input_preview": result.input_preview,
                "input_ref": result.input_ref,
                "output_ref": output.get(payloads.BLOB_KEY) if isinstance(output, dict) else None,
                "usage": result.usage,
            }
            self._record(tx, run, event, stored_output=output, row_extra={work.key: extra_row})
            if result.cost_cion:
                line = {"run_id": work.run_id, "step_key": str(work.key), "attempt": work.attempt, "at": now}
                tx.inserts.append((credit_ledger, {**line, "cion": result.cost_cion}))
        self._after(tx)
        return tx.chained

    def _cached_run(self, tx: _Tx, run_id: str) -> _Run:
        """The run as this process last recorded it, unlocked; a stale copy fails at commit (Conflict)."""
        with self._lock:
            cached = self._cache.get(run_id)
        if cached is None:
            raise _Stale
        seq, state, parent_run_id, parent_step = cached
        if parent_run_id is not None:
            raise _Stale  # a child run may lock its parent: keep the one lock order (child, then parent)
        if state.running > 1:
            raise _Stale  # other steps of the run are in flight (a parallel foreach): a conflict is likely, lock
        run = _Run(run_id, seq, self.plan(state.version_id, tx.conn), state, parent_run_id, parent_step)
        tx.runs[run_id] = run
        return run

    def release(self, work: Work) -> None:
        """Give a claimed step back: queued again, for any worker (the reconciler rings its doorbell)."""
        step = work.state.step(work.key)
        with self.db.begin() as conn:
            conn.execute(
                run_steps.update()
                .where(
                    *_row_where(work.run_id, step.run_attempt, str(work.key), work.attempt),
                    run_steps.c.state == "claimed",
                    run_steps.c.worker_id == self.worker_id,
                )
                .values(state="queued", worker_id=None, queued_at=self._now())
            )

    def fire_due_timers(self, now: datetime | None = None, limit: int = 100) -> int:
        now = now or self._now()
        with reading(self.db) as conn:
            due = conn.execute(
                sa.select(timers.c.id, timers.c.run_id)
                .where(timers.c.due_at <= now)
                .order_by(timers.c.due_at)
                .limit(limit)
            ).all()
        fired = 0
        for timer_id, run_id in due:
            with self._transaction() as tx:
                run = self._lock_run(tx, run_id)
                row = tx.conn.execute(
                    timers.delete()
                    .where(timers.c.id == timer_id)
                    .returning(timers.c.kind, timers.c.step_key, timers.c.attempt)
                ).first()
                if row is not None:  # another process may have fired it a moment ago
                    timer = timer_from_json({"kind": row.kind, "key": row.step_key, "attempt": row.attempt})
                    self._record(tx, run, ev.TimerFired(self._now(), timer))
                    fired += 1
            self._after(tx)
        return fired

    def next_timer_at(self) -> datetime | None:
        with reading(self.db) as conn:
            return utc(conn.execute(sa.select(sa.func.min(timers.c.due_at))).scalar())

    def reconcile(self, now: datetime | None = None) -> int:
        """Ring the doorbell again for steps that are ready but idle: claimed by a dead worker, or queued with no
        taker for a while (a lost message, a broker restart). Claims make the extra doorbells harmless."""
        now = now or self._now()
        dead_before = now - timedelta(seconds=self.config.dead_after_seconds)
        stale_before = now - timedelta(seconds=self.config.requeue_after_seconds)
        alive = sa.select(workers.c.id).where(workers.c.heartbeat_at >= dead_before)
        orphaned = sa.and_(run_steps.c.state == "claimed", run_steps.c.worker_id.not_in(alive))
        stale = sa.and_(run_steps.c.state == "queued", run_steps.c.queued_at < stale_before)
        long_dead = workers.c.heartbeat_at < now - 10 * timedelta(seconds=self.config.dead_after_seconds)
        with reading(self.db) as conn:  # the usual answer is "nothing to do": found without the write lock
            idle = sa.exists(sa.select(run_steps.c.run_id).where(sa.or_(orphaned, stale)))
            gone = sa.exists(sa.select(workers.c.id).where(long_dead))
            if not conn.execute(sa.select(sa.or_(idle, gone))).scalar():
                return 0
        with self.db.begin() as conn:
            rows = conn.execute(
                sa.select(run_steps.c.run_id, run_steps.c.run_attempt, run_steps.c.key, run_steps.c.attempt)
                .where(sa.or_(orphaned, stale))
                .limit(1000)
            ).all()
            for row in rows:
                conn.execute(
                    run_steps.update()
                    .where(*_row_where(row.run_id, row.run_attempt, row.key, row.attempt))
                    .values(state="queued", worker_id=None, queued_at=now)
                )
            conn.execute(workers.delete().where(long_dead))
        for row in rows:
            self.doorbell(row.run_id, row.key, row.attempt)
        return len(rows)

    def heartbeat(self, host: str, pid: int, now: datetime | None = None) -> None:
        now = now or self._now()
        with self.db.begin() as conn:
            updated = conn.execute(
                workers.update().where(workers.c.id == self.worker_id).values(heartbeat_at=now)
            ).rowcount
            if not updated:
                conn.execute(
                    workers.insert().values(id=self.worker_id, host=host, pid=pid, started_at=now, heartbeat_at=now)
                )

    def retire(self) -> None:
        """A worker shutting down cleanly: its claimed steps go back to the queue at once."""
        with self.db.begin() as conn:
            conn.execute(workers.delete().where(workers.c.id == self.worker_id))

    # --- the transaction ------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, claim: bool = False) -> Iterator[_Tx]:
        with self.db.begin() as conn:
            tx = _Tx(conn, claim=claim)
            yield tx
            chained = tx.chained
            if chained is not None:  # a later event of this transaction may have cancelled it (the run failed)
                final = tx.runs[chained.run_id].state
                step = final.step(chained.key)
                if step.status is StepStatus.RUNNING and step.attempt == chained.attempt and step.waiting is None:
                    tx.chained = replace(chained, state=final)
                else:
                    tx.chained = None
            self._writes.flush(conn, tx.pending, tx.inserts)

    def _after(self, tx: _Tx) -> None:
        """After commit: remember the new states, ring the doorbells, wake the timer loop."""
        with self._lock:
            for run in tx.runs.values():
                self._cache[run.id] = (run.seq, run.state, run.parent_run_id, run.parent_step)
                self._cache.move_to_end(run.id)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        for run_id, key, attempt in tx.doorbells:
            self.doorbell(run_id, key, attempt)
        if tx.timer_at is not None:
            self.timer_scheduled(tx.timer_at)
        if any(run.state.status in SETTLED for run in tx.runs.values()):
            with self.committed:
                self.settled_count += 1
                self.committed.notify_all()

    def _lock_run(self, tx: _Tx, run_id: str) -> _Run:
        run = self._lock_run_if_any(tx, run_id)
        if run is None:
            raise RunNotFoundError(f"no run with id {run_id!r}", hint="`ionflux runs` lists the recent runs")
        return run

    def _lock_run_if_any(self, tx: _Tx, run_id: str) -> _Run | None:
        known = tx.runs.get(run_id)
        if known is not None:
            return known
        row = self._writes.lock(tx.conn, run_id)
        if row is None:
            return None
        plan, state = self._rebuild(tx.conn, run_id, row.seq)
        run = _Run(run_id, row.seq, plan, state, row.parent_run_id, row.parent_step)
        tx.runs[run_id] = run
        return run

    def _rebuild(self, conn: sa.Connection, run_id: str, seq: int) -> tuple[Plan, RunState]:
        with self._lock:
            cached = self._cache.get(run_id)
        if cached is not None and cached[0] == seq:
            return self.plan(cached[1].version_id, conn), cached[1]
        start, state = (cached[0], cached[1]) if cached is not None and cached[0] < seq else (0, None)
        plan = self.plan(state.version_id, conn) if state is not None else None
        rows = conn.execute(
            sa.select(run_events.c.kind, run_events.c.data)
            .where(run_events.c.run_id == run_id, run_events.c.seq > start)
            .order_by(run_events.c.seq)
        )
        for kind, data in rows:
            if "version" in data:
                plan = self.plan(data["version"], conn)
            for name in ("output", "outputs", "input"):
                if name in data:
                    data = {**data, name: payloads.load(data[name], self.blobs)}
            assert plan is not None, f"run {run_id}: first event is not run_started"
            state = advance(plan, state, event_from_json(kind, data)).state
        assert plan is not None and state is not None
        return plan, state

    def _record(
        self,
        tx: _Tx,
        run: _Run,
        event: ev.Event,
        *,
        extra: dict[str, Any] | None = None,
        stored_output: Any = None,
        row_extra: dict[StepKey, dict[str, Any]] | None = None,
    ) -> Transition:
        """Append one event to a locked run and write everything it changed."""
        old = run.state
        transition = advance(run.plan, old if kind_of(event) != "run_started" else None, event)
        run.seq += 1
        data = event_to_json(event)
        if isinstance(event, ev.StepSucceeded):
            data["output"] = stored_output
        elif isinstance(event, ev.RunStarted | ev.ChildRunFinished):
            field_name = "input" if isinstance(event, ev.RunStarted) else "outputs"
            data[field_name], _ = payloads.store(
                data[field_name],
                self.blobs,
                inline_limit=self.config.inline_payload_bytes,
                max_bytes=self.config.max_payload_bytes,
                what=field_name,
            )
        data.update(extra or {})
        event_row = {"run_id": run.id, "seq": run.seq, "kind": kind_of(event), "at": event.at, "data": data}
        run.state = state = transition.state
        rows = self._step_rows(run, transition)
        for key, extra_values in (row_extra or {}).items():
            if key in rows:
                rows[key].update({k: v for k, v in extra_values.items() if v is not None})
        finished: FinishRun | None = None
        children: list[StartChildRun] = []
        for decision in transition.decisions:
            if isinstance(decision, StartStep):
                row = rows.setdefault(decision.key, self._row(run, decision.key, state.step(decision.key)))
                row.update(state="queued", queued_at=event.at, node_type=decision.node_type)
                if tx.claim and tx.chained is None:
                    row.update(state="claimed", worker_id=self.worker_id)
                    tx.chained = Work(run.id, decision.key, decision.attempt, decision.node_type, run.plan, state)
                else:
                    tx.doorbells.append((run.id, str(decision.key), decision.attempt))
            elif isinstance(decision, CancelStep):
                rows.setdefault(decision.key, self._row(run, decision.key, state.step(decision.key)))
                rows[decision.key]["state"] = "cancelled"
            elif isinstance(decision, ScheduleTimer):
                self._schedule(tx, run.id, decision.timer, decision.at)
            elif isinstance(decision, RequestApproval):
                tx.conn.execute(
                    approvals.insert().values(
                        run_id=run.id,
                        run_attempt=state.step(decision.key).run_attempt,
                        step_key=str(decision.key),
                        attempt=state.step(decision.key).attempt,
                        message=decision.message,
                        approvers=list(decision.approvers),
                        requested_at=event.at,
                    )
                )
            elif isinstance(decision, StartChildRun):
                children.append(decision)
            elif isinstance(decision, FinishRun):
                finished = decision
        values: dict[str, Any] = {
            "seq": run.seq,
            "status": str(state.status),
            "total_cion": state.spent_cion,
            "attempt": state.attempt,
            "error": state.error.to_dict() if state.error else None,
            "finished_at": state.finished_at,
        }
        if finished is not None:
            values["outputs"] = finished.outputs
        elif isinstance(event, ev.RerunRequested):
            values["outputs"] = None
        tx.pending.append((event_row, list(rows.values()), run.id, values))  # written at commit (see writes.py)
        self._settle_side_tables(tx, run, event, old, transition)
        for child in children:
            self._start_child(tx, run, child, event.at)
        if finished is not None and run.parent_run_id and run.parent_step:
            parent = self._lock_run_if_any(tx, run.parent_run_id)
            if parent is not None:
                self._record(
                    tx,
                    parent,
                    ev.ChildRunFinished(
                        event.at,
                        StepKey.parse(run.parent_step),
                        run.id,
                        str(finished.status),
                        finished.outputs,
                        finished.error,
                    ),
                )
        return transition

    def _settle_side_tables(
        self, tx: _Tx, run: _Run, event: ev.Event, old: RunState | None, transition: Transition
    ) -> None:
        """What a step leaving its waiting state means outside the run: timers dropped, approvals closed, child
        runs cancelled with the step that waited for them."""
        if old is None:
            return
        if isinstance(event, ev.RerunRequested):
            tx.conn.execute(timers.delete().where(timers.c.run_id == run.id))
            return
        state = transition.state
        for key in transition.changed:
            before, after = old.step(key), state.step(key)
            node = run.plan.nodes.get(key.node)
            if after.status.terminal and node is not None and (node.timeout is not None or node.retry is not None):
                tx.conn.execute(timers.delete().where(timers.c.run_id == run.id, timers.c.step_key == str(key)))
            if (
                before.waiting == "approval"
                and after.waiting != "approval"
                and not isinstance(event, ev.ApprovalDecided)
            ):
                why = "cancelled" if after.status is StepStatus.CANCELLED else "timeout"
                tx.conn.execute(
                    approvals.update()
                    .where(
                        approvals.c.run_id == run.id,
                        approvals.c.step_key == str(key),
                        approvals.c.decided_at.is_(None),
                    )
                    .values(decided_at=event.at, approved=after.status is StepStatus.SUCCEEDED, decided_by=why)
                )
            if before.waiting == "child" and after.status is StepStatus.CANCELLED and before.child_run_id:
                child = self._lock_run_if_any(tx, before.child_run_id)
                if child is not None and not child.state.status.finished:
                    self._record(tx, child, ev.CancelRequested(event.at, f"parent run {run.id}"))

    def _create_run(
        self,
        tx: _Tx,
        run_id: str,
        plan: Plan,
        value: dict[str, Any],
        trigger_kind: str,
        trigger: Any,
        parent_run_id: str | None,
        parent_step: str | None,
    ) -> None:
        now = self._now()
        row = {
            "id": run_id,
            "flow_id": plan.flow.id,
            "version_id": plan.version_id,
            "status": str(RunStatus.PENDING),
            "trigger_kind": trigger_kind,
            "trigger": trigger,
            "input": value,
            "parent_run_id": parent_run_id,
            "parent_step": parent_step,
            "created_at": now,
        }
        self._writes.insert(tx.conn, runs, row)
        run = _Run(run_id, 0, plan, None, parent_run_id, parent_step)  # type: ignore[arg-type]
        tx.runs[run_id] = run
        self._record(tx, run, ev.RunStarted(now, run_id, value, trigger), extra={"version": plan.version_id})

    def _start_child(self, tx: _Tx, parent: _Run, decision: StartChildRun, at: datetime) -> None:
        try:
            plan = self._callable(decision, self.owner_of(parent.plan.flow.id), tx.conn)
            self.check_runnable(plan.flow)
            value = run_input(plan.flow, decision.input)
        except (FlowNotFoundError, ChildRefusedError, RunRefusedError, RunInputError) as e:
            error = StepError(e.code, f"{decision.key}: {e}")
            self._record(tx, parent, ev.ChildRunFinished(at, decision.key, "", "failed", None, error))
            return
        child_id = ids.new_id()
        self._record(tx, parent, ev.ChildRunStarted(at, decision.key, child_id))
        trigger = {"kind": "flow", "run_id": parent.id, "step": str(decision.key)}
        parent_step = str(decision.key) if decision.wait else None
        self._create_run(tx, child_id, plan, value, "flow", trigger, parent.id, parent_step)

    def _callable(self, decision: StartChildRun, owner: str, conn: sa.Connection) -> Plan:
        """The plan a ``flow.call`` starts: a stored flow of the caller's own owner (another owner's flow is not
        found, as everywhere), not deleted, whose version lets flows call it (a ``flow`` trigger, enabled): the
        child runs with its owner's secrets, so a flow is callable only where its author said so."""
        row = conn.execute(
            sa.select(flows.c.owner_id, flows.c.latest_version, flows.c.deleted_at).where(
                flows.c.id == decision.flow_id
            )
        ).first()
        if row is None or row.owner_id != owner or row.deleted_at is not None or row.latest_version is None:
            raise FlowNotFoundError(
                f"no flow with id {decision.flow_id!r} is stored",
                hint="save that flow first (`ionflux run FILE` or the Builder), under the same owner as this one",
            )
        version = decision.version or str(row.latest_version)
        plan = self.plan(version, conn)
        if plan.flow.id != decision.flow_id:
            raise FlowNotFoundError(f"version {version} is not a version of flow {decision.flow_id!r}")
        if not any(t.type == "flow" and t.enabled for t in plan.flow.triggers):
            raise ChildRefusedError(
                f"flow {decision.flow_id!r} (version {version}) has no enabled `flow` trigger, so other flows may "
                "not call it",
                hint=f"add `- type: flow` to the triggers of {decision.flow_id!r} and save it",
            )
        return plan

    def _schedule(self, tx: _Tx, run_id: str, timer: Timer, at: datetime) -> None:
        data = timer_to_json(timer)
        stmt = self._writes.statement(
            "timer", lambda: upsert(self.postgres, timers, ("run_id", "kind", "step_key", "attempt"))
        )
        values = {"run_id": run_id, "kind": data["kind"], "step_key": data["key"], "attempt": data["attempt"]}
        tx.conn.execute(stmt, {**values, "due_at": at})
        tx.timer_at = at if tx.timer_at is None else min(tx.timer_at, at)

    # --- step rows ------------------------------------------------------------------------------------------

    def _step_rows(self, run: _Run, transition: Transition) -> dict[StepKey, dict[str, Any]]:
        state = transition.state
        keys = state.steps.keys() if transition.rewritten else transition.changed
        return {key: self._row(run, key, state.step(key)) for key in keys}

    def _row(self, run: _Run, key: StepKey, step: StepState) -> dict[str, Any]:
        row: dict[str, Any] = {
            "run_id": run.id,
            "run_attempt": step.run_attempt,
            "key": str(key),
            "attempt": step.attempt,
            "node_id": key.node,
            "node_type": run.plan.nodes[key.node].type,
            "iteration": "".join(f"{n}[{i}]." for n, i in key.frames).rstrip(".") or None,
            "status": str(step.status),
            "waiting": step.waiting,
            "started_at": step.started_at,
            "finished_at": step.finished_at,
            "error": step.error.to_dict() if step.error else None,
            "cost_cion": step.cost_cion,
            "reused": step.reused,
            "child_run_id": step.child_run_id,
            "output_preview": payloads.preview(step.output, self.config.preview_chars),
        }
        if step.waiting == "retry":
            row["status"] = str(StepStatus.FAILED)  # this attempt failed; the next one is its own row
            row["finished_at"] = self._now()
            row["state"] = "done"
        elif step.status.terminal:
            row["state"] = "done" if step.status is not StepStatus.CANCELLED else "cancelled"
        elif step.waiting is not None:
            row["state"] = "waiting"  # for a retry timer, a person, a delay or a child run: no worker involved
        return row

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)


def _row_where(run_id: str, run_attempt: int, key: str, attempt: int) -> tuple[Any, ...]:
    return (
        run_steps.c.run_id == run_id,
        run_steps.c.run_attempt == run_attempt,
        run_steps.c.key == key,
        run_steps.c.attempt == attempt,
    )
