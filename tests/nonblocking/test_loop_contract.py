"""The contract: nothing blocks the event loop.

One instance is one event loop. Every database, Redis and payment call is awaited on an
async driver; the only thread boundaries are owned by one module each (argon2 hashing in
app/security/passwords.py, .eml files in app/notifications/transports.py). Three checks
hold it:

- the source: no synchronous client, sleep or engine anywhere the server runs, and no
  thread hop outside the two owners;
- the schema: every resolver that reaches a service, the caller or a loader is async;
- the running server: with PostgreSQL and Redis 100 ms away (a delaying proxy in front of
  each), a whole journey — log in, history, order page, buy, cancel, a carrier event, a
  support lookup — runs while /healthz is polled, and no poll waits anywhere near a round
  trip: a single synchronous call on the loop would hold every poll for 200 ms or more.
"""

from __future__ import annotations

import ast
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField

from app.schema import schema
from tests.conftest import REDIS_TEST_URL, service_unreachable
from tests.e2e.conftest import LiveServer
from tests.nonblocking.conftest import Client, Database, log_in, order_code, scratch_postgres
from tests.nonblocking.test_slow_payment import _carrier_event
from tests.scale.proxy import TcpProxy

APP = Path(__file__).resolve().parents[2] / "app"
# Where the server never runs (start-up, the command line, migrations, the bulk seeding of
# scripts/bench and scripts/loadtest).
OFF_THE_LOOP = {"cli.py", "migrate.py", "migrations", "seeding"}
# The owned thread boundaries: CPU-heavy hashing, writing .eml files, and reading the
# tracking gazetteer once per process (`serve` loads it before the loop runs).
THREAD_OWNERS = {"security/passwords.py", "notifications/transports.py", "tracking/places.py"}
# Synchronous engines: the engines module (for tools) and the test provider's start-up.
SYNC_ENGINE_OWNERS = {"engines.py", "payments/provider.py"}

BLOCKING_CALLS = {
    "time.sleep",
    "psycopg.connect",
    "sqlite3.connect",
    "redis.Redis",
    "redis.StrictRedis",
    "redis.Redis.from_url",
    "requests.get",
    "requests.post",
    "urllib.request.urlopen",
    "socket.create_connection",
    "smtplib.SMTP",
}
THREAD_HOPS = {"asyncio.to_thread", "anyio.to_thread.run_sync", "run_in_threadpool"}
SYNC_ENGINES = {"create_engine", "make_engine", "sqlmodel.create_engine"}


def _server_modules() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted(APP.rglob("*.py")):
        relative = path.relative_to(APP).as_posix()
        if relative.split("/")[0] in OFF_THE_LOOP or relative in OFF_THE_LOOP:
            continue
        yield relative, ast.parse(path.read_text(), filename=str(path))


def _called_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node.lineno, ast.unparse(node.func)
        if isinstance(node, ast.Attribute) and ast.unparse(node) in THREAD_HOPS:
            yield node.lineno, ast.unparse(node)


def test_no_synchronous_io_and_no_stray_thread_hop_where_the_server_runs() -> None:
    problems = []
    for module, tree in _server_modules():
        for line, name in _called_names(tree):
            if name in BLOCKING_CALLS:
                problems.append(f"app/{module}:{line} calls {name} (blocks the event loop)")
            hops = name in THREAD_HOPS or name.endswith(".run_in_executor")
            if hops and module not in THREAD_OWNERS:
                problems.append(f"app/{module}:{line} hops to a thread with {name}")
            if name.rsplit(".", 1)[-1] in SYNC_ENGINES and module not in SYNC_ENGINE_OWNERS:
                problems.append(f"app/{module}:{line} makes a synchronous engine ({name})")
    assert problems == []


def test_the_contract_checker_sees_what_it_forbids(tmp_path: Path) -> None:
    tree = ast.parse(
        "import time, anyio\n"
        "def f(s):\n"
        "    time.sleep(1)\n"
        "    anyio.to_thread.run_sync(s.read)\n"
        "    make_engine('sqlite://')\n"
        "    loop.run_in_executor(None, s.read)\n"
    )
    found = {name for _, name in _called_names(tree)}
    assert {"time.sleep", "anyio.to_thread.run_sync", "make_engine"} <= found
    assert "loop.run_in_executor" in found


def _resolvers() -> Iterator[tuple[str, StrawberryField]]:
    for type_ in schema.schema_converter.type_map.values():
        definition = type_.definition
        if not isinstance(definition, StrawberryObjectDefinition):
            continue
        for field in definition.fields:
            if field.base_resolver is not None:
                yield f"{definition.name}.{field.python_name}", field


