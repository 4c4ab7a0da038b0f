"""Editing a flow's YAML text in place: the change asked for, and nothing else.

An :class:`Edit` sets a key in a mapping or inserts an item into a list, addressed by its path in the document.
:func:`apply_edits` makes the edits in the text itself, so what it guarantees is:

- in place: the changed entries are written where they belong in the text; every other character stays as it was;
- comments, key order, blank lines and layout (block or flow style) of everything else are kept; new entries are
  written the way ``ionflux fmt`` writes them (same quoting and line style);
- checked: the edited text must read back as exactly the original data with the edits applied, and still validate
  with ``load_flow``; otherwise :class:`EditNotApplicable` says so (the text is never returned half-edited).

::

    IonfluxError
     +-- EditNotApplicable            the edits do not fit the text (copilot.advice.AdviceError subclasses it)
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from engine.dsl.canonical import YamlDumper
from engine.dsl.source import parse_yaml, plain_scalar
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.nodetypes.registry import Registry

Path = tuple[str | int, ...]


class EditNotApplicable(IonfluxError):
    """Raised when edits cannot be made to a YAML text (they were made for another version of it, or the text
    uses YAML the editor cannot change safely, such as an alias shared by two nodes or a list on one line)."""

    code = "copilot.edit_not_applicable"


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to a YAML document: set ``key`` to ``value`` in the mapping at ``path`` (``()`` is the flow),
    or, with ``insert``, put ``value`` into the list ``key`` of that mapping at that index. A new key goes after
    the first of the keys in ``after`` the mapping has (else at its end)."""

    path: Path
    key: str
    value: Any
    insert: int | None = None
    after: tuple[str, ...] = ()


# --- applying -----------------------------------------------------------------------------------------------------


def apply_edits(text: str, edits: Sequence[Edit], registry: Registry | None = None, file: str = "<flow>") -> str:
    """``text`` with ``edits`` made in place, checked to read back as exactly the intended data and to validate."""
    expected = copy.deepcopy(parse_yaml(text, file).data)
    # Paths are indices into the document as it was: set fields first, then insert list items from the last
    # index back, so no edit moves what a later one points at.
    inserts = sorted((e for e in edits if e.insert is not None), key=lambda e: -(e.insert or 0))
    for edit in [*(e for e in edits if e.insert is None), *inserts]:
        _edit_data(expected, edit, file)
        text = _edit_text(text, edit, file)
    got = parse_yaml(text, file).data
    if got != expected:
        raise EditNotApplicable(
            f"{file}: editing the YAML text in place changed more than the edits asked for",
            hint="make the change by hand, or run `ionflux fmt` on the flow and try again",
        )
    load_flow(text, file, registry=registry)
    return text


def _edit_data(data: Any, edit: Edit, file: str) -> None:
    target = data
    for part in edit.path:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            raise _missing(edit, file) from None
    if not isinstance(target, dict):
        raise _missing(edit, file)
    if edit.insert is not None:
        target.setdefault(edit.key, []).insert(edit.insert, copy.deepcopy(edit.value))
    else:
        target[edit.key] = copy.deepcopy(edit.value)


def _missing(edit: Edit, file: str) -> EditNotApplicable:
    return EditNotApplicable(
        f"{file}: there is no mapping at {_describe_path(edit.path) or 'the top level'} to set `{edit.key}` in",
        hint="the edits were made for another version of this text: make them again from the current text",
    )


def _edit_text(text: str, edit: Edit, file: str) -> str:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    mapping = _find(root, edit.path)
    if not isinstance(mapping, yaml.MappingNode):
        raise _missing(edit, file)
    pair = next(((k, v) for k, v in mapping.value if k.value == edit.key), None)
    if edit.insert is not None and pair is not None:
        if not isinstance(pair[1], yaml.SequenceNode):
            raise _missing(edit, file)
        return _insert_item(text, pair[1], edit.insert, edit.value)
    value = [edit.value] if edit.insert is not None else edit.value
    if mapping.flow_style:
        return _set_in_flow(text, mapping, pair, edit.key, value)
    keys = {k.value: v for k, v in mapping.value}
    anchor = next((keys[k] for k in edit.after if k in keys), mapping)
    return _set_in_block(text, mapping, pair, edit.key, value, anchor)


def _find(node: yaml.Node | None, path: Path) -> yaml.Node | None:
    for part in path:
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode) and part < len(node.value):
            node = node.value[part]
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        else:
            return None
    return node


