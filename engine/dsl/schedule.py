"""When a cron trigger fires: 5-field cron (and the ``@hourly``-style aliases) in an IANA time zone.

A schedule is read in the zone's wall-clock time, and daylight saving time is handled as cron users expect (the
rule Vixie cron follows):

- a schedule with **fixed hours** (``30 1 * * *``) fires once per matching day: on the spring-forward day a time
  that does not exist (01:30 in a gap from 01:00 to 02:00) fires at the end of the gap (02:00); on the fall-back
  day a time that happens twice fires at its first occurrence only;
- a schedule whose **hour field is a wildcard** (``*/15 * * * *``, ``0 * * * *``) follows real time: minutes that
  do not exist are skipped (the schedule carries on after the gap) and the repeated hour fires again.

Pure functions of their arguments (no clock): the scheduler passes the times in.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MARGIN = timedelta(hours=27)  # wall-clock time is within 26 h of UTC; one more for the DST hour
_WINDOWS = (timedelta(days=2), timedelta(days=40), timedelta(days=400), timedelta(days=366 * 8))


def expand(expression: str) -> str:
    """The 5-field form of a cron expression (aliases expanded)."""
    text = expression.strip()
    return ALIASES.get(text.lower(), text)


def fires_between(expression: str, timezone: str, after: datetime, until: datetime) -> list[datetime]:
    """Every fire time ``t`` with ``after < t <= until``, as aware UTC datetimes, in order, without duplicates."""
    zone = ZoneInfo(timezone)
    cron = expand(expression)
    follows_real_time = cron.split()[1].startswith("*")
    start = (after.astimezone(zone) - _MARGIN).replace(tzinfo=None)
    stop = (until.astimezone(zone) + _MARGIN).replace(tzinfo=None)
    found: set[datetime] = set()
    for wall in _walls(cron, start, stop):
        for instant in _instants(wall, zone, follows_real_time):
            if after < instant <= until:
                found.add(instant)
    return sorted(found)


def next_fire(expression: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire time after ``after`` (None if the schedule never fires within 8 years)."""
    for window in _WINDOWS:
        fires = fires_between(expression, timezone, after, after + window)
        if fires:
            return fires[0]
    return None


def _walls(cron: str, start: datetime, stop: datetime) -> Iterator[datetime]:
    """The naive wall-clock times the expression matches, from ``start`` (exclusive) to ``stop``."""
    it = croniter(cron, start)
    while True:
        wall: datetime = it.get_next(datetime)
        if wall > stop:
            return
        yield wall


def _instants(wall: datetime, zone: ZoneInfo, follows_real_time: bool) -> list[datetime]:
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    exists = first.astimezone(zone).replace(tzinfo=None) == wall
    if not exists:  # in a spring-forward gap
        return [] if follows_real_time else [_gap_end(wall, zone)]
    if first != second:  # in the repeated hour of a fall-back day
        return [first, second] if follows_real_time else [first]
    return [first]


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a spring-forward gap ends: the first wall-clock minute after ``wall`` that exists."""
    probe = wall
    for _ in range(24 * 60):
        probe += timedelta(minutes=1)
        instant = probe.replace(tzinfo=zone).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == probe:
            return instant
    raise ValueError(f"no wall-clock time after {wall} exists in {zone}")  # pragma: no cover - no such zone
