"""The TaskBench metrics (../shared/evals/taskbench-dailylife/README.md): node F1 over the sets of tool names and
edge F1 over the sets of (source, target) links, micro-averaged; and the tool catalog read as agents."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.counts import count, f1


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
    seen = 0
    for gold, tools, links in records:
        seen += 1
        count(node, Counter({n["task"] for n in gold["task_nodes"]}), Counter(tools))
        count(edge, Counter({(link["source"], link["target"]) for link in gold["task_links"]}), Counter(links))
    return {"records": seen, "overall": {"node_f1": f1(node), "edge_f1": f1(edge)}}
