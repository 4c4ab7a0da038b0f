"""Jules's cheaper alternatives: a cheaper model alias, a lower max_tokens for short outputs, a filter before a
loop that calls a model; every saving measured by re-forecasting the changed flow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from copilot.cost import forecast
from copilot.savings import (
    Change,
    ModelPrice,
    PricingError,
    Saving,
    alias_prices,
    engine_prices,
    priced_registry,
    suggest_savings,
)
from engine.dsl.validator import load_data, load_flow
from engine.nodetypes.builtin import builtin_registry
from engine.steps.llm import DEFAULT_MODELS, ModelRoute

NOW = datetime(2026, 3, 2, tzinfo=UTC)
REGISTRY = builtin_registry()

WEEKLY = """\
fluxgraph: 1
id: weekly
triggers: [{type: cron, cron: "0 9 * * MON", timezone: Europe/Lisbon}]
nodes:
  - id: fetch
    type: http.request
    with: {url: "https://shop.example.com/orders"}
    permissions: {net: [shop.example.com]}
  - id: summary
    type: llm.complete
    needs: [fetch]
    with: {model: smart, prompt: "Summarise in at most 100 words: {{ nodes.fetch.output.body }}", max_tokens: 800}
  - id: kind
    type: llm.classify
    needs: [fetch]
    with: {model: cheap, input: "{{ nodes.fetch.output.body }}", labels: [big, small], max_tokens: 200}
