"""Checking that a value is itself a valid JSON Schema (2020-12): ``inputs``, ``llm.extract``'s ``schema``.

``Draft202012Validator.check_schema`` builds a new meta-validator per call (~3 ms); flows check several schemas,
so one meta-validator is built once and reused.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable


@cache
def _meta_validator() -> Draft202012Validator:
    return Draft202012Validator(Draft202012Validator.META_SCHEMA)


def schema_problem(schema: Mapping[str, Any]) -> ValidationError | None:
    """The most relevant reason ``schema`` is not a valid JSON Schema, or None when it is valid."""
    problem: ValidationError | None = best_match(_meta_validator().iter_errors(schema))
    return problem


def _refuse(uri: str) -> Resource:
    # A flow's schemas must never make the validator fetch anything: only local ($defs, #/...) refs resolve.
    raise LookupError(f"remote $ref {uri!r} is not fetched")


_LOCAL_ONLY: Registry = Registry(retrieve=_refuse)  # type: ignore[call-arg]


def instance_problems(schema: Mapping[str, Any], instance: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Why ``instance`` does not match ``schema``, as (path, message) pairs; refs are resolved locally only."""
    validator = Draft202012Validator(schema, registry=_LOCAL_ONLY)
    try:
        return [(tuple(e.absolute_path), e.message) for e in validator.iter_errors(instance)]
    except Unresolvable as e:
        return [((), f"the schema's $ref {e.ref!r} cannot be resolved (only local references are followed)")]
