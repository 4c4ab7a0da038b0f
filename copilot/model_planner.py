"""Jules with a model: a flow written by any model litellm reaches, checked by the validator, repaired until valid.

The prompt (prompts/plan_flow.md) carries only what exists: the node types relevant to the request (retrieved
from the catalog, compact), the secret names, the model alias. The answer's YAML goes through the same
validator as hand-written flows; its located errors go back to the model, at most ``attempts`` times. The result
is a valid flow, or a failure that says what could not be resolved: never an invalid flow.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from copilot import grounding
from copilot.edits import located
from copilot.flow_draft import FlowDraft
from copilot.offline import Catalog
from copilot.structured import ModelAway, ModelChoice, call_structured, complete, meter
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


ANSWER = {
    "yaml": "Answer with the YAML only, inside one ```yaml fence.",
    "structured": "Answer with the flow's fields as the FlowDraft tool's arguments (the same structure as the YAML).",
}


def prompt(request: str, registry: Registry, secrets: tuple[str, ...], model_alias: str, answer: str = "yaml") -> str:
    template = PROMPT.read_text("utf-8")
    return (
        template.replace("{answer}", ANSWER[answer])
        .replace("{catalog}", catalog_text(request, registry))
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
    mode: Literal["tools", "json", "yaml"] = "tools",
) -> ModelDraft:
    """``mode``: ``tools`` or ``json`` ask for a :class:`~copilot.flow_draft.FlowDraft` through instructor (a
    provider that enforces schemas can only answer a flow's shape); ``yaml`` asks for fenced YAML text.
    ``aliases``: the model aliases a flow may use (default: ``alias``); ``secrets``: the user's secret names
    (None: not known, so the flow may declare what it needs; a tuple: nothing else may be used)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the bundled price table, no download
    import litellm

    litellm.suppress_debug_info = True
    started = time.perf_counter()
    allowed = aliases or (alias,)
    shape = "yaml" if mode == "yaml" else "structured"
    text_of_prompt = prompt(request, registry, secrets or (), alias, shape)
    messages: list[dict[str, str]] = [{"role": "user", "content": text_of_prompt}]
    draft = ModelDraft(None, False, "", 0, f"model:{model}", 0.0)
    choice = ModelChoice(model, api_base, api_key, timeout, "json" if mode == "json" else "tools")
    for attempt in range(1, attempts + 1):
        draft.attempts = attempt
        try:
            answer, text = (
                _as_yaml(messages, choice, max_tokens, draft)
                if mode == "yaml"
                else _structured(messages, choice, max_tokens, draft)
            )
        except ModelAway as e:  # the provider refused or is away: a clear failure, no flow
            draft.problems = f"the model could not be reached or refused the request: {e}"
            break
        draft.problems = _problems(text, registry, allowed, secrets) if text is not None else answer
        if draft.problems:
            again = "the whole corrected YAML in one ```yaml fence" if mode == "yaml" else "the whole corrected flow"
            messages += [
                {"role": "assistant", "content": answer},
                {
                    "role": "user",
                    "content": f"The validator refused it:\n{draft.problems}\nFix every error and answer with {again}.",
                },
            ]
            continue
        draft.yaml, draft.valid = text, True
        break
    else:
        draft.problems = f"no valid flow after {attempts} attempts; the last errors:\n{draft.problems}"
    draft.latency_ms = (time.perf_counter() - started) * 1000
    return draft


def _problems(text: str, registry: Registry, aliases: tuple[str, ...], secrets: tuple[str, ...] | None) -> str:
    """The validator's located errors, then what the flow invents (empty: valid and grounded)."""
    try:
        flow = load_flow(text, "<jules>", registry=registry)
    except FlowValidationError as e:
        return located(e)
    return "\n".join(grounding.problems(flow, aliases, secrets))


def _as_yaml(
    messages: list[dict[str, str]], choice: ModelChoice, max_tokens: int, draft: ModelDraft
) -> tuple[str, str | None]:
    """One plain answer: (the answer, the YAML in it)."""
    response = complete(messages, choice, max_tokens)
    meter(draft, response)
    answer = response.choices[0].message.content or ""
    return answer, _yaml_of(answer)


def _structured(
    messages: list[dict[str, str]], choice: ModelChoice, max_tokens: int, draft: ModelDraft
) -> tuple[str, str | None]:
    """One FlowDraft through instructor: (what to show the model of its answer, the flow's YAML or None)."""
    answer = call_structured(messages, choice, FlowDraft, max_tokens, draft)
    if isinstance(answer, str):
        return answer, None
    text = answer.to_yaml()
    return text, text


def _yaml_of(answer: str) -> str:
    fenced = _FENCE.search(answer)
    return (fenced.group(1) if fenced else answer).strip() + "\n"
