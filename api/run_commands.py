"""The ``ionflux`` commands that run flows: up, worker, run, runs, run-show, cancel/pause/resume/approve/reject/
rerun, secrets. With ``--server`` (or IONFLUX_SERVER) the run commands go to a server's HTTP API instead
(api.remote_commands), shown by the same ``render_*`` functions.

Exit codes of ``run`` (and of the commands that continue a run): 0 succeeded; 1 failed; 2 usage or unreadable
file; 3 cancelled; 4 waiting (for an approval, or paused); 5 refused (invalid flow, input or action); 6 gave up
waiting (``--timeout``) while the run goes on; 7 (remote mode) the server could not be reached, or what answered
is not IONFLUX's API.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from api.settings import Settings
from engine.core.state import RunStatus, StepKey
from engine.dsl.issue import FlowValidationError
from engine.errors import IonfluxError
from engine.runtime import queries
from engine.runtime.orchestrator import RunNotFoundError
from engine.runtime.runtime import Runtime
from engine.runtime.secrets import new_key

EXIT = {
    RunStatus.SUCCEEDED: 0,
    RunStatus.FAILED: 1,
    RunStatus.CANCELLED: 3,
    RunStatus.AWAITING_APPROVAL: 4,
    RunStatus.PAUSED: 4,
}
REFUSED = 5
STILL_RUNNING = 6
UNREACHABLE = 7  # remote mode: the server did not answer, or not as IONFLUX's API does
# columns that must stay readable on an 80-column terminal (the previews give way instead)
MIN_WIDTH = {
    "": 1,
    "run": 26,
    "step": 12,
    "type": 9,
    "status": 9,
    "try": 3,
    "attempt": 7,
    "ms": 6,
    "started": 14,
    "C-ION": 5,
}
MARK = {
    "succeeded": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("–", "dim"),
    "cancelled": ("⊘", "yellow"),
    "running": ("…", "cyan"),
    "pending": ("·", "dim"),
    "ready": ("·", "dim"),
}


def _runtime(settings: Settings) -> Runtime:
    return Runtime(settings.runtime_config(), extension_modules=settings.extension_modules)


def _error(console: Console, error: IonfluxError | FlowValidationError) -> int:
    if isinstance(error, FlowValidationError):
        for issue in error.issues:
            console.print(Text(f"{issue}"), style="red")
        return REFUSED
    console.print(Text(f"error[{error.code}]: {error.message}"), style="red")
    if error.hint:
        console.print(Text(f"  hint: {error.hint}"), style="dim")
    return REFUSED


def _parse_input(text: str | None) -> Any:
    if text is None:
        return None
    if text.startswith("@"):
        text = Path(text[1:]).read_text("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise IonfluxError(
            f"--input is not JSON: {e.msg} at line {e.lineno} column {e.colno}",
            hint="pass a JSON object, e.g. --input '{\"days\": 2}', or @file.json",
            code="run.input_invalid",
        ) from None


# --- progress -------------------------------------------------------------------------------------------------


def step_table(run_id: str, status: str, steps: Sequence[queries.StepRecord]) -> Table:
    """The progress table of a run's steps (a loop's iterations are counted on the loop's row); local and remote
    runs are shown alike."""
    table = Table(title=f"run {run_id} · {status}", title_justify="left", box=None, pad_edge=False)
    for column in ("", "step", "type", "status", "attempt", "ms", "output / error"):
        table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=MIN_WIDTH.get(column))
    loops: dict[str, list[queries.StepRecord]] = {}
    for step in steps:
        if step.iteration:
            loops.setdefault(step.iteration.split("[")[0], []).append(step)
    for step in steps:
        if step.iteration:
            continue
        mark, color = MARK.get(step.status, ("?", "white"))
        detail = step.error["message"] if step.error else (step.output_preview or "")
        if step.node_id in loops:
            inner = loops[step.node_id]
            done = sum(1 for s in inner if s.status in ("succeeded", "skipped"))
            detail = f"{done}/{len(inner)} iteration steps done" + (f" · {detail}" if step.error else "")
        shown = detail if len(detail) <= 80 else detail[:79] + "…"
        table.add_row(
            Text(mark, style=color),
            step.key,
            step.node_type or "",
            Text(step.status + (f" ({step.waiting})" if step.waiting else ""), style=color),
            str(step.attempt),
            "" if step.duration_ms is None else f"{step.duration_ms:g}",
            shown,
        )
    return table


def _step_table(runtime: Runtime, run_id: str) -> Table:
    summary = queries.find_run(runtime.db, run_id)
    return step_table(run_id, summary.status if summary else "?", queries.run_steps_of(runtime.db, run_id))


def follow(runtime: Runtime, run_id: str, console: Console, *, timeout: float, progress: bool) -> RunStatus:
    """Wait for the run to finish or wait for a person, showing live per-step progress on a terminal."""
    deadline = time.monotonic() + timeout
    if progress and console.is_terminal:
        with Live(_step_table(runtime, run_id), console=console, refresh_per_second=8) as live:
            while True:
                status = runtime.wait(run_id, timeout=0.25)
                live.update(_step_table(runtime, run_id))
                if status.finished or status in (RunStatus.AWAITING_APPROVAL, RunStatus.PAUSED):
                    return status
                if time.monotonic() > deadline:
                    return status
    status = runtime.wait(run_id, timeout=timeout)
    if progress:
        console.print(_step_table(runtime, run_id))
    return status


def report(runtime: Runtime, run_id: str, status: RunStatus, console: Console, as_json: bool) -> int:
    summary = queries.find_run(runtime.db, run_id)
    assert summary is not None
    waiting = queries.pending_approvals(runtime.db, run_id) if status is RunStatus.AWAITING_APPROVAL else []
    return render_report(summary, waiting, status, console, as_json)


def render_report(
    summary: queries.RunSummary,
    approvals: Sequence[dict[str, Any]],
    status: RunStatus,
    console: Console,
    as_json: bool,
    *,
    also: str = "",
) -> int:
    """How a run stands once it settled (or waits for a person), and the exit status that says so; ``approvals``
    are the pending ones; ``also`` is added to the commands suggested (remote mode: `` --server URL``)."""
    run_id = summary.id
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
        return EXIT.get(status, STILL_RUNNING)
    if status is RunStatus.SUCCEEDED:
        console.print(Text(f"run {run_id} succeeded in {summary.duration_ms} ms", style="green"))
        console.print_json(json.dumps(summary.outputs, default=str))
    elif status is RunStatus.AWAITING_APPROVAL:
        for waiting in approvals:
            note = f": {waiting['message']}" if waiting["message"] else ""
            console.print(Text(f"run {run_id} waits for approval of {waiting['step']}{note}", style="yellow"))
        console.print(f"  approve with: ionflux approve {run_id}{also}   (or reject: --reject)")
    elif status is RunStatus.PAUSED:
        console.print(Text(f"run {run_id} is paused; resume with: ionflux resume {run_id}{also}", style="yellow"))
    elif status.finished:
        error = summary.error or {}
        console.print(Text(f"run {run_id} {status}: {error.get('message', '')}", style="red"))
        if status is RunStatus.FAILED:
            console.print(
                f"  inspect with: ionflux run-show {run_id}{also}; "
                f"re-run from the failed step: ionflux rerun {run_id}{also}"
            )
    else:
        console.print(
            Text(f"run {run_id} is still {status} (gave up waiting); it continues when a worker runs", style="yellow")
        )
    return EXIT.get(status, STILL_RUNNING)


# --- commands -------------------------------------------------------------------------------------------------


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Errors a user can fix end the command with their message and hint, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        console = Console(highlight=False)
        try:
            return command(args)
        except (IonfluxError, FlowValidationError) as e:
            return _error(console, e)
        except OSError as e:
            console.print(Text(f"error[file.unreadable]: {e.filename or ''}: {e.strerror}", style="red"))
            return 2

    run.__name__ = command.__name__
    return run


@guarded
def cmd_run(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    settings = Settings()
    try:
        source = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except OSError as e:
        console.print(Text(f"error[file.unreadable]: {args.file}: {e.strerror}", style="red"))
        return 2
    try:
        value = _parse_input(args.input)
        runtime = _runtime(settings)
    except IonfluxError as e:
        return _error(console, e)
    with runtime:
        try:
            _, version = runtime.orchestrator.save_flow(source, args.file)
            run_id = runtime.orchestrator.start_run(version, value)
        except (IonfluxError, FlowValidationError) as e:
            return _error(console, e)
        if args.detach:
            print(run_id)
            if not settings.redis_url:
                Console(highlight=False, stderr=True).print(
                    "stored and started; a running `ionflux up` executes it (its reconciler picks it up within "
                    f"{settings.requeue_after_seconds:g} s)"
                )
            return 0
        runtime.start(args.threads)
        if not args.json:
            console.print(Text(f"run {run_id} started", style="dim"))
        status = follow(runtime, run_id, console, timeout=args.timeout, progress=not args.json)
        return report(runtime, run_id, status, console, args.json)


def _find(runtime: Runtime, run_id: str) -> queries.RunSummary:
    summary = queries.find_run(runtime.db, run_id)
    if summary is None:
        raise RunNotFoundError(f"no run with id {run_id!r}", hint="`ionflux runs` lists the recent runs")
    return summary


def _continue(args: argparse.Namespace, action: Callable[[Runtime, str], Any]) -> int:
    """Apply a control action, then (embedded mode) carry the run on in this process until it settles."""
    console = Console(highlight=False)
    settings = Settings()
    runtime = _runtime(settings)
    with runtime:
        summary = _find(runtime, args.run_id)
        try:
            action(runtime, summary.id)
        except IonfluxError as e:
            return _error(console, e)
        if args.detach or settings.redis_url:
            status = runtime.status(summary.id)
            console.print(f"run {summary.id}: {status}")
            return 0
        runtime.start()
        status = follow(runtime, summary.id, console, timeout=args.timeout, progress=True)
        return report(runtime, summary.id, status, console, False)


@guarded
def cmd_cancel(args: argparse.Namespace) -> int:
    args.detach = True
    return _continue(args, lambda rt, run_id: rt.orchestrator.cancel(run_id, by=os.environ.get("USER")))


@guarded
def cmd_pause(args: argparse.Namespace) -> int:
    args.detach = True
    return _continue(args, lambda rt, run_id: rt.orchestrator.pause(run_id))


@guarded
def cmd_resume(args: argparse.Namespace) -> int:
    return _continue(args, lambda rt, run_id: rt.orchestrator.resume(run_id))


@guarded
def cmd_approve(args: argparse.Namespace) -> int:
    def act(rt: Runtime, run_id: str) -> None:
        key = rt.orchestrator.approve(
            run_id, not args.reject, by=args.by or os.environ.get("USER"), comment=args.comment, node=args.node or ""
        )
        Console(highlight=False).print(f"{'rejected' if args.reject else 'approved'} {key} of run {run_id}")

    return _continue(args, act)


def cmd_reject(args: argparse.Namespace) -> int:
    """``ionflux reject ID``: ``ionflux approve ID --reject``, named as the API names it."""
    args.reject = True
    return cmd_approve(args)


@guarded
def cmd_rerun(args: argparse.Namespace) -> int:
    def act(rt: Runtime, run_id: str) -> None:
        version = None
        if args.flow:
            _, version = rt.orchestrator.save_flow(Path(args.flow).read_text("utf-8"), args.flow)
        elif args.version == "latest":
            version = rt.orchestrator.latest_version(_find(rt, run_id).flow_id)
        elif args.version:
            version = args.version
        rt.orchestrator.rerun(run_id, version, _node_of(args.from_step) if args.from_step else None)

    return _continue(args, act)


def _node_of(step: str) -> str:
    """``--from`` takes a node id or a step key (``loop[2].node``): a re-run starts at a node."""
    try:
        return StepKey.parse(step).node
    except ValueError:
        return step


@guarded
def cmd_runs(args: argparse.Namespace) -> int:
    settings = Settings()
    console = Console(highlight=False)
    runtime = _runtime(settings)
    with runtime:
        found = queries.list_runs(runtime.db, limit=args.limit, flow_id=args.flow, status=args.status)
    return render_runs(found, console, args.json)


def render_runs(found: Sequence[queries.RunSummary], console: Console, as_json: bool, *, also: str = "") -> int:
    """The runs listing (``ionflux runs``), local or remote."""
    if as_json:
        print(json.dumps([r.to_dict() for r in found], indent=2, default=str))
        return 0
    if not found:
        console.print(f"no runs yet: start one with `ionflux run FILE{also}`")
        return 0
    table = Table(box=None, pad_edge=False)
    for column in ("run", "flow", "status", "trigger", "started", "ms", "C-ION", "error"):
        table.add_column(column, no_wrap=column != "error", min_width=MIN_WIDTH.get(column))
    for r in found:
        _, color = MARK.get(r.status, ("", "yellow"))
        table.add_row(
            r.id,
            r.flow_id,
            Text(r.status, style=color),
            r.trigger_kind,
            r.created_at.strftime("%m-%d %H:%M:%S"),
            "" if r.duration_ms is None else str(r.duration_ms),
            f"{r.total_cion:g}",
            (r.error or {}).get("message", "")[:60],
        )
    console.print(table)
    return 0


@guarded
def cmd_run_show(args: argparse.Namespace) -> int:
    settings = Settings()
    console = Console(highlight=False)
    runtime = _runtime(settings)
    with runtime:
        summary = _find(runtime, args.run_id)
        steps = queries.run_steps_of(runtime.db, summary.id, history=args.history)
    return render_run(summary, steps, console, args.json)


def render_run(
    summary: queries.RunSummary, steps: Sequence[queries.StepRecord], console: Console, as_json: bool
) -> int:
    """One run with its steps (``ionflux run-show``), local or remote."""
    if as_json:
        print(json.dumps({**summary.to_dict(), "steps": [s.to_dict() for s in steps]}, indent=2, default=str))
        return 0
    console.print(Text(f"run {summary.id}", style="bold"))
    console.print(f"  flow {summary.flow_id} (version {summary.version_id})")
    console.print(f"  status {summary.status} · trigger {summary.trigger_kind} · attempt {summary.attempt}")
    console.print(
        f"  started {summary.created_at.isoformat()} · {summary.duration_ms} ms · {summary.total_cion:g} C-ION"
    )
    if summary.error:
        console.print(Text(f"  error[{summary.error['code']}]: {summary.error['message']}", style="red"))
    table = Table(box=None, pad_edge=False)
    for column in ("step", "type", "status", "try", "ms", "input", "output / error"):
        wide = column in ("input", "output / error")
        table.add_column(
            column,
            no_wrap=True,
            overflow="ellipsis",
            max_width=40 if wide else None,
            min_width=MIN_WIDTH.get(column),
        )
    for s in steps:
        _, color = MARK.get(s.status, ("", "white"))
        detail = f"[{s.error['code']}] {s.error['message']}" if s.error else (s.output_preview or "")
        table.add_row(
            s.key,
            s.node_type or "",
            Text(s.status + (" (reused)" if s.reused else ""), style=color),
            str(s.attempt),
            "" if s.duration_ms is None else f"{s.duration_ms:g}",
            (s.input_preview or "")[:60],
            detail[:200],
        )
        if s.usage and "prompt_tokens" in s.usage:
            metered = (
                f"{s.usage.get('model')} · {s.usage['prompt_tokens']}+{s.usage.get('completion_tokens', 0)} "
                f"tokens · {s.usage.get('latency_ms', 0):g} ms · {s.cost_cion:g} C-ION"
            )
            table.add_row("", "", "", "", "", Text("usage", style="dim"), Text(metered, style="dim"))
        for level, line in s.logs or []:
            table.add_row("", "", "", "", "", Text(level, style="dim"), Text(line, style="dim"))
    console.print(table)
    if summary.outputs is not None:
        console.print("outputs:")
        console.print_json(json.dumps(summary.outputs, default=str))
    return 0


@guarded
def cmd_up(args: argparse.Namespace) -> int:
    """All-in-one embedded process: migrations, the demo flows stored, workers + timers until interrupted."""
    from api.cli import cmd_demo, flows_dir

    cmd_demo(args)  # what the bundled flows are, and the demo flow's graph and cost
    console = Console(highlight=False)
    settings = Settings()
    runtime = _runtime(settings)
    with runtime:
        stored = 0
        for path in sorted(flows_dir().glob("*.yaml")):
            try:
                runtime.orchestrator.save_flow(path.read_text("utf-8"), str(path))
                stored += 1
            except (IonfluxError, FlowValidationError):
                pass  # blueprints whose node types run in later releases are validated by `demo`, not stored
        _prepare_sandbox(runtime, console)
        runtime.start(args.threads, scheduler=True)  # embedded: this process fires the cron triggers too
        http = _serve(runtime, settings, console)
        where = settings.database_url or str(settings.home / "ionflux.db")
        console.print(
            f"\nionflux up: {stored} runnable flows stored; database {where}; "
            f"{'Redis ' + settings.redis_url if settings.redis_url else 'embedded queue'}; "
            f"{args.threads or settings.worker_threads} worker threads; "
            f"{'HTTP at ' + http.url if http else 'no HTTP server'}. Ctrl-C stops."
        )
        if http is not None and settings.open_local:
            from api.app import is_loopback

            if is_loopback(settings.bind):
                console.print(
                    Text(
                        f"OPEN DEMO: {http.url}/api/v1 answers requests from this machine without sign-in, as the "
                        "local owner (IONFLUX_OPEN_LOCAL), until first run (/ui/setup) makes that owner someone's. "
                        "Unset it before exposing the server.",
                        style="bold yellow",
                    )
                )
            else:
                console.print(Text("IONFLUX_OPEN_LOCAL ignored: the server is not bound to loopback", "yellow"))
        console.print("Run a flow from another terminal: uv run ionflux run flows/expense-approval.yaml")
        try:
            _wait_for_signal(args.seconds)
        finally:
            if http is not None:
                http.stop()
    return 0


def _serve(runtime: Runtime, settings: Settings, console: Console) -> Any:
    """The HTTP server in a thread (webhooks; the API and UI as they land); a taken port is reported, not fatal."""
    from api.app import create_app
    from api.server import ServerError, serve_in_thread

    try:
        return serve_in_thread(
            create_app(runtime, settings=settings, max_body_bytes=settings.max_webhook_bytes), settings.bind
        )
    except ServerError as e:
        console.print(Text(f"warning[{e.code}]: {e.message}", style="yellow"))
        console.print(Text(f"  hint: {e.hint}; the engine runs without it", style="dim"))
        return None


def _prepare_sandbox(runtime: Runtime, console: Console) -> None:
    """Build (once per machine) and compile (once per process) the code.python component before taking work, so
    the first code.python step does not wait for it; a failure is reported and only code.python steps fail."""
    from engine.steps import python_component

    started = time.monotonic()
    if not python_component.built():
        console.print("Preparing the code.python sandbox (once per machine, about 10 s)...")
    try:
        runtime.sandbox.load_component(python_component.path())
    except python_component.ComponentBuildError as e:
        console.print(Text(f"warning[{e.code}]: {e.message}", style="yellow"))
        console.print(Text(f"  hint: {e.hint}; code.python steps fail until then", style="dim"))
        return
    took = time.monotonic() - started
    if took > 1:
        console.print(f"code.python sandbox ready in {took:.1f} s")


def _wait_for_signal(seconds: float | None) -> None:
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while not stop["now"] and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass


@guarded
def cmd_api(args: argparse.Namespace) -> int:
    """The HTTP server alone (scale-out: webhooks land here; workers and a scheduler run elsewhere)."""
    from api.app import create_app
    from api.server import serve_in_thread

    console = Console(highlight=False, stderr=True)
    settings = Settings()
    runtime = _runtime(settings)
    with runtime:
        http = serve_in_thread(
            create_app(runtime, settings=settings, max_body_bytes=settings.max_webhook_bytes), settings.bind
        )
        console.print(f"ionflux api: HTTP at {http.url}")
        if not settings.redis_url:  # no broker: the runs it starts wait in the database for a process with workers
            console.print(
                Text(
                    "ionflux api: no IONFLUX_REDIS_URL, so the runs started here wait for `ionflux up` (its "
                    "workers run them); for workers apart from the server, set IONFLUX_REDIS_URL and run "
                    "`ionflux worker`",
                    style="yellow",
                )
            )
        try:
            _wait_for_signal(args.seconds)
        finally:
            http.stop()
    return 0


@guarded
def cmd_worker(args: argparse.Namespace) -> int:
    """Worker processes for Redis + PostgreSQL deployments (N processes × M threads)."""
    console = Console(highlight=False, stderr=True)
    settings = Settings()
    if not settings.redis_url:
        console.print(Text("error[worker.no_broker]: `ionflux worker` needs IONFLUX_REDIS_URL", style="red"))
        console.print(Text("  hint: without Redis, `ionflux up` runs the workers inside its own process", style="dim"))
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.processes > 1:
        argv = [sys.executable, "-m", "api.cli", "worker", "--processes", "1", "--threads", str(args.threads)]
        children = [subprocess.Popen(argv) for _ in range(args.processes)]

        def forward(signum: int, frame: Any) -> None:
            for child in children:
                child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return max(child.wait() for child in children)
    runtime = _runtime(settings)
    with runtime:
        _prepare_sandbox(runtime, console)
        runtime.start(args.threads)
        console.print(f"ionflux worker {runtime.worker_id}: {args.threads} threads on {settings.redis_url}")
        _wait_for_signal(args.seconds)
    return 0


@guarded
def cmd_secrets(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    if args.action == "new-key":
        print(new_key().decode())
        return 0
    settings = Settings()
    try:
        runtime = _runtime(settings)
    except IonfluxError as e:
        return _error(console, e)
    with runtime:
        store = runtime.orchestrator.secrets
        try:
            if args.action == "set":
                if not args.name:
                    raise IonfluxError("secrets set needs a NAME", hint="ionflux secrets set NAME", code="usage")
                value = args.value if args.value is not None else sys.stdin.read().rstrip("\n")
                store.set(args.name, value)
                console.print(f"secret {args.name} stored (encrypted)")
            elif args.action == "list":
                for name in store.names():
                    print(name)
            elif args.action == "delete" and not store.delete(args.name or ""):
                console.print(Text(f"no secret named {args.name!r}", style="red"))
                return 1
        except IonfluxError as e:
            return _error(console, e)
    return 0
