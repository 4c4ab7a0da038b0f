"""Flow documentation, written by rules (no model): a ``description`` for the flow and one for each node, from the
triggers, the node types and their parameters.

    Every Monday at 09:00 (Europe/Lisbon): fetches https://shop.example.com/api/orders?days=…, summarises these
    orders with the model `default`, posts to #sales on Slack.

FluxGraph nodes already have an optional ``description`` (engine.dsl.model.BaseNode and the JSON Schema), so
:func:`document` writes both into the YAML text, keeping everything else as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from copilot.advice import node_paths
from copilot.yamledit import Edit, apply_edits
from engine.dsl import schedule
from engine.dsl.expression import single_expression
from engine.dsl.graph import edges, topological_order
from engine.dsl.model import (
    AnyNode,
    ApprovalNode,
    CronTrigger,
    EventTrigger,
    Flow,
    FlowTrigger,
    ForeachNode,
    ManualTrigger,
    Trigger,
    WebhookTrigger,
)
from engine.dsl.source import parse_yaml
from engine.dsl.validator import load_flow
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
DAY_NAMES = {d[:3].upper(): i for i, d in enumerate(DAYS)}
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
# imperative verbs a prompt starts with, and their third person, for "summarises these orders"
VERBS = {
    "summarise": "summarises",
    "summarize": "summarizes",
    "write": "writes",
    "draft": "drafts",
    "translate": "translates",
    "rewrite": "rewrites",
    "generate": "generates",
    "create": "creates",
    "compose": "composes",
    "explain": "explains",
    "answer": "answers",
    "reply": "replies to",
    "describe": "describes",
    "suggest": "suggests",
    "analyse": "analyses",
    "analyze": "analyzes",
    "list": "lists",
    "turn": "turns",
    "give": "gives",
    "produce": "produces",
    "prepare": "prepares",
    "review": "reviews",
    "classify": "classifies",
    "extract": "extracts",
    "convert": "converts",
    "format": "formats",
}
_OBJECT_END = re.compile(r"[:.,;!?\n]|\{\{|\b(?:from|in|into|for|with|as|using|to|and)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Description:
    """The flow's description and each node's (by id), as :func:`document` writes them."""

    flow: str
    nodes: Mapping[str, str]


def describe(flow: Flow, registry: Registry | None = None) -> Description:
    """Descriptions of ``flow`` and its nodes; the same flow always gets the same words."""
    types = registry or builtin_registry()
    steps = ", ".join(_phrase(n, types) for n in _ordered(flow.nodes))
    text = f"{when(flow.triggers)}: {steps}."
    if flow.on_failure:
        text += " If a run fails, it " + ", ".join(_phrase(n, types) for n in flow.on_failure) + "."
    nodes = {node.id: node_description(node, types) for node in _every_node(flow)}
    return Description(text, nodes)


def document(text: str, registry: Registry | None = None, *, overwrite: bool = False, file: str = "<flow>") -> str:
    """``text`` with the descriptions of :func:`describe` written in: only where there is none yet, or everywhere
    with ``overwrite``. The rest of the document (comments, order, layout) is kept; the result is validated."""
    types = registry or builtin_registry()
    flow = load_flow(text, file, registry=types)
    written = describe(flow, types)
    data = parse_yaml(text, file).data
    edits = []
    if overwrite or "description" not in data:
        edits.append(Edit((), "description", written.flow, after=("name", "id")))
    for node_id, path in node_paths(flow).items():
        node = _at(data, path)
        if overwrite or "description" not in node:
            edits.append(Edit(path, "description", written.nodes[node_id], after=("name", "type", "id")))
    return apply_edits(text, edits, types, file)


def _at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _every_node(flow: Flow) -> Iterator[AnyNode]:
    def walk(nodes: Iterable[AnyNode]) -> Iterator[AnyNode]:
        for node in nodes:
            yield node
            if isinstance(node, ForeachNode):
                yield from walk(node.do)

    yield from walk(flow.nodes)
    yield from walk(flow.on_failure)


def _ordered(nodes: tuple[AnyNode, ...]) -> list[AnyNode]:
    """The nodes in the order they run (document order among those that could run together)."""
    by_id = {n.id: n for n in nodes}
    return [by_id[i] for i in topological_order([n.id for n in nodes], edges(nodes))]


# --- when -------------------------------------------------------------------------------------------------------


def when(triggers: Iterable[Trigger]) -> str:
    """When the flow runs, in words: "Every Monday at 09:00 (Europe/Lisbon) or when started by hand"."""
    parts = [_trigger(t) for t in triggers if t.enabled]
    if not parts:
        return "When started"
    return " or ".join([parts[0]] + [p[0].lower() + p[1:] for p in parts[1:]])


def _trigger(trigger: Trigger) -> str:
    if isinstance(trigger, CronTrigger):
        return f"{cron_words(trigger.cron)} ({trigger.timezone})"
    if isinstance(trigger, WebhookTrigger):
        return "When a webhook arrives"
    if isinstance(trigger, EventTrigger):
        return f"When an event arrives on `{trigger.subject}`"
    if isinstance(trigger, FlowTrigger):
        return "When another flow calls it"
    assert isinstance(trigger, ManualTrigger)
    return "When started by hand"


def cron_words(expression: str) -> str:
    """A cron expression in words for the common shapes ("Every weekday at 07:15"); others quote the cron."""
    fields = schedule.expand(expression).split()
    if len(fields) != 5:
        return f"On the schedule `{expression}`"
    minute, hour, dom, month, dow = fields
    if minute.startswith("*/") and hour == "*" and dom == month == dow == "*":
        return f"Every {minute[2:]} minutes"
    if minute.isdigit() and hour == "*" and dom == month == dow == "*":
        return "Every hour" + (f" at minute {int(minute)}" if int(minute) else "")
    times = _times(minute, hour)
    if times is None or month != "*":
        return f"On the schedule `{expression}`"
    if dom == "*":
        days = _weekdays(dow)
        return f"{days} at {times}" if days else f"On the schedule `{expression}`"
    if dom.isdigit() and dow == "*":
        return f"On day {int(dom)} of every month at {times}"
    return f"On the schedule `{expression}`"


def _times(minute: str, hour: str) -> str | None:
    if not minute.isdigit() or not all(h.isdigit() for h in hour.split(",")):
        return None
    times = [f"{int(h):02d}:{int(minute):02d}" for h in hour.split(",")]
    return _and(times)


def _weekdays(dow: str) -> str | None:
    if dow == "*":
        return "Every day"
    names = dow.upper()
    if names in ("1-5", "MON-FRI"):
        return "Every weekday"
    if names in ("0,6", "6,0", "SAT,SUN", "SUN,SAT"):
        return "Every weekend day"
    days = []
    for part in names.split(","):
        number = DAY_NAMES.get(part, int(part) % 7 if part.isdigit() else None)
        if number is None:
            return None
        days.append(DAYS[number])
    return "Every " + _and(days)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# --- what each node does ------------------------------------------------------------------------------------------


def node_description(node: AnyNode, registry: Registry) -> str:
    """One node's description: what it does, then when it runs and how failures are handled."""
    phrase = _phrase(node, registry)
    text = phrase[0].upper() + phrase[1:] + "."
    if node.if_ is not None and node.if_ is not True:
        text += f" Only when `{_bare(node.if_)}`."
    if node.retry is not None:
        text += f" Tries up to {node.retry.max_attempts} times."
    if node.timeout is not None:
        text += f" Times out after {node.timeout}."
    if node.on_error == "continue":
        text += " A failure does not stop the run."
    elif node.on_error != "fail":
        text += f" On failure, `{node.on_error}` runs instead."
    return text


