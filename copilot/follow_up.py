"""Follow-up messages read into edit operations, with no model: "run it at 7 instead", "add a Slack alert if it
fails", "drop the email step", "retry the API call 5 times", "cap it at 20 C-ION per run".

Each rule reads one kind of change; what no rule reads is planned as new steps by the offline planner and grafted
after the draft's last node ("then translate it to Spanish and email it to ana@example.com"). A message nothing
can read gives no operations and a reply that says so, with examples: never a guess that edits the wrong node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from copilot import review_edits, when
from copilot.edits import (
    AddNode,
    Operation,
    RemoveNode,
    SetBudget,
    SetFlowField,
    SetTrigger,
    UpdateNode,
    node_ids,
)
from copilot.lexicon import fold, tokens
from copilot.offline import Catalog, plan, to_flow
from engine.dsl.validator import load_data
from engine.nodetypes.registry import Registry

EXTERNAL = frozenset({"net", "llm", "smtp"})  # capabilities of steps that call something outside the engine
_NUMBER = r"(\d+(?:\.\d+)?)"
_BUDGET = re.compile(
    rf"\b(?:budget|cap|limit|at most|no more than|spend(?:ing)? (?:at most|up to)|maximum|max)\b\D{{0,30}}{_NUMBER}"
    r"\s*(?:c-?ion|credits?|creditos|créditos)?(?:\s*(?:per|a|an|each|por)\s*(run|month|mes|execucao|ejecucion))?"
)
_RETRY = re.compile(r"\b(?:retry|retries|retried|tenta(?:r)? de novo|reintenta\w*)\b\D{0,30}(\d+)")
_TIMEOUT = re.compile(
    r"\b(?:timeout|time out|times out|tempo limite)\b\D{0,15}(\d+)\s*(s|sec|seconds?|m|min|minutes?)\b"
)
_MODEL = re.compile(r"\b(?:use|switch to|with|usa|utiliza)\s+(?:the\s+|o\s+|el\s+)?(?:model\s+)?([\w-]+)\s+model\b")
_MODEL_AFTER = re.compile(r"\b(?:model|modelo)\s+([\w-]+)\b")
_REMOVE = re.compile(
    r"\b(?:remove|delete|drop|take out|get rid of|skip|no need for|don't|do not|stop)\b"
    r"|\b(?:remov|apag|tira|quit|elimin|borr)\w*"
)
_RENAME = re.compile(r"\b(?:call it|name it|rename it(?: to)?|chama-o|llamalo)\s+['\"“”]?([^'\"“”]{2,80}?)['\"“”]?\s*$")
_AT_TIME = re.compile(r"\b(?:at|as|às|a las|a la)\s*\d{1,2}(?::\d{2})?\s*(?:am|pm|h)?\b|\b\d{1,2}\s*(?:am|pm)\b")
_TRIGGER_WORDS = re.compile(
    r"\b(run|runs|trigger|triggered|start|fire|schedule|roda|rodar|executa|ejecuta|corre|dispara)\b"
)
_CHANNEL = re.compile(r"(?<![\w&])#([\w-]+)")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_INSTEAD = re.compile(r"\b(instead|rather|em vez|en vez|en lugar|change|switch|move)\b")


@dataclass(frozen=True)
class Reading:
    """What a follow-up message asks for, as operations, and the sentence Jules answers with."""

    operations: tuple[Operation, ...]
    reply: str

    @property
    def understood(self) -> bool:
        return bool(self.operations)


def read(message: str, draft: str, registry: Registry, aliases: tuple[str, ...] = ("default",)) -> Reading:
    """The edit operations ``message`` asks of the YAML ``draft``."""
    doc: dict[str, Any] = yaml.safe_load(draft) or {}
    plain = fold(message).strip()
    for rule in (_rename, _review, _budget, _schedule, _retry, _timeout, _model, _channel, _recipient, _remove):
        found = rule(plain, message, doc, registry, aliases)
        if found is not None:
            return found
    return _add_steps(message, doc, registry)


# --- the rules: each returns a Reading, or None when the message is not its kind --------------------------------


_REVIEWS = (
    (
        "error_handling",
        re.compile(
            r"\b(error handling|handle (errors|failures)|make it (more )?(robust|reliable|resilient|safer)|harden"
            r"|tratamento de erros?|trata(r)? (os )?erros|manejo de errores|maneja(r)? errores)\b"
        ),
    ),
    (
        "cheaper",
        re.compile(
            r"\b(cheaper|less expensive|reduce (the )?costs?|save (credits|c-ion|money)|mais barato|mas barato"
            r"|economi\w*)\b"
        ),
    ),
    (
        "documented",
        re.compile(
            r"\b(document (it|the flow|the steps)|describe (it|the flow|each step)|add descriptions|documenta\w*)\b"
        ),
    ),
    ("shorter_prompts", re.compile(r"\b(optimi[sz]e|shorten|tighten|trim) (the |its |my )?prompts?\b")),
)


def _review(plain: str, _m: str, doc: dict[str, Any], registry: Registry, _a: tuple[str, ...]) -> Reading | None:
    """Jules's review as a proposal: error handling, cheaper alternatives, descriptions, shorter prompts."""
    kind = next((name for name, pattern in _REVIEWS if pattern.search(plain)), None)
    if kind is None:
        return None
    flow = load_data(doc, "<draft>", registry=registry)
    if kind == "error_handling":
        review = review_edits.error_handling(flow, doc, registry)
    else:
        review = getattr(review_edits, kind)(flow, registry)
    if not review.operations:
        nothing = {
            "error_handling": "The flow already handles errors the way I would: nothing to add.",
            "cheaper": "I found no cheaper way to do the same.",
            "documented": "There is nothing to document yet.",
            "shorter_prompts": "Its prompts are already tight: nothing to shorten.",
        }
        return Reading((), nothing[kind] + (" " + " ".join(review.reasons) if review.reasons else ""))
    return Reading(review.operations, "I suggest:\n" + "\n".join(f"- {r}" for r in review.reasons))


