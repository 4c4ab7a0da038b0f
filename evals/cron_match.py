"""Cron schedules compared the way ../shared/evals/indomain/README.md (metric 2) says: macros become fields, month
and weekday names numbers, and each field the set of values it matches; two schedules are equal when all five
sets are. A schedule split over several triggers that differ in one field matches the union."""

from __future__ import annotations

from collections.abc import Sequence

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (lowest, highest) of each field: minute, hour, day of month, month, day of week (7 is Sunday too)
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))

Schedule = tuple[frozenset[int], ...]


def normalise(expression: str) -> Schedule | None:
    """The five value sets of a cron expression (None when it is not one)."""
    text = MACROS.get(expression.strip().lower(), expression.strip().lower())
    fields = text.split()
    if len(fields) != 5:
        return None
    try:
        sets = [_field(field, i) for i, field in enumerate(fields)]
    except ValueError:
        return None
    sets[4] = frozenset(0 if d == 7 else d for d in sets[4])
    return tuple(sets)


def _field(field: str, index: int) -> frozenset[int]:
    low, high = BOUNDS[index]
    names = MONTHS if index == 3 else DAYS if index == 4 else {}
    values: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step < 1:
                raise ValueError(step_text)
        if part == "*":
            start, end = low, (6 if index == 4 else high)
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
            if index == 4 and end == 0:  # MON-SUN: Sunday ends the range as 7
                end = 7
        else:
            start = _value(part, names)
            end = high if step > 1 else start  # 0/15 = 0,15,30,45
        if start < low or end > high or start > end:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int]) -> int:
    return names[text] if text in names else int(text)


def matches(gold: str, generated: Sequence[str]) -> bool:
    """Whether the generated cron triggers' schedules carry ``gold``: one equal schedule, or several that differ
    in exactly one field whose union is the gold's."""
    want = normalise(gold)
    have = [s for s in (normalise(g) for g in generated) if s is not None]
    if want is None or not have:
        return False
    if want in have:
        return True
    for field in range(5):
        same_elsewhere = [s for s in have if all(s[i] == want[i] for i in range(5) if i != field)]
        if len(same_elsewhere) > 1 and frozenset().union(*(s[field] for s in same_elsewhere)) == want[field]:
            return True
    return False
