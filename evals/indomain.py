"""The in-domain metrics (../shared/evals/indomain/README.md): trigger-type accuracy, cron exact-match, time-zone
match, node-type F1, edge F1, key-param recall and validity, micro-averaged over a file and broken down by the
first gold trigger's type, by language, and for records combining two or more control features."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from evals import cron_match
from evals.counts import count, f1
from evals.flowshape import CODE_TYPES, Shape

CONTROL = ("foreach", "approval", "if", "on_failure")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|seconds?|secs?|s|minutes?|mins?|m|hours?|h|days?|d)\b")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


@dataclass
class Tally:
    """Sums over records; the metrics are ratios of them (None when a denominator is 0)."""

    records: int = 0
    trigger_ok: int = 0
    cron_total: int = 0
    cron_ok: int = 0
    tz_total: int = 0
    tz_ok: int = 0
    node: Counter[str] = field(default_factory=Counter)  # tp, fp, fn
    edge: Counter[str] = field(default_factory=Counter)
    params_total: int = 0
    params_found: int = 0
    valid: int = 0

    def metrics(self) -> dict[str, float | None]:
        return {
            "trigger_accuracy": _pct(self.trigger_ok, self.records),
            "cron_exact": _pct(self.cron_ok, self.cron_total),
            "timezone_match": _pct(self.tz_ok, self.tz_total),
            "node_f1": f1(self.node),
            "edge_f1": f1(self.edge),
            "key_param_recall": _pct(self.params_found, self.params_total),
            "validity": _pct(self.valid, self.records),
        }


def score(records: Iterable[tuple[dict[str, Any], Shape, bool]]) -> dict[str, Any]:
    """``records``: (gold record, the generated flow's shape, whether it validated) -> metrics and breakdowns."""
    overall = Tally()
    groups: dict[str, Tally] = {}
    for gold, shape, valid in records:
        keys = [f"trigger={gold['triggers'][0]['type']}", f"lang={gold['lang']}"]
        if sum(_uses(gold, feature) for feature in CONTROL) >= 2:
            keys.append("combined_control")
        for tally in [overall, *(groups.setdefault(k, Tally()) for k in keys)]:
            add(tally, gold, shape, valid)
    return {
        "overall": overall.metrics(),
        "records": overall.records,
        "by": {k: {"records": t.records, **t.metrics()} for k, t in sorted(groups.items())},
    }


def add(tally: Tally, gold: dict[str, Any], shape: Shape, valid: bool) -> None:
    tally.records += 1
    tally.valid += bool(valid)
    gold_types = {t["type"] for t in gold["triggers"]}
    tally.trigger_ok += {str(t.get("type")) for t in shape.triggers} == gold_types
    crons = [t for t in shape.triggers if t.get("type") == "cron" and isinstance(t.get("cron"), str)]
    for trigger in gold["triggers"]:
        if trigger["type"] != "cron":
            continue
        matched = [c for c in crons if cron_match.matches(trigger["cron"], [c["cron"]])]
        if trigger.get("cron_exact"):
            tally.cron_total += 1
            tally.cron_ok += cron_match.matches(trigger["cron"], [c["cron"] for c in crons])
        if trigger.get("timezone"):
            tally.tz_total += 1
            against = (matched or crons)[:1]
            tally.tz_ok += bool(against) and same_zone(trigger["timezone"], str(against[0].get("timezone") or ""))
    gold_nodes = Counter(CODE_TYPES.get(n["type"], n["type"]) for n in gold["nodes"])
    count(tally.node, gold_nodes, Counter(shape.node_types))
    types = {n["id"]: CODE_TYPES.get(n["type"], n["type"]) for n in gold["nodes"]}
    gold_edges = Counter((types[a], types[b]) for a, b in gold["edges"])
    count(tally.edge, gold_edges, Counter(shape.edges))
    for key, value in gold.get("key_params", {}).items():
        for item in value if isinstance(value, list) else [value]:
            tally.params_total += 1
            tally.params_found += found(key, item, shape)


def found(key: str, item: Any, shape: Shape) -> bool:
    """Metric 6's matching rules, by the key and the item's kind."""
    if key == "cron":
        crons = [str(t.get("cron")) for t in shape.triggers if t.get("type") == "cron"]
        return cron_match.matches(str(item), crons)
    if key == "timezone":
        zones = [str(t.get("timezone")) for t in shape.triggers if t.get("timezone")]
        return any(same_zone(str(item), z) for z in zones) or _text_found(str(item), shape.text)
    if "duration" in key:
        want = _seconds(str(item))
        return want is not None and any(
            float(n) * _unit_seconds(u) == want for n, u in _DURATION.findall(shape.text.lower())
        )
    if isinstance(item, bool):
        return _text_found(str(item).lower(), shape.text)
    if isinstance(item, int | float):
        return any(float(n) == float(item) for n in _NUMBER.findall(shape.text))
    return _text_found(str(item), shape.text)


def _text_found(item: str, text: str) -> bool:
    needle, haystack = _fold_text(item), _fold_text(text)
    if not needle:
        return False
    pattern = r"(?<![0-9a-z])" + re.escape(needle) + r"(?![0-9a-z])"
    return re.search(pattern, haystack) is not None


def _fold_text(text: str) -> str:
    lowered = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in lowered if not unicodedata.combining(c))
    return re.sub(r"[\s_\-]+", " ", plain)


def _seconds(text: str) -> float | None:
    match = _DURATION.search(text.lower())
    return None if match is None else float(match.group(1)) * _unit_seconds(match.group(2))


def _unit_seconds(word: str) -> float:
    if word == "ms":
        return 0.001
    return {"s": 1, "m": 60, "h": 3600, "d": 86400}[word[0]]


@lru_cache(maxsize=512)
def same_zone(a: str, b: str) -> bool:
    """IANA names of one zone: equal, or links to the same zone (the tzdata package stores a link as an identical
    copy of its target's file)."""
    if not a or not b:
        return False
    if a == b:
        return True
    left, right = _zone_bytes(a), _zone_bytes(b)
    return left is not None and left == right


def _zone_bytes(name: str) -> bytes | None:
    try:
        return resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError, OSError):
        return None


def _uses(gold: dict[str, Any], feature: str) -> bool:
    if feature in ("foreach", "approval"):
        return any(n["type"] == feature for n in gold["nodes"])
    return any(n.get(feature) for n in gold["nodes"])


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100 * part / whole, 1)
