"""The run state machine, driven through the in-memory simulation: every semantic of docs/fluxgraph.md."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.core import events as ev
from engine.core.decisions import CancelStep, FinishRun, RequestApproval, ScheduleTimer, StartChildRun, StartStep
from engine.core.machine import InvalidEvent, advance
from engine.core.simulate import EPOCH, SimulatedStep, Simulation
from engine.core.state import RunStatus, StepError, StepKey
from tests.core_helpers import BOOM, FATAL, executor, plan_of, run, statuses

HEAD = "fluxgraph: 1\nid: t\n"
B_LOG = "  - {id: b, type: log, needs: [a], with: {message: m}}\n"
B_SET = "  - {id: b, type: data.set, needs: [a], with: {x: 2}}\n"


def test_parallel_branches_join_and_outputs() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: a, type: data.set, with: {n: 1}}
  - {id: b, type: data.set, needs: [a], with: {n: "{{ nodes.a.output.n + 1 }}"}}
  - {id: c, type: data.set, needs: [a], with: {n: "{{ nodes.a.output.n + 2 }}"}}
  - {id: d, type: data.set, needs: [b, c], with: {sum: "{{ nodes.b.output.n + nodes.c.output.n }}"}}
outputs: {sum: "{{ nodes.d.output.sum }}"}
"""
    )
    sim, state = run(plan)
    assert state.status is RunStatus.SUCCEEDED and state.outputs == {"sum": 5}
    starts = [d for d in sim.decisions if isinstance(d, StartStep)]
    assert [str(d.key) for d in starts] == ["a", "b", "c", "d"]
    # b and c were started by the same event: they run in parallel
    first_after_a = [d for d in advance(plan, None, ev.RunStarted(EPOCH, "r")).decisions if isinstance(d, StartStep)]
    assert [str(d.key) for d in first_after_a] == ["a"]
    assert isinstance(sim.decisions[-1], FinishRun)


def test_if_skips_and_skips_propagate_but_joins_run() -> None:
    plan = plan_of(
        HEAD
        + """
inputs: {type: object, properties: {vip: {type: boolean}}}
nodes:
  - {id: start, type: data.set, with: {x: 1}}
  - {id: vip, type: data.set, needs: [start], if: "{{ inputs.vip }}", with: {x: 2}}
  - {id: after_vip, type: data.set, needs: [vip], with: {x: 3}}
  - {id: join, type: data.set, needs: [start, vip], with: {vip: "{{ nodes.vip.status }}"}}
"""
    )
    _, state = run(plan, {"vip": False})
    assert statuses(state) == {
        "after_vip": "skipped", "join": "succeeded", "start": "succeeded", "vip": "skipped",
    }  # fmt: skip
    assert state.steps[StepKey("join")].output == {"vip": "skipped"}
    _, state = run(plan, {"vip": True})
    assert set(statuses(state).values()) == {"succeeded"}


def test_foreach_runs_items_with_bounded_concurrency_and_ordered_outputs() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - id: loop
    type: foreach
    items: [3, 1, 2]
    concurrency: 2
    do:
      - {id: double, type: data.set, with: {v: "{{ item * 2 }}", i: "{{ index }}"}}
      - {id: tag, type: data.set, needs: [double], with: {out: "{{ nodes.double.output.v }}-{{ index }}"}}
outputs: {all: "{{ nodes.loop.output }}"}
"""
    )
    sim, state = run(plan)
    assert state.status is RunStatus.SUCCEEDED
    assert state.outputs == {"all": [{"out": "6-0"}, {"out": "2-1"}, {"out": "4-2"}]}
    # never more than 2 iterations open: item 2 starts only after an earlier iteration closed
    starts = [str(d.key) for d in sim.decisions if isinstance(d, StartStep)]
    assert starts.index("loop[2].double") > starts.index("loop[0].tag")


def test_empty_foreach_succeeds_with_an_empty_list_and_nested_loops_work() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: none, type: foreach, items: [], do: [{id: x, type: log, with: {message: never}}]}
  - id: outer
    type: foreach
    items: [[1, 2], [3]]
    do:
      - id: inner
        type: foreach
        items: "{{ item }}"
        do: [{id: leaf, type: data.set, with: {v: "{{ item * 10 }}"}}]
"""
    )
    _, state = run(plan)
    assert state.steps[StepKey("none")].output == []
    assert state.steps[StepKey("outer")].output == [[{"v": 10}, {"v": 20}], [{"v": 30}]]


