"""POST /webhooks/carrier: HMAC-signed, timestamped (5 minutes), idempotent per carrier
event id, and silent about which tracking numbers exist. Signed here with the sample
client's own `sign()` (scripts/carrier_client.py), so the client and server agree."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from app.container import Services
from app.orders.service import OrderView
from app.security.roles import Role
from app.settings import DEV_CARRIER_SECRET, Settings, SettingsError
from scripts.carrier_client import event_body, sign
from tests.conftest import Account, Run, db_session, sql_count
from tests.support.carriers import order_status, pack, ship

URL = "/webhooks/carrier"
SECRET = DEV_CARRIER_SECRET  # the test settings keep the default (development) secret


@dataclass
class Shipped:
    view: OrderView
    tracking: str


@pytest.fixture
def shipped(
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> Shipped:
    warehouse = make_account(Role.WAREHOUSE)
    view = place_order(owner, [("MUG-001", 1)])
    pack(run, services, warehouse, view.order)
    ship(run, services, warehouse, view.order, tracking="JD014600006281", carrier="DHL")
    return Shipped(view, "JD014600006281")


def body_for(tracking: str, status: str = "IN_TRANSIT", **extra: Any) -> bytes:
    fields: dict[str, Any] = {
        "carrier": "DHL",
        "tracking_number": tracking,
        "status": status,
        "event_id": "evt-1",
        "location": "Leipzig hub",
        "description": "Arrived at the sorting centre",
    }
    fields.update(extra)
    return event_body(**fields)


def post(
    http: TestClient,
    body: bytes,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
) -> httpx2.Response:  # what Starlette's TestClient answers with
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "content-type": "application/json",
        "x-carrier-timestamp": stamp,
        "x-carrier-signature": signature or sign(secret, stamp, body),
    }
    return http.post(URL, content=body, headers=headers)


def events(services: Services) -> int:
    return sql_count(services, "SELECT count(*) FROM tracking_events")


def test_a_signed_event_is_recorded_and_moves_the_shipment(
    http: TestClient, services: Services, shipped: Shipped
) -> None:
    # when the carrier posts a signed IN_TRANSIT event
    response = post(http, body_for(shipped.tracking))
    # then it is accepted and recorded on the shipment
    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}
    assert events(services) == 1
    status = sql_count(services, "SELECT count(*) FROM shipments WHERE status = 'IN_TRANSIT'")
    assert status == 1


def test_a_signed_delivery_delivers_the_order(
    http: TestClient, services: Services, shipped: Shipped
) -> None:
    # when the carrier posts a signed DELIVERED event (tracking number as printed, spaced)
    spaced = " ".join(shipped.tracking[i : i + 4] for i in range(0, len(shipped.tracking), 4))
    response = post(http, body_for(spaced.lower(), "DELIVERED"))
    # then the order is DELIVERED
    assert response.status_code == 202
    assert order_status(services, shipped.view.order) == "DELIVERED"


@pytest.mark.parametrize(
    "tamper",
    ["wrong secret", "body changed", "timestamp changed", "no signature", "not hex"],
)
def test_a_bad_signature_is_refused_and_nothing_is_recorded(
    http: TestClient, services: Services, shipped: Shipped, tamper: str
) -> None:
    # given a correctly formed event
    body = body_for(shipped.tracking, "DELIVERED")
    now = int(time.time())
    good = sign(SECRET, now, body)
    # when the signature does not match what is sent
    headers = {
        "content-type": "application/json",
        "x-carrier-timestamp": str(now),
        "x-carrier-signature": good,
    }
    if tamper == "wrong secret":
        headers["x-carrier-signature"] = sign("another-secret-of-enough-length-0000", now, body)
    elif tamper == "body changed":
        body = body.replace(b"Leipzig", b"Leipzag")
    elif tamper == "timestamp changed":
        headers["x-carrier-timestamp"] = str(now - 1)
    elif tamper == "no signature":
        del headers["x-carrier-signature"]
    else:
        headers["x-carrier-signature"] = "sha256=" + "zz" * 32
    response = http.post(URL, content=body, headers=headers)
    # then it is refused with 401, and the order is untouched
    assert response.status_code == 401
    assert response.json()["error"] == "INVALID_SIGNATURE"
    assert events(services) == 0
    assert order_status(services, shipped.view.order) == "SHIPPED"


@pytest.mark.parametrize("skew", [-310, -3600, 310])  # 10 s margin: a slow CI run
def test_a_timestamp_more_than_five_minutes_away_is_refused(
    http: TestClient, services: Services, shipped: Shipped, skew: int
) -> None:
    # given a request correctly signed, but at a time more than 5 minutes away (a replay)
    body = body_for(shipped.tracking, "DELIVERED")
    # when it is posted
    response = post(http, body, timestamp=int(time.time()) + skew)
    # then it is refused as stale, and nothing happens
    assert response.status_code == 401
    assert response.json()["error"] == "STALE_TIMESTAMP"
    assert events(services) == 0
    assert order_status(services, shipped.view.order) == "SHIPPED"


def test_a_timestamp_within_five_minutes_is_accepted(
    http: TestClient, services: Services, shipped: Shipped
) -> None:
    # when a request signed 4 minutes ago arrives
    response = post(http, body_for(shipped.tracking), timestamp=int(time.time()) - 240)
    # then it is accepted
    assert response.status_code == 202
    assert events(services) == 1


def test_a_replayed_event_id_is_recorded_once(
    http: TestClient, services: Services, shipped: Shipped
) -> None:
    # given an event the carrier delivered once
    first = post(http, body_for(shipped.tracking, event_id="evt-42"))
    # when the carrier delivers it again (freshly signed), and once more with other content
    again = post(http, body_for(shipped.tracking, event_id="evt-42"))
    changed = post(http, body_for(shipped.tracking, "DELIVERED", event_id="evt-42"))
    # then every answer is the same, and one event exists: the first
    assert [r.status_code for r in (first, again, changed)] == [202, 202, 202]
    assert first.json() == again.json() == changed.json()
    assert events(services) == 1
    assert order_status(services, shipped.view.order) == "SHIPPED"


def test_the_same_event_id_from_another_carrier_is_another_event(
    http: TestClient,
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given two shipments with different carriers
    warehouse = make_account(Role.WAREHOUSE)
    view = place_order(owner, [("MUG-001", 2)])
    pack(run, services, warehouse, view.order)
    ship(run, services, warehouse, view.order, tracking="DHL-0001", lines=[("MUG-001", 1)])
    ship(run, services, warehouse, view.order, "UPS-0001", lines=[("MUG-001", 1)], carrier="UPS")
    # when both carriers send an event with the same id
    post(http, body_for("DHL-0001", event_id="1"))
    post(http, body_for("UPS-0001", carrier="UPS", event_id="1"))
    # then both are recorded
    assert events(services) == 2


def test_unknown_tracking_numbers_get_the_same_answer_as_known_ones(
    http: TestClient, services: Services, shipped: Shipped
) -> None:
    # when the carrier posts an event for a tracking number we never shipped, and one we did
    unknown = post(http, body_for("NEVER-SHIPPED-1", event_id="evt-u"))
    known = post(http, body_for(shipped.tracking, event_id="evt-k"))
    # then both answers are identical: status, body and content type
    assert unknown.status_code == known.status_code == 202
    assert unknown.content == known.content
    assert unknown.headers["content-type"] == known.headers["content-type"]
    # and only the known one was recorded
    assert events(services) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b"[1, 2]", None),
        (json.dumps({"carrier": "DHL"}).encode(), "occurredAt"),
        (body_for("JD014600006281", "TELEPORTED"), "status"),
        (body_for("JD014600006281", occurred_at="yesterday"), "occurredAt"),
        (body_for("JD014600006281", occurred_at="2026-01-01T10:00:00"), "occurredAt"),
        (body_for("JD014600006281", occurred_at="2999-01-01T00:00:00Z"), "occurredAt"),
        (body_for("JD014600006281", estimated_delivery="soon"), "estimatedDelivery"),
        (body_for("JD014600006281", event_id="bad id with spaces"), "eventId"),
        (body_for("JD014600006281", location={"city": 10115}), "location.city"),
        (body_for("JD014600006281", location={"country": ["DE"]}), "location.country"),
        (body_for("JD014600006281", location=["Berlin"]), "location"),
    ],
)
def test_a_signed_but_malformed_event_is_refused_with_400(
    http: TestClient, services: Services, shipped: Shipped, body: bytes, field: str | None
) -> None:
    # when a correctly signed but malformed event is posted
    response = post(http, body)
    # then it is a 400 that names the field, and nothing is recorded
    assert response.status_code == 400
    assert response.json()["error"] == "BAD_USER_INPUT"
    assert response.json().get("field") == field
    assert events(services) == 0


def test_a_structured_location_gives_the_town_and_the_owner_keeps_the_text(
    http: TestClient, services: Services, shipped: Shipped
) -> None:
    place = {"city": "Berlin", "postalCode": "10115", "country": "DE", "street": "1 Demo St"}
    assert post(http, body_for(shipped.tracking, location=place)).status_code == 202
    older = body_for(shipped.tracking, event_id="evt-2", location="1 Demo Street, Berlin")
    assert post(http, older).status_code == 202
    with db_session(services) as session:
        rows = session.execute(text("SELECT location, town FROM tracking_events ORDER BY id")).all()
    # the street of the object is never stored; a string with a street gives no town
    assert [tuple(row) for row in rows] == [
        ("10115 Berlin, DE", "Berlin"),
        ("1 Demo Street, Berlin", ""),
    ]


def test_an_event_moves_the_estimated_delivery(
    http: TestClient, services: Services, shipped: Shipped
) -> None:
    # when the carrier reports a delay with a new estimate
    later = (datetime.now(UTC) + timedelta(days=9)).date().isoformat()
    post(http, body_for(shipped.tracking, "DELAYED", estimated_delivery=later))
    # then shipment and order carry it
    assert (
        sql_count(services, f"SELECT count(*) FROM shipments WHERE estimated_delivery = '{later}'")
        == 1
    )
    assert (
        sql_count(services, f"SELECT count(*) FROM orders WHERE estimated_delivery = '{later}'")
        == 1
    )


def test_only_post_is_routed(http: TestClient) -> None:
    # when the webhook is fetched with GET
    response = http.get(URL)
    # then it is not allowed
    assert response.status_code == 405


def test_production_refuses_the_default_or_a_short_carrier_secret() -> None:
    # given production settings with a real JWT secret
    base = Settings(app_env="production", jwt_secret="j" * 48)
    # then the development carrier secret and a short one are refused
    with pytest.raises(SettingsError, match="CARRIER_WEBHOOK_SECRET"):
        base.validate()
    with pytest.raises(SettingsError, match="CARRIER_WEBHOOK_SECRET"):
        replace(base, carrier_webhook_secret="short").validate()
    # and a real one is fine, and never shown in the settings description
    real = replace(base, carrier_webhook_secret="c" * 48)
    real.validate()
    assert "carrier_webhook_secret" not in real.describe()


def test_the_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # given CARRIER_WEBHOOK_SECRET in the environment
    monkeypatch.setenv("CARRIER_WEBHOOK_SECRET", "from-the-environment-" + "x" * 20)
    # then the settings carry it
    assert Settings.from_env().carrier_webhook_secret.startswith("from-the-environment-")
