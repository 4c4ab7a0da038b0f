"""Jules's error-handling advice: retries and timeouts for outside calls, a failure alert, an approval before
irreversible sends, a budget sized from the forecast; applied to the YAML text, the rest of it kept as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from copilot.advice import Advice, AdviceError, advise, apply_advice, nice_ceiling
from copilot.yamledit import Edit, EditNotApplicable, apply_edits
from engine.dsl.canonical import comment_lines
from engine.dsl.validator import load_flow
from engine.nodetypes.builtin import builtin_registry
from tests.conftest import FLOWS

FLOW = """\
fluxgraph: 1
id: receipts
name: Receipts
triggers:
  - {type: webhook}

nodes:
  # the order comes from the shop
  - id: fetch
    type: http.request
    with: {url: "https://shop.example.com/api/orders/{{ trigger.body.id }}"}
    permissions: {net: [shop.example.com]}
  - id: note
    type: llm.complete
    needs: [fetch]
    with:
      model: default
      prompt: "Thank the customer for {{ nodes.fetch.output.body.item }}"
      max_tokens: 100
    timeout: 60s
  - {id: send, type: email.send, needs: [note],
     with: {to: "{{ nodes.fetch.output.body.email }}", subject: Thanks, body: "{{ nodes.note.output.text }}"}}
"""


def by_kind(advice: list[Advice]) -> dict[tuple[str, str | None], Advice]:
    return {(a.kind, a.node_id): a for a in advice}


def test_it_advises_retries_timeouts_an_alert_an_approval_and_a_budget() -> None:
    # Given a flow with outside calls, no alert, no budget and an email to an address from the run's data
    flow = load_flow(FLOW)
    # When Jules advises on it
    found = by_kind(advise(flow))
    # Then every outside call gets a retry, and a timeout unless it has one
    assert {k for k in found if k[0] == "retry"} == {("retry", "fetch"), ("retry", "note"), ("retry", "send")}
    assert {k for k in found if k[0] == "timeout"} == {("timeout", "fetch"), ("timeout", "send")}
    assert found["retry", "note"].fragment == (
        "# in nodes[1]:\nretry: {max_attempts: 3, backoff: exponential, initial_delay: 5s, max_delay: 1m}"
    )
    # and the flow gets an alert, an approval before the send, and a budget from the forecast with headroom
    assert "to: ops@example.com" in found["on_failure", None].fragment
    approval = found["approval", "send"]
    assert approval.field == "needs" and "to: {{ nodes.fetch.output.body.email }}" in approval.why
    budget = found["budget", None]
    assert budget.fragment == "budget: {max_cion_per_run: 2.0}"  # (0.05 + 1.2 + 0.05) x 1.5 = 1.95 -> 2.0
    assert "1.3 C-ION per run" in budget.why


def test_applied_advice_keeps_the_rest_of_the_document_and_validates() -> None:
    # Given all the advice for the flow
    advice = advise(load_flow(FLOW))
    # When it is applied to the text (in an order unlike the findings', which must not matter)
    text = apply_advice(FLOW, reversed(advice))
    # Then the result validates, keeps the comment, and has what the advice said, nothing else changed
    flow = load_flow(text)
    assert comment_lines(text) and "# the order comes from the shop" in text
    data = yaml.safe_load(text)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert [n["id"] for n in data["nodes"]] == ["fetch", "note", "approve_send", "send"]
    assert nodes["send"]["needs"] == ["note", "approve_send"] and nodes["approve_send"]["needs"] == ["note"]
    assert nodes["send"]["retry"]["max_attempts"] == 3 and nodes["send"]["timeout"] == "30s"
    assert nodes["note"]["timeout"] == "60s" and nodes["note"]["with"]["max_tokens"] == 100
    assert data["budget"] == {"max_cion_per_run": 2.0} and flow.on_failure[0].type == "email.send"
    # and advising the new flow finds nothing left to do
    assert advise(flow) == []


def test_a_flow_that_posts_to_slack_is_alerted_on_slack_with_the_same_grants() -> None:
    text = """\
fluxgraph: 1
id: digest
secrets: [hook]
budget: {max_cion_per_month: 100}
nodes:
  - id: post
    type: slack.post
    with: {webhook_url: "{{ secrets.hook }}", text: hi}
    permissions: {net: [hooks.slack.com]}
    retry: {max_attempts: 2}
    timeout: 5s