def test_a_foreach_item_failing_fails_the_loop_and_cancels_open_iterations() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - id: loop
    type: foreach
    items: [1, 2, 3]
    concurrency: 3
    do: [{id: work, type: data.set, with: {v: "{{ item }}"}}]
"""
    )

    def exe(step: SimulatedStep) -> object:
        return FATAL if step.key.frames[-1][1] == 1 else step.with_

    _, state = run(plan, executor=exe)
    assert state.status is RunStatus.FAILED
    assert state.error is not None and state.error.message.startswith("item 1:")
    assert state.steps[StepKey("loop")].status == "failed"


def test_retry_with_exponential_backoff_then_success() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - id: call
    type: data.set
    with: {x: 1}
    retry: {max_attempts: 4, backoff: exponential, initial_delay: 1s, max_delay: 3s, jitter: false}
"""
    )
    sim, state = run(plan, executor=executor(fail={"call": BOOM}, fail_times={"call": 3}))
    assert state.status is RunStatus.SUCCEEDED and state.steps[StepKey("call")].attempt == 4
    timers = [d for d in sim.decisions if isinstance(d, ScheduleTimer)]
    gaps = [d.at - s.at for d, s in zip(timers, [e for e in sim.log if isinstance(e, ev.StepFailed)], strict=True)]
    assert gaps == [timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=3)]  # 1, 2, 4 capped at 3


def test_non_retryable_errors_and_exhausted_retries_fail_the_run_then_on_failure_runs() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: call, type: data.set, with: {x: 1}, retry: {max_attempts: 3}}
  - {id: after, type: data.set, needs: [call], with: {x: 2}}
on_failure:
  - {id: alert, type: data.set, with: {why: "{{ run.error.message }}"}}
"""
    )
    _, state = run(plan, executor=executor(fail={"call": FATAL}))
    assert state.status is RunStatus.FAILED and state.steps[StepKey("call")].attempt == 1
    assert statuses(state) == {"after": "cancelled", "alert": "succeeded", "call": "failed"}
    assert state.steps[StepKey("alert")].output == {"why": "HTTP 401 from api.example.com"}
    _, state = run(plan, executor=executor(fail={"call": BOOM}))
    assert state.status is RunStatus.FAILED and state.steps[StepKey("call")].attempt == 3


def test_on_error_continue_lets_dependents_see_the_error() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: flaky, type: data.set, with: {x: 1}, on_error: continue}
  - {id: next, type: data.set, needs: [flaky], with: {saw: "{{ nodes.flaky.error.code }}"}}
"""
    )
    _, state = run(plan, executor=executor(fail={"flaky": FATAL}))
    assert state.status is RunStatus.SUCCEEDED
    assert state.steps[StepKey("next")].output == {"saw": "http.status"}


def test_error_route_runs_the_handler_only_on_failure_and_skips_other_dependents() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: risky, type: data.set, with: {x: 1}, on_error: rescue}
  - {id: rescue, type: data.set, with: {why: "{{ nodes.risky.error.message }}"}}
  - {id: normal, type: data.set, needs: [risky], with: {x: 2}}
