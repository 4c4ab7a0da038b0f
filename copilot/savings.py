"""Cheaper alternatives for a flow, each measured by re-forecasting the changed flow (never guessed):

- a cheaper model alias for an ``llm.*`` node (the cheapest configured alias for that node);
- a lower ``max_tokens`` where the node's output is short by construction (a label, a few fields, a text the
  prompt caps at N words);
- a ``data.filter`` before a foreach whose loop calls a model, so fewer items reach it.

Prices: by default the engine's own forecast (``engine.nodetypes.builtin.ai``'s per-alias table). With the
operator's routes, :func:`alias_prices` prices each alias from the route's per-token prices or litellm's price
table (what the engine charges after the call), and :func:`priced_registry` makes the forecast use them.

Each changed flow goes through ``load_data`` before it is forecast, so a suggestion is always a valid flow.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from copilot.cost import EXPECTED_ITEMS, forecast
from engine.dsl.canonical import canonical_data
from engine.dsl.expression import parse, single_expression
from engine.dsl.forecast import effective_with, flow_forecast
from engine.dsl.issue import FlowValidationError
from engine.dsl.model import AnyNode, Flow, ForeachNode, StepNode
from engine.dsl.validator import load_data
from engine.errors import IonfluxError
from engine.nodetypes.builtin import ai
from engine.nodetypes.registry import CostEstimate, NodeType, Registry
from engine.steps.llm import CION_PER_USD, ModelRoute

FILTER_KEEPS = 0.5  # share of a loop's items a filter is assumed to keep (its real selectivity is the data's)
# nodes whose output already narrows a list: a loop over their output needs no extra filter
NARROWING_TYPES = frozenset({"data.filter", "json.extract", "code.python", "code.js", "wasm.run"})
LABEL_TOKENS = 48  # a label and a confidence as a tool call, with room for a long label
FIELD_TOKENS = 40  # one scalar field of an extraction, key and value
TOKENS_PER_WORD = 1.35  # English prose with common tokenizers
WORD_LIMIT = re.compile(
    r"\b(?:at most|up to|no more than|under|fewer than|less than|maximum of|max\.?|within)\s+(\d{1,5})\s+words\b",
    re.IGNORECASE,
)
Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What an alias costs, in C-ION per 1,000 tokens, prompt and completion apart."""

    input_cion_per_1k: float
    output_cion_per_1k: float
    model: str = ""  # the litellm model the alias routes to, when known


@dataclass(frozen=True, slots=True)
class Change:
    """Set ``field`` (a dotted path inside node ``node_id``: ``with.model``) to ``value``."""

    node_id: str
    field: str
    value: Any


@dataclass(frozen=True, slots=True)
class Saving:
    """A cheaper alternative: what to change, what it saves (C-ION, re-forecast) and why, in one sentence."""

    node_id: str
    changes: tuple[Change, ...]
    per_run: float
    per_month: float | None  # None: the flow has no cron, so how often it runs is not known
    why: str
    new_nodes: tuple[Mapping[str, Any], ...] = field(default=())  # inserted just before ``node_id``

    def describe(self) -> str:
        what = ", ".join(f"{c.node_id}.{c.field} = {c.value!r}" for c in self.changes)
        added = "".join(f" + new node {n['id']} ({n['type']})" for n in self.new_nodes)
        month = "" if self.per_month is None else f", {self.per_month:g} a month"
        return f"{self.node_id}: {what}{added} saves {self.per_run:g} C-ION per run{month}. {self.why}"


class PricingError(IonfluxError):
    """Raised when a model alias has no price: its route names no per-token prices and litellm does not know it."""

    code = "copilot.unpriced_model"


# --- prices ---------------------------------------------------------------------------------------------------------


def engine_prices() -> dict[str, ModelPrice]:
    """The per-alias prices the engine forecasts with (the same price for prompt and completion tokens)."""
    return {alias: ModelPrice(p, p) for alias, p in ai.ALIAS_CION_PER_1K_TOKENS.items()}


