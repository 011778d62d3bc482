"""Every kind of email, rendered as the use cases render it, queued in the outbox, sent by
the real sender over SMTP to a real server (aiosmtpd) and read back with the standard
library's `email` package: a plain-text and an HTML part with the same facts, HTML that
parses and loads nothing, the shop's frame, and the order link with the code only in the
fragment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.db import Database
from app.notifications import templates
from app.notifications.outbox import enqueue_email
from app.notifications.sender import OutboxSender
from app.notifications.templates import Shop
from app.notifications.transports import SmtpTransport
from app.settings import Settings, SettingsError
from tests.email_checks import (
    assert_order_link,
    assert_same_facts,
    assert_shop_frame,
    parse_email,
)
from tests.notifications.conftest import MAIL_FROM, SmtpServer

SHOP = Shop(name="Kettle & Co", support_email="help@kettle.example", url="https://kettle.example")
CODE = "7QKM-3XD2-9HAV-P4T9"
RMA = "R2D2-C3P0-BB8X-K2SO"
NAME = "Ada <Lovelace> & Sons"  # must be escaped in HTML and read back as written
LINES = [
    {"sku": "MUG-001", "name": "Enamel camping mug", "quantity": 2, "received_quantity": 2},
    {"sku": "TEE-BLK-M", "name": "T-shirt <black>, M", "quantity": 1, "received_quantity": 0},
]
ADDRESS = ["Ada Lovelace", "1 Demo Street", "10115 Berlin", "DE"]
RETURN_ADDRESS = ["Orders Returns", "Dock 3, 1 Warehouse Road", "10115 Berlin", "DE"]
RETURN_DATA = {
    "code": CODE,
    "rma": RMA,
    "name": NAME,
    "lines": LINES,
    "reason": "DAMAGED",
    "rejection_reason": "Shows signs of use",
    "window_days": 30,
    "return_address": RETURN_ADDRESS,
    "refund_minor": 2598,
    "currency": "EUR",
}
PARCEL = {
    "code": CODE,
    "name": NAME,
    "carrier": "DHL",
    "tracking_number": "JJD0001234",
    "town": "",
    "unsubscribe_user": "u_0123456789abcdef",
}
ITEM_FACTS = ["2 x Enamel camping mug (MUG-001)", "1 x T-shirt <black>, M (TEE-BLK-M)"]

# kind -> (template data as the use case builds it, facts both parts must carry)
KINDS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "order_confirmation": (
        {
            "code": CODE,
            "name": NAME,
            "lines": [
                {
                    "sku": "MUG-001",
                    "name": "Enamel camping mug",
                    "quantity": 2,
                    "unit_price_minor": 1299,
                    "line_total_minor": 2598,
                },
                {
                    "sku": "TEE-BLK-M",
                    "name": "T-shirt <black>, M",
                    "quantity": 1,
                    "unit_price_minor": 1900,
                    "line_total_minor": 1900,
                },
            ],
            "currency": "EUR",
            "subtotal_minor": 4498,
            "shipping_minor": 495,
            "tax_minor": 832,
            "total_minor": 4993,
            "address_lines": ADDRESS,
            "estimated_delivery": "2026-12-02",
            "payment": "VISA •••• 4242",
        },
        [
            *ITEM_FACTS,
            "EUR 12.99 each",
            "EUR 25.98",
            "EUR 19.00",
            "EUR 44.98",
            "EUR 4.95",
            "EUR 49.93",
            "includes EUR 8.32 VAT",
            "VISA •••• 4242",
            "1 Demo Street",
            "10115 Berlin",
            "Wednesday 2 December 2026",
            "2026-12-02",
        ],
    ),
    "order_cancelled": (
        {"code": CODE, "name": NAME, "refund_minor": 4993, "currency": "EUR"},
        ["has been cancelled", "We are refunding EUR 49.93"],
    ),
    "order_shipped": (
        {
            "code": CODE,
            "name": NAME,
            "carrier": "DHL",
            "tracking_number": "JJD0001234",
            "estimated_delivery": "2026-12-04",
            "lines": [{"sku": "MUG-001", "name": "Enamel camping mug", "quantity": 2}],
            "partial": True,
            "address_lines": ADDRESS,
        },
        [
            "2 x Enamel camping mug (MUG-001)",
            "DHL",
            "JJD0001234",
            "Friday 4 December 2026",
            "2026-12-04",
            "separate parcel",
            "1 Demo Street",
        ],
    ),
    "shipment_out_for_delivery": (
        {**PARCEL, "town": "Berlin"},
        ["is out for delivery in Berlin", "DHL", "JJD0001234"],
    ),
    "shipment_delayed": (
        {**PARCEL, "old_estimate": "2026-12-02", "new_estimate": "2026-12-04"},
        [
            "is delayed",
            "Wednesday 2 December 2026 (2026-12-02)",
            "Friday 4 December 2026 (2026-12-04)",
            "JJD0001234",
        ],
    ),
    "shipment_attempted": (
        {**PARCEL, "town": ""},
        ["tried to deliver", "What happens next", "tries again", "JJD0001234"],
    ),
    "shipment_exception": (
        PARCEL,
        ["reports a problem", "What happens next", "send it again or refund you", "JJD0001234"],
    ),
    "shipment_delivered": (
        {
            **PARCEL,
            "delivered_on": "2026-11-29",
            "return_until": "2026-12-29",
            "address_lines": ADDRESS,
        },
        [
            "was delivered on Sunday 29 November 2026 (2026-11-29)",
            "until Tuesday 29 December 2026 (2026-12-29)",
            "1 Demo Street",
        ],
    ),
    "return_requested": (RETURN_DATA, [RMA, *ITEM_FACTS, "Dock 3, 1 Warehouse Road"]),
    "return_approved": (RETURN_DATA, [RMA, "is approved", *ITEM_FACTS, "Dock 3"]),
    "return_rejected": (RETURN_DATA, [RMA, "Shows signs of use", *ITEM_FACTS]),
    "return_received": (
        RETURN_DATA,
        [RMA, "2 of 2 x Enamel camping mug (MUG-001)", "0 of 1 x T-shirt <black>, M"],
    ),
    "return_refunded": (
        RETURN_DATA,
        [RMA, "EUR 25.98", "2 x Enamel camping mug (MUG-001)"],
    ),
}


def test_every_template_of_the_app_is_covered_here() -> None:
    names = {p.name.removesuffix(".body.txt") for p in templates.TEMPLATE_DIR.glob("*.body.txt")}
    assert names == set(KINDS)
    html = {p.name.removesuffix(".body.html") for p in templates.TEMPLATE_DIR.glob("*.body.html")}
    assert names <= html


async def send_all(db: Database, server: SmtpServer, rows: list[tuple[str, str, str]]) -> None:
    async with db.write() as session:
        for kind, subject, body in rows:
            enqueue_email(
                session,
                kind=kind,
                recipient="ada@example.com",
                subject=subject,
                body_text=body,
                dedupe_key=f"{kind}.{CODE}",
            )
        await session.commit()
    transport = SmtpTransport("127.0.0.1", server.port, None, None, False, timeout=5)
    report = await OutboxSender(db, transport, MAIL_FROM, shop=SHOP).send_pending()
    assert report.sent == len(rows)


async def test_every_kind_arrives_with_a_text_and_an_html_part_telling_the_same(
    db: Database, running_smtp: SmtpServer
) -> None:
    rendered: list[tuple[str, str, str]] = []
    for kind, (data, _) in KINDS.items():
        subject, body = templates.render(kind, data)
        rendered.append((kind, subject, body))
    await send_all(db, running_smtp, rendered)

    messages = running_smtp.mailbox.messages
    assert len(messages) == len(KINDS)
    for message, (kind, (_, facts)) in zip(messages, KINDS.items(), strict=True):
        assert message["Reply-To"] == SHOP.support_email, kind
        parsed = parse_email(message)
        assert_same_facts(parsed, [CODE, NAME, *facts])
        assert_shop_frame(parsed, SHOP.name, SHOP.support_email)
        assert_order_link(parsed, SHOP.url, CODE)
        # Nothing over plain http (the shop is https), and data is escaped, never markup.
        assert "http://" not in parsed.html, kind
        assert "<Lovelace>" not in parsed.html and "&lt;Lovelace&gt;" in parsed.html, kind
        assert "<black>" not in parsed.html, kind
        # The title is the subject; a narrow client gets the viewport it asks for.
        assert f"<title>{message['Subject']}</title>" in parsed.html.replace("&amp;", "&")
        assert 'name="viewport"' in parsed.html


async def test_an_email_queued_before_html_parts_still_gets_both(
    db: Database, running_smtp: SmtpServer
) -> None:
    """A row written by the previous release (no template): its text, escaped, is the
    HTML part, in the shop's frame; the link goes to the orders page without a code."""
    text = f"Hello Ada,\nyour order {CODE} is confirmed <today>.\n"
    await send_all(db, running_smtp, [("order_confirmation", "Confirmed", text)])

    [message] = running_smtp.mailbox.messages
    parsed = parse_email(message)
    assert_same_facts(parsed, [CODE, "is confirmed <today>."])
    assert_shop_frame(parsed, SHOP.name, SHOP.support_email)
    assert f"{SHOP.url}/orders" in parsed.html_links
    assert not any("#" in link for link in parsed.html_links)


