"""orderUpdates(code): owner-only live stream over graphql-transport-ws, authenticated in
connection_init, charged to the limiter, and closed by logout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.container import Services
from app.security import codes
from tests.conftest import Account, GraphQLClient, Run
from tests.support.subscriptions import Stream, connect, subscribe, wait_for_subscriber

CANCEL = "mutation C($code: String!) { cancelOrder(code: $code) { order { status } } }"


def test_owner_receives_a_status_change_live(
    http: TestClient,
    gql: GraphQLClient,
    owner: Account,
    place_order: Callable[..., Any],
    services: Services,
) -> None:
    view = place_order(owner)
    with connect(http, owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, codes.display(view.order.code))
        wait_for_subscriber(services, view.order.id)
        gql.data(CANCEL, {"code": view.order.code}, token=owner.token)
        message = stream.next()
        assert message["type"] == "next"
        update = message["payload"]["data"]["orderUpdates"]
        assert update["type"] == "STATUS_CHANGED"
        assert update["order"] == {"code": codes.display(view.order.code), "status": "CANCELLED"}


def _first_error(stream: Stream) -> list[dict[str, Any]]:
    message = stream.next()
    while message.get("type") == "complete":  # the end of an earlier, refused operation
        message = stream.next()
    assert message["type"] in ("error", "next"), message
    assert "data" not in message["payload"] or message["payload"]["data"] is None
    if message["type"] == "error":
        return list(message["payload"])
    return list(message["payload"]["errors"])


def test_another_customer_gets_exactly_the_unknown_code_answer(
    http: TestClient, owner: Account, other_customer: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    with connect(http, other_customer.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, view.order.code, "a")
        theirs = _first_error(stream)
        subscribe(stream, codes.generate(), "b")
        unknown = _first_error(stream)
    assert theirs[0]["extensions"]["code"] == "ORDER_NOT_FOUND"
    assert theirs == unknown


def test_without_credentials_the_subscription_is_unauthenticated(
    http: TestClient, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    with connect(http, None) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, view.order.code)
        assert _first_error(stream)[0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_bad_token_in_connection_init_is_rejected(http: TestClient, owner: Account) -> None:
    with connect(http, owner.token + "x") as stream:
        closed = stream.next()
    assert isinstance(closed, WebSocketDisconnect)
    assert closed.code == 4403


def test_logout_ends_the_stream(
    http: TestClient,
    gql: GraphQLClient,
    owner: Account,
    place_order: Callable[..., Any],
    services: Services,
) -> None:
    view = place_order(owner)
    with connect(http, owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, view.order.code)
        wait_for_subscriber(services, view.order.id)
        gql.data("mutation { logout { ok } }", token=owner.token)
        assert stream.next() == {"id": "1", "type": "complete"}


def test_starting_a_subscription_is_charged_as_a_lookup(
    http: TestClient,
    owner: Account,
    place_order: Callable[..., Any],
    services: Services,
    run: Run[Any],
) -> None:
    view = place_order(owner)
    key = f"user:{owner.viewer.public_id}"
    before = run(services.limiter.remaining(services.limiter.lookups_per_user, key))
    with connect(http, owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        for i in range(3):
            subscribe(stream, view.order.code, str(i))
        wait_for_subscriber(services, view.order.id, count=3)
    after = run(services.limiter.remaining(services.limiter.lookups_per_user, key))
    assert before - after == 3
