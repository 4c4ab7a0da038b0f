"""Chat sessions with Jules: a draft planned, edits proposed and decided, nothing changed without acceptance, every
decision recorded and the session read back after a restart; with the offline planner and a scripted model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from copilot.chat import ChatError, Jules
from copilot.structured import ModelChoice
from engine.dsl.validator import load_flow
from engine.nodetypes.builtin import builtin_registry
from engine.store.db import make_engine, migrate, sqlite_url
from engine.store.tables import LOCAL_OWNER, owners

REGISTRY = builtin_registry()
ANA = LOCAL_OWNER  # the owner the sessions belong to
REQUEST = "Every Monday at 8 fetch https://api.example.com/orders, summarise them and post to #sales on Slack"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(sqlite_url(tmp_path / "chat.db"))
    migrate(engine)
    yield engine
    engine.dispose()


def test_a_conversation_edits_the_draft_only_when_accepted(db: sa.Engine) -> None:
    jules = Jules(db, REGISTRY)
    session = jules.start(owner=ANA, user="ana")
    first = jules.say(session, REQUEST, owner=ANA, user="ana")
    assert first.planner == "offline" and first.change is not None
    assert first.change.status == "pending" and "C-ION per run" in first.cost
    assert jules.session(session, owner=ANA).draft == ""  # proposed, not applied
    draft = jules.accept(session, first.change.id, owner=ANA, user="ana")
    load_flow(draft, registry=REGISTRY)

    second = jules.say(session, "run it at 7 instead", owner=ANA, user="ana")
    assert second.change is not None and second.change.summary == ("set triggers to cron 0 7 * * 1 (UTC)",)
    assert "-  cron: 0 8 * * 1" in second.change.diff and "+  cron: 0 7 * * 1" in second.change.diff
    assert jules.session(session, owner=ANA).draft == draft
    jules.reject(session, second.change.id, owner=ANA, user="ana")
    assert jules.session(session, owner=ANA).draft == draft

    third = jules.say(session, "add a Slack alert if it fails", owner=ANA, user="bob")
    assert third.change is not None
    accepted = jules.accept(session, third.change.id, owner=ANA, user="bob")
    assert yaml.safe_load(accepted)["on_failure"][0]["type"] == "slack.post"

    stored = jules.session(session, owner=ANA)
    assert stored.title == REQUEST[:80]
    assert [c.status for c in stored.changes] == ["accepted", "rejected", "accepted"]
    assert [c.decided_by for c in stored.changes] == ["ana", "ana", "bob"]
    assert stored.changes[2].prompt == "add a Slack alert if it fails" and stored.changes[2].planner == "offline"
    assert [m["role"] for m in stored.messages] == ["user", "jules"] * 3
    assert stored.changes[0].summary[0].startswith("create the draft: call_api (http.request)")


def test_an_untouched_session_alike_is_reused_when_asked(db: sa.Engine) -> None:
    jules = Jules(db, REGISTRY)
    draft = "fluxgraph: 1\nid: tiny\nnodes:\n  - {id: a, type: data.set, with: {v: 1}}\n"

    # An untouched session is given again when reuse is asked, and never when it is not
    first = jules.start(owner=ANA, user="ana", reuse=True)
    assert jules.start(owner=ANA, user="ana", reuse=True) == first
    fresh = jules.start(owner=ANA, user="ana")
    assert fresh != first and jules.start(owner=ANA, user="ana", reuse=True) == fresh  # the newest alike

    # A session with a message is not reused; nor is one of another author, draft or flow
    jules.say(fresh, REQUEST, owner=ANA, user="ana")
    assert jules.start(owner=ANA, user="ana", reuse=True) == first
    assert jules.start(owner=ANA, user="bob", reuse=True) != first
    with_draft = jules.start(owner=ANA, user="ana", draft=draft, reuse=True)
    assert with_draft != first and jules.start(owner=ANA, user="ana", draft=draft, reuse=True) == with_draft
    assert jules.start(owner=ANA, user="ana", draft=draft, flow_id="tiny", reuse=True) != with_draft


def test_a_new_proposal_supersedes_the_pending_one_and_stale_ones_are_refused(db: sa.Engine) -> None:
    jules = Jules(db, REGISTRY)
    session = jules.start(owner=ANA)
    jules.accept(session, _change_id(jules.say(session, REQUEST, owner=ANA)), owner=ANA)
    older = _change_id(jules.say(session, "run it at 7 instead", owner=ANA))
    newer = _change_id(jules.say(session, "cap it at 20 C-ION per run", owner=ANA))
    with pytest.raises(ChatError, match="superseded, not pending"):
        jules.accept(session, older, owner=ANA)
    jules.accept(session, newer, owner=ANA)
    again = _change_id(jules.say(session, "post it to #ops instead", owner=ANA))
    with db.begin() as conn:  # someone else changed the draft meanwhile
        conn.execute(sa.text("UPDATE chat_sessions SET draft = draft || '# edited\n' WHERE id = :s"), {"s": session})
    with pytest.raises(ChatError, match="older draft"):
        jules.accept(session, again, owner=ANA)


def test_what_jules_cannot_read_proposes_nothing(db: sa.Engine) -> None:
    jules = Jules(db, REGISTRY)
    session = jules.start(owner=ANA)
    jules.accept(session, _change_id(jules.say(session, REQUEST, owner=ANA)), owner=ANA)
    turn = jules.say(session, "blah", owner=ANA)
    assert turn.change is None and "could not turn that into a change" in turn.reply
    with pytest.raises(ChatError, match="empty"):
        jules.say(session, "  ", owner=ANA)
    with pytest.raises(ChatError, match="no chat session"):
        jules.say("nope", "hello", owner=ANA)


def test_another_owners_session_does_not_exist_for_them(db: sa.Engine) -> None:
    # Given a session of Ana's with a pending proposal, and another owner
    jules = Jules(db, REGISTRY)
    with db.begin() as conn:
        conn.execute(owners.insert().values(id="rui", name="Rui", role="owner", created_at=datetime.now(UTC)))
    session = jules.start(owner=ANA)
    pending = _change_id(jules.say(session, REQUEST, owner=ANA))
    # When Rui reads, talks to, decides on or saves it, Then each is refused as not found, and nothing changed
    for attempt in (
        lambda: jules.session(session, owner="rui"),
        lambda: jules.say(session, "run it at 7 instead", owner="rui"),
        lambda: jules.accept(session, pending, owner="rui"),
        lambda: jules.reject(session, pending, owner="rui"),
        lambda: jules.saved_as(session, "x", owner="rui"),
    ):
        with pytest.raises(ChatError, match="no chat session") as refused:
            attempt()
        assert refused.value.code == "copilot.session_not_found"
    assert jules.sessions(owner="rui") == [] and [s["id"] for s in jules.sessions(owner=ANA)] == [session]
    stored = jules.session(session, owner=ANA)
    assert stored.owner_id == ANA and len(stored.messages) == 2 and stored.pending is not None
    with pytest.raises(ChatError) as missing:
        jules.accept(session, "nope", owner=ANA)
    assert missing.value.code == "copilot.change_not_found"


def test_replies_stream_word_by_word_offline(db: sa.Engine) -> None:
    jules = Jules(db, REGISTRY)
    session = jules.start(owner=ANA)
    events: list[tuple[str, str]] = []
    turn = jules.say(session, REQUEST, owner=ANA, listen=lambda kind, text: events.append((kind, text)))
    tokens = [text for kind, text in events if kind == "token"]
    assert len(tokens) > 5 and "".join(tokens) == turn.reply


def test_sessions_survive_a_restart(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "chat.db")
    engine = make_engine(url)
    migrate(engine)
    jules = Jules(engine, REGISTRY)
    session = jules.start(owner=ANA, user="ana", title="orders")
    jules.accept(session, _change_id(jules.say(session, REQUEST, owner=ANA)), owner=ANA)
    engine.dispose()
    again = make_engine(url)
    restored = Jules(again, REGISTRY).session(session, owner=ANA)
    assert restored.title == "orders" and restored.created_by == "ana"
    assert "call_api" in restored.draft
    assert [s["id"] for s in Jules(again, REGISTRY).sessions(owner=ANA)] == [session]
    again.dispose()


def test_a_session_can_start_from_an_existing_flow(db: sa.Engine, flows_dir: Path) -> None:
    text = next(iter(sorted(flows_dir.glob("*.yaml")))).read_text("utf-8")
    jules = Jules(db, REGISTRY)
    session = jules.start(owner=ANA, draft=text)
    assert jules.session(session, owner=ANA).draft == text
    with pytest.raises(ChatError, match="not a valid flow"):
        jules.start(owner=ANA, draft="fluxgraph: 1\nid: x\n")


def test_with_a_model_the_edit_streams_and_is_recorded_with_its_usage(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import litellm

    answers = iter(
        [
            json.dumps({"reply": "Budget set.", "operations": [{"op": "set_budget", "max_cion_per_run": 0}]}),
            json.dumps(
                {"reply": "I'll cap it at 5 C-ION.", "operations": [{"op": "set_budget", "max_cion_per_run": 5}]}
            ),
        ]
    )
    original = litellm.completion

    def completion(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs, mock_response=next(answers))

    monkeypatch.setattr(litellm, "completion", completion)
    offline = Jules(db, REGISTRY)
    session = offline.start(owner=ANA)
    offline.accept(session, _change_id(offline.say(session, REQUEST, owner=ANA)), owner=ANA)
    jules = Jules(db, REGISTRY, model=ModelChoice("openai/scripted", mode="json"))
    events: list[tuple[str, str]] = []
    turn = jules.say(session, "cap it at 5", owner=ANA, listen=lambda kind, text: events.append((kind, text)))
    assert turn.change is not None and turn.planner == "model:openai/scripted"
    kinds = [kind for kind, _ in events]
    assert "retry" in kinds  # a budget of 0 does not validate: the model was told, and answered again
    after_retry = "".join(text for kind, text in events[kinds.index("retry") + 1 :] if kind == "token")
    assert after_retry == turn.reply and turn.reply.startswith("I'll cap it at 5 C-ION.")
    assert turn.tokens_in > 0
    messages = jules.session(session, owner=ANA).messages
    assert messages[-1]["author"] == "model:openai/scripted"


def _change_id(turn: Any) -> str:
    assert turn.change is not None, turn.reply
    return str(turn.change.id)
