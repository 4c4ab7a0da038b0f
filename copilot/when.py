"""When a described automation runs: triggers read from plain language (English, Portuguese, Spanish), offline.

Part of Jules's offline planner. Schedules ("every weekday at 8:30 Lisbon time", "todo dia às 18h", "cada lunes a
las 9", "twice a day at 9 and 17", "every 15 minutes", "weekly") become a 5-field cron and, when the text names
a place or a zone, an IANA time zone; places are looked up in the tz database's own city names (so any city it
knows works), with the few exonyms and region names people write instead (Lisboa, Nueva York, Pacific).
``exact`` says whether the text fixed the whole schedule or a default filled a gap (a vague "each morning" is
08:00). Events are dotted subjects the text names; webhooks are a service telling us something happened;
"manual", "when I run it" and pasted input mean a manual trigger. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import available_timezones

from copilot.lexicon import fold

# weekday numbers (cron: 0 = Sunday) by the names people write, in the three languages
WEEKDAYS = {
    **dict.fromkeys(["sunday", "sundays", "domingo", "domingos"], 0),
    **dict.fromkeys(["monday", "mondays", "segunda", "segundas", "lunes"], 1),
    **dict.fromkeys(["tuesday", "tuesdays", "terca", "tercas", "martes"], 2),
    **dict.fromkeys(["wednesday", "wednesdays", "quarta", "quartas", "miercoles"], 3),
    **dict.fromkeys(["thursday", "thursdays", "quinta", "quintas", "jueves"], 4),
    **dict.fromkeys(["friday", "fridays", "sexta", "sextas", "viernes"], 5),
    **dict.fromkeys(["saturday", "saturdays", "sabado", "sabados"], 6),
}
# where people name a region or use their own language's name for a tz city
ZONE_NAMES = {
    "pacific": "America/Los_Angeles",
    "eastern": "America/New_York",
    "central": "America/Chicago",
    "mountain": "America/Denver",
    "lisboa": "Europe/Lisbon",
    "londres": "Europe/London",
    "nueva york": "America/New_York",
    "nova iorque": "America/New_York",
    "cidade do mexico": "America/Mexico_City",
    "ciudad de mexico": "America/Mexico_City",
    "utc": "UTC",
    "gmt": "UTC",
}
VAGUE_HOURS = {
    "morning": 8,
    "manha": 8,
    "manana": 8,
    "noon": 12,
    "afternoon": 14,
    "tarde": 14,
    "evening": 18,
    "noite": 20,
    "noche": 20,
    "night": 20,
}
_WEEKDAY_WORDS = r"(?:weekday|weekdays|business day|workday|dia util|dias uteis|dia habil|dias habiles)"
_TIME = re.compile(r"(?:at|as|a las|a la|@)?\s*\b(\d{1,2})(?:[:h.](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.|h|hrs|horas|hs)?\b")
_SUBJECT = re.compile(r"(?<![\w/@.])([a-z][a-z0-9_-]*(?:\.[a-z0-9_*>-]+){1,5})(?![\w@/])")
_URLISH = re.compile(r"https?://\S+|\S+@\S+")


@dataclass(frozen=True)
class Trigger:
    type: str  # cron | webhook | event | manual
    cron: str | None = None
    timezone: str | None = None
    exact: bool = True
    subject: str | None = None
    source: str | None = None


def triggers(text: str, services: tuple[str, ...] = ()) -> list[Trigger]:
    """The triggers a request describes (manual when it describes none). ``services``: names of outside services
    the catalog knows (webhook senders), lower case."""
    plain = fold(text)
    found: list[Trigger] = []
    schedule = cron_of(plain)
    if schedule is not None:
        found.append(schedule)
    subject = event_subject(plain)
    if subject is not None and schedule is None:
        found.append(Trigger("event", subject=subject))
    elif schedule is None and _webhook(plain, services):
        found.append(Trigger("webhook", source=_sender(plain, services)))
    if is_manual(plain) or not found:
        found.append(Trigger("manual"))
    return found


# --- schedules ----------------------------------------------------------------------------------------------


def cron_of(plain: str) -> Trigger | None:
    """A cron trigger from a folded sentence, or None when it states no schedule."""
    interval = re.search(
        r"\bevery (\d+) (minute|minutes|min|hour|hours)\b|\ba cada (\d+) (minutos?|horas?)\b"
        r"|\bcada (\d+) (minutos?|horas?)\b",
        plain,
    )
    if interval:
        amount = int(next(g for g in interval.groups()[0::2] if g))
        unit = next(g for g in interval.groups()[1::2] if g)
        cron = f"*/{amount} * * * *" if unit.startswith("min") else f"0 */{amount} * * *"
        return Trigger("cron", cron=cron, timezone=zone_of(plain), exact=True)
    if re.search(r"\b(every hour|hourly|de hora em hora|cada hora|a cada hora)\b", plain):
        return Trigger("cron", cron="0 * * * *", timezone=zone_of(plain), exact=True)
    days = _days(plain)
    daily = re.search(
        r"\b(every day|each day|daily|every (morning|evening|night|afternoon)|each (morning|evening)"
        r"|todo dia|todos os dias|diariamente|todos los dias|cada dia|cada manana|toda manha|todas as manhas"
        r"|twice a day|two times a day|duas vezes por dia|dos veces al dia)\b",
        plain,
    )
    weekly = re.search(
        r"\b(weekly|every week|once a week|semanalmente|toda semana|todas as semanas|cada semana"
        r"|todas las semanas)\b",
        plain,
    )
    monthly = re.search(r"\b(monthly|every month|mensalmente|todo mes|todos os meses|cada mes|mensualmente)\b", plain)
    if days is None and not (daily or weekly or monthly):
        return None
    hours, minute, stated = _times(plain)
    exact = stated
    if not hours:
        vague = next((h for word, h in VAGUE_HOURS.items() if re.search(rf"\b{word}\b", plain)), None)
        hours, minute = [vague if vague is not None else (9 if weekly or monthly else 8)], 0
    hour_field = ",".join(str(h) for h in sorted(set(hours)))
    if monthly and days is None:
        day_of_month = re.search(
            r"\b(?:on the |no dia |el dia )?(\d{1,2})(?:st|nd|rd|th|o|º)?\b(?= of (?:each|every) month)", plain
        )
        dom = day_of_month.group(1) if day_of_month else "1"
        return Trigger(
            "cron",
            cron=f"{minute} {hour_field} {dom} * *",
            timezone=zone_of(plain),
            exact=exact and day_of_month is not None,
        )
    if weekly and days is None:
        return Trigger("cron", cron=f"{minute} {hour_field} * * 1", timezone=zone_of(plain), exact=False)
    dow = "*" if days is None else days
    return Trigger("cron", cron=f"{minute} {hour_field} * * {dow}", timezone=zone_of(plain), exact=exact)


def _days(plain: str) -> str | None:
    """The cron weekday field a sentence states (None: every day)."""
    if re.search(
        rf"\b(every|each|on|todos? os|todas? as|cada|de)\s+{_WEEKDAY_WORDS}\b|\b{_WEEKDAY_WORDS}s?\b"
        r"|\bmon(day)?\s*(-|to|through|a)\s*fri(day)?\b|\bsegunda a sexta\b|\blunes a viernes\b",
        plain,
    ):
        return "1-5"
    named = [WEEKDAYS[w] for w in re.findall(r"\b(" + "|".join(WEEKDAYS) + r")\b", plain)]
    if not named:
        return None
    return ",".join(str(d) for d in sorted(set(named)))


def _times(plain: str) -> tuple[list[int], int, bool]:
    """The hours (several: "at 9 and 17") and minute a sentence states; whether it stated them."""
    scrubbed = _URLISH.sub(" ", plain)
    hours: list[int] = []
    minute = 0
    for match in re.finditer(
        r"(?:\bat\b|\bas\b|\ba las\b|\ba la\b|@|\band\b|\be\b|\by\b|,)\s*"
        r"(\d{1,2})(?:[:h.](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.|h\b|hs\b|horas\b)?",
        scrubbed,
    ):
        hour, mins, suffix = int(match.group(1)), match.group(2), match.group(3)
        if match.group(0).lstrip().startswith((",", "and", "e ", "y ")) and not hours:
            continue  # "and 5" only continues a time list
        if suffix in ("pm", "p.m.") and hour < 12:
            hour += 12
        if suffix in ("am", "a.m.") and hour == 12:
            hour = 0
        if hour > 23 or (mins is not None and int(mins) > 59):
            continue
        hours.append(hour)
        if mins is not None:
            minute = int(mins)
    standalone = re.search(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b|\b(\d{1,2})h(\d{2})?\b", scrubbed)
    if not hours and standalone:
        if standalone.group(1):
            hour = int(standalone.group(1)) % 12 + (12 if standalone.group(3) == "pm" else 0)
            minute = int(standalone.group(2) or 0)
        else:
            hour, minute = int(standalone.group(4)), int(standalone.group(5) or 0)
        hours.append(hour)
    return hours, minute, bool(hours)


# --- time zones -----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _cities() -> dict[str, str]:
    """The tz database's places ("lisbon" -> Europe/Lisbon, "sao paulo" -> America/Sao_Paulo)."""
    places: dict[str, str] = {}
    for zone in sorted(available_timezones()):
        if "/" not in zone or zone.startswith(("Etc/", "SystemV/", "US/", "Canada/", "Brazil/", "Mexico/", "Chile/")):
            continue
        place = fold(zone.rsplit("/", 1)[1].replace("_", " "))
        places.setdefault(place, zone)
    return places


