"""A login hashes its password (argon2id with the production parameters, ~0.1 s of CPU) in
a worker thread: other requests to the same instance are answered meanwhile, instead of
waiting behind the hash on the event loop (found by scripts/loadtest)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from app.container import Services, build_services
from app.main import create_app
from app.security.passwords import Passwords
from app.settings import Settings

LOGIN = """mutation ($email: String!, $password: String!) {
  login(email: $email, password: $password) { tokens { accessToken } userErrors { code } }
}"""
PRODUCTS = "{ products(first: 1) { edges { node { sku } } } }"
PASSWORD = "a-real-argon2-password-42"


@pytest.fixture
async def real_hashing(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    # Built on this test's event loop and closed on it (the ASGI transport runs no lifespan).
    services = build_services(settings, passwords=Passwords())  # production parameters
    try:
        await services.accounts.create_user("slow@example.com", PASSWORD, name="Slow")
        app = create_app(settings, run_sender=False, services=services)
        transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, services
    finally:
        await services.aclose()


async def test_other_requests_are_answered_while_a_login_hashes(
    real_hashing: tuple[httpx.AsyncClient, Services],
) -> None:
    client, _ = real_hashing
    variables = {"email": "slow@example.com", "password": PASSWORD}
    login = asyncio.create_task(
        client.post("/graphql", json={"query": LOGIN, "variables": variables})
    )
    answered_meanwhile = 0
    while not login.done():
        # in-process requests never wait on a socket: yield so the login task runs too
        await asyncio.sleep(0.005)
        response = await client.post("/graphql", json={"query": PRODUCTS})
        assert response.status_code == 200 and "errors" not in response.json()
        if not login.done():
            answered_meanwhile += 1
    body = (await login).json()
    assert body["data"]["login"]["tokens"]["accessToken"]
    # with the hash on the event loop, nothing else is answered until the login is done
    assert answered_meanwhile >= 3, answered_meanwhile
