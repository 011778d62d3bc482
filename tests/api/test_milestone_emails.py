"""Milestone emails and notification preferences (issue 13, items 2 and 3).

Everything through the real app: carrier events through the signed webhook, GraphQL over
HTTP, /unsubscribe over HTTP; the outbox emptied by the real sender (configured as the
server configures it) over SMTP into a real SMTP server (aiosmtpd), and every email read
back with the standard library's `email` package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from app.container import Services
from app.notifications.preferences import UnsubscribeLinks
from app.notifications.sender import OutboxSender
from app.notifications.templates import Shop, format_long_date
from app.notifications.transports import SmtpTransport
from app.orders.service import OrderView
from app.security import codes
from app.settings import Settings
from tests.conftest import Account, GraphQLClient, Run
from tests.email_checks import assert_same_facts, parse_email
from tests.notifications.conftest import MAIL_FROM, SmtpServer
from tests.support.carriers import ship_in_parcels, webhook_event
from tests.support.processes import free_port

PREFERENCES = "query { notificationPreferences { milestoneEmails } }"
UPDATE = """
mutation U($on: Boolean!) {
  updateNotificationPreferences(milestoneEmails: $on) { milestoneEmails }
}
"""
CANCEL = "mutation C($code: String!) { cancelOrder(code: $code) { order { status } } }"
SHIPMENTS = "query O($code: String!) { order(code: $code) { shipments { estimatedDelivery } } }"
EVENTS = "query O($code: String!) { order(code: $code) { shipments { events { status } } } }"
MILESTONE_PREFIX = "<shipment-"
PLACE = {"city": "Leipzig", "postalCode": "04109", "country": "DE"}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def deliver_mail(
    services: Services, settings: Settings, run: Run[Any], smtp: SmtpServer
) -> Callable[[], list[EmailMessage]]:
    """Empty the outbox as the server's sender does (app/main.py); every email received."""
    sender = OutboxSender(
        services.db,
        SmtpTransport("127.0.0.1", smtp.port, None, None, False, timeout=5),
        MAIL_FROM,
        shop=Shop.from_settings(settings),
        unsubscribe=services.preferences.links,
    )

    def deliver() -> list[EmailMessage]:
        while run(sender.send_pending()).handled:
            pass
        return smtp.mailbox.messages

    return deliver


def milestones(messages: list[EmailMessage]) -> list[EmailMessage]:
    return [m for m in messages if str(m["Message-ID"]).strip().startswith(MILESTONE_PREFIX)]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsubscribe_link(message: EmailMessage) -> str:
    header = str(message["List-Unsubscribe"])
    assert header.startswith("<") and header.endswith(">"), header
    return header[1:-1]


NOW = datetime.now(UTC).replace(microsecond=0)
LATER = date.today() + timedelta(days=9)


def expected_facts(status: str, settings: Settings, old_estimate: str, at: datetime) -> list[str]:
    today = at.astimezone(UTC).date()  # the carrier's time of the (first) delivery event
    until = today + timedelta(days=settings.return_window_days)
    return {
        "OUT_FOR_DELIVERY": ["is out for delivery in Leipzig", "should arrive today"],
        "DELAYED": [
            "is delayed",
            f"{format_long_date(old_estimate)} ({old_estimate})",
            f"{format_long_date(LATER.isoformat())} ({LATER.isoformat()})",
        ],
        "ATTEMPTED_DELIVERY": ["tried to deliver", "What happens next", "tries again"],
        "EXCEPTION": ["reports a problem", "What happens next", "send it again or refund"],
        "DELIVERED": [
            f"was delivered on {format_long_date(today.isoformat())} ({today.isoformat()})",
            f"until {format_long_date(until.isoformat())} ({until.isoformat()})",
            "1 Demo Street",
        ],
    }[status]


