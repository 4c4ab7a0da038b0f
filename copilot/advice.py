"""Error-handling advice for a flow, and applying the advice a person picks to the flow's YAML text.

Findings (each with the node, the field and the exact YAML to add):

- ``retry`` and ``timeout`` on nodes that reach outside the server: their type's ``capabilities`` name ``net``,
  ``llm`` or ``smtp`` (the registry's metadata, so extension types are judged the same way as built-ins);
- ``on_failure``: an alert when the flow has none (on the flow's own Slack/Discord webhook when it has one);
- ``approval`` before an irreversible action: a message whose recipient comes from the run's data (a customer's
  address, not one the author wrote down) or a write to a payment endpoint;
- ``budget``: ``max_cion_per_run`` sized from the forecast with headroom, when the flow has no per-run cap.

:func:`apply_advice` edits the YAML text in place (comments, layout and key order of everything else are kept),
then checks that the text reads back as exactly the intended data and still validates with ``load_flow``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from copilot.cost import EXPECTED_ITEMS
from engine.dsl.canonical import YamlDumper
from engine.dsl.expression import has_template, parse
from engine.dsl.forecast import flow_forecast
from engine.dsl.model import AnyNode, ApprovalNode, Flow, ForeachNode, StepNode
from engine.dsl.source import parse_yaml, plain_scalar
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry

Path = tuple[str | int, ...]
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


class AdviceError(IonfluxError):
    """Raised when advice cannot be applied to a flow's text (it was made for another version of the flow, or the
    text uses YAML the editor cannot change safely, such as an alias shared by two nodes)."""

    code = "copilot.advice_not_applicable"


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to a YAML document: set ``key`` to ``value`` in the mapping at ``path`` (``()`` is the flow),
    or, with ``insert``, put ``value`` into the list ``key`` of that mapping at that index. A new key goes after
    the first of the keys in ``after`` the mapping has (else at its end)."""

    path: Path
    key: str
    value: Any
    insert: int | None = None
    after: tuple[str, ...] = ()


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
        yield Advice("retry", node.id, "retry", _fragment(edits), why + ".", tuple(edits))
    if node.timeout is None:
        edit = Edit(path, "timeout", TIMEOUT[kind])
        why = f"Without a timeout a hung call to {_what(kind)} holds a worker until the engine's own limit."
        yield Advice("timeout", node.id, "timeout", _fragment([edit]), why, (edit,))


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
    yield Advice("on_failure", None, "on_failure", _fragment([edit]), why, (edit,))


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
    yield Advice("budget", None, "budget.max_cion_per_run", _fragment([edit]), why, (edit,))


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
        yield Advice("approval", top.id, "needs", _fragment(edits), why[0].upper() + why[1:], edits)


def _free_id(wanted: str, taken: set[str]) -> str:
    base = wanted[:60]
    return next(f"{base}{i or ''}" for i in range(len(taken) + 2) if f"{base}{i or ''}" not in taken)


# --- rendering ----------------------------------------------------------------------------------------------------


class _Block(dict[str, Any]):
    """A mapping written in block style however small: a ``key: value`` entry, a whole node."""


class _Dumper(YamlDumper):
    """``ionflux fmt``'s dumper (same quoting and line style), with :class:`_Block` mappings kept in block style."""


def _represent_block(dumper: yaml.SafeDumper, value: _Block) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=False)


_Dumper.add_representer(_Block, _represent_block)


def _dump(value: Any) -> str:
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1 << 30
    )


def _entry(key: str, value: Any) -> str:
    """``key: value`` as block YAML; a node (a mapping with an ``id``) in block style too."""
    return _dump(_Block({key: _as_nodes(value) if key in ("nodes", "on_failure", "do") else value}))


def _as_nodes(value: Any) -> Any:
    if isinstance(value, list):
        return [_Block(v) if isinstance(v, dict) else v for v in value]
    return _Block(value) if isinstance(value, dict) else value