def zone_of(plain: str) -> str | None:
    """The IANA zone a folded sentence names ("Lisbon time", "horario de Sao Paulo", "2pm Pacific"), if any."""
    for name, zone in sorted(ZONE_NAMES.items(), key=lambda kv: -len(kv[0])):
        if re.search(rf"\b{re.escape(name)}\b", plain):
            return zone
    for place, zone in sorted(_cities().items(), key=lambda kv: -len(kv[0])):
        if len(place) > 3 and re.search(rf"\b{re.escape(place)}\b", plain):
            return zone
    explicit = re.search(r"\b([A-Z][a-z]+/[A-Z][A-Za-z_]+)\b", plain)
    return explicit.group(1) if explicit else None


# --- events, webhooks, manual -----------------------------------------------------------------------------------


def event_subject(plain: str) -> str | None:
    """A dotted subject the request names as what happens ("when orders.created comes in"); one the flow itself
    publishes ("publishes it as reports.ready") is an output, not what starts it."""
    scrubbed = _URLISH.sub(" ", plain)
    for match in _SUBJECT.finditer(scrubbed):
        subject = match.group(1).rstrip(".")
        if re.search(r"\.(com|org|net|io|json|yaml|yml|csv|pdf|py|js|so|pt|br|mx)$", subject):
            continue  # a file or a host
        before = scrubbed[max(0, match.start() - 40) : match.start()]
        if re.search(
            r"\b(publish|publishes|republish|republishes|emit|emits|publica|publique|publicar)\b[^.]*$", before
        ):
            continue
        return subject
    return None


