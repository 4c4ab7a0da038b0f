"""The run state machine: ``advance(plan, state, event) -> Transition(state, decisions)``.

Pure and deterministic: no database, queue, clock, randomness or environment. The adapters record each event,
call ``advance``, store the new state and carry out the decisions in one transaction, so replaying a run's
events reproduces its decisions exactly (tests/test_core_replay.py).

Semantics (docs/fluxgraph.md): nodes run when everything they need has settled; a node whose needs were all
skipped is skipped, one with at least one succeeded need runs (a join); ``if`` false skips; foreach runs its
``do`` per item with bounded concurrency and collects ordered outputs; failures retry per ``retry``, then follow
``on_error`` (fail the run, continue, or route to a handler); a failed run runs ``on_failure`` once; approvals,
delays, timeouts and retries are durable timers; ``flow.call`` starts a child run and waits for it.

Events that no longer apply (a late result for a cancelled attempt, a duplicate delivery, a timer for a
retried step) change nothing: that is what makes at-least-once delivery safe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import immutables

from engine.core import events as ev
from engine.core.backoff import retry_delay
from engine.core.context import expression_context
from engine.core.decisions import (
    CancelStep,
    Decision,
    FinishRun,
    RequestApproval,
    ScheduleTimer,
    StartChildRun,
    StartStep,
)
from engine.core.plan import MAIN, ON_FAILURE, Plan
from engine.core.state import LoopState, RunState, RunStatus, StepError, StepKey, StepState, StepStatus, Timer
from engine.dsl.duration import Duration
from engine.dsl.expression import ExpressionError, evaluate
from engine.dsl.forecast import node_forecast
from engine.dsl.model import ApprovalNode, ForeachNode

#: the longest ``Retry-After`` honoured: a service asking for more is waited on for this long, then tried
MAX_RETRY_AFTER_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Transition:
    state: RunState
    decisions: tuple[Decision, ...]
    #: the steps whose state this event changed (a store writes only these rows); ``rewritten``: all of them
    changed: tuple[StepKey, ...] = ()
    rewritten: bool = False


class InvalidEvent(ValueError):
    """Raised when an event cannot apply to a run at all (a re-run of a run still going, say)."""


def advance(plan: Plan, state: RunState | None, event: ev.Event) -> Transition:
    """Apply one event. ``state`` is None only for ``RunStarted``."""
    if isinstance(event, ev.RunStarted):
        if state is not None:
            return Transition(state, ())
        tx = _Tx(plan, _initial(plan, event), event.at)
        tx.start_scope(MAIN, ())
        return tx.finish()
    if state is None:
        raise InvalidEvent(f"{type(event).__name__} before RunStarted")
    if state.status.finished and not isinstance(event, ev.RerunRequested | ev.ChildRunFinished):
        return Transition(state, ())
    tx = _Tx(plan, state, event.at)
    tx.apply(event)
    return tx.finish()


def _initial(plan: Plan, event: ev.RunStarted) -> RunState:
    return RunState(
        run_id=event.run_id,
        version_id=plan.version_id,
        status=RunStatus.RUNNING,
        input=event.input,
        trigger=event.trigger,
        started_at=event.at,
    )


class _Tx:
    """One transition in progress: local, mutable bookkeeping that ends as a new frozen RunState."""

    def __init__(self, plan: Plan, state: RunState, at: datetime) -> None:
        self.plan = plan
        self.at = at
        self.base = state
        self.steps = state.steps.mutate()
        self.loops = state.loops.mutate()
        self.decisions: list[Decision] = []
        self.phase = state.phase
        self.settled = state.settled
        self.paused = state.paused
        self.held = list(state.held)
        self.error = state.error
        self.outputs = state.outputs
        self.spent = state.spent_cion
        self.attempt = state.attempt
        self.status = state.status
        self.finished_at = state.finished_at
        self.running = state.running
        self.approvals = state.approvals
        self.changed: dict[StepKey, None] = {}
        self.rewritten = False

    # --- state access ---------------------------------------------------------------------------------------

    def step(self, key: StepKey) -> StepState:
        return self.steps.get(key) or StepState(run_attempt=self.attempt)

    def put(self, key: StepKey, **changes: Any) -> StepState:
        old = self.step(key)
        new = replace(old, **changes)
        self.steps[key] = new
        self.changed[key] = None
        before, after = _activity(old), _activity(new)
        if before != after:  # O(1) bookkeeping for the run status (no scan of 10,000 loop steps per event)
            self.running += (after == "running") - (before == "running")
            self.approvals += (after == "approval") - (before == "approval")
        return new

    def snapshot(self) -> RunState:
        return RunState(
            run_id=self.base.run_id,
            version_id=self.plan.version_id,
            status=self.status,
            input=self.base.input,
            trigger=self.base.trigger,
            started_at=self.base.started_at,
            steps=self.steps.finish(),
            loops=self.loops.finish(),
            phase=self.phase,
            settled=self.settled,
            paused=self.paused,
            held=tuple(self.held),
            error=self.error,
            outputs=self.outputs,
            spent_cion=round(self.spent, 6),
            attempt=self.attempt,
            finished_at=self.finished_at,
            running=self.running,
            approvals=self.approvals,
        )

    def current_steps(self) -> immutables.Map[StepKey, StepState]:
        steps = self.steps.finish()
        self.steps = steps.mutate()
        return steps

    def context(self, key: StepKey) -> dict[str, Any]:
        # a snapshot shares structure with the maps being built: cheap, and the expression sees this transition
        state = self.snapshot()
        self.steps = state.steps.mutate()
        self.loops = state.loops.mutate()
        return expression_context(self.plan, state, key)

    def finish(self) -> Transition:
        if not self.status.finished:
            self.status = self._live_status()
        return Transition(self.snapshot(), tuple(self.decisions), tuple(self.changed), self.rewritten)

    def _live_status(self) -> RunStatus:
        if self.paused:
            return RunStatus.PAUSED
        if self.approvals and not self.running:
            return RunStatus.AWAITING_APPROVAL
        return RunStatus.RUNNING

    # --- events ---------------------------------------------------------------------------------------------

    def apply(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepSucceeded):
            self.on_result(event.key, event.attempt, event.output, None, event.cost_cion)
        elif isinstance(event, ev.StepFailed):
            self.on_result(event.key, event.attempt, None, event.error, event.cost_cion)
        elif isinstance(event, ev.TimerFired):
            self.on_timer(event.timer)
        elif isinstance(event, ev.ApprovalDecided):
            step = self.step(event.key)
            if step.status is StepStatus.RUNNING and step.waiting == "approval":
                self.decide_approval(event.key, event.approved, event.by, event.comment)
        elif isinstance(event, ev.ChildRunStarted):
            self.on_child_started(event)
        elif isinstance(event, ev.ChildRunFinished):
            self.on_child_finished(event)
        elif isinstance(event, ev.CancelRequested):
            self.cancel_run()
        elif isinstance(event, ev.PauseRequested):
            self.paused = True
        elif isinstance(event, ev.ResumeRequested):
            self.resume()
        elif isinstance(event, ev.RerunRequested):
            self.rerun(event.from_node)

    def on_result(self, key: StepKey, attempt: int, output: Any, error: StepError | None, cost: float) -> None:
        step = self.step(key)
        if step.status is not StepStatus.RUNNING or step.attempt != attempt or step.waiting is not None:
            return  # late, duplicated or cancelled: the recorded result stands
        self.spent += cost
        self.put(key, cost_cion=round(step.cost_cion + cost, 6))
        if error is None:
            self.succeed(key, output)
        else:
            self.attempt_failed(key, error)

    def on_timer(self, timer: Timer) -> None:
        step = self.step(timer.key)
        if timer.kind == "retry":
            if step.status is StepStatus.PENDING and step.waiting == "retry" and step.attempt + 1 == timer.attempt:
                self.put(timer.key, waiting=None)
                self.launch(timer.key)
        elif step.status is not StepStatus.RUNNING or step.attempt != timer.attempt:
            return  # the step moved on: a stale timer
        elif timer.kind == "timeout" and step.waiting is None:
            self.decisions.append(CancelStep(timer.key, step.attempt))
            timeout = self.plan.nodes[timer.key.node].timeout
            self.attempt_failed(timer.key, StepError("step.timeout", f"no result within {timeout}", retryable=True))
        elif timer.kind == "delay" and step.waiting == "timer":
            self.succeed(timer.key, None)
        elif timer.kind == "approval" and step.waiting == "approval":
            node = self.plan.nodes[timer.key.node]
            on_timeout = node.on_timeout if isinstance(node, ApprovalNode) else "reject"
            self.decide_approval(timer.key, on_timeout == "approve", None, f"timed out after {node.timeout}")

    def decide_approval(self, key: StepKey, approved: bool, by: str | None, comment: str | None) -> None:
        output = {"approved": approved, "by": by, "comment": comment, "decided_at": self.at.isoformat()}
        if approved:
            self.succeed(key, output)
        else:
            self.put(key, output=output)
            who = f" by {by}" if by else ""
            self.fail(key, StepError("approval.rejected", f"rejected{who}" + (f": {comment}" if comment else "")))

    def on_child_started(self, event: ev.ChildRunStarted) -> None:
        step = self.step(event.key)
        if step.status is not StepStatus.RUNNING or step.waiting != "child":
            return
        self.put(event.key, child_run_id=event.child_run_id)
        if self.plan.nodes[event.key.node].with_.get("wait", True) is False:  # type: ignore[union-attr]
            self.succeed(event.key, {"run_id": event.child_run_id, "status": "started", "outputs": None})

    def on_child_finished(self, event: ev.ChildRunFinished) -> None:
        step = self.step(event.key)
        if step.status is not StepStatus.RUNNING or step.waiting != "child":
            return
        if step.child_run_id and event.child_run_id != step.child_run_id:
            return  # a child of an earlier attempt (cancelled, then re-run) finishing late
        output = {"run_id": event.child_run_id, "status": event.status, "outputs": event.outputs}
        if event.status == "succeeded":
            self.succeed(event.key, output)
        else:
            self.put(event.key, output=output)
            error = event.error or StepError("flow.child_failed", f"child run {event.child_run_id} {event.status}")
            self.fail(event.key, error)

    # --- starting nodes -------------------------------------------------------------------------------------

    def start_scope(self, scope: str, frames: tuple[tuple[str, int], ...]) -> None:
        for root in self.plan.scopes[scope].roots:
            self.consider(StepKey(root, frames))

    def consider(self, key: StepKey) -> None:
        """Start, skip or reuse ``key`` if everything it waits for has settled."""
        step = self.step(key)
        reusable = step.status is StepStatus.SUCCEEDED and step.run_attempt < self.attempt
        if step.status is not StepStatus.PENDING and not reusable:
            return
        if step.waiting is not None:
            return
        prereqs = [key.sibling(p) for p in self.plan.prerequisites(key.node)]
        states = [self.step(p) for p in prereqs]
        if any(not s.status.terminal or s.run_attempt < self.attempt for s in states):
            return
        if reusable:
            if step.digest == self.plan.digests[key.node] and all(
                s.reused or s.status is StepStatus.SKIPPED for s in states
            ):
                self.put(key, run_attempt=self.attempt, reused=True)
                self.settle(key)
                return
            self.steps[key] = StepState(run_attempt=self.attempt)  # upstream changed: run it again
            self.changed[key] = None
        handled_nodes = self.plan.handles.get(key.node, ())
        pairs = list(zip(prereqs, states, strict=True))
        if any(s.status is not StepStatus.FAILED for p, s in pairs if p.node in handled_nodes):
            self.skip(key)  # an error handler runs only when the node it handles failed
            return
        needs = [s for p, s in pairs if p.node not in handled_nodes]
        if needs and all(self._blocks(s) for s in needs):
            self.skip(key)
            return
        if self.paused:
            self.put(key, status=StepStatus.READY)
            self.held.append(key)
            return
        self.begin(key)

    def _blocks(self, state: StepState) -> bool:
        """Whether a settled need withholds its dependent (which runs if any need lets it: a join)."""
        if state.status is StepStatus.SUCCEEDED:
            return False
        if state.status is StepStatus.FAILED and state.handled:
            return state.routed  # continue: dependents go on; routed to a handler: only the handler runs
        return True

    def begin(self, key: StepKey) -> None:
        node = self.plan.nodes[key.node]
        if node.if_ is not None:
            try:
                condition = evaluate(node.if_, self.context(key)) if isinstance(node.if_, str) else node.if_
            except ExpressionError as e:
                self.put(key, status=StepStatus.RUNNING, started_at=self.at)
                self.fail(key, _expression_error(key, "if", e))
                return
            if not condition:
                self.skip(key)
                return
        self.put(key, started_at=self.at, digest=self.plan.digests[key.node])
        if isinstance(node, ForeachNode):
            self.begin_loop(key, node)
        else:
            self.launch(key)

    def launch(self, key: StepKey) -> None:
        """Start the next attempt of a step (native types are carried out here)."""
        node = self.plan.nodes[key.node]
        step = self.put(key, status=StepStatus.RUNNING, attempt=self.step(key).attempt + 1, waiting=None)
        budget = self.plan.flow.budget
        if budget is not None and budget.max_cion_per_run is not None and node.type in self.plan.registry:
            forecast = node_forecast(node, self.plan.registry).cion
            if self.spent + forecast > budget.max_cion_per_run:
                message = (
                    f"starting {key} (forecast {forecast} C-ION) would exceed the run budget "
                    f"of {budget.max_cion_per_run} C-ION ({round(self.spent, 4)} spent)"
                )
                error = StepError("budget.exceeded", message)
                self.put(key, status=StepStatus.FAILED, error=error, finished_at=self.at)
                self.fail_run(error)
                return
        if node.type == "approval":
            self.put(key, waiting="approval")
            with_ = node.with_ if isinstance(node, ApprovalNode) else {}
            note = None
            if "message" in with_:
                try:  # the message may quote the run ("{{ inputs.employee }} spent …"): show it evaluated
                    note = str(evaluate(with_["message"], self.context(key)))
                except ExpressionError as e:
                    self.fail(key, _expression_error(key, "with.message", e))
                    return
            self.decisions.append(RequestApproval(key, note, tuple(with_.get("approvers", ()))))
            if node.timeout is not None:
                self.schedule("approval", key, step.attempt, node.timeout)
        elif node.type == "delay":
            try:
                duration = Duration.parse(evaluate(getattr(node, "with_", {}).get("duration"), self.context(key)))
            except (ExpressionError, ValueError) as e:
                self.fail(key, StepError("node.with_invalid", f"{key}: with.duration: {e}"))
                return
            self.put(key, waiting="timer")
            self.schedule("delay", key, step.attempt, duration)
        elif node.type == "flow.call":
            try:
                with_ = evaluate(getattr(node, "with_", {}), self.context(key))
            except ExpressionError as e:
                self.fail(key, _expression_error(key, "with", e))
                return
            self.put(key, waiting="child")
            self.decisions.append(
                StartChildRun(
                    key, with_["flow"], with_.get("version"), with_.get("input") or {}, with_.get("wait", True)
                )
            )
        else:
            self.decisions.append(StartStep(key, step.attempt, node.type))
            if node.timeout is not None:
                self.schedule("timeout", key, step.attempt, node.timeout)

    def schedule(self, kind: str, key: StepKey, attempt: int, after: Duration | timedelta) -> None:
        delta = timedelta(milliseconds=after.milliseconds) if isinstance(after, Duration) else after
        self.decisions.append(ScheduleTimer(Timer(kind, key, attempt), self.at + delta))

    # --- loops ----------------------------------------------------------------------------------------------

    def begin_loop(self, key: StepKey, node: ForeachNode) -> None:
        self.put(key, status=StepStatus.RUNNING, attempt=self.step(key).attempt + 1)
        try:
            items = evaluate(node.items, self.context(key))
        except ExpressionError as e:
            self.fail(key, _expression_error(key, "items", e))
            return
        if not isinstance(items, list | tuple):
            kind = type(items).__name__
            self.fail(key, StepError("foreach.items_not_list", f"{key}: items evaluated to {kind}, not a list"))
            return
        self.loops[key] = LoopState(tuple(items), node.concurrency)
        if not items:
            self.succeed(key, [])
            return
        self.fill_loop(key)

    def fill_loop(self, key: StepKey) -> None:
        loop = self.loops[key]
        scope = f"do:{key.node}"
        size = len(self.plan.scopes[scope].node_ids)
        while loop.open_iterations < loop.concurrency and loop.next_index < len(loop.items):
            index = loop.next_index
            loop = replace(
                loop,
                next_index=index + 1,
                open_iterations=loop.open_iterations + 1,
                remaining=loop.remaining.set(index, size),
            )
            self.loops[key] = loop
            self.start_scope(scope, key.iteration(index))
            loop = self.loops[key]  # starting may have settled nodes (skips) and changed the loop

    def iteration_settled(self, key: StepKey) -> None:
        """A node inside an iteration settled: close the iteration when it was the last one open."""
        loop_key = key.loop
        if loop_key is None or loop_key not in self.loops or self.step(loop_key).status is not StepStatus.RUNNING:
            return
        index = key.frames[-1][1]
        loop = self.loops[loop_key]
        left = loop.remaining.get(index, 0) - 1
        if left > 0:
            self.loops[loop_key] = replace(loop, remaining=loop.remaining.set(index, left))
            return
        sinks = self.plan.scopes[f"do:{loop_key.node}"].sinks
        frames = loop_key.iteration(index)
        outputs = {s: self.step(StepKey(s, frames)).output for s in sinks}
        value = outputs[sinks[0]] if len(sinks) == 1 else outputs
        loop = replace(
            loop,
            remaining=loop.remaining.delete(index),
            open_iterations=loop.open_iterations - 1,
            outputs=loop.outputs.set(index, value),
        )
        self.loops[loop_key] = loop
        if len(loop.outputs) == len(loop.items):
            self.succeed(loop_key, [loop.outputs[i] for i in range(len(loop.items))])
        else:
            self.fill_loop(loop_key)

    # --- settling -------------------------------------------------------------------------------------------

    def succeed(self, key: StepKey, output: Any) -> None:
        self.put(key, status=StepStatus.SUCCEEDED, output=output, error=None, waiting=None, finished_at=self.at)
        self.settle(key)

    def skip(self, key: StepKey) -> None:
        self.put(key, status=StepStatus.SKIPPED, finished_at=self.at, run_attempt=self.attempt)
        self.settle(key)

    def attempt_failed(self, key: StepKey, error: StepError) -> None:
        node = self.plan.nodes[key.node]
        step = self.step(key)
        policy = node.retry
        if error.retryable and policy is not None and step.attempt < policy.max_attempts:
            delay = retry_delay(policy, step.attempt, f"{self.base.run_id}:{key}")
            if error.retry_after is not None:  # the service said when: earlier would only be refused again
                delay = max(delay, timedelta(seconds=min(error.retry_after, MAX_RETRY_AFTER_SECONDS)))
            self.put(key, status=StepStatus.PENDING, waiting="retry", error=error)
            self.decisions.append(ScheduleTimer(Timer("retry", key, step.attempt + 1), self.at + delay))
            return
        self.fail(key, error)

    def fail(self, key: StepKey, error: StepError) -> None:
        """A step failed for good: follow its on_error."""
        node = self.plan.nodes[key.node]
        handled = node.on_error != "fail" or self.plan.scope_of[key.node] == ON_FAILURE
        routed = node.on_error not in ("fail", "continue")
        self.put(
            key,
            status=StepStatus.FAILED,
            error=error,
            waiting=None,
            finished_at=self.at,
            handled=handled,
            routed=routed,
        )
        if handled:
            self.settle(key)
            return
        loop_key = key.loop
        if loop_key is not None:
            self.cancel_within(loop_key)
            index = key.frames[-1][1]
            self.fail(loop_key, StepError(error.code, f"item {index}: {error.message}", error.retryable))
            return
        self.fail_run(error)

    def settle(self, key: StepKey) -> None:
        """``key`` reached a terminal status: wake what waits for it, close iterations, finish phases."""
        self.put(key, run_attempt=self.attempt)
        for dependent in self.plan.dependents.get(key.node, ()):
            self.consider(key.sibling(dependent))
        if key.frames:
            self.iteration_settled(key)
            return
        scope = self.plan.scope_of[key.node]
        if (scope == MAIN and self.phase == "main") or (scope == ON_FAILURE and self.phase == "on_failure"):
            self.settled += 1
            if self.settled == len(self.plan.scopes[scope].node_ids):
                self.phase_done()

    def phase_done(self) -> None:
        if self.phase == "on_failure":
            self.end(RunStatus.FAILED)
            return
        try:
            outputs = evaluate(self.plan.flow.outputs, self.context(StepKey("")))
        except ExpressionError as e:
            self.fail_run(StepError("run.outputs_failed", f"outputs: {e.message}"))
            return
        self.outputs = outputs
        self.end(RunStatus.SUCCEEDED)

    def end(self, status: RunStatus) -> None:
        self.status = status
        self.finished_at = self.at
        self.decisions.append(FinishRun(status, self.outputs if status is RunStatus.SUCCEEDED else None, self.error))

    def fail_run(self, error: StepError) -> None:
        if self.phase != "main" or self.status.finished:
            return
        self.error = error
        self.cancel_within(None)
        self.phase = "on_failure"
        self.settled = 0
        if not self.plan.scopes[ON_FAILURE].node_ids:
            self.end(RunStatus.FAILED)
            return
        self.start_scope(ON_FAILURE, ())

    def cancel_within(self, loop_key: StepKey | None) -> None:
        """Cancel every unsettled step of one loop's iterations, or of the whole main phase."""
        for key, step in list(self.current_steps().items()):
            if step.status.terminal or self.plan.scope_of[key.node] == ON_FAILURE:
                continue
            if loop_key is not None and not _inside(key, loop_key):
                continue
            if step.status is StepStatus.RUNNING and step.waiting is None:
                self.decisions.append(CancelStep(key, step.attempt))
            self.put(key, status=StepStatus.CANCELLED, waiting=None, finished_at=self.at)
        if loop_key is None:
            self.held = []
            for node_id in self.plan.scopes[MAIN].node_ids:  # never started: cancelled, not pending forever
                if not self.step(StepKey(node_id)).status.terminal:
                    self.put(StepKey(node_id), status=StepStatus.CANCELLED, finished_at=self.at)

    def cancel_run(self) -> None:
        self.cancel_within(None)
        for key, step in list(self.current_steps().items()):  # on_failure steps too, if they were running
            if not step.status.terminal:
                if step.status is StepStatus.RUNNING and step.waiting is None:
                    self.decisions.append(CancelStep(key, step.attempt))
                self.put(key, status=StepStatus.CANCELLED, waiting=None, finished_at=self.at)
        self.paused = False
        self.end(RunStatus.CANCELLED)

    def resume(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for key in held:
            if self.step(key).status is StepStatus.READY:
                self.put(key, status=StepStatus.PENDING)
                self.begin(key)

    # --- re-run ---------------------------------------------------------------------------------------------

    def rerun(self, from_node: str | None = None) -> None:
        if not self.status.finished or (self.status is RunStatus.SUCCEEDED and from_node is None):
            raise InvalidEvent(f"run {self.base.run_id} is {self.status}: only failed or cancelled runs re-run")
        again = self.downstream(from_node) if from_node is not None else frozenset()
        old = self.base
        self.attempt = old.attempt + 1
        kept: immutables.MapMutation[StepKey, StepState] = immutables.Map[StepKey, StepState]().mutate()
        for key, step in old.steps.items():
            node = self.plan.nodes.get(key.node)
            if key.node in again or any(loop in again for loop, _ in key.frames):
                continue
            if step.status is StepStatus.SUCCEEDED and node is not None and self.plan.scope_of[key.node] != ON_FAILURE:
                kept[key] = replace(step, reused=False)
        self.steps = kept
        self.rewritten = True
        self.running = self.approvals = 0
        self.loops = immutables.Map().mutate()
        self.phase, self.settled, self.error, self.outputs = "main", 0, None, None
        self.status, self.finished_at, self.paused, self.held = RunStatus.RUNNING, None, False, []
        self.start_scope(MAIN, ())

    def downstream(self, node_id: str) -> frozenset[str]:
        """``node_id`` (its outermost foreach, if it is inside one) and every node that depends on it, however
        indirectly."""
        if node_id not in self.plan.nodes or self.plan.scope_of[node_id] == ON_FAILURE:
            raise InvalidEvent(f"a re-run cannot start at {node_id!r}: it is not a main node of this version")
        while (loop := self.plan.loop_of_scope.get(self.plan.scope_of[node_id])) is not None:
            node_id = loop
        found, todo = {node_id}, [node_id]
        while todo:
            for dependent in self.plan.dependents.get(todo.pop(), ()):
                if dependent not in found:
                    found.add(dependent)
                    todo.append(dependent)
        return frozenset(found)


def _expression_error(key: StepKey, field: str, error: ExpressionError) -> StepError:
    return StepError(error.code, f"{key}: `{field}`: {error.message}")


def _activity(step: StepState) -> str:
    if step.status is not StepStatus.RUNNING:
        return ""
    return "approval" if step.waiting == "approval" else "running"


def _inside(key: StepKey, loop_key: StepKey) -> bool:
    """Whether ``key`` runs inside an iteration of the foreach step ``loop_key``."""
    depth = len(loop_key.frames)
    return len(key.frames) > depth and key.frames[:depth] == loop_key.frames and key.frames[depth][0] == loop_key.node
