"""Planning a flow from a sentence, as the CLI and the evaluations call it: the offline planner today, the model
planners (litellm + instructor, with the validator's repair loop) next; each answer says which planner gave it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from copilot.cost import forecast
from copilot.offline import Catalog, plan, to_flow
from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import load_flow
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry

# outside services a request may name as webhook senders (their webhooks have documented signature styles)
SENDERS = ("stripe", "github", "shopify", "typeform", "tally", "woocommerce", "gumroad", "calendly", "paypal")


@dataclass(frozen=True)
class Draft:
    yaml: str
    valid: bool
    problems: str  # the validator's words when not valid
    planner: str
    latency_ms: float
    cost: str = ""  # the forecast in words (valid flows only)


@cache
def _catalog(registry: Registry) -> Catalog:
    return Catalog.of_types(registry)


def draft(text: str, *, flow_id: str = "planned-flow", registry: Registry | None = None) -> Draft:
    """A FluxGraph flow for ``text`` from the offline planner, checked by the validator."""
    started = time.perf_counter()
    types = registry or builtin_registry()
    document = to_flow(plan(text, _catalog(types), SENDERS), flow_id)
    try:
        flow = load_flow(document, "<planned>", registry=types)
    except FlowValidationError as e:
        return Draft(document, False, str(e), "offline", (time.perf_counter() - started) * 1000)
    cost = forecast(flow, types, datetime.now(UTC)).describe()
    return Draft(document, True, "", "offline", (time.perf_counter() - started) * 1000, cost)