"""
    )
    _, state = run(plan, executor=executor(fail={"risky": FATAL}))
    assert state.status is RunStatus.SUCCEEDED
    assert statuses(state) == {"normal": "skipped", "rescue": "succeeded", "risky": "failed"}
    _, state = run(plan)
    assert statuses(state) == {"normal": "succeeded", "rescue": "skipped", "risky": "succeeded"}


def test_step_timeout_cancels_the_attempt_and_retries() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: slow, type: data.set, with: {x: 1}, timeout: 5s, retry: {max_attempts: 2, jitter: false}}
"""
    )
    state = advance(plan, None, ev.RunStarted(EPOCH, "r")).state
    (timer,) = [d for d in advance(plan, None, ev.RunStarted(EPOCH, "r")).decisions if isinstance(d, ScheduleTimer)]
    assert timer.at == EPOCH + timedelta(seconds=5)
    t = advance(plan, state, ev.TimerFired(timer.at, timer.timer))
    assert CancelStep(StepKey("slow"), 1) in t.decisions
    assert t.state.steps[StepKey("slow")].error == StepError("step.timeout", "no result within 5s", True)
    # the late result of the timed-out attempt changes nothing
    late = advance(plan, t.state, ev.StepSucceeded(timer.at, StepKey("slow"), 1, {"x": 1}))
    assert late.state == t.state and late.decisions == ()


def test_approval_waits_then_approves_rejects_or_times_out() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: gate, type: approval, with: {message: Send it?}, timeout: 1h, on_timeout: reject}
  - {id: send, type: data.set, needs: [gate], with: {ok: "{{ nodes.gate.output.approved }}"}}
"""
    )
    sim, state = run(plan)  # nobody answers
    assert RequestApproval(StepKey("gate"), "Send it?") in sim.decisions
    _, approved = run(plan, approvals={"gate": True})
    assert approved.status is RunStatus.SUCCEEDED and approved.steps[StepKey("send")].output == {"ok": True}
    _, rejected = run(plan, approvals={"gate": False})
    assert rejected.status is RunStatus.FAILED and rejected.error is not None
    assert rejected.error.code == "approval.rejected"
    # with no answer, the 1h timer fires and on_timeout rejects
    assert state.status is RunStatus.FAILED and state.finished_at == EPOCH + timedelta(hours=1)


def test_awaiting_approval_status_while_only_a_person_can_act() -> None:
    plan = plan_of(HEAD + "nodes:\n  - {id: gate, type: approval}\n")
    state = advance(plan, None, ev.RunStarted(EPOCH, "r")).state
    assert state.status is RunStatus.AWAITING_APPROVAL
    done = advance(plan, state, ev.ApprovalDecided(EPOCH, StepKey("gate"), True, "ana"))
    assert done.state.status is RunStatus.SUCCEEDED
    assert done.state.steps[StepKey("gate")].output["by"] == "ana"


def test_delay_is_a_durable_timer() -> None:
    plan = plan_of(HEAD + "nodes:\n  - {id: wait, type: delay, with: {duration: 90s}}\n")
    t = advance(plan, None, ev.RunStarted(EPOCH, "r"))
    (timer,) = t.decisions
    assert isinstance(timer, ScheduleTimer) and timer.at == EPOCH + timedelta(seconds=90)
    assert not any(isinstance(d, StartStep) for d in t.decisions)  # no worker sleeps
    assert advance(plan, t.state, ev.TimerFired(timer.at, timer.timer)).state.status is RunStatus.SUCCEEDED


def test_flow_call_starts_a_child_and_waits_for_it() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: sub, type: flow.call, with: {flow: child-flow, input: {n: 2}}}
  - {id: use, type: data.set, needs: [sub], with: {got: "{{ nodes.sub.output.outputs.n }}"}}
"""
    )
    calls: list[StartChildRun] = []

    def child(decision: StartChildRun) -> tuple[str, object]:
        calls.append(decision)
        return "succeeded", {"n": decision.input["n"] * 10}

    _, state = run(plan, children=child)
    assert calls[0].flow_id == "child-flow" and calls[0].wait
    assert state.status is RunStatus.SUCCEEDED and state.steps[StepKey("use")].output == {"got": 20}
    assert state.steps[StepKey("sub")].child_run_id == "child-sub"
    _, failed = run(plan, children=lambda d: ("failed", None))
    assert failed.status is RunStatus.FAILED and failed.error is not None
    assert failed.error.code == "flow.child_failed"


