"""Self-healing: the rules' diagnoses and fixes, the proof by replay, resuming from the failed step without paying
twice upstream (LLM and HTTP calls counted), a model's fix for what the rules cannot fix (scripted LLM), and the
seeded failure suite's scores with and without a model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from copilot.diagnosis import closest_path, closest_reference, diagnose
from copilot.healing import HealError, apply, heal
from copilot.structured import ModelChoice
from engine.core.state import StepError
from engine.runtime.failures import FailedStep, FailureError, safe_to_repeat
from engine.runtime.runtime import Runtime
from engine.steps.sandbox import Limits
from engine.steps.wasm import SandboxPolicy
from evals.heal import Case, Upstream, evaluate, load_cases, rules_healer
from tests import llm_script
from tests.llm_script import Script
from tests.runtime_helpers import TYPO, flow, running

SCRIPTED = ModelChoice("scripted/any", mode="json")


def failed(code: str, message: str, node: dict[str, Any], context: dict[str, Any] | None = None, **kw: Any) -> Any:
    """A failed step as engine.runtime.failures records it (for the rules, which read only these facts)."""
    return FailedStep(
        run_id="r1",
        flow_id="f",
        version_id="v",
        owner_id="local",
        key=str(node["id"]),
        node_id=str(node["id"]),
        node_type=str(node.get("type", "log")),
        error=StepError(code, message),
        attempts=kw.pop("attempts", 1),
        node=node,
        source="",
        context=context or {},
        input_preview=None,
        logs=(),
        **kw,
    )


# --- the facts a fix is made of -----------------------------------------------------------------------------


def test_the_closest_path_and_reference_exist_in_the_recorded_data() -> None:
    data = {"summary": {"total": 3, "count": 1}, "lines": [{"quantity": 2}]}
    assert closest_path(data, "summary.totl") == "summary.total"
    assert closest_path(data, "lines.0.quantiy") == "lines.0.quantity"
    assert closest_path(data, "summary.zzzz") is None  # nothing close: no guess
    context = {"inputs": {"email": "a@b.c"}, "nodes": {"fetch": {"output": {"body": {"posts": [{"title": "x"}]}}}}}
    assert closest_reference("inputs.emial", context) == "inputs.email"
    assert closest_reference("nodes.fetch.output.body.posts[0].titel", context) == (
        "nodes.fetch.output.body.posts[0].title"
    )
    assert closest_reference("nodes.fetch.output.body.nothing_like_it", context) is None


# --- the rules ----------------------------------------------------------------------------------------------


def test_a_refused_credential_names_the_secret_and_asks_a_person() -> None:
    node = {"id": "get", "type": "http.request", "with": {"auth": {"type": "bearer", "token": "{{ secrets.crm }}"}}}
    d = diagnose(failed("http.status", "get: GET http://x/a answered 401: denied", node, http_status=401))
    assert d.cause == "credentials" and d.fix is not None and not d.fix.edits_flow
    assert d.fix.action == "ionflux secrets set crm" and "crm" in d.detail


def test_missing_secrets_are_each_named_once_with_their_commands() -> None:
    message = (
        "a: with.h: '{{ secrets.crm }}': 'crm' is undefined in '{{ secrets.crm }}' (secrets not set: crm, erp; set…)"
    )
    d = diagnose(failed("expr.undefined", message, {"id": "a", "type": "http.request"}))
    assert d.cause == "secret_missing" and d.summary == "the secrets crm, erp are not set"
    assert d.fix is not None and d.fix.action == "ionflux secrets set crm && ionflux secrets set erp"


def test_transient_failures_get_a_retry_and_timeouts_a_longer_timeout() -> None:
    node = {"id": "get", "type": "http.request", "retry": {"max_attempts": 2, "backoff": "constant"}}
    d = diagnose(failed("http.status", "get: GET http://x answered 503: busy", node, http_status=503, attempts=2))
    assert d.cause == "transient" and d.fix is not None and d.fix.resume_as_is
    retry = d.fix.operations[0].model_dump()["set"]["retry"]
    assert retry["max_attempts"] == 4 and retry["backoff"] == "constant"  # the user's own choices are kept
    d = diagnose(failed("step.timeout", "no result within 20s", {"id": "slow", "timeout": "20s"}))
    assert d.fix is not None and d.fix.operations[0].model_dump()["set"]["timeout"] == "40s"


def test_sandbox_limits_are_raised_only_within_the_operators_maxima() -> None:
    node = {"id": "calc", "type": "code.python", "permissions": {"fuel": 1_000_000}}
    policy = SandboxPolicy(maxima=Limits(fuel=5_000_000))
    d = diagnose(failed("sandbox.fuel_exhausted", "used its whole fuel", node), sandbox=policy)
    assert d.fix is not None and d.fix.operations[0].model_dump()["set"] == {"permissions.fuel": 5_000_000}
    at_max = {**node, "permissions": {"fuel": 5_000_000}}
    d = diagnose(failed("sandbox.fuel_exhausted", "used its whole fuel", at_max), sandbox=policy)
    assert d.cause == "sandbox_limit" and d.fix is None  # nothing left to raise: said, not faked


def test_a_budget_is_raised_to_cover_the_whole_run() -> None:
    message = "starting b (forecast 0.5 C-ION) would exceed the run budget of 0.2 C-ION (0.1 spent)"
    d = diagnose(failed("budget.exceeded", message, {"id": "b"}), forecast_cion=2.0)
    assert d.cause == "budget" and d.fix is not None
    assert d.fix.operations[0].model_dump()["max_cion_per_run"] == 2.5


def test_code_errors_name_the_line_and_a_misspelt_key_is_corrected_from_the_input() -> None:
    code = 'def main(d):\n    return d["totl"]\n'
    node = {"id": "c", "type": "code.python", "with": {"input": "{{ inputs }}", "code": code}}
    d = diagnose(failed("code.error", "c: KeyError: 'totl' (line 2 of the code)", node, {"inputs": {"total": 1}}))
    assert d.cause == "code_error" and d.location["line"] == 2 and 'return d["totl"]' in d.detail
    assert d.fix is not None and d.fix.operations[0].model_dump()["set"]["with.code"] == code.replace("totl", "total")
    d = diagnose(failed("code.error", "c: ZeroDivisionError: division by zero (line 2 of the code)", node))
    assert d.cause == "code_error" and d.fix is None  # a judgement call: for the model or the user


def test_an_unknown_model_alias_becomes_the_closest_configured_one() -> None:
    node = {"id": "s", "type": "llm.complete", "with": {"model": "defualt"}}
    d = diagnose(failed("llm.model_not_found", "no model 'defualt'", node), aliases=("default", "cheap"))
    assert d.cause == "model_unknown" and d.fix is not None
    assert d.fix.operations[0].model_dump()["set"] == {"with.model": "default"}


def test_only_steps_without_outside_effects_are_replayed_for_real() -> None:
    assert safe_to_repeat(frozenset(), {}) == ""
    assert safe_to_repeat(frozenset({"sandbox"}), {}) == ""
    assert safe_to_repeat(frozenset({"net"}), {"method": "GET"}) == ""
    assert safe_to_repeat(frozenset({"net"}), {"method": "POST", "idempotency_key": True}) == ""
    assert "not marked safe" in safe_to_repeat(frozenset({"net"}), {"method": "POST"})
    assert "smtp" in safe_to_repeat(frozenset({"smtp"}), {})


# --- the loop, against a runtime ----------------------------------------------------------------------------


@pytest.fixture
def script() -> Iterator[Script]:
    yield llm_script.install()


@pytest.fixture
def rt(tmp_path: Path, script: Script) -> Iterator[Runtime]:
    models = dict(llm_script.settings().models)
    with running("embedded", tmp_path, llm_models=models, http_allow_networks=("127.0.0.1/32",)) as runtime:
        yield runtime


UPSTREAM = """
    fluxgraph: 1
    id: digest
    nodes:
      - id: fetch
        type: http.request
        permissions: {{net: ["{host}"]}}
        with: {{url: "{url}/orders"}}
      - id: summary
        type: llm.complete
        needs: [fetch]
        with: {{model: default, prompt: "Summarise {{{{ nodes.fetch.output.body.orders | length }}}} orders"}}
      - id: post
        type: text.template
        needs: [summary]
        with: {{template: "Today: {{{{ nodes.summary.output.txt }}}}"}}