def _fragment(edits: Iterable[Edit]) -> str:
    """The edits as the YAML a person would paste: appended nodes as list items, the rest as ``key: value``."""
    parts = []
    for edit in edits:
        where = _describe_path(edit.path)
        if edit.insert is not None:
            parts.append(
                f"# new item {edit.insert} of {where + '.' if where else ''}{edit.key}:\n"
                + _dump([_as_nodes(edit.value)]).rstrip()
            )
        else:
            parts.append((f"# in {where}:\n" if where else "") + _entry(edit.key, edit.value).rstrip())
    return "\n".join(parts)


def _describe_path(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


# --- applying -----------------------------------------------------------------------------------------------------


def apply_advice(text: str, advice: Iterable[Advice], registry: Registry | None = None, file: str = "<flow>") -> str:
    """``text`` with the chosen advice applied; everything else (comments, order, layout) stays as written.

    Raises :class:`AdviceError` when the advice does not fit this text, and ``FlowValidationError`` if the result
    would not validate (neither should happen for advice made from this same text).
    """
    return apply_edits(text, [edit for a in advice for edit in a.edits], registry, file)


def apply_edits(text: str, edits: Sequence[Edit], registry: Registry | None = None, file: str = "<flow>") -> str:
    """``text`` with ``edits`` made in place, checked to read back as exactly the intended data and to validate."""
    expected = copy.deepcopy(parse_yaml(text, file).data)
    # Paths are indices into the document as it was: set fields first, then insert list items from the last
    # index back, so no edit moves what a later one points at.
    inserts = sorted((e for e in edits if e.insert is not None), key=lambda e: -(e.insert or 0))
    for edit in [*(e for e in edits if e.insert is None), *inserts]:
        _edit_data(expected, edit, file)
        text = _edit_text(text, edit, file)
    got = parse_yaml(text, file).data
    if got != expected:
        raise AdviceError(
            f"{file}: editing the YAML text in place changed more than the advice asked for",
            hint="apply the advice by hand from its fragment, or run `ionflux fmt` on the flow and try again",
        )
    load_flow(text, file, registry=registry)
    return text


def _edit_data(data: Any, edit: Edit, file: str) -> None:
    target = data
    for part in edit.path:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            raise _missing(edit, file) from None
    if not isinstance(target, dict):
        raise _missing(edit, file)
    if edit.insert is not None:
        target.setdefault(edit.key, []).insert(edit.insert, copy.deepcopy(edit.value))
    else:
        target[edit.key] = copy.deepcopy(edit.value)


def _missing(edit: Edit, file: str) -> AdviceError:
    return AdviceError(
        f"{file}: there is no mapping at {_describe_path(edit.path) or 'the top level'} to set `{edit.key}` in",
        hint="the advice was made for another version of this flow: ask for advice on the current text",
    )


def _edit_text(text: str, edit: Edit, file: str) -> str:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    mapping = _find(root, edit.path)
    if not isinstance(mapping, yaml.MappingNode):
        raise _missing(edit, file)
    pair = next(((k, v) for k, v in mapping.value if k.value == edit.key), None)
    if edit.insert is not None and pair is not None:
        if not isinstance(pair[1], yaml.SequenceNode):
            raise _missing(edit, file)
        return _insert_item(text, pair[1], edit.insert, edit.value)
    value = [edit.value] if edit.insert is not None else edit.value
    if mapping.flow_style:
        return _set_in_flow(text, mapping, pair, edit.key, value)
    keys = {k.value: v for k, v in mapping.value}
    anchor = next((keys[k] for k in edit.after if k in keys), mapping)
    return _set_in_block(text, mapping, pair, edit.key, value, anchor)


def _find(node: yaml.Node | None, path: Path) -> yaml.Node | None:
    for part in path:
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode) and part < len(node.value):
            node = node.value[part]
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        else:
            return None
    return node


