"""The one limiter: charged once per resolution, atomic, keyed by user and by client IP,
with a lockout after failed lookups, shared through Redis, failing closed without it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from app.container import build_services
from app.errors import RateLimited, ServiceUnavailable
from app.main import create_app
from app.redis_link import RedisLink
from app.security import codes
from app.security.ratelimit import Limiter
from app.security.roles import Role
from app.settings import RateLimits, Settings
from tests.conftest import FAST_PASSWORDS, Account, GraphQLClient, error_codes
from tests.support.processes import free_port

T = TypeVar("T")


class Harness:
    """An app of its own (its own limits), started at once and stopped by `close()`: its
    services live on the client's event loop, and its lifespan closes them."""

    def __init__(self, settings: Settings, peer: str = "10.0.0.1") -> None:
        self.services = build_services(settings, passwords=FAST_PASSWORDS)
        self.http = TestClient(
            create_app(settings, run_sender=False, services=self.services), client=(peer, 5000)
        )
        self.http.__enter__()
        self.gql = GraphQLClient(self.http)
        self.order_selects = 0

        @event.listens_for(self.services.db.engine.sync_engine, "before_cursor_execute")
        def count(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "FROM orders" in statement:
                self.order_selects += 1

        # The hot reads go straight through the driver (Database.fetch_one), past
        # SQLAlchemy's events: count those at the door as well.
        db = self.services.db
        fetch_one = db.fetch_one

        def counted(statement: Any, params: dict[str, Any]) -> Any:
            if "FROM orders" in str(statement):
                self.order_selects += 1
            return fetch_one(statement, params)

        db.fetch_one = counted  # type: ignore[method-assign]

    def run(self, awaitable: Awaitable[T]) -> T:
        """Await a call on this app's services, on its event loop."""
        portal = self.http.portal
        assert portal is not None

        async def wait() -> T:
            return await awaitable

        return portal.call(wait)

    def close(self) -> None:
        self.http.__exit__(None, None, None)


@pytest.fixture
def limited(settings: Settings) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(peer: str = "10.0.0.1", **limits: Any) -> Harness:
        harness = Harness(replace(settings, rate_limits=replace(RateLimits(), **limits)), peer=peer)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def aliases(n: int) -> str:
    fields = " ".join(f"a{i}: order(code: $code) {{ code }}" for i in range(n))
    return f"query Q($code: String!) {{ {fields} }}"


def test_ten_aliases_with_a_budget_of_three_run_exactly_three_lookups(
    limited: Callable[..., Harness], owner: Account, place_order: Callable[..., Any]
) -> None:
    h = limited(lookups_per_user="3/minute")
    view = place_order(owner)
    token = h.run(h.services.accounts.login(owner.email, "correct-horse-battery-9", "10.0.0.1"))
    body = h.gql(aliases(10), {"code": view.order.code}, token=token.access_token)
    found = [k for k, v in (body["data"] or {}).items() if v is not None]
    limited_errors = [e for e in body["errors"] if e["extensions"]["code"] == "RATE_LIMITED"]
    assert len(found) == 3
    assert len(limited_errors) == 7
    assert h.order_selects == 3  # the refused ones never reached the database
    assert all(e["extensions"]["retryAfter"] > 0 for e in limited_errors)
    print(f"\nroute=aliases budget=3 tried=10 lookups_run={h.order_selects}")


def test_fragments_and_separate_requests_are_each_charged(
    limited: Callable[..., Harness], owner: Account, place_order: Callable[..., Any]
) -> None:
    h = limited(lookups_per_user="4/minute")
    view = place_order(owner)
    token = h.run(h.services.accounts.login(owner.email, "correct-horse-battery-9", "10.0.0.1"))
    fragment = """
      fragment F on Query { x: order(code: $code) { code } y: order(code: $code) { code } }
      query Q($code: String!) { ...F ...F z: order(code: $code) { status } }
    """
    body = h.gql(fragment, {"code": view.order.code}, token=token.access_token)
    assert h.order_selects == 3  # x, y (merged fragment spreads) and z
    for _ in range(3):
        h.gql(aliases(1), {"code": view.order.code}, token=token.access_token)
    assert h.order_selects == 4  # budget 4 in all
    assert "errors" not in body or not body["errors"]


def test_failed_lookups_lock_the_user_out_even_for_real_codes(
    limited: Callable[..., Harness], owner: Account, place_order: Callable[..., Any]
) -> None:
    h = limited(failed_lookups_per_user="3/15 minutes")
    view = place_order(owner)
    token = h.run(h.services.accounts.login(owner.email, "correct-horse-battery-9", "10.0.0.1"))
    for _ in range(3):
        body = h.gql(aliases(1), {"code": codes.generate()}, token=token.access_token)
        assert error_codes(body) == ["ORDER_NOT_FOUND"]
    h.gql(aliases(1), {"code": "not-a-code"}, token=token.access_token)
    locked = h.gql(aliases(1), {"code": view.order.code}, token=token.access_token)
    assert error_codes(locked) == ["RATE_LIMITED"]
    assert locked["errors"][0]["extensions"]["retryAfter"] > 60


def test_the_ip_budget_spans_accounts(
    limited: Callable[..., Harness], make_account: Callable[..., Account]
) -> None:
    h = limited(lookups_per_ip="5/minute")
    tried = 0
    for _ in range(4):  # an attacker rotating through accounts from one address
        account = make_account()
        token = h.run(
            h.services.accounts.login(account.email, "correct-horse-battery-9", "10.0.0.1")
        )
        body = h.gql(aliases(3), {"code": codes.generate()}, token=token.access_token)
        tried += error_codes(body).count("ORDER_NOT_FOUND")
    assert tried == 5
    print(f"\nroute=account-rotation ip_budget=5 codes_tested={tried}")


def test_spoofed_forwarded_for_buys_no_new_budget(
    limited: Callable[..., Harness], owner: Account
) -> None:
    h = limited(lookups_per_ip="2/minute", lookups_per_user="100/minute")
    token = h.run(h.services.accounts.login(owner.email, "correct-horse-battery-9", "10.0.0.1"))
    outcomes = []
    for i in range(4):
        response = h.http.post(
            "/graphql",
            json={"query": aliases(1), "variables": {"code": codes.generate()}},
            headers={
                "authorization": f"Bearer {token.access_token}",
                "x-forwarded-for": f"203.0.113.{i}",
            },
        )
        outcomes += error_codes(response.json())
    assert outcomes == ["ORDER_NOT_FOUND", "ORDER_NOT_FOUND", "RATE_LIMITED", "RATE_LIMITED"]


def test_a_trusted_proxy_forwards_the_client_address(settings: Settings, owner: Account) -> None:
    trusted = replace(
        settings,
        trusted_proxies=("10.0.0.0/8",),
        rate_limits=replace(RateLimits(), lookups_per_ip="1/minute"),
    )
    h = Harness(trusted, peer="10.1.2.3")
    token = h.run(h.services.accounts.login(owner.email, "correct-horse-battery-9", "10.0.0.1"))
    outcomes = []
    for client in ("198.51.100.7", "198.51.100.8", "198.51.100.7"):
        response = h.http.post(
            "/graphql",
            json={"query": aliases(1), "variables": {"code": codes.generate()}},
            headers={
                "authorization": f"Bearer {token.access_token}",
                "x-forwarded-for": f"6.6.6.6, {client}",
            },
        )
        outcomes += error_codes(response.json())
    h.close()
    # two distinct clients behind the proxy get one budget each; the spoofed first hop is
    # ignored because only the right-most untrusted address counts
    assert outcomes == ["ORDER_NOT_FOUND", "ORDER_NOT_FOUND", "RATE_LIMITED"]


@pytest.mark.redis
async def test_two_instances_share_one_budget_through_redis(redis_url: str) -> None:
    limits = replace(RateLimits(), lookups_per_user="3/minute")
    links = RedisLink(redis_url), RedisLink(redis_url)
    a, b = Limiter(limits, links[0]), Limiter(limits, links[1])
    allowed = 0
    try:
        for i in range(8):
            try:
                await (a if i % 2 else b).charge_lookup("user:attacker", "192.0.2.1")
                allowed += 1
            except Exception as exc:
                assert type(exc).__name__ == "RateLimited"
    finally:
        for link in links:
            await link.aclose()
    assert allowed == 3


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL on a loopback port nothing listens on (connections are refused)."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def dead_redis_harness(settings: Settings, dead_redis_url: str) -> Iterator[Harness]:
    h = Harness(replace(settings, redis_url=dead_redis_url))
    yield h
    h.close()


def test_redis_unreachable_fails_closed(
    dead_redis_harness: Harness, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    h = dead_redis_harness
    # authentication needs no Redis: the owner's token is still accepted
    me = h.gql("{ me { email } }", token=owner.token)
    assert not me.get("errors"), me
    assert me["data"]["me"]["email"] == owner.email
    # but a lookup, which must be charged to a budget, is refused with the defined error
    body = h.gql(aliases(1), {"code": view.order.code}, token=owner.token)
    assert error_codes(body) == ["SERVICE_UNAVAILABLE"]
    assert body["errors"][0]["message"] == ServiceUnavailable.default_message
    assert not (body.get("data") or {}).get("a0")
    assert h.order_selects == 0  # the order was never read
    # what does not need Redis keeps working
    products = h.gql("{ products { edges { node { sku } } } }")
    assert not products.get("errors")


async def test_a_limiter_whose_redis_is_unreachable_refuses_every_charge(
    dead_redis_url: str,
) -> None:
    link = RedisLink(dead_redis_url)
    limiter = Limiter(RateLimits(), link)
    try:
        for _ in range(3):  # never "unlimited", however often it is asked
            with pytest.raises(ServiceUnavailable):
                await limiter.charge_lookup("user:someone", "192.0.2.7")
    finally:
        await link.aclose()


def test_a_request_refused_as_a_whole_is_http_429_with_retry_after(
    limited: Callable[..., Harness], owner: Account
) -> None:
    h = limited(lookups_per_user="1/minute")
    token = h.run(h.services.accounts.login(owner.email, "correct-horse-battery-9", "10.0.0.1"))
    first = h.http.post(
        "/graphql",
        json={"query": aliases(1), "variables": {"code": codes.generate()}},
        headers={"authorization": f"Bearer {token.access_token}"},
    )
    assert first.status_code == 200
    refused = h.http.post(
        "/graphql",
        json={"query": aliases(2), "variables": {"code": codes.generate()}},
        headers={"authorization": f"Bearer {token.access_token}"},
    )
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit"] == f"remaining=0, reset={refused.headers['retry-after']}"
    assert {e["extensions"]["code"] for e in refused.json()["errors"]} == {"RATE_LIMITED"}


# -- the rule of docs/security.md §3: address budgets refuse only what is not your own ------
VOLATILE = {"date", "x-request-id"}


def lookup(h: Harness, token: str, code: str) -> Any:
    return h.http.post(
        "/graphql",
        json={"query": aliases(1), "variables": {"code": code}},
        headers={"authorization": f"Bearer {token}"},
    )


def _answer(response: Any) -> tuple[int, str, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    return response.status_code, response.text, headers


def test_a_typo_is_a_lookup_not_a_failed_guess(
    limited: Callable[..., Harness], owner: Account, place_order: Callable[..., Any]
) -> None:
    h = limited(failed_lookups_per_user="3/15 minutes", lookups_per_user="100/minute")
    view = place_order(owner)
    token = h.run(h.services.accounts.login(owner.email, "correct-horse-battery-9", "10.0.0.1"))
    good = codes.display(view.order.code)
    typo = good[:-1] + ("0" if good[-1] != "0" else "1")  # the check symbol fails
    for _ in range(10):
        assert error_codes(lookup(h, token.access_token, typo).json()) == ["INVALID_ORDER_CODE"]
    assert not lookup(h, token.access_token, good).json().get("errors")
    for _ in range(3):  # well-formed unknown codes are failed guesses
        assert error_codes(lookup(h, token.access_token, codes.generate()).json()) == [
            "ORDER_NOT_FOUND"
        ]
    assert error_codes(lookup(h, token.access_token, good).json()) == ["RATE_LIMITED"]


def test_neighbours_failures_never_refuse_a_customers_own_order(
    limited: Callable[..., Harness],
    owner: Account,
    other_customer: Account,
    place_order: Callable[..., Any],
) -> None:
    # one address (10.0.0.1) for everyone: the owner and an attacker next to her
    h = limited(failed_lookups_per_ip="3/15 minutes", lookups_per_ip="4/minute")
    view = place_order(owner)
    mine = h.run(h.services.accounts.login(owner.email, "correct-horse-battery-9", "10.0.0.1"))
    attacker = h.run(
        h.services.accounts.login(other_customer.email, "correct-horse-battery-9", "10.0.0.1")
    )
    guesses = [
        error_codes(lookup(h, attacker.access_token, codes.generate()).json()) for _ in range(6)
    ]
    assert guesses == [["ORDER_NOT_FOUND"]] * 3 + [["RATE_LIMITED"]] * 3
    # the address is locked and over its lookup budget: her own order still answers
    for _ in range(5):
        body = lookup(h, mine.access_token, view.order.code).json()
        assert not body.get("errors"), body
        assert body["data"]["a0"]["code"] == codes.display(view.order.code)
    # what is not her own is refused like anybody's
    assert error_codes(lookup(h, mine.access_token, codes.generate()).json()) == ["RATE_LIMITED"]
    # and the attacker cannot tell her real code from an unknown one
    real = lookup(h, attacker.access_token, view.order.code)
    unknown = lookup(h, attacker.access_token, codes.generate())
    assert real.status_code == 429
    assert _answer(real) == _answer(unknown)


def test_concurrent_misses_never_exceed_the_address_ceiling(
    limited: Callable[..., Harness], make_account: Callable[..., Account]
) -> None:
    h = limited(failed_lookups_per_ip="3/15 minutes")
    tested = 0
    for _ in range(3):  # accounts of one address, 10 aliases at once each
        account = make_account()
        token = h.run(
            h.services.accounts.login(account.email, "correct-horse-battery-9", "10.0.0.1")
        )
        fields = " ".join(f"a{i}: order(code: $c{i}) {{ code }}" for i in range(10))
        variables = ", ".join(f"$c{i}: String!" for i in range(10))
        body = h.gql(
            f"query Q({variables}) {{ {fields} }}",
            {f"c{i}": codes.generate() for i in range(10)},
            token=token.access_token,
        )
        tested += error_codes(body).count("ORDER_NOT_FOUND")
    assert tested == 3


# -- staff and registrations ---------------------------------------------------------------
def test_a_picker_spends_the_staff_budget_not_the_customers(
    limited: Callable[..., Harness],
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
) -> None:
    h = limited(lookups_per_user="5/minute", staff_lookups_per_user="30/minute")
    view = place_order(owner)
    picker = make_account(Role.WAREHOUSE)
    token = h.run(h.services.accounts.login(picker.email, "correct-horse-battery-9", "10.0.0.1"))
    pick = "query P($code: String!) { pickList(code: $code) { code } }"
    answers = [h.gql(pick, {"code": view.order.code}, token=token.access_token) for _ in range(31)]
    assert all(not body.get("errors") for body in answers[:30])  # 30 > 5: its own budget
    assert error_codes(answers[30]) == ["RATE_LIMITED"]  # which is enforced
    # the customer budget is untouched: as a customer, the picker still has all 5 lookups
    mine = [error_codes(lookup(h, token.access_token, codes.generate()).json()) for _ in range(6)]
    assert mine == [["ORDER_NOT_FOUND"]] * 5 + [["RATE_LIMITED"]]


def test_registrations_have_a_budget_per_address(limited: Callable[..., Harness]) -> None:
    h = limited(registrations_per_ip="3/hour")
    document = (
        "mutation R($input: RegisterInput!) { register(input: $input) "
        "{ tokens { accessToken } userErrors { code } } }"
    )
    answers = []
    for i in range(4):
        variables = {
            "input": {"email": f"new{i}@example.com", "password": "Fresh-password-1", "name": "N"}
        }
        answers.append(h.gql(document, variables))
    assert all(body["data"]["register"]["tokens"] for body in answers[:3])
    assert error_codes(answers[3]) == ["RATE_LIMITED"]
    assert answers[3]["errors"][0]["extensions"]["retryAfter"] > 0
    # another address still registers
    h.run(h.services.accounts.register("new9@example.com", "Fresh-password-1", "N", "10.9.9.9"))


# -- login: counted before the password is checked -----------------------------------------
def test_parallel_logins_check_one_password_per_back_off_step(
    limited: Callable[..., Harness], owner: Account
) -> None:
    from app import metrics

    h = limited()
    checks = metrics.PASSWORD_CHECKS._value.get()

    async def burst() -> list[str]:
        results = await asyncio.gather(
            *(
                h.services.accounts.login(owner.email, "wrong-password-123", "10.0.0.1")
                for _ in range(20)
            ),
            return_exceptions=True,
        )
        return sorted(type(r).__name__ for r in results)

    outcomes = h.run(burst())
    assert outcomes == ["InvalidCredentials"] + ["RateLimited"] * 19
    assert metrics.PASSWORD_CHECKS._value.get() - checks == 1


@pytest.mark.redis
async def test_login_admission_is_atomic_across_instances_through_redis(redis_url: str) -> None:
    limits = replace(RateLimits(), login_ip_free_failures=3)
    links = RedisLink(redis_url), RedisLink(redis_url)
    a, b = Limiter(limits, links[0]), Limiter(limits, links[1])

    async def admitted(limiter: Limiter, email: str, ip: str) -> bool:
        try:
            await limiter.admit_login(email, ip)
        except RateLimited:
            return False
        return True

    try:
        same_email = await asyncio.gather(
            *(admitted(a if i % 2 else b, "victim@example.com", f"192.0.2.{i}") for i in range(20))
        )
        spray = await asyncio.gather(
            *(
                admitted(a if i % 2 else b, f"user{i}@example.com", "198.51.100.1")
                for i in range(20)
            )
        )
        # a success gives the address its attempt back, and clears the email's back-off
        await a.login_succeeded("victim@example.com", "192.0.2.0")
        after_success = await admitted(b, "victim@example.com", "192.0.2.99")
    finally:
        for link in links:
            await link.aclose()
    assert sum(same_email) == 1  # one per back-off step, however many at once
    assert sum(spray) == 4  # an address: its free failures, then its own back-off
    assert after_success
