"""Concepts, for Jules's offline planner: everyday and automation words grouped by what they mean, so that a request
and a catalog written in different words still meet ("purchase" and "buy", "reserve" and "book", "cab" and "taxi").

A general language resource, like a small thesaurus, and not a list made for any data set or catalog: it never
names a tool. Three kinds of knowledge:

- ``SYNONYMS``: words that mean the same thing, folded onto one head word (both the catalog and the request are
  read through them);
- ``BROADER``: what a word is an instance of (hypernyms): a well-known service, brand or thing named as what it is
  ("Uber" is a taxi ride, "Visa" a credit card, "pizza" food); a request carries both the word and its broader
  concepts, at a lower weight, so the catalog entry about taxis is found without the catalog knowing Uber;
- ``LIGHT``: words that say little on their own ("get", "make", "specific", "day", "help"): light verbs, fillers and
  politeness; they only break ties.

Portuguese and Spanish arrive already carried to English by copilot.lexicon.
"""

from __future__ import annotations

import re
from functools import lru_cache

from copilot.lexicon import STOP, TRANSLATE, fold, stem

# head word -> words that mean the same (any inflection: every word is reduced to its root first)
SYNONYMS: dict[str, tuple[str, ...]] = {
    # commerce and money
    "buy": ("purchase", "shop", "shopping", "acquire"),
    "sell": ("resell", "auction", "sale", "resale"),
    "pay": ("payment", "settle", "repay", "payoff"),
    "bill": ("invoice", "utility", "utilities"),
    "stock": ("shares", "equity", "equities", "ticker"),
    "bank": ("banking",),
    "transfer": ("wire", "remit"),
    "fund": ("money", "cash"),
    "insurance": ("insure", "insurer", "coverage"),
    "tax": ("taxes",),
    "price": ("cost", "quote"),
    # reservations and travel
    "book": ("reserve", "reservation", "booking"),
    "rent": ("rental", "hire", "lease"),
    "flight": ("fly", "airplane", "airline", "airfare"),
    "hotel": ("motel", "hostel", "inn", "lodging", "accommodation", "resort"),
    "restaurant": ("bistro", "diner", "eatery", "cafe", "brasserie", "trattoria", "dine", "dining"),
    "taxi": ("cab", "rideshare", "ride"),
    "car": ("vehicle", "automobile"),
    "drive": ("driving", "chauffeur", "autopilot"),
    "autonomous": ("driverless", "self-driving", "selfdriving"),
    "trip": ("journey", "travel", "voyage"),
    # communication
    "email": ("mail", "e-mail", "inbox"),
    "sms": ("txt", "texting"),
    "message": ("msg", "dm"),
    "call": ("dial", "ring", "telephone"),
    "phone": ("cellphone", "mobile", "smartphone"),
    "meeting": ("conference", "meetup", "webinar", "standup"),
    "organize": ("organise", "schedule", "host", "convene"),
    "attend": ("join", "participate"),
    "share": ("repost", "retweet"),
    "social": ("socially",),
    "note": ("memo", "jot", "notepad"),
    "record": ("recording", "dictate", "dictation"),
    "audio": ("sound", "voice-memo"),
    # information
    "search": ("lookup", "google", "research", "browse", "query"),
    "news": ("headline", "headlines", "article", "articles"),
    "weather": ("forecast", "temperature", "rain", "snow", "sunny"),
    "summarize": ("summarise", "sum-up", "digest", "recap"),
    "translate": ("translation",),
    # media
    "music": ("song", "songs", "track", "tune", "playlist", "album", "mp3"),
    "movie": ("film", "cinema", "flick", "mp4"),
    "play": ("stream",),
    # home, work, study, health, law
    "clean": ("tidy", "vacuum", "sweep", "mop", "scrub", "dust"),
    "housework": ("chore", "chores", "housekeeping", "household"),
    "robot": ("roomba", "robotic"),
    "install": ("reinstall",),
    "software": ("app", "apps", "suite"),
    "document": ("doc", "docs", "pdf", "paperwork"),
    "print": ("printout", "printer"),
    "alarm": ("wake", "wakeup"),
    "job": ("position", "vacancy", "career", "employment"),
    "apply": ("application",),
    "course": ("class", "lesson", "module", "degree"),
    "enroll": ("enrol", "register", "signup", "enrollment", "enrolment"),
    "university": ("college", "school", "campus"),
    "borrow": ("loan", "checkout"),
    "doctor": ("physician", "dr", "gp", "clinic", "checkup", "medic"),
    "disease": ("illness", "symptom", "sickness", "ailment", "flu", "pain", "sick"),
    "lawyer": ("attorney", "solicitor", "counsel", "barrister"),
    "legal": ("law", "lawsuit", "litigation", "dispute", "court"),
    "consult": ("consultation", "advice", "advise"),
    "package": ("parcel", "shipment"),
    "deliver": ("delivery", "ship", "courier", "dispatch"),
    "food": ("pizza", "burger", "sushi", "takeout", "takeaway", "meal", "cuisine", "dinner", "lunch", "breakfast"),
    # automation
    "fetch": ("retrieve", "download", "pull", "grab", "load"),
    "classify": ("categorize", "categorise", "triage"),
    "notify": ("alert", "ping"),
}
# a word -> what it is an instance of (read with it, at a lower weight): services, brands and things by kind
BROADER: dict[str, tuple[str, ...]] = {
    # online shops and marketplaces
    **dict.fromkeys(
        ("amazon", "ebay", "taobao", "etsy", "aliexpress", "walmart", "shopify"), ("shop", "online", "store")
    ),
    # ride hailing and food delivery ("uber eats" is read as one word first)
    **dict.fromkeys(("uber", "lyft", "didi", "bolt", "grab-ride"), ("taxi", "ride", "platform")),
    **dict.fromkeys(
        ("ubereats", "doordash", "grubhub", "deliveroo", "meituan", "glovo", "justeat"), ("food", "deliver")
    ),
    # social networks, search engines, meeting and call apps
    **dict.fromkeys(
        ("twitter", "facebook", "instagram", "wechat", "weibo", "linkedin", "tiktok", "reddit", "mastodon", "threads"),
        ("social", "network", "share"),
    ),
    "tweet": ("share", "social", "network"),
    "share": ("post",),
    **dict.fromkeys(("bing", "baidu", "duckduckgo", "yahoo", "google-search"), ("search", "engine")),
    "google": ("search", "engine"),
    **dict.fromkeys(("zoom", "teams", "webex", "meet", "skype"), ("meeting", "online", "video", "software")),
    "facetime": ("video", "call"),
    "whatsapp": ("message", "call"),
    # payment cards, banks, software, shows
    **dict.fromkeys(("visa", "mastercard", "amex", "discover-card"), ("credit", "card")),
    **dict.fromkeys(("paypal", "venmo", "revolut"), ("pay", "bank")),
    **dict.fromkeys(
        ("photoshop", "excel", "word-processor", "chrome", "firefox", "slack-app", "vscode", "antivirus"),
        ("software",),
    ),
    **dict.fromkeys(("netflix", "hulu", "disney"), ("movie", "play")),
    **dict.fromkeys(("spotify", "itunes", "soundcloud"), ("music", "play")),
    "gmail": ("email",),
    "hilton": ("hotel",),
    "marriott": ("hotel",),
    "airbnb": ("hotel", "rent"),
    "dhl": ("deliver", "package"),
    "fedex": ("deliver", "package"),
    "ups": ("deliver", "package"),
    # things by kind: what one does with them
    "room": ("hotel",),
    "stay": ("hotel",),
    "table": ("restaurant",),
    "watch": ("movie", "play"),
    "listen": ("music", "play"),
    "invest": ("stock",),
    "investment": ("stock",),
    "tidy": ("housework",),
    "clean": ("housework",),
    "laundry": ("housework", "clean"),
    "dishes": ("housework", "clean"),
    "floor": ("housework", "clean"),
    "rent": ("book",),
    "text": ("sms", "message"),
    "call": ("voice",),  # a call that names no medium is a voice call
    "install": ("software",),
    "uninstall": ("software",),
    "electricity": ("bill",),
    "internet": ("bill",),
    "card": ("credit",),
    "dr": ("doctor",),
    "checkup": ("doctor",),
    "headphone": ("product", "buy"),
    "iphone": ("product", "phone"),
    "laptop": ("product", "computer"),
    "novel": ("book",),
    "trip-route": ("trip", "flight"),  # a trip from one city to another is, by default, a flight (see _ROUTE)
    "autonomous": ("drive", "auto"),
}
# several words read as one, before anything else
PHRASES: dict[str, str] = {
    "uber eats": "ubereats",
    "just eat": "justeat",
    "under the weather": "sick",
    "self driving": "autonomous",
    "self-driving": "autonomous",
    "set up": "arrange",
    "sign up": "signup",
    "look up": "lookup",
    "wake me up": "wakeup",
    "text message": "sms",
    "phone call": "call",
    "voice memo": "voice-memo",
    "write down": "note",
    "jot down": "note",
    "pay off": "payoff",
    "sum up": "sum-up",
    "get rid of": "sell",
    "in order": "in-order",  # "in order to", "my affairs in order": no one orders anything
    "keep updated": "notify",  # "keep me updated", "keep myself posted": be told, not update a thing
    "keep posted": "notify",
    "keep informed": "notify",
    "google meet": "meet",
    "microsoft office": "excel",
    "ms office": "excel",
    "microsoft teams": "teams",
}
# words that carry little meaning on their own: light verbs, fillers, politeness, time words
LIGHT: frozenset[str] = frozenset(
    {
        "get",
        "make",
        "do",
        "take",
        "have",
        "let",
        "put",
        "give",
        "go",
        "help",
        "assist",
        "need",
        "want",
        "like",
        "love",
        "would",
        "could",
        "can",
        "will",
        "should",
        "may",
        "might",
        "must",
        "specific",
        "certain",
        "particular",
        "thing",
        "stuff",
        "task",
        "errand",
        "day",
        "today",
        "tomorrow",
        "time",
        "busy",
        "plan",
        "manage",
        "handle",
        "arrange",
        "sort",
        "ensure",
        "also",
        "first",
        "next",
        "finally",
        "lastly",
        "after",
        "before",
        "later",
        "ready",
        "prepare",
        "new",
        "good",
        "great",
        "favorite",
        "favourite",
        "able",
        "sure",
        "really",
        "way",
        "lot",
        "bit",
        "quite",
        "something",
        "one",
        "all",
        "what",
        "how",
        "about",
        "there",
        "here",
        "when",
        "while",
        "once",
        "not",
        "don't",
        "i'm",
        "i'd",
        "i'll",
        "i've",
        "etc",
        "eg",
        "up",
        "out",
        "over",
        "use",
        "using",
        "which",
        "who",
        "was",
        "were",
        "been",
        "am",
        "has",
        "had",
        "did",
        "does",
        "done",
        "his",
        "her",
        "him",
        "she",
        "he",
        "their",
        "mine",
        "own",
        "very",
        "much",
        "more",
        "most",
        "well",
        "soon",
        "now",
        "right",
        "away",
        "name",
        "number",
        "see",
        "find",
        "look",
        "feel",
        "think",
        "know",
        "say",
        "come",
        "keep",
        "try",
        "start",
        "wish",
        "hope",
        "seek",
        "consider",
        "mind",
    }
)
# word forms that are light although their root is not: "a document called X" names it, it calls no one
LIGHT_FORMS: frozenset[str] = frozenset({"called", "named", "titled", "entitled", "labelled"})
LIGHT_WEIGHT = 0.15  # a light word's share of a full word
BROADER_WEIGHT = 0.6
MEANS_WEIGHT = 2.0
HEAD_WEIGHT = 1.5  # the means an action names ("via SMS") decides between actions that do the same thing
_MEANS = frozenset({"via", "through", "using", "por", "mediante"})
_VALUE = re.compile(
    r"(?<![\w&])#[\w-]+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b|(?<![/\w])[a-z][\w-]*(?:\.[a-z][\w-]*){2,}(?![\w/])"
)  # a broader concept's share of the word that implies it
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def root(word: str) -> str:
    """``stem`` plus the English spelling rules it misses: a plural "-es" that is only "-s" ("notes" → "note"), a
    doubled final consonant ("shopping" → "shop", "planned" → "plan") and a silent final e ("reserve" and
    "reserving" → "reserv")."""
    base = stem(word)
    if word.endswith("es") and base == word[:-2] and not base.endswith(("s", "x", "z", "ch", "sh")):
        base = word[:-1]  # "notes" is a plural of "note", not of "not"; "boxes" and "dishes" lose their "es"
    if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "aeiouslz":
        base = base[:-1]
    if len(base) > 4 and base.endswith("e") and not base.endswith("ee"):
        base = base[:-1]
    return base


