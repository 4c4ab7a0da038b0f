"""JSON Schemas written by flow authors (``inputs``, ``llm.extract``'s ``schema``): checking them, and checking
values against them safely.

Two dangers come with a user's schema, and both are closed here:

- ``$ref`` to a URL would make validation fetch it: only local references (``#/$defs/...``) resolve;
- ``pattern: "(a+)+$"`` against a hostile string runs in exponential time with Python's ``re``: patterns are
  matched with RE2 (linear time), and a pattern RE2 cannot run (lookaround, backreferences) is a schema error.

``Draft202012Validator.check_schema`` builds a new meta-validator per call (~3 ms); flows check several schemas,
so one meta-validator is built once and reused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache, lru_cache
from typing import Any

import re2
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is reported as a schema error, not logged to stderr


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def pattern_problem(pattern: str) -> str | None:
    """Why RE2 cannot run ``pattern`` (it refuses constructs that can take exponential time), or None."""
    try:
        _compiled(pattern)
    except re2.error as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        return f"pattern {pattern!r} cannot be matched in linear time ({reason})"
    return None


def _patterns(schema: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, schema)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, Mapping):
            if isinstance(node.get("pattern"), str):
                yield (*where, "pattern"), node["pattern"]
            if isinstance(node.get("patternProperties"), Mapping):
                for key in node["patternProperties"]:
                    yield (*where, "patternProperties", key), key
            stack.extend(((*where, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*where, k), v) for k, v in enumerate(node))


@cache
def _meta_validator() -> Draft202012Validator:
    return Draft202012Validator(Draft202012Validator.META_SCHEMA)


def schema_problem(schema: Mapping[str, Any]) -> ValidationError | None:
    """The most relevant reason ``schema`` is not a valid, safely runnable JSON Schema, or None when it is."""
    problem: ValidationError | None = best_match(_meta_validator().iter_errors(schema))
    if problem is not None:
        return problem
    for where, pattern in _patterns(schema):
        reason = pattern_problem(pattern)
        if reason is not None:
            return ValidationError(
                f"{reason}; IONFLUX matches patterns with RE2: remove lookaround and backreferences",
                path=list(where),
                instance=pattern,
            )
    return None


def _refuse(uri: str) -> Resource:
    # A flow's schemas must never make the validator fetch anything: only local ($defs, #/...) refs resolve.
    raise LookupError(f"remote $ref {uri!r} is not fetched")


_LOCAL_ONLY: Registry = Registry(retrieve=_refuse)  # type: ignore[call-arg]


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _re2_pattern_properties(
    validator: Any, pattern_properties: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not isinstance(instance, Mapping):
        return
    for pattern, subschema in pattern_properties.items():
        for key, value in instance.items():
            if _compiled(pattern).search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


_SafeValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _re2_pattern, "patternProperties": _re2_pattern_properties}
)


def instance_problems(schema: Mapping[str, Any], instance: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Why ``instance`` does not match ``schema``, as (path, message) pairs.

    ``schema`` must have passed :func:`schema_problem`. Refs resolve locally only; patterns run on RE2.
    """
    validator = _SafeValidator(schema, registry=_LOCAL_ONLY)
    try:
        return [(tuple(e.absolute_path), e.message) for e in validator.iter_errors(instance)]
    except Unresolvable as e:
        return [((), f"the schema's $ref {e.ref!r} cannot be resolved (only local references are followed)")]
