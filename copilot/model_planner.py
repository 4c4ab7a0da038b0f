"""Jules with a model: a flow written by any model litellm reaches, checked by the validator, repaired until valid.

The prompt (prompts/plan_flow.md) carries only what exists: the node types relevant to the request (retrieved
from the catalog, compact), the secret names, the model alias. The answer's YAML goes through the same
validator as hand-written flows; its located errors go back to the model, at most ``attempts`` times. The result
is a valid flow, or a failure that says what could not be resolved: never an invalid flow.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copilot import grounding
from copilot.edits import located
from copilot.offline import Catalog
from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import load_flow
from engine.nodetypes.registry import Registry

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "plan_flow.md"
ALWAYS = ("http.request", "llm.complete", "slack.post", "email.send", "foreach")  # the most common steps
RELEVANT = 10
_FENCE = re.compile(r"```(?:ya?ml)?\s*\n(.*?)```", re.DOTALL)


@dataclass
class ModelDraft:
    yaml: str | None  # None unless valid
    valid: bool
    problems: str
    attempts: int
    planner: str
    latency_ms: float
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


def catalog_text(request: str, registry: Registry, limit: int = RELEVANT) -> str:
    """Compact lines for the node types relevant to the request (and the common ones): name, summary, fields."""
    ranked = [name for _, name in Catalog.of_types(registry).rank(request)[:limit]]
    names = list(dict.fromkeys([*ranked, *ALWAYS]))
    lines = []
    for name in names:
        if name not in registry:
            continue
        node_type = registry.get(name)
        props = node_type.with_schema.get("properties") or {}
        required = set(node_type.with_schema.get("required") or [])
        fields = ", ".join(f"{f}{'*' if f in required else ''}" for f in props)
        lines.append(f"- {name}: {node_type.summary} with: {fields or '(none)'}")
    return "\n".join(lines)


def prompt(request: str, registry: Registry, secrets: tuple[str, ...], model_alias: str) -> str:
    template = PROMPT.read_text("utf-8")
    return (
        template.replace("{catalog}", catalog_text(request, registry))
        .replace("{secrets}", ", ".join(secrets) or "(none yet: declare what the flow needs)")
        .replace("{model}", model_alias)
        .replace("{request}", request.strip())
    )


def plan_with_model(
    request: str,
    registry: Registry,
    *,
    model: str,
    api_base: str | None = None,
    api_key: str | None = None,
    alias: str = "default",
    aliases: tuple[str, ...] | None = None,
    secrets: tuple[str, ...] | None = None,
    attempts: int = 3,
    timeout: float = 120.0,
    max_tokens: int = 1200,
) -> ModelDraft:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the bundled price table, no download
    import litellm

    litellm.suppress_debug_info = True
    started = time.perf_counter()
    """``aliases``: the model aliases a flow may use (default: ``alias``); ``secrets``: the user's secret names
    (None: not known, so the flow may declare what it needs; a tuple: nothing else may be used)."""
    allowed = aliases or (alias,)
    messages: list[dict[str, str]] = [{"role": "user", "content": prompt(request, registry, secrets or (), alias)}]
    draft = ModelDraft(None, False, "", 0, f"model:{model}", 0.0)
    for attempt in range(1, attempts + 1):
        draft.attempts = attempt
        try:
            response = litellm.completion(
                model=model,
                messages=messages,
                api_base=api_base,
                api_key=api_key,
                timeout=timeout,
                max_tokens=max_tokens,
                temperature=0,
            )
        except Exception as e:  # the provider refused or is away: a clear failure, no flow
            draft.problems = f"the model could not be reached: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
            break
        _meter(draft, response, litellm)
        answer = response.choices[0].message.content or ""
        text = _yaml_of(answer)
        try:
            flow = load_flow(text, "<jules>", registry=registry)
            draft.problems = "\n".join(grounding.problems(flow, allowed, secrets))
        except FlowValidationError as e:
            draft.problems = located(e)
        if draft.problems:
            messages += [
                {"role": "assistant", "content": answer},
                {
                    "role": "user",
                    "content": "The validator refused it:\n"
                    + draft.problems
                    + "\nFix every error and answer with the whole corrected YAML in one ```yaml fence.",
                },
            ]
            continue
        draft.yaml, draft.valid = text, True
        break
    else:
        draft.problems = f"no valid flow after {attempts} attempts; the last errors:\n{draft.problems}"
    draft.latency_ms = (time.perf_counter() - started) * 1000
    return draft


def _yaml_of(answer: str) -> str:
    fenced = _FENCE.search(answer)
    return (fenced.group(1) if fenced else answer).strip() + "\n"


def _meter(draft: ModelDraft, response: Any, litellm: Any) -> None:
    usage = getattr(response, "usage", None)
    draft.tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
    draft.tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
    with contextlib.suppress(Exception):  # a model without a known price: counted as 0
        draft.cost_usd += float(litellm.completion_cost(completion_response=response) or 0.0)
