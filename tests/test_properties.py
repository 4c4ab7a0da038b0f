"""Property-based tests (hypothesis): random valid flows round-trip; random mutations only ever produce
located validation issues, never another exception."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dsl.canonical import YamlDumper, to_yaml, version_id
from engine.dsl.diff import diff
from engine.dsl.forecast import flow_forecast
from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import check_data, check_flow, load_data, load_flow
from engine.nodetypes.builtin import builtin_registry
from tests.conftest import FLOWS

IDS = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False), TEXT
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def node_bodies(draw: st.DrawFn, node_id: str, earlier: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["log", "data.set", "delay", "llm.complete", "http.request", "text.template"]))
    needs = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
    ref = f"{{{{ nodes.{needs[0]}.output }}}}" if needs else "{{ inputs.days }}"
    body: dict[str, Any] = {"id": node_id, "type": kind}
    if needs:
        body["needs"] = needs
    if kind == "log":
        body["with"] = {"message": draw(st.sampled_from([ref, "plain text", f"got {ref}"]))}
    elif kind == "data.set":
        body["with"] = {"value": draw(JSONISH), "ref": ref}
    elif kind == "delay":
        body["with"] = {"duration": draw(st.sampled_from(["1s", "90s", "1m30s", 5, 0.5]))}
    elif kind == "llm.complete":
        body["with"] = {"prompt": f"Summarise {ref}", "max_tokens": draw(st.integers(1, 4000))}
    elif kind == "http.request":
        body["with"] = {"url": "https://api.example.com/x", "method": draw(st.sampled_from(["GET", "POST"]))}
        body["permissions"] = {"net": ["api.example.com"]}
    else:
        body["with"] = {"template": draw(TEXT.filter(lambda t: "{" not in t and "%" not in t))}
    if draw(st.booleans()):
        body["retry"] = {
            "max_attempts": draw(st.integers(1, 10)),
            "backoff": draw(st.sampled_from(["constant", "exponential"])),
            "initial_delay": draw(st.sampled_from(["1s", "2s", 3])),
            "jitter": draw(st.booleans()),
        }
    if draw(st.booleans()):
        body["timeout"] = draw(st.sampled_from(["30s", "5m", 10]))
    if draw(st.booleans()):
        body["if"] = draw(st.sampled_from([True, False, f"{{{{ {ref[3:-3]} is not none }}}}"]))
    if draw(st.booleans()):
        body["on_error"] = "continue"
    return body


@st.composite
def valid_flows(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(IDS, min_size=1, max_size=8, unique=True))
    nodes = [draw(node_bodies(node_id, ids[:k])) for k, node_id in enumerate(ids)]
    if draw(st.booleans()):
        inner_id = ids[0] + "_inner"
        nodes.append(
            {
                "id": ids[0] + "_loop",
                "type": "foreach",
                "items": "{{ inputs.list }}",
                "concurrency": draw(st.integers(1, 10)),
                "do": [{"id": inner_id, "type": "log", "with": {"message": "{{ item }} #{{ index }}"}}],
            }
        )
    triggers = draw(
        st.lists(
            st.sampled_from(
                [
                    {"type": "manual"},
                    {"type": "cron", "cron": "30 8 * * MON-FRI", "timezone": "Europe/Lisbon"},
                    {"type": "event", "subject": "orders.*.created"},
                    {"type": "webhook", "dedupe_header": "X-Id"},
                    {"type": "flow"},
                ]
            ),
            max_size=3,
            unique_by=lambda t: t["type"],
        )
    )
    flow: dict[str, Any] = {
        "fluxgraph": 1,
        "id": draw(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)),
        "inputs": {"type": "object", "properties": {"days": {"type": "integer"}, "list": {"type": "array"}}},
        "nodes": nodes,
        "triggers": triggers,
    }
    if draw(st.booleans()):
        flow["name"] = draw(TEXT)
    if draw(st.booleans()):
        flow["budget"] = {"max_cion_per_run": draw(st.integers(1, 10_000))}
    if draw(st.booleans()):
        flow["outputs"] = {"last": f"{{{{ nodes.{ids[-1]}.status }}}}"}
    return flow


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(valid_flows())
def test_random_valid_flows_round_trip(data: dict[str, Any]) -> None:
    # Given a random valid flow
    flow = load_data(data)
    # When it is dumped to canonical YAML and loaded again, and also written in a different YAML style
    again = load_flow(to_yaml(flow))
    restyled_text = yaml.dump(data, Dumper=YamlDumper, default_flow_style=True, sort_keys=True, width=60)
    restyled = load_flow(restyled_text)
    # Then the model is equal and the version id is the same
    assert again == flow and restyled == flow
    assert version_id(again) == version_id(flow) == version_id(restyled)


def _valid_texts() -> list[str]:
    return [p.read_text("utf-8") for p in sorted(FLOWS.glob("*.yaml"))]


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_valid_texts()))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.splitlines(keepends=True) or [""]
        k = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete_line", "dup_line", "swap", "insert", "delete_chars", "indent", "replace"]))
        if op == "delete_line":
            del lines[k]
        elif op == "dup_line":
            lines.insert(k, lines[k])
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif op == "insert":
            pos = draw(st.integers(0, len(lines[k])))
            junk = draw(st.text(st.sampled_from(list(":-{}[]#&*!|>'\"%@`, \t\n\x00abc0123{{}}")), max_size=6))
            lines[k] = lines[k][:pos] + junk + lines[k][pos:]
        elif op == "delete_chars" and lines[k]:
            a = draw(st.integers(0, len(lines[k]) - 1))
            lines[k] = lines[k][:a] + lines[k][a + draw(st.integers(1, 8)) :]
        elif op == "indent":
            lines[k] = draw(st.sampled_from(["", " ", "    ", "\t"])) + lines[k].lstrip(" ")
        elif op == "replace":
            word = draw(
                st.sampled_from(["needs", "type", "with", "id", "nodes", "if", "1", "true", "null", "[]", "{}"])
            )
            lines[k] = lines[k].replace(draw(st.sampled_from(["id", "type", "needs", "with", ":", "{{", "-"])), word, 1)
        text = "".join(lines)
    return text


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mutated_texts())
def test_random_text_mutations_only_produce_located_issues(text: str) -> None:
    # When a mutated blueprint is validated, Then it returns a report (never raises) and every error is located
    report = check_flow(text, "mutant.yaml")
    for issue in report.errors:
        assert issue.location.file == "mutant.yaml"
        assert issue.location.line >= 1, str(issue)
        assert issue.code and issue.message
    if report.errors:
        try:
            load_flow(text, "mutant.yaml")
        except FlowValidationError as e:
            assert e.issues
        else:
            raise AssertionError("load_flow accepted a flow check_flow rejected")
    elif report.flow is not None:
        # a mutant that is still valid must survive everything the CLI does with a flow
        again = load_flow(to_yaml(report.flow))
        assert again == report.flow and version_id(again) == version_id(report.flow)
        assert diff(report.flow, again).empty
        flow_forecast(report.flow, builtin_registry())


@st.composite
def mutated_data(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(draw(valid_flows())))
    for _ in range(draw(st.integers(1, 3))):
        container: Any = data
        for _depth in range(draw(st.integers(0, 4))):
            if isinstance(container, dict) and container:
                nxt = container[draw(st.sampled_from(sorted(container)))]
            elif isinstance(container, list) and container:
                nxt = container[draw(st.integers(0, len(container) - 1))]
            else:
                break
            if not isinstance(nxt, dict | list):
                break
            container = nxt
        if isinstance(container, dict) and container:
            key = draw(st.sampled_from(sorted(container)))
            if draw(st.booleans()):
                del container[key]
            else:
                container[key] = draw(JSONISH)
        elif isinstance(container, list) and container:
            container[draw(st.integers(0, len(container) - 1))] = draw(JSONISH)
    return data


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mutated_data())
def test_random_data_mutations_only_produce_issues_with_paths(data: dict[str, Any]) -> None:
    report = check_data(data, "draft")
    for issue in report.errors:
        assert issue.code and issue.message and issue.location.file == "draft"
        assert issue.path or issue.code.startswith("schema."), str(issue)
