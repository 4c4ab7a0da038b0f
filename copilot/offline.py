"""Jules's offline planner: a FluxGraph flow from a sentence in milliseconds, with no model and no network.

It reads the request the way a careful engineer sketches a flow: the triggers (copilot.when); the actions, one per
clause, each matched against the catalog (the node types' names, summaries and keywords; Portuguese and Spanish
carried to English first); loops ("for each …"), approvals, and what to do when something fails; the values
the text states (URLs and their hosts, email addresses, channels, labels, subjects, modules, durations). Then it
writes the flow and checks it with the validator; what it cannot fill in (the code of a code step, the URL of a
service the text only names) is left as a clearly marked placeholder in a flow that still validates. (A tool graph
over another catalog, TaskBench's, is copilot.tool_planner's; both read requests against copilot.catalog.)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml

from copilot import thesaurus, when
from copilot.catalog import URL, cut
from copilot.catalog import Catalog as Catalog  # where the flow planner's callers have always found it
from copilot.lexicon import fold

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CHANNEL = re.compile(r"(?<![\w&])#([\w-]+)")
_MODULE = re.compile(r"\b([a-z][a-z0-9_-]*@\d+\.\d+\.\d+)\b")
_QUOTED = re.compile(r"['‘’\"“”«»]([^'‘’\"“”«»]{2,60})['‘’\"“”«»]")
_DURATION = re.compile(r"\b(\d+)\s*(minutes?|mins?|hours?|hrs?|days?|horas?|minutos?|dias?|días?)\b")
_EACH = re.compile(
    r"\b(for each|for every|each of|each one|to each|para cada|a cada|cada um|cada uno|recorre|loop over|iterate)\b"
)
# a clause that says when the flow runs, not what it does
_WHEN = re.compile(
    r"^\s*(when|whenever|every time|each time|on every|quando|sempre que|cuando|cada vez que|si llega|manual run"
    r"|a flow i can run|let me trigger|fluxo manual|flujo manual)\b"
)
_FAILS = re.compile(
    r"\b(if (anything|something|it|the run) (fails|goes wrong|breaks)|on failure|if (there is|there's) an error|"
    r"se (algo )?(der erro|falhar)|se houver erro|si algo falla|si falla|si hay (un )?error|en caso de error)\b"
)
_APPROVE = re.compile(r"\b(approv|aprov|aprob|review|sign off|sign-off|before it goes out|before sending)\w*")
_LABELS = re.compile(r"\b(?:as|into|como|en)\s+((?:[\w-]+\s*,\s*)+[\w-]+\s*(?:,\s*)?(?:or|ou|o)\s+[\w-]+)")
NOTIFY = {"slack.post", "discord.post", "email.send"}
MIN_SCORE = 1.2


@dataclass
class Step:
    type: str
    clause: str
    body: list[Step] = field(default_factory=list)  # a foreach's nested steps
    failure: bool = False  # one of the flow's on_failure steps


@dataclass
class Plan:
    triggers: list[when.Trigger]
    steps: list[Step]
    on_failure: list[Step]
    text: str
    planner: str = "offline"


def plan(text: str, catalog: Catalog, services: tuple[str, ...] = ()) -> Plan:
    """Read a request into triggers and steps (no flow yet: ``to_flow`` writes it)."""
    found = when.triggers(text, services)
    sentences = [s for s in re.split(r"(?<=[.!?;])\s+", text.strip()) if s.strip()]
    steps: list[Step] = []
    failure: list[Step] = []
    loop: Step | None = None
    approved = False
    subjects = {t.subject for t in found if t.subject}
    for sentence in sentences:
        plain = fold(sentence)
        into_failure = _FAILS.search(plain) is not None
        for clause in _clauses(sentence, catalog):
            low = fold(clause)
            if (
                _WHEN.search(low)
                or any(s in low for s in subjects)
                or _FAILS.fullmatch(low.strip(" ,"))
                or (when.is_manual(low) and not _EACH.search(low))
            ):
                continue  # when it runs (or when it fails), not what it does
            if _EACH.search(low) and not into_failure:
                loop = Step("foreach", clause)
                steps.append(loop)
                rest = _EACH.split(low, maxsplit=1)[-1]
                action = _action(rest, catalog)
                if action is not None and action != "foreach":
                    loop.body.append(Step(action, clause))
                continue
            if _APPROVE.search(low) and not into_failure:
                if not approved:  # "for approval … once I approve it": one approval
                    (loop.body if loop else steps).append(Step("approval", clause))
                    approved = True
                action = _action(_APPROVE.sub(" ", low), catalog)
                if action in NOTIFY and _sends_out(low):
                    steps.append(Step(action, clause))
                continue
            action = _action(clause, catalog)
            if action is None or action == "foreach":
                continue
            target = failure if into_failure else loop.body if loop is not None else steps
            if into_failure:
                failure.append(Step(action, clause, failure=True))
                continue
            if not into_failure and _reads_a_source(action, clause, steps, loop):
                target.append(Step("http.request", clause))  # a service without a built-in type: its API
            target.append(Step(action, clause))
        loop = None  # a loop ends with its sentence
    return Plan(found, steps, failure[:1], text)


def _clauses(sentence: str, catalog: Catalog) -> list[str]:
    """The sentence cut where a new action starts: a fragment that does not open with an action word (one the
    catalog knows) belongs to the one before it ("post the email and the amount" is one action)."""
    merged: list[str] = []
    for piece in cut(sentence):
        words = [word for _, word, _ in thesaurus.terms(piece, broaden=False)]
        starts_action = bool(words) and words[0] in catalog.verbs
        if merged and not starts_action and not _WHEN.search(fold(piece)) and not _EACH.search(fold(piece)):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def _reads_a_source(action: str, clause: str, steps: list[Step], loop: Step | None) -> bool:
    """An AI or code step over data that comes from somewhere the flow has not fetched yet ("summarise the posts
    from our blog's feed", "compile the week's survey responses"): the data needs an API call first."""
    if not action.startswith(("llm.", "code.")):
        return False
    earlier = [s.type for s in steps] + ([s.type for s in loop.body] if loop else [])
    if "http.request" in earlier or earlier:
        return False
    low = fold(clause)
    names_source = URL.search(clause) or re.search(r"\b[a-z]/\w+", low) or _service(clause)
    return (
        bool(names_source) and re.search(r"\b(from|of|in|da|do|de|del|en|to our|responses?|posts?)\b", low) is not None
    )


def _sends_out(low: str) -> bool:
    return re.search(r"\b(send|post|publish|envia|manda|publica)\w*\b.*\b(out|to|para|a)\b", low) is not None


def _action(clause: str, catalog: Catalog) -> str | None:
    ranked = catalog.rank(clause)
    if not ranked or ranked[0][0] < MIN_SCORE:
        return None
    return ranked[0][1]


# --- writing the flow -------------------------------------------------------------------------------------------


def to_flow(p: Plan, flow_id: str = "planned-flow") -> str:
    """The plan as FluxGraph YAML (values the text stated filled in; the rest marked as placeholders)."""
    secrets: list[str] = []
    ids: Counter[str] = Counter()
    doc: dict[str, Any] = {"fluxgraph": 1, "id": flow_id, "name": _title(p.text), "description": p.text.strip()}
    doc["triggers"] = [_trigger(t) for t in p.triggers]
    nodes, _ = _nodes(p.steps, p, secrets, ids, previous=None)
    doc["nodes"] = nodes or [{"id": "note", "type": "log", "with": {"message": "TODO: " + p.text.strip()[:200]}}]
    if p.on_failure:
        doc["on_failure"], _ = _nodes(p.on_failure, p, secrets, ids, previous=None, chain=False)
    if secrets:
        doc["secrets"] = sorted(set(secrets))
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)