"""


def test_resuming_keeps_upstream_outputs_no_llm_or_http_call_is_made_twice(rt: Runtime, script: Script) -> None:
    with Upstream({"/orders": [{"status": 200, "json": {"orders": [1, 2, 3]}}]}) as server:
        text = flow(UPSTREAM.format(host=server.url.removeprefix("http://"), url=server.url))
        _, version = rt.orchestrator.save_flow(text, "digest.yaml")
        script.answers = ["Three orders, all paid."]
        run_id = rt.orchestrator.start_run(version)
        assert rt.wait(run_id, 30) == "failed"
        http_before, llm_before = server.count(("/orders",)), len(script.requests)
        assert (http_before, llm_before) == (1, 1)

        # When it is healed, then the cause is found in the recorded output, and the fix is proved by replay
        healing = heal(rt.orchestrator, run_id)
        assert healing.diagnosis.cause == "undefined_name" and healing.verified
        assert "nodes.summary.output.text" in healing.diff and healing.verification is not None
        assert healing.verification.output == {"text": "Today: Three orders, all paid."}

        # When it is applied, then the run resumes from the failed step on the new version and succeeds
        version_2 = apply(rt.orchestrator, healing)
        assert version_2 is not None and version_2 != version
        assert rt.wait(run_id, 30) == "succeeded"

        # Then nothing upstream ran again: the HTTP request and the LLM call were each made once, in all
        assert server.count(("/orders",)) == http_before and len(script.requests) == llm_before


def test_the_fix_becomes_the_active_version_when_the_failed_one_was(rt: Runtime) -> None:
    text = flow(
        """
        fluxgraph: 1
        id: greeter
        triggers: [{type: webhook}]
        nodes:
          - {id: text, type: text.template, with: {template: "Hi {{ inputs.emial }}"}}
        """
    )
    _, version = rt.orchestrator.save_flow(text, "greeter.yaml")
    token = rt.triggers.activate("greeter", version)[0].token
    run_id = rt.orchestrator.start_run(version, {"email": "a@b.c"})
    assert rt.wait(run_id, 30) == "failed"
    fixed = apply(rt.orchestrator, heal(rt.orchestrator, run_id), triggers=rt.triggers)
    assert rt.wait(run_id, 30) == "succeeded"
    armed = rt.triggers.armed("greeter")
    assert [t.version_id for t in armed] == [fixed] and armed[0].token == token  # same webhook URL, fixed flow


def test_a_run_that_did_not_fail_has_nothing_to_heal_and_an_unverified_fix_is_not_applied(rt: Runtime) -> None:
    ok = flow(
        """
        fluxgraph: 1
        id: fine
        nodes:
          - {id: a, type: data.set, with: {v: 1}}
        """
    )
    _, version = rt.orchestrator.save_flow(ok, "fine.yaml")
    run_id = rt.orchestrator.start_run(version)
    assert rt.wait(run_id, 30) == "succeeded"
    with pytest.raises(FailureError, match="has no failed step"):
        heal(rt.orchestrator, run_id)

    endless = flow(
        """
        fluxgraph: 1
        id: endless
        nodes:
          - id: spin
            type: code.python
            permissions: {fuel: 50000000}
            with:
              input: 1
              code: |
                def main(n):
                    while n > 0:
                        n += 1
        """
    )
    _, version = rt.orchestrator.save_flow(endless, "endless.yaml")
    run_id = rt.orchestrator.start_run(version)
    assert rt.wait(run_id, 60) == "failed"
    healing = heal(rt.orchestrator, run_id)
    assert healing.diagnosis.cause == "sandbox_limit" and healing.after is not None
    assert not healing.verified and healing.verification is not None
    assert "still fails (sandbox.fuel_exhausted)" in healing.verification.describe()
    with pytest.raises(HealError, match="not verified"):
        apply(rt.orchestrator, healing)


def test_the_model_fixes_what_the_rules_cannot_and_the_fix_is_proved(rt: Runtime, script: Script) -> None:
    broken = flow(
        """
        fluxgraph: 1
        id: average
        nodes:
          - id: average
            type: code.python
            with:
              input: {sales: []}
              code: |
                def main(data):
                    return {"average": sum(data["sales"]) / len(data["sales"])}
        """
    )
    _, version = rt.orchestrator.save_flow(broken, "average.yaml")
    run_id = rt.orchestrator.start_run(version)
    assert rt.wait(run_id, 30) == "failed"
    assert heal(rt.orchestrator, run_id).diagnosis.fix is None  # the rules find the line, not the fix

    fixed = 'def main(data):\n    s = data["sales"]\n    return {"average": sum(s) / len(s) if s else 0}\n'
    fix = {"op": "update_node", "id": "average", "set": {"with.code": fixed}}
    plan = {"reply": "Guard the empty list.", "operations": [fix]}
    script.answers = [json.dumps(plan)]
    healing = heal(rt.orchestrator, run_id, model=SCRIPTED)
    assert healing.diagnosis.by == "model:scripted/any" and healing.diagnosis.cause == "code_error"
    assert healing.verified and healing.verification is not None
    assert healing.verification.output == {"average": 0}
    asked = script.requests[0]["messages"][-1]["content"]
    assert "ZeroDivisionError" in asked and "line 2 of with.code" in asked  # grounded in the failure's facts
    apply(rt.orchestrator, healing)
    assert rt.wait(run_id, 30) == "succeeded"


# --- the seeded failure suite -------------------------------------------------------------------------------


def test_the_suite_has_at_least_25_real_failures_each_with_its_expected_cause() -> None:
    cases = load_cases()
    assert len(cases) >= 25 and all(c.cause for c in cases)
    assert len({c.cause for c in cases}) >= 10  # not one cause 25 times


def test_the_failure_suite_meets_its_bars_without_a_model() -> None:
    report = evaluate(load_cases(), rules_healer)
    metrics = report["metrics"]
    broken = [r["case"] for r in report["records"] if "the case" in r["note"]]
    assert not broken, f"cases that do not fail as they should: {broken}"
    assert metrics["diagnosis_accuracy"] >= 80, report["records"]
    assert metrics["runs_resumed_to_success"] >= 60, report["records"]
    assert metrics["upstream_calls_repeated"] == 0


def test_with_a_model_the_suite_fixes_more(script: Script) -> None:
    """The scripted model answers each case's recorded fix (or nothing), as a real one would be asked."""

    def healer(runtime: Runtime, run_id: str, case: Case, server: str) -> Any:
        answer = case.model_fix or {"reply": "I cannot fix this.", "operations": []}
        script.answers = [json.dumps(answer).replace("$SERVER", server)] * 3
        return heal(runtime.orchestrator, run_id, model=SCRIPTED)

    cases = load_cases()
    with_model = evaluate(cases, healer, "model:scripted")["metrics"]
    without = evaluate([c for c in cases if c.model_fix], rules_healer)["metrics"]
    assert with_model["runs_resumed_to_success"] >= 75 and with_model["diagnosis_accuracy"] >= 80
    assert without["runs_resumed_to_success"] == 0  # those cases need the model
    assert with_model["upstream_calls_repeated"] == 0


