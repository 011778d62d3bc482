"""A realistic load mix against two real instances sharing PostgreSQL and Redis, then one.

What it does, in one run (`scripts/loadtest [--duration S] [--instances-only 1|2] ...`):

1. creates a scratch PostgreSQL database (dropped at the end), migrates it with
   `orders-api migrate`, and seeds it with SQLAlchemy Core (app/seeding/load.py): customers
   with sessions, a catalogue with big stock, thousands of orders (placed, shipped with a
   parcel and tracking events, delivered), a few hundred customers able to log in
   (argon2id, the production parameters);
2. flushes a dedicated Redis database and starts two `orders-api serve` instances (uvicorn,
   one process each) with production settings (`APP_ENV=production`, the email sender on,
   JSON logs at INFO), the `RATE_*` budgets raised so that the limiter lets the load through,
   and a carrier webhook secret;
3. checks every request type once against each instance, then runs the mix for a fixed
   time: one wrk process per operation and per instance, all at once, each with its own Lua
   script (scripts/loadtest_lua/) and pre-generated requests:
     order(code) by its owner (the order page: lines, parcels, events): closed loop on the
       connections the others leave, so it takes whatever capacity is left (most of the
       traffic) — or, with --lookup-rate R, paced at R per second like the others (for
       latency at a given load rather than the most the instances can serve);
     paced at a fixed offered rate (--my-orders-rate, --place-rate, --login-rate,
     --webhook-rate; 0 turns one off), each on a few connections that absorb its latency:
       myOrders pages (the first, or a later one by cursor), placeOrder (fresh idempotency
       keys, `tok_visa`, 5 % exact retries of the previous purchase), login (argon2id),
       signed carrier events for parcels in transit;
4. prints per operation: req/s, p50, p99, non-2xx, 5xx, GraphQL errors, user errors;
5. verifies in PostgreSQL: every order answered exists, orders == answers (+ the requests cut
   off in flight by the end of the run), one order per idempotency key, one charge in the
   test provider's ledger per order (and none without), a confirmation email per order,
   stock decremented by exactly the units ordered, carrier events recorded once;
6. runs the same mix against one instance (same wrk processes, same connections) and prints
   the ratio two instances / one.

Exit status 1 on any 5xx or failed check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

import app.models  # noqa: E402, F401  (registers every table)
from app.pagination import CursorCodec  # noqa: E402
from app.security import codes  # noqa: E402
from app.security.tokens import AccessTokens  # noqa: E402
from app.seeding.load import CITIES, LOGIN_PASSWORD, Seeded, seed  # noqa: E402
from app.seeding.rows import SeedError  # noqa: E402
from app.settings import Settings  # noqa: E402
from scripts.bench import Target, ensure_wrk, free_port, load_average  # noqa: E402
from scripts.carrier_client import event_body, sign  # noqa: E402
from scripts.cpu_quota import CpuQuota, QuotaUnavailable  # noqa: E402

LUA_DIR = ROOT / "scripts" / "loadtest_lua"
PG_ADMIN_URL = os.environ.get(
    "LOADTEST_POSTGRES_URL",
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
REDIS_URL = os.environ.get("LOADTEST_REDIS_URL", "redis://127.0.0.1:6379/13")
RAISED_LIMIT = "1000000000/minute"
RATE_ENV = {
    "RATE_LOOKUPS_PER_USER": RAISED_LIMIT,
    "RATE_LOOKUPS_PER_IP": RAISED_LIMIT,
    "RATE_FAILED_LOOKUPS_PER_USER": RAISED_LIMIT,
    "RATE_FAILED_LOOKUPS_PER_IP": RAISED_LIMIT,
    "RATE_SUPPORT_LOOKUPS_PER_AGENT": RAISED_LIMIT,
    "RATE_TRACKING_VIEWS": RAISED_LIMIT,
}
ISSUER = Settings.jwt_issuer
AUDIENCE = Settings.jwt_audience
TOKEN_TTL = 900
KEY_PREFIX = "lt-"  # idempotency keys and carrier event ids of this tool

ORDER_QUERY = (
    "query Order($code: String!) { order(code: $code) { code status placedAt estimatedDelivery "
    "total { amount currency } lines { sku name quantity unitPrice { amount currency } } "
    "shipments { carrier trackingNumber status estimatedDelivery "
    "events { status location occurredAt } } } }"
)
MY_ORDERS_QUERY = (
    "query MyOrders($first: Int, $after: String) { myOrders(first: $first, after: $after) { "
    "edges { cursor node { code status placedAt total { amount currency } } } "
    "pageInfo { hasNextPage endCursor } } }"
)
PLACE_MUTATION = (
    "mutation Place($lines: [OrderLineInput!]!, $address: AddressInput!, $key: String!, "
    "$token: String!) { placeOrder(lines: $lines, shippingAddress: $address, "
    "idempotencyKey: $key, paymentToken: $token) { order { code status total { amount "
    "currency } } userErrors { field message code } } }"
)
LOGIN_MUTATION = (
    "mutation Login($email: String!, $password: String!) { login(email: $email, "
    "password: $password) { tokens { accessToken refreshToken expiresIn } "
    "userErrors { field message code } } }"
)
KEY_SLOT = "@@IDEMPOTENCY-KEY@@"


def fail(message: str) -> SystemExit:
    return SystemExit(f"loadtest: FAILED: {message}")


def say(message: str) -> None:
    print(f"loadtest: {message}", flush=True)


# -- the mix --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    name: str  # also the Lua script's name
    label: str
    rate_option: str  # its rate option; 0 turns a paced operation off
    connections: int = 0  # per wrk process of a paced operation (they absorb the latency)
    closed_loop: bool = False  # rate 0: on the connections the others leave, unpaced


OPERATIONS = (
    Operation("lookup", "order(code)", "lookup_rate", 8, closed_loop=True),
    Operation("my_orders", "myOrders", "my_orders_rate", 4),
    Operation("place_order", "placeOrder", "place_rate", 4),
    Operation("login", "login", "login_rate", 1),
    Operation("webhook", "carrier webhook", "webhook_rate", 4),
)
SLOTS = 2  # wrk processes per operation: one per instance (both on one instance for 1)
# Connections of the paced operations at most (every one of them paced).
PACED_CONNECTIONS = SLOTS * sum(op.connections for op in OPERATIONS)


def connections_per_process(op: Operation, total: int, paced: set[str]) -> int:
    """Connections of one wrk process of `op`: closed loop ones share what paced ones leave."""
    if op.name in paced:
        return op.connections
    used = SLOTS * sum(o.connections for o in OPERATIONS if o.name in paced)
    closed = [o for o in OPERATIONS if o.name not in paced]
    return max(1, (total - used) // (SLOTS * len(closed)))


# -- request data (Lua files) -------------------------------------------------------------


def lua_string(value: str) -> str:
    if "]==]" in value:
        raise ValueError("a request body contains ]==]")
    return f"[==[{value}]==]"


def compact(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


def write_lua_data(path: Path, entries: dict[str, Any]) -> None:
    """A Lua file returning a table: strings, numbers, lists of strings/numbers/lists."""

    def render(value: Any) -> str:
        if isinstance(value, str):
            return lua_string(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, list | tuple):
            return "{" + ",".join(render(item) for item in value) + "}"
        raise TypeError(type(value))

    body = ",\n".join(f"{name} = {render(value)}" for name, value in entries.items())
    path.write_text("return {\n" + body + "\n}\n")


class Requests:
    """Pre-generated requests for every operation, with fresh tokens and signatures."""

    def __init__(self, seeded: Seeded, jwt_secret: str, carrier_secret: str, cursors: CursorCodec):
        self.seeded = seeded
        self.tokens = AccessTokens(jwt_secret, ISSUER, AUDIENCE, TOKEN_TTL)
        self.carrier_secret = carrier_secret
        self.cursors = cursors
        self.rng = random.Random(4711)

    def customer_tokens(self) -> list[str]:
        now = datetime.now(UTC)
        return [
            self.tokens.issue(c.public_id, "CUSTOMER", c.session_public_id, now)
            for c in self.seeded.customers
        ]

    def lookup_items(self, limit: int = 5_000) -> list[tuple[int, str]]:
        sample = self.rng.sample(self.seeded.lookups, min(limit, len(self.seeded.lookups)))
        return [
            (index + 1, compact({"query": ORDER_QUERY, "variables": {"code": codes.display(c)}}))
            for index, c in sample
        ]

    def my_orders_items(self) -> list[tuple[int, str]]:
        """Page 1 for everyone; page 2 (by the cursor of page 1's last order) when it exists."""
        items = []
        for index, customer in enumerate(self.seeded.customers):
            variables: dict[str, Any] = {"first": 10}
            items.append((index + 1, compact({"query": MY_ORDERS_QUERY, "variables": variables})))
            newest = sorted(customer.orders, key=lambda o: (o[0], o[1]), reverse=True)
            if len(newest) > 10:
                placed, code = newest[9]
                after = self.cursors.encode("order", [placed.isoformat(), code])
                variables = {"first": 10, "after": after}
                items.append(
                    (index + 1, compact({"query": MY_ORDERS_QUERY, "variables": variables}))
                )
        return items

    def place_items(self, count: int = 2_000) -> list[tuple[int, str, str]]:
        """(token index, body before the idempotency key, body after it)."""
        items = []
        customers = self.seeded.customers
        for _ in range(count):
            index = self.rng.randrange(len(customers))
            customer = customers[index]
            chosen = self.rng.sample(self.seeded.products, self.rng.randint(1, 3))
            city, postal = CITIES[customer.id % len(CITIES)]
            variables = {
                "lines": [{"sku": sku, "quantity": self.rng.randint(1, 3)} for sku, _ in chosen],
                "address": {
                    "name": customer.name,
                    "line1": f"{customer.id} Load Street",
                    "city": city,
                    "postalCode": postal,
                    "country": "DE",
                },
                "key": KEY_SLOT,
                "token": "tok_visa",
            }
            before, after = compact({"query": PLACE_MUTATION, "variables": variables}).split(
                KEY_SLOT
            )
            items.append((index + 1, before, after))
        return items

    def login_items(self) -> list[str]:
        return [
            compact(
                {
                    "query": LOGIN_MUTATION,
                    "variables": {"email": c.email, "password": LOGIN_PASSWORD},
                }
            )
            for c in self.seeded.customers
            if c.can_login
        ]

    def webhook_items(self, prefix: str, count: int) -> list[tuple[str, str, str]]:
        """Signed now (valid 5 minutes); event ids `<prefix><n>`."""
        now = datetime.now(UTC).replace(microsecond=0)
        stamp = str(int(time.time()))
        statuses = ["IN_TRANSIT"] * 10 + ["OUT_FOR_DELIVERY"] * 4 + ["DELAYED"] * 2
        statuses += ["ATTEMPTED_DELIVERY"] + ["DELIVERED"] * 3
        items = []
        for n in range(count):
            carrier, tracking = self.rng.choice(self.seeded.shipments)
            status = self.rng.choice(statuses)
            body = event_body(
                carrier=carrier,
                tracking_number=tracking,
                status=status,
                event_id=f"{prefix}{n}",
                occurred_at=(now - timedelta(seconds=self.rng.randrange(1, 3600))).isoformat(),
                location=self.rng.choice(CITIES)[0],
                description="Load test event",
                estimated_delivery=(date.today() + timedelta(days=2)).isoformat()
                if status == "DELAYED"
                else None,
            ).decode()
            items.append((stamp, sign(self.carrier_secret, stamp, body), body))
        return items


# -- instances ----------------------------------------------------------------------------


def cli() -> list[str]:
    script = Path(sys.executable).with_name("orders-api")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def server_command(port: int) -> list[str]:
    return [*cli(), "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)]


def wait_ready(target: Target, seconds: float = 30) -> None:
    url = f"http://127.0.0.1:{target.port}/readyz"
    deadline = time.monotonic() + seconds
    last = ""
    with httpx.Client(timeout=5, trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.2)
    raise fail(f"{target.name} not ready in {seconds:g} s ({last}):\n{target.log_tail()}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds spent by everything on the machine (all CPUs), from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def service_cpu_seconds(names: Iterable[str]) -> dict[str, float]:
    """CPU seconds of every process named like one of `names` (PostgreSQL, Redis)."""
    totals = dict.fromkeys(names, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        for name in totals:
            if comm.startswith(name):
                totals[name] += cpu_seconds(int(entry.name))
    return totals


# -- one phase: the mix for a fixed time --------------------------------------------------


@dataclass
class Process:
    op: Operation
    slot: int
    target: Target
    connections: int
    out: Path
    prefix: str
    data: Path
    webhook_items: int = 0
    popen: subprocess.Popen[str] | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class PhaseResult:
    instances: int
    seconds: float
    processes: list[Process]
    cpu: dict[str, float]
    load_before: float
    load_after: float

    def of(self, op: Operation) -> list[dict[str, Any]]:
        return [p.result for p in self.processes if p.op == op]

    def total_rps(self) -> float:
        return sum(rps(p.result) for p in self.processes)


def rps(result: dict[str, Any]) -> float:
    return float(result["requests"]) / (float(result["duration_us"]) / 1e6)


def merged_percentile(results: list[dict[str, Any]], q: float) -> float:
    """The q-th latency percentile (ms) over several wrk processes, from each one's
    percentile grid (linear between grid points), weighted by its requests."""
    runs = [(r["requests"], r["percentiles"]) for r in results if r["requests"] > 0]
    if not runs:
        return float("nan")
    total = sum(n for n, _ in runs)

    def below(grid: list[list[float]], value: float) -> float:
        """Fraction of one run's requests at or under `value` (µs)."""
        previous_p, previous_v = 0.0, 0.0
        for p, v in grid:
            if value < v:
                if v == previous_v:
                    return previous_p / 100
                return (
                    previous_p + (p - previous_p) * (value - previous_v) / (v - previous_v)
                ) / 100
            previous_p, previous_v = p, v
        return 1.0

    candidates = sorted({v for _, grid in runs for _, v in grid})
    for value in candidates:
        if sum(n * below(grid, value) for n, grid in runs) >= q / 100 * total - 1e-9:
            return float(value) / 1000
    return float(candidates[-1]) / 1000


class Phases:
    def __init__(
        self,
        args: argparse.Namespace,
        wrk: str,
        workdir: Path,
        requests: Requests,
        instances: list[Target],
    ) -> None:
        self.args = args
        self.wrk = wrk
        self.workdir = workdir
        self.requests = requests
        self.instances = instances
        self.all_processes: list[Process] = []  # warm-ups included: they place orders too
        self.sanity_codes: set[str] = set()
        self.sanity_keys = 0
        self.sanity_events = 0

    def rate(self, op: Operation) -> float:
        """Requests per second offered by all processes of `op` (0: closed loop)."""
        return float(getattr(self.args, op.rate_option))

    def paced(self) -> set[str]:
        return {op.name for op in OPERATIONS if self.rate(op) > 0}

    def active(self, op: Operation) -> bool:
        return op.closed_loop or self.rate(op) > 0

    def write_data(self, tag: str) -> dict[str, Path]:
        """Data files shared by the processes of one operation (fresh tokens)."""
        tokens = self.requests.customer_tokens()
        files = {}
        for op in OPERATIONS:
            if op.name == "webhook":
                continue
            path = self.workdir / f"{tag}-{op.name}.lua"
            if op.name == "lookup":
                write_lua_data(path, {"tokens": tokens, "items": self.requests.lookup_items()})
            elif op.name == "my_orders":
                write_lua_data(path, {"tokens": tokens, "items": self.requests.my_orders_items()})
            elif op.name == "place_order":
                write_lua_data(
                    path,
                    {
                        "tokens": tokens,
                        "items": self.requests.place_items(),
                        "replay_share": self.args.replay_share,
                    },
                )
            elif op.name == "login":
                write_lua_data(path, {"items": self.requests.login_items()})
            files[op.name] = path
        return files

    def run(
        self, tag: str, targets: list[Target], seconds: float, files: dict[str, Path]
    ) -> PhaseResult:
        processes = []
        for op in filter(self.active, OPERATIONS):
            for slot in range(SLOTS):
                target = targets[slot % len(targets)]
                prefix = f"{KEY_PREFIX}{tag}-{op.name[:2]}{slot}-"
                data = files.get(op.name)
                count = 0
                if op.name == "webhook":
                    data = self.workdir / f"{tag}-webhook-{slot}.lua"
                    count = math.ceil(seconds * self.rate(op) / SLOTS * 1.1) + 20
                    items = self.requests.webhook_items(prefix, count)
                    write_lua_data(data, {"items": items})
                assert data is not None
                processes.append(
                    Process(
                        op=op,
                        slot=slot,
                        target=target,
                        connections=connections_per_process(
                            op, self.args.connections, self.paced()
                        ),
                        out=self.workdir / f"{tag}-{op.name}-{slot}.json",
                        prefix=prefix,
                        data=data,
                        webhook_items=count,
                    )
                )
        load_before = load_average()
        cpu_before = {t.name: cpu_seconds(t.process.pid) for t in targets if t.process}
        services_before = service_cpu_seconds(("postgres", "redis-server"))
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine_before = machine_busy_seconds()
        for process in processes:
            env = {
                **os.environ,
                "LOADTEST_DATA": str(process.data),
                "LOADTEST_OUT": str(process.out),
                "LOADTEST_PREFIX": process.prefix,
                "LOADTEST_RATE": str(self.rate(process.op) / SLOTS),
                "LOADTEST_SEED": str(random.randrange(1_000_000)),
            }
            command = [
                self.wrk,
                "-t1",
                f"-c{process.connections}",
                f"-d{seconds:g}s",
                "--timeout",
                "30s",
                "-s",
                str(LUA_DIR / f"{process.op.name}.lua"),
                f"http://127.0.0.1:{process.target.port}",
            ]
            process.popen = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        try:
            for process in processes:
                assert process.popen is not None
                output, _ = process.popen.communicate(timeout=seconds + 120)
                try:
                    process.result = json.loads(process.out.read_text())
                except (OSError, ValueError) as exc:
                    raise fail(
                        f"wrk gave no result for {process.op.name} on {process.target.name} "
                        f"(exit {process.popen.returncode}): {exc}\n{output[-2000:]}"
                    ) from None
        finally:
            for process in processes:  # only on an error or Ctrl-C: our own wrk processes
                if process.popen is not None and process.popen.poll() is None:
                    process.popen.kill()
                    process.popen.wait()
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine_busy = machine_busy_seconds() - machine_before
        services_after = service_cpu_seconds(("postgres", "redis-server"))
        cpu = {
            f"instance {t.name}": cpu_seconds(t.process.pid) - cpu_before[t.name]
            for t in targets
            if t.process
        }
        cpu["PostgreSQL (whole server)"] = services_after["postgres"] - services_before["postgres"]
        cpu["Redis (whole server)"] = (
            services_after["redis-server"] - services_before["redis-server"]
        )
        cpu["wrk (all)"] = (
            children_after.ru_utime
            + children_after.ru_stime
            - children_before.ru_utime
            - children_before.ru_stime
        )
        cpu["everything else"] = max(0.0, machine_busy - sum(cpu.values()))
        for target in targets:
            if target.process is not None and target.process.poll() is not None:
                raise fail(f"{target.name} died during the load:\n{target.log_tail()}")
        self.all_processes.extend(processes)
        return PhaseResult(len(targets), seconds, processes, cpu, load_before, load_average())

    def phase(self, targets: list[Target]) -> PhaseResult:
        tag = f"i{len(targets)}"
        files = self.write_data(tag)
        if self.args.warmup > 0:
            say(f"{len(targets)} instance(s): warm-up {self.args.warmup:g} s ...")
            self.run(tag + "w", targets, self.args.warmup, files)
        say(f"{len(targets)} instance(s): measuring {self.args.duration:g} s ...")
        return self.run(tag, targets, self.args.duration, files)

    # -- one of each request per instance before the load --------------------------------

    def sanity(self) -> None:
        tokens = self.requests.customer_tokens()
        lookup = self.requests.lookup_items(1)[0]
        pages = self.requests.my_orders_items()
        page2 = next((item for item in pages if '"after"' in item[1]), pages[0])
        place = self.requests.place_items(1)[0]
        login = self.requests.login_items()[0]
        placed_code: str | None = None
        with httpx.Client(timeout=30, trust_env=False) as client:
            for target in self.instances:
                base = f"http://127.0.0.1:{target.port}"

                def gql(
                    body: str, token: str | None, name: str = target.name, base: str = base
                ) -> dict[str, Any]:
                    headers = {"content-type": "application/json"}
                    if token:
                        headers["authorization"] = f"Bearer {token}"
                    response = client.post(f"{base}/graphql", content=body, headers=headers)
                    payload: dict[str, Any] = response.json()
                    if response.status_code != 200 or payload.get("errors"):
                        raise fail(f"{name}: {response.status_code} {response.text[:500]}")
                    data: dict[str, Any] = payload["data"]
                    return data

                got = gql(lookup[1], tokens[lookup[0] - 1])["order"]
                if not got or "-" not in got["code"]:
                    raise fail(f"{target.name}: order(code) answered {got}")
                for item in (pages[0], page2):
                    if not gql(item[1], tokens[item[0] - 1])["myOrders"]["edges"]:
                        raise fail(f"{target.name}: myOrders answered no orders")
                # The same key on both instances: one order, the same code.
                body = place[1] + f"{KEY_PREFIX}sanity-0" + place[2]
                payload = gql(body, tokens[place[0] - 1])["placeOrder"]
                if not payload["order"]:
                    raise fail(f"{target.name}: placeOrder answered {payload}")
                if placed_code is not None and payload["order"]["code"] != placed_code:
                    raise fail(
                        f"the same idempotency key placed {placed_code} on one instance and "
                        f"{payload['order']['code']} on the other"
                    )
                placed_code = payload["order"]["code"]
                self.sanity_codes.add(placed_code)
                if not gql(login, None)["login"]["tokens"]:
                    raise fail(f"{target.name}: login failed")
                stamp, signature, event = self.requests.webhook_items(
                    f"{KEY_PREFIX}sanity-{target.name}-", 1
                )[0]
                response = client.post(
                    f"{base}/webhooks/carrier",
                    content=event,
                    headers={
                        "content-type": "application/json",
                        "x-carrier-timestamp": stamp,
                        "x-carrier-signature": signature,
                    },
                )
                if response.status_code != 202:
                    raise fail(f"{target.name}: webhook {response.status_code} {response.text}")
                self.sanity_events += 1
        self.sanity_keys = 1


# -- verification in PostgreSQL -------------------------------------------------------------


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def scalar(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return row[0] if row else None


def settle(database_url: str, seconds: float = 20) -> int:
    """Wait until requests cut off by the end of the run have finished (the count of the
    load test's orders stops moving); returns it."""
    deadline = time.monotonic() + seconds
    last, stable_since = -1, time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            count = int(
                scalar(conn, "SELECT count(*) FROM orders WHERE idempotency_key LIKE 'lt-%'")
            )
            if count != last:
                last, stable_since = count, time.monotonic()
            elif time.monotonic() - stable_since >= 1.5 or time.monotonic() > deadline:
                return count
            time.sleep(0.25)


def verify(database_url: str, phases: Phases, stock: dict[int, int]) -> list[Check]:
    """Every load-test request so far (warm-ups and both phases included) against the rows."""
    settle(database_url)
    place = [p for p in phases.all_processes if p.op.name == "place_order"]
    hooks = [p for p in phases.all_processes if p.op.name == "webhook"]
    answered = {codes.normalise(c) for p in place for c in p.result["codes"]}
    answered |= {codes.normalise(c) for c in phases.sanity_codes}
    keys_issued = sum(p.result["keys"] for p in place) + phases.sanity_keys
    in_flight = sum(
        min(p.result["sent"] - p.result["requests"], p.connections) for p in place if p.result
    )
    checks: list[Check] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT code FROM orders WHERE idempotency_key LIKE 'lt-%'").fetchall()
        in_db = {row[0] for row in rows}
        lost = answered - in_db
        unanswered = in_db - answered
        checks.append(
            Check(
                "orders created == successful placeOrder answers",
                not lost and len(unanswered) <= in_flight,
                f"{len(in_db)} orders in PostgreSQL, {len(answered)} distinct codes answered; "
                f"{len(lost)} answered but missing; {len(unanswered)} placed by requests cut off "
                f"in flight at the end of a run (at most {in_flight} were in flight)",
            )
        )
        duplicates = scalar(
            conn,
            "SELECT count(*) FROM (SELECT user_id, idempotency_key FROM orders "
            "WHERE idempotency_key LIKE 'lt-%' GROUP BY user_id, idempotency_key "
            "HAVING count(*) > 1) d",
        )
        replays = sum(p.result["replays"] for p in place)
        checks.append(
            Check(
                "one order per idempotency key",
                duplicates == 0 and len(in_db) <= keys_issued,
                f"{duplicates} keys with more than one order; {len(in_db)} orders for "
                f"{keys_issued} keys issued ({replays} exact retries of a key sent as well)",
            )
        )
        charges = scalar(
            conn,
            "SELECT count(*) FROM test_provider_transactions "
            "WHERE kind = 'charge' AND idempotency_key LIKE 'order:%:lt-%'",
        )
        voids = scalar(
            conn,
            "SELECT count(*) FROM test_provider_transactions "
            "WHERE kind = 'refund' AND idempotency_key LIKE 'void:%:lt-%'",
        )
        matched = scalar(
            conn,
            "SELECT count(*) FROM orders o JOIN test_provider_transactions t "
            "ON t.reference = o.payment_reference AND t.kind = 'charge' "
            "AND t.amount_minor = o.total_minor AND t.currency = o.currency "
            "WHERE o.idempotency_key LIKE 'lt-%'",
        )
        checks.append(
            Check(
                "payment charges == orders created",
                charges == len(in_db) and matched == len(in_db) and voids == 0,
                f"{charges} charges in the test provider's ledger for {len(in_db)} orders; "
                f"{matched} orders matched to their charge and amount; {voids} voids",
            )
        )
        emails = scalar(
            conn,
            "SELECT count(*) FROM outbox_emails e JOIN orders o "
            "ON e.dedupe_key = 'order-confirmation.' || o.code "
            "WHERE o.idempotency_key LIKE 'lt-%'",
        )
        checks.append(
            Check(
                "one confirmation email per order",
                emails == len(in_db),
                f"{emails} confirmation emails queued for {len(in_db)} orders",
            )
        )
        ordered: dict[int, int] = dict(
            conn.execute(
                "SELECT l.product_id, COALESCE(SUM(l.quantity), 0) FROM order_lines l "
                "JOIN orders o ON o.id = l.order_id WHERE o.idempotency_key LIKE 'lt-%' "
                "GROUP BY l.product_id"
            ).fetchall()
        )
        now_stock: dict[int, int] = dict(conn.execute("SELECT id, stock FROM products").fetchall())
        # Units still held by a payment under way (a reservation the reconciler has not
        # finished yet) are taken from the stock too; released ones came back.
        held: dict[int, int] = {}
        for (payload,) in conn.execute(
            "SELECT payload_json FROM order_reservations "
            "WHERE status = 'RESERVED' AND idempotency_key LIKE 'lt-%'"
        ).fetchall():
            for line in json.loads(payload)["lines"]:
                held[line["product_id"]] = held.get(line["product_id"], 0) + line["quantity"]
        wrong = [
            pid
            for pid, start in stock.items()
            if start - now_stock[pid] != ordered.get(pid, 0) + held.get(pid, 0)
        ]
        units = sum(ordered.values())
        checks.append(
            Check(
                "stock decrements == units ordered (+ held by unfinished payments)",
                not wrong and all(v >= 0 for v in now_stock.values()),
                f"{units} units ordered over {len(ordered)} products, {sum(held.values())} "
                f"held by payments under way; {len(wrong)} products whose stock moved by "
                "another amount",
            )
        )
        recorded = int(
            scalar(
                conn,
                "SELECT count(*) FROM tracking_events WHERE carrier_event_id LIKE 'lt-%'",
            )
        )
        distinct_sent = (
            sum(min(p.result["sent"], p.webhook_items) for p in hooks) + phases.sanity_events
        )
        hooks_in_flight = sum(
            min(p.result["sent"] - p.result["requests"], p.connections) for p in hooks
        )
        checks.append(
            Check(
                "carrier events recorded once each",
                distinct_sent - hooks_in_flight <= recorded <= distinct_sent,
                f"{recorded} tracking events recorded for {distinct_sent} distinct event ids "
                f"sent ({hooks_in_flight} in flight at the end of a run)",
            )
        )
    return checks


# -- report -------------------------------------------------------------------------------


def print_phase(result: PhaseResult, args: argparse.Namespace, phases: Phases) -> None:
    print()
    names = ", ".join(sorted({p.target.name for p in result.processes}))
    print(
        f"{result.instances} instance(s) ({names}), {args.connections} connections in all, "
        f"{result.seconds:g} s measured after {args.warmup:g} s warm-up; load average "
        f"{result.load_before:.2f} before, {result.load_after:.2f} after"
    )
    header = (
        f"{'operation':<16} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non-2xx':>8} {'5xx':>5} {'gql err':>8} {'user err':>8} {'sock err':>8}"
    )
    print(header)
    print("-" * len(header))
    for op in OPERATIONS:
        runs = result.of(op)
        conns = sum(p.connections for p in result.processes if p.op == op)
        sock = sum(
            r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"] for r in runs
        )
        paced = ""
        if not phases.active(op):
            print(f"{op.label:<16} {'off':>5}")
            continue
        if phases.rate(op) > 0:
            paced = f"  (paced: {phases.rate(op):g}/s offered)"
        print(
            f"{op.label:<16} {conns:>5} {sum(rps(r) for r in runs):>8,.1f} "
            f"{merged_percentile(runs, 50):>8.1f} {merged_percentile(runs, 99):>8.1f} "
            f"{sum(r['non2xx'] for r in runs):>8} {sum(r['s5xx'] for r in runs):>5} "
            f"{sum(r['gql_errors'] for r in runs):>8} {sum(r['user_errors'] for r in runs):>8} "
            f"{sock:>8}{paced}"
        )
    total = result.total_rps()
    print("-" * len(header))
    print(f"{'total':<16} {args.connections:>5} {total:>8,.1f}")
    by_target: dict[str, float] = {}
    for p in result.processes:
        by_target[p.target.name] = by_target.get(p.target.name, 0.0) + rps(p.result)
    print(
        "per instance: "
        + ", ".join(f"{name} {value:,.1f} req/s" for name, value in by_target.items())
    )
    place = result.of(next(o for o in OPERATIONS if o.name == "place_order"))
    print(
        f"placeOrder: {sum(r['ok'] for r in place)} orders answered, "
        f"{sum(r['keys'] for r in place)} new keys, "
        f"{sum(r['replays'] for r in place)} exact retries"
    )
    seconds = result.seconds
    print(
        f"CPU used (cores busy on average, of {os.cpu_count()}): "
        + ", ".join(f"{name} {value / seconds:.2f}" for name, value in result.cpu.items())
    )
    samples = [s for p in result.processes for s in p.result.get("samples", [])]
    for sample in samples[:5]:
        print(f"  first failed answer: {sample[:300]}")


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model or platform.machine()}), {platform.system()}"


# -- main ---------------------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/loadtest", description=__doc__, formatter_class=_HelpFormatter
    )
    parser.add_argument("--duration", type=float, default=30, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per phase")
    parser.add_argument(
        "--connections",
        type=int,
        default=48,
        help="connections in all, the same for 1 and 2 instances: a few per paced operation, "
        "the rest for order(code) unless it is paced too",
    )
    parser.add_argument(
        "--instances-only",
        type=int,
        choices=(1, 2),
        help="run only the phase with this many instances (no ratio)",
    )
    parser.add_argument("--orders", type=int, default=20_000, help="orders to seed")
    parser.add_argument("--customers", type=int, default=2_000, help="customers to seed")
    parser.add_argument("--login-customers", type=int, default=200, help="of them, can log in")
    parser.add_argument("--products", type=int, default=40, help="products to seed")
    parser.add_argument(
        "--lookup-rate",
        type=float,
        default=0.0,
        help="order pages (order(code)) per second offered; 0: closed loop on the "
        "connections the paced operations leave (as much as the instances can serve)",
    )
    parser.add_argument(
        "--my-orders-rate", type=float, default=20.0, help="myOrders pages per second offered"
    )
    parser.add_argument(
        "--place-rate", type=float, default=10.0, help="placeOrder requests per second offered"
    )
    parser.add_argument(
        "--login-rate", type=float, default=0.5, help="logins per second offered (argon2id)"
    )
    parser.add_argument(
        "--webhook-rate", type=float, default=8.0, help="carrier events per second offered"
    )
    parser.add_argument(
        "--replay-share", type=float, default=0.05, help="placeOrder requests retrying a key"
    )
    parser.add_argument(
        "--instance-cpu",
        type=float,
        help="hold each instance to this many cores (a cgroup CPU quota; needs root): on a "
        "machine with fewer cores than the instances, PostgreSQL, Redis and wrk need, it "
        "shows whether two instances serve twice what one does",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and workdir")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.warmup + args.duration > 240:
        parser.error("warm-up + duration must stay under 240 s (signed events live 300 s)")
    if args.connections < PACED_CONNECTIONS + SLOTS:
        parser.error(f"--connections must be at least {PACED_CONNECTIONS + SLOTS}")
    if not 0 < args.login_customers <= args.customers <= args.orders:
        parser.error("need 0 < --login-customers <= --customers <= --orders")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk()
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            pass
        redis_client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        redis_client.ping()
    except Exception as exc:
        raise fail(
            f"PostgreSQL ({PG_ADMIN_URL}) and Redis ({REDIS_URL}) must be up: {exc}"
        ) from exc
    load_before = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="orders-loadtest-"))
    db_name = f"orders_loadtest_{uuid.uuid4().hex[:10]}"
    database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db_name
    jwt_secret = secrets.token_urlsafe(48)
    carrier_secret = secrets.token_urlsafe(48)
    targets: list[Target] = []
    quotas: list[CpuQuota] = []
    results: dict[int, PhaseResult] = {}
    checks: dict[int, list[Check]] = {}
    phases: Phases | None = None
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    try:
        redis_client.flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RATE_", "SMTP_"))}
        env.update(
            {
                "APP_ENV": "production",
                "DATABASE_URL": database_url,
                "REDIS_URL": REDIS_URL,
                "JWT_SECRET": jwt_secret,
                "JWT_ISSUER": ISSUER,
                "JWT_AUDIENCE": AUDIENCE,
                "CARRIER_WEBHOOK_SECRET": carrier_secret,
                "METRICS_TOKEN": secrets.token_urlsafe(24),
                "MAIL_DIR": str(workdir / "mail"),
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                **RATE_ENV,
            }
        )
        migrate = subprocess.run(
            [*cli(), "migrate"], env=env, cwd=workdir, capture_output=True, check=False
        )
        if migrate.returncode != 0:
            raise fail(f"orders-api migrate: {migrate.stderr.decode()[-2000:]}")
        say(
            f"database {db_name} migrated; seeding {args.orders:,} orders for "
            f"{args.customers:,} customers ..."
        )
        try:
            seeded = seed(
                database_url, args.orders, args.customers, args.login_customers, args.products
            )
        except SeedError as exc:
            raise fail(str(exc)) from exc
        say(
            f"seeded {seeded.orders:,} orders, {seeded.lines:,} lines, {seeded.events:,} "
            f"tracking events, {len(seeded.shipments):,} parcels in transit, "
            f"{len(seeded.products)} products in {seeded.seconds:.1f} s"
        )
        for name in ("A", "B"):
            port = free_port()
            target = Target(name, server_command(port), port, workdir / f"instance-{name}.log")
            targets.append(target)
            target.start(env)
            if args.instance_cpu:
                assert target.process is not None
                try:
                    quota = CpuQuota(f"orders-loadtest-{os.getpid()}-{name}", args.instance_cpu)
                    quotas.append(quota)
                    quota.add(target.process.pid)
                except QuotaUnavailable as exc:
                    raise fail(f"--instance-cpu: {exc}") from exc
            wait_ready(target)  # one after the other, as a rollout would
        say(f"instances up: A :{targets[0].port}, B :{targets[1].port} (APP_ENV=production)")
        requests = Requests(seeded, jwt_secret, carrier_secret, CursorCodec(jwt_secret))
        phases = Phases(args, wrk, workdir, requests, targets)
        phases.sanity()
        say("every request type answered correctly on both instances")
        plan = [args.instances_only] if args.instances_only else [2, 1]
        for n in plan:
            results[n] = phases.phase(targets[:n])
            checks[n] = verify(database_url, phases, seeded.stock)
            print_phase(results[n], args, phases)
            print(f"checks in PostgreSQL after {n} instance(s) (cumulative):")
            for check in checks[n]:
                print(f"  {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
    finally:
        for target in targets:
            target.stop()
        for quota in quotas:
            quota.remove()
        if args.keep:
            say(f"kept {workdir} and database {db_name}")
        else:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            with contextlib.suppress(redis.RedisError):
                redis_client.flushdb()
            shutil.rmtree(workdir, ignore_errors=True)

    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    print()
    print(
        f"machine: {machine()}, python {platform.python_version()}, "
        f"{(wrk_version.stdout + wrk_version.stderr).split('[')[0].strip()}, "
        f"load average before: {load_before:.2f}"
    )
    if args.instance_cpu:
        print(f"each instance held to {args.instance_cpu:g} cores (cgroup CPU quota)")
    if 1 in results and 2 in results:
        ratio = results[2].total_rps() / results[1].total_rps()
        print(
            f"ratio 2 instances / 1 instance: {ratio:.2f}x "
            f"({results[2].total_rps():,.1f} / {results[1].total_rps():,.1f} req/s)"
        )
        lookups = next(o for o in OPERATIONS if o.closed_loop)
        lookup_rps = {n: sum(rps(r) for r in results[n].of(lookups)) for n in (1, 2)}
        print(
            f"order(code) alone (the closed-loop part of the mix): "
            f"{lookup_rps[2] / max(lookup_rps[1], 1e-9):.2f}x "
            f"({lookup_rps[2]:,.1f} / {lookup_rps[1]:,.1f} req/s)"
        )
        busy = {
            n: sum(v for k, v in results[n].cpu.items() if k.startswith("instance "))
            / results[n].seconds
            for n in (1, 2)
        }
        if args.instance_cpu:
            print(
                f"note: each instance was held to {args.instance_cpu:g} cores, so two may use "
                f"twice what one may; one kept {busy[1]:.2f} cores busy and two kept "
                f"{busy[2]:.2f} ({busy[2] / max(busy[1], 1e-9):.2f}x the CPU). PostgreSQL, Redis "
                f"and wrk share the rest of this machine's {os.cpu_count()} CPUs."
            )
        else:
            print(
                f"note: this machine has {os.cpu_count()} CPUs, shared by the instances, "
                "PostgreSQL, Redis, wrk and whatever else runs here, so a second instance can "
                "only add the CPU that one instance leaves idle: expect about 1x once one "
                f"instance keeps a core busy. Here one instance kept {busy[1]:.2f} cores busy "
                f"and two kept {busy[2]:.2f} ({busy[2] / max(busy[1], 1e-9):.2f}x the CPU). The "
                "paced operations are the same load in both phases, so they take a larger part "
                "of one instance; order(code) gets what is left, hence its larger ratio. Not a "
                "figure for instances on hosts of their own. (--instance-cpu holds each "
                "instance to a share of a core.)"
            )
    five_xx = sum(p.result["s5xx"] for p in phases.all_processes) if phases else 0
    failed = [c for cs in checks.values() for c in cs if not c.passed]
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "phases": {
                        n: {
                            "total_rps": r.total_rps(),
                            "cpu": r.cpu,
                            "processes": [
                                {
                                    "op": p.op.name,
                                    "instance": p.target.name,
                                    "connections": p.connections,
                                    **{k: v for k, v in p.result.items() if k != "codes"},
                                }
                                for p in r.processes
                            ],
                        }
                        for n, r in results.items()
                    },
                    "checks": {n: [c.__dict__ for c in cs] for n, cs in checks.items()},
                },
                indent=2,
            )
            + "\n"
        )
    if five_xx or failed:
        print(f"RESULT: FAIL ({five_xx} 5xx answers, {len(failed)} failed checks)")
        return 1
    print("RESULT: PASS (no 5xx, every check passed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
