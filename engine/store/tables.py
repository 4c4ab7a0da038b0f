"""The tables, after the vision document's data model.

``run_events`` is the truth a run is rebuilt from (the machine's input, append-only); ``runs`` and
``run_steps`` are its readable projection, written in the same transaction as each event, which listings, the
UI and the reconciler query. ``timers`` are durable timers (retry, delay, timeout, approval); ``workers`` are
heartbeats, so the reconciler can tell a crashed worker's steps from slow ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


def _json(**kw: Any) -> Any:
    # none_as_null: Python None is SQL NULL on every database (SQLAlchemy would write JSON 'null' on SQLite)
    return Field(default=None, sa_column=sa.Column(sa.JSON(none_as_null=True), **kw))


def _when(**kw: Any) -> Any:
    return Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), **kw))


LOCAL_OWNER = "local"  # the owner of everything made from the command line in embedded mode


class OwnerRow(SQLModel, table=True):
    """Who flows, runs, secrets, sessions and tokens belong to. ``role`` admin: an operator (manages owners)."""

    __tablename__ = "owners"
    id: str = Field(primary_key=True, max_length=26)
    name: str = Field(max_length=120)
    email: str | None = Field(default=None, max_length=254, unique=True)
    password_hash: str | None = None  # argon2; None: no browser login (tokens only)
    role: str = Field(default="owner", max_length=16)  # owner | admin
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class ApiTokenRow(SQLModel, table=True):
    """An API token: only its SHA-256 is kept (tokens are 256 random bits, so a fast hash is enough)."""

    __tablename__ = "api_tokens"
    id: str = Field(primary_key=True, max_length=26)
    owner_id: str = Field(foreign_key="owners.id", index=True, max_length=26)
    name: str = Field(max_length=120)
    digest: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16)  # the first characters, to recognise a token in a list
    scope: str = Field(max_length=8)  # read | write | admin
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    last_used_at: datetime | None = _when()
    revoked_at: datetime | None = _when()


class WebSessionRow(SQLModel, table=True):
    """A browser login: the cookie holds the id, the table its SHA-256, the CSRF token and the expiry."""

    __tablename__ = "web_sessions"
    digest: str = Field(primary_key=True, max_length=64)
    owner_id: str = Field(foreign_key="owners.id", index=True, max_length=26)
    csrf: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class AuditRow(SQLModel, table=True):
    """Who changed what, when: flows, versions, activations, secrets (by name), tokens, accepted co-pilot diffs."""

    __tablename__ = "audit_log"
    id: str = Field(primary_key=True, max_length=26)
    owner_id: str = Field(foreign_key="owners.id", index=True, max_length=26)
    actor: str = Field(max_length=160)  # "token <prefix>", "session", "cli"
    action: str = Field(max_length=40)  # e.g. flow.create, secret.set, token.revoke, copilot.accept
    target: str = Field(max_length=200)
    detail: Any = _json()
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))


class FlowRow(SQLModel, table=True):
    __tablename__ = "flows"
    id: str = Field(primary_key=True, max_length=64)  # the flow's own `id`
    owner_id: str = Field(default=LOCAL_OWNER, foreign_key="owners.id", index=True, max_length=26)
    name: str | None = None
    deleted_at: datetime | None = _when()  # soft delete: its runs and versions stay readable by id
    latest_version: str | None = Field(default=None, max_length=80)
    active_version: str | None = Field(default=None, max_length=80)  # whose triggers are armed; None: inactive
    # while inactive: its webhook URL tokens by trigger position ({"0": "…"}), given back when it is activated again
    webhook_tokens: dict[str, str] | None = _json()
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class FlowVersionRow(SQLModel, table=True):
    """Immutable: the id is the content id of the canonical flow (engine.dsl.canonical.version_id)."""

    __tablename__ = "flow_versions"
    id: str = Field(primary_key=True, max_length=80)
    flow_id: str = Field(foreign_key="flows.id", index=True, max_length=64)
    source: str  # the YAML as submitted (comments and layout kept, for diffs and the editor)
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    id: str = Field(primary_key=True, max_length=26)  # time-sortable (engine.store.ids)
    flow_id: str = Field(foreign_key="flows.id", index=True, max_length=64)
    version_id: str = Field(foreign_key="flow_versions.id", max_length=80)
    status: str = Field(index=True, max_length=24)
    trigger_kind: str = Field(default="manual", max_length=16)
    trigger: Any = _json()
    input: Any = _json()
    outputs: Any = _json()
    error: Any = _json()
    total_cion: float = 0.0
    attempt: int = 1
    seq: int = 0  # events recorded so far: the optimistic version of the run's state
    parent_run_id: str | None = Field(default=None, index=True, max_length=26)
    parent_step: str | None = None
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = _when()


class RunStepRow(SQLModel, table=True):
    """One attempt of one step (``key`` is ``node`` or ``loop[3].node``); earlier attempts stay as history."""

    __tablename__ = "run_steps"
    __table_args__ = (sa.Index("ix_run_steps_dispatch", "state", "queued_at"),)
    run_id: str = Field(foreign_key="runs.id", primary_key=True, max_length=26)
    run_attempt: int = Field(primary_key=True)
    key: str = Field(primary_key=True)
    attempt: int = Field(primary_key=True)
    node_id: str = Field(max_length=64)
    iteration: str | None = None  # the loop frames, e.g. "loop[3]"
    node_type: str | None = None
    status: str = Field(max_length=16)
    waiting: str | None = None
    # dispatch state of a step attempt: queued (a message is due) -> claimed (a worker runs it) -> done
    state: str | None = Field(default=None, max_length=16)
    worker_id: str | None = None
    queued_at: datetime | None = _when()
    started_at: datetime | None = _when()
    finished_at: datetime | None = _when()
    input_preview: str | None = None
    output_preview: str | None = None
    output_ref: str | None = None
    error: Any = _json()
    logs: Any = _json()
    usage: Any = _json()  # what a metered step measured: an LLM step's model, tokens, latency_ms, cost
    cost_cion: float = 0.0
    reused: bool = False
    child_run_id: str | None = None
    input_ref: str | None = None  # the whole input (secrets blanked) in the blob store, when over its preview


class RunEventRow(SQLModel, table=True):
    __tablename__ = "run_events"
    run_id: str = Field(foreign_key="runs.id", primary_key=True, max_length=26)
    seq: int = Field(primary_key=True)
    kind: str = Field(max_length=24)
    # indexed: an owner's live feed reads the events after a time across all its runs (engine.runtime.run_feed)
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))
    data: Any = _json()


class TimerRow(SQLModel, table=True):
    __tablename__ = "timers"
    __table_args__ = (sa.UniqueConstraint("run_id", "kind", "step_key", "attempt"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", max_length=26)
    kind: str = Field(max_length=16)
    step_key: str
    attempt: int
    due_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))


class ApprovalRow(SQLModel, table=True):
    __tablename__ = "approvals"
    run_id: str = Field(foreign_key="runs.id", primary_key=True, max_length=26)
    run_attempt: int = Field(primary_key=True)  # a re-run asks again
    step_key: str = Field(primary_key=True)
    attempt: int = Field(primary_key=True)
    message: str | None = None
    approvers: Any = _json()
    requested_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    decided_at: datetime | None = _when()
    approved: bool | None = None
    decided_by: str | None = None


class CreditRow(SQLModel, table=True):
    """The C-ION ledger: one line per charged step attempt (billing and quotas read this)."""

    __tablename__ = "credit_ledger"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, max_length=26)
    step_key: str
    attempt: int
    cion: float
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class TriggerRow(SQLModel, table=True):
    """An armed trigger of a flow's active version (engine.runtime.triggers). Replaced as a whole, in one
    transaction, when another version is activated; a webhook keeps its token across versions."""

    __tablename__ = "triggers"
    id: str = Field(primary_key=True, max_length=26)
    flow_id: str = Field(foreign_key="flows.id", index=True, max_length=64)
    kind: str = Field(max_length=16)
    config: Any = _json()
    enabled: bool = True
    next_fire_at: datetime | None = _when(index=True)
    version_id: str | None = Field(default=None, max_length=80)
    position: int = 0  # the trigger's index in the flow's `triggers` list
    token: str | None = Field(default=None, max_length=64, unique=True)  # a webhook's unguessable URL part
    last_fire_at: datetime | None = _when()


class TriggerInboxRow(SQLModel, table=True):
    """Every accepted trigger event (a webhook delivery, a cron tick, an event message), stored before it is
    acknowledged; a dispatcher turns it into a run exactly once (``status``: accepted -> started | refused)."""

    __tablename__ = "trigger_inbox"
    __table_args__ = (sa.UniqueConstraint("flow_id", "dedupe_key", name="uq_trigger_inbox_dedupe"),)
    id: str = Field(primary_key=True, max_length=26)
    flow_id: str = Field(foreign_key="flows.id", max_length=64)
    version_id: str = Field(max_length=80)
    kind: str = Field(max_length=16)
    position: int = 0
    dedupe_key: str | None = Field(default=None, max_length=200)
    trigger: Any = _json()  # what the run sees as `trigger`
    input: Any = _json()
    status: str = Field(index=True, max_length=16)
    run_id: str | None = Field(default=None, max_length=26)
    error: Any = _json()
    received_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    processed_at: datetime | None = _when()


class SecretRow(SQLModel, table=True):
    """A secret, encrypted at rest (engine.runtime.secrets); the value never leaves a worker's step call."""

    __tablename__ = "secrets"
    owner_id: str = Field(default=LOCAL_OWNER, foreign_key="owners.id", primary_key=True, max_length=26)
    name: str = Field(primary_key=True, max_length=64)
    ciphertext: bytes
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class WasmModuleRow(SQLModel, table=True):
    """A registered WebAssembly transform: immutable once registered (a new build is a new version)."""

    __tablename__ = "wasm_modules"
    name: str = Field(primary_key=True, max_length=64)
    version: str = Field(primary_key=True, max_length=64)
    digest: str = Field(index=True, max_length=64)  # sha256 of the wasm bytes
    manifest: Any = _json(nullable=False)
    wasm: bytes
    size: int
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class WorkerRow(SQLModel, table=True):
    __tablename__ = "workers"
    id: str = Field(primary_key=True, max_length=64)
    host: str
    pid: int
    started_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    heartbeat_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))


