"""Chat sessions with Jules: a conversation that edits one flow draft, a proposal at a time.

The first message plans a draft; every later message is read into edit operations (by a model when one is
configured, else by the offline reader, copilot.follow_up). Either way Jules answers with a *proposal*: the
operations, a diff and the validator's verdict. The draft changes only when the user accepts a proposal; a newer
proposal supersedes an older pending one; every decision is recorded (the prompt, the planner or model, the
operations, the diff, who decided and when), so a flow's history says who asked for what.

Everything is stored (tables ``chat_sessions``, ``chat_messages``, ``chat_changes``), so a session survives a
restart and the API and the UI read the same conversation the CLI had. A session belongs to an owner: every call
names the owner it acts for, and another owner's session answers as if it did not exist (``copilot.session_not_found``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import yaml
from pydantic import ValidationError

from copilot import follow_up, review_edits
from copilot.cost import forecast
from copilot.edits import EditPlan, Proposal, check, describe, propose
from copilot.model_edits import edit_with_model
from copilot.planning import draft as offline_draft
from copilot.structured import ModelChoice
from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.nodetypes.registry import Registry
from engine.store.ids import new_id
from engine.store.tables import chat_changes, chat_messages, chat_sessions

Listener = Callable[[str, str], None]  # (kind, text): "token" pieces of the reply, "retry" problems, "status"


class ChatError(IonfluxError):
    """Raised when a conversation cannot go on: a session or change that does not exist for this owner
    (``copilot.session_not_found``, ``copilot.change_not_found``), an empty message or an invalid starting draft
    (``copilot.message_invalid``, ``copilot.draft_invalid``), or a decision that no longer applies
    (``copilot.chat``: superseded, or made on an older draft)."""

    code = "copilot.chat"


@dataclass(frozen=True)
class Change:
    """A proposal as stored: what it does and what became of it."""

    id: str
    status: str  # pending | accepted | rejected | superseded | invalid
    prompt: str
    planner: str
    summary: tuple[str, ...]
    before: str
    after: str
    diff: str
    decided_by: str | None
    decided_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "prompt": self.prompt,
            "planner": self.planner,
            "summary": list(self.summary),
            "diff": self.diff,
            "after": self.after,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


@dataclass(frozen=True)
class Turn:
    """Jules's answer to one message."""

    reply: str
    planner: str
    change: Change | None  # None when nothing could be proposed (the reply says why)
    cost: str = ""  # the forecast of the proposed flow, in words
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Session:
    id: str
    owner_id: str
    title: str
    draft: str
    flow_id: str | None
    created_by: str
    messages: tuple[dict[str, Any], ...]
    changes: tuple[Change, ...]

    @property
    def pending(self) -> Change | None:
        return next((c for c in reversed(self.changes) if c.status == "pending"), None)


