"""``ionflux review FILE``: what Jules would change in a flow, without a chat: the cost forecast node by node,
per run and per month, the cheaper alternatives (measured by re-forecasting), and the error-handling advice;
``--write`` applies the advice and writes descriptions into the file, keeping its comments and layout."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from copilot.advice import advise, apply_advice
from copilot.cost import forecast
from copilot.describe import document
from copilot.savings import suggest_savings
from engine.dsl.forecast import flow_forecast
from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.nodetypes.builtin import builtin_registry


def cmd_review(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    path = Path(args.file)
    try:
        text = path.read_text("utf-8")
        registry = builtin_registry()
        flow = load_flow(text, args.file, registry=registry)
    except OSError as e:
        console.print(Text(f"error[file.unreadable]: {args.file}: {e.strerror}", style="red"))
        return 2
    except FlowValidationError as e:
        for issue in e.issues:
            console.print(Text(str(issue), style="red"))
        return 1
    now = datetime.now(UTC)
    table = Table("node", "type", "C-ION", "how", title=f"{flow.id}: cost forecast", title_justify="left")
    for node in flow_forecast(flow, registry).nodes:
        how = node.estimate.basis + (" (per foreach item)" if node.per_item else "")
        table.add_row(node.node_id, node.type, f"{node.estimate.cion:g}", how)
    console.print(table)
    console.print(forecast(flow, registry, now).describe())
    savings = suggest_savings(flow, registry, now)
    console.print(Text("\ncheaper alternatives", style="bold"))
    for saving in savings:
        console.print(f"- {saving.describe()}")
    if not savings:
        console.print("- none found: every step already uses the cheapest way the forecast knows")
    found = advise(flow, registry, alert_to=args.alert_to)
    console.print(Text("\nerror handling", style="bold"))
    for advice in found:
        where = f"{advice.node_id}.{advice.field}" if advice.node_id else advice.field
        console.print(f"- {where}: {advice.why}")
        console.print(Text("  " + advice.fragment.replace("\n", "\n  ").rstrip(), style="green"))
    if not found:
        console.print("- nothing to add: retries, timeouts, an alert, approvals and a budget are in place")
    if not args.write:
        if found:
            console.print(Text(f"\napply the advice and write descriptions: ionflux review {args.file} --write", "dim"))
        return 0
    try:
        changed = document(apply_advice(text, found, registry, args.file) if found else text, registry, file=args.file)
    except (IonfluxError, FlowValidationError) as e:
        console.print(Text(f"error[{e.code}]: {e}", style="red"))
        return 1
    path.write_text(changed, encoding="utf-8")
    console.print(Text(f"\nwrote {args.file}: {len(found)} piece(s) of advice applied, descriptions added", "green"))
    return 0