def alias_prices(
    routes: Mapping[str, ModelRoute], price_of: Callable[[str], tuple[float, float] | None] | None = None
) -> dict[str, ModelPrice]:
    """Each alias's price: its route's own per-token prices, else ``price_of(model)`` (USD per prompt token, per
    completion token; default: litellm's price table, the one the engine meters with). Raises
    :class:`PricingError` for an alias neither knows."""
    lookup = price_of or litellm_price
    prices = {}
    for alias, route in routes.items():
        if route.input_cost_per_token is not None or route.output_cost_per_token is not None:
            usd = (route.input_cost_per_token or 0.0, route.output_cost_per_token or 0.0)
        else:
            found = lookup(route.model)
            if found is None:
                raise PricingError(
                    f"model alias {alias!r} routes to {route.model!r}, whose price is unknown",
                    hint="give the route input_cost_per_token and output_cost_per_token in IONFLUX_LLM_MODELS",
                )
            usd = found
        per_1k = 1000 * CION_PER_USD
        prices[alias] = ModelPrice(round(usd[0] * per_1k, 6), round(usd[1] * per_1k, 6), route.model)
    return prices


def litellm_price(model: str) -> tuple[float, float] | None:
    """USD per prompt token and per completion token from litellm's bundled price table, or None."""
    from engine.steps.llm import litellm_module  # seconds to import: only when prices are asked for; offline table

    try:
        prompt, completion = litellm_module().cost_per_token(model=model, prompt_tokens=1, completion_tokens=1)
    except Exception:  # litellm raises a bare Exception for a model missing from its table
        return None
    return float(prompt), float(completion)


def priced_registry(registry: Registry, prices: Mapping[str, ModelPrice]) -> Registry:
    """A copy of ``registry`` whose built-in ``llm.*`` types forecast with ``prices`` (other types unchanged)."""
    builtin_llm = {t.name for t in ai.TYPES}
    out = Registry()
    for node_type in registry:
        if node_type.name in builtin_llm and "default" in prices:
            node_type = replace(node_type, cost=_priced_cost(node_type, prices))
        out.register(node_type)
    return out


def _priced_cost(node_type: NodeType, prices: Mapping[str, ModelPrice]) -> Callable[[Mapping[str, Any]], CostEstimate]:
    engine_hook = node_type.cost
    default_price = ai.ALIAS_CION_PER_1K_TOKENS["default"]

    def cost(with_: Mapping[str, Any]) -> CostEstimate:
        # The engine's hook knows the type's token allowance (max_tokens, its default, the prompt allowance);
        # asking it at the `default` price and dividing by that price gives the tokens without copying its rules.
        tokens = round(engine_hook({**with_, "model": "default"}).cion / default_price * 1000)
        completion = tokens - ai.PROMPT_TOKEN_ALLOWANCE
        model = with_.get("model", "default")
        alias = model if isinstance(model, str) and model in prices else "default"
        price = prices[alias]
        cion = (ai.PROMPT_TOKEN_ALLOWANCE * price.input_cion_per_1k + completion * price.output_cion_per_1k) / 1000
        basis = (
            f"up to {ai.PROMPT_TOKEN_ALLOWANCE} prompt + {completion} completion tokens at "
            f"{price.input_cion_per_1k:g}/{price.output_cion_per_1k:g} C-ION per 1k ({alias})"
        )
        return CostEstimate(round(cion, 4), basis)

    return cost


# --- suggestions ----------------------------------------------------------------------------------------------------


def suggest_savings(
    flow: Flow,
    registry: Registry,
    now: datetime,
    *,
    prices: Mapping[str, ModelPrice] | None = None,
    items: int = EXPECTED_ITEMS,
    filter_keeps: float = FILTER_KEEPS,
) -> list[Saving]:
    """Cheaper alternatives for ``flow``, biggest saving first. ``prices`` (alias -> price) default to the
    engine's forecast table; ``items`` is the foreach item count the forecast assumes."""
    measure = _Measure(flow, priced_registry(registry, prices) if prices else registry, now, items)
    aliases = sorted(prices or ai.ALIAS_CION_PER_1K_TOKENS)
    found: list[Saving] = []
    for node, path in _llm_nodes(flow, measure.registry):
        found.extend(_cheaper_model(node, path, aliases, measure))
        found.extend(_shorter_output(node, path, measure))
    for loop, path in _loops(flow):
        found.extend(_filter_first(flow, loop, path, measure, filter_keeps))
    return sorted(found, key=lambda s: -s.per_run)