# -- one email per milestone -------------------------------------------------------------
@pytest.mark.parametrize(
    "status", ["OUT_FOR_DELIVERY", "DELAYED", "ATTEMPTED_DELIVERY", "EXCEPTION", "DELIVERED"]
)
def test_each_milestone_from_the_signed_webhook_sends_exactly_one_email(
    status: str,
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    settings: Settings,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
    deliver_mail: Callable[[], list[EmailMessage]],
    smtp: SmtpServer,
) -> None:
    # given a shipped order
    view = place_order(owner, [("MUG-001", 1)])
    [tracking] = ship_in_parcels(run, services, warehouse, view, [None])
    code = codes.display(view.order.code)
    [parcel] = gql.data(SHIPMENTS, {"code": view.order.code}, token=owner.token)["order"][
        "shipments"
    ]
    webhook_event(
        http, tracking, "IN_TRANSIT", occurred_at=NOW - timedelta(hours=3), location=PLACE
    )
    # when the carrier reports the milestone, repeats the very same event, and reports the
    # milestone again as a new event
    repeat_id = f"evt-{uuid.uuid4().hex}"
    moment = NOW - timedelta(hours=2)
    estimate = LATER if status == "DELAYED" else None
    webhook_event(
        http,
        tracking,
        status,
        occurred_at=moment,
        event_id=repeat_id,
        estimated_delivery=estimate,
        location=PLACE,
    )
    webhook_event(
        http,
        tracking,
        status,
        occurred_at=moment,
        event_id=repeat_id,
        estimated_delivery=estimate,
        location=PLACE,
    )
    webhook_event(
        http, tracking, status, occurred_at=moment + timedelta(minutes=30), location=PLACE
    )
    messages = deliver_mail()

    # then every event is in the parcel's history once (no event lost to the email's
    # de-duplication), and exactly one milestone email arrived, to the customer
    seen = gql.data(EVENTS, {"code": view.order.code}, token=owner.token)["order"]
    assert [e["status"] for e in seen["shipments"][0]["events"]] == [status, status, "IN_TRANSIT"]
    [email] = milestones(messages)
    assert email["To"] == owner.email
    assert code in str(email["Subject"])
    parsed = parse_email(email)
    assert_same_facts(
        parsed,
        [
            code,
            "DHL",
            tracking,
            *expected_facts(status, settings, parcel["estimatedDelivery"], moment),
        ],
    )
    # with a one-click unsubscribe link (RFC 8058) that says nothing about the order, its
    # header on one line as written (not folded into RFC 2047 encoded words: no mail client
    # would find the link in those)
    link = unsubscribe_link(email)
    raw = [e.content for e in smtp.mailbox.envelopes if b"List-Unsubscribe:" in e.content]
    assert len(raw) == 1
    assert re.search(rb"\nList-Unsubscribe: <" + re.escape(link.encode()) + rb">\r?\n", raw[0])
    assert re.search(rb"\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r?\n", raw[0])
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link.startswith(f"{settings.public_api_url}/unsubscribe?token=")
    assert link in parsed.text_links and link in parsed.html_links
    token = parse_qs(urlsplit(link).query)["token"][0]
    for secret in (view.order.code, code, tracking, owner.email):
        assert secret not in token and secret not in link
    # the other emails of the order (confirmation, shipped) carry no unsubscribe headers
    others = [m for m in messages if m not in milestones(messages)]
    assert len(others) == 2
    for other in others:
        assert other["List-Unsubscribe"] is None and other["List-Unsubscribe-Post"] is None
        assert "/unsubscribe" not in parse_email(other).text


def test_events_older_than_the_shipments_state_or_after_delivery_send_nothing(
    http: TestClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
    deliver_mail: Callable[[], list[EmailMessage]],
) -> None:
    # given an order in two parcels
    view = place_order(owner, [("MUG-001", 1), ("TEE-BLK-M", 1)])
    first, second = ship_in_parcels(
        run, services, warehouse, view, [[("MUG-001", 1)], [("TEE-BLK-M", 1)]]
    )
    # parcel 1: out for delivery, then events older than that arrive late
    webhook_event(
        http, first, "OUT_FOR_DELIVERY", occurred_at=NOW - timedelta(hours=1), location=PLACE
    )
    webhook_event(http, first, "EXCEPTION", occurred_at=NOW - timedelta(hours=5), location=PLACE)
    webhook_event(
        http,
        first,
        "DELAYED",
        occurred_at=NOW - timedelta(hours=6),
        estimated_delivery=LATER,
        location=PLACE,
    )
    webhook_event(
        http, first, "ATTEMPTED_DELIVERY", occurred_at=NOW - timedelta(hours=2), location=PLACE
    )
    # parcel 2: delivered first, then out for delivery (older and newer) and an attempt
    webhook_event(http, second, "DELIVERED", occurred_at=NOW - timedelta(hours=1), location=PLACE)
    webhook_event(
        http, second, "OUT_FOR_DELIVERY", occurred_at=NOW - timedelta(hours=4), location=PLACE
    )
    webhook_event(http, second, "ATTEMPTED_DELIVERY", occurred_at=NOW, location=PLACE)
    webhook_event(http, second, "DELIVERED", occurred_at=NOW + timedelta(minutes=1), location=PLACE)
    messages = deliver_mail()

    # then one email per parcel: what each parcel's newest state is
    subjects = sorted(str(m["Subject"]) for m in milestones(messages))
    code = codes.display(view.order.code)
    assert subjects == [
        f"Your parcel for order {code} has been delivered",
        f"Your parcel for order {code} is out for delivery",
    ]


