"""Canonical form and identity of a flow.

- :func:`canonical_data`: the flow as plain data, defaults left out, keys in a fixed reading order.
- :func:`canonical_json`: that data as compact JSON with sorted keys; the bytes a version id is made from.
- :func:`version_id`: a CIDv1 (raw codec, sha2-256 multihash, base32): ``bafkrei…``. Formatting-only edits
  (comments, key order, quoting, ``90s`` vs ``1m30s``, defaults written out or not) keep the id.
- :func:`to_yaml`: the canonical YAML that ``ionflux fmt`` writes; loading it gives back an equal flow.
- :func:`comment_lines`: where a document has comments, which that YAML cannot carry.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import json
import re
from functools import lru_cache
from typing import Any

import yaml

from engine.dsl.issue import FlowValidationError
from engine.dsl.model import Flow
from engine.dsl.source import parse_yaml, plain_scalar

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
_TOP_NODE_LISTS = ("nodes", "on_failure")
_CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw codec, sha2-256, 32-byte digest
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


class _Block(dict[str, Any]):
    """A mapping always written in block style: a node, the document itself (never squeezed onto one line)."""


class YamlDumper(yaml.SafeDumper):
    """YAML that reads back exactly (YAML 1.2 core scalars, as engine.dsl.source parses them) and reads like the
    blueprints: lists indented under their key, small mappings and lists on one line, long prose folded into a
    paragraph, and everything else on one line however long (a wrapped expression or URL reads worse)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # `key:` then `  - item`, as people write lists

    def choose_scalar_style(self) -> str:
        event = self.event
        if not isinstance(event, yaml.ScalarEvent):
            return super().choose_scalar_style()
        if event.style == ">" and self.column + 1 + len(event.value) <= _LINE:
            event.style = None  # prose that fits on its line stays there; folding it would only add a line
        style = super().choose_scalar_style()
        value = event.value
        if style == "'" and not (("\\" in value or '"' in value) and "'" not in value and "\n" not in value):
            return '"'  # "{{ x }}" as the docs write it; single quotes only where they spare escaping " or \\
        return style

    def write_folded(self, text: str) -> None:
        """Prose from :func:`_foldable` as balanced lines, broken only where YAML folds a break back into one
        space (a single space between words) and never inside ``{{ }}``; anything else as PyYAML writes it."""
        segments = _fold_points(text)
        if segments is None:
            super().write_folded(text)
            return
        self.write_indicator(">-", True)  # `-`: no final newline to keep
        self.write_line_break()
        for line in _balanced(segments, max(_LINE - 6 - (self.indent or 0), 40)):
            self.write_indent()
            self.column += len(line)
            self.stream.write(line.encode(self.encoding) if self.encoding else line)
        self.write_line_break()


_NO_WRAP = 1 << 30
_LINE = 110  # prose longer than fits on one line this wide is folded into a paragraph
_LONG = 80  # shorter text is never folded, whatever its indentation
_INLINE_MAX = 80  # lists and mappings of scalars up to about this wide go on one line
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:str"
    if _literal(value):
        return dumper.represent_scalar(tag, value, style="|")
    if not isinstance(plain_scalar(value), str):
        return dumper.represent_scalar(tag, value, style='"')  # would read back as a number/bool/null
    if _foldable(value):
        return dumper.represent_scalar(tag, value, style=">")  # the emitter keeps it on one line if it fits
    return dumper.represent_scalar(tag, value)


def _literal(value: str) -> bool:
    # Not when it ends in blank lines: that needs `|+`, which would also swallow the blank line fmt puts after it.
    text = value.rstrip("\n")
    return (
        "\n" in value and bool(text) and not value.endswith("\n\n") and value == value.strip(" ") and "\t" not in value
    )


def _foldable(value: str) -> bool:
    """Long one-line prose (sentences: a long expression or list of ids reads worse broken up), checked to read
    back exactly when folded."""
    prose = value.endswith((".", "!", "?")) or ". " in value
    return len(value) > _LONG and prose and _fold_points(value) is not None and _folds_exactly(value)


def _fold_points(text: str) -> list[str] | None:
    """``text`` cut at the single spaces between words outside templates, or None if it is not one plain line."""
    if text != text.strip() or any(c in text for c in "\n\r\t\x85\u2028\u2029\ufeff"):
        return None
    inside = [False] * len(text)
    for match in _TEMPLATE.finditer(text):
        inside[match.start() : match.end()] = [True] * (match.end() - match.start())
    cuts = [i for i in range(1, len(text) - 1) if text[i] == " " and " " not in (text[i - 1], text[i + 1])]
    cuts = [i for i in cuts if not inside[i]]
    if not cuts:
        return None
    bounds = [-1, *cuts, len(text)]
    return [text[a + 1 : b] for a, b in itertools.pairwise(bounds)]