def _bare(condition: str | bool) -> str:
    text = str(condition).strip()
    return text[2:-2].strip() if text.startswith("{{") and text.endswith("}}") else text


def _phrase(node: AnyNode, registry: Registry) -> str:
    if isinstance(node, ForeachNode):
        inner = ", ".join(_phrase(n, registry) for n in _ordered(node.do))
        items = f"`{_bare(node.items)}`" if isinstance(node.items, str) else f"{len(node.items)} items"
        return f"for each item of {items}: {inner}"
    if isinstance(node, ApprovalNode):
        return "waits for a person's approval"
    writer = PHRASES.get(node.type)
    if writer is not None:
        return writer(node.with_)
    if node.type in registry:
        summary = registry.get(node.type).summary.split(". ")[0].rstrip(".")
        return f"runs {node.type} ({summary[0].lower() + summary[1:]})"
    return f"runs {node.type}"


def _shown(value: Any, width: int = 80) -> str:
    """A literal value as written, with the parts only known at run time shown as "…", cut at ``width``."""
    text = _TEMPLATE.sub("…", str(value)).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _model(with_: Mapping[str, Any]) -> str:
    return f"with the model `{_shown(with_.get('model', 'default'))}`"


def _http(with_: Mapping[str, Any]) -> str:
    method = str(with_.get("method", "GET")).upper()
    url = _shown(with_.get("url", ""))
    return f"fetches {url}" if method == "GET" else f"sends a {method} request to {url}"