def test_ionflux_heal_shows_the_fix_then_applies_it_and_follows_the_run(tmp_path: Path) -> None:
    from tests.cli_helpers import ionflux

    home = tmp_path / "home"
    source = tmp_path / "welcome.yaml"
    source.write_text(TYPO, "utf-8")
    ran = ionflux(home, "run", str(source), "--input", json.dumps({"email": "a@b.c", "name": "Ana"}))
    assert ran.returncode != 0, ran.stdout
    run_id = json.loads(ionflux(home, "runs", "--json").stdout)[0]["id"]

    # The diagnosis alone: the fix, its proof, nothing changed; --json is one JSON document
    shown = ionflux(home, "heal", run_id)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "undefined_name" in shown.stdout and "+    with: {template:" in shown.stdout
    assert "proof: replayed on the recorded input: succeeded" in shown.stdout
    document = json.loads(ionflux(home, "heal", run_id, "--json").stdout)
    assert document["verified"] is True and document["diagnosis"]["fix"]["description"]

    # Applied: the run resumes from the failed step here and succeeds
    applied = ionflux(home, "heal", run_id, "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"resuming run {run_id} from text on the fixed version" in applied.stdout
    assert json.loads(ionflux(home, "runs", "--json").stdout)[0]["status"] == "succeeded"