@dataclass
class _Measure:
    """Re-forecasts changed copies of one flow against its own forecast."""

    flow: Flow
    registry: Registry
    now: datetime
    items: int

    def __post_init__(self) -> None:
        self.data = canonical_data(self.flow)
        self.base = forecast(self.flow, self.registry, self.now, items=self.items)

    def changed(self, path: Path, field: str, value: Any) -> dict[str, Any]:
        data = copy.deepcopy(self.data)
        target = _at(data, path)
        *parents, last = field.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
        return data

    def saving(
        self, data: dict[str, Any], item_counts: Mapping[str, float] | None = None
    ) -> tuple[float, float | None] | None:
        """What ``data`` saves per run and per month, None when it is not a valid flow (a pricier model over a
        node's ``max_cion``, say); ``item_counts``: items per run for the nodes of the given loops."""
        try:
            flow = load_data(data, "<suggestion>", registry=self.registry)
        except FlowValidationError:
            return None
        per_run = _per_run(flow, self.registry, self.items, item_counts or {})
        saved = round(self.base.per_run - per_run, 4)
        runs = self.base.runs_per_month
        return saved, None if runs is None else round(saved * runs, 4)


def _at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


def _per_run(flow: Flow, registry: Registry, items: int, item_counts: Mapping[str, float]) -> float:
    """The flow's forecast per run: each per-item node times its loop's item count (``items`` by default)."""
    loop_of = {inner.id: loop.id for loop, _ in _loops(flow) for inner in _inner(loop)}
    total = 0.0
    for n in flow_forecast(flow, registry).nodes:
        count = item_counts.get(loop_of.get(n.node_id, ""), items) if n.per_item else 1
        total += n.estimate.cion * count
    return round(total, 4)


def _nodes(flow: Flow) -> Iterator[tuple[AnyNode, Path]]:
    """The run's nodes (on_failure ones excluded, as in the forecast) with their place in the document."""
    return _walk(flow.nodes, ("nodes",))


def _walk(nodes: tuple[AnyNode, ...], prefix: Path) -> Iterator[tuple[AnyNode, Path]]:
    for i, node in enumerate(nodes):
        yield node, (*prefix, i)
        if isinstance(node, ForeachNode):
            yield from _walk(node.do, (*prefix, i, "do"))


def _all(nodes: tuple[AnyNode, ...]) -> Iterator[AnyNode]:
    return (node for node, _ in _walk(nodes, ()))


def _inner(loop: ForeachNode) -> Iterator[AnyNode]:
    return _all(loop.do)


def _llm_nodes(flow: Flow, registry: Registry) -> Iterator[tuple[StepNode, Path]]:
    for node, path in _nodes(flow):
        if isinstance(node, StepNode) and node.type in registry and "llm" in registry.get(node.type).capabilities:
            yield node, path


def _loops(flow: Flow) -> Iterator[tuple[ForeachNode, Path]]:
    for node, path in _nodes(flow):
        if isinstance(node, ForeachNode):
            yield node, path


def _cheaper_model(node: StepNode, path: Path, aliases: list[str], measure: _Measure) -> Iterator[Saving]:
    current = node.with_.get("model", "default")
    if not isinstance(current, str) or "{{" in current:
        return
    options = [(measure.saving(measure.changed(path, "with.model", a)), a) for a in aliases if a != current]
    best = max(((s, a) for s, a in options if s is not None), default=None, key=lambda o: o[0][0])
    if best is None or best[0][0] <= 0:
        return
    (per_run, per_month), alias = best
    why = (
        f"`{alias}` is the cheapest configured model for this {node.type} step; check a few of its outputs "
        f"against `{current}`'s before switching."
    )
    yield Saving(node.id, (Change(node.id, "with.model", alias),), per_run, per_month, why)


def expected_output_tokens(node: StepNode) -> tuple[int, str] | None:
    """How many tokens the node's output needs when that is short by construction, and the reason; else None."""
    with_ = node.with_
    if node.type == "llm.classify":
        return LABEL_TOKENS, "a label and a confidence"
    if node.type == "llm.extract":
        properties = _flat_properties(with_.get("schema"))
        if properties:
            return _round_up(24 + FIELD_TOKENS * properties, 16), f"{properties} short field(s)"
    if node.type == "llm.complete":
        text = " ".join(str(with_.get(k, "")) for k in ("system", "prompt"))
        limits = [int(m) for m in WORD_LIMIT.findall(text)]
        if limits:
            words = max(limits)
            return _round_up(words * TOKENS_PER_WORD * 1.25, 50), f"the prompt asks for at most {words} words"
    return None


