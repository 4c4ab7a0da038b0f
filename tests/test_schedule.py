"""Cron fire times in IANA time zones, across daylight saving time (engine.dsl.schedule)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.dsl.schedule import expand, fires_between, next_fire


def local(fires: list[datetime], zone: str) -> list[str]:
    return [f.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M%z") for f in fires]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "zone", "start", "end", "expected"),
    [
        # Lisbon springs forward on 2026-03-29 at 01:00 (to 02:00): 01:30 does not exist, fires when the gap ends
        (
            "30 1 * * *",
            "Europe/Lisbon",
            utc(2026, 3, 28, 12),
            utc(2026, 3, 30, 12),
            ["03-29 02:00+0100", "03-30 01:30+0100"],
        ),
        # and falls back on 2026-10-25 at 02:00 (to 01:00): 01:30 happens twice, a fixed-hour schedule fires once
        (
            "30 1 * * *",
            "Europe/Lisbon",
            utc(2026, 10, 24, 12),
            utc(2026, 10, 26, 12),
            ["10-25 01:30+0100", "10-26 01:30+0000"],
        ),
        # an every-30-minutes schedule follows real time: no fire in the gap, both passes through the repeated hour
        (
            "*/30 * * * *",
            "Europe/Lisbon",
            utc(2026, 3, 29, 0),
            utc(2026, 3, 29, 2),
            ["03-29 00:30+0000", "03-29 02:00+0100", "03-29 02:30+0100", "03-29 03:00+0100"],
        ),
        (
            "*/30 * * * *",
            "Europe/Lisbon",
            utc(2026, 10, 24, 23, 30),
            utc(2026, 10, 25, 2, 0),
            ["10-25 01:00+0100", "10-25 01:30+0100", "10-25 01:00+0000", "10-25 01:30+0000", "10-25 02:00+0000"],
        ),
        # New York springs forward on 2026-03-08 at 02:00 (to 03:00) and falls back on 2026-11-01 at 02:00
        (
            "30 2 * * *",
            "America/New_York",
            utc(2026, 3, 7, 12),
            utc(2026, 3, 9, 12),
            ["03-08 03:00-0400", "03-09 02:30-0400"],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            utc(2026, 10, 31, 12),
            utc(2026, 11, 2, 12),
            ["11-01 01:30-0400", "11-02 01:30-0500"],
        ),
        (
            "@hourly",
            "America/New_York",
            utc(2026, 11, 1, 4),
            utc(2026, 11, 1, 8),
            ["11-01 01:00-0400", "11-01 01:00-0500", "11-01 02:00-0500", "11-01 03:00-0500"],
        ),
        (
            "0 9 * * MON-FRI",
            "America/New_York",
            utc(2026, 3, 6, 0),
            utc(2026, 3, 10, 0),
            ["03-06 09:00-0500", "03-09 09:00-0400"],
        ),  # Friday in EST, Monday in EDT: 09:00 local both times
    ],
)
def test_fire_times_across_daylight_saving_time(
    cron: str, zone: str, start: datetime, end: datetime, expected: list[str]
) -> None:
    assert local(fires_between(cron, zone, start, end), zone) == expected


def test_a_day_of_fires_at_every_30_minutes_is_48_in_real_time_even_on_dst_days() -> None:
    for zone, day in (("Europe/Lisbon", (2026, 3, 29)), ("Europe/Lisbon", (2026, 10, 25))):
        fires = fires_between("*/30 * * * *", zone, utc(*day, 0), utc(*day, 0).replace(day=day[2] + 1))
        gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(fires)}
        assert len(fires) == 48 and gaps == {1800.0}


def test_next_fire_and_aliases() -> None:
    assert expand("@daily") == "0 0 * * *" and expand("@WEEKLY") == "0 0 * * 0"
    assert next_fire("@yearly", "UTC", utc(2026, 11, 24)) == utc(2027, 1, 1)
    assert next_fire("0 0 29 2 *", "UTC", utc(2026, 3, 1)) == utc(2028, 2, 29)  # the next leap day
    assert next_fire("*/5 * * * *", "Asia/Kolkata", utc(2026, 1, 1, 0, 1)) == utc(2026, 1, 1, 0, 5)  # UTC+05:30
