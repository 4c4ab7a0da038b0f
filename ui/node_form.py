"""A node's panel in the Builder as a form: its ``with`` fields generated from the type's JSON Schema, plus the
fields every node has (name, description, condition, retry, timeout, on error), and the way back from the posted
form to the changes to make (dotted paths to set and to unset, as ``copilot.edits.UpdateNode`` takes them).

Pure: no request, no database. A field holds what the YAML holds: a scalar is shown as it is, anything nested
(an object, a list, a union of types) as inline YAML (``{a: 1}``), so every value round-trips, expressions
(``{{ … }}``) included. A posted field that is empty is unset, unless the schema requires it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from engine.nodetypes.registry import NodeType

BACKOFFS = ("exponential", "constant")
RETRY_FIELDS = ("max_attempts", "backoff", "initial_delay", "max_delay")


@dataclass(frozen=True)
class Field:
    """One input of the panel."""

    name: str  # the form field's name: a dotted path inside the node (``with.url``, ``retry.max_attempts``)
    label: str
    kind: str  # text | number | bool | choice | yaml (a nested value written as inline YAML)
    value: str  # as the input shows it ("" when unset)
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    checked: bool = False  # kind == "bool"

    @property
    def input_id(self) -> str:
        return "nf-" + self.name.replace(".", "-").replace("_", "-")


class FormError(ValueError):
    """A posted value that cannot be what its field holds; ``field`` names it (the form shows the message there)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def find_node(doc: Mapping[str, Any], node_id: str) -> dict[str, Any] | None:
    """The node ``node_id`` of a flow document, wherever it is (top level, inside a foreach, on failure)."""
    for node in _walk(doc.get("nodes") or [], doc.get("on_failure") or []):
        if node.get("id") == node_id:
            return node
    return None


def _walk(*lists: Any) -> Iterator[dict[str, Any]]:
    for nodes in lists:
        for node in nodes if isinstance(nodes, list) else ():
            if isinstance(node, dict):
                yield node
                yield from _walk(node.get("do") or [])


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, allow_unicode=True, width=10**6).strip()


def _kind(schema: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    if isinstance(schema.get("enum"), list) and all(isinstance(v, str) for v in schema["enum"]):
        return "choice", tuple(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return "text", ()
    if kind in ("integer", "number"):
        return "number", ()
    if kind == "boolean":
        return "bool", ()
    return "yaml", ()  # objects, arrays, unions, anything: written as inline YAML


def with_fields(node_type: NodeType | None, values: Mapping[str, Any]) -> list[Field]:
    """The ``with`` inputs: one per property of the type's schema (required first), then any value the node holds
    that the schema does not name (so nothing in the YAML is hidden from the panel)."""
    schema = node_type.with_schema if node_type is not None else {}
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    names = sorted(properties, key=lambda n: (n not in required, list(properties).index(n)))
    names += [n for n in values if n not in properties]
    fields = []
    for name in names:
        spec = properties.get(name) or {}
        kind, choices = _kind(spec)
        value = values.get(name)
        help_text = str(spec.get("description") or "")
        if isinstance(value, str) and (kind in ("number", "bool") or (kind == "choice" and value not in choices)):
            kind, choices = "text", ()  # an expression where a number or a choice goes: edit it as text
        if "default" in spec and value is None:
            help_text = f"{help_text} (default: {_shown(spec['default'])})".strip()
        fields.append(
            Field(
                f"with.{name}",
                name,
                kind,
                _shown(value),
                required=name in required,
                help=help_text,
                choices=choices,
                checked=value is True,
            )
        )
    return fields


def common_fields(node: Mapping[str, Any]) -> list[Field]:
    """The fields every node has: what it is called, when it runs, how it is retried and how long it may take."""
    found = node.get("retry")
    retry: Mapping[str, Any] = found if isinstance(found, dict) else {}
    return [
        Field("name", "Name", "text", _shown(node.get("name")), help="shown in the graph and the run page"),
        Field("description", "Description", "text", _shown(node.get("description"))),
        Field("if", "Run only if", "text", _shown(node.get("if")), help="an expression, e.g. {{ inputs.total > 100 }}"),
        Field(
            "retry.max_attempts",
            "Attempts",
            "number",
            _shown(retry.get("max_attempts")),
            help="how many times to try, the first included (empty: no retry)",
        ),
        Field("retry.backoff", "Backoff", "choice", _shown(retry.get("backoff")), choices=BACKOFFS),
        Field("retry.initial_delay", "First delay", "text", _shown(retry.get("initial_delay")), help="e.g. 2s"),
        Field("retry.max_delay", "Longest delay", "text", _shown(retry.get("max_delay")), help="e.g. 1m"),
        Field("timeout", "Timeout", "text", _shown(node.get("timeout")), help="e.g. 30s (empty: the type's default)"),
        Field(
            "on_error",
            "On error",
            "text",
            _shown(node.get("on_error")),
            help="fail (the default), continue, or the id of a node to run instead",
        ),
    ]


def changes(fields: list[Field], posted: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """What the posted form changes: (dotted path → new value, dotted paths to unset). Fields the form did not
    post are left alone; a value equal to what the node holds is no change. Raises :class:`FormError`."""
    to_set: dict[str, Any] = {}
    to_unset: list[str] = []
    for f in fields:
        if f.kind == "bool":
            if posted.get(f"{f.name}.shown") is None:
                continue  # the checkbox was not on the form that was posted
            new: Any = posted.get(f.name) is not None
            if new != f.checked:
                to_set[f.name] = new
            continue
        if f.name not in posted:
            continue
        text = posted[f.name].replace("\r\n", "\n").strip()  # browsers send a textarea's lines as CRLF
        if text == f.value:
            continue
        if not text:
            if f.required:
                raise FormError(f.name, "is required: give it a value")
            to_unset.append(f.name)
            continue
        to_set[f.name] = _parsed(f, text)
    if any(p.startswith("retry.") for p in to_set) and "retry.max_attempts" in to_unset:
        raise FormError("retry.max_attempts", "a retry needs a number of attempts (or clear every retry field)")
    if "retry.max_attempts" in to_unset:  # no attempts: no retry at all
        to_unset = [p for p in to_unset if not p.startswith("retry.")] + ["retry"]
    return to_set, to_unset


def _parsed(f: Field, text: str) -> Any:
    if f.kind == "number" and "{{" not in text:
        try:
            number = float(text)
        except ValueError:
            raise FormError(f.name, f"{text!r} is not a number") from None
        return int(number) if number.is_integer() and "." not in text else number
    if f.kind == "yaml":
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at column {mark.column + 1}" if mark is not None else ""
            raise FormError(f.name, f"is not valid YAML{where}: write it as in the flow, e.g. {{key: value}}") from None
    if f.kind == "choice" and f.choices and text not in f.choices:
        raise FormError(f.name, f"must be one of {', '.join(f.choices)}")
    return text
