"""C-ION forecasts of a flow: fixed per run, plus per foreach item."""

from __future__ import annotations

from engine.dsl.forecast import flow_forecast
from engine.dsl.validator import load_flow
from engine.nodetypes.builtin import builtin_registry

FLOW = """\
fluxgraph: 1
id: f
nodes:
  - {id: fetch, type: http.request, with: {url: "https://a.example.com"}, permissions: {net: [a.example.com]}}
  - id: each
    type: foreach
    needs: [fetch]
    items: "{{ nodes.fetch.output.body }}"
    do:
      - {id: write, type: llm.complete, with: {prompt: "{{ item }}", max_tokens: 500}}
  - {id: note, type: llm.complete, with: {prompt: hi}, permissions: {max_tokens: 100}}
on_failure:
  - {id: alert, type: log, with: {message: "{{ run.error }}"}}
"""


def test_forecast_splits_fixed_and_per_item_costs_and_applies_caps() -> None:
    forecast = flow_forecast(load_flow(FLOW), builtin_registry())
    by_id = {n.node_id: n for n in forecast.nodes}
    assert set(by_id) == {"fetch", "each", "write", "note"}  # on_failure nodes are not part of a normal run
    assert by_id["write"].per_item and not by_id["note"].per_item
    assert by_id["write"].estimate.cion == 2.0  # (500 + 500 prompt allowance) tokens x 2 C-ION/1k
    assert by_id["note"].estimate.cion == 1.2  # capped by permissions.max_tokens: (100 + 500) x 2/1k
    assert forecast.fixed_cion == 1.25 and forecast.per_item_cion == 2.0
