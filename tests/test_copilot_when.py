"""Jules's offline trigger reading (copilot.when): schedules, zones, events, webhooks and manual runs in English,
Portuguese and Spanish. The phrases are this test's own, not the evaluation set's."""

from __future__ import annotations

import pytest

from copilot.when import triggers, zone_of

SERVICES = ("stripe", "github", "shopify", "typeform")


@pytest.mark.parametrize(
    ("text", "cron", "zone", "exact"),
    [
        ("Every weekday at 7:15 Madrid time, fetch the weather", "15 7 * * 1-5", "Europe/Madrid", True),
        ("Todos os dias às 9h30, horário de Lisboa, manda um resumo", "30 9 * * *", "Europe/Lisbon", True),
        ("Cada lunes a las 10, hora de Ciudad de México, envía el informe", "0 10 * * 1", "America/Mexico_City", True),
        ("Every 15 minutes check the status page", "*/15 * * * *", None, True),
        ("Each morning send me the headlines", "0 8 * * *", None, False),  # vague: 08:00 filled in
        ("every Tuesday and Thursday at 6pm Tokyo time post the update", "0 18 * * 2,4", "Asia/Tokyo", True),
        ("At 9 and 17 every day, Berlin time, count the open tickets", "0 9,17 * * *", "Europe/Berlin", True),
        ("De segunda a sexta às 7h, hora de Luanda, verifica o estoque", "0 7 * * 1-5", "Africa/Luanda", True),
        ("Weekly, send the digest", "0 9 * * 1", None, False),
        ("hourly, ping the API", "0 * * * *", None, True),
    ],
)
def test_schedules_become_cron_and_a_zone(text: str, cron: str, zone: str | None, exact: bool) -> None:
    (trigger,) = triggers(text, SERVICES)
    assert (trigger.type, trigger.cron, trigger.timezone, trigger.exact) == ("cron", cron, zone, exact)


def test_a_schedule_and_a_manual_run_together() -> None:
    found = triggers("Post the weekly report every Monday at 9am Eastern, and whenever I hit run", SERVICES)
    assert [(t.type, t.cron, t.timezone) for t in found] == [
        ("cron", "0 9 * * 1", "America/New_York"),
        ("manual", None, None),
    ]


@pytest.mark.parametrize(
    ("text", "kind", "detail"),
    [
        ("When orders.paid comes in, email the customer", "event", "orders.paid"),
        ("Cuando llegue el evento alumnos.nuevo.registrado, dale la bienvenida", "event", "alumnos.nuevo.registrado"),
        ("When Stripe sends a refund, post it to Slack", "webhook", "stripe"),
        ("Quando alguém preencher o formulário do Typeform, agradece por email", "webhook", "typeform"),
        ("Let me run it with a list of URLs", "manual", None),
        ("It takes a CSV as input and publishes it as reports.ready", "manual", None),  # an output, not a trigger
        ("Fetch https://example.com/data.json and mail it to ops@example.com", "manual", None),
    ],
)
def test_events_webhooks_and_manual_runs(text: str, kind: str, detail: str | None) -> None:
    found = triggers(text, SERVICES)
    assert [t.type for t in found] == [kind]
    assert (found[0].subject if kind == "event" else found[0].source) == detail


def test_zones_come_from_the_tz_database_and_common_names() -> None:
    assert zone_of("at noon reykjavik time") == "Atlantic/Reykjavik"  # any city the tz database knows
    assert zone_of("2pm pacific") == "America/Los_Angeles"
    assert zone_of("hora de nueva york") == "America/New_York"
    assert zone_of("no zone here") is None
