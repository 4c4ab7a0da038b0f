"""Structural diff between flow versions."""

from __future__ import annotations

from engine.dsl.diff import diff
from engine.dsl.graph import Edge
from engine.dsl.validator import load_flow

BASE = """\
fluxgraph: 1
id: d
name: Digest
nodes:
  - {id: fetch, type: http.request, with: {url: "https://a.example.com/x"}, permissions: {net: [a.example.com]}}
  - {id: summary, type: llm.complete, needs: [fetch], with: {prompt: "{{ nodes.fetch.output.body }}"}}
  - {id: post, type: log, needs: [summary], with: {message: "{{ nodes.summary.output.text }}"}}
"""


def test_identical_flows_have_an_empty_diff_even_when_formatted_differently() -> None:
    restyled = BASE.replace("{id: post, type: log,", "{type: log, id: post,")
    result = diff(load_flow(BASE), load_flow(restyled))
    assert result.empty and result.render().startswith("no changes")


def test_diff_reports_nodes_edges_and_fields() -> None:
    # Given a new version that retries fetch, drops post, adds email (needing summary) and renames the flow
    new = (
        BASE.replace("name: Digest", "name: Daily digest")
        .replace(
            "permissions: {net: [a.example.com]}}", "permissions: {net: [a.example.com]}, retry: {max_attempts: 5}}"
        )
        .replace(
            '  - {id: post, type: log, needs: [summary], with: {message: "{{ nodes.summary.output.text }}"}}\n',
            "  - {id: email, type: email.send, needs: [summary], with: {to: a@b.c, subject: s, body: b}}\n",
        )
    )
    result = diff(load_flow(BASE), load_flow(new))
    assert result.added_nodes == (("email", "email.send"),)
    assert result.removed_nodes == (("post", "log"),)
    assert [(c.id, c.fields) for c in result.changed_nodes] == [("fetch", ("retry",))]
    assert result.added_edges == (Edge("summary", "email"),)
    assert result.removed_edges == (Edge("summary", "post"),)
    assert result.changed_fields == ("name",)
    text = result.render()
    assert "+ node email (email.send)" in text and "- edge summary -> post" in text
    assert result.to_dict()["changed_nodes"] == [{"id": "fetch", "type": "http.request", "fields": ["retry"]}]


def test_changed_fields_are_deep_paths() -> None:
    new = BASE.replace('with: {url: "https://a.example.com/x"}', 'with: {url: "https://a.example.com/y"}')
    (change,) = diff(load_flow(BASE), load_flow(new)).changed_nodes
    assert change.fields == ("with.url",)


def test_moving_a_node_into_a_loop_and_reordering_nodes_are_reported() -> None:
    base = (
        "fluxgraph: 1\nid: d\nnodes:\n  - {id: a, type: log, with: {message: a}}\n"
        "  - {id: b, type: log, with: {message: b}}\n"
    )
    looped = (
        "fluxgraph: 1\nid: d\nnodes:\n  - {id: b, type: log, with: {message: b}}\n"
        "  - {id: l, type: foreach, items: [1], do: [{id: a, type: log, with: {message: a}}]}\n"
    )
    moved = diff(load_flow(base), load_flow(looped))
    assert [(c.id, c.fields) for c in moved.changed_nodes] == [("a", ("(list)",))]
    assert "~ node a (log): (list)" in moved.render()
    swapped = (
        base.replace("{id: a, type: log, with: {message: a}}", "X")
        .replace("{id: b, type: log, with: {message: b}}", "{id: a, type: log, with: {message: a}}")
        .replace("X", "{id: b, type: log, with: {message: b}}")
    )
    reordered = diff(load_flow(base), load_flow(swapped))
    assert not reordered.empty and reordered.changed_fields == ("order of nodes",)