def _complete(with_: Mapping[str, Any]) -> str:
    prompt = str(with_.get("prompt", "")).strip()
    words = prompt.split(maxsplit=1)
    verb = VERBS.get(words[0].lower().strip(":,.")) if words else None
    if verb is None:
        return f"writes text {_model(with_)}"
    rest = words[1] if len(words) > 1 else ""
    end = _OBJECT_END.search(rest)
    obj = " ".join((rest[: end.start()] if end else rest).split()[:6])
    return f"{verb} {obj or 'it'} {_model(with_)}"


def _extract(with_: Mapping[str, Any]) -> str:
    schema = with_.get("schema")
    properties = list(schema.get("properties", {})) if isinstance(schema, Mapping) else []
    what = _and([f"`{p}`" for p in properties[:6]]) if properties else "structured data"
    return f"extracts {what} {_model(with_)}"


def _classify(with_: Mapping[str, Any]) -> str:
    labels = [str(label) for label in with_.get("labels", [])]
    return f"classifies it as {_and(labels).replace(' and ', ' or ')} {_model(with_)}" if labels else "classifies it"


def _slack(with_: Mapping[str, Any]) -> str:
    channel = with_.get("channel")
    if isinstance(channel, str) and "{{" not in channel:
        return f"posts to {channel} on Slack"
    return "posts to Slack"


def _email(with_: Mapping[str, Any]) -> str:
    to = with_.get("to")
    addresses = to if isinstance(to, list) else [to]
    if all(isinstance(a, str) and "{{" not in a for a in addresses):
        return f"emails {_and([str(a) for a in addresses])}"
    expression = single_expression(to) if isinstance(to, str) else None
    if expression is not None and expression.strip().startswith("inputs."):
        return f"emails the address in `{expression.strip()}`"
    return "sends an email to the recipient in the run's data"


def _items_of(key: str, noun: str) -> Callable[[Mapping[str, Any]], str]:
    def phrase(with_: Mapping[str, Any]) -> str:
        return f"{noun} `{_shown(with_.get(key, ''))}`"

    return phrase


PHRASES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "http.request": _http,
    "llm.complete": _complete,
    "llm.extract": _extract,
    "llm.classify": _classify,
    "slack.post": _slack,
    "discord.post": lambda w: "posts to Discord",
    "email.send": _email,
    "data.filter": lambda w: f"keeps the items where `{_shown(w.get('where', ''))}`",
    "json.extract": _items_of("path", "picks"),
    "data.set": lambda w: "builds " + _and([f"`{k}`" for k in w] or ["a value"]),
    "text.template": lambda w: "renders a text template",
    "log": lambda w: "logs a message",
    "delay": lambda w: f"waits {_shown(w.get('duration', ''))}",
    "code.python": lambda w: "runs Python code",
    "code.js": lambda w: "runs JavaScript code",
    "wasm.run": _items_of("module", "runs the module"),
    "event.publish": _items_of("subject", "publishes an event on"),
    "flow.call": _items_of("flow", "calls the flow"),
}