def test_cancel_stops_running_steps_and_finishes_cancelled() -> None:
    plan = plan_of(
        HEAD
        + "nodes:\n  - {id: a, type: data.set, with: {x: 1}}\n  - {id: b, type: log, needs: [a], with: {message: m}}\n"
    )
    state = advance(plan, None, ev.RunStarted(EPOCH, "r")).state
    t = advance(plan, state, ev.CancelRequested(EPOCH))
    assert t.state.status is RunStatus.CANCELLED
    assert CancelStep(StepKey("a"), 1) in t.decisions and FinishRun(RunStatus.CANCELLED) in t.decisions
    assert statuses(t.state) == {"a": "cancelled", "b": "cancelled"}
    assert advance(plan, t.state, ev.StepSucceeded(EPOCH, StepKey("a"), 1, {})).state == t.state


def test_pause_holds_new_steps_and_resume_starts_them() -> None:
    plan = plan_of(
        HEAD
        + "nodes:\n  - {id: a, type: data.set, with: {x: 1}}\n  - {id: b, type: data.set, needs: [a], with: {x: 2}}\n"
    )
    state = advance(plan, None, ev.RunStarted(EPOCH, "r")).state
    paused = advance(plan, state, ev.PauseRequested(EPOCH)).state
    assert paused.status is RunStatus.PAUSED
    t = advance(plan, paused, ev.StepSucceeded(EPOCH, StepKey("a"), 1, {"x": 1}))  # a was already running
    assert t.decisions == () and t.state.steps[StepKey("b")].status == "ready"
    resumed = advance(plan, t.state, ev.ResumeRequested(EPOCH))
    assert resumed.decisions == (StartStep(StepKey("b"), 1, "data.set"),)
    assert resumed.state.status is RunStatus.RUNNING


def test_duplicate_and_stale_results_change_nothing() -> None:
    plan = plan_of(
        HEAD
        + "nodes:\n  - {id: a, type: data.set, with: {x: 1}}\n  - {id: b, type: data.set, needs: [a], with: {x: 2}}\n"
    )
    state = advance(plan, None, ev.RunStarted(EPOCH, "r")).state
    once = advance(plan, state, ev.StepSucceeded(EPOCH, StepKey("a"), 1, {"x": 1}))
    twice = advance(plan, once.state, ev.StepSucceeded(EPOCH, StepKey("a"), 1, {"x": "other"}))
    assert twice.state == once.state and twice.decisions == ()
    assert advance(plan, once.state, ev.StepSucceeded(EPOCH, StepKey("a"), 7, {})).decisions == ()


def test_expression_errors_fail_the_step_with_node_field_and_cause() -> None:
    plan = plan_of(
        HEAD
        + """
nodes:
  - {id: a, type: data.set, with: {x: 1}}
  - {id: b, type: data.set, needs: [a], if: "{{ nodes.a.output.missing.deeper }}", with: {x: 2}}
"""
    )
    _, state = run(plan)
    error = state.steps[StepKey("b")].error
    assert state.status is RunStatus.FAILED and error is not None
    assert error.code == "expr.undefined" and error.message.startswith("b: `if`:") and "missing" in error.message


def test_budget_stops_the_run_before_a_step_would_exceed_it() -> None:
    plan = plan_of(
        HEAD
        + """
budget: {max_cion_per_run: 2.5}
nodes:
  - {id: one, type: llm.complete, with: {prompt: a, max_tokens: 500}}
  - {id: two, type: llm.complete, needs: [one], with: {prompt: b, max_tokens: 500}}
"""
    )
    sim = Simulation(plan, executor(results={"one": {"text": "x"}}))
    sim.feed(ev.RunStarted(EPOCH, "r"))
    sim.feed(ev.StepSucceeded(EPOCH, StepKey("one"), 1, {"text": "x"}, cost_cion=1.0))
    state = sim.state
    assert state is not None and state.status is RunStatus.FAILED
    assert state.error is not None and state.error.code == "budget.exceeded"
    assert not any(isinstance(d, StartStep) and d.key.node == "two" for d in sim.decisions)


