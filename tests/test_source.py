"""The YAML reader: positions, YAML 1.2 scalars, and bounded, clear errors on hostile input."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest

from engine.dsl.issue import FlowValidationError
from engine.dsl.source import Limits, parse_yaml
from engine.dsl.validator import check_flow

TIME_LIMIT_S = 3.0
MEMORY_LIMIT_BYTES = 64 * 1024 * 1024


def test_positions_of_keys_and_values_are_one_based() -> None:
    doc = parse_yaml("a: 1\nb:\n  - x\n  - {c: 2}\n")
    assert doc.source.locate(("a",)).line == 1
    assert (doc.source.locate(("b", 1, "c")).line, doc.source.locate(("b", 1, "c")).column) == (4, 9)
    assert doc.source.locate(("b", 1, "c"), key=True).column == 6
    assert doc.source.locate(("b", 7, "zzz")).line == 3  # falls back to the nearest located ancestor


def test_scalars_follow_yaml_1_2_core_schema() -> None:
    doc = parse_yaml("a: yes\nb: no\nc: on\nd: true\ne: 0x1f\nf: 2024-01-01\ng: '12'\nh: ~\ni: 1.5e3\nj: 0o17\n")
    assert doc.data == {
        "a": "yes",
        "b": "no",
        "c": "on",
        "d": True,
        "e": 31,
        "f": "2024-01-01",
        "g": "12",
        "h": None,
        "i": 1500.0,
        "j": 15,
    }


def test_merge_keys_and_aliases_are_supported() -> None:
    doc = parse_yaml("base: &r {max_attempts: 3}\nnode:\n  <<: *r\n  backoff: constant\n")
    assert doc.data["node"] == {"backoff": "constant", "max_attempts": 3}


def _bounded(make: Callable[[], bytes | str]) -> list[str]:
    """Validate the document; assert it fails with located issues within the time and memory bounds."""
    text = make()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        report = check_flow(text, "hostile.yaml")
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.2f}s"
    assert peak < MEMORY_LIMIT_BYTES, f"peak {peak / 1e6:.1f} MB"
    assert report.flow is None and report.errors
    for issue in report.errors:
        assert issue.message and issue.hint and issue.location.file == "hostile.yaml"
    return [i.code for i in report.errors]


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _deep_anchors() -> str:
    lines = ["x0: &x0 [1]"]
    lines += [f"x{k}: &x{k} [*x{k - 1}, *x{k - 1}]" for k in range(1, 40)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "make", "code"),
    [
        ("empty file", lambda: "", "yaml.empty"),
        ("only a comment", lambda: "# nothing here\n", "yaml.empty"),
        ("binary junk", lambda: bytes(range(256)) * 64, "yaml.encoding"),
        ("NUL bytes in text", lambda: "fluxgraph: 1\nid: \x00x\n", "yaml.encoding"),
        ("a 10 MB YAML", lambda: "fluxgraph: 1\nnodes:\n" + "  - {id: a, type: log}\n" * 460_000, "yaml.too_large"),
        ("billion laughs", _billion_laughs, "yaml.too_large"),
        ("deep anchors (2^40 expansion)", _deep_anchors, "yaml.too_large"),
        ("10,000-level flow nesting", lambda: "a: " + "[" * 10_000 + "]" * 10_000 + "\n", "yaml.too_deep"),
        ("1,500-level block nesting", lambda: "".join(" " * k + f"k{k}:\n" for k in range(1_500)), "yaml.too_deep"),
        ("duplicate keys", lambda: "fluxgraph: 1\nid: a\nid: b\nnodes: []\n", "yaml.duplicate_key"),
        ("tab indentation", lambda: "fluxgraph: 1\nnodes:\n\t- id: a\n", "yaml.syntax"),
        ("two documents", lambda: "fluxgraph: 1\n---\nfluxgraph: 1\n", "yaml.multiple_documents"),
        ("python object tag", lambda: "x: !!python/object/apply:os.system ['id']\n", "yaml.unsupported_tag"),
        ("unclosed quote", lambda: 'fluxgraph: 1\nid: "abc\n', "yaml.syntax"),
    ],
)
def test_hostile_input_gets_a_clear_error_in_bounded_time_and_memory(
    name: str, make: Callable[[], bytes | str], code: str
) -> None:
    assert code in _bounded(make), name


def test_tabs_hint_says_to_use_spaces() -> None:
    report = check_flow("fluxgraph: 1\nnodes:\n\t- id: a\n", "t.yaml")
    assert "tabs" in report.errors[0].hint
    assert report.errors[0].location.line == 3


def test_duplicate_key_points_at_the_second_occurrence_and_names_the_first() -> None:
    report = check_flow("fluxgraph: 1\nid: a\nnodes: []\nid: b\n", "d.yaml")
    (issue,) = report.errors
    assert (issue.code, issue.location.line, issue.location.column) == ("yaml.duplicate_key", 4, 1)
    assert "line 2" in issue.message


def test_limits_are_configurable() -> None:
    with pytest.raises(FlowValidationError) as e:
        parse_yaml("a: [[[1]]]\n", limits=Limits(max_depth=2))
    assert e.value.codes == ["yaml.too_deep"]


@pytest.mark.parametrize(
    ("snippet", "code"),
    [
        ("budget: {max_cion_per_run: 1e400}", "yaml.unsupported_value"),
        ("nodes: [{id: a, type: data.set, with: {x: 1e400}}]", "yaml.unsupported_value"),
        ("nodes: [{id: a, type: data.set, with: {x: " + "9" * 5000 + "}}]", "yaml.unsupported_value"),
        ("nodes: [{id: a, type: log, with: {message: hi}, timeout: " + "9" * 19 + "}]", "schema.invalid_value"),
        ("nodes: [{id: a, type: log, with: {message: hi}, timeout: 1e300}]", "schema.invalid_value"),
    ],
)
def test_numbers_that_cannot_be_kept_exactly_are_errors_not_crashes(snippet: str, code: str) -> None:
    text = "fluxgraph: 1\nid: x\n" + snippet + "\n"
    if "nodes:" not in snippet:
        text += "nodes: [{id: a, type: log, with: {message: hi}}]\n"
    assert code in _bounded(lambda: text)


def test_aliases_cannot_bypass_the_depth_limit() -> None:
    # Given five anchors, each 60 levels deep and nesting the previous one through an alias
    lines = ["a0: &a0 " + "[" * 60 + "1" + "]" * 60]
    lines += [f"a{k}: &a{k} " + "[" * 60 + f"*a{k - 1}" + "]" * 60 for k in range(1, 5)]
    assert _bounded(lambda: "\n".join(lines) + "\n") == ["yaml.too_deep"]
