"""Jules with a model over a catalog of tools (agents): a request planned as a graph of tool calls, the way
TaskBench measures planners. The same discipline as flows: the answer's schema is checked (instructor), then its
grounding (every tool and parameter exists, every link joins two planned calls), and what fails goes back to the
model, a bounded number of times; the result is a grounded graph or a clear failure."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from copilot.structured import ModelAway, ModelChoice, call_structured

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "plan_tools.md"


class Argument(BaseModel):
    name: str
    value: str | int | float | bool | None = None


class ToolCall(BaseModel):
    task: str = Field(description="a tool name from the list")
    arguments: list[Argument] = Field(default_factory=list)


class Link(BaseModel):
    source: str
    target: str


class ToolGraph(BaseModel):
    task_nodes: list[ToolCall]
    task_links: list[Link] = Field(default_factory=list)


@dataclass(frozen=True)
class Tool:
    """A tool (agent) the planner may call: its name, what it does and its parameters (name, description)."""

    name: str
    description: str
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass
class ToolPlan:
    graph: ToolGraph | None  # None unless grounded
    problems: str
    attempts: int
    planner: str
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0  # the first prompt's size, for the prompt budget
    history: list[str] = field(default_factory=list)  # what each refused answer got back


def tools_text(tools: Sequence[Tool]) -> str:
    """One compact line per tool: ``name(param, param): description``."""
    return "\n".join(f"- {t.name}({', '.join(p for p, _ in t.parameters)}): {t.description}" for t in tools)


def prompt(request: str, tools: Sequence[Tool]) -> str:
    return PROMPT.read_text("utf-8").replace("{tools}", tools_text(tools)).replace("{request}", request.strip())


def grounding(graph: ToolGraph, tools: Sequence[Tool]) -> list[str]:
    """What the graph names that does not exist, each with what does (empty: grounded)."""
    known = {t.name: {p for p, _ in t.parameters} for t in tools}
    problems: list[str] = []
    if not graph.task_nodes:
        problems.append("task_nodes is empty: plan at least one tool call")
    planned = [n.task for n in graph.task_nodes]
    for i, node in enumerate(graph.task_nodes):
        if node.task not in known:
            problems.append(f"task_nodes[{i}].task: there is no tool {node.task!r}; use one of the listed names")
            continue
        for arg in node.arguments:
            if arg.name not in known[node.task]:
                allowed = ", ".join(sorted(known[node.task])) or "none"
                problems.append(
                    f"task_nodes[{i}] ({node.task}): no parameter {arg.name!r}; its parameters are: {allowed}"
                )
    for i, link in enumerate(graph.task_links):
        for end in ("source", "target"):
            name = getattr(link, end)
            if name not in planned:
                problems.append(f"task_links[{i}].{end}: {name!r} is not one of the planned task_nodes")
        if link.source == link.target:
            problems.append(f"task_links[{i}]: a tool cannot run after itself")
    return problems


def plan_tools_with_model(
    request: str, tools: Sequence[Tool], choice: ModelChoice, *, attempts: int = 3, max_tokens: int = 800
) -> ToolPlan:
    started = time.perf_counter()
    result = ToolPlan(None, "", 0, f"model:{choice.model}")
    messages = [{"role": "user", "content": prompt(request, tools)}]
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        try:
            answer = call_structured(messages, choice, ToolGraph, max_tokens, result)
        except ModelAway as e:
            result.problems = f"the model could not be reached or refused the request: {e}"
            break
        if attempt == 1:
            result.prompt_tokens = result.tokens_in
        if isinstance(answer, str):
            problems = [answer]
            shown = answer
        else:
            problems = grounding(answer, tools)
            shown = answer.model_dump_json()
            if not problems:
                result.graph, result.problems = answer, ""
                break
        result.problems = "\n".join(f"- {p}" for p in problems)
        result.history.append(result.problems)
        messages += [
            {"role": "assistant", "content": shown},
            {
                "role": "user",
                "content": f"That does not work:\n{result.problems}\nAnswer again with the corrected JSON.",
            },
        ]
    else:
        result.problems = f"no grounded plan after {attempts} attempts; the last problems:\n{result.problems}"
    result.latency_ms = (time.perf_counter() - started) * 1000
    return result
