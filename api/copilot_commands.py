"""``ionflux plan``: a flow drafted from a sentence by Jules (copilot.planning)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from copilot.planning import draft


def cmd_plan(args: argparse.Namespace) -> int:
    console = Console(highlight=False, stderr=True)
    if args.model:
        return _plan_with_model(args, console)
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


def _plan_with_model(args: argparse.Namespace, console: Console) -> int:
    from api.settings import Settings
    from copilot.model_planner import plan_with_model
    from engine.nodetypes.builtin import builtin_registry
    from engine.steps.llm import LlmSettings

    settings = Settings()
    llm = LlmSettings(settings.model_routes(), settings.llm_api_base, settings.llm_timeout_seconds)
    route, _ = llm.route(args.model)
    result = plan_with_model(
        args.text,
        builtin_registry(),
        model=route.model,
        api_base=route.api_base,
        api_key=route.api_key,
        alias=args.model,
        attempts=args.attempts,
        timeout=settings.llm_timeout_seconds,
        mode=args.mode,
    )
    summary = (
        f"planner: {result.planner} ({result.attempts} answer(s)), {result.latency_ms:.0f} ms, "
        f"{result.tokens_in} tokens in, {result.tokens_out} out, ${result.cost_usd:.6f}"
    )
    if not result.valid or result.yaml is None:
        console.print(Text(summary, style="dim"))
        console.print(Text(f"error[copilot.no_valid_flow]: {result.problems}", style="red"))
        console.print(
            Text("  hint: try a larger model (--model smart), or the offline planner (no --model)", style="dim")
        )
        return 1
    if args.output:
        Path(args.output).write_text(result.yaml, encoding="utf-8")
    else:
        print(result.yaml, end="")
    console.print(Text(summary + "; the flow is valid", style="dim"))
    return 0