class ChatSessionRow(SQLModel, table=True):
    """A conversation with Jules and the flow draft it edits (the draft changes only when a change is accepted)."""

    __tablename__ = "chat_sessions"
    id: str = Field(primary_key=True, max_length=26)
    owner_id: str = Field(default=LOCAL_OWNER, foreign_key="owners.id", index=True, max_length=26)
    title: str = ""
    draft: str = ""  # the accepted FluxGraph YAML so far ("" before the first accepted proposal)
    flow_id: str | None = Field(default=None, max_length=64)  # set once the draft is saved as a flow
    created_by: str = Field(default="", max_length=120)
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class ChatMessageRow(SQLModel, table=True):
    __tablename__ = "chat_messages"
    id: str = Field(primary_key=True, max_length=26)
    session_id: str = Field(foreign_key="chat_sessions.id", index=True, max_length=26)
    role: str = Field(max_length=16)  # user | jules
    content: str
    author: str = Field(default="", max_length=120)  # the user, or the planner/model that answered
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class ChatChangeRow(SQLModel, table=True):
    """A change Jules proposed to a session's draft, and what became of it (the audit trail of every edit)."""

    __tablename__ = "chat_changes"
    id: str = Field(primary_key=True, max_length=26)
    session_id: str = Field(foreign_key="chat_sessions.id", index=True, max_length=26)
    message_id: str = Field(max_length=26)  # Jules's message that proposed it
    prompt: str  # what the user asked
    planner: str = Field(max_length=120)  # offline, or model:<name>
    operations: Any = _json()
    before: str
    after: str
    diff: str
    status: str = Field(max_length=16)  # pending | accepted | rejected | superseded
    decided_by: str | None = Field(default=None, max_length=120)
    decided_at: datetime | None = _when()
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


