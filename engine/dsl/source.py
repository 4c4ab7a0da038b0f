"""YAML text -> plain JSON-compatible data, with the source position of every key and value.

Why not ``yaml.safe_load``: it forgets positions, silently keeps the last of duplicate keys, expands alias bombs,
recurses (a 10,000-level document overflows the stack) and follows YAML 1.1 (``no`` is ``False``, ``2024-01-01`` a
date). This module consumes libyaml's *event* stream with an explicit stack instead, so it is iterative, bounded
and exact:

- scalars resolve by the YAML 1.2 core schema (``true/false``, ``null``, ints, floats; everything else a string);
- duplicate keys are errors, located at the second occurrence;
- depth, document size and alias-expanded size are capped by :class:`Limits`;
- every mapping key and value gets a 1-based (line, column) in :class:`SourceMap`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.dsl.issue import FlowValidationError, Issue, Location, Path

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OCT = re.compile(r"^0o[0-7]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_NOT_JSON_FLOAT = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep a hostile document from costing unbounded time or memory."""

    max_bytes: int = 2 * 1024 * 1024
    max_depth: int = 64
    max_values: int = 200_000


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Where each path of a parsed document came from."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    blocks: dict[Path, tuple[int, int]] = field(default_factory=dict)  # first content line of | and > scalars

    def locate_in_value(self, path: Path, line: int) -> Location:
        """The position of 1-based ``line`` inside the text value at ``path`` (multi-line code, templates)."""
        if path in self.blocks:
            first, column = self.blocks[path]
            return Location(self.file, first + line - 1, column)
        start = self.locate(path)
        if line <= 1 or not start.line:
            return start
        return Location(self.file, start.line + line - 1, 1)

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The position of ``path`` (its key when ``key``), else of its nearest located ancestor."""
        if key and path in self.keys:
            line, col = self.keys[path]
            return Location(self.file, line, col)
        probe = tuple(path)
        while True:
            if probe in self.values:
                line, col = self.values[probe]
                return Location(self.file, line, col)
            if not probe:
                return Location(self.file, 0, 0)
            probe = probe[:-1]


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed YAML document: its data and where each part of it came from."""

    data: Any
    source: SourceMap


class _Frame:
    __slots__ = ("anchor", "container", "height", "mark", "merges", "path", "pending_key", "seen", "size")

    def __init__(self, container: dict[str, Any] | list[Any], path: Path, anchor: str | None, mark: Any) -> None:
        self.anchor = anchor
        self.mark = mark
        self.container = container
        self.path = path
        self.pending_key: str | None = None
        self.seen: dict[str, tuple[int, int]] = {}
        self.merges: list[dict[str, Any]] = []
        self.size = 1
        self.height = 1  # levels of nesting inside this collection, itself included


def parse_yaml(text: str | bytes, file: str = "<flow>", limits: Limits | None = None) -> Document:
    """Parse one YAML document; raise :class:`FlowValidationError` with located issues if it is unusable."""
    limits = limits or Limits()
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(raw) > limits.max_bytes:
        raise FlowValidationError(
            [
                Issue(
                    "yaml.too_large",
                    f"the document is {len(raw) / 1024 / 1024:.1f} MiB; the limit is "
                    f"{limits.max_bytes / 1024 / 1024:.1f} MiB",
                    Location(file),
                    hint="split large data out of the flow: pass it as run input or fetch it in a step",
                )
            ]
        )
    decoded = _decode(raw, file)
    return _Builder(file, limits).build(decoded)


