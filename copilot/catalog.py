"""The catalog a request is read against, shared by Jules's offline planners (copilot.offline for flows,
copilot.tool_planner for tool graphs): named, described actions weighed as concepts (copilot.thesaurus), and a
sentence cut at the connectives between the actions it asks for.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from copilot import thesaurus
from copilot.lexicon import fold
from engine.nodetypes.registry import NodeType

URL = re.compile(r"https?://[^\s)>\]\"'«»,]+")
CONNECTIVE = re.compile(
    r"(?:[.;!?](?:\s|$)|→|->|\s+(?:and then|then|and|e depois|depois|e|y luego|luego|y)\s+(?=\w)|,\s*(?:and\s+)?)"
)
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

    def choose(
        self,
        clause: str,
        first: float,
        more: float,
        context: frozenset[str] = frozenset(),
        outright: bool = False,
        before: str | None = None,
    ) -> list[tuple[int, str]]:
        """Every action a clause asks for, with the position of the word that names it: the best entry, then
        again over the words it did not explain ("book a car and a room at the Plaza hotel" is two bookings),
        while an entry scores at least ``first`` (the first) or ``more`` (each other), in units of a name word
        that only one entry has. Between entries the clause names equally well, one in ``context`` (named by the
        rest of the request) wins: "make the reservation" after "dining at the Bistro" books the restaurant; with
        ``outright``, a tie that the context does not break names nothing ("I have a meeting": organised or
        attended?). With ``before`` (what the request says before the clause), a verb whose object is named elsewhere
        ("organize it") names an entry only if that text says something else the entry is about: "There is a party
        on Friday. Can you organize it?" organises the party, "I'm planning a special day. Can you organize it?"
        names no party."""
        found = thesaurus.terms(clause, head=True)
        words = _WORD.findall(fold(clause))
        # a verb with no object of its own ("print it", "deliver to …"): the object is named elsewhere
        pairs = list(itertools.zip_longest(words, words[1:]))
        pointing = {thesaurus.concept(w) for w, after in pairs if after in _POINTERS}
        # a pronoun for an object ("organize it") stands for something the request said before the clause
        pronoun: dict[str, set[str]] = {}
        if before is not None:
            said = {
                w for _, w, x in thesaurus.terms(before) if x > thesaurus.LIGHT_WEIGHT and not thesaurus.is_light(w)
            }
            pronoun = {thesaurus.concept(w): said for w, after in pairs if after in _PRONOUNS}
        chosen: list[tuple[int, str]] = []
        while found:
            scored = {
                name: value for name, value in self._scores(found, pointing, pronoun).items() if value[1] < NOWHERE
            }
            if not scored:
                break
            ranked = sorted(
                scored.items(),
                key=lambda item: (
                    -round(item[1][0] / self.unit, TIE),
                    item[0] not in context,
                    -item[1][0],
                    self.order[item[0]],
                ),
            )
            name, (score, position) = ranked[0]
            if outright and len(ranked) > 1 and self._tied(ranked[0], ranked[1], context):
                break
            if score < (more if chosen else first) * self.unit:
                break
            chosen.append((position, name))
            # the words that named it are used up, with what they imply
            explained = self.terms[name]
            used = {p for p, word, _ in found if word in explained}
            found = [t for t in found if t[0] not in used]
        return chosen

    def _tied(
        self, best: tuple[str, tuple[float, int]], next_: tuple[str, tuple[float, int]], context: frozenset[str]
    ) -> bool:
        """Whether the best entry does not win outright: it scores the same as the next, and the context does not
        prefer it."""
        same = round(best[1][0] / self.unit, TIE) == round(next_[1][0] / self.unit, TIE)
        return same and (best[0] in context) == (next_[0] in context)

    def _scores(
        self,
        found: list[tuple[int, str, float]],
        pointing: set[str] | None = None,
        pronoun: dict[str, set[str]] | None = None,
    ) -> dict[str, tuple[float, int]]:
        """Entry -> (score, position of its first strong word) over a clause's concepts (each counted once, at its
        strongest). With ``pointing`` (the verbs whose object is a pronoun or nothing), an entry whose only strong
        word is the verb its name opens with, given another object ("organize my tasks" for organize_meeting_online,
        not "organize it"), scores LONE_VERB of that: the verb alone does not say what is organised; so does one
        whose object is a pronoun (``pronoun``: the verb -> the concepts the request gave before it) that can stand
        for nothing else of the entry's."""
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
                if verb is None or words != {verb}:
                    continue
                before = (pronoun or {}).get(verb)  # what the pronoun can stand for
                unsaid = before is not None and not any(w in before for w in self.terms[name] if w != verb)
                if verb not in pointing or unsaid:
                    scores[name] = (scores[name][0] * LONE_VERB, scores[name][1])
        return scores


NAME_WEIGHT = 3.0
TIE = 2  # scores that agree to this many decimals (in Catalog.unit) are a tie the context breaks
LONE_VERB = 0.5
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_PRONOUNS = {"it", "this", "that", "them", "these", "those", "one", "everything", "isso", "isto", "eso", "esto", "lo"}
# what follows a verb whose object is named elsewhere: nothing, a pronoun, or a preposition ("deliver to 123 Main St")
_POINTERS = {
    *(None, *_PRONOUNS),
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


def cut(sentence: str) -> list[str]:
    """A sentence cut at the connectives between actions ("and", "then", ";", "e depois", "y luego"), a URL's dots
    kept."""
    protected = URL.sub(lambda m: m.group(0).replace(".", "\0"), sentence)
    return [c.replace("\0", ".").strip() for c in CONNECTIVE.split(protected) if c and c.strip()]
