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


@cache
def _meta_validator() -> Draft202012Validator:
    return Draft202012Validator(Draft202012Validator.META_SCHEMA)


def schema_problem(schema: Mapping[str, Any]) -> ValidationError | None:
    """The most relevant reason ``schema`` is not a valid JSON Schema, or None when it is valid."""
    problem: ValidationError | None = best_match(_meta_validator().iter_errors(schema))
    return problem
