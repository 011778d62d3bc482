"""A login hashes its password (argon2id with the production parameters, ~0.1 s of CPU) in
a worker thread: other requests to the same instance are answered meanwhile, instead of
waiting behind the hash on the event loop (found by scripts/loadtest)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
import pytest

from app.container import build_services
from app.main import create_app
from app.security.passwords import Passwords
from app.settings import Settings

LOGIN = """mutation ($email: String!, $password: String!) {
  login(email: $email, password: $password) { tokens { accessToken } userErrors { code } }
}"""
PRODUCTS = "{ products(first: 1) { edges { node { sku } } } }"
PASSWORD = "a-real-argon2-password-42"


class HeldVerification(Passwords):
    """Real argon2id verification (production parameters) that, once started, waits for the
    test to let it finish. On the worker thread the event loop answers other requests
    meanwhile; were it on the event loop, nothing could be answered, and the wait would end
    only by its timeout (`released_in_time` False) — no timing threshold either way."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()
        self.released_in_time: bool | None = None

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        self.started.set()
        self.released_in_time = self.release.wait(timeout=10)
        return super()._verify(stored_hash, password)


@pytest.fixture
async def real_hashing(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, HeldVerification]]:
    # Built on this test's event loop and closed on it (the ASGI transport runs no lifespan).
    passwords = HeldVerification()
    services = build_services(settings, passwords=passwords)
    try:
        await services.accounts.create_user("slow@example.com", PASSWORD, name="Slow")
        app = create_app(settings, run_sender=False, services=services)
        transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, passwords
    finally:
        await services.aclose()


async def test_other_requests_are_answered_while_a_login_hashes(
    real_hashing: tuple[httpx.AsyncClient, HeldVerification],
) -> None:
    client, passwords = real_hashing
    variables = {"email": "slow@example.com", "password": PASSWORD}
    login = asyncio.create_task(
        client.post("/graphql", json={"query": LOGIN, "variables": variables})
    )
    # when the login's password check has started (and is held there)
    assert await asyncio.to_thread(passwords.started.wait, 10)
    # then another request is answered while it runs
    response = await client.post("/graphql", json={"query": PRODUCTS})
    assert response.status_code == 200 and "errors" not in response.json()
    assert not login.done()
    # and the login completes once the check is let go, with a real argon2 verification
    passwords.release.set()
    body = (await login).json()
    assert body["data"]["login"]["tokens"]["accessToken"]
    assert passwords.released_in_time is True
