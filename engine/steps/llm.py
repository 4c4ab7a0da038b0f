"""``llm.complete``, ``llm.extract``, ``llm.classify``: any model litellm reaches, hosted or local.

A node names a model alias (``default``, ``cheap``, ``smart``: the operator maps them in settings) or a litellm
model name (``anthropic/claude-3-5-haiku-latest``, ``openai/smollm2`` with an ``api_base``). Every attempt records
what it used in the step's ``usage``: model, prompt and completion tokens, latency and cost (litellm's price table,
the offline copy, or the operator's own per-token prices), and the cost becomes the attempt's C-ION charge.

``llm.extract`` asks for a JSON object through a tool call (instructor's TOOLS mode; a local llama.cpp server
grammar-constrains it) and validates it against the node's JSON Schema; a reply that does not validate is sent
back with the validation errors, at most ``max_retries`` times. ``llm.classify`` is an extraction whose schema
allows only the given labels.

Secrets never reach a provider: the validator refuses ``secrets.*`` in an LLM node, and, in case a value
arrives another way, every secret value in the text sent is replaced before the call.

litellm is imported on first use (it costs seconds and ~180 MB): a worker that runs no LLM step never pays.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.steps.call import StepCall, StepFailure
from engine.steps.http import parse_retry_after

#: 1 C-ION is US$0.001 of metered cost
CION_PER_USD = 1000.0
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """Where an alias goes: a litellm model name, and optionally its server, key and per-token prices (USD)."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None

    @classmethod
    def parse(cls, value: str | Mapping[str, Any]) -> ModelRoute:
        if isinstance(value, str):
            return cls(value)
        unknown = set(value) - {f for f in cls.__slots__ if not f.startswith("_")}
        if unknown or "model" not in value:
            raise ValueError(
                f"a model route is a litellm model name or {{model, api_base, api_key, input_cost_per_token, "
                f"output_cost_per_token}}; got {dict(value)!r}"
            )
        return cls(**value)


DEFAULT_MODELS: Mapping[str, ModelRoute] = {
    "default": ModelRoute("openai/gpt-4o-mini"),
    "cheap": ModelRoute("openai/gpt-4o-mini"),
    "smart": ModelRoute("openai/gpt-4o"),
}


@dataclass(frozen=True, slots=True)
class LlmSettings:
    models: Mapping[str, ModelRoute] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    api_base: str | None = None  # used by routes that name none (one local server for every alias)
    timeout_seconds: float = 120.0

    def route(self, name: str) -> tuple[ModelRoute, str | None]:
        """The route for an alias, or for a litellm model name used directly; and the alias, if it was one."""
        route = self.models.get(name)
        alias: str | None = name
        if route is None:
            route, alias = ModelRoute(name), None
        if route.api_base is None and self.api_base is not None:
            route = ModelRoute(
                route.model, self.api_base, route.api_key, route.input_cost_per_token, route.output_cost_per_token
            )
        return route, alias


_import_lock = threading.Lock()


def litellm_module() -> Any:
    """The ``litellm`` module, imported on first call and set up as the engine uses it: its bundled (offline) price
    table, no telemetry, unsupported parameters dropped. Use it instead of ``import litellm`` so prices and token
    counts match what the engine meters."""
    with _import_lock:
        # Without this litellm fetches its price table from the internet at import; the bundled copy is used.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        litellm.drop_params = True  # a provider without e.g. temperature ignores it instead of failing the step
        return litellm


def _blank_secrets(text: str, secrets: Iterable[str], call: StepCall, field_name: str) -> str:
    found = False
    for value in sorted(secrets, key=len, reverse=True):
        if value and value in text:
            text = text.replace(value, REDACTED)
            found = True
    if found:
        call.log.append(("warning", f"with.{field_name}: a secret's value was removed before calling the model"))
    return text