@lru_cache(maxsize=1)
def _heads() -> dict[str, str]:
    """A word's root -> its group's head word; a head's own root wins over a member whose root collides."""
    heads = {root(head): head for head in SYNONYMS if root(head) not in _light()}  # "news" is not "new"
    for head, members in SYNONYMS.items():
        for word in members:
            heads.setdefault(root(word), head)
    return heads


@lru_cache(maxsize=1)
def _exact() -> dict[str, str]:
    """A head or member as written -> its head: "shares" is stock though "share" is sharing, "news" is not "new"."""
    exact = {word: head for head, members in SYNONYMS.items() for word in members}
    exact.update((head, head) for head in SYNONYMS)
    return exact


@lru_cache(maxsize=1)
def _broader() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for word, kinds in BROADER.items():
        key = concept(word)
        out[key] = tuple(dict.fromkeys(concept(k) for k in kinds if concept(k) != key))
    return out


@lru_cache(maxsize=1)
def _light() -> frozenset[str]:
    return frozenset(root(w) for w in LIGHT)


def _phrase_pattern(phrase: str) -> str:
    """A phrase as a pattern that also finds its verb inflected and split by a pronoun ("setting it up")."""
    first, _, rest = phrase.partition(" ")
    if not rest:
        return re.escape(first)
    return (
        re.escape(first)
        + r"(?:s|es|d|ed|ing|ting|ted|ping|ped)?"
        + r"(?:\s+(?:it|them|me|this|that|us|him|her|everything|myself|ourselves|yourself))?\s+"
        + re.escape(rest)
    )


