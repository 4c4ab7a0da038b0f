"""Run input: the flow's ``inputs`` JSON Schema applied to what a trigger or a person supplies.

Defaults from the schema fill what is missing (recursively, for nested objects), then the whole input is
validated; a run with invalid input is refused before it exists, with every problem named by its path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from engine.dsl.metaschema import instance_problems
from engine.dsl.model import Flow
from engine.errors import IonfluxError


class RunInputError(IonfluxError):
    """Raised when run input does not match the flow's ``inputs`` schema; ``problems`` lists (path, message)."""

    code = "run.input_invalid"

    def __init__(self, flow_id: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        listed = "; ".join(f"{path}: {message}" for path, message in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(
            f"input for flow '{flow_id}' is invalid: {listed}{more}",
            hint="fix the input to match the flow's `inputs` schema (`ionflux validate` shows the schema's fields)",
        )


def with_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """``value`` with every missing property that has a ``default`` filled in (objects only, recursively)."""
    properties = schema.get("properties")
    if not isinstance(value, dict) or not isinstance(properties, Mapping):
        return value
    out = dict(value)
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        if name not in out and "default" in sub:
            out[name] = sub["default"]
        if name in out:
            out[name] = with_defaults(sub, out[name])
    return out


def run_input(flow: Flow, raw: Any) -> dict[str, Any]:
    """The input a run starts with, or :class:`RunInputError` listing what is wrong."""
    value = {} if raw is None else raw
    if not isinstance(value, dict):
        raise RunInputError(flow.id, [("input", f"must be a mapping of named values, not {type(value).__name__}")])
    unstorable = [(path, "NaN and infinite numbers are not JSON: send a number") for path in _not_finite(value)]
    if unstorable:
        raise RunInputError(flow.id, unstorable)
    if flow.inputs is None:
        return dict(value)
    value = with_defaults(flow.inputs, value)
    problems = [
        ("inputs" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path), message)
        for path, message in instance_problems(flow.inputs, value)
    ]
    if problems:
        raise RunInputError(flow.id, problems)
    return dict(value)


def _not_finite(value: Any, path: str = "inputs") -> Iterator[str]:
    """The paths of NaN and infinite numbers in ``value`` (Python's JSON parser reads NaN, Infinity and 1e999, but
    they are not JSON: a run's input is stored as JSON, so they would fail there instead of here)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _not_finite(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _not_finite(item, f"{path}[{n}]")
