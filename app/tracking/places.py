"""The town a public tracking link may show: a recognised town, or nothing.

Carriers write anything into their free text ("1 Demo Street, 10115 Berlin, DE", "left
with neighbour Bob, tel +49 …"). A shared link is public, so the town it shows is decided
by construction, not by cutting text: it is always a name from our gazetteer
(`towns.tsv.gz`: GeoNames places of 15,000 or more inhabitants, built by
`scripts/build_towns.py`), never bytes a carrier sent.

- `town_from_place`: the structured `location: {city, postalCode, country}` of the
  webhook. The city must be a known town (of that country, when a country is given); a
  postal code, when given, must fit the country's pattern.
- `town_from_text`: the plain `location` string of older senders. Only `Town`,
  `<postal code> Town`, `Town <postal code>`, each optionally followed by `, <country>`
  (an ISO code or a country's name), with a known town. Anything more — a street, a house
  number, a phone number, an email, a name, a second line — gives nothing.

Smaller places give nothing too: the owner still sees the carrier's whole text.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TOWNS_PATH = Path(__file__).with_name("towns.tsv.gz")
MAX_TEXT = 100  # longer text is not "a town" whatever it says
# A postal code when the country is not known: 4 to 5 digits (most of Europe, the US).
_ANY_POSTAL = re.compile(r"^\d{4,5}$")
_POSTAL_FIRST = re.compile(r"^(?P<postal>\d{4,5})\s+(?P<town>\D+)$")
_POSTAL_LAST = re.compile(r"^(?P<town>\D+?)\s+(?P<postal>\d{4,5})$")


@dataclass(frozen=True)
class Country:
    iso: str
    postal: re.Pattern[str] | None


@dataclass(frozen=True)
class Gazetteer:
    # folded town name -> "ISO<tab>name as listed" lines, one per country that has it (one
    # flat string per name: a dict per name would cost three times the memory)
    towns: dict[str, str]
    countries: dict[str, Country]  # folded ISO code or name -> country

    def town(self, name: str, country: Country | None) -> str | None:
        listed = self.towns.get(_fold(name))
        if not listed:
            return None
        for entry in listed.split("\n"):
            iso, _, spelled = entry.partition("\t")
            if country is None or iso == country.iso:
                return spelled
        return None


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


@cache
def gazetteer(path: Path = TOWNS_PATH) -> Gazetteer:
    """Loaded once per process, on first use."""
    towns: dict[str, str] = {}
    countries: dict[str, Country] = {}
    for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines():
        if line.startswith("#") or not line:
            continue
        kind, iso, name, *rest = line.split("\t")
        if kind == "C":
            pattern = rest[0] if rest else ""
            country = Country(iso, re.compile(pattern) if pattern else None)
            countries[_fold(iso)] = country
            countries[_fold(name)] = country
        else:
            key = _fold(name)
            entry = f"{iso}\t{name}"
            towns[key] = f"{towns[key]}\n{entry}" if key in towns else entry
    return Gazetteer(towns, countries)


async def load() -> None:
    """Load the gazetteer off the event loop (a third of a second, once per process)."""
    if gazetteer.cache_info().currsize == 0:
        await asyncio.to_thread(gazetteer)


def _usable(text: str) -> str | None:
    """Text on one line, of a town's length, without control characters; else None."""
    if len(text) > MAX_TEXT or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return None
    return " ".join(text.split())


def _postal_fits(postal: str, country: Country | None) -> bool:
    if country is None or country.postal is None:
        return bool(_ANY_POSTAL.match(postal))
    return bool(country.postal.match(postal.upper()))


def town_from_place(city: str, postal_code: str = "", country: str = "") -> str:
    """The town of a structured location, as the gazetteer spells it, or ""."""
    names = gazetteer()
    city_text, postal_text, country_text = (_usable(v) for v in (city, postal_code, country))
    if not city_text or postal_text is None or country_text is None:
        return ""
    known_country = None
    if country_text:
        known_country = names.countries.get(_fold(country_text))
        if known_country is None:
            return ""
    if postal_text and not _postal_fits(postal_text, known_country):
        return ""
    return names.town(city_text, known_country) or ""


def town_from_text(location: str) -> str:
    """The town of an older sender's location string, as the gazetteer spells it, or ""."""
    text = _usable(location)
    if not text:
        return ""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 2 or not all(parts):
        return ""
    country = parts[1] if len(parts) == 2 else ""
    place = parts[0]
    for pattern in (_POSTAL_FIRST, _POSTAL_LAST):
        matched = pattern.match(place)
        if matched:
            return town_from_place(matched["town"], matched["postal"], country)
    if any(ch.isdigit() for ch in place):
        return ""
    return town_from_place(place, "", country)
