"""Error-handling advice for a flow, and applying the advice a person picks to the flow's YAML text.

Findings (each with the node, the field and the exact YAML to add):

- ``retry`` and ``timeout`` on nodes that reach outside the server: their type's ``capabilities`` name ``net``,
  ``llm`` or ``smtp`` (the registry's metadata, so extension types are judged the same way as built-ins);
- ``on_failure``: an alert when the flow has none (on the flow's own Slack/Discord webhook when it has one);
- ``approval`` before an irreversible action: a message whose recipient comes from the run's data (a customer's
  address, not one the author wrote down) or a write to a payment endpoint;
- ``budget``: ``max_cion_per_run`` sized from the forecast with headroom, when the flow has no per-run cap.

:func:`apply_advice` makes each finding's edits in the YAML text in place with :mod:`copilot.yamledit` (comments,
layout and key order of everything else are kept; the result is checked to read back as exactly the intended data
and to validate with ``load_flow``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from copilot.cost import EXPECTED_ITEMS
from copilot.yamledit import Edit, EditNotApplicable, Path, apply_edits, fragment
from engine.dsl.expression import has_template, parse
from engine.dsl.forecast import flow_forecast
from engine.dsl.model import AnyNode, ApprovalNode, Flow, ForeachNode, StepNode
from engine.errors import IonfluxError
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry

Kind = Literal["retry", "timeout", "on_failure", "approval", "budget"]

BUDGET_HEADROOM = 1.5  # real runs cost less than the forecast's upper bound, but prompts grow and loops vary
# Per kind of outside call: retries absorb rate limits and blips; a timeout stops a hung call holding a worker.
RETRY = {
    "llm": {"max_attempts": 3, "backoff": "exponential", "initial_delay": "5s", "max_delay": "1m"},
    "net": {"max_attempts": 3, "backoff": "exponential", "initial_delay": "2s", "max_delay": "30s"},
    "smtp": {"max_attempts": 3, "backoff": "exponential", "initial_delay": "10s", "max_delay": "2m"},
}
TIMEOUT = {"llm": "90s", "net": "30s", "smtp": "30s"}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# words in a URL or a type's name that mean money moves (charges, refunds, payouts): such writes cannot be undone
MONEY = re.compile(r"(?<![a-z])(?:pay|payments?|payouts?|charges?|refunds?|transfers?|invoices?|checkout)(?![a-z])")
RECIPIENT_FIELDS = ("to", "cc", "bcc", "channel", "recipient", "recipients", "phone", "number")
# expression roots that carry the run's data (as opposed to values the author wrote: literals, inputs, secrets)
DATA_ROOTS = frozenset({"trigger", "nodes", "item"})


class AdviceError(EditNotApplicable):
    """Raised when advice cannot be applied to a flow's text (it was made for another version of the flow, or the
    text uses YAML the editor cannot change safely, such as an alias shared by two nodes): the editor's
    :class:`~copilot.yamledit.EditNotApplicable` under advice's own code."""

    code = "copilot.advice_not_applicable"


@dataclass(frozen=True, slots=True)
class Advice:
    """A finding: where (``node_id``, ``None`` for the flow itself; ``field``), the exact YAML, and why."""

    kind: Kind
    node_id: str | None
    field: str
    fragment: str
    why: str
    edits: tuple[Edit, ...]


# --- finding ------------------------------------------------------------------------------------------------------


def advise(
    flow: Flow, registry: Registry | None = None, *, alert_to: str = "ops@example.com", items: int = EXPECTED_ITEMS
) -> list[Advice]:
    """Every piece of error-handling advice for ``flow``, flow-level first, then node by node in document order.

    ``alert_to`` receives the failure alert when the flow has no Slack or Discord webhook to reuse.
    """
    types = registry or builtin_registry()
    paths = node_paths(flow)
    found = [*_on_failure(flow, alert_to), *_budget(flow, types, items)]
    for node, path in _main_nodes(flow):
        found.extend(_resilience(node, path, types))
    found.extend(_approvals(flow, paths, types))
    return found


def node_paths(flow: Flow) -> dict[str, Path]:
    """Where each node sits in the document: ``("nodes", 2)``, ``("nodes", 0, "do", 1)``, ``("on_failure", 0)``."""
    out: dict[str, Path] = {}
    for key, nodes in (("nodes", flow.nodes), ("on_failure", flow.on_failure)):
        for node, path in _walk(nodes, (key,)):
            out[node.id] = path
    return out


def _walk(nodes: Sequence[AnyNode], prefix: Path) -> Iterator[tuple[AnyNode, Path]]:
    for i, node in enumerate(nodes):
        yield node, (*prefix, i)
        if isinstance(node, ForeachNode):
            yield from _walk(node.do, (*prefix, i, "do"))


