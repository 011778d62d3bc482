"""Parallel login guesses against the real server in production mode: however many arrive
at once, ONE password is checked per back-off step — over HTTP (200 requests at once), in one
document (many `login` aliases), over WebSocket (200 operations on 4 sockets), and on two
instances sharing Redis, the burst split between them. The correct password, sent last in
each burst, never logs in while the back-off runs.

Password checks are counted by the servers themselves: `orders_api_password_checks_total`
on /metrics (every argon2 verification of a login), summed over the instances.
LOGIN_BACKOFF_BASE_SECONDS=6 so that a burst (well under a second) fits in one step, even the
one in a CI run whose 200 requests at once took 4.2 s (the client's 200 connections at once).

Figures: printed and written to test-output/login_race.txt.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets
from websockets.typing import Subprotocol

from tests.security_stage.conftest import (
    START_TIMEOUT,
    Server,
    production_env,
    record,
    start_server,
    stop_server,
)
from tests.support.crowd import PASSWORD, seed_crowd
from tests.support.processes import free_port, wait_until_healthy

pytestmark = pytest.mark.e2e

IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("TEST_LOGIN_REDIS_URL", "redis://127.0.0.1:6379/11")
BASE_SECONDS = 6
WIDTH = 200
STEPS = 2  # bursts per transport, each one back-off step apart
WRONG = "Wrong-password-0000"
LOGIN = """mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { tokens { accessToken } userErrors { code } }
}"""
GRAPHQL_WS = Subprotocol("graphql-transport-ws")
SOCKETS = 4
FIGURES: list[str] = []
CHECKS = re.compile(r"^orders_api_password_checks_total (\S+)$", re.MULTILINE)


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    if FIGURES:
        record("login_race.txt", FIGURES)


def race_env(workdir: Path, **overrides: str) -> dict[str, str]:
    return production_env(
        workdir,
        METRICS_TOKEN=secrets.token_urlsafe(24),
        LOGIN_BACKOFF_BASE_SECONDS=str(BASE_SECONDS),
        # only the email's back-off is under test here (one source address for everything)
        LOGIN_IP_FREE_FAILURES="100000",
        **overrides,
    )


def seed_accounts(env: dict[str, str], n: int) -> list[str]:
    return [entry["email"] for entry in seed_crowd(env, 0, n)["others"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("stage-login")
    running = start_server(workdir, race_env(workdir))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def emails(server: Server) -> list[str]:
    return seed_accounts(server.env, 4)


def start_second_instance(first: Server) -> Server:
    """Another process on the same database and Redis, as behind a load balancer."""
    port = free_port()
    with (
        (first.workdir / "b.stdout").open("wb") as out,
        (first.workdir / "b.stderr").open("wb") as err,
    ):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--no-migrate",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=first.env,
            cwd=first.workdir,
            stdout=out,
            stderr=err,
        )
    second = Server(f"http://127.0.0.1:{port}", process, first.workdir, first.env)
    try:
        wait_until_healthy(second, START_TIMEOUT)
    except BaseException:  # pytest.fail raises an outcome, not an Exception
        print("--- second instance stderr ---\n" + (first.workdir / "b.stderr").read_text()[-3000:])
        stop_server(second)
        raise
    return second


@pytest.fixture(scope="module")
def redis_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"Redis is required under CI=true but unreachable: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    client.flushdb()
    client.close()
    workdir = tmp_path_factory.mktemp("stage-login-redis")
    first = start_server(workdir, race_env(workdir, REDIS_URL=REDIS_URL))
    try:
        second = start_second_instance(first)
        try:
            yield first, second
        finally:
            stop_server(second)
    finally:
        stop_server(first)


def password_checks(*servers: Server) -> float:
    total = 0.0
    for server in servers:
        response = httpx.get(
            f"{server.base_url}/metrics",
            headers={"authorization": f"Bearer {server.env['METRICS_TOKEN']}"},
            timeout=10.0,
        )
        assert response.status_code == 200, response.text[:200]
        found = CHECKS.search(response.text)
        assert found, "no orders_api_password_checks_total on /metrics"
        total += float(found.group(1))
    return total


def classify(payload: dict[str, object], key: str = "login") -> str:
    """TOKENS, UNAUTHENTICATED (the password was checked and wrong) or RATE_LIMITED."""
    for error in payload.get("errors") or []:  # type: ignore[attr-defined]
        if not error.get("path") or error["path"][0] == key:
            return str(error.get("extensions", {}).get("code"))
    result = (payload.get("data") or {}).get(key)  # type: ignore[attr-defined]
    if result is None:
        # a mutation's fields run one after the other: once one is refused (a non-null
        # field), `data` is null and the fields after it never ran
        return "NOT_RUN"
    if result["tokens"]:
        return "TOKENS"
    return "+".join(e["code"] for e in result["userErrors"]) or "EMPTY"


def variables(email: str, correct: bool) -> dict[str, str]:
    return {"email": email, "password": PASSWORD if correct else WRONG}


# -- the transports: each sends WIDTH attempts at once, the correct password last ----------
Burst = Callable[[list[Server], str], Coroutine[Any, Any, list[str]]]


async def http_burst(servers: list[Server], email: str) -> list[str]:
    async with httpx.AsyncClient(
        timeout=30.0, limits=httpx.Limits(max_connections=WIDTH, max_keepalive_connections=0)
    ) as http:

        async def one(i: int, correct: bool) -> str:
            server = servers[i % len(servers)]
            response = await http.post(
                server.graphql_url, json={"query": LOGIN, "variables": variables(email, correct)}
            )
            return classify(response.json())

        wrong = [asyncio.ensure_future(one(i, False)) for i in range(WIDTH - 1)]
        # last: once the server has answered one of the others (the rest still in flight)
        await asyncio.wait(wrong, return_when=asyncio.FIRST_COMPLETED)
        last = await one(WIDTH - 1, True)
        return [*await asyncio.gather(*wrong), last]


async def alias_burst(servers: list[Server], email: str) -> list[str]:
    """Eight documents of 25 `login` fields each (the alias cap is 30), sent at once."""
    per_document, documents = 25, WIDTH // 25

    def document(correct_first: bool) -> str:
        # the correct password opens the last document: the first field of a mutation
        # always runs (a later one would not, once an earlier field was refused)
        fields = []
        for i in range(per_document):
            password = PASSWORD if correct_first and i == 0 else WRONG
            fields.append(
                f'l{i}: login(email: "{email}", password: "{password}") '
                "{ tokens { accessToken } userErrors { code } }"
            )
        return "mutation { " + " ".join(fields) + " }"

    async with httpx.AsyncClient(timeout=60.0) as http:

        async def one(d: int, correct_first: bool) -> list[str]:
            server = servers[d % len(servers)]
            response = await http.post(server.graphql_url, json={"query": document(correct_first)})
            body = response.json()
            return [classify(body, f"l{i}") for i in range(per_document)]

        wrong = [asyncio.ensure_future(one(d, False)) for d in range(documents - 1)]
        await asyncio.wait(wrong, return_when=asyncio.FIRST_COMPLETED)
        last = await one(documents - 1, True)
        answers = [item for each in [*await asyncio.gather(*wrong), last[1:]] for item in each]
        return [*answers, last[0]]  # the correct password's answer last


async def websocket_burst(servers: list[Server], email: str) -> list[str]:
    """WIDTH `subscribe` messages carrying `login`, over SOCKETS sockets (the server runs up to
    100 operations at once per socket), not waiting for answers in between:
    graphql-transport-ws runs them concurrently."""
    answers: dict[str, str] = {}

    async def socket(server: Server, ids: list[int]) -> None:
        async with websockets.connect(server.ws_url, subprotocols=[GRAPHQL_WS]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            for i in ids:
                if i == WIDTH - 1:
                    await asyncio.sleep(0.1)
                payload = {"query": LOGIN, "variables": variables(email, i == WIDTH - 1)}
                await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
            while len([i for i in ids if str(i) in answers]) < len(ids):
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["type"] == "next":
                    answers[message["id"]] = classify(message["payload"])
                elif message["type"] == "error":
                    answers[message["id"]] = f"ws error {message['payload']}"

    await asyncio.gather(
        *(
            socket(servers[n % len(servers)], [i for i in range(WIDTH) if i % SOCKETS == n])
            for n in range(SOCKETS)
        )
    )
    return [answers[str(i)] for i in range(WIDTH)]


def run_steps(servers: list[Server], email: str, burst: Burst, label: str) -> list[int]:
    """STEPS bursts, each after the previous back-off ran out: the password checks of each."""
    checks_per_step = []
    for step in range(STEPS):
        before = password_checks(*servers)
        started = time.monotonic()
        answers = asyncio.run(burst(servers, email))
        took = time.monotonic() - started
        checks = int(password_checks(*servers) - before)
        checks_per_step.append(checks)
        tally = {kind: answers.count(kind) for kind in sorted(set(answers))}
        FIGURES.append(
            f"{label}, step {step + 1}: {len(answers)} attempts in {took:.2f} s -> "
            f"{checks} password check(s); answers {tally}; the correct one (last): {answers[-1]}"
        )
        assert len(answers) == WIDTH
        assert "TOKENS" not in answers, f"{label}: logged in during the back-off"
        assert checks == 1, f"{label}: {checks} passwords checked in one back-off step"
        assert took < BASE_SECONDS, "the burst outlasted the back-off step: figures mean nothing"
        if burst is alias_burst:
            # one document's first field was checked (its answer is lost with the document's
            # `data`), each document stopped at its first refused field
            assert answers[-1] == "RATE_LIMITED"
            assert set(answers) == {"RATE_LIMITED", "NOT_RUN"}, tally
        else:
            assert answers[-1] == "RATE_LIMITED"
            assert answers.count("UNAUTHENTICATED") == 1, tally
            assert answers.count("RATE_LIMITED") == WIDTH - 1, tally
        # the step after k checked failures lasts BASE * 2^(k-1): wait it out, and a little
        # (after the last one too: the caller then logs in with the correct password)
        time.sleep(BASE_SECONDS * 2**step + 0.3)
    return checks_per_step


TRANSPORTS: dict[str, Burst] = {
    "HTTP, 200 requests at once": http_burst,
    "one document per request, 8 x 25 login aliases": alias_burst,
    "WebSocket, 200 operations on 4 sockets": websocket_burst,
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_one_password_check_per_back_off_step(
    server: Server, emails: list[str], transport: str
) -> None:
    email = emails[list(TRANSPORTS).index(transport)]
    checks = run_steps([server], email, TRANSPORTS[transport], f"one instance, {transport}")
    assert checks == [1] * STEPS
    # and once the back-off has run out, the right password alone gets in
    body = server.gql(LOGIN, variables(email, True))
    assert classify(body) == "TOKENS", body


@pytest.mark.redis
@pytest.mark.parametrize(
    "transport", ["HTTP, 200 requests at once", "WebSocket, 200 operations on 4 sockets"]
)
def test_two_instances_sharing_redis_check_one_password_per_step(
    redis_pair: tuple[Server, Server], transport: str
) -> None:
    first, second = redis_pair
    email = seed_accounts(first.env, 1)[0]
    checks = run_steps(
        [first, second], email, TRANSPORTS[transport], f"two instances + Redis, {transport}"
    )
    assert checks == [1] * STEPS
    body = second.gql(LOGIN, variables(email, True))
    assert classify(body) == "TOKENS", body