def _content_end(text: str, node: yaml.Node) -> int:
    """The index just after the last character of ``node``'s own text (a block collection's end mark lies after
    the blank lines and comments that follow it; a block scalar's after its final line breaks)."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _content_end(text, last[1] if isinstance(node, yaml.MappingNode) else last)
    end = node.end_mark.index
    while end > node.start_mark.index and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def _line_end(text: str, index: int) -> int:
    found = text.find("\n", index)
    return len(text) if found == -1 else found


def _indented(lines: str, column: int) -> str:
    """Multi-line YAML placed at ``column``: the first line where the cursor is, the rest indented to it."""
    return ("\n" + " " * column).join(lines.rstrip("\n").split("\n"))


def _set_in_block(
    text: str,
    mapping: yaml.MappingNode,
    pair: tuple[yaml.Node, yaml.Node] | None,
    key: str,
    value: Any,
    anchor: yaml.Node,
) -> str:
    """Replace ``key``'s entry, or add it after the entry whose value is ``anchor`` (the mapping: at its end)."""
    column: int = mapping.value[0][0].start_mark.column
    lines = _indented(_entry(key, value), column)
    if pair is not None:  # replace the whole entry, from its key to the end of its value's last line
        start, end = pair[0].start_mark.index, _line_end(text, _content_end(text, pair[1]))
        return text[:start] + lines + text[end:]
    at = _line_end(text, _content_end(text, anchor))
    # a new top-level key in a document laid out in sections (blank lines between) becomes a section too
    gap = "\n" if column == 0 and anchor is mapping and "\n\n" in text else ""
    return text[:at] + "\n" + gap + " " * column + lines + text[at:]


def _set_in_flow(
    text: str, mapping: yaml.MappingNode, pair: tuple[yaml.Node, yaml.Node] | None, key: str, value: Any
) -> str:
    entry = f"{key}: {flow_yaml(value)}"
    if pair is not None:
        return text[: pair[0].start_mark.index] + entry + text[pair[1].end_mark.index :]
    if not mapping.value:  # `{}`
        at = mapping.start_mark.index + 1
        return text[:at] + entry + text[at:]
    at = mapping.value[-1][1].end_mark.index
    return text[:at] + ", " + entry + text[at:]


def _insert_item(text: str, sequence: yaml.SequenceNode, index: int, value: Any) -> str:
    """``value`` as item ``index`` of a block list: on the lines before the item now there (and a blank line after
    it when the items are set apart by blank lines), or after the last item."""
    if sequence.flow_style or not sequence.value:
        raise EditNotApplicable(
            "cannot add an item to a list written on one line ([...])",
            hint="write the list one item per line (`ionflux fmt` does), then try again",
        )
    dash = _dash(text, sequence.value[min(index, len(sequence.value) - 1)])
    line_start = text.rfind("\n", 0, dash) + 1
    column = dash - line_start
    item = " " * column + _indented(_dump([_as_nodes(value)]), column)
    if index < len(sequence.value):
        spaced = text[max(0, line_start - 2) : line_start] == "\n\n"
        return text[:line_start] + item + "\n" + ("\n" if spaced else "") + text[line_start:]
    at = _line_end(text, _content_end(text, sequence))
    return text[:at] + "\n" + item + text[at:]


def _dash(text: str, item: yaml.Node) -> int:
    """The index of the ``-`` that starts a block list item."""
    return text.rindex("-", 0, item.start_mark.index)


# --- rendering ----------------------------------------------------------------------------------------------------


def fragment(edits: Iterable[Edit]) -> str:
    """The edits as the YAML a person would paste: appended nodes as list items, the rest as ``key: value``."""
    parts = []
    for edit in edits:
        where = _describe_path(edit.path)
        if edit.insert is not None:
            parts.append(
                f"# new item {edit.insert} of {where + '.' if where else ''}{edit.key}:\n"
                + _dump([_as_nodes(edit.value)]).rstrip()
            )
        else:
            parts.append((f"# in {where}:\n" if where else "") + _entry(edit.key, edit.value).rstrip())
    return "\n".join(parts)


def _describe_path(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


class _Block(dict[str, Any]):
    """A mapping written in block style however small: a ``key: value`` entry, a whole node."""


class _Dumper(YamlDumper):
    """``ionflux fmt``'s dumper (same quoting and line style), with :class:`_Block` mappings kept in block style."""


def _represent_block(dumper: yaml.SafeDumper, value: _Block) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=False)


_Dumper.add_representer(_Block, _represent_block)


def _dump(value: Any) -> str:
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1 << 30
    )


def _entry(key: str, value: Any) -> str:
    """``key: value`` as block YAML; a node (a mapping with an ``id``) in block style too."""
    return _dump(_Block({key: _as_nodes(value) if key in ("nodes", "on_failure", "do") else value}))


def _as_nodes(value: Any) -> Any:
    if isinstance(value, list):
        return [_Block(v) if isinstance(v, dict) else v for v in value]
    return _Block(value) if isinstance(value, dict) else value


_PLAIN = re.compile(r"^[A-Za-z0-9_./@+-][A-Za-z0-9_ ./@+-]*$")


def flow_yaml(value: Any) -> str:
    """``value`` as YAML on one line (flow style), for mappings written ``{a: 1, b: [x, y]}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {flow_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow_yaml(v) for v in value) + "]"
    if isinstance(value, str):
        plain = _PLAIN.match(value) and value == value.strip() and isinstance(plain_scalar(value), str)
        return value if plain else yaml_quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def yaml_quote(value: str) -> str:
    """A double-quoted YAML scalar: JSON's string syntax is valid YAML and escapes everything that needs it."""
    return str(json.dumps(value, ensure_ascii=False))
