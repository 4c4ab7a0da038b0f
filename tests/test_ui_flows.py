"""The Flows screens without a browser: the list (search, only the visitor's own), a flow's page (graph, YAML,
versions, a diff between two versions, triggers), activate / deactivate (CSRF, write scope) arming and disarming
the runtime's triggers, and another owner's flow as a 404 page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime_helpers import flow, one_step_flow
from tests.ui_helpers import Ui, ui

DIGEST = flow(
    """
    fluxgraph: 1
    id: daily-digest
    name: Daily digest
    description: Collects the day's orders into one message.
    triggers:
      - type: manual
      - type: webhook
      - type: cron
        cron: "0 8 * * *"
        timezone: Europe/Lisbon
      - type: event
        subject: orders.created
    nodes:
      - {id: collect, type: data.set, with: {orders: 3}}
    """
)
DIGEST_V2 = (
    DIGEST.replace("{orders: 3}", "{orders: 4}") + "  - {id: tell, type: data.set, needs: [collect], with: {x: 1}}\n"
)
HTMX = {"HX-Request": "true"}


@pytest.fixture
def u(tmp_path: Path) -> Iterator[Ui]:
    with ui(tmp_path) as value:
        yield value


def owner_of(u: Ui, email: str) -> str:
    owner: str = next(o["id"] for o in u.accounts.owners() if o["email"] == email)
    return owner


def save(u: Ui, text: str, email: str = "ana@example.com") -> str:
    return u.runtime.orchestrator.save_flow(text, "test.yaml", owner_of(u, email))[1]


def test_the_list_shows_only_the_visitors_flows_and_searches_them(u: Ui) -> None:
    # Given two flows of Ana's and one of Rui's
    save(u, DIGEST)
    save(u, one_step_flow("refunds", "Pays back returned orders."))
    save(u, one_step_flow("ruis-secret-flow", "Not Ana's."), "rui@example.com")
    u.sign_in()

    # When Ana opens the list, then she sees hers (name, id, triggers summary, a link) and not Rui's
    page = u.client.get("/ui/flows")
    assert page.status_code == 200
    assert '<a href="/ui/flows/daily-digest">Daily digest</a>' in page.text
    assert '<a href="/ui/flows/refunds">refunds</a>' in page.text
    assert "manual, webhook, cron, event" in page.text and "inactive" in page.text
    assert "ruis-secret-flow" not in page.text
    assert 'hx-get="/ui/flows"' in page.text and "delay:300ms" in page.text  # the search box asks as you type

    # When she searches (by description), then htmx gets just the matching list
    found = u.client.get("/ui/flows", params={"q": "returned"}, headers=HTMX)
    assert found.status_code == 200 and found.text.lstrip().startswith('<div id="flow-list"')
    assert "refunds" in found.text and "daily-digest" not in found.text
    assert "No flow matches “nowhere”." in u.client.get("/ui/flows", params={"q": "nowhere"}).text
    assert "ruis-secret-flow" not in u.client.get("/ui/flows", params={"q": "ruis"}, headers=HTMX).text


def test_a_flow_page_shows_graph_description_yaml_versions_diff_and_triggers(u: Ui) -> None:
    v1 = save(u, DIGEST)
    v2 = save(u, DIGEST_V2)
    u.sign_in()

    # When Ana opens her flow
    page = u.client.get("/ui/flows/daily-digest")

    # Then it has the graph, the description, the YAML, both versions and the last change as a diff
    assert page.status_code == 200
    text = page.text
    assert 'aria-roledescription="flow graph"' in text and 'data-node="tell"' in text
    assert "Collects the day&#39;s orders into one message." in text
    assert "{id: tell, type: data.set" in text  # the YAML, read-only
    assert v1[:12] in text and v2[:12] in text
    assert "node <code>tell</code> (data.set) added" in text
    assert "node <code>collect</code> (data.set) changed: with.orders" in text
    assert '<span class="add">+  - {id: tell' in text and '<span class="del">-  - {id: collect' in text
    # the triggers, inactive: cron's next three fires in its zone, the event's subject, no webhook URL yet
    assert "<code>0 8 * * *</code> in Europe/Lisbon" in text
    assert text.count("(Europe/Lisbon)</li>") == 3 and " 08:00 " in text
    assert "<code>orders.created</code>" in text
    assert "/hooks/" not in text
    assert 'href="/ui/runs/new?flow=daily-digest"' in text

    # When the diff is asked between the two versions the other way round, htmx gets that diff alone
    back = u.client.get("/ui/flows/daily-digest/diff", params={"from": v2, "to": v1}, headers=HTMX)
    assert back.status_code == 200 and back.text.lstrip().startswith('<section id="diff"')
    assert "node <code>tell</code> (data.set) removed" in back.text
    # without htmx, the same link opens the flow page on that diff
    plain = u.client.get("/ui/flows/daily-digest/diff", params={"from": v2, "to": v1})
    assert plain.status_code == 303 and plain.headers["location"].endswith(f"from={v2}&to={v1}#diff")
    assert "node <code>tell</code> (data.set) removed" in u.client.get(plain.headers["location"]).text


def test_another_owners_flow_is_a_404_page(u: Ui) -> None:
    save(u, one_step_flow("ruis-flow", "Rui's."), "rui@example.com")
    csrf = u.sign_in()
    for path in ("/ui/flows/ruis-flow", "/ui/flows/no-such-flow", "/ui/flows/ruis-flow/diff?from=a&to=b"):
        answer = u.client.get(path, headers=HTMX)
        assert answer.status_code == 404 and "Flow not found" in answer.text, path
    refused = u.client.post("/ui/flows/ruis-flow/activate", headers={**HTMX, "X-CSRF-Token": csrf})
    assert refused.status_code == 404
    assert u.runtime.triggers.armed("ruis-flow") == []


def test_activate_and_deactivate_arm_and_disarm_the_triggers(u: Ui) -> None:
    version = save(u, DIGEST)
    csrf = u.sign_in()

    # When Ana presses Activate without the page's CSRF token (another site's form), then nothing changes
    refused = u.client.post("/ui/flows/daily-digest/activate", headers=HTMX)
    assert refused.status_code == 403
    assert u.runtime.triggers.armed("daily-digest") == []

    # When htmx posts it with the token, then the webhook, cron and event triggers are armed and the
    # section shows the webhook's URL with a copy button
    done = u.client.post("/ui/flows/daily-digest/activate", headers={**HTMX, "X-CSRF-Token": csrf})
    assert done.status_code == 200 and done.text.lstrip().startswith('<section id="triggers"')
    armed = u.runtime.triggers.armed("daily-digest")
    assert sorted(t.kind for t in armed) == ["cron", "event", "webhook"]
    assert {t.version_id for t in armed} == {version}
    token = next(t.token for t in armed if t.kind == "webhook")
    assert f'value="http://testserver/hooks/{token}"' in done.text
    assert 'class="copy secondary"' in done.text and ">Copy</button>" in done.text
    assert "Deactivate" in done.text and "Active</span>" in done.text

    # When she deactivates (a plain form post with the token in a field), then nothing is armed
    off = u.client.post("/ui/flows/daily-digest/deactivate", data={"csrf": csrf})
    assert off.status_code == 303 and off.headers["location"] == "/ui/flows/daily-digest#triggers"
    assert u.runtime.triggers.armed("daily-digest") == []
    assert "/hooks/" not in u.client.get("/ui/flows/daily-digest").text
