"""Jules shortens llm prompts by fixed rules (templates untouched), says what that saves, and compares prompt
variants on recorded inputs through a model the caller plugs in (a fake one here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from copilot.prompt_tuning import (
    Trial,
    TuningError,
    approx_tokens,
    compare_variants,
    rewrite_prompt,
    tune_flow,
    tune_node,
)
from copilot.savings import ModelPrice
from engine.dsl.validator import load_flow

WORDY = (
    "Hello! Could you please summarise these orders in five bullet points?   Please make sure to keep every link.\n"
    "Keep every link.\n\n\n\nThank you so much in advance!\n{{ nodes.big.output | tojson }}   Please   be concise."
)


def test_the_rules_strip_politeness_and_filler_dedupe_and_collapse_whitespace() -> None:
    rewritten, rules = rewrite_prompt(WORDY)
    assert rewritten == (
        "Summarise these orders in five bullet points? Keep every link.\n\n{{ nodes.big.output | tojson }} Be concise."
    )
    assert rules == ("politeness", "filler", "duplicates", "whitespace")
    assert approx_tokens(rewritten) < approx_tokens(WORDY)


def test_templates_are_never_changed_even_when_they_hold_filler_words() -> None:
    text = "Write {{ 'please' if inputs.polite else 'no' }}  and {% if x %}  please  reply{% endif %}."
    rewritten, _ = rewrite_prompt(text)
    # the tags and expressions stay as written; the text a tag wraps is prompt text like any other
    assert rewritten == "Write {{ 'please' if inputs.polite else 'no' }} and {% if x %} reply{% endif %}."


def test_a_tight_prompt_is_left_alone() -> None:
    assert rewrite_prompt("Summarise: {{ nodes.a.output }}") == ("Summarise: {{ nodes.a.output }}", ())


PROMPT = WORDY.replace("nodes.big.output | tojson", "item")
FLOW = f"""\
fluxgraph: 1
id: tuned
nodes:
  - id: each
    type: foreach
    items: [1, 2]
    do:
      - id: note
        type: llm.complete
        with: {{model: smart, prompt: {json.dumps(PROMPT)}, max_tokens: 50}}
  - {{id: label, type: llm.classify, with: {{input: text, labels: [a, b], instructions: "Pick one."}}}}
"""


def test_a_nodes_saving_is_tokens_times_its_prompt_price_times_its_loop() -> None:
    flow = load_flow(FLOW)
    tuning = tune_node(flow, "note")
    (prompt,) = tuning.rewrites
    assert prompt.field == "prompt" and prompt.saved_tokens == approx_tokens(PROMPT) - approx_tokens(prompt.rewritten)
    # `smart` is 15 C-ION per 1k tokens in the engine's forecast; the node runs once per item (10 assumed)
    assert tuning.cion_per_run == round(prompt.saved_tokens * 15 / 1000 * 10, 6)
    assert tuning.with_ == {"prompt": prompt.rewritten}
    # with the operator's prices and a real counter plugged in
    words = tune_node(flow, "note", prices={"default": ModelPrice(1, 1), "smart": ModelPrice(4, 8)}, count=len)
    assert words.cion_per_run == round((len(PROMPT) - len(prompt.rewritten)) * 4 / 1000 * 10, 6)
    assert [t.node_id for t in tune_flow(flow)] == ["note"]  # `Pick one.` has nothing to cut
    with pytest.raises(TuningError, match="`each` is not an llm node"):
        tune_node(flow, "each")


RECORDS = [{"nodes": {"fetch": {"output": {"text": t}}}} for t in ("refund please", "where is my parcel", "hi")]


def test_variants_are_compared_on_recorded_inputs_with_the_callers_model() -> None:
    calls: list[str] = []

    def fake_model(prompt: str, record: Mapping[str, Any]) -> str | Trial:
        calls.append(prompt)
        text = record["nodes"]["fetch"]["output"]["text"]
        label = "refund" if "refund" in text else "other"
        if prompt.startswith("Label:"):  # the short variant reports its own usage, as a metered call would
            return Trial(label.upper() if text == "hi" else label, prompt_tokens=5, completion_tokens=1, cost_cion=0.01)
        return label

    comparison = compare_variants(
        {
            "original": "Could you please label this message for me? {{ nodes.fetch.output.text }}",
            "short": "Label: {{ nodes.fetch.output.text }}",
        },
        RECORDS,
        fake_model,
        price=ModelPrice(2.0, 4.0),
        score=lambda output, record: float(output == "refund") if "refund" in str(record) else 1.0,
    )
    assert calls[0] == "Could you please label this message for me? refund please" and len(calls) == 6
    original, short = comparison.rows
    assert comparison.baseline == "original" and original.agreement == 1.0
    assert short.outputs == ("refund", "other", "OTHER") and short.agreement == 1.0  # case aside, it agrees
    assert (short.prompt_tokens, short.completion_tokens, short.cost_cion) == (5, 1, 0.01)
    expected_prompt = sum(approx_tokens(p) for p in calls[:3]) / 3
    assert original.prompt_tokens == pytest.approx(expected_prompt)
    assert original.cost_cion == pytest.approx(
        round((expected_prompt * 2.0 + original.completion_tokens * 4.0) / 1000, 6)
    )
    assert original.score == 1.0
    table = comparison.table().splitlines()
    assert table[0].startswith("| variant | prompt tokens") and table[3].startswith(
        "| short | 5.0 | 1.0 | 0.0100 | 100%"
    )


def test_a_variant_that_reads_what_was_not_recorded_says_which_input() -> None:
    with pytest.raises(TuningError, match="variant 'v' cannot be rendered for recorded input 0") as e:
        compare_variants({"v": "{{ nodes.missing.output.text | upper }}"}, [{"nodes": {}}], lambda p, r: p)
    assert "record the context" in e.value.hint
