"""Jules's offline tool planner: a tool graph (TaskBench's shape: tool names and the links between them) for a
request over a catalog of actions, with no model and no network.

It reads a request clause by clause: how each clause stands (a direct request, a wish, a condition on another
action, or a sentence that only sets the scene), the actions each asks for (copilot.catalog), and the sequencing
words that move one action before or after another ("but before that", "once …", "first", "finally"), and the
times of day it gives them ("at 8am", "tomorrow morning"). The tools come out in the order the request asks for
them, each needing the one before.

Some clauses ask for nothing of their own, whatever the catalog: a phrase set off by commas that only says where or
how ("…, on eBay"), a purpose or a time frame ("to determine the best route", "during my stay"), what the user has
already done ("I've just set up a shop"), and what an action is about ("a meeting to discuss the passport
application"); a pronoun ("organize it") names an action only if what the request said before does.
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
    r"looking for|seeking|considering|thinking of|thinking about|forget|should|preciso|precisamos|quero|queria|"
    r"gostaria|would|could|necesito|necesitamos|quiero|quisiera|me gustaria|tengo que|tenho que)\b"
)
# a sentence that says how things are, whatever word follows ("It's movie night", "There's a party on Friday")
_STATES = re.compile(r"\s*(it's|it is|there's|there is|there are|here's|this is|that's|ha|hay|es)\b")
_SCENE = re.compile(
    r"\s*((i|we) ?('m|am|'ve|have|had|was|were|'re|are|just|recently|already|got|'ll be|will be)\b|"
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
    done: bool = False  # it tells what has been done ("I've just set up a shop"): it names an action only as refers
    before: str = ""  # what the request says before it: what "it" in "organize it" can stand for


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
            done = _DONE.match(low) is not None and not _ASK.search(low) and not _WISH.search(low)
            if done:
                kind = MENTIONED
            weak = kind not in (ASKED, WISHED) or _PURPOSE.match(low) is not None
            out.append(_Clause(piece, number, kind, float(len(out)), [], weak=weak, done=done))
    for index, clause in enumerate(out):
        clause.before = " ".join(other.text for other in out[:index])
        clause.tools, clause.refers = _named(clause, catalog, frozenset())
    # what the request mentions without asking for it ("I've been looking forward to dining at the Bistro")
    mentioned = [(c, name) for c in out if c.standing in (WISHED, MENTIONED) for _, name in c.tools + c.refers]
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
    if clause.done:
        return [], _choose(clause, catalog, TOOL_FIRST, context)
    tools = _choose(clause, catalog, TOOL_CONTEXT if clause.weak else TOOL_FIRST, context, clause.weak)
    if not clause.weak:
        return tools, []
    return tools, [t for t in _choose(clause, catalog, TOOL_FIRST, context) if t not in tools]


# what an action is about ("a meeting about tax returns", "a call to discuss the passport application"): a topic,
# the value of a parameter, not another action
_TOPIC = re.compile(
    r"\s(?:about|regarding|concerning|on the (?:topic|subject) of|to (?:discuss|talk about|talk over|go over)|"
    r"sobre|acerca de|a respeito de|para (?:discutir|falar sobre|hablar de|hablar sobre))\s",
    re.IGNORECASE,
)


def _choose(
    clause: _Clause, catalog: Catalog, first: float, context: frozenset[str], outright: bool = False
) -> list[tuple[int, str]]:
    """The actions a clause names (Catalog.choose), except those named only by what another is about: when the
    words before "about" ("to discuss", "regarding") name an action, what follows is its topic."""
    topic = _TOPIC.search(clause.text)
    if topic is not None:
        named = catalog.choose(clause.text[: topic.start()], first, TOOL_MORE, context, outright, clause.before)
        if named:
            return named
    return catalog.choose(clause.text, first, TOOL_MORE, context, outright, clause.before)


def _sentences(text: str) -> list[str]:
    """A text's sentences; the dot of a title or an abbreviation ("Dr. Smith", "Best Insurance Co. policy") ends
    none (it is kept, hidden, until the sentence is cut into clauses)."""
    hidden = _ABBREVIATION.sub(lambda m: m.group(0)[:-1] + _DOT, text.strip())
    return [s for s in re.split(r"(?<=[.!?;])\s+", hidden) if s.strip()]


_DOT = "\u2024"  # ONE DOT LEADER: a dot that ends no sentence and cuts no clause
_ABBREVIATION = re.compile(
    r"\b(?:Dr|Mr|Mrs|Ms|Mx|Prof|Sr|Jr|St|Ave|Inc|Co|Corp|Ltd|Mt|No|vs|etc|approx|Sra|Srta|Dra)\.(?=\s+[a-z0-9])"
    r"|\b(?:Dr|Mr|Mrs|Ms|Prof|Sra|Dra)\.(?=\s+[A-Z])"
)


# a clause that tells what has been done, in the perfect or the past ("I've just set up a shop", "I recently
# bought a desktop", "acabei de comprar"), not what is still to do: it names actions only as refers
_DONE = re.compile(
    r"\s*(?:(?:and|but|so|also)\s+)?"
    r"(?:(?:i|we)\s*(?:'ve|have|had)\s+(?:just\s+|recently\s+|already\s+|finally\s+|also\s+)?"
    r"|(?:i|we)\s+(?:just|recently|already|finally)\s+)"
    r"(?!been\s+(?:looking|meaning|planning|thinking|hoping|wanting|wishing|dreaming|craving|considering|"
    r"contemplating|waiting)\b|"
    r"(?:decided|selected|picked|opted|planned|wanted|needed|hoped|wished|intended|considered)\b)"
    r"(?:been\s+\w+ing|\w+ed|got|found|heard|had|made|bought|sold|written|done|seen|set|paid|sent|read|taken|"
    r"built|begun|won|lost|given|put|left)\b(?!\s+to\b)"
    r"|\s*(?:eu |nos |yo |nosotros )?(?:acabei de|acabamos de|acabo de|ya he|ya hemos)\s"
)
# a clause that gives the purpose of another ("so that …", ", to determine the best shipping method") or the time
# it happens in ("during my stay", "while on the way home"): it asks for nothing of its own
_PURPOSE = re.compile(
    r"^\s*(?:(?:and|but|or)\s+)?(?:so that|so we can|so i can|(?:in order )?to|para que|de modo que|"
    r"during|while|durante|enquanto|mientras)\b"
)


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
    plain = re.sub(_LEAD, "", plain)  # "but I'm a bit concerned about …"
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
    action before or after another ("book the taxi once the payment is done"). A piece set off by commas that opens
    with a preposition ("sell my painting, 'example.jpg', on eBay") or is only a value (a name in quotes, a year)
    completes the clause before it: it says where, how or what, and asks for nothing of its own."""
    out: list[str] = []
    for piece in cut(sentence):
        for part in _SUBORDINATE.split(piece.replace(_DOT, ".")):
            part = part.strip()
            if not part:
                continue
            if out and _ADJUNCT.match(fold(part)):
                out[-1] = f"{out[-1]}, {part}"
            else:
                out.append(part)
    return out


# a piece that only completes the clause before it: a prepositional phrase, or a value with no words around it
_ADJUNCT = re.compile(
    r"\s*(?:(?:on|via|from|at|in|with|by|through|using|em|no|na|nos|nas|com|por|en|con|desde)\s(?!(?:the )?"
    r"(?:meantime|meanwhile|midst|mean time|same time|other hand|end|addition|case|order|fact|particular|"
    r"general|short|turn|total)\b)|['\"‘“][^'\"’”]*['\"’”]\s*$|[\d\s./:-]+$)"
)
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