# -- preferences ---------------------------------------------------------------------------
def test_with_milestone_emails_off_only_the_essential_emails_arrive(
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
    deliver_mail: Callable[[], list[EmailMessage]],
) -> None:
    # given a customer who switched milestone emails off
    assert gql.data(PREFERENCES, token=owner.token)["notificationPreferences"] == {
        "milestoneEmails": True
    }
    switched = gql.data(UPDATE, {"on": False}, token=owner.token)
    assert switched["updateNotificationPreferences"] == {"milestoneEmails": False}
    assert gql.data(PREFERENCES, token=owner.token)["notificationPreferences"] == {
        "milestoneEmails": False
    }
    # when one order goes through every milestone and another is cancelled (refunded)
    shipped_view = place_order(owner, [("MUG-001", 1)])
    [tracking] = ship_in_parcels(run, services, warehouse, shipped_view, [None])
    for offset, status in enumerate(
        ["OUT_FOR_DELIVERY", "DELAYED", "ATTEMPTED_DELIVERY", "EXCEPTION", "DELIVERED"]
    ):
        webhook_event(
            http, tracking, status, occurred_at=NOW - timedelta(hours=5 - offset), location=PLACE
        )
    cancelled_view = place_order(owner, [("MUG-001", 1)])
    cancelled = gql.data(CANCEL, {"code": cancelled_view.order.code}, token=owner.token)
    assert cancelled["cancelOrder"]["order"]["status"] == "CANCELLED"
    messages = deliver_mail()

    # then no milestone email, but both confirmations, the shipping and the refund email
    assert milestones(messages) == []
    kinds = sorted(str(m["Message-ID"]).strip().split(".", 1)[0] for m in messages)
    assert kinds == [
        "<order-cancelled",
        "<order-confirmation",
        "<order-confirmation",
        "<order-shipped",
    ]
    refund = next(
        m for m in messages if str(m["Message-ID"]).strip().startswith("<order-cancelled")
    )
    assert "We are refunding" in parse_email(refund).text

    # and switched back on, the next parcel's milestone is emailed again
    assert gql.data(UPDATE, {"on": True}, token=owner.token)["updateNotificationPreferences"] == {
        "milestoneEmails": True
    }
    again = place_order(owner, [("MUG-001", 1)])
    [tracking] = ship_in_parcels(run, services, warehouse, again, [None])
    webhook_event(http, tracking, "OUT_FOR_DELIVERY", occurred_at=NOW, location=PLACE)
    assert len(milestones(deliver_mail())) == 1


def test_notification_preferences_need_a_login_and_are_each_customers_own(
    gql: GraphQLClient, owner: Account, other_customer: Account
) -> None:
    for document, variables in ((PREFERENCES, None), (UPDATE, {"on": False})):
        body = gql(document, variables)
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
    gql.data(UPDATE, {"on": False}, token=owner.token)
    assert gql.data(PREFERENCES, token=owner.token)["notificationPreferences"] == {
        "milestoneEmails": False
    }
    assert gql.data(PREFERENCES, token=other_customer.token)["notificationPreferences"] == {
        "milestoneEmails": True
    }