def _main_nodes(flow: Flow) -> Iterator[tuple[AnyNode, Path]]:
    return _walk(flow.nodes, ("nodes",))


def _external(node: AnyNode, registry: Registry) -> str | None:
    """The kind of outside call a node makes (``llm``, ``net``, ``smtp``), from its type's capabilities."""
    if not isinstance(node, StepNode) or node.type not in registry:
        return None
    capabilities = registry.get(node.type).capabilities
    return next((kind for kind in ("llm", "net", "smtp") if kind in capabilities), None)


def _resilience(node: AnyNode, path: Path, registry: Registry) -> Iterator[Advice]:
    kind = _external(node, registry)
    if kind is None:
        return
    if node.retry is None:
        edits = [Edit(path, "retry", RETRY[kind])]
        why = f"`{node.id}` ({node.type}) calls outside the server, where rate limits and short outages are common"
        if isinstance(node, StepNode) and _unsafe_to_repeat(node):
            # a retried write may be applied twice; the step's idempotency key lets the server drop the repeat
            edits.append(Edit((*path, "with"), "idempotency_key", True))
            why += "; `idempotency_key: true` makes a repeated write safe"
        yield Advice("retry", node.id, "retry", fragment(edits), why + ".", tuple(edits))
    if node.timeout is None:
        edit = Edit(path, "timeout", TIMEOUT[kind])
        why = f"Without a timeout a hung call to {_what(kind)} holds a worker until the engine's own limit."
        yield Advice("timeout", node.id, "timeout", fragment([edit]), why, (edit,))


def _what(kind: str) -> str:
    return {"llm": "the model provider", "net": "the remote service", "smtp": "the mail server"}[kind]


def _unsafe_to_repeat(node: StepNode) -> bool:
    method = node.with_.get("method", "GET")
    return (
        node.type == "http.request"
        and isinstance(method, str)
        and method.upper() in WRITE_METHODS
        and not node.with_.get("idempotency_key")
    )


def _on_failure(flow: Flow, alert_to: str) -> Iterator[Advice]:
    if flow.on_failure:
        return
    alert = _alert_node(flow, alert_to)
    edit = Edit((), "on_failure", [alert])
    service = {"slack.post": "the flow's Slack webhook", "discord.post": "the flow's Discord webhook"}
    where = service.get(alert["type"], alert_to)
    why = f"Nobody hears about a failed run today; this alerts {where} with the error and a link to the run."
    yield Advice("on_failure", None, "on_failure", fragment([edit]), why, (edit,))


def _alert_node(flow: Flow, alert_to: str) -> dict[str, Any]:
    """An alert where the flow already posts (its Slack or Discord webhook or bot token: secrets and hosts already
    granted), else an email to ``alert_to``."""
    ids = {n.id for n, _ in _main_nodes(flow)}
    node_id = _free_id("alert", ids)
    text = f"{flow.name or flow.id} failed: {{{{ run.error }}}} {{{{ run.url }}}}"
    for node, _ in _main_nodes(flow):
        if not isinstance(node, StepNode) or node.type not in ("slack.post", "discord.post"):
            continue
        # the destination fields, unless they come from the run's data (not known when the run has failed)
        where = {k: v for k, v in node.with_.items() if k in ("webhook_url", "token", "channel")}
        if not where or any(_from_run_data(v) for v in where.values()):
            continue
        field = "text" if node.type == "slack.post" else "content"
        alert: dict[str, Any] = {"id": node_id, "type": node.type, "with": {**where, field: text}}
        if node.permissions is not None:
            alert["permissions"] = node.permissions.model_dump(mode="json", exclude_defaults=True)
        return alert
    subject = f"{flow.name or flow.id} failed"
    return {"id": node_id, "type": "email.send", "with": {"to": alert_to, "subject": subject, "body": text}}


def _budget(flow: Flow, registry: Registry, items: int) -> Iterator[Advice]:
    if flow.budget is not None and flow.budget.max_cion_per_run is not None:
        return
    total = flow_forecast(flow, registry)
    per_run = total.fixed_cion + total.per_item_cion * items
    cap = nice_ceiling(per_run * BUDGET_HEADROOM)
    if flow.budget is None:
        edit = Edit((), "budget", {"max_cion_per_run": cap})
    else:  # keep the monthly cap the author set, add the per-run one beside it
        edit = Edit(("budget",), "max_cion_per_run", cap)
    loop = f", {items} foreach items assumed" if total.per_item_cion else ""
    why = (
        f"The forecast is {per_run:g} C-ION per run{loop}; a cap at {BUDGET_HEADROOM:g}x stops a runaway loop "
        "or prompt before it spends more."
    )
    yield Advice("budget", None, "budget.max_cion_per_run", fragment([edit]), why, (edit,))


