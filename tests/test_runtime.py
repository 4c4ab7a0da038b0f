"""The durable runtime, end to end: the same scenarios on SQLite + in-process broker and PostgreSQL + Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.core.state import RunStatus, StepKey
from engine.dsl.inputs import RunInputError
from engine.runtime import flow_queries, queries
from engine.runtime.orchestrator import Orchestrator, RunNotFoundError, RunRefusedError
from engine.runtime.runtime import Runtime
from engine.store.tables import LOCAL_OWNER, approvals, owners, run_events, run_steps, runs, timers
from tests.runtime_helpers import BACKENDS, flow, run_flow, running


@pytest.fixture(params=BACKENDS)
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    with running(request.param, tmp_path) as runtime:
        yield runtime


def outputs(runtime: Runtime, run_id: str) -> Any:
    summary = queries.find_run(runtime.db, run_id)
    assert summary is not None
    return summary.outputs


def events(runtime: Runtime, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    with runtime.db.begin() as conn:
        rows = conn.execute(
            sa.select(run_events.c.kind, run_events.c.data)
            .where(run_events.c.run_id == run_id)
            .order_by(run_events.c.seq)
        )
        return [(kind, data) for kind, data in rows]


def steps(runtime: Runtime, run_id: str) -> dict[str, queries.StepRecord]:
    return {s.key: s for s in queries.run_steps_of(runtime.db, run_id)}


LINEAR = """
fluxgraph: 1
id: linear
inputs:
  type: object
  properties:
    n: {type: integer, default: 3}
nodes:
  - id: a
    type: data.set
    with: {value: "{{ inputs.n * 2 }}"}
  - id: b
    type: text.template
    needs: [a]
    with: {template: "a was {{ nodes.a.output.value }}"}
  - id: c
    type: data.set
    needs: [a]
    if: "{{ inputs.n > 100 }}"
    with: {never: true}
outputs:
  text: "{{ nodes.b.output.text }}"
  c: "{{ nodes.c.status }}"
