"""Owners, API tokens, browser sessions and the audit log: who is asking, and what they may do.

Every flow, run, secret, chat session and token belongs to an owner, and a request acts as exactly one owner.
Tokens carry a scope (``read`` < ``write`` < ``admin``); a browser session is its owner with the ``admin`` scope
(and a CSRF token for form posts). An owner with the ``admin`` role is an operator: they also manage owners.

Secrets at rest: an API token or a session id is 256 random bits, kept only as its SHA-256 (a fast hash is
enough for a value nobody can guess); a password is kept as an argon2 hash.

First run (:meth:`Accounts.setup`) is one transaction that holds a lock while it checks that no owner exists and
creates the first: two concurrent first runs cannot both make an operator.
"""

from __future__ import annotations

import hashlib
import math
import secrets as random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.limits import SignInGuard
from engine.errors import IonfluxError
from engine.store.db import is_postgres
from engine.store.ids import new_id
from engine.store.tables import LOCAL_OWNER, api_tokens, audit_log, owners, web_sessions

SCOPES = ("read", "write", "admin")
TOKEN_PREFIX = "ifx_"
SESSION_DAYS = 14
_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per token
_HASHER = PasswordHasher()
# the key of the PostgreSQL advisory lock first-run setup holds (any constant; this one spells "ionf")
SETUP_LOCK = 0x696F6E66


class AccessError(IonfluxError):
    code = "auth.invalid"


