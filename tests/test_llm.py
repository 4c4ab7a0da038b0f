"""The LLM nodes through litellm with a scripted provider (no network): text, streaming, structured output with
bounded re-asks, classification, usage and cost, and provider errors mapped to retryable or not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
import sqlalchemy as sa
from litellm.exceptions import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)

from engine.core.state import StepKey
from engine.dsl.validator import check_flow
from engine.steps.call import StepCall, StepFailure
from engine.steps.llm import REDACTED, LlmSettings, ModelRoute, _meter, classify, complete, extract
from engine.store.tables import credit_ledger
from tests import llm_script
from tests.llm_script import Script, http_error, tool
from tests.runtime_helpers import BACKENDS, attempts, flow, running

SETTINGS = llm_script.settings()


@pytest.fixture
def script() -> Iterator[Script]:
    yield llm_script.install()


def call(node_type: str, with_: dict[str, Any], **kw: Any) -> StepCall:
    return StepCall(StepKey("ask"), 1, node_type, with_, run_id="01RUN", **kw)


def test_complete_sends_system_and_prompt_and_records_usage_and_cost(script: Script) -> None:
    script.answers.append("Three invoices are overdue.")
    step = call("llm.complete", {"system": "Be brief.", "prompt": "Summarise", "max_tokens": 50, "temperature": 0})
    out = complete(step, SETTINGS)
    assert out["text"] == "Three invoices are overdue."
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 20, "cost_cion": 0.05}
    (sent,) = script.requests
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarise"}]
    assert sent["params"]["max_tokens"] == 50 and sent["params"]["temperature"] == 0
    usage = step.usage
    assert usage["alias"] == "default"
    assert usage["model"] == "scripted/scripted"  # the model the provider says answered, with the route's provider
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (10, 20)
    assert usage["cost_usd"] == pytest.approx(5e-5) and usage["cost_cion"] == pytest.approx(0.05)
    assert usage["latency_ms"] >= 0


def test_streaming_emits_each_token_live_and_returns_the_whole_text(script: Script) -> None:
    script.answers.append("one two three four")
    live: list[tuple[str, dict[str, Any]]] = []
    step = call("llm.complete", {"prompt": "count", "stream": True}, emit=lambda kind, data: live.append((kind, data)))
    out = complete(step, SETTINGS)
    assert out["text"] == "one two three four"
    assert [kind for kind, _ in live] == ["llm.token"] * 4
    assert "".join(data["text"] for _, data in live) == out["text"]
    assert [data["index"] for _, data in live] == [0, 1, 2, 3]
    assert step.usage["completion_tokens"] == 4 and step.usage["first_token_ms"] is not None


def test_extract_reasks_with_the_validation_errors_then_returns_valid_data(script: Script) -> None:
    schema = {
        "type": "object",
        "properties": {"customer": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
        "required": ["customer", "amount"],
    }
    script.answers += [
        tool({"customer": "Acme"}),
        tool({"customer": "Acme", "amount": -3}),
        tool({"customer": "Acme", "amount": 12.5}),
    ]
    step = call("llm.extract", {"prompt": "Invoice from Acme, 12.50 EUR", "schema": schema, "max_retries": 2})
    assert extract(step, SETTINGS) == {"customer": "Acme", "amount": 12.5}
    assert len(script.requests) == 3
    assert script.requests[0]["tools"][0]["function"]["parameters"]["properties"] == schema["properties"]
    reask = json.dumps(script.requests[1]["messages"])
    assert "'amount' is a required property" in reask
    assert "-3 is less than the minimum of 0" in json.dumps(script.requests[2]["messages"])
    assert step.usage["prompt_tokens"] == 30 and step.usage["completion_tokens"] == 60  # all three calls are paid


def test_extract_gives_up_after_max_retries_with_the_last_error(script: Script) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    script.answers += [tool({"n": "x"}), tool({"n": "y"})]
    step = call("llm.extract", {"prompt": "p", "schema": schema, "max_retries": 1})
    with pytest.raises(StepFailure) as failure:
        extract(step, SETTINGS)
    assert failure.value.code == "llm.invalid_output" and not failure.value.retryable
    assert "2 attempt(s)" in failure.value.message and "'y' is not of type 'integer'" in failure.value.message
    assert len(script.requests) == 2
    assert step.usage["completion_tokens"] == 40 and step.usage["reasks"] == 1  # a failed extraction is still paid


def test_extract_with_a_non_object_schema_wraps_and_unwraps_it(script: Script) -> None:
    script.answers.append(tool({"value": ["a@x.org", "b@y.org"]}))
    step = call("llm.extract", {"prompt": "emails?", "schema": {"type": "array", "items": {"type": "string"}}})
    assert extract(step, SETTINGS) == ["a@x.org", "b@y.org"]


def test_classify_returns_one_of_the_labels_and_a_confidence(script: Script) -> None:
    script.answers += [tool({"label": "refund", "confidence": 0.9}), tool({"label": "billing", "confidence": 0.8})]
    step = call("llm.classify", {"input": "I was charged twice", "labels": ["billing", "bug", "question"]})
    assert classify(step, SETTINGS) == {"label": "billing", "confidence": 0.8}
    first = script.requests[0]
    assert first["tools"][0]["function"]["parameters"]["properties"]["label"]["enum"] == ["billing", "bug", "question"]
    assert "I was charged twice" in first["messages"][-1]["content"]
    assert "'refund' is not one of" in json.dumps(script.requests[1]["messages"])  # an unknown label is re-asked


PROVIDER_ERRORS = [
    (lambda: http_error(RateLimitError, 429, {"retry-after": "7"}), "llm.rate_limited", True, 7.0),
    (lambda: Timeout(message="slow", model="any", llm_provider="openai"), "llm.timeout", True, None),
    (
        lambda: APIConnectionError(message="refused", llm_provider="openai", model="any"),
        "llm.unavailable",
        True,
        None,
    ),
    (lambda: http_error(InternalServerError, 500), "llm.unavailable", True, None),
    (lambda: http_error(ServiceUnavailableError, 503), "llm.unavailable", True, None),
    (lambda: http_error(AuthenticationError, 401), "llm.auth", False, None),
    (lambda: http_error(NotFoundError, 404), "llm.model_not_found", False, None),
    (lambda: http_error(BadRequestError, 400), "llm.bad_request", False, None),
    (lambda: http_error(ContextWindowExceededError, 400), "llm.context_too_long", False, None),
]


@pytest.mark.parametrize(("make", "code", "retryable", "retry_after"), PROVIDER_ERRORS)
@pytest.mark.parametrize("node_type", ["llm.complete", "llm.extract"])
def test_provider_errors_are_retryable_or_not(
    script: Script, make: Any, code: str, retryable: bool, retry_after: float | None, node_type: str
) -> None:
    script.answers.append(make())
    with_ = {"prompt": "p"} if node_type == "llm.complete" else {"prompt": "p", "schema": {"type": "object"}}
    run = complete if node_type == "llm.complete" else extract
    with pytest.raises(StepFailure) as failure:
        run(call(node_type, with_), SETTINGS)
    assert (failure.value.code, failure.value.retryable, failure.value.retry_after) == (code, retryable, retry_after)
    assert "scripted/any" in failure.value.message and failure.value.hint


def test_a_model_name_without_provider_fails_clearly_without_any_request() -> None:
    with pytest.raises(StepFailure) as failure:
        complete(call("llm.complete", {"prompt": "p", "model": "no-such-model"}), LlmSettings())
    assert failure.value.code == "llm.model_not_found" and "openai/gpt-4o-mini" in failure.value.hint


def test_cost_comes_from_litellms_price_table_or_is_zero_with_a_warning() -> None:
    known = call("llm.complete", {"prompt": "p"})
    _meter(known, ModelRoute("openai/gpt-4o-mini"), "default", {"prompt_tokens": 1000, "completion_tokens": 500}, 0.0)
    prompt_cost, completion_cost = litellm.cost_per_token(
        model="openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=500
    )
    assert (
        known.usage["cost_cion"] == pytest.approx((prompt_cost + completion_cost) * 1000)
        and known.usage["cost_cion"] > 0
    )
    unknown = call("llm.complete", {"prompt": "p"})
    _meter(unknown, ModelRoute("openai/smollm2"), None, {"prompt_tokens": 10, "completion_tokens": 5}, 0.0)
    assert unknown.usage["cost_usd"] is None and unknown.usage["cost_cion"] == 0
    assert "no price is known for openai/smollm2" in unknown.log[0][1]


def test_an_alias_uses_the_operators_server_and_a_secret_in_the_prompt_is_blanked(script: Script) -> None:
    script.answers.append("ok")
    step = call("llm.complete", {"prompt": "token is s3cr3t-v4lue!", "model": "cheap"}, secrets=("s3cr3t-v4lue",))
    complete(step, llm_script.settings(api_base="http://127.0.0.1:9/v1"))
    (sent,) = script.requests
    assert sent["messages"][-1]["content"] == f"token is {REDACTED}!"
    assert sent["api_base"] == "http://127.0.0.1:9/v1"
    assert step.log == [("warning", "with.prompt: a secret's value was removed before calling the model")]


def test_the_validator_refuses_secrets_in_an_llm_node() -> None:
    text = """
    fluxgraph: 1
    id: leaky
    secrets: [api_token]
    nodes:
      - id: ask
        type: llm.complete
        with: {prompt: "Use {{ secrets.api_token }} to log in"}
    """
    report = check_flow(flow(text), "leaky.yaml")
    found = [(i.code, i.path, i.node_id, i.location.line) for i in report.errors]
    assert found == [("node.secret_to_llm", ("nodes", 0, "with", "prompt"), "ask", 7)], found


LLM_FLOW = """
fluxgraph: 1
id: triage
nodes:
  - id: summary
    type: llm.complete
    with: {prompt: "Summarise the ticket", stream: true, model: default}
    retry: {max_attempts: 2, initial_delay: 10ms, jitter: false}
  - id: fields
    type: llm.extract
    needs: [summary]
    with:
      prompt: "{{ nodes.summary.output.text }}"
      schema: {type: object, properties: {priority: {type: string}}, required: [priority]}
