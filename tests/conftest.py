"""Shared fixtures: a fresh database per test (SQLite always; PostgreSQL when reachable and
always under CI=true), services built as in production, clients per role.

The services are async and bound to the event loop of the app under test (asyncpg and
aiosqlite connections belong to one loop): `run(awaitable)` awaits a service call on that
loop, from a synchronous test. Tests read and arrange rows through `db_session(services)`,
a synchronous session of their own on the same database (what a test sees is what was
committed)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlmodel import Session
from starlette.testclient import TestClient

from app.catalog.models import Product
from app.container import Services, build_services
from app.engines import make_engine
from app.main import create_app
from app.migrate import upgrade
from app.orders.inputs import AddressInput, LineInput
from app.orders.service import OrderView
from app.security.passwords import Passwords
from app.security.policy import Viewer
from app.security.roles import Role
from app.settings import RateLimits, Settings

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct-horse-battery-9"
# Cheap argon2id parameters for tests; the production parameters are tested on their own.
FAST_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def service_unreachable(name: str, reason: str) -> None:
    """Skip locally; under CI a missing service is a failure, never a silent skip."""
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true but unreachable: {reason}")
    pytest.skip(f"{name} not reachable: {reason}")


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return str(exc)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "orders.db"
    upgrade(f"sqlite:///{path}")
    return path


@contextmanager
def scratch_postgres_url(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of the caller's own (empty: not migrated), dropped afterwards."""
    problem = _pg_reachable()
    if problem:
        service_unreachable("PostgreSQL", problem)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of our own for this test session, migrated once, dropped at the end."""
    problem = _pg_reachable()
    if problem:
        service_unreachable("PostgreSQL", problem)
    name = f"orders_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "orders.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_database")
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        mail_dir=tmp_path / "mail",
        jwt_secret="test-secret-" + "x" * 40,
        rate_limits=RateLimits(),
    )


@pytest.fixture
def services(settings: Settings) -> Services:
    """Built as in production; closed by the app's lifespan when `http` ends."""
    return build_services(settings, passwords=FAST_PASSWORDS)


T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]


@pytest.fixture
def run(http: TestClient) -> Run[Any]:
    """Await a service call on the app's event loop, from a synchronous test."""
    portal = http.portal
    assert portal is not None

    def run(awaitable: Awaitable[T]) -> T:
        async def wait() -> T:
            return await awaitable

        return portal.call(wait)

    return run


@contextmanager
def db_session(services: Services) -> Iterator[Session]:
    """A synchronous session of the test's own on the services' database (the caller
    commits): for arranging rows and for reading what the app committed."""
    engine = make_engine(services.db.url, null_pool=True)
    try:
        with Session(engine, expire_on_commit=False) as session:
            yield session
    finally:
        engine.dispose()


@pytest.fixture
def catalog(services: Services) -> dict[str, Product]:
    rows = [
        Product(
            sku="MUG-001",
            name="Enamel camping mug",
            price_minor=1299,
            stock=50,
            bin_location="A-01-03",
        ),
        Product(
            sku="TEE-BLK-M",
            name="Organic T-shirt black M",
            price_minor=2499,
            stock=20,
            bin_location="B-04-01",
        ),
        Product(
            sku="LAMP-DESK", name="LED desk lamp", price_minor=4999, stock=3, bin_location="D-10-04"
        ),
        Product(
            sku="RETIRED-1",
            name="Retired product",
            price_minor=999,
            stock=10,
            bin_location="Z-00-00",
            active=False,
        ),
    ]
    with db_session(services) as session:
        for row in rows:
            session.add(row)
        session.commit()
    return {row.sku: row for row in rows}


@dataclass
class Account:
    email: str
    role: Role
    token: str
    refresh_token: str
    viewer: Viewer


@pytest.fixture
def make_account(services: Services, run: Run[Any]) -> Callable[..., Account]:
    counter = iter(range(1, 10_000))

    def make(role: Role = Role.CUSTOMER, email: str | None = None) -> Account:
        email = email or f"{role.value.lower()}{next(counter)}-{uuid.uuid4().hex[:6]}@example.com"
        run(services.accounts.create_user(email, PASSWORD, name="Test Person", role=role))
        result = run(services.accounts.login(email, PASSWORD, "10.0.0.1"))
        viewer = run(services.accounts.authenticate(result.access_token))
        return Account(email, role, result.access_token, result.refresh_token, viewer)

    return make


@pytest.fixture
def owner(make_account: Callable[..., Account]) -> Account:
    return make_account(Role.CUSTOMER)


@pytest.fixture
def warehouse(make_account: Callable[..., Account]) -> Account:
    return make_account(Role.WAREHOUSE)


@pytest.fixture
def other_customer(make_account: Callable[..., Account]) -> Account:
    return make_account(Role.CUSTOMER)


ADDRESS = AddressInput(
    name="Alice Example", line1="1 Demo Street", city="Berlin", postal_code="10115", country="DE"
)


@pytest.fixture
def place_order(
    services: Services, catalog: dict[str, Product], run: Run[Any]
) -> Callable[..., OrderView]:
    def place(
        account: Account,
        lines: list[tuple[str, int]] | None = None,
        key: str | None = None,
        token: str = "tok_visa",
    ) -> OrderView:
        placed: OrderView = run(
            services.orders.place_order(
                account.viewer,
                [LineInput(sku, qty) for sku, qty in (lines or [("MUG-001", 2)])],
                ADDRESS,
                token,
                key or f"key-{uuid.uuid4().hex}",
            )
        )
        return placed

    return place


class GraphQLClient:
    """Posts operations through the real ASGI app (routing, middleware, context)."""

    def __init__(self, http: TestClient) -> None:
        self.http = http

    def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        sent = {"content-type": "application/json", **(headers or {})}
        if token:
            sent["authorization"] = f"Bearer {token}"
        response = self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=sent
        )
        body: dict[str, Any] = response.json()
        body["_status"] = response.status_code
        return body

    def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        body = self(query, variables, token=token)
        assert not body.get("errors"), body.get("errors")
        result: dict[str, Any] = body["data"]
        return result


@pytest.fixture
def http(settings: Settings, services: Services) -> Iterator[TestClient]:
    app = create_app(settings, run_sender=False, services=services)
    with TestClient(app, client=("10.0.0.1", 50000)) as client:
        yield client


@pytest.fixture
def gql(http: TestClient) -> GraphQLClient:
    return GraphQLClient(http)


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def with_limits(settings: Settings, **limits: Any) -> Settings:
    return replace(settings, rate_limits=replace(settings.rate_limits, **limits))


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        service_unreachable("Redis", str(exc))
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    return REDIS_TEST_URL


def sql_count(services: Services, statement: str) -> int:
    with db_session(services) as session:
        return int(session.execute(text(statement)).scalar_one())