"""


def by_node(savings: list[Saving]) -> dict[tuple[str, str], Saving]:
    return {(s.node_id, s.changes[0].field): s for s in savings}


def test_a_cheaper_alias_and_shorter_outputs_with_savings_from_a_re_forecast() -> None:
    # Given a weekly flow on the `smart` model with generous max_tokens
    flow = load_flow(WEEKLY)
    base = forecast(flow, REGISTRY, NOW)
    # When Jules looks for savings
    found = by_node(suggest_savings(flow, REGISTRY, NOW))
    # Then the summary moves to the cheapest alias, and the saving is the difference of the two forecasts
    model = found["summary", "with.model"]
    assert model.changes == (Change("summary", "with.model", "cheap"),)
    changed = load_flow(WEEKLY.replace("model: smart", "model: cheap"))
    assert (
        model.per_run == round(base.per_run - forecast(changed, REGISTRY, NOW).per_run, 4) == 18.85
    )  # 1300 tokens x (15 - 0.5)/1k
    assert base.runs_per_month == 5 and model.per_month == round(model.per_run * 5, 4)  # Mondays from 2 March
    # and the outputs that are short by construction get a max_tokens that fits them
    assert found["summary", "with.max_tokens"].changes[0].value == 200  # 100 words x 1.35 x 1.25 -> 200
    assert "at most 100 words" in found["summary", "with.max_tokens"].why
    label = found["kind", "with.max_tokens"]
    assert label.changes[0].value == 48 and label.per_run == round((200 - 48) / 1000 * 0.5, 4)
    # biggest saving first; the cheap classify has no cheaper model to move to
    assert next(iter(found)) == ("summary", "with.model") and ("kind", "with.model") not in found


def test_configured_aliases_are_priced_from_their_routes_and_the_price_table() -> None:
    # Given the operator's routes: one with its own per-token prices, two the price table knows
    routes = {
        "default": ModelRoute("openai/gpt-4o-mini"),
        "local": ModelRoute("openai/smollm2", input_cost_per_token=0.0, output_cost_per_token=0.0),
        "smart": ModelRoute("openai/gpt-4o"),
    }
    table = {"openai/gpt-4o-mini": (0.15e-6, 0.6e-6), "openai/gpt-4o": (2.5e-6, 10e-6)}
    # When they are priced (C-ION per 1k tokens: USD per token x 1000 tokens x 1000 C-ION per USD)
    prices = alias_prices(routes, table.get)
    # Then each alias has its prompt and completion price
    assert prices["smart"] == ModelPrice(2.5, 10.0, "openai/gpt-4o")
    assert prices["local"] == ModelPrice(0.0, 0.0, "openai/smollm2")
    # and the forecast prices prompt and completion apart: 500 prompt tokens allowance + max_tokens
    priced = priced_registry(REGISTRY, prices)
    flow = load_flow(WEEKLY, registry=priced)
    summary = next(n for n in forecast_nodes(flow, priced) if n.node_id == "summary")
    assert summary.estimate.cion == round((500 * 2.5 + 800 * 10.0) / 1000, 4)
    # When savings are measured with these prices, the free local model is the cheapest
    found = by_node(suggest_savings(flow, REGISTRY, NOW, prices=prices))
    assert found["summary", "with.model"].changes[0].value == "local"
    assert found["summary", "with.model"].per_run == 9.25


def forecast_nodes(flow: Any, registry: Any) -> Any:
    from engine.dsl.forecast import flow_forecast

    return flow_forecast(flow, registry).nodes


def test_an_alias_nobody_can_price_is_refused_with_the_fix() -> None:
    with pytest.raises(PricingError, match="'mystery' routes to 'acme/unknown'") as e:
        alias_prices({"mystery": ModelRoute("acme/unknown")}, lambda model: None)
    assert "input_cost_per_token" in e.value.hint


def test_the_default_aliases_are_priced_from_litellms_table() -> None:
    # litellm's bundled table (the one the engine meters real calls with)
    prices = alias_prices(DEFAULT_MODELS)
    assert prices["smart"].input_cion_per_1k > prices["default"].input_cion_per_1k > 0
    assert prices["default"] == prices["cheap"]  # both route to gpt-4o-mini out of the box
    flow = load_flow(WEEKLY)
    found = by_node(suggest_savings(flow, REGISTRY, NOW, prices=prices))
    assert found["summary", "with.model"].changes[0].value in ("cheap", "default")
    assert ("kind", "with.model") not in found  # nothing is cheaper than gpt-4o-mini here


LOOP: dict[str, Any] = {
    "fluxgraph": 1,
    "id": "tickets",
    "nodes": [
        {
            "id": "fetch",
            "type": "http.request",
            "with": {"url": "https://help.example.com/tickets"},
            "permissions": {"net": ["help.example.com"]},
        },
        {
            "id": "each",
            "type": "foreach",
            "needs": ["fetch"],
            "items": "{{ nodes.fetch.output.body.tickets }}",
            "do": [
                {
                    "id": "reply",
                    "type": "llm.complete",
                    "if": "{{ item.status == 'open' }}",
                    "with": {"model": "cheap", "prompt": "Draft a reply to {{ item.text }}", "max_tokens": 300},
                }
            ],
        },
    ],
}


def test_a_filter_before_a_loop_that_calls_a_model() -> None:
    # Given a loop over fetched tickets whose model step only runs for open ones
    flow = load_data(LOOP)
    # When Jules looks for savings
    (saving,) = suggest_savings(flow, REGISTRY, NOW)
    # Then it proposes a data.filter on that same condition ahead of the loop, and the loop reads its output
    assert saving.node_id == "each"
    (new,) = saving.new_nodes
    assert new == {
        "id": "each_filter",
        "type": "data.filter",
        "needs": ["fetch"],
        "with": {"items": "{{ nodes.fetch.output.body.tickets }}", "where": "item.status == 'open'"},
    }
    assert saving.changes == (
        Change("each", "items", "{{ nodes.each_filter.output }}"),
        Change("each", "needs", ["fetch", "each_filter"]),
    )
    # and the saving is half the items' model calls (the stated assumption) less the filter's own cost
    per_item = (300 + 500) / 1000 * 0.5
    assert saving.per_run == round(per_item * 10 * 0.5 - 0.01, 4) and saving.per_month is None
    assert "50% of 10 items" in saving.why


def test_no_filter_when_the_loop_already_reads_a_narrowed_list() -> None:
    data = {**LOOP, "nodes": [*LOOP["nodes"]]}
    data["nodes"].insert(
        1,
        {
            "id": "open_only",
            "type": "data.filter",
            "needs": ["fetch"],
            "with": {"items": "{{ nodes.fetch.output.body.tickets }}", "where": "item.status == 'open'"},
        },
    )
    data["nodes"][2] = {**data["nodes"][2], "needs": ["open_only"], "items": "{{ nodes.open_only.output }}"}
    assert suggest_savings(load_data(data), REGISTRY, NOW) == []


def test_engine_prices_are_the_forecast_table() -> None:
    assert engine_prices()["cheap"] == ModelPrice(0.5, 0.5)
