"""The Builder's Jules (ui.jules.BuilderJules, on ``app.state.ui_jules``): copilot.chat.Jules as the API builds
it for an owner (api.jules: the configured model or the offline planner, grounded in the owner's secret names)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.cli import flows_dir
from api.jules import jules_for, model_choice
from api.settings import Settings
from copilot.chat import Change, ChatError, Jules
from copilot.cost import forecast
from copilot.edits import EditError
from copilot.node_update import update_node
from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.runtime import flow_queries
from engine.runtime.runtime import Runtime
from ui.jules import Conversation, Listener, Message, NotFound, Proposal, Reply

MISSING = ("copilot.session_not_found", "copilot.change_not_found")
# the Builder's first screen: a bundled flow that runs as it is (no secret, no outside service), with a foreach,
# a condition and an approval to show; flows/demo-orders-digest.yaml, the CLI's demo, needs a shop and Discord
BUILDER_DEMO = "expense-approval.yaml"


@dataclass
class UiJules:
    runtime: Runtime
    settings: Settings | None = None  # None: read from the environment on first use

    def _jules(self, owner: str) -> Jules:
        if self.settings is None:
            self.settings = Settings()
        orchestrator = self.runtime.orchestrator
        names = tuple(orchestrator.secrets.names(owner))
        return jules_for(
            self.runtime.db, orchestrator.registry, self.settings, names, model=model_choice(self.settings)
        )

    def start(self, *, owner: str, user: str, flow_id: str | None = None, demo: bool = False) -> str:
        draft = ""
        if demo and not flow_id:
            path = flows_dir() / BUILDER_DEMO
            draft = path.read_text("utf-8") if path.is_file() else ""
        elif flow_id:
            record = flow_queries.get(self.runtime.db, owner, flow_id)
            if record is None or not record.source:
                raise NotFound(f"you have no flow {flow_id!r}")
            draft = record.source
        return self._jules(owner).start(owner=owner, user=user, draft=draft, flow_id=flow_id, reuse=True)

    def session(self, session_id: str, *, owner: str) -> Conversation:
        with _found():
            s = self._jules(owner).session(session_id, owner=owner)
        return Conversation(
            s.id,
            s.title,
            s.draft,
            s.flow_id,
            tuple(Message(m["role"], m["content"], m["author"]) for m in s.messages),
            tuple(_proposal(c) for c in s.changes),
        )

    def say(self, session_id: str, text: str, *, owner: str, user: str, listen: Listener | None = None) -> Reply:
        with _found():
            turn = self._jules(owner).say(session_id, text, owner=owner, user=user, listen=listen)
        return Reply(turn.reply, _proposal(turn.change) if turn.change else None, turn.cost)

    def accept(self, session_id: str, change_id: str, *, owner: str, user: str) -> None:
        with _found():
            self._jules(owner).accept(session_id, change_id, owner=owner, user=user)

    def reject(self, session_id: str, change_id: str, *, owner: str, user: str) -> None:
        with _found():
            self._jules(owner).reject(session_id, change_id, owner=owner, user=user)

    def write(self, session_id: str, draft: str, *, owner: str, user: str) -> None:
        with _found():
            self._jules(owner).write(session_id, draft, owner=owner, user=user, what="edited the YAML by hand")

    def update_node(
        self, session_id: str, node_id: str, to_set: dict[str, Any], to_unset: list[str], *, owner: str, user: str
    ) -> None:
        jules = self._jules(owner)
        with _found():
            draft = jules.session(session_id, owner=owner).draft
        try:
            after = update_node(draft, node_id, to_set, to_unset, self.runtime.orchestrator.registry)
        except EditError as e:
            raise NotFound(e.message) from e
        with _found():
            jules.write(session_id, after, owner=owner, user=user, what=f"edited node {node_id} in its panel")

    def save(self, session_id: str, *, owner: str, user: str) -> tuple[str, str]:
        jules = self._jules(owner)
        with _found():
            draft = jules.session(session_id, owner=owner).draft
        if not draft:
            raise ChatError("there is no draft to save yet", hint="accept a proposal first", code="copilot.draft_empty")
        flow_id, version = self.runtime.orchestrator.save_flow(draft, f"chat session {session_id}", owner)
        jules.saved_as(session_id, flow_id, owner=owner)
        return flow_id, version

    def forecast(self, draft: str) -> str:
        try:
            flow = load_flow(draft, "<draft>", registry=self.runtime.orchestrator.registry)
        except (FlowValidationError, IonfluxError):
            return ""
        return forecast(flow, self.runtime.orchestrator.registry, datetime.now(UTC)).describe()


class _found:
    """Turns the co-pilot's "not found for this owner" into the UI's NotFound."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, e: BaseException | None, tb: object) -> None:
        if isinstance(e, IonfluxError) and e.code in MISSING:
            raise NotFound(e.message) from e


def _proposal(c: Change) -> Proposal:
    return Proposal(c.id, c.status, c.summary, c.diff, c.after)
