"""The flow graph (ui/graph.py): a layered layout without overlaps, and an SVG that is safe, stable and labelled."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from engine.dsl.model import Flow, StepNode
from engine.dsl.validator import load_data, load_flow
from tests.conftest import FLOWS, ROOT
from ui import layered
from ui.graph import STATUSES, Layout, NodeBox, layout, render, status_class, stylesheet

SVG = "{http://www.w3.org/2000/svg}"
FLOW_FILES = sorted(FLOWS.glob("*.yaml"))


def flow_of(*nodes: dict[str, Any], **extra: Any) -> Flow:
    return load_data({"fluxgraph": 1, "id": "graph-test", "nodes": list(nodes), **extra})


def log(node_id: str, *needs: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "log", "needs": list(needs), "with": {"message": node_id}, **extra}


def generated(count: int = 30, seed: int = 7) -> Flow:
    """A flow shaped like real ones: mostly chains and forks, some joins of up to three recent nodes."""
    rnd = random.Random(seed)
    nodes = [log("n0")]
    for i in range(1, count):
        picks = rnd.sample(range(max(0, i - 6), i), k=min(i, rnd.choice([1, 1, 1, 2, 2, 3])))
        nodes.append(log(f"n{i}", *(f"n{j}" for j in sorted(picks))))
    return flow_of(*nodes)


def load(path: Path) -> Flow:
    return load_flow(path.read_text(encoding="utf-8"), str(path))


def ancestors(drawn: Layout, box: NodeBox) -> set[str]:
    out, parent = set(), box.parent
    while parent is not None:
        out.add(parent)
        parent = drawn.node(parent).parent
    return out


def assert_no_overlaps(drawn: Layout) -> None:
    for a, b in itertools.combinations(drawn.nodes, 2):
        if a.id in ancestors(drawn, b) or b.id in ancestors(drawn, a):
            continue
        apart = a.right <= b.x or b.right <= a.x or a.bottom <= b.y or b.bottom <= a.y
        assert apart, f"{a.id} and {b.id} overlap"
    for box in drawn.nodes:
        assert box.x >= 0 and box.right <= drawn.width and box.y >= 0 and box.bottom <= drawn.height, box.id


def assert_edges_go_down(drawn: Layout) -> None:
    for edge in drawn.edges:
        source, target = drawn.node(edge.source), drawn.node(edge.target)
        assert source.bottom < target.y, f"{edge.source} -> {edge.target} does not point down"
        assert edge.points[0] == (source.x + source.width / 2, source.bottom)
        assert edge.points[-1] == (target.x + target.width / 2, target.y)
        ys = [y for _, y in edge.points]
        assert ys == sorted(ys)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def node_elements(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()]


def all_ids(nodes: Any) -> list[str]:
    out = []
    for n in nodes:
        out.append(n.id)
        out.extend(all_ids(getattr(n, "do", ())))
    return out


# --- layout --------------------------------------------------------------------------------------------------


def test_a_diamond_puts_its_two_branches_side_by_side() -> None:
    # Given a -> b, a -> c, b -> d, c -> d
    drawn = layout(flow_of(log("a"), log("b", "a"), log("c", "a"), log("d", "b", "c")))
    a, b, c, d = (drawn.node(i) for i in "abcd")
    # Then b and c share a layer and a row, next to each other, and a and d are centred over and under them
    assert (a.layer, b.layer, c.layer, d.layer) == (0, 1, 1, 2)
    assert b.y == c.y and (b.right <= c.x or c.right <= b.x)
    assert a.bottom < b.y and b.bottom < d.y
    assert a.x == pytest.approx(d.x) and a.x + a.width / 2 == pytest.approx((b.x + c.right) / 2)
    assert_no_overlaps(drawn)
    assert_edges_go_down(drawn)


def test_a_chain_is_one_straight_column() -> None:
    drawn = layout(flow_of(log("a"), log("b", "a"), log("c", "b")))
    assert {box.x for box in drawn.nodes} == {drawn.node("a").x}
    assert [box.layer for box in drawn.nodes] == [0, 1, 2]


def test_layers_follow_the_longest_path_and_long_edges_are_routed_between_boxes() -> None:
    # Given a skip edge a -> c next to the path a -> b -> c
    drawn = layout(flow_of(log("a"), log("b", "a"), log("c", "a", "b")))
    assert drawn.node("c").layer == 2
    skip = next(e for e in drawn.edges if (e.source, e.target) == ("a", "c"))
    # Then it passes layer 1 through its own channel, beside b rather than through it
    (x, top), (_, bottom) = skip.points[1], skip.points[2]
    b = drawn.node("b")
    assert top <= b.y and bottom >= b.bottom and not b.x <= x <= b.right


def test_barycenter_sweeps_remove_an_avoidable_crossing() -> None:
    # Given a document order that crosses: a -> d, b -> c with c written before d
    drawn = layout(flow_of(log("a"), log("b"), log("c", "b"), log("d", "a")))
    # Then d is drawn under a and c under b
    assert drawn.node("a").x < drawn.node("b").x
    assert drawn.node("d").x < drawn.node("c").x


def test_crossings_are_counted_between_adjacent_layers() -> None:
    down = {"a": ["d"], "b": ["c"], "c": [], "d": []}
    assert layered.crossings([["a", "b"], ["c", "d"]], down) == 1
    assert layered.crossings([["a", "b"], ["d", "c"]], down) == 0


def test_foreach_is_a_group_box_holding_its_steps() -> None:
    drawn = layout(load(FLOWS / "rss-morning-briefing.yaml"))
    group = drawn.node("feeds")
    assert group.kind == "foreach" and group.concurrency == 3 and group.items == "{{ inputs.feeds }}"
    for child_id in ("fetch_feed", "parse_feed"):
        child = drawn.node(child_id)
        assert child.parent == "feeds"
        assert group.x < child.x and child.right < group.right and group.y < child.y and child.bottom < group.bottom
    assert drawn.node("fetch_feed").bottom < drawn.node("parse_feed").y
    assert_no_overlaps(drawn)
    assert_edges_go_down(drawn)


def test_nested_foreach_groups_nest() -> None:
    inner = {"id": "inner", "type": "foreach", "items": "{{ item }}", "do": [log("leaf")]}
    outer = {"id": "outer", "type": "foreach", "items": "{{ inputs.rows }}", "do": [log("first"), inner]}
    drawn = layout(flow_of(log("start"), {**outer, "needs": ["start"]}, inputs={"type": "object"}))
    leaf, inner_box, outer_box = drawn.node("leaf"), drawn.node("inner"), drawn.node("outer")
    assert ancestors(drawn, leaf) == {"inner", "outer"}
    assert outer_box.x < inner_box.x < leaf.x and leaf.right < inner_box.right < outer_box.right
    assert_no_overlaps(drawn)


def test_on_failure_nodes_get_their_own_lane_under_the_graph() -> None:
    drawn = layout(load(FLOWS / "rss-morning-briefing.yaml"))
    (lane,) = drawn.lanes
    alert = drawn.node("alert")
    assert lane.name == "on_failure" and alert.lane == "on_failure"
    assert max(box.bottom for box in drawn.nodes if box.lane == "main") < lane.y
    assert lane.y < alert.y and alert.bottom < lane.y + lane.height
    assert lane.x < alert.x and alert.right < lane.x + lane.width
    assert all(drawn.node(e.source).lane == drawn.node(e.target).lane for e in drawn.edges)


def test_an_error_route_is_an_edge_of_its_own_kind() -> None:
    drawn = layout(load(FLOWS / "support-ticket-triage.yaml"))
    assert ("create_issue", "issue_fallback", "on_error") in {(e.source, e.target, e.kind) for e in drawn.edges}
    assert 'class="edge edge-on-error" data-source="create_issue"' in render(load(FLOWS / "support-ticket-triage.yaml"))


@pytest.mark.parametrize("path", FLOW_FILES, ids=lambda p: p.stem)
def test_every_shipped_flow_lays_out_cleanly_and_renders_every_node(path: Path) -> None:
    flow = load(path)
    drawn = layout(flow)
    assert_no_overlaps(drawn)
    assert_edges_go_down(drawn)
    root = parse(render(flow))
    expected = all_ids(flow.nodes) + all_ids(flow.on_failure)
    assert [g.get("data-node") for g in node_elements(root)] == expected
    assert [g.get("id") for g in node_elements(root)] == [f"node-{i}" for i in expected]


def test_thirty_nodes_lay_out_without_overlaps_in_a_legible_size() -> None:
    flow = generated()
    drawn = layout(flow)
    assert len(drawn.nodes) == 30
    assert_no_overlaps(drawn)
    assert_edges_go_down(drawn)
    # Then it grows with the graph yet stays within a couple of screens, with room between boxes
    layers = max(box.layer for box in drawn.nodes) + 1
    assert drawn.height <= layers * (layered.V_GAP + 52) + 40
    assert 600 < drawn.width <= 2000
    assert len(node_elements(parse(render(flow)))) == 30


def test_a_cyclic_graph_is_refused_rather_than_drawn_wrong() -> None:
    with pytest.raises(ValueError, match="cyclic"):
        layered.draw(["a", "b"], {"a": (10, 10), "b": (10, 10)}, [("a", "b"), ("b", "a")])


# --- the SVG -------------------------------------------------------------------------------------------------


def test_the_same_flow_renders_the_same_bytes() -> None:
    path = FLOWS / "rss-morning-briefing.yaml"
    assert render(load(path)) == render(load(path))
    assert render(generated()) == render(generated())


def test_output_does_not_depend_on_the_hash_seed() -> None:
    script = (
        "import hashlib, sys; from engine.dsl.validator import load_flow; from ui.graph import render; "
        "from pathlib import Path; "
        "print(hashlib.sha256(render(load_flow(Path(sys.argv[1]).read_text())).encode()).hexdigest())"
    )
    path = FLOWS / "support-ticket-triage.yaml"
    digests = {
        subprocess.run(
            [sys.executable, "-c", script, str(path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert digests == {hashlib.sha256(render(load(path)).encode()).hexdigest()}


def test_hostile_names_and_conditions_are_escaped() -> None:
    hostile = "</title><script>alert(1)</script>"
    condition = "{{ 1 < 2 and 'a' != \"&amp;<b>\" }}"
    flow = flow_of(log("a", name='"><img src=x onerror=alert(1)>', **{"if": condition}), name=hostile)
    svg = render(flow)
    assert "<script" not in svg and "<img" not in svg
    root = parse(svg)  # well-formed: nothing broke out of an attribute or an element
    assert root.findtext(f"{SVG}title") == f"Flow graph: {hostile}"
    badge = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "badge badge-if")
    assert badge.findtext(f"{SVG}title") == f"if: {condition}"


def test_hostile_ids_are_escaped_even_when_they_bypass_validation() -> None:
    evil = "x\"><script>alert(1)</script><g a='&"
    node = StepNode.model_construct(id=evil, type="log")
    flow = Flow.model_construct(fluxgraph=1, id="evil", nodes=(node,), on_failure=())
    root = parse(render(flow))
    (g,) = node_elements(root)
    assert g.get("data-node") == evil and g.get("id") == f"node-{evil}"
    assert not list(root.iter(f"{SVG}script"))


def test_long_text_is_cut_with_an_ellipsis_and_kept_whole_in_the_tooltip() -> None:
    long_id = "summarise_every_support_ticket_of_the_week_for_the_team_lead"
    root = parse(render(flow_of(log(long_id))))
    (g,) = node_elements(root)
    shown = g.findtext(f"{SVG}text")
    assert shown is not None and shown.endswith("\u2026") and len(shown) < len(long_id)
    assert long_id.startswith(shown[:-1])
    assert long_id in (g.findtext(f"{SVG}title") or "")


def test_statuses_become_classes_and_labels() -> None:
    flow = flow_of(*(log(s) for s in STATUSES), log("ready"), log("approving"), log("untouched"))
    statuses = {s: s for s in STATUSES} | {"ready": "ready", "approving": "awaiting_approval", "ghost": "failed"}
    by_id = {g.get("data-node"): g for g in node_elements(parse(render(flow, statuses)))}
    for status in STATUSES:
        assert f"status-{status}" in by_id[status].get("class", "").split()
        assert by_id[status].get("aria-label", "").endswith(status)
    assert "status-pending" in by_id["ready"].get("class", "").split()
    assert "status-waiting" in by_id["approving"].get("class", "").split()
    assert by_id["untouched"].get("class") == "node node-step status-pending"
    with pytest.raises(ValueError, match="unknown step status 'exploded'"):
        render(flow, {"a": "exploded", "running": "exploded"})
    assert status_class("skipped") == "status-skipped"


def test_the_graph_is_labelled_and_every_node_focusable() -> None:
    flow = load(FLOWS / "newsletter-with-approval.yaml")
    root = parse(render(flow))
    assert root.get("role") == "group" and root.get("aria-roledescription") == "flow graph"
    title = root.find(f"{SVG}title")
    assert title is not None and title.get("id") == root.get("aria-labelledby")
    assert (title.text or "").startswith("Flow graph: ")
    assert root.find(f"{SVG}desc") is not None
    for g in node_elements(root):
        assert g.get("tabindex") == "0" and g.get("role") == "button"
        label = g.get("aria-label") or ""
        shown = " ".join(t.text or "" for t in g.iter(f"{SVG}text"))  # what the box shows, in the name first
        assert label.startswith(f"{shown}, {g.get('data-node')}: "), (label, shown)
        assert g.find(f"{SVG}title") is not None
    approvals = [g for g in node_elements(root) if "node-approval" in g.get("class", "")]
    assert approvals and all(g.find(f"{SVG}polygon") is not None for g in approvals)  # a shape of its own


def test_colours_come_from_the_stylesheet_only() -> None:
    svg = render(load(FLOWS / "rss-morning-briefing.yaml"))
    assert not re.search(r"\s(fill|stroke|style)=", svg)
    css = stylesheet()
    for status in STATUSES[1:]:
        assert f".status-{status} > .node-box" in css
    assert "<style>" in render(load(FLOWS / "rss-morning-briefing.yaml"), standalone=True)


def contrast(a: str, b: str) -> float:
    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_has_readable_contrast_on_every_status() -> None:
    css = stylesheet()
    fills = re.findall(r"\.status-(\w+) > \.node-box,[^{]*\{ fill: (#[0-9a-f]{6})", css)
    assert {status for status, _ in fills} == set(STATUSES[1:])
    for status, fill in fills:
        text = "#4b5563" if status == "skipped" else "#374151"  # the lighter of the two text colours
        assert contrast(text, fill) >= 4.5, status
    assert contrast("#9a3412", "#fff7ed") >= 4.5  # the on_failure lane's label
