"""``ionflux token`` and ``ionflux owner``: API tokens and owners from the command line, on the server's own
database (for scripts, and for an operator who has no token yet). Tokens are for the local owner (the command
line's) unless ``--owner EMAIL`` names another."""

from __future__ import annotations

import argparse
import getpass
import sys

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from rich.text import Text

from api.accounts import AccessError, Accounts, Principal
from api.settings import Settings
from engine.store.tables import LOCAL_OWNER, owners


def _accounts() -> Accounts:
    from engine.store.db import make_engine, migrate

    db = make_engine(Settings().runtime_config().database_url)
    migrate(db)
    return Accounts(db)


def _owner_id(accounts: Accounts, email: str | None) -> str:
    if not email:
        return LOCAL_OWNER
    with accounts.db.connect() as conn:
        found = conn.execute(sa.select(owners.c.id).where(owners.c.email == email)).scalar()
    if found is None:
        raise AccessError(f"no owner has the email {email!r}", hint="ionflux owner list", code="owner.not_found")
    return str(found)


def cmd_token(args: argparse.Namespace) -> int:
    console = Console(highlight=False, stderr=True)
    try:
        accounts = _accounts()
        owner = _owner_id(accounts, args.owner)
        if args.action == "create":
            token_id, secret = accounts.issue_token(owner, args.name or "cli", args.scope)
            print(secret)  # alone on stdout, so `TOKEN=$(ionflux token create ci)` works
            console.print(Text(f"token {token_id} ({args.scope}); it is shown once: store it now", style="dim"))
        elif args.action == "list":
            table = Table("id", "name", "prefix", "scope", "last used", "revoked")
            for t in accounts.tokens(owner):
                table.add_row(
                    t["id"], t["name"], t["prefix"], t["scope"], t["last_used_at"] or "-", t["revoked_at"] or ""
                )
            Console().print(table)
        elif not args.name or not accounts.revoke(owner, args.name):
            console.print(Text(f"error[token.not_found]: no active token {args.name!r}", style="red"))
            return 1
        else:
            console.print(f"revoked {args.name}")
    except AccessError as e:
        console.print(Text(f"error[{e.code}]: {e.message}", style="red"))
        return 1
    return 0


def cmd_owner(args: argparse.Namespace) -> int:
    console = Console(highlight=False, stderr=True)
    accounts = _accounts()
    if args.action == "list":
        table = Table("id", "name", "email", "role", "can sign in")
        for o in accounts.owners():
            table.add_row(o["id"], o["name"], o["email"] or "", o["role"], "yes" if o["can_sign_in"] else "no")
        Console().print(table)
        return 0
    if not args.name:
        console.print(
            Text(
                "error[request.invalid]: give the owner's " + ("name" if args.action == "create" else "email"),
                style="red",
            )
        )
        return 2
    if args.action in ("password", "lock"):
        return _change_owner(console, accounts, args)
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    try:
        owner_id = accounts.create_owner(args.name, email=args.email, password=password, role=args.role)
    except AccessError as e:
        console.print(Text(f"error[{e.code}]: {e.message}" + (f" ({e.hint})" if e.hint else ""), style="red"))
        return 1
    print(owner_id)
    return 0


def _change_owner(console: Console, accounts: Accounts, args: argparse.Namespace) -> int:
    """``ionflux owner password EMAIL`` (the way back in for someone who forgot it, operators included) and
    ``ionflux owner lock EMAIL``, on the server itself; recorded in the owner's audit log."""
    owner_id = accounts.by_email(args.name)
    if owner_id is None:
        console.print(Text(f"error[owner.not_found]: no owner with the email {args.name!r}", style="red"))
        console.print(Text("  hint: `ionflux owner list` shows them", style="dim"))
        return 1
    who = Principal(owner_id, "admin", "admin", "cli")
    if args.action == "lock":
        accounts.lock(owner_id)
        accounts.audit(who, "owner.lock", owner_id)
        console.print(f"{args.name}: locked out (no sign-in, sessions ended, tokens revoked)")
        return 0
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("new password: ")
    try:
        accounts.set_password(owner_id, password)
    except AccessError as e:
        console.print(Text(f"error[{e.code}]: {e.message}" + (f" ({e.hint})" if e.hint else ""), style="red"))
        return 1
    accounts.audit(who, "owner.password", owner_id)
    console.print(f"{args.name}: new password set (their browser sessions ended)")
    return 0
