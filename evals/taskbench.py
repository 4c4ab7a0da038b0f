"""The TaskBench metrics (../shared/evals/taskbench-dailylife/README.md): node F1 over the sets of tool names and
edge F1 over the sets of (source, target) links, micro-averaged; and the tool catalog read as agents."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Tool:
    id: str
    desc: str
    parameters: tuple[tuple[str, str, str], ...]  # (name, type, description)


def load_catalog(path: Path) -> list[Tool]:
    data = json.loads(path.read_text("utf-8"))
    return [
        Tool(
            node["id"],
            node.get("desc", ""),
            tuple((p["name"], p.get("type", "string"), p.get("desc", "")) for p in node.get("parameters", [])),
        )
        for node in data["nodes"]
    ]


def score(records: Iterable[tuple[dict[str, Any], set[str], set[tuple[str, str]]]]) -> dict[str, Any]:
    """``records``: (gold record, predicted tool names, predicted links) -> node and edge F1."""
    node: Counter[str] = Counter()
    edge: Counter[str] = Counter()
    count = 0
    for gold, tools, links in records:
        count += 1
        _count(node, {n["task"] for n in gold["task_nodes"]}, tools)
        _count(edge, {(link["source"], link["target"]) for link in gold["task_links"]}, links)
    return {"records": count, "overall": {"node_f1": _f1(node), "edge_f1": _f1(edge)}}


def _count(totals: Counter[str], gold: set[Any], have: set[Any]) -> None:
    tp = len(gold & have)
    totals["tp"] += tp
    totals["fp"] += len(have) - tp
    totals["fn"] += len(gold) - tp


def _f1(counts: Counter[str]) -> float | None:
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    if tp + fp + fn == 0:
        return None
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return round(100 * 2 * precision * recall / (precision + recall), 1)
