"""Running an evaluation: gold records in, one prediction per record, metrics out (a table and JSON).

A prediction comes from a planner (``Predict``: the instruction in, a document out, with the latency, tokens
and cost it took) or from a file of predictions made elsewhere (``ionflux eval … --predictions FILE``: one JSON
object per line, ``{"id", "flow"}`` for in-domain, ``{"id", "task_nodes", "task_links"}`` for TaskBench).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import load_flow
from evals import flowshape, indomain, taskbench


@dataclass
class Prediction:
    """One planner answer: a FluxGraph document (in-domain) or a tool graph (TaskBench), and what it cost."""

    document: str | None = None
    tools: set[str] = field(default_factory=set)
    links: set[tuple[str, str]] = field(default_factory=set)
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    planner: str = "predictions file"
    error: str | None = None


Predict = Callable[[dict[str, Any]], Prediction]


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def from_file(path: Path, kind: str) -> Predict:
    """Predictions recorded in a JSONL file, by record id; a record with none counts as an empty answer."""
    rows = {str(row["id"]): row for row in load_jsonl(path)}

    def predict(record: dict[str, Any]) -> Prediction:
        row = rows.get(str(record["id"]))
        if row is None:
            return Prediction(error="no prediction for this record")
        if kind == "taskbench":
            tools = {str(n.get("task")) for n in row.get("task_nodes") or []}
            links = {(str(x.get("source")), str(x.get("target"))) for x in row.get("task_links") or []}
            return Prediction(tools=tools, links=links)
        return Prediction(document=row.get("flow"))

    return predict


def planner(name: str, kind: str, catalog: Path | None) -> Predict:
    """Plan each record now: ``offline`` is Jules's offline planner, ``model:ALIAS`` Jules with a model; both plan
    over IONFLUX's node catalog for in-domain and over the data set's tool catalog for TaskBench."""
    from copilot.catalog import Catalog
    from copilot.planning import draft
    from copilot.tool_planner import plan_tools

    if name != "offline" and not name.startswith("model:"):
        raise SystemExit(f"error: no planner {name!r}: use offline, or model:ALIAS")
    if kind == "taskbench":
        if catalog is None:
            raise SystemExit("error: taskbench needs --catalog FILE (its tool_desc.json)")
        tools = taskbench.load_catalog(catalog)
        if name.startswith("model:"):
            return _model_tool_planner(name.removeprefix("model:"), tools)
        actions = Catalog((t.id, t.desc, tuple(f"{n} {d}" for n, _, d in t.parameters)) for t in tools)

        def predict_tools(record: dict[str, Any]) -> Prediction:
            started = time.perf_counter()
            names, links = plan_tools(record["instruction"], actions)
            elapsed = (time.perf_counter() - started) * 1000
            return Prediction(tools=set(names), links=set(links), latency_ms=elapsed, planner=name)

        return predict_tools

    if name.startswith("model:"):
        return _model_planner(name.removeprefix("model:"))

    def predict_flow(record: dict[str, Any]) -> Prediction:
        result = draft(record["instruction"], flow_id=f"plan-{record['id']}".lower())
        return Prediction(document=result.yaml, latency_ms=result.latency_ms, planner=result.planner)

    return predict_flow


def _model_planner(alias: str) -> Predict:
    """Jules with a model: ``alias`` is a route of IONFLUX_LLM_MODELS (or a litellm model name)."""
    from api.settings import Settings
    from copilot.model_planner import plan_with_model
    from engine.nodetypes.builtin import builtin_registry
    from engine.steps.llm import LlmSettings

    settings = Settings()
    route, _ = LlmSettings(settings.model_routes(), settings.llm_api_base).route(alias)

    def predict(record: dict[str, Any]) -> Prediction:
        result = plan_with_model(
            record["instruction"],
            builtin_registry(),
            model=route.model,
            api_base=route.api_base,
            api_key=route.api_key,
            alias=alias,
            timeout=settings.llm_timeout_seconds,
        )
        return Prediction(
            document=result.yaml,
            latency_ms=result.latency_ms,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            planner=result.planner,
            error=None if result.valid else result.problems[:500],
        )

    return predict


def _model_tool_planner(alias: str, catalog: list[taskbench.Tool]) -> Predict:
    """Jules with a model over the data set's tool catalog (copilot.model_tools), grounded and repaired."""
    from copilot.model_tools import Tool, plan_tools_with_model

    choice = _choice(alias)
    tools = [Tool(t.id, t.desc, tuple((n, d) for n, _, d in t.parameters)) for t in catalog]

    def predict(record: dict[str, Any]) -> Prediction:
        result = plan_tools_with_model(record["instruction"], tools, choice)
        graph = result.graph
        return Prediction(
            tools={n.task for n in graph.task_nodes} if graph else set(),
            links={(x.source, x.target) for x in graph.task_links} if graph else set(),
            latency_ms=result.latency_ms,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            planner=result.planner,
            error=None if graph else result.problems[:500],
        )

    return predict


