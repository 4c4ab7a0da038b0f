"""Edit operations on a draft, follow-up messages read into them (offline), and a model's edits through the repair
loop and streaming, with litellm's scripted responses (no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from copilot.edits import (
    AddNode,
    Connect,
    Disconnect,
    EditError,
    EditPlan,
    RemoveNode,
    SetBudget,
    SetTrigger,
    UpdateNode,
    apply,
    propose,
)
from copilot.follow_up import read
from copilot.model_edits import ReplyField, edit_with_model
from copilot.planning import draft
from copilot.structured import ModelChoice
from engine.nodetypes.builtin import builtin_registry

REGISTRY = builtin_registry()
REQUEST = "Every Monday at 8 fetch https://api.example.com/orders, summarise them and post to #sales on Slack"


@pytest.fixture(scope="module")
def base() -> str:
    result = draft(REQUEST)
    assert result.valid, result.problems
    return result.yaml


def _doc(text: str) -> dict[str, Any]:
    return dict(yaml.safe_load(text))


def _node(doc: dict[str, Any], node_id: str) -> dict[str, Any]:
    nodes = list(doc.get("nodes") or []) + list(doc.get("on_failure") or [])
    return next(n for n in nodes if n["id"] == node_id)


# --- operations -------------------------------------------------------------------------------------------------


def test_each_operation_changes_only_what_it_names(base: str) -> None:
    doc = _doc(base)
    ops = [
        AddNode(node={"id": "audit", "type": "log", "with": {"message": "done"}}),
        UpdateNode(id="call_api", set={"timeout": "30s", "with.method": "POST"}),
        SetBudget(max_cion_per_run=20),
        SetTrigger(triggers=[{"type": "webhook"}], replace=False),
    ]
    new = apply(doc, ops)
    assert doc == _doc(base), "apply must not modify its input"
    assert _node(new, "audit")["needs"] == ["slack"]  # after the last node by default
    assert _node(new, "call_api")["timeout"] == "30s"
    assert _node(new, "call_api")["with"] == {"method": "POST", "url": "https://api.example.com/orders"}
    assert new["budget"] == {"max_cion_per_run": 20}
    assert [t["type"] for t in new["triggers"]] == ["cron", "webhook"]
    assert _node(new, "write") == _node(doc, "write")


def test_removing_a_node_keeps_the_chain_connected(base: str) -> None:
    proposal = propose(
        base,
        [RemoveNode(id="write"), UpdateNode(id="slack", set={"with.text": "{{ nodes.call_api.output.body }}"})],
        REGISTRY,
    )
    assert proposal.valid, proposal.problems
    assert _node(_doc(proposal.after), "slack")["needs"] == ["call_api"]
    assert proposal.structure is not None
    assert proposal.structure.removed_nodes == (("write", "llm.complete"),)
    assert "-- id: write" in proposal.text_diff().replace("-- ", "-- ") or "-- id: write" in proposal.text_diff()


def test_an_edit_that_breaks_a_reference_is_refused_with_the_location(base: str) -> None:
    proposal = propose(base, [RemoveNode(id="write")], REGISTRY)
    assert not proposal.valid
    assert "write" in proposal.problems and "slack" in proposal.problems  # what is missing, and where


def test_connect_and_disconnect(base: str) -> None:
    new = apply(_doc(base), [Connect(source="call_api", target="slack")])
    assert _node(new, "slack")["needs"] == ["write", "call_api"]
    back = apply(new, [Disconnect(source="call_api", target="slack")])
    assert _node(back, "slack")["needs"] == ["write"]


@pytest.mark.parametrize(
    ("op", "words"),
    [
        (RemoveNode(id="nope"), "there is no node 'nope'"),
        (AddNode(node={"id": "slack", "type": "log"}), "exists already"),
        (AddNode(node={"type": "log"}), "needs an `id`"),
        (Disconnect(source="slack", target="write"), "does not need"),
        (AddNode(node={"id": "x", "type": "log"}, inside="write"), "is not a foreach"),
    ],
)
def test_operations_that_cannot_apply_say_which_and_why(base: str, op: Any, words: str) -> None:
    with pytest.raises(EditError) as caught:
        apply(_doc(base), [op])
    assert words in caught.value.message
    assert caught.value.message.startswith("operation 1 (")


def test_an_edit_plan_parses_operations_by_their_op_field() -> None:
    plan = EditPlan.model_validate(
        {"reply": "ok", "operations": [{"op": "set_budget", "max_cion_per_run": 5}, {"op": "remove_node", "id": "a"}]}
    )
    assert [type(op).__name__ for op in plan.operations] == ["SetBudget", "RemoveNode"]
    with pytest.raises(ValueError, match=r"unknown_op|does not match any of the expected tags"):
        EditPlan.model_validate({"reply": "", "operations": [{"op": "unknown_op"}]})


# --- follow-up messages, offline --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expect"),
    [
        ("run it at 7 instead", lambda d: d["triggers"] == [{"type": "cron", "cron": "0 7 * * 1", "timezone": "UTC"}]),
        (
            "run it every day at 6 in Lisbon time",
            lambda d: d["triggers"][0] == {"type": "cron", "cron": "0 6 * * *", "timezone": "Europe/Lisbon"},
        ),
        ("add a Slack alert if it fails", lambda d: d["on_failure"][0]["type"] == "slack.post"),
        ("remove the slack step", lambda d: [n["id"] for n in d["nodes"]] == ["call_api", "write"]),
        ("retry the API call 5 times", lambda d: _node(d, "call_api")["retry"]["max_attempts"] == 6),
        ("give the API call a timeout of 30 seconds", lambda d: _node(d, "call_api")["timeout"] == "30s"),
        ("cap it at 20 C-ION per run", lambda d: d["budget"] == {"max_cion_per_run": 20}),
        ("use the smart model", lambda d: _node(d, "write")["with"]["model"] == "smart"),
        ("post it to #ops instead", lambda d: _node(d, "slack")["with"]["channel"] == "#ops"),
        ("call it 'Weekly orders'", lambda d: d["name"] == "Weekly orders"),
        ("then email it to ana@example.com", lambda d: d["nodes"][-1]["with"]["to"] == "ana@example.com"),
        ("manda também um email para ana@example.com", lambda d: d["nodes"][-1]["type"] == "email.send"),
    ],
)
def test_follow_up_messages_become_valid_edits(base: str, message: str, expect: Any) -> None:
    reading = read(message, base, REGISTRY, ("default", "smart"))
    assert reading.understood, reading.reply
    proposal = propose(base, reading.operations, REGISTRY)
    assert proposal.valid, proposal.problems
    assert expect(_doc(proposal.after)), proposal.after


def test_a_grafted_step_reads_the_last_node_output(base: str) -> None:
    reading = read("then email it to ana@example.com", base, REGISTRY)
    node = _doc(propose(base, reading.operations, REGISTRY).after)["nodes"][-1]
    assert node["needs"] == ["slack"]
    assert "{{ nodes.slack.output" in yaml.safe_dump(node)


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("blah", "could not turn that into a change"),
        ("use the huge model", "no model alias 'huge'"),
        ("remove it", "Which step should I remove?"),
    ],
)
def test_what_cannot_be_read_changes_nothing_and_says_why(base: str, message: str, words: str) -> None:
    reading = read(message, base, REGISTRY, ("default", "smart"))
    assert not reading.understood
    assert words in reading.reply


# --- a model's edits: schema, operations and validator errors go back; streaming ------------------------------


class Scripted:
    """litellm.completion answering from a script (litellm's own mock responses: no network)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> None:
        import litellm

        self.answers: Iterator[str] = iter(answers)
        self.prompts: list[list[dict[str, str]]] = []
        original = litellm.completion

        def completion(*args: Any, **kwargs: Any) -> Any:
            self.prompts.append(list(kwargs["messages"]))
            kwargs["mock_response"] = next(self.answers)
            return original(*args, **kwargs)

        monkeypatch.setattr(litellm, "completion", completion)


def _plan(reply: str, *ops: dict[str, Any]) -> str:
    return json.dumps({"reply": reply, "operations": list(ops)})


CHOICE = ModelChoice("openai/scripted", mode="json")


@pytest.mark.parametrize("stream", [False, True])
def test_the_model_is_told_what_failed_until_its_edit_validates(
    base: str, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    script = Scripted(
        monkeypatch,
        [
            "I think you want a timeout.",  # not JSON at all
            _plan("Timeout.", {"op": "update_node", "id": "api", "set": {"timeout": "30s"}}),  # no such node
            _plan("Timeout.", {"op": "update_node", "id": "call_api", "set": {"timeout": "soon"}}),  # invalid flow
            _plan(
                'I\'ll give "call_api" a 30 s timeout.',
                {"op": "update_node", "id": "call_api", "set": {"timeout": "30s"}},
            ),
        ],
    )
    tokens: list[str] = []
    retries: list[str] = []
    result = edit_with_model(
        "time out the API after 30 s",
        base,
        REGISTRY,
        CHOICE,
        attempts=4,
        on_token=tokens.append if stream else None,
        on_retry=retries.append,
    )
    assert result.proposal is not None and result.proposal.valid
    assert result.attempts == 4
    assert _node(_doc(result.proposal.after), "call_api")["timeout"] == "30s"
    feedback = [p[-1]["content"] for p in script.prompts[1:]]
    assert "not a valid EditPlan" in feedback[0]
    assert "there is no node 'api'" in feedback[1]
    assert "timeout" in feedback[2] and "call_api" in feedback[2]  # the validator's located error
    assert len(retries) == 3
    if stream:
        assert "".join(tokens).endswith('I\'ll give "call_api" a 30 s timeout.')  # escapes decoded
        assert len(tokens) > 3  # it came in pieces
    assert result.tokens_in > 0 and result.tokens_out > 0


def test_a_model_that_never_gets_it_right_is_a_clear_failure(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Scripted(monkeypatch, [_plan("x", {"op": "remove_node", "id": "ghost"})] * 2)
    result = edit_with_model("remove the ghost", base, REGISTRY, CHOICE, attempts=2)
    assert result.proposal is None
    assert result.problems.startswith("no valid change after 2 attempts")
    assert "ghost" in result.problems


def test_an_unreachable_model_is_a_clear_failure(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import litellm
    from litellm.exceptions import APIConnectionError

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise APIConnectionError(message="connection refused", llm_provider="openai", model="x")

    monkeypatch.setattr(litellm, "completion", refuse)
    result = edit_with_model("anything", base, REGISTRY, CHOICE)
    assert result.proposal is None and result.attempts == 1
    assert "could not be reached" in result.problems


def test_the_reply_field_streams_across_chunk_boundaries() -> None:
    field = ReplyField()
    text = json.dumps({"reply": 'Café "ok"\nnext ☃', "operations": []})
    pieces = [field.feed(text[i : i + 3]) for i in range(0, len(text), 3)]
    assert "".join(pieces) == 'Café "ok"\nnext ☃'
    assert field.done


def test_tools_mode_sends_the_plan_schema_as_a_tool(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """instructor's tools mode (what llama.cpp and most providers enforce): the plan arrives as a tool call."""
    import litellm

    original = litellm.completion
    seen: dict[str, Any] = {}

    def completion(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        arguments = _plan("Capped.", {"op": "set_budget", "max_cion_per_run": 3})
        call = {"id": "c1", "type": "function", "function": {"name": "EditPlan", "arguments": arguments}}
        return original(*args, **kwargs, mock_tool_calls=[call])

    monkeypatch.setattr(litellm, "completion", completion)
    result = edit_with_model("cap it at 3", base, REGISTRY, ModelChoice("openai/scripted"))
    assert seen["tool_choice"]["function"]["name"] == "EditPlan"
    assert result.proposal is not None and result.reply == "Capped."
    assert _doc(result.proposal.after)["budget"] == {"max_cion_per_run": 3}


# --- Jules's review as proposals --------------------------------------------------------------------------------


def test_add_error_handling_proposes_the_advice_as_operations(base: str) -> None:
    reading = read("please add error handling", base, REGISTRY)
    assert reading.understood and reading.reply.startswith("I suggest:")
    proposal = propose(base, reading.operations, REGISTRY)
    assert proposal.valid, proposal.problems
    doc = _doc(proposal.after)
    assert doc["on_failure"][0]["type"] == "slack.post"  # the alert reuses the flow's own Slack
    assert doc["budget"]["max_cion_per_run"] > 0
    assert all("retry" in _node(doc, n) and "timeout" in _node(doc, n) for n in ("call_api", "write", "slack"))
    assert read("add error handling", proposal.after, REGISTRY).reply.startswith("The flow already handles errors")


def test_an_approval_goes_in_front_of_a_message_to_customers() -> None:
    text = """
fluxgraph: 1
id: thanks
triggers: [{type: webhook}]
nodes:
  - id: note
    type: llm.complete
    with: {model: default, prompt: "A thank-you note for {{ trigger.body.name }}"}
  - id: email
    type: email.send
    needs: [note]
    with: {to: "{{ trigger.body.email }}", subject: Thanks, body: "{{ nodes.note.output.text }}"}
"""
    proposal = propose(text, read("make it more robust", text, REGISTRY).operations, REGISTRY)
    assert proposal.valid, proposal.problems
    nodes = {n["id"]: n for n in _doc(proposal.after)["nodes"]}
    approval = next(n for n in nodes.values() if n["type"] == "approval")
    assert approval["id"] in nodes["email"]["needs"] and approval["needs"] == ["note"]


@pytest.mark.parametrize(
    ("message", "check"),
    [
        ("make it cheaper", lambda d: _node(d, "write")["with"]["model"] == "cheap"),
        (
            "document it",
            lambda d: (
                d["description"].startswith("Every Monday at 08:00 (UTC): fetches https://api.example.com/orders")
                and _node(d, "slack")["description"]
            ),
        ),
    ],
)
def test_cheaper_and_documented_drafts_are_proposals(base: str, message: str, check: Any) -> None:
    reading = read(message, base, REGISTRY)
    assert reading.understood, reading.reply
    proposal = propose(base, reading.operations, REGISTRY)
    assert proposal.valid, proposal.problems
    assert check(_doc(proposal.after))
