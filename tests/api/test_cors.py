"""Browser front ends: the CORS allow-list (CORS_ORIGINS) answers preflights for listed
origins only, never allows credentials (auth is bearer tokens, not cookies), and the same
list decides which pages may open a WebSocket."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from app.container import build_services
from app.main import create_app
from app.settings import RateLimits, Settings
from tests.conftest import FAST_PASSWORDS

SHOP = "https://shop.example"
EVIL = "https://evil.example"
QUERY = {"query": "{ __typename }"}


@pytest.fixture
def client_for(
    sqlite_template: Path, tmp_path: Path
) -> Iterator[Callable[[tuple[str, ...]], TestClient]]:
    """`client_for(origins)`: the app with CORS_ORIGINS set to `origins` (SQLite only:
    nothing here touches the database)."""
    clients: list[TestClient] = []

    def make(origins: tuple[str, ...]) -> TestClient:
        database = tmp_path / f"orders-{len(clients)}.db"
        shutil.copy(sqlite_template, database)
        settings = Settings(
            database_url=f"sqlite:///{database}",
            mail_dir=tmp_path / "mail",
            jwt_secret="test-secret-" + "x" * 40,
            rate_limits=RateLimits(),
            cors_origins=origins,
        )
        services = build_services(settings, passwords=FAST_PASSWORDS)
        client = TestClient(create_app(settings, run_sender=False, services=services))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def preflight(client: TestClient, origin: str) -> tuple[int, dict[str, str]]:
    response = client.options(
        "/graphql",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    return response.status_code, dict(response.headers)


def test_a_listed_origin_gets_its_preflight_answered_without_credentials(
    client_for: Callable[[tuple[str, ...]], TestClient],
) -> None:
    client = client_for((SHOP, "https://admin.shop.example"))
    status, headers = preflight(client, SHOP)
    assert status == 200
    assert headers["access-control-allow-origin"] == SHOP
    assert "POST" in headers["access-control-allow-methods"]
    allowed = headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "access-control-allow-credentials" not in headers


def test_an_unknown_origin_is_refused(
    client_for: Callable[[tuple[str, ...]], TestClient],
) -> None:
    client = client_for((SHOP,))
    status, headers = preflight(client, EVIL)
    assert status == 400
    assert "access-control-allow-origin" not in headers
    # a simple request still reaches the API (CORS is enforced by the browser), but the
    # answer carries no grant, so the page on the unknown origin cannot read it
    response = client.post("/graphql", json=QUERY, headers={"origin": EVIL})
    assert "access-control-allow-origin" not in response.headers


def test_a_listed_origin_can_read_answers_and_their_headers(
    client_for: Callable[[tuple[str, ...]], TestClient],
) -> None:
    client = client_for((SHOP,))
    response = client.post("/graphql", json=QUERY, headers={"origin": SHOP})
    assert response.json() == {"data": {"__typename": "Query"}}
    assert response.headers["access-control-allow-origin"] == SHOP
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "retry-after" in exposed and "x-request-id" in exposed
    assert "access-control-allow-credentials" not in response.headers
    # a refusal by the HTTP guard is readable too (the browser shows the real reason)
    refused = client.post(
        "/graphql", content=b"query=x", headers={"origin": SHOP, "content-type": "text/plain"}
    )
    assert refused.status_code == 415
    assert refused.headers["access-control-allow-origin"] == SHOP


def test_answers_to_requests_without_origin_vary_on_origin(
    client_for: Callable[[tuple[str, ...]], TestClient],
) -> None:
    # a cache must not hand an answer given without Origin to a page that sends one
    client = client_for((SHOP,))
    response = client.post("/graphql", json=QUERY)
    assert response.json() == {"data": {"__typename": "Query"}}
    assert response.headers.get_list("vary") == ["Origin"]
    assert "access-control-allow-origin" not in response.headers
    # an answer with a Vary of its own (the guard's 406 varies on Accept): one header, both
    refused = client.post("/graphql", json=QUERY, headers={"accept": "text/plain"})
    assert refused.status_code == 406
    assert refused.headers.get_list("vary") == ["Accept, Origin"]


def test_without_cors_origins_no_origin_is_allowed(
    client_for: Callable[[tuple[str, ...]], TestClient],
) -> None:
    client = client_for(())
    status, headers = preflight(client, SHOP)
    assert status == 400
    assert "access-control-allow-origin" not in headers


def ws_handshake(client: TestClient, origin: str | None) -> str:
    """ "ack" when the server accepted and acknowledged the connection, else "refused"."""
    headers = {"origin": origin} if origin else {}
    try:
        with client.websocket_connect(
            "/graphql", subprotocols=["graphql-transport-ws"], headers=headers
        ) as ws:
            ws.send_json({"type": "connection_init", "payload": {}})
            message = ws.receive_json()
            return "ack" if message["type"] == "connection_ack" else "refused"
    except WebSocketDenialResponse as denial:
        assert denial.status_code == 403
        return "refused"
    except WebSocketDisconnect:
        return "refused"


def test_websockets_follow_the_same_allow_list(
    client_for: Callable[[tuple[str, ...]], TestClient],
) -> None:
    client = client_for((SHOP,))
    assert ws_handshake(client, SHOP) == "ack"
    assert ws_handshake(client, EVIL) == "refused"
    assert ws_handshake(client, "null") == "refused"
    # a mobile app or a server sends no Origin: it authenticates with its token instead
    assert ws_handshake(client, None) == "ack"
    # GraphiQL served by the API itself is same-origin
    assert ws_handshake(client, "http://testserver") == "ack"


def test_cors_origins_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", f"{SHOP}, https://admin.shop.example ,")
    assert Settings.from_env().cors_origins == (SHOP, "https://admin.shop.example")