"""
    found = by_kind(advise(load_flow(text)))
    alert = yaml.safe_load(found["on_failure", None].fragment)["on_failure"][0]
    assert alert["type"] == "slack.post" and alert["with"]["webhook_url"] == "{{ secrets.hook }}"
    assert alert["permissions"] == {"net": ["hooks.slack.com"]}
    # a monthly cap is kept; the per-run cap goes beside it
    assert found["budget", None].edits == (Edit(("budget",), "max_cion_per_run", 0.075),)  # 0.05 x 1.5
    data = yaml.safe_load(apply_advice(text, found.values()))
    assert data["budget"] == {"max_cion_per_month": 100, "max_cion_per_run": 0.075}


def test_payments_are_irreversible_but_internal_notifications_are_not() -> None:
    text = """\
fluxgraph: 1
id: pay
budget: {max_cion_per_run: 5}
on_failure: [{id: alert, type: log, with: {message: failed}}]
nodes:
  - id: charge
    type: http.request
    with: {method: POST, url: "https://api.stripe.com/v1/charges", json: {amount: 100}}
    permissions: {net: [api.stripe.com]}
    timeout: 10s
  - id: tell_ops
    type: email.send
    needs: [charge]
    with: {to: "ops@example.com", subject: charged, body: done}
    retry: {max_attempts: 2}
    timeout: 10s
"""
    found = by_kind(advise(load_flow(text)))
    assert set(found) == {("retry", "charge"), ("approval", "charge")}
    assert "payment endpoint" in found["approval", "charge"].why
    # a retried POST is made safe with the step's idempotency key
    assert Edit(("nodes", 0, "with"), "idempotency_key", True) in found["retry", "charge"].edits
    data = yaml.safe_load(apply_advice(text, found.values()))
    assert data["nodes"][0]["id"] == "approve_charge" and data["nodes"][1]["with"]["idempotency_key"] is True


def test_a_loop_that_emails_customers_is_approved_once_before_the_loop() -> None:
    path = FLOWS / "customer-winback.yaml"
    text = path.read_text("utf-8")
    found = by_kind(advise(load_flow(text, str(path))))
    approval = found["approval", "each_customer"]
    assert "in the loop `each_customer`" in approval.why
    new = load_flow(apply_advice(text, [approval], file=str(path)))
    assert "approve_each_customer" in next(n for n in new.nodes if n.id == "each_customer").needs


@pytest.mark.parametrize("path", sorted(FLOWS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_flow_takes_all_its_advice_and_still_validates(path: Path) -> None:
    text = path.read_text("utf-8")
    advice = advise(load_flow(text, str(path)), builtin_registry())
    new = apply_advice(text, advice, file=str(path))
    assert len(comment_lines(new)) == len(comment_lines(text))  # no comment lost
    assert advise(load_flow(new)) == []


def test_edits_that_do_not_fit_the_text_are_refused_with_a_fix() -> None:
    with pytest.raises(EditNotApplicable, match="no mapping at nodes\\[7\\]") as e:
        apply_edits(FLOW, [Edit(("nodes", 7), "timeout", "5s")])
    assert "current text" in e.value.hint


def test_advice_that_does_not_fit_the_text_is_refused_under_advices_own_code() -> None:
    # Given advice made for another version of the flow (it names a node the text does not have)
    edit = Edit(("nodes", 7), "timeout", "5s")
    stale = Advice("timeout", "gone", "timeout", "timeout: 5s", "", (edit,))
    # When it is applied, then it is refused with advice's stable code and the editor's fix
    with pytest.raises(AdviceError, match="no mapping at nodes\\[7\\]") as e:
        apply_advice(FLOW, [stale])
    assert e.value.code == "copilot.advice_not_applicable"
    assert "current text" in e.value.hint


@pytest.mark.parametrize(("value", "cap"), [(1.95, 2.0), (3.14, 3.2), (147, 150.0), (0.0123, 0.013), (0, 0.1)])
def test_caps_are_rounded_up_to_two_significant_digits(value: float, cap: float) -> None:
    assert nice_ceiling(value) == cap