class Jules:
    """The co-pilot's conversations, stored in the product's database."""

    def __init__(
        self,
        db: sa.Engine,
        registry: Registry,
        *,
        model: ModelChoice | None = None,
        aliases: tuple[str, ...] = ("default",),
        secrets: tuple[str, ...] | None = None,
    ) -> None:
        """``secrets``: the names of the user's secrets, which a model may use (None: unknown, not enforced)."""
        self.db = db
        self.registry = registry
        self.model = model
        self.aliases = aliases
        self.secrets = secrets

    @property
    def planner(self) -> str:
        return f"model:{self.model.model}" if self.model else "offline"

    # --- sessions -------------------------------------------------------------------------------------------

    def start(
        self,
        *,
        owner: str,
        user: str = "",
        title: str = "",
        draft: str = "",
        flow_id: str | None = None,
        reuse: bool = False,
    ) -> str:
        """A new session of ``owner`` (``draft``: start from an existing flow's YAML, ``flow_id``, instead of an
        empty one). ``reuse``: the newest untouched session that would be the same (no message, no change, same
        draft, flow, title and author) instead, if there is one: opening the builder again must not leave a trail
        of empty sessions behind."""
        if draft:
            self._valid(draft, "the starting draft")
        session_id, now = new_id(), datetime.now(UTC)
        with self.db.begin() as conn:
            if reuse:
                untouched = (
                    sa.select(chat_sessions.c.id)
                    .where(
                        chat_sessions.c.owner_id == owner,
                        chat_sessions.c.draft == draft,
                        chat_sessions.c.flow_id.is_(None) if flow_id is None else chat_sessions.c.flow_id == flow_id,
                        chat_sessions.c.title == title,
                        chat_sessions.c.created_by == user,
                        ~sa.exists().where(chat_messages.c.session_id == chat_sessions.c.id),
                        ~sa.exists().where(chat_changes.c.session_id == chat_sessions.c.id),
                    )
                    .order_by(chat_sessions.c.created_at.desc(), chat_sessions.c.id.desc())
                    .limit(1)
                )
                found = conn.execute(untouched).scalar()
                if found is not None:
                    return str(found)
            conn.execute(
                chat_sessions.insert().values(
                    id=session_id,
                    owner_id=owner,
                    title=title,
                    draft=draft,
                    flow_id=flow_id,
                    created_by=user,
                    created_at=now,
                    updated_at=now,
                )
            )
        return session_id

    def session(self, session_id: str, *, owner: str) -> Session:
        """The session with its messages and changes; ``copilot.session_not_found`` unless ``owner``'s."""
        with self.db.connect() as conn:
            row = self._owned(conn, session_id, owner)
            messages = conn.execute(
                sa.select(chat_messages).where(chat_messages.c.session_id == session_id).order_by(chat_messages.c.id)
            ).mappings()
            changes = conn.execute(
                sa.select(chat_changes).where(chat_changes.c.session_id == session_id).order_by(chat_changes.c.id)
            ).mappings()
            return Session(
                row["id"],
                row["owner_id"],
                row["title"],
                row["draft"],
                row["flow_id"],
                row["created_by"],
                tuple(
                    {
                        "role": m["role"],
                        "content": m["content"],
                        "author": m["author"],
                        "at": _aware(m["created_at"]).isoformat(),
                    }
                    for m in messages
                ),
                tuple(_change(c) for c in changes),
            )

    def sessions(self, *, owner: str, limit: int = 50, before: str | None = None) -> list[dict[str, Any]]:
        """``owner``'s sessions, newest first; with ``before``, those older than that session id (the next page)."""
        query = (
            sa.select(chat_sessions)
            .where(chat_sessions.c.owner_id == owner)
            .order_by(chat_sessions.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(chat_sessions.c.id < before)
        with self.db.connect() as conn:
            return [
                {
                    "id": r["id"],
                    "title": r["title"],
                    "flow_id": r["flow_id"],
                    "created_at": r["created_at"],
                    "updated_at": r["updated_at"],
                }
                for r in conn.execute(query).mappings()
            ]

    # --- a message and its proposal ---------------------------------------------------------------------------

    def say(self, session_id: str, text: str, *, owner: str, user: str = "", listen: Listener | None = None) -> Turn:
        """Answer ``text``: a proposal for the session's draft (nothing changes until it is accepted)."""
        text = text.strip()
        if not text:
            raise ChatError(
                "the message is empty",
                hint="say what to automate, or what to change in the draft",
                code="copilot.message_invalid",
            )
        current = self.session(session_id, owner=owner)
        self._record_message(session_id, "user", text, user)
        turn = self._first_draft(current, text, listen) if not current.draft else self._edit(current, text, listen)
        if turn.change is None and listen is not None:
            listen("token", turn.reply)  # a model's refused replies were retracted; the offline reply is whole
        return turn

    def _first_draft(self, current: Session, text: str, listen: Listener | None) -> Turn:
        flow_id = flow_id_for(text)
        if self.model is not None:
            from copilot.model_planner import plan_with_model

            if listen is not None:
                listen("status", f"planning with {self.model.model}")
            planned = plan_with_model(
                text,
                self.registry,
                model=self.model.model,
                api_base=self.model.api_base,
                api_key=self.model.api_key,
                alias=self.aliases[0],
                aliases=self.aliases,
                secrets=self.secrets,
                timeout=self.model.timeout,
                mode=self.model.mode,
            )
            if not planned.valid or planned.yaml is None:
                reply = f"I could not write a valid flow for that. {planned.problems}"
                return self._answer(current, text, reply, None, planned.planner, planned, listen)
            proposal = check("", with_flow_id(planned.yaml, flow_id), (), self.registry)
            reply = "Here is a first draft."
            return self._answer(current, text, reply, proposal, planned.planner, planned, listen)
        result = offline_draft(text, flow_id=flow_id, registry=self.registry)
        proposal = check("", result.yaml, (), self.registry)
        nodes = len((yaml.safe_load(result.yaml) or {}).get("nodes") or [])
        reply = f"Here is a first draft with {nodes} step{'s' if nodes != 1 else ''} (offline planner)."
        return self._answer(current, text, reply, proposal, "offline", None, listen)

    def _edit(self, current: Session, text: str, listen: Listener | None) -> Turn:
        if self.model is not None:
            on_token = (lambda piece: listen("token", piece)) if listen else None
            on_retry = (lambda problems: listen("retry", problems)) if listen else None
            edited = edit_with_model(
                text,
                current.draft,
                self.registry,
                self.model,
                aliases=self.aliases,
                secrets=self.secrets,
                on_token=on_token,
                on_retry=on_retry,
            )
            if edited.proposal is None:
                reply = f"I could not make that change validly. {edited.problems}"
                return self._answer(current, text, reply, None, edited.planner, edited, listen)
            return self._answer(
                current, text, edited.reply, edited.proposal, edited.planner, edited, listen, streamed=edited.reply
            )
        reading = follow_up.read(text, current.draft, self.registry, self.aliases)
        if not reading.understood:
            return self._answer(current, text, reading.reply, None, "offline", None, listen)
        proposal = propose(current.draft, reading.operations, self.registry)
        return self._answer(current, text, reading.reply, proposal, "offline", None, listen)

    def _answer(
        self,
        current: Session,
        prompt: str,
        reply: str,
        proposal: Proposal | None,
        planner: str,
        usage: Any,
        listen: Listener | None,
        streamed: str = "",
    ) -> Turn:
        """Record Jules's reply and its proposal. ``streamed``: the part of the reply a model already streamed."""
        cost = ""
        if proposal is not None and not proposal.valid:
            reply += f"\nBut the result does not validate, so I will not propose it:\n{proposal.problems}"
        elif proposal is not None:
            cost = self._cost(proposal)
            reply = f"{reply}\n{_changes_line(proposal)}{' ' + cost if cost else ''}"
            if not proposal.before:  # a first draft: what Jules would add, for the user to ask for
                reply += self._suggestions(proposal.after)
            reply += "\nAccept or reject it."
        if listen is not None and proposal is not None:
            _stream_words(reply[len(streamed) :], listen)
        tokens_in, tokens_out = getattr(usage, "tokens_in", 0), getattr(usage, "tokens_out", 0)
        cost_usd = float(getattr(usage, "cost_usd", 0.0))
        message_id = self._record_message(current.id, "jules", reply, planner, tokens_in, tokens_out, cost_usd)
        change = None
        if proposal is not None:
            change = self._record_change(current, message_id, prompt, planner, proposal)
        return Turn(reply, planner, change, cost, tokens_in, tokens_out, cost_usd)

    def _suggestions(self, draft: str) -> str:
        """Error handling and cheaper alternatives for a new draft, in words, with what to say to get them."""
        doc = yaml.safe_load(draft) or {}
        flow = load_flow(draft, "<draft>", registry=self.registry)
        lines = []
        handling = review_edits.error_handling(flow, doc, self.registry)
        if handling.operations:
            lines.append(
                f"Error handling I would add ({len(handling.reasons)}), say “add error handling”: "
                + " ".join(handling.reasons[:3])
            )
        cheaper = review_edits.cheaper(flow, self.registry)
        if cheaper.operations:
            lines.append("Cheaper, say “make it cheaper”: " + " ".join(cheaper.reasons[:2]))
        return "".join(f"\n{line}" for line in lines)

    def _cost(self, proposal: Proposal) -> str:
        try:
            flow = load_flow(proposal.after, "<draft>", registry=self.registry)
        except FlowValidationError:
            return ""
        return forecast(flow, self.registry, datetime.now(UTC)).describe()

    # --- decisions --------------------------------------------------------------------------------------------

    def accept(self, session_id: str, change_id: str, *, owner: str, user: str = "") -> str:
        """Make the proposal the session's draft; -> the new draft. Refuses a proposal made on an older draft."""
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            draft = self._owned(conn, session_id, owner)["draft"]
            change = self._pending(conn, session_id, change_id)
            if change["before"] != draft:
                raise ChatError(
                    f"change {change_id} was proposed for an older draft",
                    hint="ask again: Jules will propose it on the current draft",
                )
            conn.execute(
                chat_changes.update()
                .where(chat_changes.c.id == change_id)
                .values(status="accepted", decided_by=user, decided_at=now)
            )
            conn.execute(
                chat_sessions.update()
                .where(chat_sessions.c.id == session_id)
                .values(draft=change["after"], updated_at=now)
            )
        return str(change["after"])

    def reject(self, session_id: str, change_id: str, *, owner: str, user: str = "") -> None:
        with self.db.begin() as conn:
            self._owned(conn, session_id, owner)
            self._pending(conn, session_id, change_id)
            conn.execute(
                chat_changes.update()
                .where(chat_changes.c.id == change_id)
                .values(status="rejected", decided_by=user, decided_at=datetime.now(UTC))
            )

    def write(self, session_id: str, after: str, *, owner: str, user: str = "", what: str = "") -> Change:
        """The user's own edit of the draft (the YAML written by hand, a node's panel): validated like any
        proposal, recorded as a change the user made and accepted at once (it replaces a pending proposal).
        ``what``: the edit in words, for the record. Raises :class:`ChatError` with the located problems."""
        current = self.session(session_id, owner=owner)
        proposal = check(current.draft, after, (), self.registry)
        if not proposal.valid:
            raise ChatError(
                f"the edited flow does not validate:\n{proposal.problems}",
                hint="fix what each line above names, then apply again",
                code="copilot.draft_invalid",
            )
        if after == current.draft:
            raise ChatError("the edit changes nothing", hint="change the YAML first", code="copilot.edit_empty")
        note = what or "edited the draft by hand"
        message_id = self._record_message(session_id, "user", f"({note})", user)
        change = self._record_change(current, message_id, note, "hand", proposal)
        self.accept(session_id, change.id, owner=owner, user=user)
        return next(c for c in self.session(session_id, owner=owner).changes if c.id == change.id)

    def saved_as(self, session_id: str, flow_id: str, *, owner: str) -> None:
        """Record that the session's draft was stored as the flow ``flow_id``."""
        with self.db.begin() as conn:
            self._owned(conn, session_id, owner)
            conn.execute(
                chat_sessions.update()
                .where(chat_sessions.c.id == session_id)
                .values(flow_id=flow_id, updated_at=datetime.now(UTC))
            )

    # --- storage ----------------------------------------------------------------------------------------------

    def _owned(self, conn: sa.Connection, session_id: str, owner: str) -> Any:
        """The session's row if it is ``owner``'s; another owner's session does not exist for them."""
        query = sa.select(chat_sessions).where(chat_sessions.c.id == session_id, chat_sessions.c.owner_id == owner)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise ChatError(
                f"there is no chat session {session_id!r}",
                hint="start one (ionflux chat, or POST /api/v1/copilot/sessions)",
                code="copilot.session_not_found",
            )
        return row

    def _pending(self, conn: sa.Connection, session_id: str, change_id: str) -> Any:
        row = (
            conn.execute(
                sa.select(chat_changes).where(chat_changes.c.id == change_id, chat_changes.c.session_id == session_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise ChatError(
                f"session {session_id} has no change {change_id!r}",
                hint="the session's changes and their ids are in GET /api/v1/copilot/sessions/{id}",
                code="copilot.change_not_found",
            )
        if row["status"] != "pending":
            decided = row["status"] in ("accepted", "rejected")
            raise ChatError(
                f"change {change_id} is {row['status']}, not pending",
                hint="it was decided already: nothing to do"
                if decided
                else "a newer proposal replaced it: decide that one, or ask Jules again",
            )
        return row

    def _record_message(
        self,
        session_id: str,
        role: str,
        content: str,
        author: str,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: float = 0.0,
    ) -> str:
        message_id, now = new_id(), datetime.now(UTC)
        with self.db.begin() as conn:
            conn.execute(
                chat_messages.insert().values(
                    id=message_id,
                    session_id=session_id,
                    role=role,
                    content=content,
                    author=author,
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                    cost_usd=cost_usd,
                    created_at=now,
                )
            )
            values: dict[str, Any] = {"updated_at": now}
            if role == "user":  # a session is named after its first request
                title = conn.execute(sa.select(chat_sessions.c.title).where(chat_sessions.c.id == session_id)).scalar()
                if not title:
                    values["title"] = content[:80]
            conn.execute(chat_sessions.update().where(chat_sessions.c.id == session_id).values(**values))
        return message_id

    def _record_change(self, current: Session, message_id: str, prompt: str, planner: str, p: Proposal) -> Change:
        change_id, now = new_id(), datetime.now(UTC)
        status = "pending" if p.valid else "invalid"
        with self.db.begin() as conn:
            conn.execute(
                chat_changes.update()
                .where(chat_changes.c.session_id == current.id, chat_changes.c.status == "pending")
                .values(status="superseded", decided_at=now)
            )
            conn.execute(
                chat_changes.insert().values(
                    id=change_id,
                    session_id=current.id,
                    message_id=message_id,
                    prompt=prompt,
                    planner=planner,
                    operations=_operations(p),
                    before=p.before,
                    after=p.after,
                    diff=p.text_diff(),
                    status=status,
                    created_at=now,
                )
            )
        return Change(
            change_id, status, prompt, planner, tuple(_summary(p)), p.before, p.after, p.text_diff(), None, None
        )

    def _valid(self, text: str, what: str) -> None:
        try:
            load_flow(text, "<draft>", registry=self.registry)
        except FlowValidationError as e:
            raise ChatError(
                f"{what} is not a valid flow:\n{e}", hint="fix it with `ionflux validate`", code="copilot.draft_invalid"
            ) from None


# --- small pieces -----------------------------------------------------------------------------------------------


def _summary(p: Proposal) -> list[str]:
    if p.operations:
        return p.summary
    doc = yaml.safe_load(p.after) or {}
    nodes = [f"{n.get('id')} ({n.get('type')})" for n in doc.get("nodes") or []]
    return [f"create the draft: {', '.join(nodes) or 'no steps'}"]


def _operations(p: Proposal) -> list[dict[str, Any]]:
    if p.operations:
        return [op.model_dump(mode="json", by_alias=True) for op in p.operations]
    return [{"op": "create_draft", "summary": _summary(p)}]


def _changes_line(p: Proposal) -> str:
    lines = _summary(p)
    return "Proposed: " + "; ".join(lines) + "."


def _change(row: Any) -> Change:
    ops = row["operations"] or []
    if ops and ops[0].get("op") == "create_draft":
        summary = list(ops[0].get("summary") or ["create the draft"])
    else:
        try:
            summary = [describe(op) for op in EditPlan(reply="", operations=ops).operations]
        except ValidationError:  # written by an older version: name the operations at least
            summary = [str(op.get("op")) for op in ops]
    return Change(
        row["id"],
        row["status"],
        row["prompt"],
        row["planner"],
        tuple(summary),
        row["before"],
        row["after"],
        row["diff"],
        row["decided_by"],
        _aware(row["decided_at"]) if row["decided_at"] else None,
    )


def _stream_words(text: str, listen: Listener) -> None:
    """An offline reply handed out word by word, so every planner streams the same way to the UI."""
    for piece in re.findall(r"\S+\s*|\s+", text):
        listen("token", piece)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def flow_id_for(text: str) -> str:
    """A flow id made of the request's first words (``every-monday-at-8-fetch``)."""
    words = re.findall(r"[a-z0-9]+", text.lower())[:5]
    slug = "-".join(words)[:48].strip("-")
    return slug if slug and slug[0].isalpha() else f"flow-{slug}".strip("-")


def with_flow_id(text: str, flow_id: str) -> str:
    """``text`` with ``flow_id`` as its id, unless it names one of its own."""
    doc = yaml.safe_load(text) or {}
    if isinstance(doc, dict) and doc.get("id") in (None, "planned-flow"):
        doc["id"] = flow_id
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)
