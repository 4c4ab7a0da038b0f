"""``ionflux tune``: Jules's shorter prompts for a flow's llm nodes, with the token and C-ION difference; with
``--score``, both variants run on the inputs the node saw in past runs, and the comparison is shown."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from api.settings import Settings
from copilot.prompt_tuning import Trial, TuningError, compare_variants, tune_flow
from copilot.recorded import recorded_contexts
from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.nodetypes.builtin import builtin_registry


def cmd_tune(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    settings = Settings()
    from engine.runtime.runtime import Runtime

    try:
        with Runtime(settings.runtime_config(), extension_modules=settings.extension_modules) as runtime:
            return _tune(args, settings, runtime, console)
    except (IonfluxError, FlowValidationError) as e:
        console.print(Text(f"error[{e.code}]: {e.message}", style="red"))
        if e.hint:
            console.print(Text(f"  hint: {e.hint}", style="dim"))
        return 2


def _tune(args: argparse.Namespace, settings: Settings, runtime: Any, console: Console) -> int:
    text = _source(args.flow, runtime)
    registry = builtin_registry()
    flow = load_flow(text, args.flow, registry=registry)
    tunings = [t for t in tune_flow(flow, registry) if args.node in (None, t.node_id)]
    if not tunings:
        console.print("Its prompts are already tight: the rules shorten nothing.")
        return 0
    for tuning in tunings:
        console.print(
            Text(
                f"{tuning.node_id}: {tuning.saved_tokens} fewer prompt tokens, "
                f"{tuning.cion_per_run:g} C-ION less a run",
                style="bold",
            )
        )
        for rewrite in tuning.rewrites:
            if rewrite.rewritten == rewrite.original:
                continue
            console.print(Text(f"  with.{rewrite.field} ({', '.join(rewrite.rules)}):", style="dim"))
            console.print(Text(f"  - {rewrite.original}", style="red"))
            console.print(Text(f"  + {rewrite.rewritten}", style="green"))
            if args.score:
                _score(args, settings, runtime, flow.id, tuning.node_id, rewrite, console)
    if not args.score:
        console.print(Text("add --score to run both prompts on the inputs of past runs (calls the model)", "dim"))
    return 0


def _score(
    args: argparse.Namespace, settings: Settings, runtime: Any, flow_id: str, node_id: str, rewrite: Any, c: Console
) -> None:
    recorded = recorded_contexts(runtime.orchestrator, flow_id, node_id, limit=args.runs)
    if not recorded:
        c.print(Text(f"  no past run of {flow_id} reached {node_id}: nothing to score on yet", style="yellow"))
        return
    node = next(n for n in runtime.orchestrator.plan(_latest(runtime, flow_id)).flow.nodes if n.id == node_id)
    alias = str(getattr(node, "with_", {}).get("model", "default"))
    from engine.steps.llm import LlmSettings, litellm_module

    route, _ = LlmSettings(settings.model_routes(), settings.llm_api_base, settings.llm_timeout_seconds).route(alias)
    litellm = litellm_module()

    def run(prompt: str, _record: Mapping[str, Any]) -> Trial:
        answer = litellm.completion(
            model=route.model,
            messages=[{"role": "user", "content": prompt}],
            api_base=route.api_base,
            api_key=route.api_key,
            timeout=settings.llm_timeout_seconds,
            max_tokens=int(getattr(node, "with_", {}).get("max_tokens", 400)),
            temperature=0,
        )
        usage = answer.usage
        return Trial(answer.choices[0].message.content or "", usage.prompt_tokens, usage.completion_tokens)

    try:
        comparison = compare_variants(
            {"original": rewrite.original, "rewritten": rewrite.rewritten}, [r.context for r in recorded], run
        )
    except TuningError as e:
        c.print(Text(f"  {e}", style="yellow"))
        return
    c.print(Text(f"  on the inputs of {len(recorded)} past run(s), model {route.model}:", style="dim"))
    c.print(comparison.table())


def _latest(runtime: Any, flow_id: str) -> str:
    return str(runtime.orchestrator.latest_version(flow_id))


def _source(name: str, runtime: Any) -> str:
    path = Path(name)
    if path.exists():
        return path.read_text("utf-8")
    import sqlalchemy as sa

    from engine.store.tables import flow_versions

    version = runtime.orchestrator.latest_version(name)
    with runtime.db.connect() as conn:
        return str(conn.execute(sa.select(flow_versions.c.source).where(flow_versions.c.id == version)).scalar())