owners: sa.Table = OwnerRow.__table__  # type: ignore[attr-defined]
api_tokens: sa.Table = ApiTokenRow.__table__  # type: ignore[attr-defined]
web_sessions: sa.Table = WebSessionRow.__table__  # type: ignore[attr-defined]
audit_log: sa.Table = AuditRow.__table__  # type: ignore[attr-defined]
flows: sa.Table = FlowRow.__table__  # type: ignore[attr-defined]
flow_versions: sa.Table = FlowVersionRow.__table__  # type: ignore[attr-defined]
runs: sa.Table = RunRow.__table__  # type: ignore[attr-defined]
run_steps: sa.Table = RunStepRow.__table__  # type: ignore[attr-defined]
run_events: sa.Table = RunEventRow.__table__  # type: ignore[attr-defined]
timers: sa.Table = TimerRow.__table__  # type: ignore[attr-defined]
approvals: sa.Table = ApprovalRow.__table__  # type: ignore[attr-defined]
credit_ledger: sa.Table = CreditRow.__table__  # type: ignore[attr-defined]
triggers: sa.Table = TriggerRow.__table__  # type: ignore[attr-defined]
trigger_inbox: sa.Table = TriggerInboxRow.__table__  # type: ignore[attr-defined]
secrets: sa.Table = SecretRow.__table__  # type: ignore[attr-defined]
wasm_modules: sa.Table = WasmModuleRow.__table__  # type: ignore[attr-defined]
workers: sa.Table = WorkerRow.__table__  # type: ignore[attr-defined]
chat_sessions: sa.Table = ChatSessionRow.__table__  # type: ignore[attr-defined]
chat_messages: sa.Table = ChatMessageRow.__table__  # type: ignore[attr-defined]
chat_changes: sa.Table = ChatChangeRow.__table__  # type: ignore[attr-defined]