def _budget(plain: str, _m: str, _doc: dict[str, Any], _r: Registry, _a: tuple[str, ...]) -> Reading | None:
    match = _BUDGET.search(plain)
    if match is None or not re.search(r"c-?ion|credit|budget|spend|cost|gast", plain):
        return None
    amount, period = float(match.group(1)), match.group(2) or "run"
    current = dict(_doc.get("budget") or {})
    key = "max_cion_per_month" if period.startswith(("month", "mes")) else "max_cion_per_run"
    current[key] = amount
    op = SetBudget(
        max_cion_per_run=current.get("max_cion_per_run"), max_cion_per_month=current.get("max_cion_per_month")
    )
    per = "a month" if key.endswith("month") else "per run"
    return Reading((op,), f"I'll cap the flow at {amount:g} C-ION {per}: a run stops before a step would exceed it.")


def _schedule(plain: str, _m: str, doc: dict[str, Any], _r: Registry, _a: tuple[str, ...]) -> Reading | None:
    crons = [t for t in doc.get("triggers") or [] if t.get("type") == "cron"]
    stated = when.cron_of(plain)
    if stated is not None and stated.cron:
        zone = stated.timezone or (crons[0].get("timezone") if crons else None) or "UTC"
        trigger = {"type": "cron", "cron": stated.cron, "timezone": zone}
        others = [t for t in doc.get("triggers") or [] if t.get("type") not in ("cron", "manual")]
        return Reading(
            (SetTrigger(triggers=[trigger, *others]),),
            f"I'll run it on the schedule `{stated.cron}` ({zone}) instead of its current triggers.",
        )
    if crons and _AT_TIME.search(plain):  # "run it at 7 instead": the time changes, the days stay
        times = when.cron_of("every day " + plain)
        if times is None or not times.cron:
            return None
        minute, hour = times.cron.split()[:2]
        zone = when.zone_of(plain)
        changed = []
        for t in doc.get("triggers") or []:
            if t.get("type") == "cron":
                fields = str(t["cron"]).split()
                t = {**t, "cron": " ".join([minute, hour, *fields[2:]]), **({"timezone": zone} if zone else {})}
            changed.append(t)
        words = ", ".join(f"`{t['cron']}` ({t.get('timezone', 'UTC')})" for t in changed if t.get("type") == "cron")
        return Reading((SetTrigger(triggers=changed),), f"I'll keep the days and move the time: {words}.")
    if _TRIGGER_WORDS.search(plain):
        found = [t for t in when.triggers(plain) if t.type in ("webhook", "event")]
        if found:
            wanted: dict[str, Any] = {"type": found[0].type}
            if found[0].subject:
                wanted["subject"] = found[0].subject
            return Reading((SetTrigger(triggers=[wanted]),), f"I'll trigger it by {found[0].type} instead.")
        if when.is_manual(plain):
            return Reading((SetTrigger(triggers=[{"type": "manual"}]),), "I'll make it a flow you run by hand.")
    return None