# -- one-click unsubscribe ------------------------------------------------------------------
def _one_milestone_email(
    http: TestClient,
    run: Run[Any],
    services: Services,
    warehouse: Account,
    account: Account,
    place_order: Callable[..., OrderView],
    deliver_mail: Callable[[], list[EmailMessage]],
) -> EmailMessage:
    view = place_order(account, [("MUG-001", 1)])
    [tracking] = ship_in_parcels(run, services, warehouse, view, [None])
    webhook_event(http, tracking, "OUT_FOR_DELIVERY", occurred_at=NOW, location=PLACE)
    [email] = [m for m in milestones(deliver_mail()) if m["To"] == account.email]
    return email


def test_the_one_click_unsubscribe_works_once_without_a_login(
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    other_customer: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
    deliver_mail: Callable[[], list[EmailMessage]],
) -> None:
    email = _one_milestone_email(http, run, services, warehouse, owner, place_order, deliver_mail)
    link = unsubscribe_link(email)
    path = link.removeprefix(services.settings.public_api_url)

    # a mail scanner's GET shows a page with a button, and changes nothing
    page = http.get(path)
    assert page.status_code == 200
    assert '<form method="post"' in page.text and "Unsubscribe</button>" in page.text
    assert gql.data(PREFERENCES, token=owner.token)["notificationPreferences"] == {
        "milestoneEmails": True
    }
    # the mail client's one-click POST (RFC 8058), no login: milestone emails off
    one_click = {"content": b"List-Unsubscribe=One-Click"}
    form = {"content-type": "application/x-www-form-urlencoded"}
    done = http.post(path, headers=form, **one_click)  # type: ignore[arg-type]
    assert done.status_code == 200, done.text
    assert "no longer get delivery updates" in done.text
    assert gql.data(PREFERENCES, token=owner.token)["notificationPreferences"] == {
        "milestoneEmails": False
    }
    assert gql.data(PREFERENCES, token=other_customer.token)["notificationPreferences"] == {
        "milestoneEmails": True
    }
    # the same link a second time: refused, says so
    gql.data(UPDATE, {"on": True}, token=owner.token)
    again = http.post(path, headers=form, **one_click)  # type: ignore[arg-type]
    assert again.status_code == 409
    assert "already been used" in again.text
    assert gql.data(PREFERENCES, token=owner.token)["notificationPreferences"] == {
        "milestoneEmails": True
    }


def test_a_forged_or_expired_unsubscribe_token_is_refused_and_changes_nothing(
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    other_customer: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
    deliver_mail: Callable[[], list[EmailMessage]],
) -> None:
    email = _one_milestone_email(http, run, services, warehouse, owner, place_order, deliver_mail)
    token = parse_qs(urlsplit(unsubscribe_link(email)).query)["token"][0]
    payload, mac = token.split(".")
    links = services.preferences.links
    victim = other_customer.viewer.public_id
    # another customer's id under this customer's signature
    swapped = links.token(victim, NOW).split(".")[0] + "." + mac
    # signed with a key that is not the server's
    foreign = UnsubscribeLinks.from_secret("some-other-secret-" + "y" * 40, "http://x").token(
        victim, NOW
    )
    # the server's own key, but for another purpose
    other = f"v1|{victim}|delete-account|{int((NOW + timedelta(days=1)).timestamp())}".encode()
    mac_other = hmac.new(links.key, other, hashlib.sha256).digest()
    purpose = f"{_b64(other)}.{_b64(mac_other)}"
    # the customer's access token (a JWT signed with JWT_SECRET) is no unsubscribe token
    forgeries = (swapped, foreign, purpose, owner.token, payload, "", "x.y", token[:-2] + "AA")
    for forged in forgeries:
        response = http.post("/unsubscribe", params={"token": forged})
        assert response.status_code == 400, (forged, response.text)
        assert "not valid" in response.text
    # a genuine token, sixty-one days old: expired
    stale = links.token(victim, NOW - timedelta(days=61))
    expired = http.post("/unsubscribe", params={"token": stale})
    assert expired.status_code == 410
    assert "expired" in expired.text
    # nobody was unsubscribed
    for account in (owner, other_customer):
        assert gql.data(PREFERENCES, token=account.token)["notificationPreferences"] == {
            "milestoneEmails": True
        }
    # while the customer's own genuine token still works
    assert http.post("/unsubscribe", params={"token": token}).status_code == 200
