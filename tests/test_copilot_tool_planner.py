"""Jules's offline tool planner (copilot.tool_planner) over a catalog of this test's own (invented tools, not any
data set's): which clauses of a request ask for an action, and which only complete, explain or recall another."""

from __future__ import annotations

from copilot import thesaurus
from copilot.catalog import Catalog
from copilot.tool_planner import _sentences, plan_tools

# an invented catalog: two tools the same marketplaces serve (a tie goes to the one listed first), a party
# hosted or attended, chores
MARKET = Catalog(
    [
        ("water_plants", "Water the plants in a specific room", ("room The room whose plants to water",)),
        ("walk_dog", "Walk a specific dog in a specific park", ("park The park to walk in",)),
        (
            "buy_seeds",
            "Buy specific seeds from a specific market",
            ("seeds The seeds to buy", "market The market to buy the seeds from, eg. Gumtree, Craigslist etc."),
        ),
        (
            "sell_bike",
            "Sell a specific bike at a specific market",
            ("bike The bike to sell", "market The market to sell the bike at, eg. Gumtree, Craigslist etc."),
        ),
        ("host_party", "Host a party about a specific theme", ("theme The theme of the party",)),
        ("attend_party", "Attend a party about a specific theme", ("theme The theme of the party",)),
        ("reserve_seat", "Reserve a seat at a theatre", ("theatre The theatre to reserve at",)),
        ("reserve_table", "Reserve a table at an eatery", ("eatery The eatery to reserve at",)),
        ("organize_trip", "Organize a trip to a specific place", ("place The place of the trip",)),
    ]
)


def test_a_phrase_set_off_by_commas_completes_the_clause_before_it() -> None:
    # Given the marketplace in its own comma-separated phrase ("…, 'Red Racer', on Gumtree"), which alone would name
    # both tools the marketplace serves, Then it belongs to the sale before it and names nothing of its own
    tools, links = plan_tools("Could you sell my old bike, 'Red Racer', on Gumtree, and then water the plants?", MARKET)
    assert tools == ["sell_bike", "water_plants"] and links == [("sell_bike", "water_plants")]


def test_a_purpose_or_a_time_frame_asks_for_nothing_of_its_own() -> None:
    # Given a clause that says why ("to prepare for the party") or when ("during the party"), Then it does not ask
    # for the party: a tie between hosting and attending it names neither
    assert plan_tools("Please water the plants in the kitchen, to prepare for the party.", MARKET)[0] == [
        "water_plants"
    ]
    assert plan_tools("During the party, could you walk the dog in the park?", MARKET)[0] == ["walk_dog"]


def test_what_has_been_done_is_recalled_not_asked_for() -> None:
    # Given a clause that tells what the user has done ("I've just sold my bike"), Then it asks for no sale
    assert plan_tools("I've just sold my bike on Gumtree. Could you water the plants?", MARKET)[0] == ["water_plants"]
    assert plan_tools("I recently bought seeds at the market. Please walk the dog.", MARKET)[0] == ["walk_dog"]
    # but a decision is not a deed ("I've decided to sell my bike"), and what the request also asks for counts
    assert plan_tools("I've decided to sell my bike on Gumtree.", MARKET)[0] == ["sell_bike"]
    text = "I've just sold my bike, and I'd like to buy seeds on Gumtree. Then sell the bike on Craigslist too."
    assert plan_tools(text, MARKET)[0] == ["buy_seeds", "sell_bike"]


def test_what_an_action_is_about_is_its_topic_not_another_action() -> None:
    # Given a party to discuss a sale, Then the sale is the party's theme; a clause naming nothing before "about"
    # still names what follows
    assert plan_tools("Can you host a party to discuss selling my bike?", MARKET)[0] == ["host_party"]
    assert plan_tools("Can you host a party about the bike sale?", MARKET)[0] == ["host_party"]
    assert plan_tools("Could you help me with something about my bike sale on Gumtree?", MARKET)[0] == ["sell_bike"]


def test_a_tie_goes_to_what_the_request_wishes_for_not_to_what_it_already_asks() -> None:
    # Given "make the reservation" after a wish that names the eatery, Then the reservation is the eatery's
    text = "I'm planning to go out and I love the Lotus eatery. Can you make the reservation?"
    assert plan_tools(text, MARKET)[0] == ["reserve_table"]
    # an action asked for by another clause does not break a tie: the other clause has it already
    assert plan_tools("Could you set up a pirate party and attend the party?", MARKET)[0] == [
        "host_party",
        "attend_party",
    ]


def test_a_scene_in_the_future_or_after_but_names_an_action_only_outright() -> None:
    # Given "I'll be at a party" or "but I'm at a party", which do not say whether it is hosted or attended
    assert plan_tools("I'll be at a pirate party on Friday, so could you walk the dog?", MARKET)[0] == ["walk_dog"]
    assert plan_tools("Please walk the dog, but I'm at a pirate party tonight.", MARKET)[0] == ["walk_dog"]


def test_a_pronoun_names_an_action_only_if_what_it_stands_for_does() -> None:
    # Given "organize it" after a sentence about a day (no trip in it), Then no trip is organised
    assert plan_tools("I'm planning a quiet Sunday. Could you organize it?", MARKET)[0] == []
    # but after a sentence about a trip, "organize it" organises the trip
    assert plan_tools("There's a trip to Porto in May. Could you organize it?", MARKET)[0] == ["organize_trip"]


def test_the_dot_of_a_title_or_an_abbreviation_ends_no_sentence() -> None:
    assert _sentences("Ask Dr. Smith about it. Then walk the dog with Mr. Brown.") == [
        "Ask Dr\u2024 Smith about it.",
        "Then walk the dog with Mr\u2024 Brown.",
    ]
    # the clauses come back with their dots
    assert plan_tools("Please ask Dr. Smith to walk the dog. Then water the plants.", MARKET)[0] == [
        "walk_dog",
        "water_plants",
    ]


def test_idioms_and_plurals_the_thesaurus_reads_as_they_are_meant() -> None:
    # "notes" is a plural of "note" (not of "not"); "in order" orders nothing; "keep me updated" is being told
    assert thesaurus.root("notes") == thesaurus.root("note") and thesaurus.root("boxes") == "box"
    assert "order" not in {w for _, w, _ in thesaurus.terms("I need my papers in order, in order to travel")}
    assert "update" not in {w for _, w, _ in thesaurus.terms("keep myself updated about the news")}
    assert "notify" in {w for _, w, _ in thesaurus.terms("please keep me posted")}
