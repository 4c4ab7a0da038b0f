"""The co-pilot's evaluation metrics, rule by rule as ../shared/evals/*/README.md define them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from evals import cron_match, flowshape, indomain, taskbench
from tests.conftest import shared_evals


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("*/15 * * * *", "0,15,30,45 * * * *", True),
        ("0/15 * * * *", "*/15 * * * *", True),
        ("30 8 * * MON-FRI", "30 8 * * 1-5", True),
        ("0 9 * * MON-SUN", "0 9 * * *", True),
        ("0 9 * * 1-0", "0 9 * * 0-6", True),
        ("@weekly", "0 0 * * SUN", True),
        ("0 0 * * 7", "0 0 * * 0", True),
        ("@yearly", "0 0 1 JAN *", True),
        ("@hourly", "0 * * * *", True),
        ("0 9 * * 1-5", "0 9 * * 1-6", False),
        ("0 9 * * *", "0 8 * * *", False),
    ],
)
def test_cron_schedules_are_compared_as_value_sets(a: str, b: str, equal: bool) -> None:
    assert (cron_match.normalise(a) == cron_match.normalise(b)) is equal


def test_a_schedule_split_over_triggers_matches_its_union() -> None:
    assert cron_match.matches("0 9,17 * * *", ["0 9 * * *", "0 17 * * *"])
    assert not cron_match.matches("0 9,17 * * *", ["0 9 * * *", "30 17 * * *"])  # differ in two fields
    assert not cron_match.matches("0 9 * * *", ["not a cron"])


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("UTC", "Etc/UTC", True),
        ("Etc/Universal", "UTC", True),
        ("Portugal", "Europe/Lisbon", True),
        ("Europe/Lisbon", "Europe/Madrid", False),
        ("Europe/Lisbon", "", False),
        ("Nowhere/City", "UTC", False),
    ],
)
def test_time_zones_match_through_iana_links(a: str, b: str, same: bool) -> None:
    assert indomain.same_zone(a, b) is same


FLOW = textwrap.dedent(
    """
    fluxgraph: 1
    id: sample
    triggers:
      - {type: cron, cron: "30 8 * * MON-FRI", timezone: Portugal}
    nodes:
      - {id: fetch, type: http.request, with: {url: "https://shop.example/api/orders"}}
      - {id: each, type: foreach, needs: [fetch], items: "{{ nodes.fetch.output.body }}", do: [
          {id: sum, type: code.python, with: {code: "def main(x): return x"}},
          {id: post, type: discord.post, needs: [sum], with: {content: "#sales daily: 2.50 EUR"}}]}
      - {id: mail, type: email.send, needs: [fetch, each], with: {to: ana@shop.pt}}
    on_failure:
      - {id: alert, type: slack.post, needs: [fetch], with: {channel: "#ops", text: wait 90 minutes}}
    """
)


def test_a_flow_is_read_flat_with_reduced_typed_edges() -> None:
    shape = flowshape.read(FLOW)
    assert [t["type"] for t in shape.triggers] == ["cron"]
    assert sorted(shape.node_types) == sorted(
        ["http.request", "foreach", "code", "discord.post", "email.send", "slack.post"]
    )
    # fetch -> mail is implied by fetch -> each -> mail: reduced away; on_failure adds nothing
    assert sorted(shape.edges) == [
        ("code", "discord.post"),
        ("foreach", "code"),
        ("foreach", "email.send"),
        ("http.request", "foreach"),
    ]
    assert flowshape.read("not: [valid") == flowshape.Shape() and flowshape.read("- a list") == flowshape.Shape()


@pytest.mark.parametrize(
    ("key", "item", "found"),
    [
        ("discord.post.channel", "sales", True),  # '#sales': no letter or digit next to it
        ("email.send.to", "ana@shop.pt", True),
        ("x.word", "wholesales", False),
        ("x.word", "ops", True),
        ("x.amount", 2.5, True),  # 2.50 in the text
        ("x.amount", 3, False),
        ("delay.duration", "1.5h", True),  # 90 minutes
        ("delay.duration", "5400s", True),
        ("delay.duration", "2h", False),
        ("cron", "30 8 * * 1-5", True),
        ("timezone", "Europe/Lisbon", True),  # Portugal is a link to it
        ("http.request.url", "https://shop.example/api/orders", True),
        ("x.name", "shop example", False),  # a dot is not folded (only spaces, underscores, hyphens)
    ],
)
def test_key_params_are_found_by_their_kind(key: str, item: object, found: bool) -> None:
    assert indomain.found(key, item, flowshape.read(FLOW)) is found


def test_accents_and_separators_fold() -> None:
    shape = flowshape.read("fluxgraph: 1\nid: x\nnodes:\n  - {id: a, type: log, with: {m: 'Frío pt_orders'}}\n")
    assert indomain.found("k", "frio", shape) and indomain.found("k", "pt-orders", shape)
    assert indomain.found("k", "PT ORDERS", shape)


def test_a_perfect_flow_scores_100_and_an_empty_one_0() -> None:
    gold = {
        "id": "x-1",
        "lang": "en",
        "triggers": [{"type": "cron", "cron": "30 8 * * 1-5", "timezone": "Europe/Lisbon", "cron_exact": True}],
        "nodes": [
            {"id": "f", "type": "http.request"},
            {"id": "e", "type": "foreach"},
            {"id": "s", "type": "code.js", "parent": "e"},
            {"id": "p", "type": "discord.post", "parent": "e"},
            {"id": "m", "type": "email.send"},
            {"id": "a", "type": "slack.post", "on_failure": True},
        ],
        "edges": [["f", "e"], ["e", "s"], ["s", "p"], ["e", "m"]],
        "key_params": {"discord.post.channel": "sales", "email.send.to": ["ana@shop.pt"]},
    }
    perfect = indomain.score([(gold, flowshape.read(FLOW), True)])["overall"]
    assert perfect == {
        "trigger_accuracy": 100.0,
        "cron_exact": 100.0,
        "timezone_match": 100.0,
        "node_f1": 100.0,
        "edge_f1": 100.0,
        "key_param_recall": 100.0,
        "validity": 100.0,
    }
    empty = indomain.score([(gold, flowshape.read(None), False)])
    assert empty["overall"]["trigger_accuracy"] == 0.0 and empty["overall"]["node_f1"] == 0.0
    assert empty["overall"]["validity"] == 0.0 and empty["by"]["trigger=cron"]["records"] == 1
    assert "combined_control" in empty["by"]  # foreach + on_failure


def test_taskbench_f1_over_names_and_links() -> None:
    gold = {
        "task_nodes": [{"task": "a"}, {"task": "b"}, {"task": "c"}],
        "task_links": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    }
    result = taskbench.score([(gold, {"a", "b", "x"}, {("a", "b"), ("b", "x")})])["overall"]
    assert result == {"node_f1": 66.7, "edge_f1": 50.0}  # nodes P 2/3 R 2/3; links P 1/2 R 1/2
    single = {"task_nodes": [{"task": "a"}], "task_links": []}
    assert taskbench.score([(single, {"a"}, {("a", "b")})])["overall"] == {"node_f1": 100.0, "edge_f1": 0.0}


def test_the_shared_data_loads() -> None:
    shared = shared_evals()
    catalog = taskbench.load_catalog(shared / "taskbench-dailylife" / "tool_desc.json")
    assert len(catalog) == 40 and all(tool.desc for tool in catalog)
    lines = (shared / "indomain" / "dev.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert len(records) == 20 and all(r["triggers"] and r["nodes"] for r in records)


def test_ionflux_eval_scores_a_predictions_file(tmp_path: Path) -> None:
    from tests.cli_helpers import ionflux

    shared = shared_evals()

    data = shared / "indomain" / "dev.jsonl"
    first = json.loads(data.read_text("utf-8").splitlines()[0])
    predictions = tmp_path / "predictions.jsonl"
    valid_flow = (
        "fluxgraph: 1\nid: p\ntriggers:\n  - {type: manual}\nnodes:\n  - {id: a, type: log, with: {message: hi}}\n"
    )
    predictions.write_text(json.dumps({"id": first["id"], "flow": valid_flow}) + "\n")
    out = tmp_path / "results.json"
    done = ionflux(
        tmp_path,
        "eval",
        "indomain",
        "--data",
        str(data),
        "--predictions",
        str(predictions),
        "--limit",
        "2",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validity             50.0" in done.stdout and "node_f1" in done.stdout  # 1 valid of 2 records
    report = json.loads(out.read_text())
    assert report["records"] == 2 and report["cost"]["failures"] == 1  # the second record had no prediction
    assert [p["id"] for p in report["predictions"]] == [first["id"], report["predictions"][1]["id"]]
    tb = shared / "taskbench-dailylife"
    gold = json.loads((tb / "dev.jsonl").read_text("utf-8").splitlines()[0])
    exact = tmp_path / "tb.jsonl"
    exact.write_text(json.dumps({"id": gold["id"], "task_nodes": gold["task_nodes"], "task_links": gold["task_links"]}))
    done = ionflux(
        tmp_path, "eval", "taskbench", "--data", str(tb / "dev.jsonl"), "--predictions", str(exact), "--limit", "1"
    )
    assert (
        done.returncode == 0
        and "node_f1              100.0" in done.stdout
        and "edge_f1              100.0" in done.stdout
    )