def _webhook(plain: str, services: tuple[str, ...]) -> bool:
    if re.search(r"\bweb ?hooks?\b", plain):
        return True
    when = re.search(r"\b(when|whenever|every time|on every|each time|quando|sempre que|cuando|cada vez que)\b", plain)
    if not when:
        return False
    rest = plain[when.end() :]
    happens = re.search(
        r"\b(sends?|tells?|notif|opens?|submits?|fills?|rellene|preench|comes? in|arrives?|chega|llega|is created|"
        r"new|nov[oa]s?|nuev[oa]s?|pushes|push|paid|pays|signs? up|responds?|response|replies|books?|orders?)\b",
        rest,
    )
    return happens is not None or any(re.search(rf"\b{re.escape(s)}\b", rest) for s in services)


def _sender(plain: str, services: tuple[str, ...]) -> str | None:
    for service in services:
        if re.search(rf"\b{re.escape(service)}\b", plain):
            return service
    return None


def is_manual(plain: str) -> bool:
    """Whether a folded text asks to be run by hand (\"let me run it\", \"on demand\", \"eu dou o texto\")."""
    return (
        re.search(
            r"\b(manual(ly)?|on demand|when i (run|hit|click|trigger)|whenever i (run|hit|click|trigger)|hit run|"
            r"let me (run|trigger|start)|i can run|run (it )?from the cli|i paste|i give|takes? .{0,30}as input|"
            r"eu dou|quando eu (rodar|executar)|fluxo manual|cuando yo (ejecute|lo ejecute)|flujo manual)\b",
            plain,
        )
        is not None
    )