def _balanced(segments: list[str], room: int) -> list[str]:
    """Segments joined into lines of about equal length, at most ``room`` wide (unless one segment is wider)."""
    total = sum(map(len, segments)) + len(segments) - 1
    target = -(-total // -(-total // room))  # ceil(total / number of lines needed)
    lines: list[str] = []
    line = ""
    for segment in segments:
        if line and (len(line) >= target or len(line) + 1 + len(segment) > room):
            lines.append(line)
            line = segment
        else:
            line = f"{line} {segment}" if line else segment
    return [*lines, line]


@lru_cache(maxsize=1024)
def _folds_exactly(value: str) -> bool:
    """Whether ``value`` folded at every point :func:`_fold_points` allows reads back as itself (checked, not
    assumed; any subset of those breaks then reads back the same too)."""
    segments = _fold_points(value) or []
    text = "k: >-\n" + "".join(f"  {segment}\n" for segment in segments)
    try:
        return _same(parse_yaml(text).data, {"k": value})
    except FlowValidationError:
        return False


def _inline_width(value: Any) -> int | None:
    """About how wide ``value`` is on one line, or None if it cannot go on one line."""
    if isinstance(value, str):
        return None if "\n" in value else len(value) + 2
    if value is None or isinstance(value, bool | int | float):
        return len(json.dumps(value))
    if isinstance(value, list) and not isinstance(value, _Block):
        widths = [_inline_width(v) for v in value if not isinstance(v, list | dict)]
        if len(widths) != len(value) or None in widths:
            return None
        return 2 + sum(w + 2 for w in widths if w is not None)
    return None


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    width = _inline_width(value)
    flow_style = bool(value) and width is not None and width <= _INLINE_MAX
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow_style)


def _represent_dict(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.MappingNode:
    widths = [_inline_width(v) for v in value.values()]
    small = bool(value) and None not in widths
    width = sum(len(str(k)) + 4 + (w or 0) for k, w in zip(value, widths, strict=True))
    flow_style = True if small and width <= _INLINE_MAX else None  # None: the dump's default style
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=flow_style)


def _represent_block(dumper: yaml.SafeDumper, value: _Block) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=False)


YamlDumper.add_representer(str, _represent_str)
YamlDumper.add_representer(list, _represent_list)
YamlDumper.add_representer(dict, _represent_dict)
YamlDumper.add_representer(_Block, _represent_block)


def to_yaml(flow: Flow) -> str:
    """The canonical YAML: fields in reading order, a blank line around each multi-line section and between
    nodes, as the blueprints are laid out. Checked to read back as the same data before it is returned."""
    data = canonical_data(flow)
    text = _layout(data)
    if _same(parse_yaml(text).data, data):
        return text
    return _dump(data)  # not expected; a plainer layout beats a formatter that changes a flow's meaning


def _layout(data: dict[str, Any]) -> str:
    out = ""
    previous_section = False
    for key, value in data.items():
        if key in _TOP_NODE_LISTS and isinstance(value, list) and value:
            # Dumped one node at a time to put a blank line between them; each piece is exactly the lines that
            # node has in the whole list (same indentation), so joining them changes nothing but the spacing.
            items = [_dump(_Block({key: [_nodes_block(node)]})).split("\n", 1)[1] for node in value]
            chunk = f"{key}:\n" + "\n".join(items)
        else:
            chunk = _dump(_Block({key: _nodes_block(value) if key in _TOP_NODE_LISTS else value}))
        section = chunk.startswith(f"{key}:\n")  # the value is a block of lines of its own
        if out and (section or previous_section):
            out += "\n"
        out += chunk
        previous_section = section
    return out


def _nodes_block(value: Any) -> Any:
    """Nodes (and the nodes of a foreach's ``do``) stay in block style, however small."""
    if isinstance(value, list):
        return [_nodes_block(v) for v in value]
    if isinstance(value, dict):
        node = _Block(value)
        if isinstance(node.get("do"), list):
            node["do"] = [_nodes_block(n) for n in node["do"]]
        return node
    return value


def _dump(data: Any) -> str:
    return yaml.dump(
        data if not isinstance(data, dict) or isinstance(data, _Block) else _Block(data),
        Dumper=YamlDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=_NO_WRAP,
        indent=2,
    )


def _same(a: Any, b: Any) -> bool:
    # Through JSON: `==` alone would take True for 1 and 1.0 for 1.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def comment_lines(text: str) -> list[int]:
    """The 1-based lines of ``text`` (a YAML document that parses) that hold a comment.

    YAML decides what is a comment, not a pattern: libyaml's tokens cover every key, value and indicator, so a
    ``#`` inside a quoted, plain (``#sales``, ``a#b``) or block (``|``, ``>``: a ``# comment`` in Python code)
    scalar is inside a token, and every ``#`` between tokens starts a comment.
    """
    text = text.removeprefix("\ufeff")  # libyaml's positions start after a byte-order mark
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    found: set[int] = set()

    def scan(start: int, end: int) -> None:
        at = text.find("#", start, end)
        while at != -1:  # a comment runs to the end of its line: look for the next one after that
            found.add(bisect.bisect_right(line_starts, at))
            eol = text.find("\n", at, end)
            at = -1 if eol == -1 else text.find("#", eol, end)

    loader = _Loader(text)
    covered = 0
    try:
        while loader.check_token():
            token = loader.get_token()
            scan(covered, token.start_mark.index)
            covered = max(covered, token.end_mark.index)
    finally:
        loader.dispose()
    scan(covered, len(text))
    return sorted(found)
