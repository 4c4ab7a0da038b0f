"""Durations as people write them in flows: ``500ms``, ``30s``, ``1m30s``, ``2h``, ``1d``, or a number of seconds.

A :class:`Duration` is an exact count of milliseconds; its canonical text is the shortest unit sum
(``90s`` -> ``1m30s``), so two spellings of the same time give the same flow version id.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
MAX_MS = 366 * 86_400_000
PATTERN = r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$"


@dataclass(frozen=True, order=True, slots=True)
class Duration:
    """A non-negative span of time, at most 366 days, in whole milliseconds."""

    milliseconds: int

    @property
    def seconds(self) -> float:
        return self.milliseconds / 1000

    @classmethod
    def parse(cls, value: object) -> Duration:
        """``"1m30s"`` / ``90`` / ``1.5`` -> Duration; raises ``ValueError`` with the accepted forms."""
        if isinstance(value, bool):
            raise ValueError("a duration cannot be true/false")
        if isinstance(value, int | float):
            if not math.isfinite(value) or abs(value) > MAX_MS:
                raise ValueError(f"{value!r} is out of range (0 to 366d)")
            ms = round(float(value) * 1000)
        elif isinstance(value, str):
            text = value.strip().replace(" ", "")
            if not _WHOLE.match(text):
                raise ValueError(f"{value!r} is not a duration")
            if len(text) > 64:
                raise ValueError(f"{value[:20]!r}… is not a duration")
            ms = round(sum(float(n) * _UNIT_MS[u] for n, u in _PART.findall(text)))
        else:
            raise ValueError(f"a duration is text like '30s', not {type(value).__name__}")
        if ms < 0 or ms > MAX_MS:
            raise ValueError(f"{value!r} is out of range (0 to 366d)")
        return cls(ms)

    def __str__(self) -> str:
        if self.milliseconds == 0:
            return "0s"
        rest, out = self.milliseconds, ""
        for unit in ("d", "h", "m", "s", "ms"):
            size = _UNIT_MS[unit]
            if rest >= size:
                out += f"{rest // size}{unit}"
                rest %= size
        return out

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: object) -> Duration:
            if isinstance(value, Duration):
                return value
            try:
                return cls.parse(value)
            except ValueError as e:
                raise PydanticCustomError(
                    "duration",
                    "{reason}; write a duration like 500ms, 30s, 1m30s, 2h or 1d",
                    {"reason": str(e)},
                ) from None

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "string", "pattern": PATTERN},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration: 500ms, 30s, 1m30s, 2h, 1d, or a number of seconds.",
        }