def test_every_resolver_that_reaches_a_service_or_a_loader_is_async() -> None:
    reaching = ("services", ".viewer(", "Loader", "_of(info")
    sync = []
    checked = 0
    for name, field in _resolvers():
        resolver = field.base_resolver
        assert resolver is not None
        func = resolver.wrapped_func
        assert not isinstance(func, staticmethod | classmethod)  # resolvers are functions
        source = inspect.getsource(func)
        if any(marker in source for marker in reaching):
            checked += 1
            if not resolver.is_async:
                sync.append(name)
    assert checked > 30  # the root fields and the nested loaders, not an empty walk
    assert sync == []


# -- the running server --------------------------------------------------------------------

DELAY = 0.1  # seconds per chunk, each way
TOO_LONG = DELAY  # a poll held this long means something waited on the loop

ORDER_PAGE = """
query($code: String!) { order(code: $code) {
  code status lines { sku quantity } total { amount currency }
  shipments { carrier status events { status occurredAt } }
  returns { rma status } timeline { kind at }
} }
"""
PLACE = """
mutation($key: String!) {
  placeOrder(lines: [{sku: "MUG-001", quantity: 1}], paymentToken: "tok_visa",
    idempotencyKey: $key,
    shippingAddress: {name: "Alice Example", line1: "1 Demo Street", city: "Berlin",
                      postalCode: "10115", country: "DE"}) {
    order { code } userErrors { code message }
  }
}
"""
CANCEL = "mutation($c: String!) { cancelOrder(code: $c) { order { status } } }"
SUPPORT = 'query($c: String!) { supportOrder(code: $c, reason: "TICKET-1") { order { status } } }'


class Poller:
    """Polls /healthz from a thread and keeps how long each answer took."""

    def __init__(self, server: LiveServer) -> None:
        self.client = Client(server)
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.times.append(self.client.healthz())
            time.sleep(0.01)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def database() -> Iterator[Database]:
    """PostgreSQL only here: the delay is on the network (SQLite is a file; its waits are
    in test_database_waits.py)."""
    with scratch_postgres() as database:
        yield database


@pytest.fixture
def far_away(database: Database) -> Iterator[tuple[TcpProxy, TcpProxy]]:
    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        service_unreachable("Redis", str(exc))
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    pg_host, pg_port = database.url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    redis_host, redis_port = REDIS_TEST_URL.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxies = (
        TcpProxy((pg_host, int(pg_port)), delay=DELAY),
        TcpProxy((redis_host, int(redis_port)), delay=DELAY),
    )
    for proxy in proxies:
        proxy.restore()
    try:
        yield proxies
    finally:
        for proxy in proxies:
            proxy.cut()


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.redis
def test_a_whole_journey_with_slow_backends_never_holds_the_event_loop(
    database: Database,
    far_away: tuple[TcpProxy, TcpProxy],
    start_server: Callable[..., LiveServer],
) -> None:
    # given an instance whose PostgreSQL and Redis are 100 ms away each way
    pg, rd = far_away
    host_and_port = database.url.split("@", 1)[1].split("/", 1)[0]
    far_pg = database.url.replace(host_and_port, f"127.0.0.1:{pg.port}")
    db = REDIS_TEST_URL.rsplit("/", 1)[1]
    server = start_server(
        setup={"DATABASE_URL": database.url, "REDIS_URL": ""},
        DATABASE_URL=far_pg,
        REDIS_URL=f"redis://127.0.0.1:{rd.port}/{db}",
    )
    answers = []
    with Poller(server) as poller:
        # when a customer and a support agent go through their journeys
        alice = log_in(server, "alice@example.com")
        support = log_in(server, "support@example.com")
        answers.append(alice.post("{ myOrders(first: 5) { edges { node { code } } } }"))
        shipped = order_code(alice, "SHIPPED")
        answers.append(alice.post(ORDER_PAGE, code=shipped))
        placed = alice.post(PLACE, key=f"far-away-{time.time_ns()}")
        answers.append(placed)
        new_code = placed.json()["data"]["placeOrder"]["order"]["code"]
        answers.append(alice.post(CANCEL, c=new_code))
        answers.append(support.post(SUPPORT, c=shipped))
        _, webhook = _carrier_event(server, "DEMO-ALICE-2")
    # then every step answered normally
    for answer in answers:
        assert answer.status_code == 200 and not answer.json().get("errors"), answer.text
    assert json.loads(webhook.text) == {"status": "accepted"}
    # and while they waited on the far-away backends, the loop never did
    assert len(poller.times) > 50
    slowest = sorted(poller.times)[-3:]
    assert max(poller.times) < TOO_LONG, slowest