_PHRASES = [(re.compile(r"\b" + _phrase_pattern(p) + r"\b"), word) for p, word in PHRASES.items()]
# a trip with a start and an end ("a trip from New York to Tokyo", "uma viagem de Lisboa para Paris"): a route
_ROUTE = re.compile(
    r"\b(?:trip|journey|voyage|travel)\s+(?=from\s+[a-z][\w .'-]{0,40}?\s+to\s+[a-z])"
    r"|\b(?:viagem|viaje)\s+(?=(?:de|desde)\s+[a-z][\w .'-]{0,40}?\s+(?:para|a|hasta)\s+[a-z])"
)


def concept(word: str) -> str:
    """A folded word's concept: its root, or the head of its synonym group."""
    if word in _exact():
        return _exact()[word]
    key = root(word)
    return _heads().get(key, key)


def terms(text: str, broaden: bool = True, head: bool = False) -> list[tuple[int, str, float]]:
    """See ``_terms``: a catalog's texts are read again for every request, so they are read once."""
    return list(_terms(text, broaden, head))


@lru_cache(maxsize=4096)
def _terms(text: str, broaden: bool, head: bool) -> tuple[tuple[int, str, float], ...]:
    """The concepts a text carries, each with its word's position and weight: full for a content word, low for a
    light one, more for the means an action names; with ``broaden``, a word's broader concepts follow it at a
    lower weight; with ``head``, the text is a clause, and the word it opens with, when it is a content word (the verb
    of an order: "summarise the posts"), says most."""
    plain = _VALUE.sub(" ", fold(text))  # a channel's or an address's name is a value, not what the text means
    for pattern, word in _PHRASES:
        plain = pattern.sub(word, plain)
    plain = _ROUTE.sub("trip-route ", plain)
    light, broader = _light(), _broader()
    out: list[tuple[int, str, float]] = []
    position = 0
    means = -1  # the position up to which words name the means of an action ("via SMS", "through the GitHub API")
    for raw in _TOKEN.findall(plain):
        if raw in _MEANS:
            means = position + 3
            continue
        word = TRANSLATE.get(raw, raw)
        known = word in PHRASES.values() or word in _exact() or root(word) in _heads() or root(word) in _broader()
        parts = [word] if known else word.replace("-", " ").replace("'", " ").split()
        for part in parts:
            if part in STOP or len(part) < 2:
                continue
            key = concept(part)
            weight = LIGHT_WEIGHT if key in light or part in LIGHT or part in LIGHT_FORMS else 1.0
            if weight == 1.0 and position <= means:
                weight = MEANS_WEIGHT
            elif weight == 1.0 and head and position == 0:  # an order opens with its verb
                weight = HEAD_WEIGHT
            out.append((position, key, weight))
            if broaden and weight >= 1.0:
                out.extend((position, kind, BROADER_WEIGHT) for kind in broader.get(key, ()))
            position += 1
    return tuple(out)


def is_light(key: str) -> bool:
    return key in _light()