outputs:
  priority: "{{ nodes.fields.output.priority }}"
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_records_usage_and_charges_the_real_cost_and_streams_tokens(
    script: Script, tmp_path: Path, backend: str
) -> None:
    script.answers += [
        http_error(RateLimitError, 429, {"retry-after": "1"}),  # honoured: the retry waits >= 1 s, not 10 ms
        "Customer cannot log in since Monday",
        tool({"priority": "high"}),
    ]
    with running(backend, tmp_path, llm_models=dict(SETTINGS.models)) as rt:
        live: list[dict[str, Any]] = []
        rt.bus.subscribe("ionflux.runs.*.live", lambda m: live.append(json.loads(m.data)))
        _, version = rt.orchestrator.save_flow(flow(LLM_FLOW), "triage.yaml")
        run_id = rt.orchestrator.start_run(version, None)
        assert str(rt.wait(run_id, 30)) == "succeeded"
        rows = attempts(rt, run_id)
        with rt.db.connect() as conn:
            charged = conn.execute(
                sa.select(credit_ledger.c.step_key, credit_ledger.c.attempt, credit_ledger.c.cion).where(
                    credit_ledger.c.run_id == run_id
                )
            ).all()
    by_key = {(r.key, r.attempt): r for r in rows}
    limited, streamed, extracted = by_key[("summary", 1)], by_key[("summary", 2)], by_key[("fields", 1)]
    assert limited.error["code"] == "llm.rate_limited" and limited.error["retry_after"] == 1.0
    assert (streamed.queued_at - limited.finished_at).total_seconds() >= 0.99  # the retry was queued 1 s later
    assert streamed.usage["alias"] == "default" and streamed.usage["completion_tokens"] == 6
    assert extracted.usage["prompt_tokens"] == 10 and extracted.usage["completion_tokens"] == 20
    assert extracted.cost_cion == pytest.approx(0.05)
    assert {(k, a): c for k, a, c in charged}[("fields", 1)] == pytest.approx(0.05)
    tokens = [e for e in live if e["kind"] == "llm.token" and e["run_id"] == run_id]
    assert "".join(e["text"] for e in tokens) == "Customer cannot log in since Monday"
    assert {e["key"] for e in tokens} == {"summary"} and {e["attempt"] for e in tokens} == {2}