def _flat_properties(schema: Any) -> int:
    """The number of scalar properties of an object schema, 0 when it has lists or nested objects (unbounded)."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return 0
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return 0
    scalar = ("string", "number", "integer", "boolean")
    if any(
        not isinstance(p, Mapping) or (p.get("type") not in scalar and "enum" not in p) for p in properties.values()
    ):
        return 0
    return len(properties)


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def _shorter_output(node: StepNode, path: Path, measure: _Measure) -> Iterator[Saving]:
    expected = expected_output_tokens(node)
    if expected is None:
        return
    tokens, reason = expected
    current = effective_with(node).get("max_tokens")
    if isinstance(current, int) and current <= tokens:
        return
    saved = measure.saving(measure.changed(path, "with.max_tokens", tokens))
    if saved is None or saved[0] <= 0:
        return
    per_run, per_month = saved
    now = f"max_tokens {current}" if isinstance(current, int) else "no max_tokens (the type's default cap)"
    why = f"The output needs about {tokens} tokens ({reason}); {now} only inflates the forecast the budget checks."
    yield Saving(node.id, (Change(node.id, "with.max_tokens", tokens),), per_run, per_month, why)


def _filter_first(flow: Flow, loop: ForeachNode, path: Path, measure: _Measure, keeps: float) -> Iterator[Saving]:
    models = [
        n for n in _inner(loop) if n.type in measure.registry and "llm" in measure.registry.get(n.type).capabilities
    ]
    if not models or not isinstance(loop.items, str) or _already_narrowed(flow, loop.items):
        return
    taken = {n.id for n in _all(flow.nodes)} | {n.id for n in flow.on_failure}
    filter_id = next(
        f"{loop.id}_filter{i or ''}"[:64]
        for i in range(len(taken) + 1)
        if f"{loop.id}_filter{i or ''}"[:64] not in taken
    )
    where, told = _where(models)
    new_node: dict[str, Any] = {"id": filter_id, "type": "data.filter"}
    if loop.needs:
        new_node["needs"] = list(loop.needs)
    if loop.if_ is not None:
        new_node["if"] = loop.if_
    new_node["with"] = {"items": loop.items, "where": where}
    data = measure.changed(path, "items", f"{{{{ nodes.{filter_id}.output }}}}")
    node = _at(data, path)
    node["needs"] = [*loop.needs, filter_id]
    _at(data, path[:-1]).insert(int(path[-1]), new_node)
    kept = measure.items * keeps
    saved = measure.saving(data, {loop.id: kept})
    if saved is None or saved[0] <= 0:
        return
    per_run, per_month = saved
    why = (
        f"Every item of `{loop.id}` reaches the model in `{models[0].id}`; filtering first "
        f"({told}) saves its calls for the items dropped, assuming {keeps:.0%} of {measure.items} items are kept."
    )
    changes = (
        Change(loop.id, "items", f"{{{{ nodes.{filter_id}.output }}}}"),
        Change(loop.id, "needs", [*loop.needs, filter_id]),
    )
    yield Saving(loop.id, changes, per_run, per_month, why, (new_node,))


def _already_narrowed(flow: Flow, items: str) -> bool:
    """True when the loop's items are the output of a node that already narrows a list."""
    expression = single_expression(items)
    if expression is None:
        return False
    types = {n.id: n.type for n in _all(flow.nodes)}
    return any(
        r.root == "nodes" and r.path and types.get(str(r.path[0])) in NARROWING_TYPES for r in parse(items).references
    )


def _where(models: list[AnyNode]) -> tuple[str, str]:
    """The filter's condition: a model node's own ``if:`` when it reads only the item (so it moves ahead of the
    loop unchanged), else a placeholder that drops empty items, for the author to narrow."""
    for node in models:
        condition = node.if_
        if isinstance(condition, str):
            inner = single_expression(condition)
            roots = {r.root for r in parse(condition).references}
            if inner is not None and roots and roots <= {"item", "index", "inputs"}:
                return inner.strip(), f"on `{node.id}`'s own condition"
    return "item", "narrow `where` to the items worth a model call"
