"""Canonical form and identity of a flow.

- :func:`canonical_data`: the flow as plain data, defaults left out, keys in a fixed reading order.
- :func:`canonical_json`: that data as compact JSON with sorted keys; the bytes a version id is made from.
- :func:`version_id`: a CIDv1 (raw codec, sha2-256 multihash, base32): ``bafkrei…``. Formatting-only edits
  (comments, key order, quoting, ``90s`` vs ``1m30s``, defaults written out or not) keep the id.
- :func:`to_yaml`: the canonical YAML that ``ionflux fmt`` writes; loading it gives back an equal flow.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import yaml

from engine.dsl.model import Flow
from engine.dsl.source import plain_scalar

NODE_KEY_ORDER = (
    "id",
    "type",
    "name",
    "description",
    "needs",
    "if",
    "items",
    "concurrency",
    "with",
    "do",
    "retry",
    "timeout",
    "on_error",
    "on_timeout",
    "permissions",
)
_NODE_LISTS = ("nodes", "do", "on_failure")
_CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw codec, sha2-256, 32-byte digest


def canonical_data(flow: Flow) -> dict[str, Any]:
    data = _normalise_numbers(flow.model_dump(mode="json", by_alias=True, exclude_defaults=True))
    for key in _NODE_LISTS:
        if key in data:
            data[key] = [_order_node(n) for n in data[key]]
    return data  # type: ignore[no-any-return]


def _normalise_numbers(value: Any) -> Any:
    """``40.0`` -> ``40``: JSON does not tell them apart, so neither may the version id (as in RFC 8785)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_numbers(v) for v in value]
    return value


def _order_node(node: dict[str, Any]) -> dict[str, Any]:
    if "do" in node:
        node["do"] = [_order_node(n) for n in node["do"]]
    rank = {k: i for i, k in enumerate(NODE_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def canonical_json(flow: Flow) -> bytes:
    text = json.dumps(canonical_data(flow), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def version_id(flow: Flow) -> str:
    """The content id of ``flow``'s canonical form: CIDv1 raw + sha2-256, multibase base32 (``b`` prefix)."""
    digest = hashlib.sha256(canonical_json(flow)).digest()
    return "b" + base64.b32encode(_CID_PREFIX + digest).decode("ascii").lower().rstrip("=")


class YamlDumper(yaml.SafeDumper):
    """Block-style YAML that reads back exactly (YAML 1.2 core scalars, as engine.dsl.source parses them)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:str"
    if "\n" in value and value == value.strip(" ") and "\t" not in value:
        return dumper.represent_scalar(tag, value, style="|")
    if not isinstance(plain_scalar(value), str):
        return dumper.represent_scalar(tag, value, style='"')  # would read back as a number/bool/null
    analysis = dumper.analyze_scalar(value)
    if "'" in value and not analysis.allow_block_plain:
        return dumper.represent_scalar(tag, value, style='"')  # '' escapes read badly
    return dumper.represent_scalar(tag, value)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    short = all(isinstance(v, str | int | float | bool) and "\n" not in str(v) for v in value)
    flow_style = short and len(value) > 0 and sum(len(str(v)) + 2 for v in value) <= 60
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow_style)


YamlDumper.add_representer(str, _represent_str)
YamlDumper.add_representer(list, _represent_list)


def to_yaml(flow: Flow) -> str:
    return yaml.dump(
        canonical_data(flow),
        Dumper=YamlDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=110,
        indent=2,
    )