class SignInLimited(AccessError):
    """Raised when a client or an email has failed to sign in too often lately (``retry_after`` seconds to wait)."""

    code = "request.rate_limited"

    def __init__(self, seconds: int) -> None:
        super().__init__(
            "too many failed sign-in attempts from this address or for this email",
            hint=f"wait {seconds} s and try again; an operator can reset a forgotten password",
        )
        self.retry_after = seconds


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    owner_id: str
    role: str  # owner | admin
    scope: str  # read | write | admin
    actor: str  # for the audit log: "token ifx_ab12…", "session", "cli"
    csrf: str | None = None  # a browser session's: form posts must echo it

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    def __init__(self, db: sa.Engine, guard: SignInGuard | None = None) -> None:
        self.db = db
        self.guard = guard or SignInGuard()
        self._claimed = False  # local_claimed's cache

    # --- owners -----------------------------------------------------------------------------------------------

    def create_owner(
        self, name: str, *, email: str | None = None, password: str | None = None, role: str = "owner"
    ) -> str:
        if role not in ("owner", "admin"):
            raise AccessError(f"unknown role {role!r}", hint="owner or admin", code="request.invalid")
        _check_password(password)
        hashed = _HASHER.hash(password) if password else None  # slow on purpose: before the transaction
        with self.db.begin() as conn:
            return _insert_owner(conn, name, email, hashed, role)

    def setup(
        self, name: str, email: str, password: str, *, token: str | None = None
    ) -> tuple[str, tuple[str, str] | None]:
        """First run: the first owner (an operator), and an admin token named ``token`` if one is asked for; or
        ``setup.done`` if an owner exists. -> (owner id, (token id, the token) or None).

        Atomic: one transaction checks and creates under a lock (on SQLite every write transaction holds the
        database's write lock from its BEGIN IMMEDIATE; on PostgreSQL an advisory lock), so of two first runs at
        the same time exactly one succeeds."""
        _check_password(password)
        if not self.needs_setup():  # a quick refusal, before the slow hash; the check that counts is the locked one
            raise _setup_done()
        hashed = _HASHER.hash(password)
        with self.db.begin() as conn:
            if is_postgres(self.db):
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SETUP_LOCK)))
            if _first_owner(conn) is not None:
                raise _setup_done()
            owner_id = _claim_local(conn, name, email, hashed) or _insert_owner(conn, name, email, hashed, "admin")
            issued = _insert_token(conn, owner_id, token, "admin") if token is not None else None
        self.audit(Principal(owner_id, "admin", "admin", "first run"), "owner.setup", email)
        return owner_id, issued

    def owner(self, owner_id: str) -> dict[str, Any] | None:
        with self.db.connect() as conn:
            row = conn.execute(sa.select(owners).where(owners.c.id == owner_id)).mappings().first()
        return _owner(row) if row else None

    def owners(self, *, limit: int | None = None, after: str | None = None) -> list[dict[str, Any]]:
        """Every owner by id (``limit`` of them after the id ``after``, for a page)."""
        query = sa.select(owners).order_by(owners.c.id).limit(limit)
        if after is not None:
            query = query.where(owners.c.id > after)
        with self.db.connect() as conn:
            return [_owner(r) for r in conn.execute(query).mappings()]

    def local_claimed(self) -> bool:
        """Whether first run has made the local owner someone's (then the open demo, which acts as the local owner
        without credentials, is over). Once true, always true: cached."""
        if not self._claimed:
            with self.db.connect() as conn:
                email = conn.execute(sa.select(owners.c.email).where(owners.c.id == LOCAL_OWNER)).scalar()
            self._claimed = email is not None
        return self._claimed

    def needs_setup(self) -> bool:
        """True until the first owner who can sign in exists (the first-run path creates them)."""
        with self.db.connect() as conn:
            return _first_owner(conn) is None

    # --- tokens -----------------------------------------------------------------------------------------------

    def issue_token(self, owner_id: str, name: str, scope: str) -> tuple[str, str]:
        """A new token: (its id, the token itself, shown once and never again)."""
        with self.db.begin() as conn:
            return _insert_token(conn, owner_id, name, scope)

    def tokens(self, owner_id: str, *, limit: int | None = None, after: str | None = None) -> list[dict[str, Any]]:
        """The owner's tokens by id, revoked ones too (``limit`` of them after the id ``after``, for a page)."""
        query = sa.select(api_tokens).where(api_tokens.c.owner_id == owner_id).order_by(api_tokens.c.id).limit(limit)
        if after is not None:
            query = query.where(api_tokens.c.id > after)
        with self.db.connect() as conn:
            return [_token(r) for r in conn.execute(query).mappings()]

    def revoke(self, owner_id: str, token_id: str) -> bool:
        with self.db.begin() as conn:
            done = conn.execute(
                api_tokens.update()
                .where(
                    api_tokens.c.id == token_id, api_tokens.c.owner_id == owner_id, api_tokens.c.revoked_at.is_(None)
                )
                .values(revoked_at=datetime.now(UTC))
            )
            return bool(done.rowcount)

    def by_token(self, secret: str) -> Principal | None:
        if not secret.startswith(TOKEN_PREFIX):
            return None
        now = datetime.now(UTC)
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(
                    api_tokens.c.id.label("token_id"),
                    api_tokens.c.scope,
                    api_tokens.c.prefix,
                    api_tokens.c.last_used_at,
                    owners.c.id.label("owner_id"),
                    owners.c.role,
                )
                .join(owners, owners.c.id == api_tokens.c.owner_id)
                .where(api_tokens.c.digest == digest(secret), api_tokens.c.revoked_at.is_(None))
            ).first()
        if row is None:
            return None
        last = row.last_used_at
        if last is None or _aware(last) < now - _USED_EVERY:
            with self.db.begin() as conn:
                conn.execute(api_tokens.update().where(api_tokens.c.id == row.token_id).values(last_used_at=now))
        return Principal(row.owner_id, row.role, row.scope, f"token {row.prefix}…")

    # --- browser sessions -------------------------------------------------------------------------------------

    def login(self, email: str, password: str, *, client: str = "") -> tuple[str, Principal] | None:
        """A new session for the right email and password: (the cookie value, who it is); None otherwise. Raises
        :class:`SignInLimited` when ``client`` (its address) or ``email`` failed too often lately (``guard``)."""
        wait = self.guard.begin(client, email)
        if wait > 0:
            raise SignInLimited(max(1, math.ceil(wait)))
        with self.db.connect() as conn:
            row = conn.execute(sa.select(owners).where(owners.c.email == email)).mappings().first()
        with self.guard.hashing:
            if row is None or not row["password_hash"]:
                _HASHER.hash(password)  # the same work either way: timing does not tell which emails exist
                ok = False
            else:
                try:
                    ok = _HASHER.verify(row["password_hash"], password)
                except (VerificationError, InvalidHashError):
                    ok = False
        if not ok or row is None:
            if row is not None:  # the owner sees attempts at their account in their audit log
                who = Principal(row["id"], row["role"], "read", f"client {client or 'unknown'}")
                self.audit(who, "auth.login_failed", email)
            return None
        secret, csrf, now = random.token_urlsafe(32), random.token_urlsafe(24), datetime.now(UTC)
        with self.db.begin() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.expires_at < now))  # expired: nothing to keep
            conn.execute(
                web_sessions.insert().values(
                    digest=digest(secret),
                    owner_id=row["id"],
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + timedelta(days=SESSION_DAYS),
                )
            )
        self.guard.succeeded(client, email)
        principal = Principal(row["id"], row["role"], "admin", "session", csrf)
        self.audit(principal, "auth.login", email, {"client": client} if client else None)
        return secret, principal

    def by_session(self, secret: str) -> Principal | None:
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(web_sessions.c.csrf, web_sessions.c.expires_at, owners.c.id.label("owner_id"), owners.c.role)
                .join(owners, owners.c.id == web_sessions.c.owner_id)
                .where(web_sessions.c.digest == digest(secret))
            ).first()
        if row is None or _aware(row.expires_at) < datetime.now(UTC):
            return None
        return Principal(row.owner_id, row.role, "admin", "session", row.csrf)

    def set_password(self, owner_id: str, password: str) -> bool:
        """A new password for an owner (an operator's reset, or ``ionflux owner password`` on the server); their
        browser sessions end, their tokens stay. False if there is no such owner."""
        _check_password(password)
        hashed = _HASHER.hash(password)
        with self.db.begin() as conn:
            done = conn.execute(owners.update().where(owners.c.id == owner_id).values(password_hash=hashed))
            conn.execute(web_sessions.delete().where(web_sessions.c.owner_id == owner_id))
        return bool(done.rowcount)

    def lock(self, owner_id: str) -> bool:
        """Shut an owner out: no password (no sign-in), every session ended, every token revoked; their flows and
        runs stay (triggers still fire). An operator gives access back with a new password. False if no such owner."""
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            done = conn.execute(owners.update().where(owners.c.id == owner_id).values(password_hash=None))
            conn.execute(web_sessions.delete().where(web_sessions.c.owner_id == owner_id))
            conn.execute(
                api_tokens.update()
                .where(api_tokens.c.owner_id == owner_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return bool(done.rowcount)

    def by_email(self, email: str) -> str | None:
        with self.db.connect() as conn:
            found = conn.execute(sa.select(owners.c.id).where(owners.c.email == email)).scalar()
        return str(found) if found is not None else None

    def logout(self, secret: str) -> None:
        with self.db.begin() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.digest == digest(secret)))

    # --- audit ------------------------------------------------------------------------------------------------

    def audit(self, who: Principal, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        with self.db.begin() as conn:
            conn.execute(
                audit_log.insert().values(
                    id=new_id(),
                    owner_id=who.owner_id,
                    actor=who.actor,
                    action=action,
                    target=target[:200],
                    detail=detail,
                    at=datetime.now(UTC),
                )
            )

    def audit_log(self, owner_id: str, limit: int = 50, before: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(audit_log).where(audit_log.c.owner_id == owner_id)
        if before:
            query = query.where(audit_log.c.id < before)
        with self.db.connect() as conn:
            rows = conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit)).mappings()
            return [
                {
                    "id": r["id"],
                    "actor": r["actor"],
                    "action": r["action"],
                    "target": r["target"],
                    "detail": r["detail"],
                    "at": _aware(r["at"]).isoformat(),
                }
                for r in rows
            ]


