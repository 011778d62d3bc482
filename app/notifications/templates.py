"""Email texts: pure functions from plain data to (subject, body_text), no I/O but the
template files.

Each email is a pair of files in `templates/`: `<name>.subject.txt` and `<name>.body.txt`.
Use cases render at enqueue time, so the outbox row holds exactly what will be sent.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATE_DIR = Path(__file__).with_name("templates")


def format_money(minor: int, currency: str) -> str:
    """Integer minor units for people: 1234, "EUR" -> "EUR 12.34" (two decimals assumed)."""
    sign = "-" if minor < 0 else ""
    units, cents = divmod(abs(minor), 100)
    return f"{currency} {sign}{units}.{cents:02d}"


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def format_long_date(iso_date: str) -> str:
    """2025-06-03 -> "Tuesday 3 June 2025": unambiguous whatever the reader's locale.

    Names are spelled out here rather than with strftime, which follows the process locale.
    """
    # str() makes a missing value (StrictUndefined) raise UndefinedError like anywhere else.
    day = date.fromisoformat(str(iso_date))
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=False,  # noqa: S701 - plain-text emails: HTML escaping would corrupt them
        # A missing key is a bug in the caller, not an empty line in a customer's email.
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        # Block tags on their own lines leave no blank lines behind in the text.
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = format_money
    env.filters["long_date"] = format_long_date
    return env


_ENV = _make_environment()


def render(template_name: str, data: dict[str, Any]) -> tuple[str, str]:
    """Render `<template_name>.subject.txt` and `.body.txt` with `data`."""
    subject = _ENV.get_template(f"{template_name}.subject.txt").render(data)
    body = _ENV.get_template(f"{template_name}.body.txt").render(data)
    # A subject is one header line: folding any newline away also rules out header injection.
    return " ".join(subject.split()), body


def order_confirmation(data: dict[str, Any]) -> tuple[str, str]:
    """Keys: code, name, lines[sku, name, quantity, unit_price_minor, line_total_minor],
    currency, subtotal_minor, shipping_minor, tax_minor, total_minor, address_lines,
    estimated_delivery (ISO date), payment."""
    return render("order_confirmation", data)


def order_cancelled(data: dict[str, Any]) -> tuple[str, str]:
    """Keys: code, name, refund_minor, currency."""
    return render("order_cancelled", data)
