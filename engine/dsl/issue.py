"""Validation issues: what is wrong with a flow document, exactly where, and how to fix it.

A validator never stops at the first problem: it collects :class:`Issue` values and raises one
:class:`FlowValidationError` holding all of them, sorted by position in the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from engine.errors import IonfluxError

Path = tuple[str | int, ...]
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a source document. ``line`` and ``column`` are 1-based; 0 means "unknown"."""

    file: str = "<flow>"
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a flow document.

    ``code`` is stable (tests and tools match on it); ``path`` is the field path inside the document
    (``("nodes", 2, "with", "url")``); ``node_id`` is the innermost node the problem belongs to, if any.
    """

    code: str
    message: str
    location: Location = field(default_factory=Location)
    path: Path = ()
    node_id: str | None = None
    hint: str = ""
    severity: Severity = "error"

    @property
    def dotted_path(self) -> str:
        """``nodes[2].with.url``: the path as a person reads it."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.location.file, self.location.line or 10**9, self.location.column, self.code)

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "node_id": self.node_id,
            "path": self.dotted_path,
        }

    def __str__(self) -> str:
        where = str(self.location)
        node = f" [node {self.node_id}]" if self.node_id else ""
        at = f" at {self.dotted_path}" if self.path else ""
        text = f"{where}: {self.severity} {self.code}{node}{at}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class FlowValidationError(IonfluxError):
    """Raised when a flow document is not valid FluxGraph; ``issues`` lists every problem found."""

    code = "flow.invalid"

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: Sequence[Issue] = tuple(sorted(issues, key=Issue.sort_key))
        errors = [i for i in self.issues if i.severity == "error"]
        first = errors[0] if errors else (self.issues[0] if self.issues else None)
        count = len(errors)
        summary = f"{count} error{'s' if count != 1 else ''} in flow"
        if first is not None:
            summary += f"; first: {first.location}: {first.message}"
        super().__init__(summary, hint=first.hint if first else "")

    @property
    def codes(self) -> list[str]:
        return [i.code for i in self.issues]

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "issues": [i.to_dict() for i in self.issues]}