def _check_password(password: str | None) -> None:
    if password is not None and len(password) < 10:
        raise AccessError("the password is too short", hint="use 10 characters or more", code="request.invalid")


def _setup_done() -> AccessError:
    return AccessError(
        "this installation has its first owner already",
        hint="sign in (POST /api/v1/login), or ask an operator to add you (POST /api/v1/owners)",
        code="setup.done",
    )


def _first_owner(conn: sa.Connection) -> str | None:
    """An owner besides the local one as it starts (the command line's, which cannot sign in), if there is one."""
    # the local owner is claimed once it has an email: locking it out (no password) does not reopen first run
    query = sa.select(owners.c.id).where(sa.or_(owners.c.id != LOCAL_OWNER, owners.c.email.is_not(None)))
    return conn.execute(query.limit(1)).scalar()


def _claim_local(conn: sa.Connection, name: str, email: str, hashed: str) -> str | None:
    """Make the first owner the local one (LOCAL_OWNER), given a name, an email, a password and the operator role:
    what the command line, ``ionflux up`` and the open demo made (the bundled flows, runs, secrets) is theirs from
    the first sign-in, instead of staying in a workspace nobody can sign in to. None if there is no local owner."""
    done = conn.execute(
        owners.update()
        .where(owners.c.id == LOCAL_OWNER, owners.c.email.is_(None))
        .values(name=name, email=email, password_hash=hashed, role="admin")
    )
    return LOCAL_OWNER if done.rowcount == 1 else None


def _insert_owner(conn: sa.Connection, name: str, email: str | None, hashed: str | None, role: str) -> str:
    if email and conn.execute(sa.select(owners.c.id).where(owners.c.email == email)).first():
        raise AccessError(f"an owner with the email {email!r} exists", code="owner.exists")
    owner_id = new_id()
    conn.execute(
        owners.insert().values(
            id=owner_id, name=name, email=email, password_hash=hashed, role=role, created_at=datetime.now(UTC)
        )
    )
    return owner_id


def _insert_token(conn: sa.Connection, owner_id: str, name: str, scope: str) -> tuple[str, str]:
    if scope not in SCOPES:
        raise AccessError(f"unknown scope {scope!r}", hint="read, write or admin", code="request.invalid")
    secret = TOKEN_PREFIX + random.token_urlsafe(32)
    token_id = new_id()
    conn.execute(
        api_tokens.insert().values(
            id=token_id,
            owner_id=owner_id,
            name=name,
            digest=digest(secret),
            prefix=secret[:10],
            scope=scope,
            created_at=datetime.now(UTC),
        )
    )
    return token_id, secret


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def _owner(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "role": row["role"],
        "can_sign_in": bool(row["password_hash"]),
        "created_at": _aware(row["created_at"]).isoformat(),
    }


def _token(row: Any) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return _aware(value).isoformat() if value else None

    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "scope": row["scope"],
        "created_at": when(row["created_at"]),
        "last_used_at": when(row["last_used_at"]),
        "revoked_at": when(row["revoked_at"]),
    }
