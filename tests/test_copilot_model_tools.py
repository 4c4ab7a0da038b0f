"""Jules with a model over a tool catalog (copilot.model_tools), against the scripted provider: tool calls arrive
through instructor's tools mode, invented tools, parameters and links go back to the model, a model that never
grounds its plan is a clear failure; and the TaskBench harness runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from copilot.model_tools import Tool, ToolGraph, grounding, plan_tools_with_model, prompt
from copilot.structured import ModelChoice
from tests import llm_script
from tests.conftest import shared_evals
from tests.llm_script import Script

TOOLS = [
    Tool("walk_dog", "Take a dog for a walk in a park", (("park", "which park"),)),
    Tool("buy_food", "Buy pet food at a shop", (("item", "what to buy"), ("shop", "where"))),
    Tool("send_sms", "Send a text message to a phone number", (("to", "number"), ("text", "message"))),
]
CHOICE = ModelChoice("scripted/any")


def _graph(nodes: list[tuple[str, dict[str, str]]], links: list[tuple[str, str]]) -> llm_script.Tool:
    return llm_script.Tool(
        json.dumps(
            {
                "task_nodes": [
                    {"task": t, "arguments": [{"name": k, "value": v} for k, v in args.items()]} for t, args in nodes
                ],
                "task_links": [{"source": s, "target": t} for s, t in links],
            }
        )
    )


@pytest.fixture
def script() -> Iterator[Script]:
    yield llm_script.install()


def test_invented_tools_parameters_and_links_go_back_until_grounded(script: Script) -> None:
    script.answers = [
        _graph([("walk_the_dog", {}), ("buy_food", {"brand": "x"})], [("walk_the_dog", "send_sms")]),
        _graph([("walk_dog", {"park": "Central"}), ("buy_food", {"item": "kibble"})], [("walk_dog", "buy_food")]),
    ]
    result = plan_tools_with_model("walk the dog in Central park, then buy kibble", TOOLS, CHOICE)
    assert result.graph is not None and result.attempts == 2
    assert [n.task for n in result.graph.task_nodes] == ["walk_dog", "buy_food"]
    feedback = script.requests[1]["messages"][-1]["content"]
    assert "no tool 'walk_the_dog'" in feedback
    assert "no parameter 'brand'; its parameters are: item, shop" in feedback
    assert "task_links[0].target: 'send_sms' is not one of the planned task_nodes" in feedback
    assert script.requests[0]["tools"][0]["function"]["name"] == "ToolGraph"  # instructor's tools mode
    assert result.tokens_in > 0 and result.prompt_tokens > 0


def test_never_grounded_is_a_clear_failure(script: Script) -> None:
    script.answers = [_graph([("fly_to_mars", {})], [])] * 2
    result = plan_tools_with_model("fly me to Mars", TOOLS, CHOICE, attempts=2)
    assert result.graph is None
    assert result.problems.startswith("no grounded plan after 2 attempts") and "fly_to_mars" in result.problems


def test_an_unreachable_model_is_a_clear_failure(script: Script) -> None:
    from litellm.exceptions import ServiceUnavailableError

    script.answers = [llm_script.http_error(ServiceUnavailableError, 503)]
    result = plan_tools_with_model("walk the dog", TOOLS, CHOICE)
    assert result.graph is None and "could not be reached" in result.problems and result.attempts == 1


def test_grounding_accepts_a_plan_that_only_uses_what_exists() -> None:
    graph = ToolGraph.model_validate(
        {"task_nodes": [{"task": "send_sms", "arguments": [{"name": "to", "value": "123"}]}], "task_links": []}
    )
    assert grounding(graph, TOOLS) == []
    assert grounding(ToolGraph(task_nodes=[]), TOOLS) == ["task_nodes is empty: plan at least one tool call"]


def test_the_prompt_for_the_40_tool_catalog_stays_under_4k_tokens() -> None:
    import litellm

    from evals.taskbench import load_catalog

    catalog = load_catalog(shared_evals() / "taskbench-dailylife" / "tool_desc.json")
    assert len(catalog) == 40
    tools = [Tool(t.id, t.desc, tuple((n, d) for n, _, d in t.parameters)) for t in catalog]
    text = prompt("I need to book a flight to Paris and then email my boss at boss@example.com.", tools)
    tokens = litellm.token_counter(model="gpt-4o-mini", text=text)
    assert all(t.id in text for t in catalog)
    assert tokens < 4000, tokens


def test_the_taskbench_harness_runs_the_model_planner(script: Script, tmp_path: Path) -> None:
    from evals import harness

    catalog = tmp_path / "tools.json"
    catalog.write_text(
        json.dumps(
            {
                "nodes": [
                    {
                        "id": t.name,
                        "desc": t.description,
                        "parameters": [{"name": p, "desc": d} for p, d in t.parameters],
                    }
                    for t in TOOLS
                ]
            }
        )
    )
    records = [
        {
            "id": "1",
            "instruction": "walk the dog then text 123",
            "task_nodes": [{"task": "walk_dog"}, {"task": "send_sms"}],
            "task_links": [{"source": "walk_dog", "target": "send_sms"}],
        },
        {"id": "2", "instruction": "buy kibble", "task_nodes": [{"task": "buy_food"}], "task_links": []},
    ]
    script.answers = [
        _graph([("walk_dog", {}), ("send_sms", {"to": "123"})], [("walk_dog", "send_sms")]),
        _graph([("buy_food", {"item": "kibble"})], []),
    ]
    report = harness.evaluate("taskbench", records, harness.planner("model:scripted/any", "taskbench", catalog))
    assert report["overall"] == {"node_f1": 100.0, "edge_f1": 100.0}
    assert report["planner"] == "model:scripted/any" and report["cost"]["tokens_in"] > 0