def test_rerun_from_the_failed_step_keeps_upstream_outputs() -> None:
    text = (
        HEAD
        + """
nodes:
  - {id: fetch, type: data.set, with: {orders: [1, 2]}}
  - {id: total, type: data.set, needs: [fetch], with: {sum: "{{ nodes.fetch.output.orders | sum }}"}}
  - {id: post, type: data.set, needs: [total], with: {msg: "{{ nodes.total.output.sum }}"}}
"""
    )
    plan = plan_of(text)
    sim = Simulation(plan, executor(fail={"total": FATAL}))
    failed = sim.start()
    assert failed.status is RunStatus.FAILED
    # When the run is re-run (the fault is fixed: total now succeeds)
    sim.executor = executor()
    sim.feed(ev.RerunRequested(sim.clock))
    state = sim.drain()
    # Then fetch is not executed again, total and post are, and the run succeeds
    starts = [str(d.key) for d in sim.decisions if isinstance(d, StartStep)]
    assert starts == ["fetch", "total", "total", "post"]
    assert state.status is RunStatus.SUCCEEDED and state.attempt == 2
    assert state.steps[StepKey("fetch")].reused and not state.steps[StepKey("post")].reused


def test_rerun_on_a_newer_version_reruns_changed_nodes_and_their_dependents() -> None:
    text = (
        HEAD
        + """
nodes:
  - {id: a, type: data.set, with: {v: 1}}
  - {id: b, type: data.set, needs: [a], with: {v: 2}}
  - {id: c, type: data.set, needs: [b], with: {v: 3}}
"""
    )
    sim = Simulation(plan_of(text), executor(fail={"c": FATAL}))
    sim.start()
    sim.plan = plan_of(text.replace("{v: 2}", "{v: 20}"))  # the fix changed b
    sim.executor = executor()
    sim.feed(ev.RerunRequested(sim.clock))
    state = sim.drain()
    starts = [str(d.key) for d in sim.decisions if isinstance(d, StartStep)]
    assert starts[3:] == ["b", "c"]  # a reused; b changed, so b and everything after it run again
    assert state.status is RunStatus.SUCCEEDED and state.steps[StepKey("b")].output == {"v": 20}


def test_rerun_from_a_chosen_node_reruns_it_and_what_depends_on_it_even_after_success() -> None:
    text = (
        HEAD
        + """
nodes:
  - {id: a, type: data.set, with: {v: 1}}
  - {id: b, type: data.set, needs: [a], with: {v: 2}}
  - {id: side, type: data.set, needs: [a], with: {v: 9}}
  - {id: c, type: data.set, needs: [b], with: {v: 3}}
  - id: each
    type: foreach
    needs: [a]
    items: [1, 2]
    do:
      - {id: inner, type: data.set, with: {i: "{{ item }}"}}
"""
    )
    sim = Simulation(plan_of(text), executor())
    assert sim.start().status is RunStatus.SUCCEEDED
    before = len(sim.decisions)

    # When a succeeded run is re-run from b, then b and c run again; a, side and the loop keep their outputs
    sim.feed(ev.RerunRequested(sim.clock, from_node="b"))
    state = sim.drain()
    starts = [str(d.key) for d in sim.decisions[before:] if isinstance(d, StartStep)]
    assert sorted(starts) == ["b", "c"] and state.status is RunStatus.SUCCEEDED and state.attempt == 2

    # When it is re-run from a step inside the loop, then the whole loop runs again, nothing else
    before = len(sim.decisions)
    sim.feed(ev.RerunRequested(sim.clock, from_node="inner"))
    state = sim.drain()
    starts = [str(d.key) for d in sim.decisions[before:] if isinstance(d, StartStep)]
    assert sorted(starts) == ["each[0].inner", "each[1].inner"] and state.status is RunStatus.SUCCEEDED

    # A node that is not a main node of the version is refused
    with pytest.raises(InvalidEvent, match="cannot start at 'nope'"):
        advance(sim.plan, state, ev.RerunRequested(EPOCH, from_node="nope"))


def test_rerun_of_a_running_or_succeeded_run_is_refused() -> None:
    plan = plan_of(HEAD + "nodes:\n  - {id: a, type: data.set, with: {x: 1}}\n")
    _, state = run(plan)
    with pytest.raises(InvalidEvent, match="only failed or cancelled"):
        advance(plan, state, ev.RerunRequested(EPOCH))
    with pytest.raises(InvalidEvent):
        advance(plan, None, ev.CancelRequested(EPOCH))