def _nodes(
    steps: list[Step],
    p: Plan,
    secrets: list[str],
    ids: Counter[str],
    previous: str | None,
    chain: bool = True,
    in_loop: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    out: list[dict[str, Any]] = []
    source = previous  # what the next step reads and needs
    for step in steps:
        node_id = _id(step.type, ids)
        node: dict[str, Any] = {"id": node_id, "type": step.type}
        if chain and source is not None:
            node["needs"] = [source]
        if step.type == "foreach":
            node["items"] = f"{{{{ nodes.{source}.output }}}}" if source else "{{ trigger.data }}"
            if source is None and _manual_only(p):
                node["items"] = "{{ inputs.items }}"
            body, _ = _nodes(step.body, p, secrets, ids, previous=None, in_loop=True)
            node["do"] = body or [{"id": _id("log", ids), "type": "log", "with": {"message": "{{ item }}"}}]
        else:
            node["with"] = _with(step, p, secrets, source, in_loop)
            host = _host(step, p)
            if host:
                node["permissions"] = {"net": [host]}
        out.append(node)
        if step.type not in NOTIFY:  # independent notifications do not wait for each other
            source = node_id
    return out, source


def _with(step: Step, p: Plan, secrets: list[str], source: str | None, in_loop: bool = False) -> dict[str, Any]:
    text, clause = p.text, step.clause
    upstream = _reference(source, p) if source else "{{ item }}" if in_loop else _trigger_data(p)
    kind = step.type
    if kind == "http.request":
        urls = URL.findall(clause) or URL.findall(text)
        if urls:
            return {"method": _method(clause), "url": urls[0].rstrip(".")}
        name = _service(clause) or "service"
        secrets.append(f"{name}_api_url")
        return {"method": _method(clause), "url": f"{{{{ secrets.{name}_api_url }}}}"}
    if kind == "email.send":
        if step.failure:
            to = (_EMAIL.findall(clause) or _EMAIL.findall(text) or ["{{ inputs.email }}"])[0]
            return {"to": to, "subject": "The flow failed", "body": "Run {{ run.id }} failed: {{ run.error }}"}
        emails = _EMAIL.findall(clause) or _EMAIL.findall(text)
        to = emails[0] if emails else ("{{ item }}" if in_loop else "{{ inputs.email }}")
        return {"to": to, "subject": _title(clause), "body": upstream}
    if kind == "slack.post":
        secrets.append("slack_bot_token")
        channel = _channel(clause, text)
        message = "Run {{ run.id }} failed: {{ run.error }}" if step.failure else upstream
        return {"token": "{{ secrets.slack_bot_token }}", "channel": f"#{channel or 'general'}", "text": message}
    if kind == "discord.post":
        channel = _channel(clause, text)
        secret = f"discord_{re.sub(r'[^a-z0-9]+', '_', channel or 'channel')}_webhook"
        secrets.append(secret)
        message = "Run {{ run.id }} failed: {{ run.error }}" if step.failure else upstream
        return {"webhook_url": f"{{{{ secrets.{secret} }}}}", "content": message}
    if kind == "llm.complete":
        return {"model": "default", "prompt": f"{clause.strip()}\n\n{upstream}", "max_tokens": 400}
    if kind == "llm.classify":
        labels = _labels(clause) or _labels(text) or ["yes", "no"]
        return {"model": "default", "input": upstream, "labels": labels}
    if kind == "llm.extract":
        return {"model": "default", "prompt": f"{clause.strip()}\n\n{upstream}", "schema": {"type": "object"}}
    if kind in ("code.python", "code.js"):
        comment = clause.strip().replace("\n", " ")
        if kind == "code.js":
            return {"input": upstream, "code": f"// TODO: {comment}\nfunction main(input) {{\n  return input;\n}}\n"}
        return {"input": upstream, "code": f"# TODO: {comment}\ndef main(input):\n    return input\n"}
    if kind == "event.publish":
        subject = _published_subject(clause) or _published_subject(text) or "flow.done"
        return {"subject": subject, "data": upstream}
    if kind == "flow.call":
        quoted = _QUOTED.findall(clause) or _QUOTED.findall(text)
        name = re.sub(r"[^a-z0-9-]+", "-", fold(quoted[0])).strip("-") if quoted else "other-flow"
        return {"flow": name, "input": {"data": upstream}}
    if kind == "wasm.run":
        module = _MODULE.search(fold(clause)) or _MODULE.search(fold(text))
        return {"module": module.group(1) if module else "my-transform@1.0.0", "input": upstream}
    if kind == "delay":
        duration = _DURATION.search(fold(clause))
        return {"duration": _duration(duration) if duration else "1h"}
    if kind == "data.filter":
        return {"items": upstream, "where": "{{ item }}"}
    if kind == "approval":
        return {"message": f"Approve: {clause.strip()[:150]}"}
    if kind == "log":
        return {"message": f"{clause.strip()[:150]}: {upstream}"}
    if kind == "text.template":
        return {"template": upstream}
    if kind == "json.extract":
        return {"data": upstream, "path": "@"}
    return {}


# what a node type's output holds that the next step wants (its whole output otherwise)
OUTPUT_FIELD = {"http.request": "body", "llm.complete": "text", "llm.classify": "label", "text.template": "text"}


def _reference(source: str, p: Plan) -> str:
    kind = _kinds(p.steps).get(source, "")
    field_ = OUTPUT_FIELD.get(kind)
    return f"{{{{ nodes.{source}.output{'.' + field_ if field_ else ''} }}}}"


def _kinds(steps: list[Step]) -> dict[str, str]:
    """Node id -> type, as to_flow names them (ids are made in the same order)."""
    ids: Counter[str] = Counter()
    out: dict[str, str] = {}

    def walk(items: list[Step]) -> None:
        for step in items:
            out[_id(step.type, ids)] = step.type
            walk(step.body)

    walk(steps)
    return out


def _trigger_data(p: Plan) -> str:
    kinds = {t.type for t in p.triggers}
    if "webhook" in kinds:
        return "{{ trigger.body }}"
    if "event" in kinds:
        return "{{ trigger.data }}"
    return "{{ inputs }}"


def _trigger(t: when.Trigger) -> dict[str, Any]:
    if t.type == "cron":
        return {"type": "cron", "cron": t.cron, "timezone": t.timezone or "UTC"}
    if t.type == "event":
        return {"type": "event", "subject": t.subject}
    return {"type": t.type}


def _manual_only(p: Plan) -> bool:
    return [t.type for t in p.triggers] == ["manual"]


def _id(node_type: str, ids: Counter[str]) -> str:
    base = node_type.split(".")[-1].replace("-", "_")
    base = {"request": "call_api", "post": node_type.split(".")[0], "send": "email", "complete": "write"}.get(
        base, base
    )
    ids[base] += 1
    return base if ids[base] == 1 else f"{base}_{ids[base]}"


def _host(step: Step, p: Plan) -> str | None:
    if step.type != "http.request":
        return None
    urls = URL.findall(step.clause) or URL.findall(p.text)
    return urlparse(urls[0]).hostname if urls else None


def _method(clause: str) -> str:
    low = fold(clause)
    if re.search(r"\b(update|change|set|atualiza|actualiza|patch)\b", low):
        return "PUT"
    if re.search(r"\b(create|add|generate|post to|submit|gera|genera|cria|crea|send to)\b", low):
        return "POST"
    return "GET"


def _service(clause: str) -> str | None:
    """A capitalised name the clause mentions (the service an http.request calls), as a secret-name stem."""
    for word in re.findall(r"\b([A-Z][A-Za-z0-9]+(?:\s[A-Z][A-Za-z0-9]+)?)\b", clause):
        if word.lower() not in {"api", "ai", "the", "a", "every", "when", "then", "our", "my", "i"}:
            return re.sub(r"[^a-z0-9]+", "_", fold(word)).strip("_")
    return None


def _channel(clause: str, text: str) -> str | None:
    found = _CHANNEL.findall(clause) or _CHANNEL.findall(text)
    return found[0] if found else None


def _labels(text: str) -> list[str]:
    match = _LABELS.search(fold(text))
    if match is None:
        return []
    parts = re.split(r"\s*,\s*|\s+(?:or|ou|o)\s+", match.group(1))
    return [p.strip() for p in parts if p.strip()][:10]


def _published_subject(text: str) -> str | None:
    match = re.search(
        r"\b(?:as|publish(?:es)?|emit|republish(?:es)?|publica)\s+(?:it\s+)?(?:as\s+)?"
        r"([a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)+)",
        fold(text),
    )
    return match.group(1) if match else None


def _duration(match: re.Match[str]) -> str:
    amount, unit = int(match.group(1)), match.group(2)
    letter = "m" if unit.startswith("min") else "h" if unit.startswith(("h", "hr")) else "d"
    return f"{amount}{letter}"


def _title(text: str) -> str:
    words = re.sub(r"\s+", " ", text.strip()).split(" ")
    title = " ".join(words[:8])
    return title[:80] + ("…" if len(words) > 8 else "")
