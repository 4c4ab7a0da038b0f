"""The run commands in remote mode (``--server URL`` or IONFLUX_SERVER): run, runs, run-show, cancel, pause, resume,
approve, reject and rerun, asked of a server's HTTP API (api.remote) instead of the local database, and shown by
api.run_commands' own rendering, so the output and the exit codes are the local commands'.

``run`` stores the flow through the API (a new version if it changed), starts a run and follows it over the run's
Server-Sent Events; ``approve``, ``resume`` and ``rerun`` follow the run they carried on in the same way (the
server's workers run it; ``--detach`` only records the decision). A stream that drops is resumed after the last
event seen, until ``--timeout``. Exit code 7: the server could not be reached, or what answered is not the API.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from api.remote import Acted, RefusedError, Remote, RemoteError, RemoteRun, Server, ServerAddressError
from api.run_commands import (
    REFUSED,
    UNREACHABLE,
    _error,
    _parse_input,
    guarded,
    render_report,
    render_run,
    render_runs,
    step_table,
)
from api.run_parser import server_of, token_of
from engine.core.state import RunStatus
from engine.dsl.issue import FlowValidationError, Issue, Location
from engine.errors import IonfluxError

WAITING = (RunStatus.AWAITING_APPROVAL, RunStatus.PAUSED)
REDRAW_SECONDS = 0.25  # a terminal's live table is read again at most this often
RECONNECT_SECONDS = 0.2  # the pause before resuming a stream that dropped
STREAM_SILENCE = 30.0  # the server pings every 15 s: longer than this without a line, the stream is dead


class OptionUnavailableError(IonfluxError):
    """Raised when a local-only option is given with --server (the API has nothing that answers it)."""

    code = "remote.option_unavailable"


Command = Callable[[argparse.Namespace, Remote, Console], int]


def remote(command: Command) -> Callable[[argparse.Namespace], int]:
    """Connects the command to its server and ends it with the reason, never a traceback: a refusal exits 5 (as
    locally), a server that cannot be asked exits 7; the token is never printed."""

    def run(args: argparse.Namespace) -> int:
        console = Console(highlight=False)
        try:
            server = Server.parse(server_of(args), token_of(args))
            if server.token and server.in_clear:
                Console(highlight=False, stderr=True).print(
                    Text(f"warning: the API token goes to {server.url} unencrypted; use https:// across a network")
                )
            with Remote(server) as api:
                return command(args, api, console)
        except (ServerAddressError, OptionUnavailableError) as e:  # what was typed, not what the server did
            _error(console, e)
            return 2
        except RefusedError as e:
            _error(console, e)
            return UNREACHABLE if e.status >= 500 else REFUSED
        except RemoteError as e:  # no answer, or not the API's
            _error(console, e)
            return UNREACHABLE

    run.__name__ = command.__name__
    return guarded(run)  # the rest as locally: a user's error (a flow, a file) with its message and hint


def _also(args: argparse.Namespace) -> str:
    """What the commands a report suggests need to reach the same server (nothing when IONFLUX_SERVER says it)."""
    return f" --server {args.server}" if getattr(args, "server", None) else ""


# --- following a run ------------------------------------------------------------------------------------------


def follow(api: Remote, run_id: str, console: Console, *, timeout: float, progress: bool) -> RemoteRun:
    """Wait until the run finishes or waits for a person (or ``timeout``), over its event stream, showing live
    per-step progress on a terminal (the table once at the end otherwise, as locally)."""
    deadline = time.monotonic() + timeout
    live = Live(console=console, refresh_per_second=8) if progress and console.is_terminal else None
    seq = 0
    drawn = 0.0
    with live or nullcontext():
        while (left := deadline - time.monotonic()) > 0:
            settled = False
            for sse in api.events(run_id, after=seq, read_timeout=min(left, STREAM_SILENCE)):
                if sse.event == "end":
                    settled = True
                    break
                if sse.id is None or not sse.id.isdigit():
                    continue  # a live token, not a change of the run
                seq = int(sse.id)
                if sse.json().get("status") in WAITING and _waits(api, run_id):
                    settled = True
                    break
                if live is not None and time.monotonic() - drawn > REDRAW_SECONDS:
                    live.update(_table(api.run(run_id)))
                    drawn = time.monotonic()
                if time.monotonic() > deadline:
                    break
            if settled:
                break
            time.sleep(RECONNECT_SECONDS)  # the stream dropped or went quiet: resume after the last event seen
        current = api.run(run_id)
        if live is not None:
            live.update(_table(current))
    if progress and live is None:
        console.print(_table(current))
    return current


def _waits(api: Remote, run_id: str) -> bool:
    """Whether the run waits for a person now: the stream replays the run from its start, so an approval decided
    before this command began still shows as waiting in the events it replays."""
    return RunStatus(api.run(run_id).summary.status) in WAITING


def _table(run: RemoteRun) -> Table:
    return step_table(run.summary.id, run.summary.status, run.steps)


def _settle(args: argparse.Namespace, api: Remote, console: Console, run_id: str, *, progress: bool) -> int:
    current = follow(api, run_id, console, timeout=args.timeout, progress=progress)
    status = RunStatus(current.summary.status)
    as_json = bool(getattr(args, "json", False))
    return render_report(current.summary, current.approvals, status, console, as_json, also=_also(args))


# --- commands -------------------------------------------------------------------------------------------------


@remote
def cmd_run(args: argparse.Namespace, api: Remote, console: Console) -> int:
    try:
        source = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except OSError as e:
        console.print(Text(f"error[file.unreadable]: {args.file}: {e.strerror}", style="red"))
        return 2
    value = _parse_input(args.input)
    flow_id, version = _save(api, source, args.file)
    run_id = api.start_run(flow_id, value, version)
    if args.detach:
        print(run_id)
        return 0
    if not args.json:
        console.print(Text(f"run {run_id} started on {api.server.url}", style="dim"))
    return _settle(args, api, console, run_id, progress=not args.json)


@remote
def cmd_runs(args: argparse.Namespace, api: Remote, console: Console) -> int:
    found = api.runs(limit=args.limit, flow=args.flow, status=args.status)
    return render_runs(found, console, args.json, also=_also(args))


@remote
def cmd_run_show(args: argparse.Namespace, api: Remote, console: Console) -> int:
    if args.history:
        raise OptionUnavailableError(
            "--history is not available from a server: its API shows each step's latest attempt",
            hint="drop --history, or run `ionflux run-show ID --history` on the server itself",
        )
    found = api.run(api.run_id(args.run_id))
    return render_run(found.summary, found.steps, console, args.json)


def _act(args: argparse.Namespace, api: Remote, action: str, body: dict[str, Any]) -> Acted:
    return api.act(api.run_id(args.run_id), action, body)


def _carry_on(args: argparse.Namespace, api: Remote, console: Console, done: Acted) -> int:
    """After an action that lets the run go on: its status (``--detach``), or follow it until it settles."""
    if args.detach:
        console.print(f"run {done.run_id}: {done.status}")
        return 0
    return _settle(args, api, console, done.run_id, progress=True)


@remote
def cmd_cancel(args: argparse.Namespace, api: Remote, console: Console) -> int:
    done = _act(args, api, "cancel", {})
    console.print(f"run {done.run_id}: {done.status}")
    return 0


@remote
def cmd_pause(args: argparse.Namespace, api: Remote, console: Console) -> int:
    done = _act(args, api, "pause", {})
    console.print(f"run {done.run_id}: {done.status}")
    return 0


@remote
def cmd_resume(args: argparse.Namespace, api: Remote, console: Console) -> int:
    return _carry_on(args, api, console, _act(args, api, "resume", {}))


@remote
def cmd_approve(args: argparse.Namespace, api: Remote, console: Console) -> int:
    reject = bool(getattr(args, "reject", False))
    if args.by:
        Console(highlight=False, stderr=True).print(
            Text("note: --by is not sent: the server records the token's owner as who decided", style="dim")
        )
    body = {k: v for k, v in (("step", args.node), ("comment", args.comment)) if v is not None}
    done = _act(args, api, "reject" if reject else "approve", body)
    console.print(f"{'rejected' if reject else 'approved'} {done.step} of run {done.run_id}")
    return _carry_on(args, api, console, done)


def cmd_reject(args: argparse.Namespace) -> int:
    args.reject = True
    return cmd_approve(args)


@remote
def cmd_rerun(args: argparse.Namespace, api: Remote, console: Console) -> int:
    version = args.version
    if args.flow:
        _, version = _save(api, Path(args.flow).read_text("utf-8"), args.flow)
    body = {k: v for k, v in (("version", version), ("from_step", args.from_step)) if v is not None}
    return _carry_on(args, api, console, _act(args, api, "rerun", body))


def _save(api: Remote, source: str, path: str) -> tuple[str, str]:
    """Store the flow on the server; an invalid one is refused with its issues located in the local file."""
    try:
        return api.save_flow(source)
    except RefusedError as e:
        if e.code != "flow.invalid" or not isinstance(e.location, dict):
            raise
        raise FlowValidationError(_issue(found, path) for found in e.location.get("issues", [])) from None


def _issue(found: dict[str, Any], path: str) -> Issue:
    """An issue the API located in its copy of the flow, located in the file it was read from here."""
    dotted = str(found.get("path") or "")
    return Issue(
        str(found.get("code", "flow.invalid")),
        str(found.get("message", "")),
        Location("<stdin>" if path == "-" else path, int(found.get("line") or 0), int(found.get("column") or 0)),
        (dotted,) if dotted else (),
        found.get("node_id"),
        str(found.get("hint") or ""),
        "warning" if found.get("severity") == "warning" else "error",
    )