def _messages(call: StepCall, user_field: str, user_text: str) -> list[dict[str, str]]:
    messages = []
    system = call.with_.get("system")
    if system:
        messages.append({"role": "system", "content": _blank_secrets(str(system), call.secrets, call, "system")})
    messages.append({"role": "user", "content": _blank_secrets(user_text, call.secrets, call, user_field)})
    return messages


def _request(call: StepCall, settings: LlmSettings) -> tuple[dict[str, Any], ModelRoute, str | None]:
    route, alias = settings.route(str(call.with_.get("model") or "default"))
    kwargs: dict[str, Any] = {"model": route.model, "timeout": settings.timeout_seconds, "num_retries": 0}
    if route.api_base:
        kwargs["api_base"] = route.api_base
    if route.api_key:
        kwargs["api_key"] = route.api_key
    for name in ("max_tokens", "temperature"):
        if call.with_.get(name) is not None:
            kwargs[name] = call.with_[name]
    return kwargs, route, alias


def _tokens(usage: Any) -> tuple[int, int]:
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, Mapping) else lambda k, d=None: getattr(usage, k, d)
    return int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0)


def _meter(
    call: StepCall, route: ModelRoute, alias: str | None, usage: Any, started: float, model: str | None = None
) -> None:
    """Record tokens, latency and cost in the step's usage; the cost is the attempt's C-ION charge."""
    prompt_tokens, completion_tokens = _tokens(usage)
    cost_usd: float | None
    if route.input_cost_per_token is not None or route.output_cost_per_token is not None:
        cost_usd = prompt_tokens * (route.input_cost_per_token or 0.0) + completion_tokens * (
            route.output_cost_per_token or 0.0
        )
    else:
        try:
            prompt_cost, completion_cost = litellm_module().cost_per_token(
                model=route.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
            cost_usd = float(prompt_cost) + float(completion_cost)
        except Exception:  # litellm raises a bare Exception for a model missing from its table
            cost_usd = None
            call.log.append(
                (
                    "warning",
                    f"no price is known for {route.model}: charged 0 C-ION (give its route input_cost_per_token "
                    "and output_cost_per_token in IONFLUX_LLM_MODELS to meter it)",
                )
            )
    call.usage.update(
        {
            "model": model or route.model,
            "alias": alias,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "cost_usd": None if cost_usd is None else round(cost_usd, 8),
            "cost_cion": round((cost_usd or 0.0) * CION_PER_USD, 6),
        }
    )


def _failure(error: BaseException, route: ModelRoute) -> StepFailure:
    """A provider's error as a step failure: rate limits, timeouts, outages retry; the rest need a fix."""
    litellm = litellm_module()
    e = error
    while not type(e).__module__.startswith(("litellm", "openai")) and e.__cause__ is not None:
        e = e.__cause__  # instructor wraps the provider's error
    original = getattr(e, "original_exception", None)  # litellm wraps an error raised while streaming
    if isinstance(original, BaseException):
        e = original
    model = route.model
    text = f"{model}: {type(e).__name__}: {getattr(e, 'message', None) or e}"
    if isinstance(e, litellm.RateLimitError):
        return StepFailure(
            "llm.rate_limited",
            text,
            retryable=True,
            retry_after=_retry_after(e),
            hint="give the node a retry policy, or use a model alias with more quota",
        )
    if isinstance(e, litellm.Timeout):
        return StepFailure("llm.timeout", text, retryable=True, hint="raise IONFLUX_LLM_TIMEOUT_SECONDS")
    if isinstance(e, litellm.ContextWindowExceededError):
        return StepFailure("llm.context_too_long", text, hint="shorten the prompt or lower max_tokens")
    if isinstance(e, litellm.ContentPolicyViolationError):
        return StepFailure("llm.content_refused", text, hint="the provider refused the content; rephrase it")
    if isinstance(e, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return StepFailure(
            "llm.auth",
            text,
            hint="set the provider's API key (e.g. OPENAI_API_KEY) or the route's api_key in IONFLUX_LLM_MODELS",
        )
    if isinstance(e, litellm.NotFoundError):
        return StepFailure("llm.model_not_found", text, hint="check the model name or the alias in IONFLUX_LLM_MODELS")
    if isinstance(e, litellm.BadRequestError):
        if "LLM Provider NOT provided" in str(e):
            return StepFailure(
                "llm.model_not_found",
                text,
                hint="name a litellm model with its provider, e.g. openai/gpt-4o-mini, or an alias",
            )
        return StepFailure("llm.bad_request", text, hint="check the node's with: fields against the model")
    if isinstance(e, litellm.APIConnectionError | litellm.InternalServerError | litellm.ServiceUnavailableError):
        return StepFailure("llm.unavailable", text, retryable=True, hint="the provider is unreachable or failing")
    status = getattr(e, "status_code", None)
    if isinstance(status, int):
        return StepFailure("llm.provider_error", text, retryable=status >= 500 or status in (408, 409, 429))
    return StepFailure("llm.provider_error", text, retryable=True)


def _retry_after(error: BaseException) -> float | None:
    headers: Any = getattr(error, "litellm_response_headers", None)
    if headers is None:
        response = getattr(error, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
    except Exception:
        return None
    return parse_retry_after(str(value)) if value else None


# --- llm.complete -----------------------------------------------------------------------------------------------


def complete(call: StepCall, settings: LlmSettings) -> Any:
    litellm = litellm_module()
    kwargs, route, alias = _request(call, settings)
    messages = _messages(call, "prompt", str(call.with_["prompt"]))
    started = time.monotonic()
    if not call.with_.get("stream"):
        try:
            response = litellm.completion(messages=messages, **kwargs)
        except Exception as e:
            _meter(call, route, alias, None, started)
            raise _failure(e, route) from None
        _meter(call, route, alias, response.usage, started, response.model and _full_name(route, response.model))
        text = response.choices[0].message.content or ""
        return {"text": text, "model": call.usage["model"], "usage": _usage_view(call.usage)}
    chunks: list[Any] = []
    pieces: list[str] = []
    first_token_ms: float | None = None
    try:
        stream = litellm.completion(messages=messages, stream=True, stream_options={"include_usage": True}, **kwargs)
        for chunk in stream:
            chunks.append(chunk)
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                if first_token_ms is None:
                    first_token_ms = round((time.monotonic() - started) * 1000, 1)
                pieces.append(delta)
                call.emit("llm.token", {"text": delta, "index": len(pieces) - 1})
    except Exception as e:
        _meter(call, route, alias, None, started)
        raise _failure(e, route) from None
    usage = next((c.usage for c in reversed(chunks) if getattr(c, "usage", None)), None)
    if usage is None and chunks:  # a server that does not report usage when streaming: count it ourselves
        usage = litellm.stream_chunk_builder(chunks, messages=messages).usage
    model = next((c.model for c in chunks if getattr(c, "model", None)), None)
    _meter(call, route, alias, usage, started, model and _full_name(route, model))
    call.usage["first_token_ms"] = first_token_ms
    return {"text": "".join(pieces), "model": call.usage["model"], "usage": _usage_view(call.usage)}


def _full_name(route: ModelRoute, reported: str) -> str:
    """The provider's model name with the route's provider prefix (``openai/gpt-4o-mini-2024-07-18``)."""
    prefix = route.model.split("/", 1)[0] + "/" if "/" in route.model else ""
    return reported if reported.startswith(prefix) else prefix + reported


def _usage_view(usage: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "cost_cion": usage["cost_cion"],
    }


# --- llm.extract and llm.classify ---------------------------------------------------------------------------------


def _response_model(schema: Mapping[str, Any], name: str) -> tuple[type[Any], bool]:
    """A pydantic model that presents ``schema`` to the provider as the tool's parameters and validates replies
    with it (jsonschema): instructor re-asks with these errors. A non-object schema is wrapped in ``{value}``."""
    import jsonschema
    from pydantic import BaseModel, ConfigDict, model_validator

    wrapped = schema.get("type") != "object"
    tool_schema: dict[str, Any] = (
        {"type": "object", "properties": {"value": dict(schema)}, "required": ["value"]} if wrapped else dict(schema)
    )
    validator = jsonschema.Draft202012Validator(tool_schema, format_checker=jsonschema.FormatChecker())

    class Reply(BaseModel):
        model_config = ConfigDict(extra="allow")

        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return {"title": name, **tool_schema}

        @model_validator(mode="before")
        @classmethod
        def _matches_schema(cls, data: Any) -> Any:
            errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
            if errors:
                raise ValueError(
                    "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors)
                )
            return data

    Reply.__name__ = Reply.__qualname__ = name
    return Reply, wrapped


def _structured(
    call: StepCall, settings: LlmSettings, messages: list[dict[str, str]], schema: Mapping[str, Any], name: str
) -> Any:
    litellm = litellm_module()
    import instructor
    from instructor.core.exceptions import InstructorRetryException

    kwargs, route, alias = _request(call, settings)
    model, wrapped = _response_model(schema, name)
    client = instructor.from_litellm(litellm.completion, mode=instructor.Mode.TOOLS)
    retries = int(call.with_.get("max_retries", 2))
    started = time.monotonic()
    try:
        create: Any = client.chat.completions.create_with_completion  # typed for OpenAI's message classes
        reply, raw = create(messages=messages, response_model=model, max_retries=retries, **kwargs)
    except InstructorRetryException as e:
        _meter(call, route, alias, e.total_usage, started)
        call.usage["reasks"] = max(0, e.n_attempts - 1)
        cause = e.__cause__
        if cause is not None and not isinstance(cause, ValueError) and type(cause).__module__.startswith("litellm"):
            raise _failure(cause, route) from None
        raise StepFailure(
            "llm.invalid_output",
            f"{route.model} gave no reply matching the schema in {e.n_attempts} attempt(s): {_last_error(e)}",
            hint="simplify the schema, raise max_retries (up to 5) or use a stronger model",
        ) from None
    except Exception as e:
        _meter(call, route, alias, None, started)
        raise _failure(e, route) from None
    _meter(call, route, alias, raw.usage, started, raw.model and _full_name(route, raw.model))
    data = reply.model_dump()
    return data["value"] if wrapped else data


def _last_error(error: Any) -> str:
    text = str(error.failed_attempts[-1].exception) if getattr(error, "failed_attempts", None) else str(error)
    return text if len(text) <= 500 else text[:499] + "…"


def extract(call: StepCall, settings: LlmSettings) -> Any:
    schema = call.with_["schema"]
    messages = _messages(call, "prompt", str(call.with_["prompt"]))
    return _structured(call, settings, messages, schema, "Extraction")


def classify(call: StepCall, settings: LlmSettings) -> Any:
    labels = [str(label) for label in call.with_["labels"]]
    instructions = str(call.with_.get("instructions") or "")
    text = _blank_secrets(str(call.with_["input"]), call.secrets, call, "input")
    prompt = (
        "Classify the text below into exactly one of these labels: "
        + ", ".join(repr(label) for label in labels)
        + ". Give your confidence between 0 and 1."
        + (f"\n{_blank_secrets(instructions, call.secrets, call, 'instructions')}" if instructions else "")
        + f"\n\nText:\n{text}"
    )
    messages = _messages(call, "input", prompt)
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": labels},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["label", "confidence"],
    }
    data = _structured(call, settings, messages, schema, "Classification")
    return {"label": data["label"], "confidence": float(data["confidence"])}


def executors(settings: LlmSettings) -> dict[str, Callable[[StepCall], Any]]:
    return {
        "llm.complete": lambda call: complete(call, settings),
        "llm.extract": lambda call: extract(call, settings),
        "llm.classify": lambda call: classify(call, settings),
    }
