"""The email texts carry what the customer needs: code, lines, totals, address, delivery."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError

from app.notifications import templates


def confirmation_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "code": "ABCD-2345-EFGH-6789",
        "name": "Ada Lovelace",
        "lines": [
            {
                "sku": "MUG-001",
                "name": "Enamel mug",
                "quantity": 2,
                "unit_price_minor": 1234,
                "line_total_minor": 2468,
            },
            {
                "sku": "TEE-042",
                "name": "Cotton T-shirt",
                "quantity": 1,
                "unit_price_minor": 1999,
                "line_total_minor": 1999,
            },
        ],
        "currency": "EUR",
        "subtotal_minor": 4467,
        "shipping_minor": 495,
        "tax_minor": 827,
        "total_minor": 4962,
        "address_lines": ["Ada Lovelace", "12 Analytical Street", "10115 Berlin", "DE"],
        "estimated_delivery": "2025-06-03",
        "payment": "VISA •••• 4242",
    }
    data.update(overrides)
    return data


def test_confirmation_subject_names_the_order_code() -> None:
    subject, _ = templates.order_confirmation(confirmation_data())

    assert subject == "Your order ABCD-2345-EFGH-6789 is confirmed"


def test_confirmation_body_carries_code_lines_totals_address_and_delivery() -> None:
    _, body = templates.order_confirmation(confirmation_data())

    assert "ABCD-2345-EFGH-6789" in body
    # every line: quantity, name, sku, unit price and line total
    assert "2 x Enamel mug (MUG-001)" in body
    assert "EUR 12.34 each, EUR 24.68" in body
    assert "1 x Cotton T-shirt (TEE-042)" in body
    assert "EUR 19.99 each, EUR 19.99" in body
    # totals
    assert "Subtotal:  EUR 44.67" in body
    assert "Shipping:  EUR 4.95" in body
    assert "Total:     EUR 49.62" in body
    assert "EUR 8.27 VAT" in body
    # address, in order, one per line
    assert "  Ada Lovelace\n  12 Analytical Street\n  10115 Berlin\n  DE\n" in body
    # delivery date, both spelled out and in ISO form
    assert "Estimated delivery: Tuesday 3 June 2025 (2025-06-03)" in body
    assert "VISA •••• 4242" in body


def test_confirmation_says_free_shipping_rather_than_zero() -> None:
    _, body = templates.order_confirmation(confirmation_data(shipping_minor=0))

    assert "Shipping:  free\n" in body


def test_a_missing_key_is_an_error_not_a_blank_in_the_email() -> None:
    data = confirmation_data()
    del data["estimated_delivery"]

    with pytest.raises(UndefinedError):
        templates.order_confirmation(data)


def test_cancellation_names_the_code_and_the_refund() -> None:
    subject, body = templates.order_cancelled(
        {"code": "ABCD-2345-EFGH-6789", "name": "Ada", "refund_minor": 4962, "currency": "EUR"}
    )

    assert subject == "Your order ABCD-2345-EFGH-6789 is cancelled"
    assert "ABCD-2345-EFGH-6789" in body
    assert "refunding EUR 49.62" in body


def test_cancellation_without_a_charge_promises_no_refund() -> None:
    _, body = templates.order_cancelled(
        {"code": "ABCD-2345-EFGH-6789", "name": "Ada", "refund_minor": 0, "currency": "EUR"}
    )

    assert "nothing to refund" in body
    assert "refunding" not in body


def test_subject_is_always_one_line() -> None:
    # A newline in a subject would start a new header (header injection).
    subject, _ = templates.order_cancelled(
        {"code": "X\nBcc: victim@example.com", "name": "A", "refund_minor": 0, "currency": "EUR"}
    )

    assert "\n" not in subject
    assert "\r" not in subject


@pytest.mark.parametrize(
    ("minor", "expected"),
    [(1234, "EUR 12.34"), (5, "EUR 0.05"), (0, "EUR 0.00"), (100000, "EUR 1000.00"),
     (-1234, "EUR -12.34")],
)  # fmt: skip
def test_money_is_formatted_from_minor_units(minor: int, expected: str) -> None:
    assert templates.format_money(minor, "EUR") == expected
