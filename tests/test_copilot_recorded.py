"""Prompt variants scored on what a node saw in past runs: the contexts are rebuilt from the run's record exactly
as the worker rendered them, and ``ionflux tune --score`` runs both prompts on them (scripted model, no network)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from api.cli import main
from copilot.prompt_tuning import compare_variants
from copilot.recorded import recorded_contexts
from engine.runtime.runtime import Runtime
from tests import llm_script
from tests.llm_script import Script
from tests.runtime_helpers import config

FLOW = """
fluxgraph: 1
id: greet
inputs: {type: object, properties: {name: {type: string}}}
nodes:
  - id: shout
    type: data.set
    with: {loud: "{{ inputs.name | upper }}"}
  - id: hello
    type: llm.complete
    needs: [shout]
    with:
      model: default
      prompt: "Could you please write    a short greeting for {{ nodes.shout.output.loud }}?   Thank you so much!"
"""


@pytest.fixture
def script() -> Script:
    return llm_script.install()


def _run_twice(tmp_path: Path, script: Script, names: list[str]) -> Path:
    flow_file = tmp_path / "greet.yaml"
    flow_file.write_text(FLOW, encoding="utf-8")
    script.answers += [f"Hi {n}!" for n in names]
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'ionflux.db'}", llm_models=dict(llm_script.settings().models))
    with Runtime(cfg).start(2) as rt:
        _, version = rt.orchestrator.save_flow(FLOW, "greet.yaml")
        for name in names:
            run_id = rt.orchestrator.start_run(version, {"name": name})
            assert str(rt.wait(run_id, 30)) == "succeeded"
    return flow_file


def test_recorded_contexts_are_what_the_node_was_rendered_with(tmp_path: Path, script: Script) -> None:
    _run_twice(tmp_path, script, ["ana", "rui"])
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'ionflux.db'}")
    with Runtime(cfg) as rt:
        recorded = recorded_contexts(rt.orchestrator, "greet", "hello")
        assert [r.context["inputs"]["name"] for r in recorded] == ["rui", "ana"]  # newest first
        assert recorded[0].context["nodes"]["shout"]["output"] == {"loud": "RUI"}
        assert recorded_contexts(rt.orchestrator, "greet", "hello", limit=1)[0].run_id == recorded[0].run_id
        assert recorded_contexts(rt.orchestrator, "greet", "nope") == []
    seen: list[str] = []

    def run(prompt: str, _record: Mapping[str, Any]) -> str:
        seen.append(prompt)
        return "ok"

    comparison = compare_variants(
        {"original": "Greet {{ nodes.shout.output.loud }}", "short": "Hi {{ nodes.shout.output.loud }}"},
        [r.context for r in recorded],
        run,
    )
    assert seen == ["Greet RUI", "Greet ANA", "Hi RUI", "Hi ANA"]
    assert [row.name for row in comparison.rows] == ["original", "short"]


def test_ionflux_tune_scores_both_prompts_on_past_runs(
    tmp_path: Path, script: Script, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flow_file = _run_twice(tmp_path, script, ["ana", "rui"])
    monkeypatch.setenv("IONFLUX_HOME", str(tmp_path))
    monkeypatch.setenv("IONFLUX_DATABASE_URL", f"sqlite:///{tmp_path / 'ionflux.db'}")
    monkeypatch.setenv("IONFLUX_LLM_MODELS", json.dumps({"default": "scripted/any"}))
    script.answers += ["Hello RUI", "Hello ANA", "Hello RUI", "Hey ANA"]
    assert main(["tune", str(flow_file), "--score", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "hello: " in out and "fewer prompt tokens" in out
    assert "on the inputs of 2 past run(s), model scripted/any" in out
    assert "| original |" in out and "| rewritten |" in out and "| 50% |" in out  # one of two outputs agrees
    prompts = [r["messages"][-1]["content"] for r in script.requests[-4:]]
    assert prompts[0].startswith("Could you please write    a short greeting for RUI?")
    assert "ANA" in prompts[3] and "please" not in prompts[3].lower()