def _choice(alias: str) -> Any:
    from api.settings import Settings
    from copilot.structured import ModelChoice
    from engine.steps.llm import LlmSettings

    settings = Settings()
    route, _ = LlmSettings(settings.model_routes(), settings.llm_api_base).route(alias)
    return ModelChoice(route.model, route.api_base, route.api_key, settings.llm_timeout_seconds)


def valid(document: str | None) -> bool:
    """Whether the document passes IONFLUX's FluxGraph validator with no errors."""
    if not document:
        return False
    try:
        load_flow(document, "<generated>")
    except FlowValidationError:
        return False
    return True


def evaluate(kind: str, records: Sequence[dict[str, Any]], predict: Predict) -> dict[str, Any]:
    predictions: list[Prediction] = []
    for record in records:
        started = time.perf_counter()
        prediction = predict(record)
        if not prediction.latency_ms:
            prediction.latency_ms = (time.perf_counter() - started) * 1000
        predictions.append(prediction)
    if kind == "taskbench":
        report = taskbench.score((r, p.tools, p.links) for r, p in zip(records, predictions, strict=True))
    else:
        report = indomain.score(
            (r, flowshape.read(p.document), valid(p.document)) for r, p in zip(records, predictions, strict=True)
        )
    latencies = sorted(p.latency_ms for p in predictions)
    report["cost"] = {
        "latency_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        "latency_ms_p95": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 2)
        if latencies
        else None,
        "tokens_in": sum(p.tokens_in for p in predictions),
        "tokens_out": sum(p.tokens_out for p in predictions),
        "cost_usd": round(sum(p.cost_usd for p in predictions), 6),
        "failures": sum(1 for p in predictions if p.error),
    }
    report["planner"] = predictions[0].planner if predictions else None
    report["predictions"] = [{"id": r["id"], **_summary(p)} for r, p in zip(records, predictions, strict=True)]
    return report


def table(report: dict[str, Any]) -> str:
    """The report as lines a person reads: one row per metric (``node_f1 91.3``), then the breakdowns."""
    lines = [f"planner: {report['planner']}; records: {report['records']}"]
    for name, value in report["overall"].items():
        lines.append(f"{name:<20} {'-' if value is None else f'{value:.1f}'}")
    for group, metrics in report.get("by", {}).items():
        shown = ", ".join(f"{k} {v:.1f}" for k, v in metrics.items() if k != "records" and v is not None)
        lines.append(f"  {group} ({metrics['records']}): {shown}")
    cost = report["cost"]
    lines.append(
        f"latency p50 {cost['latency_ms_p50']} ms, p95 {cost['latency_ms_p95']} ms; tokens in {cost['tokens_in']}, "
        f"out {cost['tokens_out']}; cost ${cost['cost_usd']}; failures {cost['failures']}"
    )
    return "\n".join(lines)


def _summary(prediction: Prediction) -> dict[str, Any]:
    data = asdict(prediction)
    data["tools"] = sorted(prediction.tools)
    data["links"] = sorted(prediction.links)
    return data
