"""Terminal rendering of validation issues: located, coloured, with the offending source line and a caret."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TextIO

from engine.dsl.issue import Issue

_CODES = {"red": "31", "yellow": "33", "green": "32", "cyan": "36", "bold": "1", "dim": "2"}


class Style:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO, mode: str = "auto") -> Style:
        if mode == "always":
            return cls(True)
        if mode == "never" or os.environ.get("NO_COLOR"):
            return cls(False)
        return cls(stream.isatty() or bool(os.environ.get("FORCE_COLOR")))

    def __call__(self, text: str, *names: str) -> str:
        if not self.enabled or not names:
            return text
        return f"\033[{';'.join(_CODES[n] for n in names)}m{text}\033[0m"


def render_issue(issue: Issue, lines: Sequence[str], style: Style) -> str:
    colour = "red" if issue.severity == "error" else "yellow"
    head = style(f"{issue.severity}[{issue.code}]", colour, "bold")
    where = style(str(issue.location), "bold")
    node = f" node '{issue.node_id}'" if issue.node_id else ""
    out = [f"{where}: {head}{node}: {issue.message}"]
    line = issue.location.line
    if 0 < line <= len(lines):
        text = lines[line - 1].rstrip("\n").replace("\t", " ")
        gutter = f"{line:>5} | "
        out.append(style(gutter, "dim") + text)
        caret = " " * (max(issue.location.column, 1) - 1) + "^"
        out.append(style(" " * (len(gutter) - 2) + "| ", "dim") + style(caret, colour))
    if issue.path:
        out.append(style(f"      = at: {issue.dotted_path}", "dim"))
    if issue.hint:
        out.append(style("      = hint: ", "cyan") + issue.hint)
    return "\n".join(out)
