"""Jules, as the Builder screen needs it: a small protocol the composition root implements.

The UI may not import the co-pilot (import-linter): ``api.app`` puts an object with this shape on
``app.state.ui_jules`` (``api.ui_jules``, over ``copilot.chat.Jules``), so the Builder reads a conversation, sends a
message with a listener that receives the reply as it is written, and accepts, rejects or saves a draft, always for
one owner. Another owner's session or change is :class:`NotFound`; any other refusal is an ``IonfluxError``
whose message is readable as it stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request

Listener = Callable[[str, str], None]  # (kind, text): "token" pieces of the reply, "retry" problems, "status"


class NotFound(LookupError):
    """Raised when the session, change or flow does not exist for this owner (another owner's answers the same)."""


@dataclass(frozen=True)
class Proposal:
    id: str
    status: str  # pending | accepted | rejected | superseded | invalid
    summary: tuple[str, ...]
    diff: str
    after: str  # the draft's YAML once accepted


@dataclass(frozen=True)
class Message:
    role: str  # user | jules
    content: str
    author: str


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    draft: str  # the accepted YAML so far ("" before the first acceptance)
    flow_id: str | None  # the flow it was started from or saved as
    messages: tuple[Message, ...]
    changes: tuple[Proposal, ...]

    @property
    def pending(self) -> Proposal | None:
        return next((c for c in reversed(self.changes) if c.status == "pending"), None)


@dataclass(frozen=True)
class Reply:
    """Jules's answer to one message."""

    text: str
    change: Proposal | None  # None: nothing proposed (the text says why)
    cost: str  # the proposed flow's forecast, in words ("" without a proposal)


class BuilderJules(Protocol):
    def start(self, *, owner: str, user: str, flow_id: str | None = None, demo: bool = False) -> str:
        """A session's id: empty, editing ``flow_id``'s latest version (:class:`NotFound` if not owner's), or
        with ``demo`` the installation's demo flow as its draft (empty if it has none). The newest untouched
        session that would be the same is reused (opening the builder again leaves no trail of empty ones)."""
        ...

    def session(self, session_id: str, *, owner: str) -> Conversation: ...

    def say(self, session_id: str, text: str, *, owner: str, user: str, listen: Listener | None = None) -> Reply:
        """Answer ``text`` with a proposal; ``listen`` hears the reply as it is written (from this thread)."""
        ...

    def accept(self, session_id: str, change_id: str, *, owner: str, user: str) -> None: ...

    def reject(self, session_id: str, change_id: str, *, owner: str, user: str) -> None: ...

    def write(self, session_id: str, draft: str, *, owner: str, user: str) -> None:
        """The user's own YAML as the new draft (recorded as their change); an ``IonfluxError`` with the located
        problems if it does not validate."""
        ...

    def update_node(
        self, session_id: str, node_id: str, to_set: dict[str, Any], to_unset: list[str], *, owner: str, user: str
    ) -> None:
        """Change one node's fields (dotted paths, as ``ui.node_form.changes`` gives them) in the draft, as
        :meth:`write` does; :class:`NotFound` for a node the draft does not have."""
        ...

    def save(self, session_id: str, *, owner: str, user: str) -> tuple[str, str]:
        """Store the draft as the owner's flow: -> (flow id, version id)."""
        ...

    def forecast(self, draft: str) -> str:
        """The cost forecast of a flow's YAML, in words ("" if it does not validate)."""
        ...


class JulesMissing(RuntimeError):
    """Raised when the Builder is asked for but the composition root did not set ``app.state.ui_jules``."""


def jules(request: Request) -> BuilderJules:
    """The Builder's Jules, as the composition root gave it (a FastAPI dependency)."""
    found: BuilderJules | None = getattr(request.app.state, "ui_jules", None)
    if found is None:
        raise JulesMissing("app.state.ui_jules is not set: api.app.create_app sets it (api.ui_jules)")
    return found
