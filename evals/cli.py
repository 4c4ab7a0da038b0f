"""``ionflux eval indomain|taskbench``: score predictions against a data file (see docs/evals.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evals import harness


def cmd_eval(args: argparse.Namespace) -> int:
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
