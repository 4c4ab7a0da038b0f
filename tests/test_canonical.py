"""Canonical form and identity: formatting never changes a version id; content always does."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.dsl.canonical import canonical_json, comment_lines, to_yaml, version_id
from engine.dsl.model import Flow
from engine.dsl.validator import load_data, load_flow
from tests.conftest import FLOWS

EXAMPLE = """\
# a comment that formatting may drop
fluxgraph: 1
id: digest
nodes:
  - id: fetch
    type: http.request
    with: {url: "https://api.example.com/orders", method: GET}
    permissions: {net: [api.example.com]}
    retry: {max_attempts: 3, initial_delay: 90s}
    timeout: 30s
  - id: post
    type: log
    needs: [fetch]
    with: {message: "{{ nodes.fetch.output.body }}"}
budget: {max_cion_per_run: 40}
"""

REFORMATTED = """\
budget:
  max_cion_per_run: 40.0
fluxgraph: 1
id: 'digest'
nodes:
- type: http.request
  id: fetch
  timeout: 30000ms
  retry:
    initial_delay: 1m30s
    max_attempts: 3
    backoff: exponential      # the default, written out
  permissions:
    net:
    - api.example.com
  with:
    method: "GET"
    url: https://api.example.com/orders
  on_error: fail
- {id: post, type: log, needs: [fetch], with: {message: "{{ nodes.fetch.output.body }}"}}
"""


def test_version_id_is_a_cidv1_of_the_canonical_json() -> None:
    flow = load_flow(EXAMPLE)
    vid = version_id(flow)
    raw = base64.b32decode(vid[1:].upper() + "=" * (-len(vid[1:]) % 8))
    assert vid.startswith("bafkrei") and raw[:4] == bytes([0x01, 0x55, 0x12, 0x20])
    assert raw[4:] == hashlib.sha256(canonical_json(flow)).digest()
    data = json.loads(canonical_json(flow))
    assert canonical_json(flow) == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def test_formatting_only_edits_keep_the_id() -> None:
    # Given the same flow written twice: key order, quoting, flow/block style, defaults, 90s vs 1m30s, 40 vs 40.0
    # Then both have the same canonical form and id
    assert canonical_json(load_flow(EXAMPLE)) == canonical_json(load_flow(REFORMATTED))
    assert version_id(load_flow(EXAMPLE)) == version_id(load_flow(REFORMATTED))


def test_a_content_edit_changes_the_id() -> None:
    edited = EXAMPLE.replace("max_attempts: 3", "max_attempts: 4")
    assert version_id(load_flow(edited)) != version_id(load_flow(EXAMPLE))


def test_load_dump_load_is_the_identity_for_every_blueprint() -> None:
    for path in sorted(FLOWS.glob("*.yaml")):
        flow = load_flow(path.read_bytes(), str(path))
        text = to_yaml(flow)
        again = load_flow(text, str(path))
        assert again == flow, path.name
        assert to_yaml(again) == text, path.name  # the canonical form is a fixed point
        assert version_id(again) == version_id(flow)


def test_canonical_yaml_quotes_strings_that_would_read_back_as_other_types() -> None:
    flow = load_flow(
        'fluxgraph: 1\nid: q\nnodes:\n  - id: a\n    type: data.set\n    with: {a: "0o17", b: "true", c: "~",'
        ' d: "1e3", e: "yes", f: "12", g: ""}\n'
    )
    text = to_yaml(flow)
    assert load_flow(text) == flow
    assert yaml.safe_load(text)["nodes"][0]["with"]["a"] == "0o17"


def test_a_validated_flow_cannot_be_changed_under_its_id() -> None:
    flow = load_flow(EXAMPLE)
    vid = version_id(flow)
    fetch = flow.nodes[0]
    with pytest.raises(TypeError, match="immutable"):
        fetch.with_["url"] = "https://evil.example.net"  # type: ignore[union-attr]
    with pytest.raises(AttributeError):  # a tuple
        fetch.permissions.net.append("evil.example.net")  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        fetch.id = "other"  # type: ignore[misc]
    assert version_id(flow) == vid and hash(flow) == hash(load_flow(EXAMPLE))


def _flow_with(**fields: Any) -> Flow:
    return load_data({"fluxgraph": 1, "id": "t", "nodes": [{"id": "a", "type": "data.set", "with": fields}]})


def test_long_prose_is_folded_and_long_templates_stay_on_one_line() -> None:
    prose = "Every weekday, fetch the shop's paid orders: total them, then post a summary to the #sales channel. " * 2
    template = (
        "Busy day: {{ inputs.orders.count }} orders, {{ inputs.orders.revenue_text }} {{ inputs.currency }} in total"
    )
    url = "https://example.com/" + "a" * 120
    flow = _flow_with(prose=prose.strip(), template=template, url=url, quote='{{ inputs.x | replace("a", "b") }}')
    text = to_yaml(flow)
    assert load_flow(text) == flow
    assert "prose: >-\n" in text and "\\" not in text  # folded, not an escaped, wrapped "…\ …"
    folded = text.split("prose: >-\n")[1].split("\n      template:")[0].splitlines()
    assert len(folded) == 3 and all(len(line) <= 110 for line in folded)
    assert f'template: "{template}"\n' in text  # a template is not broken across lines
    assert f"url: {url}\n" in text
    assert 'quote: \'{{ inputs.x | replace("a", "b") }}\'\n' in text  # single quotes only where they spare escapes


# Text that is awkward for folding: leading/trailing/double spaces, YAML indicators, quotes, templates, non-ASCII.
SYMBOLS = [*" \t'\"|>}[],&*!%@`\\.", "  ", ". ", "word ", "lorem ipsum dolor ", "a#b", " #c", ": ", "- ", "é€😀"]
TEMPLATES = ["{{ inputs.x }}", " {{ inputs.x | default('a b.') }} "]  # a fold never breaks inside one
PIECES = st.sampled_from([*SYMBOLS, *TEMPLATES])
PROSE = st.tuples(
    st.lists(PIECES, min_size=10, max_size=60).map("".join), st.sampled_from(["", ".", " .", "?", " "])
).map(lambda parts: (parts[0] if len(parts[0]) > 80 else parts[0] + " filler" * 20) + parts[1])


@settings(max_examples=200, deadline=None)
@given(PROSE, st.sampled_from(["name", "description"]))
def test_long_text_round_trips_whatever_style_it_gets(text: str, field: str) -> None:
    flow = load_data(
        {"fluxgraph": 1, "id": "t", field: text, "nodes": [{"id": "a", "type": "log", "with": {"message": text}}]}
    )
    dumped = to_yaml(flow)
    assert load_flow(dumped) == flow
    assert to_yaml(load_flow(dumped)) == dumped


def test_canonical_yaml_is_laid_out_like_the_blueprints() -> None:
    text = to_yaml(load_flow(EXAMPLE))
    assert text == (
        "fluxgraph: 1\n"
        "id: digest\n"
        "budget: {max_cion_per_run: 40}\n"
        "\n"
        "nodes:\n"
        "  - id: fetch\n"
        "    type: http.request\n"
        '    with: {url: "https://api.example.com/orders", method: GET}\n'
        "    retry: {initial_delay: 1m30s}\n"
        "    timeout: 30s\n"
        "    permissions: {net: [api.example.com]}\n"
        "\n"
        "  - id: post\n"
        "    type: log\n"
        "    needs: [fetch]\n"
        '    with: {message: "{{ nodes.fetch.output.body }}"}\n'
    )


def test_comment_lines_follow_yaml_not_a_pattern() -> None:
    text = (
        "a: 1 # one\n"  # 1
        'b: "x # y" # two\n'  # 2
        "c: x#y\n"  # 3
        "d: |\n"  # 4
        "  # code, not a comment\n"  # 5
        "# three\n"  # 6
        'e: "multi\n'  # 7
        '  line # text"\n'  # 8
        "f: [1, 2] # four\n"  # 9
        "g: 'it''s # text'\n"  # 10
        "h: plain #five\n"  # 11
    )
    assert yaml.safe_load(text)["h"] == "plain" and yaml.safe_load(text)["e"] == "multi line # text"
    assert comment_lines(text) == [1, 2, 6, 9, 11]
    assert comment_lines("\ufeff# bom\na: 1\n") == [1]


def test_every_blueprint_gets_the_readable_layout() -> None:
    # The plain fallback of to_yaml (no blank lines) is only for a layout that would not read back; none here.
    for path in sorted(FLOWS.glob("*.yaml")):
        text = to_yaml(load_flow(path.read_bytes(), str(path)))
        assert "\n\nnodes:\n  - id: " in text, path.name
        assert "\\\n" not in text, path.name  # no escaped line continuations