def _decode(raw: bytes, file: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise FlowValidationError(
            [
                Issue(
                    "yaml.encoding",
                    f"the file is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})",
                    Location(file, line, column),
                    hint="save the flow as UTF-8 YAML; binary files cannot be flows",
                )
            ]
        ) from None
    return text.removeprefix("\ufeff")


class _Builder:
    def __init__(self, file: str, limits: Limits) -> None:
        self.file = file
        self.limits = limits
        self.source = SourceMap(file)
        self.issues: list[Issue] = []
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # name -> (value, expanded size, nesting height)
        self.total = 0
        self.lines: list[str] = []

    def fail(self, code: str, message: str, mark: Any, hint: str = "", path: Path = ()) -> FlowValidationError:
        self.issues.append(Issue(code, message, self._loc(mark), path=path, hint=hint))
        return FlowValidationError(self.issues)

    def _loc(self, mark: Any) -> Location:
        if mark is None:
            return Location(self.file)
        return Location(self.file, mark.line + 1, mark.column + 1)

    def build(self, text: str) -> Document:
        try:
            return self._build(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            message = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
            hint = "check the indentation and quoting around this position"
            opened = e.context or ""
            if e.context_mark is not None and ("quoted scalar" in opened or "flow" in opened):
                # An unclosed quote or bracket is only noticed lines later; point where it was opened.
                end = f"line {e.problem_mark.line + 1}" if e.problem_mark is not None else "the end"
                what = (
                    "a quoted string" if "quoted" in opened else ("a [ list" if "sequence" in opened else "a { mapping")
                )
                problem = (e.problem or "the end").removeprefix("found ").removeprefix("did not find ")
                message = f"{what} opened here is never closed ({problem} at {end})"
                hint = "close the quote or bracket opened here (or quote the whole value)"
                mark = e.context_mark
            if mark is not None and "\t" in _line_of(text, mark.line):
                hint = "YAML indentation must use spaces, not tabs: replace the tabs on this line with spaces"
            raise self.fail(
                "yaml.syntax", message if mark is e.context_mark else f"YAML syntax error: {message}", mark, hint
            ) from None
        except yaml.reader.ReaderError as e:
            line = text.count("\n", 0, e.position) + 1
            column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
            self.issues.append(
                Issue(
                    "yaml.encoding",
                    f"the file contains a character YAML does not allow (U+{_codepoint(e.character):04X})",
                    Location(self.file, line, column),
                    hint="remove control characters; binary files cannot be flows",
                )
            )
            raise FlowValidationError(self.issues) from None

    def _record_block(self, path: Path, indicator_line: int) -> None:
        for k in range(indicator_line + 1, len(self.lines)):
            content = self.lines[k]
            if content.strip():
                self.source.blocks[path] = (k + 1, len(content) - len(content.lstrip(" ")) + 1)
                return

    def _build(self, text: str) -> Document:
        self.lines = text.splitlines()
        loader = _Loader(text)
        try:
            return self._consume(loader)
        finally:
            loader.dispose()

    def _consume(self, loader: Any) -> Document:
        stack: list[_Frame] = []
        root: Any = None
        documents = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self.fail(
                        "yaml.multiple_documents",
                        "the file holds more than one YAML document ('---' separator)",
                        event.start_mark,
                        "keep one flow per file",
                    )
                continue
            if isinstance(event, yaml.StreamStartEvent | yaml.StreamEndEvent | yaml.DocumentEndEvent):
                continue
            if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                frame = stack.pop()
                if isinstance(frame.container, dict) and frame.merges:
                    for merged in frame.merges:
                        for k, v in merged.items():
                            frame.container.setdefault(k, v)
                value, size = frame.container, frame.size
                if frame.anchor:
                    self.anchors[frame.anchor] = (value, size, frame.height)
                if stack:
                    self._attach(stack, value, size, frame.mark, frame.height)
                else:
                    root = value
                continue

            path = self._child_path(stack, event)
            if isinstance(event, yaml.ScalarEvent) and stack and self._expecting_key(stack):
                self._take_key(stack[-1], event)
                continue
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in self.anchors:
                    raise self.fail(
                        "yaml.syntax",
                        f"unknown alias *{event.anchor}",
                        event.start_mark,
                        f"define the anchor first: put &{event.anchor} before the value it names, above this line",
                    )
                value, size, height = self.anchors[event.anchor]
                self.source.values[path] = _position(event.start_mark)
                self._count(size, event.start_mark)
                if len(stack) + height > self.limits.max_depth:
                    raise self.fail(
                        "yaml.too_deep",
                        f"the alias *{event.anchor} makes the document nest deeper than {self.limits.max_depth} levels",
                        event.start_mark,
                        "flatten the data; deep structures belong in run input, not in the flow",
                        path[:4],
                    )
                if stack:
                    self._attach(stack, value, size, event.start_mark, height)
                else:
                    root = value
                continue
            self.source.values[path] = _position(event.start_mark)
            if isinstance(event, yaml.ScalarEvent):
                value = self._scalar(event, path)
                if event.style in ("|", ">"):
                    self._record_block(path, _position(event.start_mark)[0] - 1)
                self._count(1, event.start_mark)
                if event.anchor:
                    self.anchors[event.anchor] = (value, 1, 0)
                if stack:
                    self._attach(stack, value, 1, event.start_mark)
                else:
                    root = value
                continue
            # a collection starts
            self._check_tag(event, path)
            if len(stack) >= self.limits.max_depth:
                raise self.fail(
                    "yaml.too_deep",
                    f"the document nests deeper than {self.limits.max_depth} levels",
                    event.start_mark,
                    "flatten the data; deep structures belong in run input, not in the flow",
                    path[:4],
                )
            container: dict[str, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
            frame = _Frame(container, path, event.anchor, event.start_mark)
            self._count(1, event.start_mark)
            stack.append(frame)
        if self.issues:
            raise FlowValidationError(self.issues)
        if documents == 0 or root is None:
            raise FlowValidationError(
                [
                    Issue(
                        "yaml.empty",
                        "the document is empty",
                        Location(self.file, 1, 1),
                        hint="a flow needs at least `fluxgraph: 1`, an `id` and a list of `nodes`",
                    )
                ]
            )
        return Document(root, self.source)

    @staticmethod
    def _expecting_key(stack: list[_Frame]) -> bool:
        top = stack[-1]
        return isinstance(top.container, dict) and top.pending_key is None

    @staticmethod
    def _child_path(stack: list[_Frame], event: Any) -> Path:
        if not stack:
            return ()
        top = stack[-1]
        if isinstance(top.container, list):
            return (*top.path, len(top.container))
        if top.pending_key is None:
            return top.path  # a key; its own position is recorded by _take_key
        return (*top.path, top.pending_key)

    def _take_key(self, frame: _Frame, event: Any) -> None:
        key = event.value
        position = _position(event.start_mark)
        if key in frame.seen and not (key == "<<" and not event.style):
            first = frame.seen[key]
            self.issues.append(
                Issue(
                    "yaml.duplicate_key",
                    f"duplicate key {key!r} (first defined at line {first[0]})",
                    self._loc(event.start_mark),
                    path=(*frame.path, key),
                    hint="remove one of the two entries; YAML keeps only one and it may not be the one you meant",
                )
            )
        frame.seen.setdefault(key, position)
        frame.pending_key = key
        self.source.keys[(*frame.path, key)] = position

    def _attach(self, stack: list[_Frame], value: Any, size: int, mark: Any, height: int = 0) -> None:
        top = stack[-1]
        top.size += size
        top.height = max(top.height, height + 1)
        if isinstance(top.container, list):
            top.container.append(value)
            return
        key = top.pending_key
        top.pending_key = None
        if key is None:
            raise self.fail(
                "yaml.complex_key",
                "mapping keys must be plain text, not lists or mappings",
                mark,
                "write the key as a string",
                top.path,
            )
        if key == "<<" and isinstance(value, dict | list):
            merges = value if isinstance(value, list) else [value]
            top.merges.extend(m for m in merges if isinstance(m, dict))
            return
        top.container[key] = value

    def _count(self, size: int, mark: Any) -> None:
        self.total += size
        if self.total > self.limits.max_values:
            raise self.fail(
                "yaml.too_large",
                f"the document expands to more than {self.limits.max_values:,} values "
                "(aliases included; an alias bomb looks like this)",
                mark,
                "remove the chained aliases; a flow needs far fewer values than this",
            )

    def _check_tag(self, event: Any, path: Path) -> None:
        tag = event.tag
        if tag in (None, "!", f"{_TAG}map", f"{_TAG}seq"):
            return
        raise self.fail(
            "yaml.unsupported_tag",
            f"unsupported YAML tag {_tag_text(tag)}",
            event.start_mark,
            "FluxGraph is plain JSON-like data: remove the tag",
            path,
        )

    def _scalar(self, event: Any, path: Path) -> Any:
        value: str = event.value
        tag = event.tag
        if tag in (None, "!"):
            if event.style or tag == "!":  # quoted or block scalar: always text
                return value
            return self._resolve_plain(value, event, path)
        if tag == f"{_TAG}str":
            return value
        if tag in (f"{_TAG}int", f"{_TAG}float", f"{_TAG}bool", f"{_TAG}null"):
            resolved = self._resolve_plain(value, event, path)
            expected = {
                f"{_TAG}int": int,
                f"{_TAG}float": float,
                f"{_TAG}bool": bool,
                f"{_TAG}null": type(None),
            }[tag]
            if expected is float and isinstance(resolved, int) and not isinstance(resolved, bool):
                return float(resolved)
            if type(resolved) is expected:
                return resolved
            raise self.fail(
                "yaml.unsupported_tag",
                f"{value!r} is not a valid {tag.removeprefix(_TAG)}",
                event.start_mark,
                "remove the tag or fix the value",
                path,
            )
        raise self.fail(
            "yaml.unsupported_tag",
            f"unsupported YAML tag {_tag_text(tag)}",
            event.start_mark,
            "FluxGraph is plain JSON-like data: remove the tag, or quote the value to keep it as text",
            path,
        )

    def _resolve_plain(self, value: str, event: Any, path: Path) -> Any:
        resolved = plain_scalar(value)
        if resolved is TOO_LARGE:
            raise self.fail(
                "yaml.unsupported_value",
                f"the number {value[:40]}{'…' if len(value) > 40 else ''} is too large to keep exactly",
                event.start_mark,
                "numbers must fit in 64 bits (integers) or a double (decimals); quote it to keep it as text",
                path,
            )
        if resolved is NOT_JSON:
            raise self.fail(
                "yaml.unsupported_value",
                f"{value} (infinity / not-a-number) cannot be represented in JSON",
                event.start_mark,
                "use a large finite number, or quote the value to keep it as text",
                path,
            )
        return resolved


NOT_JSON = object()
TOO_LARGE = object()


def plain_scalar(value: str) -> Any:
    """What an unquoted YAML scalar means under the YAML 1.2 core schema.

    Returns ``NOT_JSON`` for inf/nan and ``TOO_LARGE`` for numbers JSON cannot carry faithfully (an integer
    beyond 64 bits, a float that overflows to infinity): silently turning ``1e400`` into ``null`` or infinity
    would change what the flow means.
    """
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    number: int | float
    if _INT.match(value) or _INT_OCT.match(value) or _INT_HEX.match(value):
        digits = value.lstrip("+-")
        if len(digits) > 40:  # well past 64 bits in any base; int() of huge text is itself slow
            return TOO_LARGE
        number = (
            int(value[2:], 8) if _INT_OCT.match(value) else int(value[2:], 16) if _INT_HEX.match(value) else int(value)
        )
        return number if -(2**63) <= number < 2**64 else TOO_LARGE
    if _FLOAT.match(value):
        number = float(value)
        return number if math.isfinite(number) else TOO_LARGE
    if _NOT_JSON_FLOAT.match(value):
        return NOT_JSON
    return value


def _line_of(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line] if 0 <= line < len(lines) else ""


def _codepoint(character: str | int) -> int:
    return character if isinstance(character, int) else ord(character)


def _tag_text(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _position(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)
