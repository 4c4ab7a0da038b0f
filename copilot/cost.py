"""What a planned flow will cost, in C-ION: per run (the engine's forecast, node by node), per foreach item (with an
expected item count), and per month when a cron trigger says how often it runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.dsl import schedule
from engine.dsl.forecast import flow_forecast
from engine.dsl.model import CronTrigger, Flow
from engine.nodetypes.registry import Registry

EXPECTED_ITEMS = 10  # a foreach's items, when nothing says how many
MONTH = timedelta(days=30)


@dataclass(frozen=True)
class Cost:
    per_run: float  # C-ION, expected items included
    fixed: float
    per_item: float
    runs_per_month: int | None  # from the cron triggers; None: it runs when something happens
    per_month: float | None
    items: int = EXPECTED_ITEMS  # foreach items the per-run figure assumes

    def describe(self) -> str:
        run = f"{self.per_run:g} C-ION per run"
        if self.per_item:
            run += f" ({self.fixed:g} + {self.per_item:g} per foreach item, {self.items} items assumed)"
        if self.per_month is None:
            return f"forecast: {run}; per month it depends on how often it is triggered"
        return f"forecast: {run} x {self.runs_per_month} runs a month (cron) = {self.per_month:g} C-ION a month"


def forecast(flow: Flow, registry: Registry, now: datetime, *, items: int = EXPECTED_ITEMS) -> Cost:
    """The forecast of ``flow`` with ``items`` foreach items per run, over the 30 days from ``now``."""
    total = flow_forecast(flow, registry)
    per_run = round(total.fixed_cion + total.per_item_cion * items, 4)
    runs = runs_per_month(flow, now)
    per_month = None if runs is None else round(per_run * runs, 4)
    return Cost(per_run, total.fixed_cion, total.per_item_cion, runs, per_month, items)


def runs_per_month(flow: Flow, now: datetime) -> int | None:
    """How often the enabled cron triggers fire in the 30 days from ``now``; None without one."""
    crons = [t for t in flow.triggers if isinstance(t, CronTrigger) and t.enabled]
    if not crons:
        return None
    return sum(len(schedule.fires_between(t.cron, t.timezone, now, now + MONTH)) for t in crons)