def _retry(plain: str, _m: str, doc: dict[str, Any], registry: Registry, _a: tuple[str, ...]) -> Reading | None:
    match = _RETRY.search(plain)
    if match is None:
        return None
    attempts = min(int(match.group(1)) + (0 if "attempt" in plain else 1), 10)
    targets = _named(plain, doc, registry) or _external(doc, registry)
    if not targets:
        return Reading((), "There is no step that calls an outside service to retry.")
    retry = {"max_attempts": attempts, "backoff": "exponential", "initial_delay": "2s", "max_delay": "1m"}
    ops = tuple(UpdateNode(id=n, set={"retry": retry}) for n in targets)
    return Reading(ops, f"I'll retry {', '.join(targets)} up to {attempts} attempts, waiting 2 s, 4 s, … at most 1 m.")


def _timeout(plain: str, _m: str, doc: dict[str, Any], registry: Registry, _a: tuple[str, ...]) -> Reading | None:
    match = _TIMEOUT.search(plain)
    if match is None:
        return None
    value = f"{match.group(1)}{'m' if match.group(2).startswith('m') else 's'}"
    targets = _named(plain, doc, registry) or _external(doc, registry)
    if not targets:
        return Reading((), "There is no step that calls an outside service to time out.")
    ops = tuple(UpdateNode(id=n, set={"timeout": value}) for n in targets)
    return Reading(ops, f"I'll give {', '.join(targets)} a timeout of {value}.")


def _model(plain: str, _m: str, doc: dict[str, Any], registry: Registry, aliases: tuple[str, ...]) -> Reading | None:
    match = _MODEL.search(plain) or _MODEL_AFTER.search(plain)
    if match is None:
        return None
    alias = match.group(1)
    llm_nodes = [n["id"] for n in _nodes(doc) if str(n.get("type", "")).startswith("llm.")]
    if alias not in aliases:
        return Reading((), f"There is no model alias {alias!r}; the configured ones are: {', '.join(aliases)}.")
    targets = [n for n in (_named(plain, doc, registry) or llm_nodes) if n in llm_nodes]
    if not targets:
        return Reading((), "The flow has no AI step to change the model of.")
    ops = tuple(UpdateNode(id=n, set={"with.model": alias}) for n in targets)
    return Reading(ops, f"I'll use the `{alias}` model in {', '.join(targets)}.")


def _channel(plain: str, message: str, doc: dict[str, Any], registry: Registry, _a: tuple[str, ...]) -> Reading | None:
    channels = _CHANNEL.findall(message)
    slack = [n["id"] for n in _nodes(doc) if n.get("type") == "slack.post"]
    if not channels or not slack or not _INSTEAD.search(plain):
        return None
    targets = [n for n in (_named(plain, doc, registry) or slack) if n in slack]
    ops = tuple(UpdateNode(id=n, set={"with.channel": f"#{channels[0]}"}) for n in targets)
    return Reading(ops, f"I'll post to #{channels[0]} instead.")


def _recipient(plain: str, message: str, doc: dict[str, Any], _r: Registry, _a: tuple[str, ...]) -> Reading | None:
    emails = _EMAIL.findall(message)
    mails = [n["id"] for n in _nodes(doc) if n.get("type") == "email.send"]
    if not emails or not mails or not _INSTEAD.search(plain):
        return None
    ops = tuple(UpdateNode(id=n, set={"with.to": emails[0]}) for n in mails)
    return Reading(ops, f"I'll send the email to {emails[0]} instead.")


def _rename(_p: str, message: str, _doc: dict[str, Any], _r: Registry, _a: tuple[str, ...]) -> Reading | None:
    match = _RENAME.search(message.strip())
    if match is None:
        return None
    name = match.group(1).strip()
    return Reading((SetFlowField(field="name", value=name),), f"I'll name the flow “{name}”.")


def _remove(plain: str, _m: str, doc: dict[str, Any], registry: Registry, _a: tuple[str, ...]) -> Reading | None:
    if not _REMOVE.search(plain):
        return None
    targets = _named(plain, doc, registry)
    if not targets:
        listed = ", ".join(node_ids(doc)) or "none"
        return Reading((), f"Which step should I remove? Name one of the draft's nodes: {listed}.")
    return Reading(
        tuple(RemoveNode(id=n) for n in targets),
        f"I'll remove {', '.join(targets)}; the steps after it will follow what came before it.",
    )


