"""One structured answer from any model litellm reaches, through instructor: the model choice, the call, the
usage it metered, and the line between "the model answered something else" (the caller's repair loop goes on) and
"the provider did not answer" (no repair can help)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel


@dataclass(frozen=True)
class ModelChoice:
    """Which model Jules uses: a litellm model name and where it is served (from the settings' aliases)."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    timeout: float = 120.0
    mode: Literal["tools", "json"] = "tools"  # instructor's mode; llama.cpp and most hosted providers do tools


class ModelAway(Exception):
    """The provider could not answer (refused, unreachable, timed out): no repair can help."""


class Metered(Protocol):
    tokens_in: int
    tokens_out: int
    cost_usd: float


Answer = TypeVar("Answer", bound=BaseModel)


def complete(messages: list[dict[str, str]], choice: ModelChoice, max_tokens: int, **extra: Any) -> Any:
    """A plain litellm completion with the choice's model, server, key and timeout at temperature 0 (``extra``:
    stream, response_format, ...); a provider that does not answer raises :class:`ModelAway`."""
    import litellm

    try:
        return litellm.completion(
            model=choice.model,
            messages=messages,
            api_base=choice.api_base,
            api_key=choice.api_key,
            timeout=choice.timeout,
            max_tokens=max_tokens,
            temperature=0,
            **extra,
        )
    except Exception as e:
        raise ModelAway(f"{type(e).__name__}: {first_line(e)}") from e


def call_structured(
    messages: list[dict[str, str]], choice: ModelChoice, shape: type[Answer], max_tokens: int, usage: Metered
) -> Answer | str:
    """One answer through instructor, as ``shape``; or, when the model answered something else, what was wrong
    with it (for the repair loop). Raises :class:`ModelAway` when the provider could not answer at all."""
    import instructor
    import litellm

    # instructor logs every refused answer at ERROR; here a refusal is expected and handled by the repair loop
    logging.getLogger("instructor").setLevel(logging.CRITICAL)

    mode = instructor.Mode.TOOLS if choice.mode == "tools" else instructor.Mode.JSON
    client = instructor.from_litellm(litellm.completion, mode=mode)
    try:
        answer, completion = client.chat.completions.create_with_completion(
            model=choice.model,
            messages=messages,  # type: ignore[arg-type]
            response_model=shape,
            max_retries=0,  # the caller's repair loop feeds back more than the schema's errors
            api_base=choice.api_base,
            api_key=choice.api_key,
            timeout=choice.timeout,
            max_tokens=max_tokens,
            temperature=0,
        )
    except Exception as e:
        if _schema_failure(e):
            return f"the answer is not a valid {shape.__name__}: {first_line(e)}"
        raise ModelAway(f"{type(e).__name__}: {first_line(e)}") from e
    meter(usage, completion)
    return answer


def _schema_failure(e: Exception) -> bool:
    """The model answered, but not the shape asked for (instructor keeps the answer it refused; a provider
    error has none)."""
    if type(e).__name__ in ("ValidationError", "JSONDecodeError"):
        return True
    return getattr(e, "last_completion", None) is not None


def first_line(e: Exception) -> str:
    """What went wrong, in one line: for instructor's wrapper, the last attempt's own error (its text starts with
    an XML dump of every attempt, which says nothing in a line)."""
    attempts = getattr(e, "failed_attempts", None)
    if attempts:
        inner = attempts[-1].exception
        text = " ".join(str(inner).split())  # pydantic's errors span lines: field, message, input
        return text[:300] or type(inner).__name__
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def meter(result: Metered, response: Any) -> None:
    import litellm

    usage = getattr(response, "usage", None)
    result.tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
    result.tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
    with contextlib.suppress(Exception):  # a model without a known price: counted as 0
        result.cost_usd += float(litellm.completion_cost(completion_response=response) or 0.0)