def nice_ceiling(value: float) -> float:
    """``value`` rounded up to two significant digits (3.14 -> 3.2, 147 -> 150): a cap a person can read."""
    if value <= 0:
        return 0.1
    step = 10 ** (math.floor(math.log10(value)) - 1)
    return float(f"{math.ceil(round(value / step, 9)) * step:.10g}")


# --- approvals ----------------------------------------------------------------------------------------------------


def irreversible(node: AnyNode, registry: Registry) -> tuple[str, str] | None:
    """Why running ``node`` cannot be undone (a message to someone taken from the run's data, money moving) and
    the field that shows it, or None. Judged from the type's capabilities and the node's own fields, so extension
    types count too."""
    if not isinstance(node, StepNode) or node.type not in registry:
        return None
    node_type = registry.get(node.type)
    sends = bool({"smtp", "net"} & node_type.capabilities) and node_type.family == "messaging"
    if sends:
        for field in RECIPIENT_FIELDS:
            value = node.with_.get(field)
            if _from_run_data(value):
                return "sends to recipients taken from the run's data", f"{field}: {_short(value)}"
    if MONEY.search(node_type.name) or MONEY.search(node_type.summary.lower()):
        return "moves money", f"type: {node.type}"
    method = node.with_.get("method", "GET")
    url = node.with_.get("url")
    if "net" in node_type.capabilities and isinstance(method, str) and method.upper() in WRITE_METHODS:
        text = url.lower() if isinstance(url, str) else ""
        if MONEY.search(text.split("?")[0]):
            return f"sends a {method.upper()} to a payment endpoint", f"url: {_short(url)}"
    return None


def _from_run_data(value: Any) -> bool:
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if isinstance(v, str) and has_template(v):
            try:
                roots = {r.root for r in parse(v).references}
            except IonfluxError:
                return True  # cannot tell where it comes from: treat it as data
            if roots & DATA_ROOTS:
                return True
    return False


def _short(value: Any, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _approved_before(flow: Flow, top: AnyNode) -> bool:
    """True when an approval node is among ``top``'s ancestors (someone already signs off)."""
    by_id = {n.id: n for n in flow.nodes}
    seen: set[str] = set()
    todo = list(top.needs)
    while todo:
        current = todo.pop()
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        if isinstance(by_id[current], ApprovalNode):
            return True
        todo.extend(by_id[current].needs)
    return False


def _approvals(flow: Flow, paths: Mapping[str, Path], registry: Registry) -> Iterator[Advice]:
    taken = set(paths)
    for index, top in enumerate(flow.nodes):
        if isinstance(top, ApprovalNode) or _approved_before(flow, top):
            continue
        inner = [top] + ([n for n, _ in _walk(top.do, ())] if isinstance(top, ForeachNode) else [])
        reason = next(((n, r) for n in inner if (r := irreversible(n, registry)) is not None), None)
        if reason is None:
            continue
        node, (because, detail) = reason
        approval_id = _free_id(f"approve_{top.id}", taken)
        taken.add(approval_id)
        where = f"`{node.id}`" if node is top else f"`{node.id}` (in the loop `{top.id}`)"
        approval: dict[str, Any] = {"id": approval_id, "type": "approval"}
        if top.needs:
            approval["needs"] = list(top.needs)
        if top.if_ is not None:
            approval["if"] = top.if_  # ask only when the step would run
        # the message names no expression: `item` or a skipped node's output would not resolve in the approval
        approval["with"] = {"message": f"Let {where} run? It {because}."}
        edits = (
            Edit(("nodes", index), "needs", [*top.needs, approval_id]),
            Edit((), "nodes", approval, insert=index),
        )
        why = f"{where} {because} ({detail}): once it runs it cannot be undone, so a person approves it first."
        yield Advice("approval", top.id, "needs", fragment(edits), why[0].upper() + why[1:], edits)


def _free_id(wanted: str, taken: set[str]) -> str:
    base = wanted[:60]
    return next(f"{base}{i or ''}" for i in range(len(taken) + 2) if f"{base}{i or ''}" not in taken)


# --- applying -----------------------------------------------------------------------------------------------------


def apply_advice(text: str, advice: Iterable[Advice], registry: Registry | None = None, file: str = "<flow>") -> str:
    """``text`` with the chosen advice applied; everything else (comments, order, layout) stays as written.

    Raises :class:`AdviceError` when the advice does not fit this text, and ``FlowValidationError`` if the result
    would not validate (neither should happen for advice made from this same text).
    """
    try:
        return apply_edits(text, [edit for a in advice for edit in a.edits], registry, file)
    except EditNotApplicable as e:
        raise AdviceError(e.message, hint=e.hint) from e
