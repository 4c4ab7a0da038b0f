"""Jules's offline planner over catalogs and requests of this test's own (invented tools, not any data set's): the
thesaurus carries synonyms, brands and light words, and the planner finds every action a request asks for."""

from __future__ import annotations

from copilot import thesaurus
from copilot.catalog import Catalog
from copilot.tool_planner import plan_tools

# an invented catalog: names, descriptions and described parameters as a tool catalog gives them
PETS = Catalog(
    [
        ("groom_pet", "Groom a specific pet at a specific salon", ("pet The pet to groom", "salon The salon to use")),
        ("hail_ride", "Hail a ride to a specific place", ("place The place to ride to", "app The app, eg. Lyft")),
        ("purchase_item", "Purchase an item from a shop", ("item The item to buy", "shop The shop, eg. Etsy")),
        ("reserve_table", "Reserve a table at an eatery", ("eatery The eatery to reserve at",)),
        ("post_update", "Post an update on a social network", ("network The social network to post on",)),
        ("write_memo", "Write a memo", ("text The text of the memo",)),
        ("dial_number", "Dial a phone number for a voice conversation", ("number The phone number to dial",)),
    ]
)


def test_synonyms_and_inflections_meet_in_one_concept() -> None:
    # Given words that mean the same in different forms, When read as concepts, Then they meet
    assert thesaurus.concept("purchasing") == thesaurus.concept("buy")
    assert thesaurus.concept("reserving") == thesaurus.concept("booked")
    assert thesaurus.concept("shopping") == thesaurus.concept("shop")
    assert thesaurus.concept("sale") == thesaurus.concept("selling")  # "put it up for sale"
    # "shares" (of a company) is stock, while "share" (a post) is sharing; "news" is not "new"
    assert thesaurus.concept("shares") == "stock" and thesaurus.concept("share") == "share"
    assert thesaurus.concept("news") == "news" and thesaurus.concept("new") != "news"


def test_brands_carry_what_they_are_and_light_words_weigh_little() -> None:
    found = {word: weight for _, word, weight in thesaurus.terms("Could you get me an Uber and tweet it")}
    assert found["taxi"] == thesaurus.BROADER_WEIGHT and found["social"] == thesaurus.BROADER_WEIGHT
    assert found["get"] == thesaurus.LIGHT_WEIGHT
    # several words read as one, with the verb inflected and split ("setting it up"), and Uber Eats is not a taxi
    assert thesaurus.concept("arrange") in {w for _, w, _ in thesaurus.terms("setting it up")}
    eats = {w for _, w, _ in thesaurus.terms("order on Uber Eats")}
    assert "food" in eats and "taxi" not in eats


def test_a_trip_from_one_place_to_another_is_a_flight() -> None:
    # Given a trip with a start and an end, Then it carries a flight; a trip to one place does not
    assert "flight" in {w for _, w, _ in thesaurus.terms("a trip from Lisbon to Porto on May 1")}
    assert "flight" in {w for _, w, _ in thesaurus.terms("uma viagem de Lisboa para o Porto")}
    assert "flight" not in {w for _, w, _ in thesaurus.terms("I'm planning a trip to Porto in May")}


def test_portuguese_and_spanish_arrive_in_english() -> None:
    assert [w for _, w, _ in thesaurus.terms("envia o email")] == ["send", "email"]


def test_every_action_of_a_request_over_an_invented_catalog_in_the_order_of_the_text() -> None:
    # Given a request in words the catalog does not use (cab, buy, book, note, call) and brands it never names
    request = (
        "I'm having a hectic week. Could you get me a cab to the vet with Uber, then buy a leash on Amazon and "
        "book a table at a bistro for tonight? Also jot down a note about the vet, and call my sister afterwards."
    )
    tools, links = plan_tools(request, PETS)
    # Then every action, and only those, in the order the text names them, chained
    assert tools == ["hail_ride", "purchase_item", "reserve_table", "write_memo", "dial_number"]
    assert links == [
        ("hail_ride", "purchase_item"),
        ("purchase_item", "reserve_table"),
        ("reserve_table", "write_memo"),
        ("write_memo", "dial_number"),
    ]


def test_two_actions_in_one_clause_and_a_scene_that_asks_for_nothing() -> None:
    tools, _ = plan_tools("My dog is muddy. Please groom my dog at the salon and share a photo on Instagram.", PETS)
    assert tools == ["groom_pet", "post_update"]
    # a sentence that only sets the scene names no action on weak evidence, and one action has no links
    tools, links = plan_tools("I had a lovely week at the salon. Can you write a memo about it?", PETS)
    assert (tools, links) == (["write_memo"], [])


def test_generic_words_do_not_name_an_action() -> None:
    tools, links = plan_tools("Could you help me with some specific things today?", PETS)
    assert (tools, links) == ([], [])
