"""One node's fields changed in a flow's YAML text, as the Builder's node panel asks: in place when it can be
(comments and layout kept, ``copilot.yamledit``), else through the edit operations (``UpdateNode``), whose result
is the document written again. Either way the caller validates the result like any other change."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from copilot.edits import EditError, UpdateNode, apply, dump
from copilot.yamledit import Edit, EditNotApplicable, apply_edits
from engine.dsl.issue import FlowValidationError
from engine.dsl.source import parse_yaml
from engine.nodetypes.registry import Registry

Path = tuple[str | int, ...]


def update_node(text: str, node_id: str, to_set: Mapping[str, Any], to_unset: Sequence[str], registry: Registry) -> str:
    """``text`` with node ``node_id``'s dotted paths set and unset. Raises ``EditError`` for a node that is not
    there; the result may not validate (the caller says why, located)."""
    doc = parse_yaml(text, "<draft>").data
    if not isinstance(doc, dict):
        raise EditError("the draft is not a flow document", hint="write the flow's YAML first")
    edited = apply(doc, [UpdateNode(id=node_id, set=dict(to_set), unset=list(to_unset))])
    if not to_unset:
        path = _path_of(doc, node_id)
        if path is not None:
            try:
                return apply_edits(text, list(_edits(doc, path, to_set)), registry, "<draft>")
            except (EditNotApplicable, FlowValidationError):
                pass  # written again below; the caller's validation names any problem
    return dump(edited)


def _path_of(doc: dict[str, Any], node_id: str) -> Path | None:
    for path, node in _nodes(doc):
        if node.get("id") == node_id:
            return path
    return None


def _nodes(doc: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    def walk(base: Path, nodes: Any) -> Iterator[tuple[Path, dict[str, Any]]]:
        for index, node in enumerate(nodes if isinstance(nodes, list) else ()):
            if isinstance(node, dict):
                yield (*base, index), node
                yield from walk((*base, index, "do"), node.get("do"))

    yield from walk(("nodes",), doc.get("nodes"))
    yield from walk(("on_failure",), doc.get("on_failure"))


def _edits(doc: dict[str, Any], path: Path, to_set: Mapping[str, Any]) -> Iterator[Edit]:
    """In-place edits: a field of an existing mapping is set where it is (``with.url`` in the node's ``with``);
    anything else sets the node's top-level key to its whole new value (a new ``retry``, say)."""
    node: Any = doc
    for part in path:
        node = node[part]
    whole: dict[str, Any] = {}
    for dotted, value in to_set.items():
        head, _, rest = dotted.partition(".")
        if rest and "." not in rest and isinstance(node.get(head), dict):
            yield Edit((*path, head), rest, value)
        elif not rest:
            yield Edit(path, head, value)
        else:
            whole.setdefault(head, copy.deepcopy(node.get(head)) if isinstance(node.get(head), dict) else {})
            _put(whole[head], rest.split("."), value)
    for head, value in whole.items():
        yield Edit(path, head, value)


def _put(target: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
