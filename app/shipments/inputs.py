"""Validated fulfilment and tracking input: plain dataclasses, checked here once for every
door (GraphQL for staff, the signed webhook for carriers: the same rules for both)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from app.errors import BadUserInput
from app.shipments.models import ShipmentStatus
from app.tracking import town_from_place, town_from_text

MAX_SCANS = 500
MAX_LINES = 50
# A carrier's clock may run a little ahead of ours; further in the future is a mistake.
FUTURE_TOLERANCE = timedelta(minutes=5)
_CARRIER = re.compile(r"^[A-Z0-9][A-Z0-9 _.\-]{0,38}[A-Z0-9]$")
_TRACKING = re.compile(r"^[A-Z0-9][A-Z0-9\-]{2,62}[A-Z0-9]$")
_EVENT_ID = re.compile(r"^[A-Za-z0-9_\-:.]{1,100}$")


@dataclass(frozen=True)
class LineRequest:
    """Part of an order: this SKU, this many units (None: every unit still to handle)."""

    sku: str
    quantity: int | None = None


@dataclass(frozen=True)
class Place:
    """A carrier's structured location. Only a recognised town from it is ever public."""

    city: str = ""
    postal_code: str = ""
    country: str = ""


@dataclass(frozen=True)
class EventInput:
    status: str
    occurred_at: datetime | None = None
    location: str = ""  # free text: the owner sees it; a public link only a known town
    place: Place | None = None
    description: str = ""
    estimated_delivery: date | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class CleanEvent:
    status: ShipmentStatus
    occurred_at: datetime
    location: str
    town: str  # the only place a public tracking link shows (app/tracking/places.py)
    description: str
    estimated_delivery: date | None
    event_id: str


def clean_sku(raw: str) -> str:
    return raw.strip().upper()


def clean_scan(scanned: list[str]) -> Counter[str]:
    """What the scanner read: one SKU per item, in any order."""
    if len(scanned) > MAX_SCANS:
        raise BadUserInput(f"At most {MAX_SCANS} scans at once.", field="scannedSkus")
    return Counter(clean_sku(sku)[:64] for sku in scanned if sku.strip())


def clean_line_requests(lines: list[LineRequest] | None) -> list[LineRequest] | None:
    if lines is None:
        return None
    if not lines:
        raise BadUserInput("Name at least one line, or leave `lines` out.", field="lines")
    if len(lines) > MAX_LINES:
        raise BadUserInput(f"At most {MAX_LINES} lines.", field="lines")
    for index, line in enumerate(lines):
        if line.quantity is not None and line.quantity < 1:
            raise BadUserInput("Quantity must be at least 1.", field=f"lines[{index}].quantity")
    return [LineRequest(clean_sku(line.sku), line.quantity) for line in lines]


def clean_carrier(raw: str) -> str:
    carrier = " ".join(raw.split()).upper()
    if not _CARRIER.match(carrier):
        raise BadUserInput(
            "Carrier must be 2 to 40 letters, digits, spaces, dots, dashes or underscores.",
            field="carrier",
        )
    return carrier


def clean_tracking_number(raw: str) -> str:
    """Tracking numbers are compared without spaces and case (as printed on labels)."""
    tracking = "".join(raw.split()).upper()
    if not _TRACKING.match(tracking):
        raise BadUserInput(
            "Tracking number must be 4 to 64 letters, digits or dashes.",
            field="trackingNumber",
        )
    return tracking


def _text(value: str, field: str, label: str, maximum: int) -> str:
    if any(ord(ch) < 32 and ch not in "\t\n" for ch in value):
        raise BadUserInput(f"{label} contains control characters.", field=field)
    cleaned = " ".join(value.split())
    if len(cleaned) > maximum:
        raise BadUserInput(f"{label} must have at most {maximum} characters.", field=field)
    return cleaned


def as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def clean_event(event: EventInput, *, now: datetime, default_event_id: str | None) -> CleanEvent:
    try:
        status = ShipmentStatus(event.status.strip().upper())
    except ValueError:
        allowed = ", ".join(s.value for s in ShipmentStatus)
        raise BadUserInput(f"Status must be one of {allowed}.", field="status") from None
    occurred = as_utc(event.occurred_at) if event.occurred_at is not None else now
    if occurred > now + FUTURE_TOLERANCE:
        raise BadUserInput("The event time is in the future.", field="occurredAt")
    event_id = event.event_id if event.event_id is not None else default_event_id
    if event_id is None or not _EVENT_ID.match(event_id):
        raise BadUserInput(
            "Event id must be 1 to 100 letters, digits or - _ : . characters.", field="eventId"
        )
    location = _text(event.location, "location", "Location", 200)
    place = event.place
    if place is not None:
        city = _text(place.city, "location.city", "City", 100)
        postal = _text(place.postal_code, "location.postalCode", "Postal code", 16)
        country = _text(place.country, "location.country", "Country", 60)
        town = town_from_place(city, postal, country)
        # the owner's text: what the carrier sent, in one line
        location = location or ", ".join(p for p in (f"{postal} {city}".strip(), country) if p)
    else:
        town = town_from_text(location)
    return CleanEvent(
        status=status,
        occurred_at=occurred,
        location=location,
        town=town,
        description=_text(event.description, "description", "Description", 500),
        estimated_delivery=event.estimated_delivery,
        event_id=event_id,
    )
