"""Micro-averaged F1 over multisets, shared by the metrics: sum TP, FP and FN over the records, then F1."""

from __future__ import annotations

from collections import Counter
from typing import Any


def count(totals: Counter[str], gold: Counter[Any], have: Counter[Any]) -> None:
    """Add one record: TP is the multiset intersection, FP what was generated beyond it, FN what was missed."""
    tp = sum((gold & have).values())
    totals["tp"] += tp
    totals["fp"] += sum(have.values()) - tp
    totals["fn"] += sum(gold.values()) - tp


def f1(totals: Counter[str]) -> float | None:
    """F1 in percent, one decimal (None when nothing was expected or generated at all)."""
    tp, fp, fn = totals["tp"], totals["fp"], totals["fn"]
    if tp + fp + fn == 0:
        return None
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return round(100 * 2 * precision * recall / (precision + recall), 1)