def test_a_template_that_does_not_fit_its_data_fails_when_queued_not_when_sent() -> None:
    data = dict(KINDS["order_shipped"][0])
    del data["tracking_number"]
    with pytest.raises(Exception, match="tracking_number"):
        templates.render("order_shipped", data)


def test_the_order_link_carries_the_code_only_in_the_fragment() -> None:
    shop = Shop(url="https://shop.example/")
    assert shop.order_link(CODE) == f"https://shop.example/orders#{CODE}"
    assert shop.order_link(None) == "https://shop.example/orders"
    assert Path(templates.TEMPLATE_DIR / "_layout.html").read_text().count("order_link") == 1


def test_the_shop_settings_are_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_NAME", "Kettle & Co")
    monkeypatch.setenv("SHOP_SUPPORT_EMAIL", "help@kettle.example")
    monkeypatch.setenv("SHOP_URL", "https://kettle.example/shop/")
    settings = Settings.from_env()
    settings.validate()
    shop = Shop.from_settings(settings)
    assert shop == Shop("Kettle & Co", "help@kettle.example", "https://kettle.example/shop")
    assert shop.order_link(CODE) == f"https://kettle.example/shop/orders#{CODE}"
    # A query or fragment of its own would move the code; a relative URL goes nowhere.
    for url in ("https://kettle.example/?ref=mail", "https://kettle.example/#x", "/shop"):
        with pytest.raises(SettingsError, match="SHOP_URL"):
            replace(settings, shop_url=url).validate()
    for address in ("help", "a@b.example, c@d.example", "help@kettle.example\nBcc: x@y"):
        with pytest.raises(SettingsError, match="SHOP_SUPPORT_EMAIL"):
            replace(settings, shop_support_email=address).validate()
