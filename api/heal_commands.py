"""``ionflux heal RUN_ID``: why a failed run failed, Jules's fix as a diff, its proof by replay of the failed step
on its recorded input, and the cost change; ``--apply`` stores the fixed version and resumes the run from the failed
step (upstream outputs kept), then follows it like ``ionflux rerun`` does (``ionflux eval heal``: evals.cli)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.text import Text

from api.jules import model_choice
from api.run_commands import _continue, _find, _runtime, guarded
from api.settings import Settings
from copilot.healing import Healing, apply, heal
from engine.runtime.runtime import Runtime

COLOURS = {"+": "green", "-": "red", "@": "cyan"}


@guarded
def cmd_heal(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    settings = Settings()
    choice = None if args.offline else model_choice(settings, args.model)
    aliases = tuple(settings.model_routes()) or ("default",)
    found: dict[str, Healing] = {}

    def diagnose(runtime: Runtime, run_id: str) -> None:
        healing = heal(runtime.orchestrator, run_id, model=choice, aliases=aliases, allow_effects=args.allow_effects)
        found["healing"] = healing
        if args.json:
            print(json.dumps(healing.to_dict(), indent=2, default=str))
        else:
            show(healing, console)
        if args.apply or args.as_is:
            version = apply(
                runtime.orchestrator, healing, as_is=args.as_is, force=args.force, triggers=runtime.triggers
            )
            where = f"on the fixed version {version}" if version else "as it is"
            console.print(Text(f"\nresuming run {run_id} from {healing.failed.key} {where}", style="bold"))

    if args.apply or args.as_is:
        return _continue(args, diagnose)  # then carried on in this process (embedded) until the run settles
    with _runtime(settings) as runtime:  # diagnosis only: nothing else is printed (--json stays one document)
        diagnose(runtime, _find(runtime, args.run_id).id)
    healing = found["healing"]
    return 0 if healing.verified or healing.diagnosis.fix is not None else 1


def show(healing: Healing, console: Console) -> None:
    d, failed = healing.diagnosis, healing.failed
    console.print(Text(f"run {failed.run_id} failed at {failed.key} ({failed.node_type})", style="bold"))
    console.print(Text(f"error[{failed.error.code}]: {failed.error.message}", style="red"))
    console.print(Text(f"\ndiagnosis ({d.by}): {d.cause}", style="bold") + Text(f" - {d.summary}"))
    if d.detail and d.detail != failed.error.message:
        console.print(Text(d.detail, style="dim"))
    if d.fix is None:
        console.print("\nno fix follows from the facts alone: edit the flow (or configure a model: IONFLUX_MODEL)")
        return
    console.print(Text("\nfix: ", style="bold") + Text(d.fix.description))
    if d.fix.action:
        console.print(Text(f"  do: {d.fix.action}", style="yellow"))
        console.print(f"  then resume it as it is: ionflux heal {failed.run_id} --as-is")
    if healing.problems:
        console.print(Text(f"the fix does not validate:\n{healing.problems}", style="red"))
    for line in healing.diff.splitlines():
        console.print(Text(line, style=COLOURS.get(line[:1], "") if not line.startswith(("+++", "---")) else "bold"))
    if healing.verification is not None:
        style = "green" if healing.verified else ("yellow" if healing.checked else "red")
        console.print(Text("\nproof: ", style="bold") + Text(healing.verification.describe(), style=style))
    if healing.cost_change:
        console.print(Text("cost: ", style="bold") + Text(healing.cost_change))
    if healing.verified:
        console.print(f"\napply it and resume the run from the failed step: ionflux heal {failed.run_id} --apply")
    elif d.fix.resume_as_is and healing.checked:
        console.print(f"\nthe step succeeds now as it is: ionflux heal {failed.run_id} --as-is")
