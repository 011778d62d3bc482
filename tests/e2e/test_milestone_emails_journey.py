"""Milestone emails end to end, against the real server process and a real SMTP server
(aiosmtpd): the carrier (scripts/carrier_client.py, signed) reports a parcel out for
delivery (twice, and the same event again) and delivered; alice gets one email for each,
the one-click unsubscribe link (at PUBLIC_API_URL) in the RFC 8058 headers. Her mail
client's POST to it, without a login, switches milestone emails off once; her next parcel
then sends the confirmation and the shipping email and no milestone email."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import Api, LiveServer
from tests.e2e.test_fulfilment_journey import (
    pack_and_ship,
    place,
    run_carrier_client,
    wait_for_subject,
)
from tests.email_checks import assert_same_facts, parse_email

PUBLIC_API_URL = "https://api.kettle.example"
CANCEL = "mutation C($code: String!) { cancelOrder(code: $code) { order { status } } }"
PREFERENCES = "query { notificationPreferences { milestoneEmails } }"

pytestmark = [pytest.mark.e2e, pytest.mark.server_env(PUBLIC_API_URL=PUBLIC_API_URL)]


def carrier(live_server: LiveServer, tracking: str, status: str, event_id: str) -> None:
    sent = run_carrier_client(
        live_server, tracking, status, "--event-id", event_id, "--city", "Leipzig",
        "--postal-code", "04109", "--country", "DE",
    )  # fmt: skip
    assert sent.stdout.startswith("202 "), sent.stdout + sent.stderr


def fence(live_server: LiveServer, alice: Api) -> None:
    """Queue one more email (a cancellation) and wait for it: the sender sends the outbox
    oldest first, so every email queued before it has been sent by then."""
    code = place(alice, [{"sku": "MUG-001", "quantity": 1}], "e2e-fence")
    cancelled = alice.data(CANCEL, code=code)["cancelOrder"]
    assert cancelled["order"]["status"] == "CANCELLED"
    wait_for_subject(live_server, f"Your order {code} is cancelled")


def subjects_to(live_server: LiveServer, address: str) -> list[str]:
    return [str(m["Subject"]) for m in live_server.smtp.messages if str(m["To"]) == address]


def test_milestone_emails_and_the_one_click_unsubscribe_on_the_real_server(
    live_server: LiveServer, api: Callable[..., Api], login: Callable[[str], str]
) -> None:
    alice = api(login("alice@example.com"))
    warehouse = api(login("warehouse@example.com"))
    code = place(alice, [{"sku": "MUG-001", "quantity": 1}], "e2e-milestones")
    tracking = pack_and_ship(warehouse, code)

    # the carrier: out for delivery, the same event again, a second report, delivered
    first = f"dhl-{uuid.uuid4().hex}"
    carrier(live_server, tracking, "OUT_FOR_DELIVERY", first)
    carrier(live_server, tracking, "OUT_FOR_DELIVERY", first)
    carrier(live_server, tracking, "OUT_FOR_DELIVERY", f"dhl-{uuid.uuid4().hex}")
    carrier(live_server, tracking, "DELIVERED", f"dhl-{uuid.uuid4().hex}")
    out = wait_for_subject(live_server, f"Your parcel for order {code} is out for delivery")
    wait_for_subject(live_server, f"Your parcel for order {code} has been delivered")
    fence(live_server, alice)
    mine = [s for s in subjects_to(live_server, "alice@example.com") if code in s]
    assert sorted(mine) == sorted(
        [
            f"Your order {code} is confirmed",
            f"Your order {code} has shipped",
            f"Your parcel for order {code} is out for delivery",
            f"Your parcel for order {code} has been delivered",
        ]
    )
    assert_same_facts(parse_email(out), [code, "is out for delivery in Leipzig", tracking])

    # the one-click link points at PUBLIC_API_URL; alice's mail client posts it, no login
    header = str(out["List-Unsubscribe"])
    assert out["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert header.startswith(f"<{PUBLIC_API_URL}/unsubscribe?token=") and header.endswith(">")
    link = urlsplit(header[1:-1])
    target = f"{live_server.base_url}{link.path}?{link.query}"
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert httpx.get(target).status_code == 200  # a scanner's GET changes nothing
    assert alice.data(PREFERENCES)["notificationPreferences"] == {"milestoneEmails": True}
    done = httpx.post(target, content=b"List-Unsubscribe=One-Click", headers=form)
    assert done.status_code == 200, done.text
    assert alice.data(PREFERENCES)["notificationPreferences"] == {"milestoneEmails": False}
    again = httpx.post(target, content=b"List-Unsubscribe=One-Click", headers=form)
    assert again.status_code == 409

    # her next parcel: confirmation and shipping email, no milestone email
    second = place(alice, [{"sku": "MUG-001", "quantity": 1}], "e2e-milestones-off")
    tracking = pack_and_ship(warehouse, second)
    carrier(live_server, tracking, "OUT_FOR_DELIVERY", f"dhl-{uuid.uuid4().hex}")
    carrier(live_server, tracking, "DELIVERED", f"dhl-{uuid.uuid4().hex}")
    fence(live_server, alice)
    later = [s for s in subjects_to(live_server, "alice@example.com") if second in s]
    assert sorted(later) == sorted(
        [f"Your order {second} is confirmed", f"Your order {second} has shipped"]
    )
