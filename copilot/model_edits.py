"""Follow-up messages read into edit operations by a model (litellm + instructor), checked, repaired.

The model answers an :class:`~copilot.edits.EditPlan` (a reply and operations). Three checks stand between its
answer and the user: the plan's schema (pydantic), the operations applying to the draft (a node that exists, an
id not taken), and the flow validator on the result. Whatever fails goes back to the model with its location, at
most ``attempts`` times; then the answer is a clear failure, never an invalid draft.

Streaming: with ``on_token``, the answer is streamed and the ``reply`` field's characters are handed over as
they arrive (for the UI's SSE), while the whole JSON is collected and checked as above.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from copilot import grounding
from copilot.edits import EditError, EditPlan, Operation, Proposal, propose
from copilot.model_planner import catalog_text
from copilot.structured import ModelAway, ModelChoice, call_structured, complete, first_line, meter
from engine.dsl.validator import load_flow
from engine.nodetypes.registry import Registry

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "edit_flow.md"


@dataclass
class ModelEdit:
    """The outcome: a valid proposal and the model's reply, or the problems that remained."""

    proposal: Proposal | None
    reply: str
    problems: str
    attempts: int
    planner: str
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    operations: tuple[Operation, ...] = field(default_factory=tuple)


def edit_prompt(
    message: str, draft: str, registry: Registry, aliases: tuple[str, ...], secrets: tuple[str, ...]
) -> str:
    return (
        PROMPT.read_text("utf-8")
        .replace("{catalog}", catalog_text(message, registry))
        .replace("{secrets}", ", ".join(secrets) or "(none yet)")
        .replace("{aliases}", ", ".join(aliases))
        .replace("{draft}", draft.strip())
        .replace("{message}", message.strip())
    )


def edit_with_model(
    message: str,
    draft: str,
    registry: Registry,
    choice: ModelChoice,
    *,
    aliases: tuple[str, ...] = ("default",),
    secrets: tuple[str, ...] | None = None,
    attempts: int = 3,
    on_token: Callable[[str], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    max_tokens: int = 1200,
) -> ModelEdit:
    """``on_token``: stream, handing over the reply's text as it comes; ``on_retry``: told the problems each time
    an answer goes back to the model (a streamed reply that was refused is then replaced by the next one)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the bundled price table, no download
    import litellm

    litellm.suppress_debug_info = True
    started = time.perf_counter()
    result = ModelEdit(None, "", "", 0, f"model:{choice.model}")
    messages: list[dict[str, str]] = [
        {"role": "user", "content": edit_prompt(message, draft, registry, aliases, secrets or ())}
    ]
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        try:
            answer, plan = (
                _streamed(messages, choice, max_tokens, on_token, result)
                if on_token is not None
                else _structured(messages, choice, max_tokens, result)
            )
        except ModelAway as e:
            result.problems = f"the model could not be reached or refused the request: {e}"
            break
        problems = _problems_of(plan, draft, registry, result, aliases, secrets) if plan is not None else answer
        if not problems:
            break
        result.problems = problems
        if on_retry is not None and attempt < attempts:
            on_retry(problems)
        messages += [
            {"role": "assistant", "content": answer if plan is None else plan.model_dump_json(by_alias=True)},
            {"role": "user", "content": f"That does not work:\n{problems}\nAnswer again with the corrected JSON."},
        ]
    else:
        result.problems = f"no valid change after {attempts} attempts; the last problems:\n{result.problems}"
    result.latency_ms = (time.perf_counter() - started) * 1000
    return result


def _problems_of(
    plan: EditPlan,
    draft: str,
    registry: Registry,
    result: ModelEdit,
    aliases: tuple[str, ...],
    secrets: tuple[str, ...] | None,
) -> str:
    """'' when the plan applies and the result validates (then ``result`` holds it), else what is wrong."""
    if not plan.operations:
        return "the answer has no operations; give at least one"
    try:
        proposal = propose(draft, plan.operations, registry)
    except EditError as e:
        return str(e)
    if not proposal.valid:
        return proposal.problems
    invented = grounding.problems(load_flow(proposal.after, "<draft>", registry=registry), aliases, secrets)
    if invented:
        return "\n".join(invented)
    result.proposal, result.reply, result.problems = proposal, plan.reply, ""
    result.operations = tuple(plan.operations)
    return ""


def _structured(
    messages: list[dict[str, str]], choice: ModelChoice, max_tokens: int, result: ModelEdit
) -> tuple[str, EditPlan | None]:
    answer = call_structured(messages, choice, EditPlan, max_tokens, result)
    if isinstance(answer, str):
        return answer, None
    return answer.model_dump_json(by_alias=True), answer


def _streamed(
    messages: list[dict[str, str]],
    choice: ModelChoice,
    max_tokens: int,
    on_token: Callable[[str], None],
    result: ModelEdit,
) -> tuple[str, EditPlan | None]:
    """One streamed answer (JSON object mode with the plan's schema, which llama.cpp enforces by grammar)."""
    import litellm

    reply = ReplyField()
    parts: list[str] = []
    chunks: list[Any] = []
    stream = complete(
        messages,
        choice,
        max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        response_format={"type": "json_object", "schema": EditPlan.model_json_schema()},
    )
    try:
        for chunk in stream:
            chunks.append(chunk)
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                parts.append(delta)
                shown = reply.feed(delta)
                if shown:
                    on_token(shown)
    except Exception as e:
        raise ModelAway(f"{type(e).__name__}: {first_line(e)}") from e
    with contextlib.suppress(Exception):  # usage is optional in a stream
        meter(result, litellm.stream_chunk_builder(chunks, messages=messages))
    answer = "".join(parts)
    try:
        return answer, EditPlan.model_validate_json(_json_object(answer))
    except (ValidationError, ValueError) as e:
        return f"the answer is not a valid EditPlan: {first_line(e)}", None


class ReplyField:
    """Reads the ``reply`` string out of a JSON object while it streams, so the UI shows the words as they come."""

    def __init__(self) -> None:
        self.buffer = ""
        self.start: int | None = None  # where the string's characters begin
        self.done = False
        self.shown = 0  # characters of the decoded string handed out so far

    def feed(self, chunk: str) -> str:
        self.buffer += chunk
        if self.done:
            return ""
        if self.start is None:
            marker = self.buffer.find('"reply"')
            colon = self.buffer.find(":", marker + 7) if marker >= 0 else -1
            quote = self.buffer.find('"', colon + 1) if colon >= 0 else -1
            if quote < 0:
                return ""
            self.start = quote + 1
        text, self.done = _decode_prefix(self.buffer[self.start :])
        new = text[self.shown :]
        self.shown = len(text)
        return new


def _decode_prefix(raw: str) -> tuple[str, bool]:
    """The JSON string characters complete so far in ``raw`` (the text after the opening quote), and whether the
    closing quote has arrived. An escape cut by a chunk boundary waits for the next chunk."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            return "".join(out), True
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        length = 6 if raw[i + 1 : i + 2] == "u" else 2
        if i + length > len(raw):
            break
        try:
            out.append(json.loads(f'"{raw[i : i + length]}"'))
        except ValueError:
            out.append(raw[i : i + length])
        i += length
    return "".join(out), False


def _json_object(answer: str) -> str:
    """The outermost JSON object in an answer (models sometimes add a fence or a sentence around it)."""
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the answer")
    return answer[start : end + 1]