"""


def test_linear_flow_records_run_steps_and_events(rt: Runtime) -> None:
    run_id, status = run_flow(rt, LINEAR, {"n": 4})
    assert status == "succeeded"
    assert outputs(rt, run_id) == {"text": "a was 8", "c": "skipped"}
    recorded = steps(rt, run_id)
    assert {k: s.status for k, s in recorded.items()} == {"a": "succeeded", "b": "succeeded", "c": "skipped"}
    assert recorded["a"].output_preview == '{"value":8}'
    assert recorded["b"].input_preview == '{"template":"a was 8"}'
    kinds = [kind for kind, _ in events(rt, run_id)]
    assert kinds == ["run_started", "step_succeeded", "step_succeeded"]
    summary = queries.find_run(rt.db, run_id)
    assert summary is not None and summary.finished_at is not None and summary.input == {"n": 4}


def test_invalid_input_is_refused_before_a_run_exists(rt: Runtime) -> None:
    _, version = rt.orchestrator.save_flow(flow(LINEAR), "linear.yaml")
    with pytest.raises(RunInputError, match=r"inputs\.n: 'x' is not of type 'integer'"):
        rt.orchestrator.start_run(version, {"n": "x"})
    with rt.db.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar() == 0


def test_a_type_without_executor_is_refused_with_the_node_named(rt: Runtime) -> None:
    text = """
    fluxgraph: 1
    id: needs-sandbox
    nodes:
      - id: tell
        type: test.unbuilt
        with: {}
    """
    with pytest.raises(RunRefusedError, match=r"no executor for 'test.unbuilt' \(node 'tell'\)"):
        rt.orchestrator.save_flow(flow(text), "needs-sandbox.yaml")


def test_expression_error_fails_the_step_naming_node_field_expression_and_cause(rt: Runtime) -> None:
    text = """
    fluxgraph: 1
    id: bad-expr
    nodes:
      - id: a
        type: data.set
        with: {n: 0}
      - id: b
        type: data.set
        needs: [a]
        with: {ratio: "{{ 10 / nodes.a.output.n }}"}
    """
    run_id, status = run_flow(rt, text)
    assert status == "failed"
    error = steps(rt, run_id)["b"].error
    assert error is not None
    assert error["message"].startswith("b: with.ratio: '{{ 10 / nodes.a.output.n }}': ")
    assert "division by zero" in error["message"]


def test_foreach_keeps_order_with_concurrency(rt: Runtime) -> None:
    text = """
    fluxgraph: 1
    id: loop
    nodes:
      - id: each
        type: foreach
        items: "{{ [0.03, 0.0, 0.02, 0.0, 0.01, 0.0] }}"
        concurrency: 3
        do:
          - id: nap
            type: test.sleep
            with: {seconds: "{{ item }}", value: "{{ index }}"}
    outputs:
      order: "{{ nodes.each.output | map(attribute='value') | list }}"
    """
    run_id, status = run_flow(rt, text)
    assert status == "succeeded"
    assert outputs(rt, run_id) == {"order": [0, 1, 2, 3, 4, 5]}
    assert len([s for s in steps(rt, run_id).values() if s.iteration]) == 6


def test_retry_waits_on_a_durable_timer_then_succeeds(rt: Runtime, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    text = f"""
    fluxgraph: 1
    id: retry
    nodes:
      - id: shaky
        type: test.flaky
        retry: {{max_attempts: 3, backoff: constant, initial_delay: 200ms, jitter: false}}
        with: {{succeed_on: 3, journal: "{journal}"}}
    outputs:
      attempt: "{{{{ nodes.shaky.output.attempt }}}}"
    """
    started = time.monotonic()
    run_id, status = run_flow(rt, text)
    assert status == "succeeded"
    assert time.monotonic() - started >= 0.4  # two 200 ms retry delays
    assert outputs(rt, run_id) == {"attempt": 3}
    history = queries.run_steps_of(rt.db, run_id, history=True)
    assert [(s.attempt, s.status) for s in history] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert history[-1].logs == [["info", "succeeded on attempt 3"]]
    assert journal.read_text().count("start") == 3


def test_timeout_fails_the_attempt_and_ignores_its_late_result(rt: Runtime) -> None:
    text = """
    fluxgraph: 1
    id: slow
    nodes:
      - id: nap
        type: test.sleep
        timeout: 200ms
        with: {seconds: 1.0}
    """
    run_id, status = run_flow(rt, text)
    assert status == "failed"
    assert steps(rt, run_id)["nap"].error["code"] == "step.timeout"  # type: ignore[index]
    time.sleep(1.0)  # the sleeping thread finishes and reports: nothing changes
    assert [k for k, _ in events(rt, run_id)].count("step_succeeded") == 0


def test_delay_is_a_durable_timer(rt: Runtime) -> None:
    text = """
    fluxgraph: 1
    id: delayed
    nodes:
      - id: wait
        type: delay
        with: {duration: 300ms}
      - id: after
        type: data.set
        needs: [wait]
        with: {done: true}
    """
    started = time.monotonic()
    run_id, status = run_flow(rt, text)
    assert status == "succeeded"
    assert time.monotonic() - started >= 0.3
    assert "timer_fired" in [k for k, _ in events(rt, run_id)]
    with rt.db.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(timers)).scalar() == 0


APPROVAL = """
fluxgraph: 1
id: approve-me
nodes:
  - id: gate
    type: approval
    with: {message: "Ship it?"}
  - id: ship
    type: data.set
    needs: [gate]
    with: {shipped: true}
outputs:
  shipped: "{{ nodes.ship.output.shipped }}"
