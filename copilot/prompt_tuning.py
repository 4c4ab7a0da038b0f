"""Prompt optimisation for ``llm.*`` nodes: a shorter prompt by fixed rules, what it saves, and a comparison of
prompt variants on recorded inputs with the model the caller plugs in.

The rules (deterministic, in this order; ``{{ … }}`` and ``{% … %}`` templates are never touched):

1. ``politeness``: "please", "kindly", "could you", "I would like you to", "thank you" add tokens, not meaning;
2. ``filler``: "make sure to", "it is important that you", "note that", "basically", "as an AI model";
3. ``duplicates``: a sentence that says again what an earlier one said (same words, case and spacing aside);
4. ``whitespace``: runs of spaces, trailing spaces, more than one blank line.

Tokens are counted by :func:`approx_tokens` (words and punctuation marks, which tracks BPE tokenizers within a
few percent on English prose) unless the caller passes a counter, e.g. :func:`litellm_token_counter` (exact for
the model, but importing litellm takes seconds). Cost: saved prompt tokens at the alias's prompt-token price.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from copilot.cost import EXPECTED_ITEMS
from copilot.savings import ModelPrice, engine_prices
from engine.dsl.expression import evaluate
from engine.dsl.forecast import flow_forecast
from engine.dsl.model import AnyNode, Flow, ForeachNode, StepNode
from engine.errors import IonfluxError
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry

TokenCounter = Callable[[str], int]
# the fields of an llm node that are instructions (the node's data fields, e.g. llm.classify's `input`, are not)
PROMPT_FIELDS = ("system", "prompt", "instructions")
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_SLOT = re.compile(r"\x00(\d+)\x00")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("politeness", re.compile(r"^\s*(?:hi|hello|hey|dear [\w ]{1,30})\b[!,.]?\s*", re.I)),
    ("politeness", re.compile(r"\b(?:could|can|would|will) you(?: please)?(?: kindly)?\s+(?=\w)", re.I)),
    ("politeness", re.compile(r"\bI(?:'d| would) (?:like|love) (?:you )?to\s+|\bI (?:want|need) you to\s+", re.I)),
    ("politeness", re.compile(r"\b(?:please|kindly)\b,?\s*", re.I)),
    (
        "politeness",
        re.compile(r"\b(?:thank you|thanks)(?: (?:so|very) much)?(?: in advance)?(?: for [^.!?\n]*)?[.!]*", re.I),
    ),
    ("filler", re.compile(r"\b(?:make sure|be sure|remember|don't forget)(?: that)?(?: you)?(?: to)?\s+(?=\w)", re.I)),
    ("filler", re.compile(r"\bit is (?:very |really |extremely )?important (?:that you |to )", re.I)),
    ("filler", re.compile(r"\b(?:note that|basically|actually|honestly|literally),?\s+", re.I)),
    ("filler", re.compile(r"\bas an ai(?: language model| assistant)?,?\s*", re.I)),
    ("filler", re.compile(r"\bif (?:you can|possible|you could)\b,?\s*", re.I)),
)


class TuningError(IonfluxError):
    """Raised when a node cannot be tuned (not an llm node) or a variant cannot be rendered for a recorded input."""

    code = "copilot.prompt_tuning"


@dataclass(frozen=True, slots=True)
class PromptRewrite:
    """One prompt field before and after the rules, with its token counts."""

    field: str
    original: str
    rewritten: str
    original_tokens: int
    rewritten_tokens: int
    rules: tuple[str, ...]  # the rules that changed something

    @property
    def saved_tokens(self) -> int:
        return self.original_tokens - self.rewritten_tokens


@dataclass(frozen=True, slots=True)
class NodeTuning:
    """The rewritten prompt fields of one llm node and the C-ION they save per run (per item in a loop, times
    the items a run is assumed to have)."""

    node_id: str
    rewrites: tuple[PromptRewrite, ...]
    cion_per_run: float

    @property
    def saved_tokens(self) -> int:
        return sum(r.saved_tokens for r in self.rewrites)

    @property
    def with_(self) -> dict[str, str]:
        """The changed fields, to put in the node's ``with``."""
        return {r.field: r.rewritten for r in self.rewrites if r.rewritten != r.original}


# --- counting -------------------------------------------------------------------------------------------------------

_PIECE = re.compile(r"\w+|[^\w\s]|\n")


