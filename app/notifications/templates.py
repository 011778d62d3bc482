"""Email texts: pure functions from plain data to (subject, body_text) and to the two parts
of the message (plain text and HTML), no I/O but the template files.

Each email is three files in `templates/`: `<name>.subject.txt`, `<name>.body.txt` and
`<name>.body.html` (which extends `_layout.html`: the shop's name, the link to the order and
the footer). Use cases render the subject and the text at enqueue time; the text they get
back carries its template and data, which the outbox row keeps, and the sender renders
the HTML part from that same data, with the shop's frame around both parts (`email_parts`).
HTML is autoescaped, styled inline, one column at most 600 px wide, and loads nothing:
no images, no style sheets, no trackers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined

if TYPE_CHECKING:
    from app.settings import Settings

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


def _make_environment(*, html: bool = False) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        # Plain text must not be escaped (it would corrupt it); HTML always is.
        autoescape=html,  # noqa: S701 - the text environment renders plain text only
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
_HTML_ENV = _make_environment(html=True)


@dataclass(frozen=True)
class Shop:
    """What every email shows of the shop (SHOP_NAME, SHOP_SUPPORT_EMAIL, SHOP_URL)."""

    name: str = "Orders Shop"
    support_email: str = "support@shop.example"
    url: str = "http://127.0.0.1:5173"

    @classmethod
    def from_settings(cls, settings: Settings) -> Shop:
        return cls(settings.shop_name, settings.shop_support_email, settings.shop_url)

    def order_link(self, code: str | None) -> str:
        """`{url}/orders#<code>`: the code only in the fragment, which browsers never send
        to the server (no access log holds it); the page asks for a sign-in first."""
        base = f"{self.url.rstrip('/')}/orders"
        return f"{base}#{quote(code, safe='-')}" if code else base


class RenderedText(str):
    """An email's plain text that remembers the template and data it was rendered from,
    so that `enqueue_email` can store them for the HTML part."""

    template: str
    data: dict[str, Any]

    def __new__(cls, text: str, template: str, data: dict[str, Any]) -> RenderedText:
        rendered = super().__new__(cls, text)
        rendered.template = template
        rendered.data = data
        return rendered


def render(template_name: str, data: dict[str, Any]) -> tuple[str, RenderedText]:
    """Render `<template_name>.subject.txt` and `.body.txt` with `data`.

    The HTML part is rendered here too, once, so that a template that does not fit its
    data fails the use case's transaction rather than the send later.
    """
    # As the outbox row will keep it (JSON), so that both parts see exactly the same data.
    data = json.loads(json.dumps(data, default=str))
    subject = _ENV.get_template(f"{template_name}.subject.txt").render(data)
    body = _ENV.get_template(f"{template_name}.body.txt").render(data)
    render_html(template_name, data, subject=subject, shop=Shop())
    # A subject is one header line: folding any newline away also rules out header injection.
    return " ".join(subject.split()), RenderedText(body, template_name, data)


def render_html(
    template_name: str,
    data: dict[str, Any],
    *,
    subject: str,
    shop: Shop,
    unsubscribe_url: str | None = None,
) -> str:
    """`<template_name>.body.html` with `data`, inside the shop's layout."""
    code = data.get("code")
    return _HTML_ENV.get_template(f"{template_name}.body.html").render(
        data,
        subject=subject,
        shop=shop,
        order_link=shop.order_link(str(code) if code else None),
        unsubscribe_url=unsubscribe_url,
    )


def email_parts(
    *,
    subject: str,
    body_text: str,
    template: str | None,
    template_data: str | None,
    shop: Shop,
    unsubscribe_url: str | None = None,
) -> tuple[str, str]:
    """(plain text, HTML) of an outbox row: the stored text with the shop's footer, and the
    HTML rendered from the same template data. A row without a template (queued before
    emails had an HTML part) gets its text, escaped, as the HTML part."""
    data: dict[str, Any] = json.loads(template_data) if template_data else {}
    code = data.get("code")
    link = shop.order_link(str(code) if code else None)
    footer = _ENV.get_template("_footer.txt").render(
        shop=shop, order_link=link, unsubscribe_url=unsubscribe_url
    )
    text = body_text.rstrip("\n") + "\n" + footer
    if template:
        html = render_html(
            template, data, subject=subject, shop=shop, unsubscribe_url=unsubscribe_url
        )
    else:
        html = _HTML_ENV.get_template("_plain.body.html").render(
            text=body_text.strip("\n"),
            subject=subject,
            shop=shop,
            order_link=link,
            unsubscribe_url=unsubscribe_url,
        )
    return text, html


def order_confirmation(data: dict[str, Any]) -> tuple[str, RenderedText]:
    """Keys: code, name, lines[sku, name, quantity, unit_price_minor, line_total_minor],
    currency, subtotal_minor, shipping_minor, tax_minor, total_minor, address_lines,
    estimated_delivery (ISO date), payment."""
    return render("order_confirmation", data)


def order_cancelled(data: dict[str, Any]) -> tuple[str, RenderedText]:
    """Keys: code, name, refund_minor, currency."""
    return render("order_cancelled", data)