"""


@pytest.mark.parametrize("approved", [True, False])
def test_approval_waits_for_a_person(rt: Runtime, approved: bool) -> None:
    run_id, status = run_flow(rt, APPROVAL)
    assert status == "awaiting_approval"
    assert queries.pending_approvals(rt.db, run_id) == [{"step": "gate", "message": "Ship it?", "approvers": []}]
    rt.orchestrator.approve(run_id, approved, by="ana", comment="ok" if approved else "not today")
    final = rt.wait(run_id, 30)
    if approved:
        assert final is RunStatus.SUCCEEDED
        assert outputs(rt, run_id) == {"shipped": True}
    else:
        assert final is RunStatus.FAILED
        assert steps(rt, run_id)["gate"].error == {
            "code": "approval.rejected",
            "message": "rejected by ana: not today",
            "retryable": False,
        }
    assert queries.pending_approvals(rt.db, run_id) == []
    with pytest.raises(RunRefusedError, match="no approval matches"):
        rt.orchestrator.approve(run_id)


def test_flow_call_starts_a_linked_child_run_and_waits(rt: Runtime) -> None:
    child = """
    fluxgraph: 1
    id: child
    triggers: [{type: flow}]
    inputs:
      type: object
      properties:
        x: {type: integer}
      required: [x]
    nodes:
      - id: double
        type: data.set
        with: {y: "{{ inputs.x * 2 }}"}
    outputs:
      y: "{{ nodes.double.output.y }}"
    """
    parent = """
    fluxgraph: 1
    id: parent
    nodes:
      - id: call
        type: flow.call
        with: {flow: child, input: {x: 21}}
    outputs:
      y: "{{ nodes.call.output.outputs.y }}"
    """
    rt.orchestrator.save_flow(flow(child), "child.yaml")
    run_id, status = run_flow(rt, parent)
    assert status == "succeeded"
    assert outputs(rt, run_id) == {"y": 42}
    child_id = steps(rt, run_id)["call"].child_run_id
    assert child_id
    child_run = queries.find_run(rt.db, child_id)
    assert child_run is not None and child_run.parent_run_id == run_id and child_run.trigger_kind == "flow"
    # a child whose input is invalid fails the calling step, with the reason
    bad = parent.replace("x: 21", "x: nope").replace("id: parent", "id: parent-bad")
    run_id, status = run_flow(rt, bad)
    assert status == "failed"
    assert "inputs.x: 'nope' is not of type 'integer'" in steps(rt, run_id)["call"].error["message"]  # type: ignore[index]


def test_flow_call_reaches_only_the_owners_own_flows_that_let_flows_call_them(rt: Runtime) -> None:
    """A child runs with its owner's secrets: another owner's flow is not found (as everywhere), and a flow of one's
    own is callable only if it says so with a `flow` trigger."""
    with rt.db.begin() as conn:
        conn.execute(owners.insert().values(id="rui", name="Rui", created_at=datetime.now(UTC)))
    callable_child = """
    fluxgraph: 1
    id: CHILD
    triggers: [{type: flow}]
    nodes:
      - {id: hello, type: data.set, with: {said: hi}}
    outputs:
      said: "{{ nodes.hello.output.said }}"
    """
    rt.orchestrator.save_flow(flow(callable_child.replace("CHILD", "ruis-child")), owner="rui")
    rt.orchestrator.save_flow(
        flow(callable_child.replace("CHILD", "quiet-child").replace("triggers: [{type: flow}]", ""))
    )

    def call(child: str) -> tuple[str, dict[str, Any] | None]:
        text = f"""
        fluxgraph: 1
        id: calls-{child}
        nodes:
          - {{id: call, type: flow.call, with: {{flow: {child}}}}}
        """
        run_id, status = run_flow(rt, text)
        step = steps(rt, run_id)["call"]
        assert (step.child_run_id is None) == (status == "failed")  # a refused call starts no child run
        return status, step.error

    # Rui's flow lets flows call it, but not the local owner's
    status, error = call("ruis-child")
    assert status == "failed" and error is not None and error["code"] == "flow.not_found"
    assert "'ruis-child'" in error["message"] and "rui" not in error["message"].replace("ruis-child", "")
    # The local owner's own flow without a flow trigger is refused, with the fix
    status, error = call("quiet-child")
    assert status == "failed" and error is not None and error["code"] == "flow.not_callable"
    assert "add `- type: flow` to the triggers of 'quiet-child'" in error["message"]
    # A deleted flow is gone for flow.call too
    rt.orchestrator.save_flow(flow(callable_child.replace("CHILD", "gone-child")))
    assert call("gone-child")[0] == "succeeded"
    assert flow_queries.soft_delete(rt.db, LOCAL_OWNER, "gone-child")
    status, error = call("gone-child")
    assert status == "failed" and error is not None and error["code"] == "flow.not_found"


def test_cancel_pause_and_resume(rt: Runtime) -> None:
    text = """
    fluxgraph: 1
    id: long
    nodes:
      - id: one
        type: test.sleep
        with: {seconds: 0.3}
      - id: two
        type: test.sleep
        needs: [one]
        with: {seconds: 0.05}
    """
    _, version = rt.orchestrator.save_flow(flow(text), "long.yaml")
    run_id = rt.orchestrator.start_run(version)
    rt.orchestrator.pause(run_id)
    assert rt.wait(run_id, 10) is RunStatus.PAUSED
    deadline = time.monotonic() + 10
    while steps(rt, run_id)["one"].status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.02)  # a running step finishes...
    time.sleep(0.2)
    assert rt.status(run_id) is RunStatus.PAUSED  # ...and nothing new starts
    assert "two" not in steps(rt, run_id) or steps(rt, run_id)["two"].status != "succeeded"
    rt.orchestrator.resume(run_id)
    assert rt.wait(run_id, 10) is RunStatus.SUCCEEDED

    run_id = rt.orchestrator.start_run(version)
    rt.orchestrator.cancel(run_id, by="ana")
    assert rt.wait(run_id, 10) is RunStatus.CANCELLED
    assert {s.status for s in steps(rt, run_id).values()} == {"cancelled"}
    with pytest.raises(RunNotFoundError):
        rt.orchestrator.cancel("nope")


def test_rerun_from_the_failed_step_on_a_newer_version_keeps_upstream_outputs(rt: Runtime, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    broken = f"""
    fluxgraph: 1
    id: fixable
    nodes:
      - id: fetch
        type: test.sleep
        with: {{seconds: 0, value: 7, journal: "{journal}"}}
      - id: use
        type: test.flaky
        needs: [fetch]
        with: {{succeed_on: 0, value: "{{{{ nodes.fetch.output.value }}}}"}}
    outputs:
      value: "{{{{ nodes.use.output.value }}}}"
    """
    run_id, status = run_flow(rt, broken)
    assert status == "failed"
    with pytest.raises(RunRefusedError, match="belongs to flow"):
        _, other = rt.orchestrator.save_flow(flow(LINEAR), "linear.yaml")
        rt.orchestrator.rerun(run_id, other)
    _, fixed = rt.orchestrator.save_flow(flow(broken.replace("succeed_on: 0", "succeed_on: 1")), "fixed.yaml")
    rt.orchestrator.rerun(run_id, fixed)
    assert rt.wait(run_id, 30) is RunStatus.SUCCEEDED
    assert outputs(rt, run_id) == {"value": 7}
    assert journal.read_text().count("start") == 1  # fetch was not executed again
    summary = queries.find_run(rt.db, run_id)
    assert summary is not None and summary.attempt == 2 and summary.version_id == fixed
    with pytest.raises(RunRefusedError, match="only failed or cancelled runs re-run"):
        rt.orchestrator.rerun(run_id)


def test_large_outputs_go_to_the_blob_store_and_limits_are_enforced(tmp_path: Path) -> None:
    text = """
    fluxgraph: 1
    id: big
    inputs:
      type: object
      properties:
        size: {type: integer}
    nodes:
      - id: make
        type: test.big
        with: {size: "{{ inputs.size }}"}
    outputs:
      length: "{{ nodes.make.output.blob | length }}"
    """
    with running("embedded", tmp_path, inline_payload_bytes=1000, max_payload_bytes=100_000) as rt:
        run_id, status = run_flow(rt, text, {"size": 5000})
        assert status == "succeeded"
        assert outputs(rt, run_id) == {"length": 5000}
        record = steps(rt, run_id)["make"]
        assert record.output_ref is not None and record.output_ref.startswith("sha256:")
        assert record.output_preview is not None and len(record.output_preview) <= rt.config.preview_chars
        stored = next(d for k, d in events(rt, run_id) if k == "step_succeeded")["output"]
        assert stored == {"$blob": record.output_ref}
        # a fresh process rebuilds the run from its events (and the blob) exactly
        fresh = Orchestrator(rt.db, rt.config, rt.orchestrator.registry, rt.orchestrator.executors, "other")
        assert fresh.state(run_id) == rt.orchestrator.state(run_id)

        run_id, status = run_flow(rt, text, {"size": 200_000})
        assert status == "failed"
        error = steps(rt, run_id)["make"].error
        assert error is not None and error["code"] == "payload.too_large"
        assert "over the limit of 100,000 bytes" in error["message"]


def test_secrets_reach_the_step_but_never_previews_logs_or_errors(rt: Runtime) -> None:
    rt.orchestrator.secrets.set("api_token", "s3cr3t-value")
    text = """
    fluxgraph: 1
    id: uses-secret
    secrets: [api_token]
    nodes:
      - id: say
        type: log
        with: {message: "token is {{ secrets.api_token }}"}
      - id: keep
        type: data.set
        needs: [say]
        with: {auth: "Bearer {{ secrets.api_token }}"}
    """
    run_id, status = run_flow(rt, text)
    assert status == "succeeded"
    recorded = steps(rt, run_id)
    assert recorded["say"].logs == [["info", "token is ***"]]
    assert recorded["keep"].input_preview == '{"auth":"Bearer ***"}'
    with rt.db.begin() as conn:
        raw = conn.execute(sa.select(sa.func.count()).select_from(run_steps)).scalar()
        assert raw == 2
    assert rt.orchestrator.secrets.names() == ["api_token"]


def test_missing_secret_fails_the_step_and_says_how_to_set_it(rt: Runtime) -> None:
    text = """
    fluxgraph: 1
    id: missing-secret
    secrets: [absent]
    nodes:
      - id: say
        type: log
        with: {message: "{{ secrets.absent }}"}
    """
    run_id, status = run_flow(rt, text)
    assert status == "failed"
    message = steps(rt, run_id)["say"].error["message"]  # type: ignore[index]
    assert message.startswith("say: with.message:")
    assert "secrets not set: absent; set them with `ionflux secrets set NAME`" in message


def test_duplicate_and_late_doorbells_never_double_a_result(rt: Runtime) -> None:
    run_id, status = run_flow(rt, LINEAR)
    assert status == "succeeded"
    before = events(rt, run_id)
    for _ in range(3):  # redelivered messages for finished steps
        rt.handle(run_id, "a", 1)
        rt.handle(run_id, "b", 1)
    assert events(rt, run_id) == before


def test_a_lost_doorbell_is_rung_again_by_the_reconciler(rt: Runtime) -> None:
    ring = rt.orchestrator.doorbell
    lost: list[tuple[str, str, int]] = []
    rt.orchestrator.doorbell = lambda *message: lost.append(message)  # the broker drops the first message
    _, version = rt.orchestrator.save_flow(flow(LINEAR), "linear.yaml")
    run_id = rt.orchestrator.start_run(version)
    assert lost == [(run_id, "a", 1)]
    rt.orchestrator.doorbell = ring
    assert rt.wait(run_id, 15) is RunStatus.SUCCEEDED  # requeue_after is 1 s in tests


def test_steps_claimed_by_a_dead_worker_are_requeued(rt: Runtime) -> None:
    _, version = rt.orchestrator.save_flow(flow(LINEAR), "linear.yaml")
    rt.orchestrator.doorbell = lambda *message: None
    run_id = rt.orchestrator.start_run(version)
    ghost = Orchestrator(rt.db, rt.config, rt.orchestrator.registry, rt.orchestrator.executors, "ghost-worker")
    assert ghost.claim(run_id, "a", 1) is not None  # claimed...
    assert ghost.claim(run_id, "a", 1, frozenset({f"{run_id}/a#1"})) is None  # not twice while it runs it...
    assert ghost.claim(run_id, "a", 1) is not None  # ...but its own claim is free to it otherwise (given back)
    # then the ghost "dies" (never heartbeats)
    assert rt.orchestrator.claim(run_id, "a", 1) is None  # a live claim is respected...
    rt.orchestrator.doorbell = rt.doorbell.ring
    assert rt.wait(run_id, 15) is RunStatus.SUCCEEDED  # ...until the reconciler finds its worker silent
    assert [k for k, _ in events(rt, run_id)].count("step_succeeded") == 2


def test_rerun_asks_for_the_approval_again(rt: Runtime) -> None:
    run_id, status = run_flow(rt, APPROVAL)
    assert status == "awaiting_approval"
    rt.orchestrator.approve(run_id, False, by="ana")
    assert rt.wait(run_id, 30) is RunStatus.FAILED
    before = {s.key: s.status for s in queries.run_steps_of(rt.db, run_id)}
    rt.orchestrator.rerun(run_id)
    assert rt.wait(run_id, 30) is RunStatus.AWAITING_APPROVAL
    assert queries.pending_approvals(rt.db, run_id) == [{"step": "gate", "message": "Ship it?", "approvers": []}]
    # the steps show this attempt: the gate waits, and `ship` is not shown as the first attempt left it
    now = {s.key: (s.status, s.run_attempt) for s in queries.run_steps_of(rt.db, run_id)}
    assert before.get("ship") in (None, "cancelled") and now == {"gate": ("running", 2)}
    assert len(queries.run_steps_of(rt.db, run_id, history=True)) > len(now)  # the history keeps everything
    rt.orchestrator.approve(run_id, True, by="ana")
    assert rt.wait(run_id, 30) is RunStatus.SUCCEEDED


def test_a_step_cancelled_in_the_transaction_that_started_it_never_runs(rt: Runtime, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    text = f"""
    fluxgraph: 1
    id: doomed-branch
    nodes:
      - id: a
        type: data.set
        with: {{v: 1}}
      - id: b
        type: test.sleep
        needs: [a]
        with: {{seconds: 0, journal: "{journal}"}}
      - id: c
        type: flow.call
        needs: [a]
        with: {{flow: no-such-flow}}
    """
    run_id, status = run_flow(rt, text)
    assert status == "failed"
    assert steps(rt, run_id)["c"].error["code"] == "flow.not_found"  # type: ignore[index]
    time.sleep(0.3)
    assert not journal.exists()  # b was started and cancelled by the same event: nobody ran it


def test_cancelling_a_parent_cancels_the_child_it_waits_for(rt: Runtime) -> None:
    rt.orchestrator.save_flow(
        flow("""
        fluxgraph: 1
        id: slow-child
        triggers: [{type: flow}]
        nodes:
          - id: nap
            type: test.sleep
            with: {seconds: 0.5}
          - id: after
            type: data.set
            needs: [nap]
            with: {done: true}
        """),
        "slow-child.yaml",
    )
    _, version = rt.orchestrator.save_flow(
        flow("""
        fluxgraph: 1
        id: waits
        nodes:
          - id: call
            type: flow.call
            with: {flow: slow-child}
        """),
        "waits.yaml",
    )
    run_id = rt.orchestrator.start_run(version)
    deadline = time.monotonic() + 10
    while not (steps(rt, run_id).get("call") and steps(rt, run_id)["call"].child_run_id):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child_id = steps(rt, run_id)["call"].child_run_id
    rt.orchestrator.cancel(run_id)
    assert rt.wait(run_id, 10) is RunStatus.CANCELLED
    assert child_id is not None and rt.wait(child_id, 10) is RunStatus.CANCELLED


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("tuple", [1, 2]), ("int_keys", {"1": "one"}), ("set", [1, 2]), ("nan", "step.output_invalid")],
)
def test_outputs_continue_as_json_gives_them_back(rt: Runtime, kind: str, expected: Any) -> None:
    text = f"""
    fluxgraph: 1
    id: awkward-{kind.replace("_", "-")}
    nodes:
      - id: make
        type: test.returns
        with: {{kind: {kind}}}
    outputs:
      value: "{{{{ nodes.make.output }}}}"
    """
    run_id, status = run_flow(rt, text)
    if isinstance(expected, str):
        assert status == "failed"
        assert steps(rt, run_id)["make"].error["code"] == expected  # type: ignore[index]
    else:
        assert status == "succeeded"
        assert outputs(rt, run_id) == {"value": expected}
        assert rt.orchestrator.state(run_id).step(StepKey("make")).output == expected  # what a replay sees


def test_secrets_are_scrubbed_in_json_escaped_form_too(rt: Runtime) -> None:
    rt.orchestrator.secrets.set("pem", 'line one\nline "two"')
    text = """
    fluxgraph: 1
    id: pem
    secrets: [pem]
    nodes:
      - id: keep
        type: data.set
        with: {key: "{{ secrets.pem }}"}
    """
    run_id, status = run_flow(rt, text)
    assert status == "succeeded"
    assert steps(rt, run_id)["keep"].input_preview == '{"key":"***"}'


def test_approval_timeouts_close_the_request_and_timers_do_not_outlive_steps(rt: Runtime) -> None:
    text = """
    fluxgraph: 1
    id: nobody-answers
    nodes:
      - id: gate
        type: approval
        timeout: 200ms
        on_timeout: approve
        with: {message: "anyone?"}
      - id: quick
        type: data.set
        timeout: 30s
        needs: [gate]
        with: {ok: true}
    """
    _, version = rt.orchestrator.save_flow(flow(text), "nobody-answers.yaml")
    run_id = rt.orchestrator.start_run(version)
    assert rt.wait(run_id, 10, until_idle=False) is RunStatus.SUCCEEDED
    assert queries.pending_approvals(rt.db, run_id) == []
    with rt.db.begin() as conn:
        decided = conn.execute(sa.select(approvals.c.decided_by, approvals.c.approved)).all()
        assert [tuple(row) for row in decided] == [("timeout", True)]
        assert conn.execute(sa.select(sa.func.count()).select_from(timers)).scalar() == 0


def test_closing_a_scale_out_runtime_closes_its_redis_connections(tmp_path: Path) -> None:
    # Dramatiq's RedisBroker.close() does nothing; sockets left to the garbage collector surface later as
    # ResourceWarnings in unrelated code
    import gc
    import warnings

    with running("postgres+redis", tmp_path) as runtime:
        assert run_flow(runtime, LINEAR)[1] == "succeeded"
        pool = runtime.doorbell.broker.client.connection_pool  # type: ignore[attr-defined]
        assert pool._created_connections > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert all(c._sock is None for c in [*pool._available_connections, *pool._in_use_connections])
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