def approx_tokens(text: str) -> int:
    """Tokens of ``text``, approximately: one per word (plus one per 8 letters beyond the first 8, as long words
    split), one per punctuation mark and per line break."""
    return sum(1 + (len(p) - 1) // 8 if p[0].isalnum() or p[0] == "_" else 1 for p in _PIECE.findall(text))


def litellm_token_counter(model: str) -> TokenCounter:
    """Exact counts with ``model``'s tokenizer through litellm (imported on first use: it takes seconds)."""
    from engine.steps.llm import litellm_module  # the engine's loader: litellm set up offline, as the engine meters

    litellm = litellm_module()

    def count(text: str) -> int:
        return int(litellm.token_counter(model=model, text=text))

    return count


# --- rewriting ------------------------------------------------------------------------------------------------------


def rewrite_prompt(text: str) -> tuple[str, tuple[str, ...]]:
    """``text`` shortened by the rules, and the names of the rules that changed it; templates stay intact."""
    templates: list[str] = []

    def hide(match: re.Match[str]) -> str:
        templates.append(match.group(0))
        return f"\x00{len(templates) - 1}\x00"

    body = _TEMPLATE.sub(hide, text)
    applied: list[str] = []
    for name, pattern in _RULES:
        # a removed phrase that started a sentence leaves a mark, so the next word gets its capital
        body, hits = pattern.subn(lambda m: "\x01" if m.group(0)[:1].isupper() else "", body)
        if hits and name not in applied:
            applied.append(name)
    body = re.sub(r"\x01[\x01 \t]*(\S?)", lambda m: m.group(1).upper(), body)
    deduped = _dedupe(body)
    if deduped != body:
        applied.append("duplicates")
    tidy = _tidy(deduped)
    if tidy != _tidy_light(deduped):
        applied.append("whitespace")
    return _SLOT.sub(lambda m: templates[int(m.group(1))], tidy), tuple(applied)


def _dedupe(text: str) -> str:
    """Drop every sentence whose words an earlier sentence already had (case, spacing and end mark aside)."""
    seen: set[str] = set()
    lines = []
    for line in text.split("\n"):
        kept = []
        for sentence in _SENTENCE.split(line):
            key = " ".join(re.sub(r"[^\w\x00\s]", " ", sentence.lower()).split())
            if key and key in seen:
                continue
            if key:
                seen.add(key)
            kept.append(sentence)
        if kept or not line.strip():
            lines.append(" ".join(kept) if kept else line)
    return "\n".join(lines)


def _tidy_light(text: str) -> str:
    """What removing phrases alone leaves (capitals, stray spaces before punctuation), spacing untouched."""
    return _capitalise(re.sub(r"[ \t]+([,.;:!?])", r"\1", text))


def _tidy(text: str) -> str:
    text = _tidy_light(text)
    lines = [_collapse(line) for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _collapse(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip(" \t"))]  # indentation can be structure (a nested list)
    return indent + re.sub(r"[ \t]{2,}", " ", line.strip())


def _capitalise(text: str) -> str:
    """A sentence whose first words were removed starts with a capital again."""
    return re.sub(r"(^|[.!?]\s+|\n\s*)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


# --- nodes ----------------------------------------------------------------------------------------------------------


def tune_node(
    flow: Flow,
    node_id: str,
    registry: Registry | None = None,
    *,
    prices: Mapping[str, ModelPrice] | None = None,
    count: TokenCounter = approx_tokens,
    items: int = EXPECTED_ITEMS,
) -> NodeTuning:
    """The rewritten prompt fields of llm node ``node_id`` and what they save per run, at the alias's prompt
    price (``prices``: the engine's forecast table by default)."""
    types = registry or builtin_registry()
    forecast = {n.node_id: n for n in flow_forecast(flow, types).nodes}
    node = _node(flow, node_id)
    if node is None or node.type not in types or "llm" not in types.get(node.type).capabilities:
        raise TuningError(
            f"`{node_id}` is not an llm node of flow {flow.id!r}",
            hint="name a node of type llm.complete, llm.extract or llm.classify",
        )
    rewrites = []
    for field in PROMPT_FIELDS:
        text = node.with_.get(field)
        if isinstance(text, str) and text.strip():
            new, rules = rewrite_prompt(text)
            rewrites.append(PromptRewrite(field, text, new, count(text), count(new), rules))
    saved = sum(r.saved_tokens for r in rewrites)
    price = _price(node, prices or engine_prices())
    runs = items if forecast[node_id].per_item else 1
    return NodeTuning(node_id, tuple(rewrites), round(saved * price.input_cion_per_1k / 1000 * runs, 6))


def tune_flow(flow: Flow, registry: Registry | None = None, **options: Any) -> list[NodeTuning]:
    """:func:`tune_node` for every llm node whose prompt the rules shorten."""
    types = registry or builtin_registry()
    found = []
    for n in flow_forecast(flow, types).nodes:
        if "llm" in types.get(n.type).capabilities:
            tuning = tune_node(flow, n.node_id, types, **options)
            if tuning.saved_tokens > 0:
                found.append(tuning)
    return found


def _node(flow: Flow, node_id: str) -> StepNode | None:
    todo: list[AnyNode] = [*flow.nodes, *flow.on_failure]
    while todo:
        node = todo.pop()
        if node.id == node_id:
            return node if isinstance(node, StepNode) else None
        if isinstance(node, ForeachNode):
            todo.extend(node.do)
    return None


def _price(node: StepNode, prices: Mapping[str, ModelPrice]) -> ModelPrice:
    model = node.with_.get("model", "default")
    return prices.get(model if isinstance(model, str) else "default") or prices["default"]


# --- comparing variants on recorded inputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trial:
    """What the caller's runner reports for one call; token counts it leaves out are counted here."""

    output: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_cion: float | None = None


Runner = Callable[[str, Mapping[str, Any]], "str | Trial"]


@dataclass(frozen=True, slots=True)
class VariantScore:
    """One variant over every recorded input: mean tokens and cost per call, the outputs, how often the outputs
    match the baseline's (case and spacing aside), and the mean of the caller's score, if one was given."""

    name: str
    prompt_tokens: float
    completion_tokens: float
    cost_cion: float
    outputs: tuple[str, ...]
    agreement: float
    score: float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    baseline: str
    rows: tuple[VariantScore, ...]

    def table(self) -> str:
        """The comparison as a Markdown table."""
        head = "| variant | prompt tokens | completion tokens | C-ION per call | agrees with baseline | score |"
        lines = [head, "|---|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            score = "" if r.score is None else f"{r.score:.2f}"
            lines.append(
                f"| {r.name} | {r.prompt_tokens:.1f} | {r.completion_tokens:.1f} | {r.cost_cion:.4f} "
                f"| {r.agreement:.0%} | {score} |"
            )
        return "\n".join(lines)


def compare_variants(
    variants: Mapping[str, str],
    records: Sequence[Mapping[str, Any]],
    run: Runner,
    *,
    price: ModelPrice | None = None,
    count: TokenCounter = approx_tokens,
    score: Callable[[str, Mapping[str, Any]], float] | None = None,
    baseline: str | None = None,
) -> Comparison:
    """Run every prompt variant on every recorded input and compare them.

    ``variants``: name -> prompt template (``{{ … }}`` as in the node); ``records``: the expression context of
    past runs (``{"nodes": {...}, "inputs": {...}}``); ``run(prompt, record)``: the caller's model call on the
    rendered prompt, returning the output text or a :class:`Trial`. ``baseline``: the variant the others are
    compared with (the first by default).
    """
    if not variants or not records:
        raise TuningError("nothing to compare", hint="pass at least one variant and one recorded input")
    price = price or engine_prices()["default"]
    base = baseline or next(iter(variants))
    trials = {
        name: [_trial(name, template, i, r, run, price, count) for i, r in enumerate(records)]
        for name, template in variants.items()
    }
    reference = [_same_text(t.output) for t in trials[base]]
    rows = []
    for name, results in trials.items():
        agree = fmean(_same_text(t.output) == ref for t, ref in zip(results, reference, strict=True))
        mean_score = fmean(score(t.output, r) for t, r in zip(results, records, strict=True)) if score else None
        rows.append(
            VariantScore(
                name,
                fmean(t.prompt_tokens or 0 for t in results),
                fmean(t.completion_tokens or 0 for t in results),
                round(fmean(t.cost_cion or 0.0 for t in results), 6),
                tuple(t.output for t in results),
                agree,
                mean_score,
            )
        )
    return Comparison(base, tuple(rows))


def _trial(
    name: str, template: str, index: int, record: Mapping[str, Any], run: Runner, price: ModelPrice, count: TokenCounter
) -> Trial:
    try:
        prompt = str(evaluate(template, record))
    except IonfluxError as e:
        raise TuningError(
            f"variant {name!r} cannot be rendered for recorded input {index}: {e.message}",
            hint="record the context the prompt reads (e.g. {'nodes': {'fetch': {'output': ...}}})",
        ) from e
    result = run(prompt, record)
    trial = result if isinstance(result, Trial) else Trial(str(result))
    prompt_tokens = trial.prompt_tokens if trial.prompt_tokens is not None else count(prompt)
    completion_tokens = trial.completion_tokens if trial.completion_tokens is not None else count(trial.output)
    cost = trial.cost_cion
    if cost is None:
        cost = (prompt_tokens * price.input_cion_per_1k + completion_tokens * price.output_cion_per_1k) / 1000
    return Trial(trial.output, prompt_tokens, completion_tokens, cost)


def _same_text(text: str) -> str:
    return " ".join(text.lower().split())
