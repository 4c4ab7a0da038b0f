"""Jules's offline planner: a FluxGraph flow from a sentence in milliseconds, with no model and no network.

It reads the request the way a careful engineer sketches a flow: the triggers (copilot.when); the actions, one per
clause, each matched against the catalog (the node types' names, summaries and keywords; Portuguese and Spanish
carried to English first); loops ("for each …"), approvals, and what to do when something fails; the values
the text states (URLs and their hosts, email addresses, channels, labels, subjects, modules, durations). Then it
writes the flow and checks it with the validator; what it cannot fill in (the code of a code step, the URL of a
service the text only names) is left as a clearly marked placeholder in a flow that still validates.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml

from copilot import thesaurus, when
from copilot.lexicon import fold
from engine.nodetypes.registry import NodeType

_URL = re.compile(r"https?://[^\s)>\]\"'«»,]+")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CHANNEL = re.compile(r"(?<![\w&])#([\w-]+)")
_MODULE = re.compile(r"\b([a-z][a-z0-9_-]*@\d+\.\d+\.\d+)\b")
_QUOTED = re.compile(r"['‘’\"“”«»]([^'‘’\"“”«»]{2,60})['‘’\"“”«»]")
_DURATION = re.compile(r"\b(\d+)\s*(minutes?|mins?|hours?|hrs?|days?|horas?|minutos?|dias?|días?)\b")
_SPLIT = re.compile(
    r"(?:[.;!?](?:\s|$)|→|->|\s+(?:and then|then|and|e depois|depois|e|y luego|luego|y)\s+(?=\w)|,\s*(?:and\s+)?)"
)
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
# verbs that open an action whatever the catalog (English stems; Portuguese and Spanish arrive translated)
ACTION_VERBS = {
    thesaurus.concept(w)
    for w in (
        "send",
        "post",
        "fetch",
        "pull",
        "get",
        "call",
        "update",
        "create",
        "generate",
        "classify",
        "summarize",
        "summarise",
        "translate",
        "write",
        "draft",
        "check",
        "publish",
        "wait",
        "approve",
        "add",
        "drop",
        "run",
        "compute",
        "count",
        "filter",
        "notify",
        "alert",
        "ping",
        "email",
        "message",
        "mail",
        "tell",
        "have",
        "use",
        "compile",
        "upload",
        "store",
        "save",
        "log",
        "record",
        "reply",
        "forward",
        "label",
        "tag",
        "extract",
        "parse",
        "convert",
        "render",
        "ask",
        "make",
        "put",
    )
}
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


class Catalog:
    """Node types (or any named, described actions) to match clauses against, weighted by how rare a concept is.

    Each entry is read as concepts (copilot.thesaurus) with the weight of where they stand: its name says most,
    then its keywords and the names of its parameters, then the examples its texts give ("eg. buy, sell"), then
    the rest of its description. A keyword that reads as a sentence is a described parameter: its first word
    names it, the rest describes it."""

    def __init__(self, entries: Iterable[tuple[str, str, Sequence[str]]]) -> None:
        self.terms: dict[str, dict[str, float]] = {}
        listed = list(entries)
        for name, description, keywords in listed:
            weights: dict[str, float] = {}
            _weigh(weights, re.sub(r"[._]", " ", name), NAME_WEIGHT)
            _weigh_text(weights, description, 1.0)
            for keyword in keywords:
                head, _, rest = keyword.strip().partition(" ")
                if len(thesaurus.terms(keyword, broaden=False)) <= 3:
                    _weigh(weights, keyword, 2.0)
                else:
                    _weigh(weights, head, PARAMETER_WEIGHT)
                    _weigh_text(weights, rest, 0.5)
            self.terms[name] = weights
        # the verb a name opens with, when its description opens with it too ("organize" in organize_meeting_online,
        # "Organize a meeting online …"; stock_operation, "Do an operation on a stock", opens with a noun)
        self.verb: dict[str, str] = {}
        for name, description, _ in listed:
            named = [word for _, word, _ in thesaurus.terms(re.sub(r"[._]", " ", name), broaden=False)]
            opens = [word for _, word, _ in thesaurus.terms(description, broaden=False)]
            if named and opens and named[0] == opens[0] and len(named) > 1:
                self.verb[name] = named[0]
        self.order = {name: number for number, name in enumerate(self.terms)}  # ties go to the one listed first
        # the words a clause opens with when it starts a new action: every name part and keyword, and the verbs
        self.verbs = {w for words in self.terms.values() for w, weight in words.items() if weight >= 2} | ACTION_VERBS
        documents = len(self.terms) or 1
        seen = Counter(word for words in self.terms.values() for word in words)
        self.idf = {word: math.log(1 + documents / count) for word, count in seen.items()}
        # what a name word no other entry has is worth: the unit evidence is measured in, whatever the catalog's size
        self.unit = NAME_WEIGHT * math.log(1 + documents)
        self.index: dict[str, list[tuple[str, float]]] = {}
        for name, weights in self.terms.items():
            for word, weight in weights.items():
                self.index.setdefault(word, []).append((name, weight * self.idf[word]))

    @classmethod
    def of_types(cls, types: Iterable[NodeType]) -> Catalog:
        return cls((t.name, t.summary, t.keywords) for t in types)

    def rank(self, clause: str) -> list[tuple[float, str]]:
        scored = self._scores(thesaurus.terms(clause, head=True))
        return sorted(((score, name) for name, (score, _) in scored.items()), key=lambda s: (-s[0], self.order[s[1]]))

    def choose(self, clause: str, first: float, more: float) -> list[tuple[int, str]]:
        """Every action a clause asks for, with the position of the word that names it: the best entry, then
        again over the words it did not explain ("book a car and a room at the Plaza hotel" is two bookings),
        while an entry scores at least ``first`` (the first) or ``more`` (each other), in units of a name word
        that only one entry has."""
        found = thesaurus.terms(clause, head=True)
        words = _WORD.findall(fold(clause))
        # a verb with no object of its own ("print it", "deliver to …"): the object is named elsewhere
        pointing = {thesaurus.concept(w) for w, after in itertools.zip_longest(words, words[1:]) if after in _POINTERS}
        chosen: list[tuple[int, str]] = []
        while found:
            scored = {name: value for name, value in self._scores(found, pointing).items() if value[1] < NOWHERE}
            if not scored:
                break
            name, (score, position) = min(scored.items(), key=lambda item: (-item[1][0], self.order[item[0]]))
            if score < (more if chosen else first) * self.unit:
                break
            chosen.append((position, name))
            # the words that named it are used up, with what they imply
            explained = self.terms[name]
            used = {p for p, word, _ in found if word in explained}
            found = [t for t in found if t[0] not in used]
        return chosen

    def _scores(
        self, found: list[tuple[int, str, float]], pointing: set[str] | None = None
    ) -> dict[str, tuple[float, int]]:
        """Entry -> (score, position of its first strong word) over a clause's concepts (each counted once, at its
        strongest). With ``pointing`` (the verbs whose object is a pronoun or nothing), an entry whose only strong
        word is the verb its name opens with, given another object ("organize my tasks" for organize_meeting_online,
        not "organize it"), scores LONE_VERB of that: the verb alone does not say what is organised."""
        query: dict[str, tuple[float, int]] = {}
        for position, word, weight in found:
            if word in self.index and weight > query.get(word, (0.0, 0))[0]:
                query[word] = (weight, position)
        scores: dict[str, tuple[float, int]] = {}
        said: dict[str, set[str]] = {}
        for word, (weight, position) in query.items():
            for name, value in self.index[word]:
                score, first = scores.get(name, (0.0, NOWHERE))
                strong = weight > thesaurus.LIGHT_WEIGHT and not thesaurus.is_light(word)
                scores[name] = (score + value * weight, min(first, position) if strong else first)
                if strong:
                    said.setdefault(name, set()).add(word)
        if pointing is not None:
            for name, words in said.items():
                verb = self.verb.get(name)
                if verb is not None and words == {verb} and verb not in pointing:
                    scores[name] = (scores[name][0] * LONE_VERB, scores[name][1])
        return scores


NAME_WEIGHT = 3.0
LONE_VERB = 0.5
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
# what follows a verb whose object is named elsewhere: nothing, a pronoun, or a preposition ("deliver to 123 Main St")
_POINTERS = {
    *(None, "it", "this", "that", "them", "these", "those", "one", "everything", "isso", "isto", "eso", "esto", "lo"),
    *("to", "for", "from", "at", "on", "in", "with", "by", "about", "via", "para", "por", "com", "con", "em", "en"),
}
PARAMETER_WEIGHT = 1.5  # what an action needs says less about it than what it is called
NOWHERE = 1 << 30  # the position of an entry named by no strong word
_EXAMPLES = re.compile(r"\b(?:e\.?g\.?|for example|such as|like)\s*[:,]?\s*(.*)", re.IGNORECASE)


def _weigh(weights: dict[str, float], text: str, weight: float) -> None:
    for _, word, share in thesaurus.terms(text, broaden=False):
        weights[word] = max(weights.get(word, 0.0), weight * share)


def _weigh_text(weights: dict[str, float], text: str, weight: float) -> None:
    """A description: its examples ("eg. buy, sell, short") are concrete instances a request names, so they weigh
    as much as a keyword."""
    match = _EXAMPLES.search(text)
    _weigh(weights, text[: match.start()] if match else text, weight)
    if match:
        _weigh(weights, match.group(1), 2.0)


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
    protected = _URL.sub(lambda m: m.group(0).replace(".", "\0"), sentence)
    pieces = [c.replace("\0", ".").strip() for c in _SPLIT.split(protected) if c and c.strip()]
    merged: list[str] = []
    for piece in pieces:
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
    names_source = _URL.search(clause) or re.search(r"\b[a-z]/\w+", low) or _service(clause)
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
        urls = _URL.findall(clause) or _URL.findall(text)
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
    urls = _URL.findall(step.clause) or _URL.findall(p.text)
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


def plan_tools(text: str, catalog: Catalog) -> tuple[list[str], list[tuple[str, str]]]:
    """A tool graph for a request over a catalog of actions (TaskBench's): every action each clause asks for, in
    the order the request asks for them, each needing the one before (the common shape of such requests); a tool
    named twice is kept once, and a single action has no links.

    A tool's place is the clause that asks for it, not the first that mentions it: a sentence that only sets the
    scene ("I'm planning a trip to Lisbon in May") names an action only on strong evidence and yields its place to
    a request that names it again; a wish ("I'd like to dine out") yields to a direct request ("Can you book the
    table?"); and the sequencing words move a clause ("…, but before that, …", "… once the payment is done",
    "first", "finally")."""
    clauses = _requested(text, catalog)
    _sequence(clauses)
    mentions = sorted(
        (clause.standing, clause.place, position, name) for clause in clauses for position, name in clause.tools
    )
    place: dict[str, tuple[float, int]] = {}
    for _, where, position, name in mentions:
        place.setdefault(name, (where, position))
    order = sorted(place, key=lambda name: place[name])
    return order, list(itertools.pairwise(order))


# the evidence a clause of a request needs to name an action (in Catalog.unit: a name word only one entry has)
TOOL_FIRST = 0.55
TOOL_CONTEXT = 1.1  # and a clause that asks for nothing
TOOL_MORE = 1.35  # and to name one more, from the words the first did not explain
# how a clause stands to the request: its place counts in this order (a tool takes its place from the first kind);
# a condition ("once I am enrolled, …") tells where an action goes better than a scene does
ASKED, WISHED, CONDITION, MENTIONED = 0, 1, 2, 3
# a direct request: a question, an order to "you", politeness
_ASK = re.compile(
    r"\?|\b(can|could|would|will|won't|wouldn't) (you|we)\b|\b(please|help me|assist me|let's|how about|great if|"
    r"appreciate|mind|want you|like you|need you|remind me|don't let me|por favor|pode|podes|poderia|voce pode|"
    r"puedes|podrias|puede|podria|ayudame|ajuda-me|me ajuda)\b"
)
# a wish or a need: asks for something, less directly
_WISH = re.compile(
    r"\b(need|needs|want|wish|like to|love to|hoping|hope to|must|have to|plan to|planning to|intend|looking to|"
    r"looking for|seeking|considering|thinking of|forget|should|preciso|precisamos|quero|queria|gostaria|"
    r"would|could|necesito|necesitamos|quiero|quisiera|me gustaria|tengo que|tenho que)\b"
)
_SCENE = re.compile(
    r"\s*((i|we) ?('m|am|'ve|have|had|was|were|'re|are|just|recently|already|got)\b|"
    r"(eu |nos )?(tenho|temos|estou|estamos|sou|acabei|acabamos|ja)\b|"
    r"(yo |nosotros )?(tengo|tenemos|estoy|estamos|soy|acabo|acabamos|ya)\b)"
)


@dataclass
class _Clause:
    text: str
    sentence: int
    standing: int
    place: float
    tools: list[tuple[int, str]]
    refers: list[tuple[int, str]] = field(default_factory=list)  # named on weak evidence: counts if asked elsewhere


def _requested(text: str, catalog: Catalog) -> list[_Clause]:
    """Every clause of a request with how it stands (asked, wished, only mentioned) and the tools it names."""
    out: list[_Clause] = []
    for number, sentence in enumerate(_sentences(text)):
        standing = _standing(sentence, catalog)
        for piece in _pieces(sentence):
            low = fold(piece).replace("’", "'")
            kind = standing
            if _CONDITION.match(low):
                kind = CONDITION  # it refers to an action more than it asks for it
            elif standing == MENTIONED or _sets_the_scene(low):
                kind = MENTIONED
            words = piece
            weak = kind not in (ASKED, WISHED) or _PURPOSE.match(low) is not None
            tools = catalog.choose(words, TOOL_CONTEXT if weak else TOOL_FIRST, TOOL_MORE)
            refers = [t for t in catalog.choose(words, TOOL_FIRST, TOOL_MORE) if t not in tools] if weak else []
            out.append(_Clause(piece, number, kind, float(len(out)), tools, refers))
    named = {name for clause in out for _, name in clause.tools}
    for clause in out:  # "once I am enrolled": an action the request names elsewhere
        clause.tools += [(position, name) for position, name in clause.refers if name in named]
    return out


def _sentences(text: str) -> list[str]:
    """A text's sentences."""
    return [s for s in re.split(r"(?<=[.!?;])\s+", text.strip()) if s.strip()]


_PURPOSE = re.compile(r"^\s*(?:so that|so we can|so i can|para que|de modo que)\b")


def _standing(sentence: str, catalog: Catalog) -> int:
    """Whether a sentence asks for something directly (a question, a request, an order: it opens with a verb the
    catalog knows, "Install Zoom on my laptop"), wishes for it, or only tells how things are."""
    plain = fold(sentence).replace("’", "'")
    if _ASK.search(plain):
        return ASKED
    words = [word for _, word, weight in thesaurus.terms(sentence, broaden=False) if word not in {"also", "then"}]
    if words and words[0] in catalog.verbs and not re.match(r"\s*(i|we|i'm|i've|we're)\b", plain):
        return ASKED
    return WISHED if _WISH.search(plain) else MENTIONED


def _sets_the_scene(plain: str) -> bool:
    """A clause that tells how things are ("I have a team meeting at 10", "I've just downloaded an app") rather than
    asking for something."""
    return _SCENE.match(plain) is not None and not _ASK.search(plain) and not _WISH.search(plain)


# sequencing words (English, Portuguese, Spanish), read at the start of a clause
_LEAD = r"^\s*(?:(?:and|but|also|oh|so|e|mas|y|pero)\s*,?\s*)*"
_BEFORE_THAT = re.compile(
    _LEAD + r"(?:before (?:that|this|then|doing (?:so|that|this)|all (?:that|this)|it)|antes dis(?:so|to)|"
    r"antes de (?:eso|esto|tudo|todo))\b"
)
_BEFORE = re.compile(_LEAD + r"(?:before|antes de|antes que)\b")
_AFTER = re.compile(
    _LEAD + r"(?:after|once|as soon as|when|depois de|depois que|assim que|quando|despues de|una vez que|en cuanto|"
    r"cuando)\b"
)
# a clause that states a condition on another ("once the payment is done"): it refers to an action, not asks for it
_CONDITION = re.compile(_AFTER.pattern + r"(?!\s+(?:that|this|all (?:that|this)|everything|isso|disso|eso|esto)\b)")
_FIRST = re.compile(
    r"\b(?:first|firstly|first of all|to (?:start|begin) with|primeiro|primeiramente|primero|antes de nada)\b"
    r"(?!\s+(?:of|time|day|week|thing|one)\b)"
)
_LAST = re.compile(
    r"\b(?:finally|lastly|last of all|at the end|in the end|to end|por fim|por ultimo|finalmente|al final)\b"
)


def _sequence(clauses: list[_Clause]) -> None:
    """Move the clauses the sequencing words move: "…, but before that, X" puts X before the action just asked
    for; "Before X, Y" and "Y once X is done" put X before Y; "first" puts an action before the others its sentence
    asks for, "finally" after them. Other words ("then", "after that", "next") keep the order the request is
    written in."""
    pending = False  # a "but before that," that stands alone moves the clause after it
    for index, clause in enumerate(clauses):
        low = fold(clause.text).replace("’", "'")
        sentence = [c for c in clauses if c.sentence == clause.sentence and c.tools and c is not clause]
        before = [c for c in sentence if c.place < clause.place]
        after = [c for c in sentence if c.place > clause.place]
        if not clause.tools:
            pending = _BEFORE_THAT.match(low) is not None or (pending and not before)
            continue
        earlier = [c for c in clauses[:index] if c.tools]
        if (pending or _BEFORE_THAT.match(low)) and earlier:
            # before the action just asked for, wherever the request first named it
            named = {name for _, name in earlier[-1].tools}
            clause.place = min(c.place for c in clauses if named & {name for _, name in c.tools}) - 0.5
        elif _BEFORE.match(low) and after:
            clause.place = after[0].place + 0.5
        elif _CONDITION.match(low) and before:
            clause.place = before[-1].place - 0.5
        elif _FIRST.search(low) and before:
            clause.place = before[0].place - 0.5
        elif _LAST.search(low) and after:
            clause.place = after[-1].place + 0.5
        pending = False


def _pieces(sentence: str) -> list[str]:
    """A sentence cut at the connectives between actions (a URL's dots kept), and before the words that put one
    action before or after another ("book the taxi once the payment is done")."""
    protected = _URL.sub(lambda m: m.group(0).replace(".", "\0"), sentence)
    out: list[str] = []
    for chunk in _SPLIT.split(protected):
        if chunk and chunk.strip():
            out.extend(part.replace("\0", ".").strip() for part in _SUBORDINATE.split(chunk) if part.strip())
    return out


_SUBORDINATE = re.compile(
    r"\s+(?=(?:once|as soon as|assim que|una vez que|before|after)\s+(?!that\b|this\b|all\b))"
    r"|\s+(?=(?:so that|so we can|so i can|para que|de modo que)\b)"
)
