"""Validated input of returns: plain dataclasses, checked once here for every door."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import BadUserInput
from app.returns.models import ReturnReason

MAX_LINES = 50
MAX_QUANTITY = 999
MAX_COMMENT = 1000
MIN_REJECTION = 3
MAX_REJECTION = 500
_SKU = re.compile(r"^[A-Z0-9_\-]{1,64}$")


@dataclass(frozen=True)
class ReturnLineRequest:
    """This SKU, this many units (asked for by the customer, or counted on receipt)."""

    sku: str
    quantity: int


def clean_lines(
    lines: list[ReturnLineRequest], *, allow_zero: bool = False
) -> list[ReturnLineRequest]:
    """Non-empty, at most MAX_LINES, known-looking SKUs, sensible quantities; a SKU named
    twice is merged into one line. `allow_zero`: on receipt a line may have come back empty."""
    if not lines:
        raise BadUserInput("Name at least one item.", field="lines")
    if len(lines) > MAX_LINES:
        raise BadUserInput(f"At most {MAX_LINES} lines.", field="lines")
    lowest = 0 if allow_zero else 1
    merged: dict[str, int] = {}
    for index, line in enumerate(lines):
        sku = line.sku.strip().upper()
        if not _SKU.match(sku):
            raise BadUserInput("This order has no line with this SKU.", field=f"lines[{index}].sku")
        if not lowest <= line.quantity <= MAX_QUANTITY:
            raise BadUserInput(
                f"Quantity must be between {lowest} and {MAX_QUANTITY}.",
                field=f"lines[{index}].quantity",
            )
        merged[sku] = merged.get(sku, 0) + line.quantity
    return [ReturnLineRequest(sku, quantity) for sku, quantity in merged.items()]


def _text(value: str, field: str, label: str, maximum: int) -> str:
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise BadUserInput(f"{label} contains control characters.", field=field)
    cleaned = " ".join(value.split())
    if len(cleaned) > maximum:
        raise BadUserInput(f"{label} must have at most {maximum} characters.", field=field)
    return cleaned


def clean_reason(raw: str) -> ReturnReason:
    try:
        return ReturnReason(raw.strip().upper())
    except ValueError:
        allowed = ", ".join(r.value for r in ReturnReason)
        raise BadUserInput(f"Reason must be one of {allowed}.", field="reason") from None


def clean_comment(raw: str | None) -> str:
    return _text(raw or "", "comment", "Comment", MAX_COMMENT)


def clean_rejection_reason(raw: str) -> str:
    reason = _text(raw, "reason", "Reason", MAX_REJECTION)
    if len(reason) < MIN_REJECTION:
        raise BadUserInput(
            f"Tell the customer why ({MIN_REJECTION} to {MAX_REJECTION} characters).",
            field="reason",
        )
    return reason
