"""Jules's offline planner: flows from sentences of this test's own (not the evaluation set's), always valid, with
the triggers, steps, loops, approvals, failure alerts and stated values the sentence carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from copilot.catalog import Catalog
from copilot.planning import draft
from copilot.tool_planner import plan_tools
from tests.cli_helpers import ionflux
from tests.conftest import shared_evals

REQUESTS = [
    "Every weekday at 7:15 Madrid time, fetch the open tickets from https://help.example.org/api/tickets, have AI "
    "summarize them and post the summary to #support on Slack. If anything fails, email ops@example.org.",
    "When Stripe sends a refund, post the amount to #finance on Discord.",
    "Todos os dias às 9h, horário de Lisboa, busca as encomendas na API https://loja.example.pt/api/orders e manda "
    "um resumo por email para joana@example.pt.",
    "Cuando llegue el evento pedidos.nuevo, clasifica el pedido como urgente, normal o bajo y avísame en #ventas "
    "por Slack.",
    "Let me run it with a list of email addresses; it sends each one our welcome email.",
    "Every Monday at 10am London time, draft a newsletter with AI, send me the draft for approval, and once I "
    "approve it send it to news@example.com.",
    "When invoices.overdue is published, wait 2 hours and then call our 'reminder-sequence' flow.",
    "Hourly, run the registered wasm module tidy-csv@2.0.1 over the export and publish the result as exports.clean.",
    "Translate the pasted text to French with AI and log it.",
    "When a Typeform response comes in, extract the name and company with AI and post them to #leads on Slack.",
]


@pytest.mark.parametrize("request_text", REQUESTS)
def test_every_plan_is_a_valid_flow(request_text: str) -> None:
    result = draft(request_text)
    assert result.valid, result.problems + "\n" + result.yaml
    assert result.planner == "offline" and result.latency_ms < 1000


def flow_of(text: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(draft(text).yaml)
    return data


def test_a_scheduled_fetch_summarise_post_with_a_failure_alert() -> None:
    flow = flow_of(REQUESTS[0])
    assert flow["triggers"] == [{"type": "cron", "cron": "15 7 * * 1-5", "timezone": "Europe/Madrid"}]
    kinds = [n["type"] for n in flow["nodes"]]
    assert kinds == ["http.request", "llm.complete", "slack.post"]
    fetch, write, post = flow["nodes"]
    assert fetch["with"]["url"] == "https://help.example.org/api/tickets"
    assert fetch["permissions"] == {"net": ["help.example.org"]}
    assert write["needs"] == ["call_api"] and "nodes.call_api.output.body" in write["with"]["prompt"]
    assert post["with"]["channel"] == "#support" and post["with"]["text"] == "{{ nodes.write.output.text }}"
    assert [(n["type"], n["with"]["to"]) for n in flow["on_failure"]] == [("email.send", "ops@example.org")]
    assert flow["secrets"] == ["slack_bot_token"]


def test_loops_approvals_labels_subjects_flows_and_modules() -> None:
    loop = flow_of(REQUESTS[4])
    assert loop["triggers"] == [{"type": "manual"}]
    (each,) = loop["nodes"]
    assert each["type"] == "foreach" and [n["type"] for n in each["do"]] == ["email.send"]
    approval = flow_of(REQUESTS[5])
    assert [n["type"] for n in approval["nodes"]] == ["llm.complete", "approval", "email.send"]
    labels = flow_of(REQUESTS[3])
    assert labels["triggers"] == [{"type": "event", "subject": "pedidos.nuevo"}]
    classify = next(n for n in labels["nodes"] if n["type"] == "llm.classify")
    assert classify["with"]["labels"] == ["urgente", "normal", "bajo"]
    chained = flow_of(REQUESTS[6])
    assert [n["type"] for n in chained["nodes"]] == ["delay", "flow.call"]
    assert (
        chained["nodes"][0]["with"] == {"duration": "2h"} and chained["nodes"][1]["with"]["flow"] == "reminder-sequence"
    )
    module = flow_of(REQUESTS[7])
    assert module["triggers"] == [{"type": "cron", "cron": "0 * * * *", "timezone": "UTC"}]
    published = {n["type"]: n["with"] for n in module["nodes"]}
    assert (
        published["wasm.run"]["module"] == "tidy-csv@2.0.1" and published["event.publish"]["subject"] == "exports.clean"
    )


def test_a_tool_catalog_it_has_never_seen() -> None:
    catalog = Catalog(
        [
            ("book_table", "Book a table at a restaurant", ("restaurant", "reservation")),
            ("send_sms", "Send a text message to a phone number", ("phone", "text")),
            ("get_weather", "Get the weather forecast for a city", ("forecast", "city")),
        ]
    )
    tools, links = plan_tools(
        "Check the weather in Porto, then book a table at a seafood restaurant and text Ana.", catalog
    )
    assert tools == ["get_weather", "book_table", "send_sms"]
    assert links == [("get_weather", "book_table"), ("book_table", "send_sms")]


def test_ionflux_plan_and_ionflux_eval_with_the_offline_planner(tmp_path: Path) -> None:
    out = tmp_path / "flow.yaml"
    done = ionflux(tmp_path, "plan", REQUESTS[1], "-o", str(out))
    assert done.returncode == 0 and "planner: offline" in done.stderr, done.stderr
    assert ionflux(tmp_path, "validate", str(out)).returncode == 0
    shared = shared_evals()
    results = tmp_path / "results.json"
    done = ionflux(
        tmp_path,
        "eval",
        "indomain",
        "--data",
        str(shared / "indomain" / "dev.jsonl"),
        "--planner",
        "offline",
        "--out",
        str(results),
    )
    assert done.returncode == 0 and "validity             100.0" in done.stdout, done.stdout + done.stderr
    report = json.loads(results.read_text())
    assert report["planner"] == "offline" and report["cost"]["latency_ms_p50"] < 50
    tb = shared / "taskbench-dailylife"
    done = ionflux(
        tmp_path,
        "eval",
        "taskbench",
        "--data",
        str(tb / "dev.jsonl"),
        "--catalog",
        str(tb / "tool_desc.json"),
        "--planner",
        "offline",
    )
    assert done.returncode == 0 and "node_f1" in done.stdout


def test_the_cost_forecast_counts_a_months_cron_runs_and_foreach_items() -> None:
    from datetime import UTC, datetime

    from copilot.cost import EXPECTED_ITEMS, forecast
    from engine.dsl.validator import load_flow
    from engine.nodetypes.builtin import builtin_registry

    registry = builtin_registry()
    scheduled = load_flow(draft(REQUESTS[0]).yaml, "a.yaml", registry=registry)
    cost = forecast(scheduled, registry, datetime(2026, 12, 1, tzinfo=UTC))
    assert cost.runs_per_month == 22  # weekdays from 1 to 30 December 2026 at 07:15 Madrid
    assert cost.per_month == round(cost.per_run * 22, 4) and cost.per_run > 0
    assert "22 runs a month" in cost.describe()
    looped = load_flow(draft(REQUESTS[4]).yaml, "b.yaml", registry=registry)
    per_loop = forecast(looped, registry, datetime(2026, 12, 1, tzinfo=UTC))
    assert per_loop.runs_per_month is None and per_loop.per_item > 0
    assert per_loop.per_run == round(per_loop.fixed + per_loop.per_item * EXPECTED_ITEMS, 4)
    assert "depends on how often" in per_loop.describe()


# an invented catalog for ordering: what matters is which clause asks for an action, not where it is first mentioned
ERRANDS = Catalog(
    [
        ("water_plants", "Water the plants in a specific room", ("room The room whose plants to water",)),
        ("walk_dog", "Walk a specific dog in a specific park", ("park The park to walk in",)),
        ("bake_cake", "Bake a specific cake", ("cake The cake to bake",)),
        ("organize_party", "Organize a party about a specific theme", ("theme The theme of the party",)),
        ("text_friend", "Text a friend at a specific phone number", ("phone The phone number",)),
    ]
)


def test_a_tool_takes_its_place_from_the_clause_that_asks_for_it() -> None:
    # Given a wish that mentions the cake first, and a direct request that asks for the text first
    text = "I want to bake a cake for Ana. Can you text my friend at 555-0100 so that we can decide which cake to bake?"
    # When planned, Then the text comes first: the request orders the actions, the scene only mentions the cake
    tools, links = plan_tools(text, ERRANDS)
    assert tools == ["text_friend", "bake_cake"] and links == [("text_friend", "bake_cake")]


def test_sequencing_words_move_clauses_in_english_portuguese_and_spanish() -> None:
    # "…, but before that, X" puts X before the action just asked for
    tools, _ = plan_tools("Please walk the dog in the park, but before that, water the plants in the kitchen.", ERRANDS)
    assert tools == ["water_plants", "walk_dog"]
    # "Y once X is done" puts X first; "first" puts an action before the others its sentence asks for
    assert plan_tools("Please text my friend once the plants are watered.", ERRANDS)[0] == [
        "water_plants",
        "text_friend",
    ]
    assert plan_tools("Walk the dog, but first water the plants.", ERRANDS)[0] == ["water_plants", "walk_dog"]
    # "Before X, Y": Y first; "then" and "after that" keep the order the request is written in
    assert plan_tools("Before you walk the dog, water the plants.", ERRANDS)[0] == ["water_plants", "walk_dog"]
    assert plan_tools("Bake a cake, then water the plants. After that, walk the dog.", ERRANDS)[0] == [
        "bake_cake",
        "water_plants",
        "walk_dog",
    ]
    # the same words in Portuguese and Spanish, over a catalog written in those languages
    local = Catalog(
        [
            ("regar_plantas", "Regar as plantas de um quarto", ()),
            ("passear_cachorro", "Passear o cachorro num parque", ()),
            ("regar_jardin", "Regar el jardin", ()),
            ("pasear_perro", "Pasear al perro en un parque", ()),
        ]
    )
    assert plan_tools("Passear o cachorro, mas antes disso, regar as plantas.", local)[0] == [
        "regar_plantas",
        "passear_cachorro",
    ]
    assert plan_tools("Pasear al perro una vez que regar el jardin.", local)[0] == ["regar_jardin", "pasear_perro"]


def test_a_verb_alone_with_another_object_does_not_name_an_action() -> None:
    # Given "organize" with an object the catalog entry is not about, Then no party is organised
    assert plan_tools("Could you help me organize my errands and walk the dog?", ERRANDS)[0] == ["walk_dog"]
    # but a verb whose object is a pronoun points back to what the request named ("organize it")
    tools, _ = plan_tools("There is a pirate party on Friday. Can you organize it and bake a cake?", ERRANDS)
    assert tools == ["organize_party", "bake_cake"]


# an invented catalog with entries a clause can name equally well: two reservations, two ways to be at a party
SHOWS = Catalog(
    [
        ("reserve_seat", "Reserve a seat at a theatre", ("theatre The theatre to reserve at",)),
        ("reserve_table", "Reserve a table at an eatery", ("eatery The eatery to reserve at",)),
        ("host_party", "Host a party about a specific theme", ("theme The theme of the party",)),
        ("attend_party", "Attend a party about a specific theme", ("theme The theme of the party",)),
        ("walk_dog", "Walk a specific dog in a specific park", ("park The park to walk in",)),
    ]
)


def test_a_clause_that_names_several_actions_equally_takes_the_one_the_request_mentions() -> None:
    # Given "make the reservation", which names both reservations, after a sentence that mentions the eatery
    text = "I've been looking forward to dinner at the Lotus eatery all week. Can you make the reservation?"
    # Then the reservation is the eatery's; alone, the tie goes to the entry listed first
    assert plan_tools(text, SHOWS)[0] == ["reserve_table"]
    assert plan_tools("Can you make the reservation?", SHOWS)[0] == ["reserve_seat"]


def test_a_scene_that_names_several_actions_equally_names_none() -> None:
    # Given a scene-setting clause that does not say whether the party is hosted or attended, Then it names nothing
    assert plan_tools("I have a pirate party on Friday. Walk the dog, please.", SHOWS)[0] == ["walk_dog"]
    # but a scene that says which names it, in its place
    assert plan_tools("I'm hosting a party on Friday. Please walk the dog.", SHOWS)[0] == ["host_party", "walk_dog"]


def test_actions_given_times_of_day_come_in_the_order_of_those_times() -> None:
    # Given a request that asks for the later action first, each with its own time, Then the earlier comes first
    text = "Could you walk the dog in the park at 9:00am? Also, text my friend at 555-0100 at 7:30am to wake her."
    tools, links = plan_tools(text, ERRANDS)
    assert tools == ["text_friend", "walk_dog"] and links == [("text_friend", "walk_dog")]
    # a part of the day counts too, and "tomorrow" is a day later; an action with no time keeps its place
    text = "Please bake a cake tomorrow morning, water the plants in the kitchen, and walk the dog tonight."
    assert plan_tools(text, ERRANDS)[0] == ["walk_dog", "water_plants", "bake_cake"]
    # the same in Portuguese and Spanish ("às 18h", "a las 7:00"); a bare number is a count, not a time
    local = Catalog([("regar_plantas", "Regar as plantas de um quarto", ()), ("pasear_perro", "Pasear al perro", ())])
    assert plan_tools("Pasear al perro a las 18:00 y regar as plantas às 8h.", local)[0] == [
        "regar_plantas",
        "pasear_perro",
    ]
    assert plan_tools("Walk the dog with 3 friends, then water the plants at 7am.", ERRANDS)[0] == [
        "walk_dog",
        "water_plants",
    ]


def test_a_sentence_that_says_how_things_are_is_not_an_order() -> None:
    # Given a statement that opens with a word the catalog knows ("It's cake day"), Then it names the cake only as a
    # scene does, and the cake takes its place from the request that asks for it, after the text
    text = "It's cake day at the office. Could you text my friend at 555-0100, and then bake the cake?"
    tools, links = plan_tools(text, ERRANDS)
    assert tools == ["text_friend", "bake_cake"] and links == [("text_friend", "bake_cake")]
