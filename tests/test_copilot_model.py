"""Jules with a model (copilot.model_planner) against litellm's scripted provider: the repair loop feeds the
validator's located errors back, gives up with a clear failure, never returns an invalid flow."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from copilot.model_planner import catalog_text, plan_with_model, prompt
from engine.nodetypes.builtin import builtin_registry
from tests import llm_script
from tests.llm_script import Script

REQUEST = "Every weekday at 8:30 Lisbon time, fetch https://shop.example.com/api/orders and post a summary to #sales."
BROKEN = """```yaml
fluxgraph: 1
id: orders
triggers: [{type: cron, cron: "30 8 * * 1-5", timezone: Europe/Lisbon}]
nodes:
  - {id: fetch, type: http.fetch, with: {url: "https://shop.example.com/api/orders"}}
```"""
FIXED = """Here it is:
```yaml
fluxgraph: 1
id: orders
triggers: [{type: cron, cron: "30 8 * * 1-5", timezone: Europe/Lisbon}]
secrets: [slack_bot_token]
nodes:
  - id: fetch
    type: http.request
    with: {url: "https://shop.example.com/api/orders"}
    permissions: {net: [shop.example.com]}
  - id: post
    type: slack.post
    needs: [fetch]
    with: {token: "{{ secrets.slack_bot_token }}", channel: "#sales", text: "{{ nodes.fetch.output.body }}"}
```"""


def _structured(text: str) -> llm_script.Tool:
    """A YAML flow above as the FlowDraft tool call a model answers in structured mode."""
    data = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    data.pop("fluxgraph")
    data.setdefault("name", data["id"])
    return llm_script.Tool(json.dumps(data))


STRUCTURED_FIXED, STRUCTURED_BROKEN = _structured(FIXED), _structured(BROKEN)


@pytest.fixture
def script() -> Iterator[Script]:
    yield llm_script.install()


def test_the_validators_errors_go_back_and_the_repaired_flow_is_returned(script: Script) -> None:
    script.answers = [BROKEN, FIXED]
    draft = plan_with_model(REQUEST, builtin_registry(), model="scripted/any", mode="yaml")
    assert draft.valid and draft.attempts == 2 and draft.yaml is not None and "slack.post" in draft.yaml
    feedback = script.requests[1]["messages"][-1]["content"]
    assert "http.fetch" in feedback and "validator refused" in feedback  # the located error, sent back
    assert draft.tokens_in > 0 and draft.tokens_out > 0 and draft.planner == "model:scripted/any"


def test_no_valid_flow_after_the_attempts_is_a_clear_failure_with_no_yaml(script: Script) -> None:
    script.answers = [BROKEN, BROKEN, "not yaml: [at all"]
    draft = plan_with_model(REQUEST, builtin_registry(), model="scripted/any", attempts=3, mode="yaml")
    assert not draft.valid and draft.yaml is None and draft.attempts == 3
    assert "no valid flow after 3 attempts" in draft.problems


def test_an_unreachable_model_is_a_clear_failure(script: Script) -> None:
    script.answers = [llm_script.http_error(__import__("litellm").ServiceUnavailableError, 503)]
    draft = plan_with_model(REQUEST, builtin_registry(), model="scripted/any")
    assert not draft.valid and draft.yaml is None and "could not be reached" in draft.problems


def test_the_prompt_carries_only_what_exists_and_stays_small() -> None:
    registry = builtin_registry()
    text = prompt(REQUEST, registry, ("slack_bot_token",), "default")
    listed = [line.split(":")[0][2:] for line in catalog_text(REQUEST, registry).splitlines()]
    assert set(listed) <= {t.name for t in registry} and "http.request" in listed
    assert "slack_bot_token" in text and REQUEST in text
    assert len(text) / 4 < 4000  # ~4 characters a token: under 4k tokens


def test_the_evaluation_harness_runs_the_model_planner(script: Script) -> None:
    from evals import harness

    records = [
        {
            "id": "r1",
            "lang": "en",
            "instruction": REQUEST,
            "nodes": [],
            "edges": [],
            "key_params": {},
            "triggers": [{"type": "cron", "cron": "30 8 * * 1-5", "timezone": "Europe/Lisbon", "cron_exact": True}],
        },
        {
            "id": "r2",
            "lang": "en",
            "instruction": "anything",
            "nodes": [],
            "edges": [],
            "key_params": {},
            "triggers": [{"type": "manual"}],
        },
    ]
    script.answers = [STRUCTURED_FIXED, STRUCTURED_BROKEN, STRUCTURED_BROKEN, STRUCTURED_BROKEN]  # r1 at once; r2 never
    report = harness.evaluate("indomain", records, harness.planner("model:scripted/any", "indomain", None))
    assert report["overall"]["validity"] == 50.0 and report["overall"]["cron_exact"] == 100.0
    assert report["planner"] == "model:scripted/any" and report["cost"]["failures"] == 1
    assert report["cost"]["tokens_in"] > 0


def test_invented_model_aliases_and_secrets_go_back_to_the_model(script: Script) -> None:
    invented = FIXED.replace(
        "  - id: post",
        "  - id: sum\n    type: llm.complete\n    needs: [fetch]\n"
        '    with: {model: gpt-9, prompt: "{{ nodes.fetch.output.body }}"}\n  - id: post',
    )
    grounded = invented.replace("model: gpt-9", "model: default")
    script.answers = [invented, grounded]
    draft = plan_with_model(
        REQUEST,
        builtin_registry(),
        model="scripted/any",
        aliases=("default", "smart"),
        secrets=("slack_bot_token",),
        mode="yaml",
    )
    assert draft.valid and draft.attempts == 2
    feedback = script.requests[1]["messages"][-1]["content"]
    assert "node sum, field with.model: there is no model alias 'gpt-9'; use one of: default, smart" in feedback

    script.answers = [FIXED, FIXED]
    refused = plan_with_model(
        REQUEST, builtin_registry(), model="scripted/any", secrets=("github_token",), attempts=2, mode="yaml"
    )
    assert (
        not refused.valid and "the user has no secret 'slack_bot_token' (they have: github_token)" in refused.problems
    )


def test_structured_mode_asks_for_a_flow_shape_and_repairs_it_the_same_way(script: Script) -> None:
    """instructor's tools mode: the answer is a FlowDraft tool call (a schema the provider can enforce); the
    validator's errors still go back, and the flow returned is the validated YAML."""
    script.answers = [STRUCTURED_BROKEN, STRUCTURED_FIXED]
    draft = plan_with_model(REQUEST, builtin_registry(), model="scripted/any")
    assert draft.valid and draft.attempts == 2 and draft.yaml is not None
    assert script.requests[0]["tools"][0]["function"]["name"] == "FlowDraft"
    assert "FlowDraft tool's arguments" in script.requests[0]["messages"][0]["content"]
    feedback = script.requests[1]["messages"][-1]["content"]
    assert "http.fetch" in feedback and "the whole corrected flow" in feedback
    flow = yaml.safe_load(draft.yaml)
    assert flow["fluxgraph"] == 1 and [n["type"] for n in flow["nodes"]] == ["http.request", "slack.post"]
    assert "if" not in flow["nodes"][0] and "do" not in flow["nodes"][0]  # unset fields are left out


def test_structured_answers_that_are_not_a_flow_shape_go_back(script: Script) -> None:
    script.answers = [llm_script.Tool(json.dumps({"nodes": "none"})), STRUCTURED_FIXED]
    draft = plan_with_model(REQUEST, builtin_registry(), model="scripted/any")
    assert draft.valid and draft.attempts == 2
    assert "not a valid FlowDraft" in script.requests[1]["messages"][-1]["content"]


def test_a_refused_structured_answer_says_what_was_wrong_in_one_line(script: Script) -> None:
    script.answers = [llm_script.Tool(json.dumps({"nodes": "none"}))] * 2
    draft = plan_with_model(REQUEST, builtin_registry(), model="scripted/any", attempts=2)
    assert not draft.valid and "<failed_attempts>" not in draft.problems
    assert "not a valid FlowDraft" in draft.problems and "nodes" in draft.problems
