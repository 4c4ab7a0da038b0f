"""``ionflux chat``: a terminal conversation with Jules that ends with a saved flow.

Each message gets a proposal (what changes, a diff, the cost forecast); the user accepts or rejects it; the
conversation is stored like the UI's, so ``--session ID`` picks it up again. ``/save`` (or the end of input)
writes the draft to a file and stores it as a flow version, ready for ``ionflux activate`` or ``ionflux run``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from api.jules import jules_for, model_choice
from api.settings import Settings
from copilot.chat import Change, Jules, Turn
from engine.dsl.issue import FlowValidationError
from engine.errors import IonfluxError
from engine.nodetypes.builtin import builtin_registry
from engine.store.tables import LOCAL_OWNER

HELP = (
    "Say what to automate, then what to change. Commands: /accept (or y), /reject (or n), /show, /save [FILE], "
    "/help, /quit. The end of input saves."
)


def cmd_chat(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    settings = Settings()
    try:
        return _chat(args, settings, console)
    except (IonfluxError, FlowValidationError) as e:
        console.print(Text(f"error[{e.code}]: {e.message}", style="red"))
        if e.hint:
            console.print(Text(f"  hint: {e.hint}", style="dim"))
        return 2


def _chat(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from engine.store.db import make_engine, migrate

    db = make_engine(settings.runtime_config().database_url)
    migrate(db)
    choice = None if args.offline else model_choice(settings, args.model, args.mode)
    from engine.runtime.secrets import SecretStore

    secrets = tuple(SecretStore(db, settings.key()).names(LOCAL_OWNER))  # a model may use these and no other
    jules = jules_for(db, builtin_registry(), settings, secrets, model=choice)
    start = Path(args.start).read_text("utf-8") if args.start else ""
    # the terminal acts as the local owner (embedded mode), like every other command
    session = args.session or jules.start(owner=LOCAL_OWNER, user=args.user, draft=start)
    planner = f"model {choice.model}" if choice else "offline planner (no model configured: rules and the catalog)"
    console.print(Text(f"Jules ({planner}); session {session}. {HELP}", style="dim"))
    pending: Change | None = jules.session(session, owner=LOCAL_OWNER).pending
    saved = jules.session(
        session, owner=LOCAL_OWNER
    ).draft  # what is on disk already: the end of input saves only what is new
    while True:
        line = _read("you> ")
        if line is None or line.strip() in ("/quit", "/exit"):
            if jules.session(session, owner=LOCAL_OWNER).draft == saved:
                return 0
            return _save(jules, session, args.output, settings, console)
        text = line.strip()
        if not text:
            continue
        if pending is not None and text.lower() in ("y", "yes", "/accept"):
            jules.accept(session, pending.id, owner=LOCAL_OWNER, user=args.user)
            console.print(Text("accepted: the draft is updated", style="green"))
            pending = None
        elif pending is not None and text.lower() in ("n", "no", "/reject"):
            jules.reject(session, pending.id, owner=LOCAL_OWNER, user=args.user)
            console.print(Text("rejected: the draft is unchanged", style="yellow"))
            pending = None
        elif text == "/show":
            print(jules.session(session, owner=LOCAL_OWNER).draft or "(no draft yet)", end="")
        elif text == "/help":
            console.print(Text(HELP, style="dim"))
        elif text.startswith("/save"):
            target = text.removeprefix("/save").strip() or args.output
            if _save(jules, session, target, settings, console) == 0:
                saved = jules.session(session, owner=LOCAL_OWNER).draft
        elif text.startswith("/"):
            console.print(Text(f"unknown command {text.split()[0]}; {HELP}", style="red"))
        else:
            pending = _turn(jules, session, text, args.user, console)


def _turn(jules: Jules, session: str, text: str, user: str, console: Console) -> Change | None:
    console.print(Text("jules> ", style="bold cyan"), end="")

    def listen(kind: str, piece: str) -> None:
        if kind == "token":
            console.print(piece, end="", soft_wrap=True)
        elif kind == "retry":
            console.print(Text("\n  (the validator refused that answer; asking again)\njules> ", style="dim"), end="")
        elif kind == "status":
            console.print(Text(f"({piece}) ", style="dim"), end="")

    turn: Turn = jules.say(session, text, owner=LOCAL_OWNER, user=user, listen=listen)
    console.print()
    if turn.change is None or turn.change.status != "pending":
        return None
    for line in turn.change.diff.splitlines()[2:]:  # the --- / +++ header says nothing here
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        console.print(Text(line, style=style))
    console.print(Text("accept this change? y / n (or keep talking: a new message replaces it)", style="bold"))
    return turn.change


def _save(jules: Jules, session: str, output: str | None, settings: Settings, console: Console) -> int:
    draft = jules.session(session, owner=LOCAL_OWNER).draft
    if not draft:
        console.print(Text("nothing to save: accept a proposal first", style="yellow"))
        return 1
    import yaml

    flow_id = str((yaml.safe_load(draft) or {}).get("id") or "flow")
    path = Path(output or f"{flow_id}.yaml")
    path.write_text(draft, encoding="utf-8")
    from engine.runtime.runtime import Runtime

    try:
        with Runtime(settings.runtime_config(), extension_modules=settings.extension_modules) as runtime:
            _, version = runtime.orchestrator.save_flow(draft, str(path), LOCAL_OWNER)
    except IonfluxError as e:  # written, but this installation cannot run it yet: say why
        console.print(Text(f"saved to {path}; not stored as a flow: {e}", style="yellow"))
        return 0
    jules.saved_as(session, flow_id, owner=LOCAL_OWNER)
    console.print(
        Text(f"saved to {path} and stored as flow {flow_id} (version {version}); next: ionflux run {path}", "green")
    )
    return 0


def _read(prompt: str) -> str | None:
    try:
        if sys.stdin.isatty():
            return input(prompt)
        line = sys.stdin.readline()
        if line:
            print(prompt + line.rstrip("\n"))  # piped input: the transcript shows what was said
        return line if line else None
    except EOFError:
        return None
