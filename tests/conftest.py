"""Shared fixtures: the repository's folders and small flow builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
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
