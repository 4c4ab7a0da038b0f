"""Shared fixtures: the repository's folders and small flow builders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

# CI explores the same examples every run (a red build must be reproducible); locally each run explores new ones.
# HYPOTHESIS_PROFILE=thorough runs 10x the examples.
settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("thorough", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

ROOT = Path(__file__).resolve().parent.parent

# litellm would fetch its price table from the internet at import (the product sets this before importing it too)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
FLOWS = ROOT / "flows"


def minimal_flow(**overrides: Any) -> dict[str, Any]:
    """The smallest valid flow as data; tests change one thing at a time."""
    flow: dict[str, Any] = {
        "fluxgraph": 1,
        "id": "hello",
        "nodes": [{"id": "greet", "type": "log", "with": {"message": "hello"}}],
    }
    flow.update(overrides)
    return flow


def to_text(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def flows_dir() -> Path:
    return FLOWS


def shared_evals() -> Path:
    """The co-pilot's evaluation sets: ../shared/evals beside the checkout (IONFLUX_SHARED_EVALS elsewhere; a
    checkout cloned somewhere else on this machine finds /work/shared/evals)."""
    for candidate in (os.environ.get("IONFLUX_SHARED_EVALS"), ROOT.parent / "shared" / "evals", "/work/shared/evals"):
        if candidate and (Path(candidate) / "indomain" / "dev.jsonl").exists():
            return Path(candidate)
    pytest.skip("the evaluation sets (../shared/evals) are not on this machine: set IONFLUX_SHARED_EVALS")
