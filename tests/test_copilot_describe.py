"""Jules documents a flow: a description for the flow and each node, from triggers, node types and parameters,
written into the YAML without touching the rest; the same flow always gets the same words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from copilot.describe import cron_words, describe, document
from engine.dsl.canonical import comment_lines
from engine.dsl.validator import load_flow
from tests.conftest import FLOWS

FLOW = """\
fluxgraph: 1
id: sales-digest
name: Sales digest
triggers:
  - {type: cron, cron: "0 9 * * MON", timezone: Europe/Lisbon}
secrets: [slack_token]
nodes:
  - id: fetch
    type: http.request
    with: {url: "https://shop.example.com/api/orders?days={{ 7 }}"}
    permissions: {net: [shop.example.com]}
    retry: {max_attempts: 4}
    timeout: 30s
  - id: summary
    type: llm.complete
    needs: [fetch]
    with: {model: default, prompt: "Summarise these orders in five bullets: {{ nodes.fetch.output.body }}"}
  - id: post  # posts the digest
    type: slack.post
    needs: [summary]
    description: Written by hand.
    with: {token: "{{ secrets.slack_token }}", channel: "#sales", text: "{{ nodes.summary.output.text }}"}
on_failure:
  - {id: alert, type: email.send, with: {to: ops@example.com, subject: failed, body: "{{ run.error }}"}}
"""


def test_the_flow_and_each_node_are_described_from_triggers_types_and_parameters() -> None:
    described = describe(load_flow(FLOW))
    assert described.flow == (
        "Every Monday at 09:00 (Europe/Lisbon): fetches https://shop.example.com/api/orders?days=…, summarises "
        "these orders with the model `default`, posts to #sales on Slack. If a run fails, it emails ops@example.com."
    )
    assert described.nodes["fetch"] == (
        "Fetches https://shop.example.com/api/orders?days=…. Tries up to 4 times. Times out after 30s."
    )
    assert described.nodes["alert"] == "Emails ops@example.com."
    assert describe(load_flow(FLOW)) == described  # deterministic


def test_document_writes_missing_descriptions_and_keeps_the_rest() -> None:
    text = document(FLOW)
    data = yaml.safe_load(text)
    assert data["description"].startswith("Every Monday at 09:00") and list(data)[:4] == [
        "fluxgraph",
        "id",
        "name",
        "description",
    ]
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["summary"]["description"] == "Summarises these orders with the model `default`."
    assert nodes["post"]["description"] == "Written by hand."  # an author's description stays
    assert data["on_failure"][0]["description"] == "Emails ops@example.com."
    assert "# posts the digest" in text and load_flow(text).nodes[0].description
    # with overwrite, the author's text is replaced too; and writing twice changes nothing more
    again = document(text, overwrite=True)
    assert yaml.safe_load(again)["nodes"][2]["description"] == "Posts to #sales on Slack."
    assert document(again, overwrite=True) == again


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("15 7 * * 1-5", "Every weekday at 07:15"),
        ("0 9,17 * * *", "Every day at 09:00 and 17:00"),
        ("0 10 1 * *", "On day 1 of every month at 10:00"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("@hourly", "Every hour"),
        ("0 8 * * MON,WED,FRI", "Every Monday, Wednesday and Friday at 08:00"),
        ("0 8-18/2 * * MON-FRI", "On the schedule `0 8-18/2 * * MON-FRI`"),
    ],
)
def test_cron_in_words(cron: str, words: str) -> None:
    assert cron_words(cron) == words


@pytest.mark.parametrize("path", sorted(FLOWS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_flow_can_be_documented(path: Path) -> None:
    text = path.read_text("utf-8")
    new = document(text, overwrite=True, file=str(path))
    flow = load_flow(new, str(path))
    assert flow.description and all(n.description for n in flow.nodes)
    assert len(comment_lines(new)) == len(comment_lines(text))
