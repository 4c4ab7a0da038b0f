"""``ionflux eval indomain|taskbench|heal``: score predictions against a data file, or run the self-healing
failure suite (see docs/evals.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evals import harness


def cmd_eval(args: argparse.Namespace) -> int:
    if args.set == "heal":
        return cmd_eval_heal(args)
    if not args.data:
        print("error: give --data FILE.jsonl (the gold records)")
        return 2
    records = harness.load_jsonl(Path(args.data))
    if args.limit:
        records = records[: args.limit]
    if args.planner:
        predict = harness.planner(args.planner, args.set, Path(args.catalog) if args.catalog else None)
    elif args.predictions:
        predict = harness.from_file(Path(args.predictions), args.set)
    else:
        print("error: give --predictions FILE or --planner NAME")
        return 2
    report = harness.evaluate(args.set, records, predict)
    print(harness.table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"results written to {args.out}")
    return 0


def cmd_eval_heal(args: argparse.Namespace) -> int:
    """``ionflux eval heal``: run the failure suite, print one named metric per row and a line per case."""
    from api.jules import model_choice
    from api.settings import Settings
    from evals.heal import CASES, Healer, evaluate, load_cases, model_healer, rules_healer, table

    cases = load_cases(Path(args.data) if args.data else CASES)
    if args.limit:
        cases = cases[: args.limit]
    planner = args.planner or "rules"
    healer: Healer = rules_healer
    if planner.startswith("model:"):
        settings = Settings()
        choice = model_choice(settings, planner.removeprefix("model:"))
        if choice is None:
            print(f"error: no model route {planner!r}: set IONFLUX_LLM_MODELS (docs/running.md)")
            return 2
        healer = model_healer(choice, tuple(settings.model_routes()) or ("default",))
    elif planner != "rules":
        print("error: --planner is rules or model:ALIAS for the heal set")
        return 2
    report = evaluate(cases, healer, planner)
    print(table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"results written to {args.out}")
    return 0
