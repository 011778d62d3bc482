"""The town a public tracking link shows: a gazetteer name from a structured location, or
from a location string that is nothing but a town; anything else gives nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.shipments.inputs import EventInput, Place, clean_event
from app.tracking.places import gazetteer, load, town_from_place, town_from_text


@pytest.mark.parametrize(
    ("text", "town"),
    [
        ("10115 Berlin, DE", "Berlin"),
        ("10115 Berlin", "Berlin"),
        ("Berlin 10115", "Berlin"),
        ("berlin, germany", "Berlin"),
        ("  München  ", "München"),
        ("London, GB", "London"),
        # more than a town, or not a known one: nothing
        ("1 Demo Street, 10115 Berlin, DE", ""),
        ("Berlin, Hauptstr. 5", ""),
        ("1234 Berlin, DE", ""),  # not a German postal code
        ("Berlin, Atlantis", ""),
        ("Leipzig hub", ""),
        ("Bob Nachbar", ""),
        ("Erika Mustermann", ""),
        ("+49 30 1234567", ""),
        ("bob.nachbar@example.com", ""),
        ("Berlin\nBob Nachbar", ""),
        ("B" * 200, ""),
        ("", ""),
    ],
)
def test_town_from_text(text: str, town: str) -> None:
    assert town_from_text(text) == town


@pytest.mark.parametrize(
    ("city", "postal", "country", "town"),
    [
        ("Berlin", "10115", "DE", "Berlin"),
        ("leipzig", "", "", "Leipzig"),
        ("Berlin", "", "Germany", "Berlin"),
        ("Bob Nachbar", "10115", "DE", ""),
        ("Berlin", "tel 1234567", "DE", ""),
        ("Berlin", "10115", "bob@example.com", ""),
        ("1 Demo Street", "10115", "DE", ""),
        ("Leipzig", "", "FR", ""),  # no Leipzig in France
    ],
)
def test_town_from_place(city: str, postal: str, country: str, town: str) -> None:
    assert town_from_place(city, postal, country) == town


def test_the_town_is_the_gazetteers_spelling_never_the_carriers_bytes() -> None:
    shown = town_from_place("  bERLIN ", "10115", "de")
    assert shown == "Berlin"
    assert "Berlin" in gazetteer().towns["berlin"]


def test_a_clean_event_keeps_the_carriers_text_for_the_owner_and_a_town_apart() -> None:
    structured = clean_event(
        EventInput(
            status="IN_TRANSIT",
            place=Place("Berlin", "10115", "DE"),
            description="left with Bob Nachbar",
            event_id="e-1",
        ),
        now=datetime.now(UTC),
        default_event_id=None,
    )
    assert (structured.location, structured.town) == ("10115 Berlin, DE", "Berlin")
    assert structured.description == "left with Bob Nachbar"


@pytest.mark.parametrize(
    ("text", "town"),
    [
        ("Berlin".ljust(100), "Berlin"),  # up to 100 characters is read
        ("Berlin".ljust(101), ""),  # longer is not a town, whatever it says
        ("Berlin\n", ""),  # a second line, however empty
        ("\tBerlin", ""),  # control characters
        ("Berlin\x1f", ""),
        ("Berlin, DE, Europe", ""),  # three parts
        ("Berlin, , DE", ""),
    ],
)
def test_only_one_short_line_of_text_is_read(text: str, town: str) -> None:
    assert town_from_text(text) == town


@pytest.mark.parametrize(
    ("city", "postal", "country", "town"),
    [
        ("Berlin\n", "10115", "DE", ""),  # an unusable city
        ("Berlin", "10115\n", "DE", ""),  # an unusable postal code
        ("Berlin", "10115", "DE\n", ""),  # an unusable country
        ("Valletta", "vlt 1117", "MT", "Valletta"),  # postal codes are read in capitals
    ],
)
def test_every_part_of_a_place_must_be_usable(
    city: str, postal: str, country: str, town: str
) -> None:
    assert town_from_place(city, postal, country) == town


def test_a_city_alone_is_enough() -> None:
    # no postal code and no country: the defaults ask for neither
    assert town_from_place("Berlin") == "Berlin"


async def test_load_reads_the_gazetteer_once_off_the_event_loop() -> None:
    # given no gazetteer in memory
    gazetteer.cache_clear()
    # when loaded, then it is in memory (and later calls use it)
    await load()
    assert gazetteer.cache_info().currsize == 1
    loaded = gazetteer()
    await load()
    assert gazetteer() is loaded