def _add_steps(message: str, doc: dict[str, Any], registry: Registry) -> Reading:
    """New steps: the offline planner plans the message alone; its nodes are grafted after the draft's last node
    (its on_failure steps into the draft's on_failure), renamed where an id is taken."""
    planned: dict[str, Any] = yaml.safe_load(to_flow(plan(message, Catalog.of_types(registry)))) or {}
    new_nodes = [n for n in planned.get("nodes") or [] if not (n.get("type") == "log" and n.get("id") == "note")]
    failure = planned.get("on_failure") or []
    if not new_nodes and not failure:
        return Reading(
            (),
            "I could not turn that into a change. Try: “add a step that …”, “post it to #channel instead”, "
            "“run it every Monday at 9”, “remove the email step”, “retry the API call 3 times”, “cap it at 20 C-ION”.",
        )
    taken = set(node_ids(doc))
    renames = _renames([n["id"] for n in _walk(new_nodes + failure)], taken)
    last = (doc.get("nodes") or [{}])[-1].get("id")
    ops: list[Operation] = []
    for node in _renamed(new_nodes, renames):
        if not node.get("needs") and last is not None:
            node = _reads_from(node, last, doc, registry)
        ops.append(AddNode(node=node))
    ops += [AddNode(node=node, section="on_failure") for node in _renamed(failure, renames)]
    added = ", ".join(f"{op.node['id']} ({op.node['type']})" for op in ops if isinstance(op, AddNode))
    return Reading(tuple(ops), f"I'll add {added}.")


# --- helpers ----------------------------------------------------------------------------------------------------


def _walk(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for node in nodes:
        out.append(node)
        out += _walk(node.get("do") or [])
    return out


def _nodes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return _walk(list(doc.get("nodes") or []) + list(doc.get("on_failure") or []))


def _named(plain: str, doc: dict[str, Any], registry: Registry) -> list[str]:
    """The draft's nodes the message names: by id ("the call_api step"), else by what their type is called
    ("the email", "the Slack message"): the types the catalog ranks for the message, best first."""
    nodes = _nodes(doc)
    words = set(re.findall(r"[\w-]+", plain))
    by_id = [n["id"] for n in nodes if n["id"] in words or n["id"].replace("_", " ") in plain]
    if by_id:
        return by_id
    types = {str(n.get("type")) for n in nodes}
    catalog = Catalog.of_types(t for t in registry if t.name in types)
    ranked = catalog.rank(plain)
    if not ranked or not tokens(plain):
        return []
    best = ranked[0][1]
    return [n["id"] for n in nodes if n.get("type") == best]


def _external(doc: dict[str, Any], registry: Registry) -> list[str]:
    out = []
    for node in _nodes(doc):
        kind = str(node.get("type"))
        if kind in registry and registry.get(kind).capabilities & EXTERNAL:
            out.append(node["id"])
    return out


def _renames(ids: list[str], taken: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for node_id in ids:
        new, n = node_id, 2
        while new in taken:
            new, n = f"{node_id}_{n}", n + 1
        taken.add(new)
        if new != node_id:
            out[node_id] = new
    return out


def _renamed(nodes: list[dict[str, Any]], renames: dict[str, str]) -> list[dict[str, Any]]:
    if not renames:
        return nodes
    text = yaml.safe_dump(nodes, sort_keys=False, allow_unicode=True)
    for old, new in renames.items():
        text = re.sub(rf"(?<![\w.])(id: |nodes\.|- ){re.escape(old)}\b", rf"\g<1>{new}", text)
    return list(yaml.safe_load(text))


def _reads_from(node: dict[str, Any], source: str, doc: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """The first grafted node reads the draft's last node's output where the planner wrote the flow's input."""
    kind = next((str(n.get("type")) for n in _nodes(doc) if n.get("id") == source), "")
    field = {"http.request": ".body", "llm.complete": ".text", "llm.classify": ".label"}.get(kind, "")
    text = yaml.safe_dump(node, sort_keys=False, allow_unicode=True)
    for placeholder in ("{{ inputs }}", "{{ trigger.body }}", "{{ trigger.data }}"):
        text = text.replace(placeholder, f"{{{{ nodes.{source}.output{field} }}}}")
    return dict(yaml.safe_load(text))
