"""Validated inputs for checkout: plain dataclasses, checked here once for every door."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import BadUserInput

MAX_LINES = 50
MAX_QUANTITY = 99
COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "GB",
        "CH",
        "NO",
        "IS",
        "US",
        "CA",
    ]
)
_POSTAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 \-]{1,18}[A-Za-z0-9]$")
_IDEMPOTENCY = re.compile(r"^[A-Za-z0-9_\-:.]{8,100}$")
_SKU = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


@dataclass(frozen=True)
class LineInput:
    sku: str
    quantity: int


@dataclass(frozen=True)
class AddressInput:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""


def _text(value: str, field: str, label: str, *, maximum: int, required: bool = True) -> str:
    cleaned = " ".join(value.split())
    if required and not cleaned:
        raise BadUserInput(f"{label} is required.", field=field)
    if len(cleaned) > maximum:
        raise BadUserInput(f"{label} must have at most {maximum} characters.", field=field)
    if any(ord(ch) < 32 for ch in value):
        raise BadUserInput(f"{label} contains control characters.", field=field)
    return cleaned


def clean_address(address: AddressInput, prefix: str = "shippingAddress") -> AddressInput:
    country = address.country.strip().upper()
    if country not in COUNTRIES:
        raise BadUserInput("We do not ship to this country.", field=f"{prefix}.country")
    postal = address.postal_code.strip().upper()
    if not _POSTAL.match(postal):
        raise BadUserInput("Enter a valid postal code.", field=f"{prefix}.postalCode")
    return AddressInput(
        name=_text(address.name, f"{prefix}.name", "Name", maximum=120),
        line1=_text(address.line1, f"{prefix}.line1", "Address line 1", maximum=200),
        line2=_text(
            address.line2, f"{prefix}.line2", "Address line 2", maximum=200, required=False
        ),
        city=_text(address.city, f"{prefix}.city", "City", maximum=100),
        postal_code=postal,
        country=country,
    )


def clean_lines(lines: list[LineInput]) -> list[LineInput]:
    """Reject empty, oversized or malformed carts; merge repeated SKUs into one line."""
    if not lines:
        raise BadUserInput("Add at least one item.", field="lines")
    if len(lines) > MAX_LINES:
        raise BadUserInput(f"An order can have at most {MAX_LINES} lines.", field="lines")
    merged: dict[str, int] = {}
    for index, line in enumerate(lines):
        sku = line.sku.strip().upper()
        if not _SKU.match(sku):
            raise BadUserInput("Unknown product.", field=f"lines[{index}].sku")
        if line.quantity < 1 or line.quantity > MAX_QUANTITY:
            raise BadUserInput(
                f"Quantity must be between 1 and {MAX_QUANTITY}.", field=f"lines[{index}].quantity"
            )
        merged[sku] = merged.get(sku, 0) + line.quantity
        if merged[sku] > MAX_QUANTITY:
            raise BadUserInput(
                f"Quantity must be between 1 and {MAX_QUANTITY}.", field=f"lines[{index}].quantity"
            )
    return [LineInput(sku, qty) for sku, qty in merged.items()]


def clean_idempotency_key(key: str) -> str:
    if not _IDEMPOTENCY.match(key):
        raise BadUserInput(
            "idempotencyKey must be 8 to 100 characters of letters, digits, - _ : .",
            field="idempotencyKey",
        )
    return key
