"""The arguments of the commands that run flows; their code (api.run_commands) is imported only when one runs,
so `ionflux validate` and friends do not pay for the database, queue and terminal libraries.

The run commands (run, runs, run-show, cancel, pause, resume, approve, reject, rerun) take ``--server URL`` and
``--token``: with a server (or IONFLUX_SERVER) they ask its HTTP API (api.remote_commands) instead of opening the
local database."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    return _lazy_from("api.run_commands", name)


def server_of(args: argparse.Namespace) -> str:
    """The server a run command asks: ``--server``, else IONFLUX_SERVER; empty: this machine (``--server ''``
    runs here although IONFLUX_SERVER is set)."""
    given = getattr(args, "server", None)
    return (given if given is not None else os.environ.get("IONFLUX_SERVER", "")).strip()


def token_of(args: argparse.Namespace) -> str:
    """The API token: ``--token``, else IONFLUX_TOKEN (the environment keeps it out of the process list)."""
    given = getattr(args, "token", None)
    return (given if given is not None else os.environ.get("IONFLUX_TOKEN", "")).strip()


def _run_command(name: str) -> Callable[[argparse.Namespace], int]:
    """A run command, local or remote, by whether a server is named."""
    local, remote = _lazy(name), _lazy_from("api.remote_commands", name)

    def run(args: argparse.Namespace) -> int:
        if server_of(args):
            return remote(args)
        if args.token:
            # a token and no server is a mistake to point out, not a reason to change the local database
            print(
                "error[usage]: --token is for a server's API, and no server is named\n"
                "  hint: add --server URL (or set IONFLUX_SERVER), or drop --token to use this machine's runs",
                file=sys.stderr,
            )
            return 2
        return local(args)

    return run


def _remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        metavar="URL",
        help="ask this server's HTTP API instead of the local database, e.g. http://127.0.0.1:8080 "
        "(default: $IONFLUX_SERVER; '' runs here)",
    )
    p.add_argument(
        "--token",
        help="the API token for --server (default: $IONFLUX_TOKEN, which other users cannot see in the process "
        "list; `ionflux token create NAME --scope write` on the server makes one)",
    )


def _lazy_from(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        command: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
        return command(args)

    return run


def add_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = add("run", "Run a flow end to end in the embedded engine, with live per-step progress.")
    p.add_argument("file", metavar="FILE", help="flow file ('-' reads standard input)")
    p.add_argument("--input", help="run input as JSON, or @file.json")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON (no progress)")
    p.add_argument("--detach", action="store_true", help="store and start the run, print its id, do not execute")
    p.add_argument("--timeout", type=float, default=3600.0, help="stop waiting after this many seconds")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default IONFLUX_WORKER_THREADS)")
    _remote_options(p)
    p.set_defaults(func=_run_command("cmd_run"))

    p = add("runs", "List recent runs.")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--flow", help="only this flow id")
    p.add_argument("--status", help="only runs with this status")
    p.add_argument("--json", action="store_true")
    _remote_options(p)
    p.set_defaults(func=_run_command("cmd_runs"))

    p = add("run-show", "Show one run: status, timings, errors, step previews and logs.")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id (or a unique prefix of 6+ characters)")
    p.add_argument("--history", action="store_true", help="every attempt of every step, not only the latest")
    p.add_argument("--json", action="store_true")
    _remote_options(p)
    p.set_defaults(func=_run_command("cmd_run_show"))

    for name, text in (
        ("cancel", "Cancel a run."),
        ("pause", "Pause a run (running steps finish; nothing new starts)."),
        ("resume", "Resume a paused run."),
        ("approve", "Approve (or --reject) the approval step a run waits on."),
        ("reject", "Reject the approval step a run waits on (the same as approve --reject)."),
        ("rerun", "Re-run a failed or cancelled run from its failed steps (--from: any run from a step)."),
    ):
        p = add(name, text)
        p.add_argument("run_id", metavar="RUN_ID")
        p.add_argument("--detach", action="store_true", help="do not carry the run on in this process")
        p.add_argument("--timeout", type=float, default=3600.0)
        if name in ("approve", "reject"):
            if name == "approve":
                p.add_argument("--reject", action="store_true")
            p.add_argument("--node", help="which approval step, when several wait")
            p.add_argument("--comment")
            p.add_argument("--by", help="who decides (default: $USER; a server records the token's owner)")
        if name == "rerun":
            version = p.add_mutually_exclusive_group()
            version.add_argument("--flow", metavar="FILE", help="re-run on this newer version of the flow")
            version.add_argument(
                "--version", metavar="VERSION", help="re-run on this stored version of the flow (or `latest`)"
            )
            p.add_argument("--from", dest="from_step", metavar="STEP", help="re-run from this step and what needs it")
        _remote_options(p)
        p.set_defaults(func=_run_command(f"cmd_{name}"))

    p = add("up", "Start IONFLUX all-in-one (embedded): store the bundled flows, run workers and timers.")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (for scripts)")
    p.set_defaults(func=_lazy("cmd_up"))

    p = add("api", "Run the HTTP server alone (webhooks; scale-out: workers and a scheduler run elsewhere).")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (for scripts)")
    p.set_defaults(func=_lazy("cmd_api"))

    p = add("worker", "Run worker processes against Redis + the shared database (scale-out mode).")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (for scripts)")
    p.set_defaults(func=_lazy("cmd_worker"))

    p = add("activate", "Arm a flow's triggers (cron, webhook, event): a flow file, or a stored flow's id.")
    p.add_argument("flow", metavar="FILE|FLOW_ID")
    p.add_argument("--version", help="a stored version (default: the latest)")
    p.set_defaults(func=_lazy_from("api.trigger_commands", "cmd_activate"))

    p = add("deactivate", "Disarm a flow's triggers (manual runs still work).")
    p.add_argument("flow", metavar="FLOW_ID")
    p.set_defaults(func=_lazy_from("api.trigger_commands", "cmd_deactivate"))

    p = add("triggers", "List armed triggers: next cron fire times, webhook URLs, event subjects; --rotate FLOW.")
    p.add_argument("flow", metavar="FLOW_ID", nargs="?", help="only this flow")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rotate", metavar="FLOW_ID", help="give the flow's webhook a new URL (the old one stops)")
    p.add_argument("--position", type=int, help="which webhook trigger, when a flow has several")
    p.set_defaults(func=_lazy_from("api.trigger_commands", "cmd_triggers"))

    p = add("scheduler", "Fire cron triggers (exactly once across schedulers) and start triggered runs.")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (for scripts)")
    p.set_defaults(func=_lazy_from("api.trigger_commands", "cmd_scheduler"))

    p = add("publish", "Publish an event (JSON) on a subject, as event.publish does: to try event triggers.")
    p.add_argument("subject", metavar="SUBJECT")
    p.add_argument("data", metavar="JSON")
    p.add_argument("--msg-id", help="a de-duplication id: publishing it again is the same event")
    p.set_defaults(func=_lazy_from("api.trigger_commands", "cmd_publish"))

    p = add("plan", "Draft a flow from a sentence (Jules's offline planner: no model, no network).")
    p.add_argument(
        "text", metavar="REQUEST", help='e.g. "every weekday at 8:30 Lisbon time, post the orders to #sales"'
    )
    p.add_argument("-o", "--output", metavar="FILE.yaml", help="write the flow there (default: print it)")
    p.add_argument("--id", default="planned-flow", help="the flow's id")
    p.add_argument("--model", metavar="ALIAS", help="plan with this model alias (IONFLUX_LLM_MODELS) instead, repaired")
    p.add_argument("--attempts", type=int, default=3, help="with --model: how many answers the validator may refuse")
    p.add_argument(
        "--mode",
        choices=("tools", "json", "yaml"),
        default="tools",
        help="with --model: how the model answers (tools: a schema it must follow; json: a JSON object; yaml: text)",
    )
    p.set_defaults(func=_lazy_from("api.copilot_commands", "cmd_plan"))

    p = add("chat", "Talk with Jules in the terminal: a flow drafted, edited by proposals you accept, then saved.")
    p.add_argument("--model", metavar="ALIAS", help="the model alias Jules uses (default: IONFLUX_MODEL, else offline)")
    p.add_argument("--offline", action="store_true", help="use the offline planner even if IONFLUX_MODEL is set")
    p.add_argument("--mode", choices=("tools", "json"), default="tools", help="how the model answers (default tools)")
    p.add_argument("--session", metavar="ID", help="continue a stored session")
    p.add_argument("--from", dest="start", metavar="FILE.yaml", help="start from an existing flow")
    p.add_argument("-o", "--output", metavar="FILE.yaml", help="where /save writes (default: <flow id>.yaml)")
    p.add_argument("--user", default=os.environ.get("USER", ""), help="who accepts the changes (recorded)")
    p.set_defaults(func=_lazy_from("api.chat_commands", "cmd_chat"))

    p = add("review", "Jules's review of a flow file: cost per node, cheaper alternatives, error-handling advice.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--write", action="store_true", help="apply the advice and write descriptions into the file")
    p.add_argument("--alert-to", default="ops@example.com", help="who a new failure alert emails (no Slack/Discord)")
    p.set_defaults(func=_lazy_from("api.review_commands", "cmd_review"))

    p = add(
        "tune", "Shorter prompts for a flow's llm nodes (token and C-ION difference); --score tries them on past runs."
    )
    p.add_argument("flow", metavar="FLOW", help="a flow file, or the id of a stored flow")
    p.add_argument("--node", metavar="ID", help="only this llm node")
    p.add_argument("--score", action="store_true", help="run both prompts on the inputs of past runs (calls the model)")
    p.add_argument("--runs", type=int, default=5, help="with --score: how many past runs (newest first)")
    p.set_defaults(func=_lazy_from("api.tune_commands", "cmd_tune"))

    p = add("eval", "Score the co-pilot on an evaluation set (docs/evals.md): indomain, taskbench or heal.")
    p.add_argument("set", choices=("indomain", "taskbench", "heal"))
    p.add_argument(
        "--data", metavar="FILE.jsonl", help="the gold records (heal: a folder of cases; default evals/heal/cases)"
    )
    p.add_argument("--predictions", metavar="FILE.jsonl", help="one prediction per record id (else --planner)")
    p.add_argument(
        "--planner", help="plan each record now: offline (heal: rules), or model:ALIAS (an IONFLUX_LLM_MODELS route)"
    )
    p.add_argument("--catalog", metavar="FILE.json", help="taskbench: the tool catalog (tool_desc.json)")
    p.add_argument("--limit", type=int, help="only the first N records")
    p.add_argument("--out", metavar="FILE.json", help="write the results (per record too) as JSON")
    p.set_defaults(func=_lazy_from("evals.cli", "cmd_eval"))

    p = add("heal", "Diagnose a failed run, propose a fix, prove it by replaying the failed step; --apply resumes.")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--apply", action="store_true", help="store the verified fix and resume the run from the step")
    p.add_argument("--as-is", action="store_true", help="resume from the failed step unchanged (after the action)")
    p.add_argument("--force", action="store_true", help="with --apply: apply a fix the replay did not verify")
    p.add_argument(
        "--allow-effects", action="store_true", help="replay a step with outside effects (a POST, an email) for real"
    )
    p.add_argument("--model", metavar="ALIAS", help="ask this model alias when the rules find no fix")
    p.add_argument("--offline", action="store_true", help="the rules only, even with IONFLUX_MODEL set")
    p.add_argument("--json", action="store_true", help="print the healing as JSON")
    p.add_argument("--detach", action="store_true", help="with --apply: resume it, do not follow it here")
    p.add_argument("--timeout", type=float, default=3600.0, help="stop following after this many seconds")
    p.set_defaults(func=_lazy_from("api.heal_commands", "cmd_heal"))

    p = add("secrets", "Manage the encrypted secret store: set NAME (value from --value or stdin), list, delete.")
    p.add_argument("action", choices=("set", "list", "delete", "new-key"))
    p.add_argument("name", nargs="?")
    p.add_argument("--value", help="the value (default: read standard input, so it stays out of shell history)")
    p.set_defaults(func=_lazy("cmd_secrets"))

    p = add("token", "API tokens: create NAME [--scope], list, revoke ID (the local owner's, or --owner EMAIL's).")
    p.add_argument("action", choices=("create", "list", "revoke"))
    p.add_argument("name", nargs="?", metavar="NAME|ID")
    p.add_argument("--scope", choices=("read", "write", "admin"), default="read")
    p.add_argument("--owner", metavar="EMAIL", help="another owner's tokens (default: the local owner)")
    p.set_defaults(func=_lazy_from("api.account_commands", "cmd_token"))

    p = add(
        "owner",
        "Owners: create NAME [--email --password-stdin --role], list, password EMAIL (a new one, from standard "
        "input), lock EMAIL (no sign-in, sessions ended, tokens revoked).",
    )
    p.add_argument("action", choices=("create", "list", "password", "lock"))
    p.add_argument("name", nargs="?", metavar="NAME|EMAIL")
    p.add_argument("--email")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--role", choices=("owner", "admin"), default="owner")
    p.set_defaults(func=_lazy_from("api.account_commands", "cmd_owner"))

    p = add("transform", "WebAssembly transforms: register, list, show, test (docs/guides/creating_transforms.md).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    register = actions.add_parser("register", help="store a wasm32-wasi module under its manifest's name@version")
    register.add_argument("file", metavar="FILE.wasm")
    register.add_argument("--manifest", required=True, metavar="FILE.yaml", help="name, version, schemas, limits")
    listing = actions.add_parser("list", help="the registered transforms")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one transform's manifest, size and digest")
    show.add_argument("module", metavar="NAME@VERSION")
    test = actions.add_parser("test", help="run a transform once on an input, in the sandbox, outside any flow")
    test.add_argument("module", metavar="NAME@VERSION")
    test.add_argument("--input", help="the input as JSON")
    p.set_defaults(func=_lazy_from("api.transform_commands", "cmd_transform"))
