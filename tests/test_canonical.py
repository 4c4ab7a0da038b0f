"""Canonical form and identity: formatting never changes a version id; content always does."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import yaml
from pydantic import ValidationError

from engine.dsl.canonical import canonical_json, to_yaml, version_id
from engine.dsl.validator import load_flow
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
