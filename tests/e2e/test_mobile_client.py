"""examples/mobile_client.py against the real server: log in, refresh before expiry and
after an UNAUTHENTICATED answer, follow an order live, and the CLI as documented."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.mobile_client import OrdersClient
from tests.e2e.conftest import DEMO_PASSWORD, THROUGH_REDIS, LiveServer
from tests.e2e.test_live_updates import post_event

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_login_and_refresh_on_expiry(live_server: LiveServer) -> None:
    client = OrdersClient(live_server.graphql_url)
    client.login("alice@example.com", DEMO_PASSWORD)
    orders = client.my_orders()
    assert len(orders) == 4
    assert client.tokens is not None
    first = client.tokens

    # the access token is about to expire: the client refreshes before using it
    first.expires_at = 0.0
    assert len(client.my_orders()) == 4
    second = client.tokens
    assert second.access != first.access and second.refresh != first.refresh

    # the server refuses the access token: the client refreshes once and retries
    second.access = "not-a-valid-token"
    assert len(client.my_orders()) == 4
    assert client.tokens.refresh != second.refresh


@THROUGH_REDIS
async def test_following_an_order_live(live_server: LiveServer) -> None:
    client = OrdersClient(live_server.graphql_url)
    client.login("alice@example.com", DEMO_PASSWORD)
    shipped = next(o for o in client.my_orders() if o["status"] == "SHIPPED")

    update = await next_update_after_an_event(client, shipped["code"], live_server)
    assert update["type"] == "TRACKING_EVENT"
    assert update["order"]["code"] == shipped["code"]
    shipment = update["order"]["shipments"][0]
    assert shipment["trackingNumber"] == "DEMO-ALICE-2"
    assert shipment["status"] == "OUT_FOR_DELIVERY"


def test_the_command_line_lists_the_orders(live_server: LiveServer) -> None:
    result = subprocess.run(
        [sys.executable, "examples/mobile_client.py", "--url", live_server.graphql_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    assert {line.split()[1] for line in lines} == {"DELIVERED", "SHIPPED", "PROCESSING", "PLACED"}


def test_the_readme_example_runs(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    section = (ROOT / "README.md").read_text().split("## From a mobile app", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README: no ```python block under 'From a mobile app'"
    code = match.group(1).replace("http://127.0.0.1:8000/graphql", live_server.graphql_url)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 4


@pytest.mark.server_env(PERSISTED_QUERIES="allowlist")
@THROUGH_REDIS
async def test_the_client_works_against_an_allowlist_only_server(live_server: LiveServer) -> None:
    """Its documents are in the allow-list generated from examples/; anything else is not."""
    client = OrdersClient(live_server.graphql_url)
    client.login("alice@example.com", DEMO_PASSWORD)
    assert client.tokens is not None
    client.tokens.expires_at = 0.0  # refresh too
    shipped = next(o for o in client.my_orders() if o["status"] == "SHIPPED")

    update = await next_update_after_an_event(client, shipped["code"], live_server)
    assert update["type"] == "TRACKING_EVENT"

    ad_hoc = httpx.post(
        live_server.graphql_url,
        json={"query": "{ myOrders { edges { node { code } } } }"},
        headers={"authorization": f"Bearer {client.tokens.access}"},
        timeout=10,
    )
    assert [e["extensions"]["code"] for e in ad_hoc.json()["errors"]] == ["FORBIDDEN"]


async def next_update_after_an_event(
    client: OrdersClient, code: str, live_server: LiveServer
) -> dict[str, Any]:
    """Follow `code`, post a carrier event for the demo's shipped parcel, return the first
    update the client receives."""

    async def first_update() -> dict[str, Any]:
        stream = client.follow(code)
        assert isinstance(stream, AsyncGenerator)  # an async generator: it can be closed
        async with contextlib.aclosing(stream) as updates:
            async for update in updates:
                first: dict[str, Any] = update
                return first
        raise AssertionError("the stream ended without an update")

    following = await live_server.following(code)
    listening = asyncio.create_task(first_update())
    await live_server.wait_until_following(code, following + 1)
    await asyncio.to_thread(post_event, live_server, "DEMO-ALICE-2", "OUT_FOR_DELIVERY")
    return await asyncio.wait_for(listening, timeout=10)
