"""``ionflux plan``: a flow drafted from a sentence by Jules (copilot.planning)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from copilot.planning import draft


def cmd_plan(args: argparse.Namespace) -> int:
    console = Console(highlight=False, stderr=True)
    result = draft(args.text, flow_id=args.id)
    if args.output:
        Path(args.output).write_text(result.yaml, encoding="utf-8")
    else:
        print(result.yaml, end="")
    verdict = "valid" if result.valid else "NOT valid"
    console.print(
        Text(
            f"planner: {result.planner} (no model configured: rules and the node catalog), "
            f"{result.latency_ms:.1f} ms; the flow is {verdict}",
            style="dim" if result.valid else "red",
        )
    )
    if not result.valid:
        console.print(Text(result.problems, style="red"))
        return 1
    console.print(result.cost)
    if args.output:
        console.print(f"written to {args.output}; check it with: ionflux validate {args.output}")
    return 0
