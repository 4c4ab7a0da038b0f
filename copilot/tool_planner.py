"""Jules's offline tool planner: a tool graph (TaskBench's shape: tool names and the links between them) for a
request over a catalog of actions, with no model and no network.

It reads a request clause by clause: how each clause stands (a direct request, a wish, a condition on another
action, or a sentence that only sets the scene), the actions each asks for (copilot.catalog), and the sequencing
words that move one action before or after another ("but before that", "once …", "first", "finally"), and the
times of day it gives them ("at 8am", "tomorrow morning"). The tools come out in the order the request asks for
them, each needing the one before.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from copilot import thesaurus
from copilot.catalog import Catalog, cut
from copilot.lexicon import fold


def plan_tools(text: str, catalog: Catalog) -> tuple[list[str], list[tuple[str, str]]]:
    """A tool graph for a request over a catalog of actions (TaskBench's): every action each clause asks for, in
    the order the request asks for them, each needing the one before (the common shape of such requests); a tool
    named twice is kept once, and a single action has no links.

    A tool's place is the clause that asks for it, not the first that mentions it: a sentence that only sets the
    scene ("I'm planning a trip to Lisbon in May") names an action only on strong evidence and yields its place to
    a request that names it again; a wish ("I'd like to dine out") yields to a direct request ("Can you book the
    table?"); the sequencing words move a clause ("…, but before that, …", "… once the payment is done",
    "first", "finally"); and clauses that give their actions times of day come in the order of those times."""
    clauses = _requested(text, catalog)
    _sequence(clauses)
    _chronological(clauses)
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
# a sentence that says how things are, whatever word follows ("It's movie night", "There's a party on Friday")
_STATES = re.compile(r"\s*(it's|it is|there's|there is|there are|here's|this is|that's|ha|hay|es)\b")
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
    weak: bool = False  # it does not ask for anything itself: it names an action only on strong evidence


def _requested(text: str, catalog: Catalog) -> list[_Clause]:
    """Every clause of a request with how it stands (asked, wished, only mentioned) and the tools it names; a clause
    that names several equally well takes the one the rest of the request mentions ("make the reservation")."""
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
            weak = kind not in (ASKED, WISHED) or _PURPOSE.match(low) is not None
            out.append(_Clause(piece, number, kind, float(len(out)), [], weak=weak))
    for clause in out:
        clause.tools, clause.refers = _named(clause, catalog, frozenset())
    # what the request mentions without asking for it ("I've been looking forward to dining at the Bistro")
    mentioned = [(clause, name) for clause in out if clause.weak for _, name in clause.tools + clause.refers]
    for clause in out:
        context = frozenset(name for other, name in mentioned if other is not clause)
        if context and (clause.tools or clause.refers):
            clause.tools, clause.refers = _named(clause, catalog, context)
    named = {name for clause in out for _, name in clause.tools}
    for clause in out:  # "once I am enrolled": an action the request names elsewhere
        clause.tools += [(position, name) for position, name in clause.refers if name in named]
    return out


def _named(
    clause: _Clause, catalog: Catalog, context: frozenset[str]
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The tools a clause names, and (a clause that does not ask) those it names on weak evidence."""
    tools = catalog.choose(clause.text, TOOL_CONTEXT if clause.weak else TOOL_FIRST, TOOL_MORE, context, clause.weak)
    if not clause.weak:
        return tools, []
    return tools, [t for t in catalog.choose(clause.text, TOOL_FIRST, TOOL_MORE, context) if t not in tools]


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
    if (
        words
        and words[0] in catalog.verbs
        and not re.match(r"\s*(i|we|i'm|i've|we're)\b", plain)
        and not _STATES.match(plain)
    ):
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
    return [part.strip() for piece in cut(sentence) for part in _SUBORDINATE.split(piece) if part.strip()]


_SUBORDINATE = re.compile(
    r"\s+(?=(?:once|as soon as|assim que|una vez que|before|after)\s+(?!that\b|this\b|all\b))"
    r"|\s+(?=(?:so that|so we can|so i can|para que|de modo que)\b)"
)


# a time of day a clause gives its action ("at 8am", "by 18:30", "às 20h", "tomorrow morning", "esta noche"), in
# minutes after the midnight that starts today; a part of the day stands for its middle
_CLOCK = re.compile(r"\b(\d{1,2})(?::(\d\d)|(h)(\d\d)?\b)?\s*(a\.?m\.?|p\.?m\.?)?(?![\w:/-])")
_PART_OF_DAY = (
    (re.compile(r"\bearly (?:in the )?morning\b|\bmadrugada\b"), 6 * 60),
    (
        re.compile(
            r"\b(?:this|tomorrow|in the|every|each) morning\b|\b(?:de|pela|na) manha\b|\b(?:por|en) la manana\b"
        ),
        9 * 60,
    ),
    (re.compile(r"\bnoon\b|\bmidday\b|\bmeio-dia\b|\bmediodia\b"), 12 * 60),
    (
        re.compile(
            r"\b(?:this|tomorrow|in the|every|each) afternoon\b|\b(?:a|de|pela|na) tarde\b|\b(?:por|en) la tarde\b"
        ),
        15 * 60,
    ),
    (
        re.compile(
            r"\b(?:this|tomorrow|in the|every|each) evening\b|\btonight\b|\bat night\b|"
            r"\b(?:esta|a|de|pela|na) noite\b|\b(?:esta|por la|en la) noche\b"
        ),
        20 * 60,
    ),
)
_TOMORROW = re.compile(r"\btomorrow\b|\bamanha\b|(?<!la )\bmanana\b")
DAY = 24 * 60


def _when(text: str) -> int | None:
    """The time of day a clause gives, if it gives one: a clock time (a bare number needs a colon, "h" or am/pm)
    or a part of the day, a day later when it says "tomorrow"."""
    low = fold(text)
    day = DAY if _TOMORROW.search(low) else 0
    for match in _CLOCK.finditer(low):
        hour, minutes, h, after_h, half = match.groups()
        if minutes is None and h is None and half is None:
            continue  # a bare number: a count, not a time
        value, past = int(hour), int(minutes or after_h or 0)
        if (half and not 1 <= value <= 12) or value > 23 or past > 59:
            continue
        if half:
            value = value % 12 + (12 if half.startswith("p") else 0)
        return day + value * 60 + past
    for pattern, value in _PART_OF_DAY:
        if pattern.search(low):
            return day + value
    return None


def _chronological(clauses: list[_Clause]) -> None:
    """Clauses that give their actions different times of day ("get me a taxi for 6:30", "set an alarm for 6:00")
    take the places they hold between them in the order of those times: a request lists what happens at set times
    as it comes to mind, and the earlier happens first."""
    timed = [(when, clause) for clause in clauses if clause.tools and (when := _when(clause.text)) is not None]
    if len({when for when, _ in timed}) < 2:
        return
    places = sorted(clause.place for _, clause in timed)
    for place, (_, clause) in zip(places, sorted(timed, key=lambda item: (item[0], item[1].place)), strict=True):
        clause.place = place