def _content_end(text: str, node: yaml.Node) -> int:
    """The index just after the last character of ``node``'s own text (a block collection's end mark lies after
    the blank lines and comments that follow it; a block scalar's after its final line breaks)."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _content_end(text, last[1] if isinstance(node, yaml.MappingNode) else last)
    end = node.end_mark.index
    while end > node.start_mark.index and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def _line_end(text: str, index: int) -> int:
    found = text.find("\n", index)
    return len(text) if found == -1 else found


def _indented(lines: str, column: int) -> str:
    """Multi-line YAML placed at ``column``: the first line where the cursor is, the rest indented to it."""
    return ("\n" + " " * column).join(lines.rstrip("\n").split("\n"))


def _set_in_block(
    text: str,
    mapping: yaml.MappingNode,
    pair: tuple[yaml.Node, yaml.Node] | None,
    key: str,
    value: Any,
    anchor: yaml.Node,
) -> str:
    """Replace ``key``'s entry, or add it after the entry whose value is ``anchor`` (the mapping: at its end)."""
    column: int = mapping.value[0][0].start_mark.column
    lines = _indented(_entry(key, value), column)
    if pair is not None:  # replace the whole entry, from its key to the end of its value's last line
        start, end = pair[0].start_mark.index, _line_end(text, _content_end(text, pair[1]))
        return text[:start] + lines + text[end:]
    at = _line_end(text, _content_end(text, anchor))
    # a new top-level key in a document laid out in sections (blank lines between) becomes a section too
    gap = "\n" if column == 0 and anchor is mapping and "\n\n" in text else ""
    return text[:at] + "\n" + gap + " " * column + lines + text[at:]


def _set_in_flow(
    text: str, mapping: yaml.MappingNode, pair: tuple[yaml.Node, yaml.Node] | None, key: str, value: Any
) -> str:
    entry = f"{key}: {flow_yaml(value)}"
    if pair is not None:
        return text[: pair[0].start_mark.index] + entry + text[pair[1].end_mark.index :]
    if not mapping.value:  # `{}`
        at = mapping.start_mark.index + 1
        return text[:at] + entry + text[at:]
    at = mapping.value[-1][1].end_mark.index
    return text[:at] + ", " + entry + text[at:]


def _insert_item(text: str, sequence: yaml.SequenceNode, index: int, value: Any) -> str:
    """``value`` as item ``index`` of a block list: on the lines before the item now there (and a blank line after
    it when the items are set apart by blank lines), or after the last item."""
    if sequence.flow_style or not sequence.value:
        raise AdviceError(
            "cannot add a node to a list written on one line ([...])",
            hint="write the list one item per line (`ionflux fmt` does), then apply the advice again",
        )
    dash = _dash(text, sequence.value[min(index, len(sequence.value) - 1)])
    line_start = text.rfind("\n", 0, dash) + 1
    column = dash - line_start
    item = " " * column + _indented(_dump([_as_nodes(value)]), column)
    if index < len(sequence.value):
        spaced = text[max(0, line_start - 2) : line_start] == "\n\n"
        return text[:line_start] + item + "\n" + ("\n" if spaced else "") + text[line_start:]
    at = _line_end(text, _content_end(text, sequence))
    return text[:at] + "\n" + item + text[at:]


def _dash(text: str, item: yaml.Node) -> int:
    """The index of the ``-`` that starts a block list item."""
    return text.rindex("-", 0, item.start_mark.index)


_PLAIN = re.compile(r"^[A-Za-z0-9_./@+-][A-Za-z0-9_ ./@+-]*$")


def flow_yaml(value: Any) -> str:
    """``value`` as YAML on one line (flow style), for mappings written ``{a: 1, b: [x, y]}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {flow_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow_yaml(v) for v in value) + "]"
    if isinstance(value, str):
        plain = _PLAIN.match(value) and value == value.strip() and isinstance(plain_scalar(value), str)
        return value if plain else yaml_quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def yaml_quote(value: str) -> str:
    """A double-quoted YAML scalar: JSON's string syntax is valid YAML and escapes everything that needs it."""
    return str(json.dumps(value, ensure_ascii=False))
