"""Order pages over HTTP: the real server against a bare Starlette route, in one run.

Three documents (`--documents`, default all), each a GraphQL request a customer's client
sends, in scripts/bench_documents/:

- small    `order(code) { code status total { amount currency } }`
- page     the order page: `order(code)` with lines, totals, payment, address, shipments
           (their lines and tracking events), returns (their lines, refund) and timeline
- history  the order history: `myOrders(first: 20)` with each order's lines and shipments

Steps: creates a scratch database (`--database sqlite`: a file in a temporary directory;
`--database postgresql`: a database created through BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test, and dropped WITH (FORCE) at the end), applies
the migrations and seeds it with SQLAlchemy Core (app/seeding/bench.py: `--orders` orders
over `--customers` customers; the bench customer owns `--my-orders` of them, with
shipments, tracking events and returns). Then:

1. counts the SQL statements of one warm request of each document in-process (the app
   from `create_app` inside its lifespan, driven through httpx's ASGI transport, with
   `Database.count_statements()`; the baseline by its own counter): small, page (every
   code in the rotation: mean and per kind of order), history with first: 5 and 20;
2. starts `python -m app.cli serve` and `scripts/bench_baseline.py` (same uvicorn
   settings, one process each; with `--compare-plans` also the app with COMPILED_PLANS=off);
3. asks every target for every document (every code in the rotation; history with first: 5
   and 20) with the same token and requires the same data as the app's answer (cursors
   compared decoded); a document some target answers wrongly is reported and not loaded;
4. loads each target with wrk, document after document (a warm-up, then the measured run;
   `--rounds` alternates the order of the targets and reports the median), a fresh token
   per run, then checks 20 answers again;
5. prints req/s, p50/p90/p99/max latency, errors, on PostgreSQL the connections each
   target opened during its measured run (pg_stat_database.sessions), the ratio
   graphql/baseline against the issue's targets (>= 0.5x small, >= 0.4x page and history),
   with `--compare-plans` the ratio graphql/graphql-noplans (compiled plans earn their
   place at >= 1.3x; a document the app does not compile runs the general path on both),
   and the statement counts (the history page's must not grow with `first`, at most 5).

By default the servers are pinned to CPU 0 and wrk to CPU 1 (`taskset`), so the load tool
never competes with the server it measures; `--no-pin` lets the OS place them. PostgreSQL's
own processes are never pinned. Compare ratios, not absolute figures: both targets are
measured in the same run, the machine itself varies. Exits 1 when an answer was wrong or
a request failed (ratios below target do not fail it). Run it as `scripts/bench [options]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from graphql import parse  # noqa: E402

from app.graphql.compiled import compile_plan  # noqa: E402
from app.main import create_app  # noqa: E402
from app.pagination import CursorCodec  # noqa: E402
from app.schema import build_schema  # noqa: E402
from app.security import codes  # noqa: E402
from app.security.tokens import AccessTokens  # noqa: E402
from app.seeding.bench import Seeded, seed  # noqa: E402
from app.seeding.rows import SeedError  # noqa: E402
from app.settings import RateLimits, Settings  # noqa: E402
from scripts import bench_baseline  # noqa: E402
from scripts.bench_seed import ScratchDatabase, SessionCount, fail  # noqa: E402

DOCUMENTS_DIR = ROOT / "scripts" / "bench_documents"
ISSUER = Settings.jwt_issuer
AUDIENCE = Settings.jwt_audience
TOKEN_TTL = 900  # the app's maximum (Settings.validate)
RAISED_LIMIT = "1000000000/minute"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
HISTORY_FIRST = 20  # the history page the load asks for
HISTORY_COUNTED = (5, 20)  # page sizes whose statements are counted and checked
CHECK_AFTER = 20  # answers checked again after the load, per document and target
STATEMENT_TARGET = 5  # the issue's limit for the history page, whatever its size
PLANS_KEEP = 1.3  # compiled plans stay if they make a document this much faster
GRAPHQL, BASELINE, NOPLANS = "graphql", "baseline", "graphql-noplans"


# -- documents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    name: str
    title: str
    target: float  # the issue's minimum ratio graphql/baseline
    query: str
    by_code: bool  # variables {"code": ...} over the rotation, else {"first": N}

    def bodies(self, rotation: list[str]) -> list[dict[str, Any]]:
        """The request bodies of the load (and of the checks)."""
        if self.by_code:
            return [{"query": self.query, "variables": {"code": code}} for code in rotation]
        return [self.page_of(HISTORY_FIRST)]

    def page_of(self, first: int) -> dict[str, Any]:
        return {"query": self.query, "variables": {"first": first}}

    def check_bodies(self, rotation: list[str]) -> list[dict[str, Any]]:
        if self.by_code:
            return self.bodies(rotation)
        return [self.page_of(first) for first in HISTORY_COUNTED]


def load_documents() -> dict[str, Document]:
    def read(name: str) -> str:
        return (DOCUMENTS_DIR / f"{name}.graphql").read_text().strip()

    return {
        "small": Document("small", "order(code) { code status total }", 0.5, read("small"), True),
        "page": Document("page", "order(code): the order page", 0.4, read("page"), True),
        "history": Document(
            "history",
            f"myOrders(first: {HISTORY_FIRST}): the history page",
            0.4,
            read("history"),
            False,
        ),
    }


def path_for(target_name: str, document: Document) -> str:
    return f"/bench/{document.name}" if target_name == BASELINE else "/graphql"


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Target:
    name: str
    command: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise fail(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise fail(f"{self.name} did not listen on port {self.port} in 30 s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def server_commands(
    pin: list[str], ports: dict[str, int], compare_plans: bool
) -> dict[str, list[str]]:
    app = [
        *pin,
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--no-migrate",
        "--no-sender",
        "--host",
        "127.0.0.1",
        "--port",
    ]
    commands = {
        GRAPHQL: [*app, str(ports[GRAPHQL])],
        # The same uvicorn settings as `orders-api serve` (app/cli.py): one process,
        # default loop/http (uvloop/httptools), no access log, no proxy headers.
        BASELINE: [
            *pin,
            sys.executable,
            "-m",
            "uvicorn",
            "bench_baseline:from_env",
            "--factory",
            "--app-dir",
            str(ROOT / "scripts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(ports[BASELINE]),
            "--no-access-log",
            "--no-proxy-headers",
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "10",
        ],
    }
    if compare_plans:
        commands[NOPLANS] = [*app, str(ports[NOPLANS])]
    return commands


# -- answers ------------------------------------------------------------------------------


class Answers:
    """Asks targets for documents and compares the answers with the app's."""

    def __init__(self, secret: str, token: str) -> None:
        self.cursors = CursorCodec(secret)
        self.headers = {"authorization": f"Bearer {token}"}

    def comparable(self, payload: Any) -> Any:
        """The answer's data with every cursor decoded (they are sealed under a random
        nonce, so two answers never carry the same cursor text)."""
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            return data
        page = data.get("myOrders")
        if not isinstance(page, dict):
            return data
        edges = [
            {**edge, "cursor": self.cursors.decode("order", edge["cursor"])}
            for edge in page.get("edges") or []
        ]
        info = dict(page.get("pageInfo") or {})
        if info.get("endCursor"):
            info["endCursor"] = self.cursors.decode("order", info["endCursor"])
        return {**data, "myOrders": {**page, "edges": edges, "pageInfo": info}}

    @staticmethod
    def problem_of(response: httpx.Response) -> tuple[Any, str | None]:
        """(payload, None) for a 200 answer without errors, else (payload, what is wrong)."""
        if response.status_code != 200:
            return None, f"HTTP {response.status_code}: {response.text[:400]}"
        try:
            payload = response.json()
        except ValueError:
            return None, f"not JSON: {response.text[:400]}"
        if payload.get("errors"):
            return payload, f"errors: {json.dumps(payload['errors'])[:400]}"
        return payload, None

    def check(
        self,
        client: httpx.Client,
        targets: list[Target],
        document: Document,
        bodies: list[dict[str, Any]],
        expected: dict[str, dict[str, Any]],
    ) -> dict[str, list[str]]:
        """Every body to every target; per target, what was wrong (the app's own errors
        under its name, a different answer under the other target's)."""
        wrong: dict[str, list[str]] = {t.name: [] for t in targets}
        for body in bodies:
            answers: dict[str, tuple[Any, str | None]] = {}
            for target in targets:
                response = client.post(
                    target.base() + path_for(target.name, document),
                    json=body,
                    headers=self.headers,
                )
                answers[target.name] = self.problem_of(response)
            reference, app_problem = answers[GRAPHQL]
            label = json.dumps(body["variables"])
            if app_problem is not None:
                wrong[GRAPHQL].append(f"{label}: {app_problem}")
                continue
            want = self.comparable(reference)
            if document.name == "small":
                code = body["variables"]["code"]
                seeded = expected[code]
                seeded_view = {
                    "order": {
                        "code": codes.display(code),
                        "status": seeded["status"],
                        "total": {"amount": seeded["amount"], "currency": seeded["currency"]},
                    }
                }
                if want != seeded_view:
                    wrong[GRAPHQL].append(f"{label}: got {want}, seeded {seeded_view}")
            for name, (payload, problem) in answers.items():
                if name == GRAPHQL:
                    continue
                if problem is not None:
                    wrong[name].append(f"{label}: {problem}")
                    continue
                got = self.comparable(payload)
                if got != want:
                    where, mine, theirs = first_difference(got, want)
                    wrong[name].append(
                        f"{label}: differs from the app's answer at {where}: "
                        f"{json.dumps(mine)[:300]} (app: {json.dumps(theirs)[:300]})"
                    )
        return wrong


def first_difference(a: Any, b: Any, where: str = "data") -> tuple[str, Any, Any]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key, "<missing>") != b.get(key, "<missing>"):
                return first_difference(
                    a.get(key, "<missing>"), b.get(key, "<missing>"), f"{where}.{key}"
                )
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where} (length {len(a)} vs {len(b)})", a, b
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{where}[{index}]")
    return where, a, b


# -- statements -----------------------------------------------------------------------------


@dataclass
class Statements:
    """Statements of one warm request, per target and document."""

    small: dict[str, int] = field(default_factory=dict)  # target -> statements
    page: dict[str, dict[str, int]] = field(default_factory=dict)  # target -> code -> n
    history: dict[str, dict[int, int]] = field(default_factory=dict)  # target -> first -> n
    problems: list[str] = field(default_factory=list)
    compiled: dict[str, bool | None] = field(default_factory=dict)  # document -> has a plan


def has_plan(document: Document) -> bool | None:
    """Whether the app compiles this document (app/graphql/compiled.py); None if that
    cannot be told."""
    try:
        schema = build_schema(production=False)
        return compile_plan(schema, parse(document.query), None) is not None
    except Exception:
        return None


class _Counter:
    """Sends a request twice to an in-process target and counts the second one's
    statements: `Database.count_statements()` for the app, its own counter for the
    baseline."""

    def __init__(self, name: str, asgi: Any, headers: dict[str, str], found: Statements) -> None:
        self.name = name
        self.headers = headers
        self.found = found
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://bench"
        )
        self.baseline = asgi.state.baseline if name == BASELINE else None
        self.log = None if name == BASELINE else asgi.state.services.db.count_statements()

    def sent(self) -> int:
        if self.baseline is not None:
            return int(self.baseline.statements)
        assert self.log is not None
        return len(self.log)

    async def once(self, document: Document, body: dict[str, Any]) -> int:
        path = path_for(self.name, document)
        await self.client.post(path, json=body, headers=self.headers)  # warm
        before = self.sent()
        response = await self.client.post(path, json=body, headers=self.headers)
        counted = self.sent() - before
        _, problem = Answers.problem_of(response)
        if problem is not None:
            self.found.problems.append(f"{self.name} {document.name}: {problem}")
        return counted


async def count_statements(
    database_url: str,
    secret: str,
    token: str,
    documents: dict[str, Document],
    rotation: list[str],
    compare_plans: bool,
) -> Statements:
    """One warm request per document and code, in-process, counting what each sends."""
    headers = {"authorization": f"Bearer {token}"}
    found = Statements(compiled={name: has_plan(doc) for name, doc in documents.items()})
    apps: list[tuple[str, Any]] = []
    for name, plans in ((GRAPHQL, True), (NOPLANS, False)):
        if name == NOPLANS and not compare_plans:
            continue
        settings = Settings.from_env(
            app_env="development",
            database_url=database_url,
            redis_url=None,
            jwt_secret=secret,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            compiled_plans=plans,
            log_level="WARNING",
            rate_limits=RateLimits(lookups_per_user=RAISED_LIMIT, lookups_per_ip=RAISED_LIMIT),
        )
        apps.append((name, create_app(settings, run_sender=False)))
    apps.append((BASELINE, bench_baseline.create_app(database_url, secret, ISSUER, AUDIENCE)))

    for name, asgi in apps:
        async with asgi.router.lifespan_context(asgi):
            counter = _Counter(name, asgi, headers, found)
            if "small" in documents:
                doc = documents["small"]
                found.small[name] = await counter.once(doc, doc.bodies(rotation[:1])[0])
            if "page" in documents:
                doc = documents["page"]
                found.page[name] = {
                    body["variables"]["code"]: await counter.once(doc, body)
                    for body in doc.bodies(rotation)
                }
            if "history" in documents:
                doc = documents["history"]
                found.history[name] = {
                    first: await counter.once(doc, doc.page_of(first)) for first in HISTORY_COUNTED
                }
            await counter.client.aclose()
    return found


# -- load -----------------------------------------------------------------------------------

LUA_TEMPLATE = """
-- generated by scripts/bench.py: POST the document's bodies, rotating over them
local bodies = {
@BODIES@
}
local n = #bodies
local threads = {}
local next_offset = 0

wrk.method = "POST"
wrk.path = "@PATH@"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @TOKEN@"

function setup(thread)
  thread:set("offset", next_offset)
  next_offset = next_offset + 131
  table.insert(threads, thread)
end

function init(args)
  i = offset % n
  graphql_errors = 0
  non2xx = 0
end

function request()
  i = i % n + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif string.find(body, '"errors"', 1, true) then
    graphql_errors = graphql_errors + 1
  end
end

function done(summary, latency, requests)
  local gql, bad = 0, 0
  for _, thread in ipairs(threads) do
    gql = gql + thread:get("graphql_errors")
    bad = bad + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "graphql_errors": %d, '
    .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, bad, gql, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def write_lua(path: Path, token: str, url_path: str, bodies: list[dict[str, Any]]) -> None:
    text = ",\n".join(f"  [==[{json.dumps(body)}]==]" for body in bodies)
    path.write_text(
        LUA_TEMPLATE.replace("@BODIES@", text).replace("@TOKEN@", token).replace("@PATH@", url_path)
    )


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk not found; trying `apt-get install -y wrk` ...", file=sys.stderr)
    if shutil.which("apt-get"):
        for command in (
            ["apt-get", "install", "-y", "wrk"],
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "wrk"],
        ):
            subprocess.run(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
            )
            found = shutil.which("wrk")
            if found:
                return found
    raise fail(
        "the load tool `wrk` is not installed and `apt-get install -y wrk` did not install it "
        "(needs root and Debian's package archive). Install wrk and run again."
    )


def run_wrk(
    wrk: str,
    pin: list[str],
    name: str,
    url: str,
    script: Path,
    seconds: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    command = [
        *pin,
        wrk,
        "-t",
        str(args.threads),
        "-c",
        str(args.connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise fail(
        f"wrk gave no result for {name} (exit {done.returncode}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (the only one unless --rounds > 1)."""
    ranked = sorted(runs, key=lambda run: run["rps"])
    return ranked[(len(ranked) - 1) // 2]


# -- main -----------------------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=_HelpFormatter
    )
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="sqlite: a temporary file; postgresql: a scratch database made through "
        f"BENCH_POSTGRES_URL (default {DEFAULT_POSTGRES_URL}), dropped at the end",
    )
    parser.add_argument(
        "--documents",
        default="small,page,history",
        help="comma-separated: small, page, history",
    )
    parser.add_argument("--orders", type=int, default=100_000, help="orders to seed")
    parser.add_argument(
        "--my-orders", type=int, default=300, help="orders of the bench customer (of --orders)"
    )
    parser.add_argument(
        "--customers", type=int, default=1000, help="customers, the bench customer included"
    )
    parser.add_argument(
        "--duration", type=float, default=15, help="measured seconds per target and document"
    )
    parser.add_argument(
        "--warmup", type=float, default=3, help="warm-up seconds per target and document"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measured runs per target and document, alternating the targets; the median "
        "is reported",
    )
    parser.add_argument(
        "--codes", type=int, default=1000, help="codes of the bench customer the load rotates over"
    )
    parser.add_argument(
        "--compare-plans",
        action="store_true",
        help="also run the app with COMPILED_PLANS=off and print graphql/graphql-noplans",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers to CPU 0 and wrk to CPU 1"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (and the PostgreSQL database)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    known = load_documents()
    args.document_names = [d.strip() for d in args.documents.split(",") if d.strip()]
    unknown = [d for d in args.document_names if d not in known]
    if unknown or not args.document_names:
        parser.error(f"--documents: unknown {unknown}; choose from {', '.join(known)}")
    if args.customers < 2:
        parser.error("--customers must be at least 2")
    if not 1 <= args.my_orders <= args.orders:
        parser.error("--my-orders must be between 1 and --orders")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.warmup + args.duration > 800:
        parser.error("warm-up + duration must stay under 800 s (a token lives 900 s)")
    return args


@dataclass
class Run:
    """Everything measured, for the report."""

    database: str
    seeded: Seeded
    documents: list[Document]
    target_names: list[str]
    statements: Statements
    checks: dict[str, dict[str, list[str]]]  # document -> target -> problems before the load
    after: dict[str, dict[str, list[str]]]  # the same after the load
    runs: dict[str, dict[str, list[dict[str, Any]]]]  # document -> target -> runs
    pinned: bool
    wrk_version: str
    load_before: float
    rotation: list[str]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    documents = [load_documents()[name] for name in args.document_names]
    by_name = {d.name: d for d in documents}
    wrk = ensure_wrk()
    cpus = os.cpu_count() or 1
    pinned = not args.no_pin and cpus >= 2 and shutil.which("taskset") is not None
    server_pin = ["taskset", "-c", "0"] if pinned else []
    wrk_pin = ["taskset", "-c", "1"] if pinned else []

    load_before = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="orders-bench-"))
    secret = secrets.token_urlsafe(48)
    tokens = AccessTokens(secret, ISSUER, AUDIENCE, TOKEN_TTL)
    targets: list[Target] = []
    database: ScratchDatabase | None = None
    counters: list[SessionCount] = []
    try:
        if args.database == "postgresql":
            admin = os.environ.get("BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL
            database = ScratchDatabase.postgresql(admin)
        else:
            database = ScratchDatabase.sqlite(str(workdir / "bench.db"))
        print(
            f"bench: seeding {args.orders:,} orders ({args.my_orders} of the bench customer) "
            f"into {database.shown} ...",
            flush=True,
        )
        try:
            seeded = seed(database.url, args.orders, args.customers, args.my_orders)
        except SeedError as exc:
            raise fail(str(exc)) from exc
        print(
            f"bench: seeded in {seeded.seconds:.1f} s: "
            + ", ".join(f"{n:,} {table}" for table, n in seeded.rows.items()),
            flush=True,
        )
        rotation = list(seeded.expected)
        random.Random(7).shuffle(rotation)
        rotation = rotation[: args.codes]

        def new_token() -> str:
            return tokens.issue(
                seeded.user_public_id, "CUSTOMER", seeded.session_public_id, datetime.now(UTC)
            )

        print("bench: counting statements in-process ...", flush=True)
        statements = asyncio.run(
            count_statements(
                database.url, secret, new_token(), by_name, rotation, args.compare_plans
            )
        )
        for problem in statements.problems[:5]:
            print(f"  {problem}", file=sys.stderr)

        env = {
            **os.environ,
            "DATABASE_URL": database.url,
            "JWT_SECRET": secret,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "RATE_LOOKUPS_PER_USER": RAISED_LIMIT,
            "RATE_LOOKUPS_PER_IP": RAISED_LIMIT,
            "LOG_LEVEL": "WARNING",
            "APP_ENV": "development",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REDIS_URL", None)
        names = [GRAPHQL, BASELINE, *([NOPLANS] if args.compare_plans else [])]
        ports = {name: free_port() for name in names}
        commands = server_commands(server_pin, ports, args.compare_plans)
        targets = [
            Target(name, commands[name], ports[name], workdir / f"{name}.log") for name in names
        ]
        for target in targets:
            target.start({**env, "COMPILED_PLANS": "off" if target.name == NOPLANS else "on"})
        print(
            "bench: servers up ("
            + ", ".join(f"{t.name} :{t.port}" for t in targets)
            + f"); pinning: {'servers CPU 0, wrk CPU 1' if pinned else 'off'}",
            flush=True,
        )

        checks: dict[str, dict[str, list[str]]] = {}
        with httpx.Client(timeout=30, trust_env=False) as client:  # no proxy for 127.0.0.1
            answers = Answers(secret, new_token())
            for document in documents:
                bodies = document.check_bodies(rotation)
                checks[document.name] = answers.check(
                    client, targets, document, bodies, seeded.expected
                )
                bad = {n: p for n, p in checks[document.name].items() if p}
                if bad:
                    for name, problems in bad.items():
                        print(
                            f"bench: {document.name}: {name}: {len(problems)}/{len(bodies)} "
                            f"wrong, first: {problems[0]}",
                            file=sys.stderr,
                        )
                else:
                    print(
                        f"bench: {document.name}: every target gives the app's answer "
                        f"({len(bodies)} requests each)",
                        flush=True,
                    )

        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        sessions = database.sessions()
        counters.append(sessions)
        loaded = [d for d in documents if not any(checks[d.name].values())]
        for document in loaded:
            runs[document.name] = {t.name: [] for t in targets}
            bodies = document.bodies(rotation)
            for round_ in range(args.rounds):
                # Alternate the order between rounds, so a drift in the machine's load does
                # not always fall on the same target.
                for target in targets if round_ % 2 == 0 else targets[::-1]:
                    script = workdir / f"{document.name}-{target.name}.lua"
                    write_lua(script, new_token(), path_for(target.name, document), bodies)
                    warmup = args.warmup if round_ == 0 else 0
                    steps = f"warm-up {warmup:g} s, then " if warmup > 0 else ""
                    print(
                        f"bench: {document.name}: round {round_ + 1}/{args.rounds}: "
                        f"{target.name}: {steps}{args.duration:g} s measured ...",
                        flush=True,
                    )
                    url = target.base() + path_for(target.name, document)
                    if warmup > 0:
                        run_wrk(wrk, wrk_pin, target.name, url, script, warmup, args)
                    before = sessions.read()
                    result = run_wrk(wrk, wrk_pin, target.name, url, script, args.duration, args)
                    after_run = sessions.read()
                    result["db_connections_opened"] = (
                        after_run - before if before is not None and after_run is not None else None
                    )
                    runs[document.name][target.name].append(result)
                    if target.process is not None and target.process.poll() is not None:
                        raise fail(f"{target.name} died during the load:\n{target.log_tail()}")

        after: dict[str, dict[str, list[str]]] = {}
        with httpx.Client(timeout=30, trust_env=False) as client:
            answers = Answers(secret, new_token())
            for document in loaded:
                bodies = document.check_bodies(rotation)[:CHECK_AFTER]
                after[document.name] = answers.check(
                    client, targets, document, bodies, seeded.expected
                )
    finally:
        for counter in counters:
            counter.close()
        for target in targets:
            target.stop()
        if database is not None and not args.keep:
            database.drop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    run = Run(
        database=args.database,
        seeded=seeded,
        documents=documents,
        target_names=names,
        statements=statements,
        checks=checks,
        after=after,
        runs=runs,
        pinned=pinned,
        wrk_version=(version.stdout + version.stderr).split("[")[0].strip(),
        load_before=load_before,
        rotation=rotation,
    )
    report(args, run)
    if args.keep:
        kept = f" and the database {database.shown}" if database and database.name else ""
        print(f"bench: kept {workdir} (logs, Lua scripts){kept}")
    failed = (
        bool(statements.problems)
        or any(p for per in (*checks.values(), *after.values()) for p in per.values())
        or any(
            r["non2xx"] or r["graphql_errors"] or r["timeouts"]
            for per in runs.values()
            for target_runs in per.values()
            for r in target_runs
        )
    )
    return 1 if failed else 0


# -- report ---------------------------------------------------------------------------------


def report(args: argparse.Namespace, run: Run) -> None:
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print()
    print(
        f"customer pages over HTTP on {run.database}: {run.seeded.orders:,} orders (the bench "
        f"customer's {args.my_orders}, {len(run.rotation)} codes in rotation), {args.connections} "
        f"connections, {args.threads} wrk threads, {args.duration:g} s after {args.warmup:g} s "
        f"warm-up{rounds}"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {run.wrk_version}, pinning "
        f"{'on (servers CPU 0, wrk CPU 1)' if run.pinned else 'off'}, "
        f"load average before: {run.load_before:.2f}"
    )
    header = (
        f"{'document':<9} {'target':<16} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'non-2xx':>7} {'gql err':>7} {'sock err':>8} "
        f"{'check':>9} {'db conns':>8}"
    )
    print(header)
    print("-" * len(header))
    for document in run.documents:
        per = run.runs.get(document.name)
        if per is None:
            print(f"{document.name:<9} not loaded: a target answered wrongly before the load")
            for name, problems in run.checks[document.name].items():
                if problems:
                    print(f"{'':<9} {name}: {len(problems)} wrong, first: {problems[0][:600]}")
            continue
        for name in run.target_names:
            r = median_run(per[name])
            sock = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
            wrong = run.after.get(document.name, {}).get(name, [])
            checked = len(document.check_bodies(run.rotation)[:CHECK_AFTER])
            check = "ok" if not wrong else f"{len(wrong)}/{checked} bad"
            opened = "-" if r.get("db_connections_opened") is None else r["db_connections_opened"]
            print(
                f"{document.name:<9} {name:<16} {r['rps']:>8,.0f} {r['p50_us'] / 1000:>8.2f} "
                f"{r['p90_us'] / 1000:>8.2f} {r['p99_us'] / 1000:>8.2f} "
                f"{r['max_us'] / 1000:>8.1f} {r['non2xx']:>7} {r['graphql_errors']:>7} "
                f"{sock:>8} {check:>9} {opened:>8}"
            )

    print()
    print("ratios (req/s of the median runs, measured in this run):")
    summary: dict[str, Any] = {}
    for document in run.documents:
        per = run.runs.get(document.name)
        if per is None:
            summary[document.name] = {"loaded": False, "checks": run.checks[document.name]}
            continue
        ratio = median_run(per[GRAPHQL])["rps"] / median_run(per[BASELINE])["rps"]
        verdict = "meets" if ratio >= document.target else "BELOW"
        line = (
            f"  {document.name:<8} graphql/baseline {ratio:5.2f}x  (target >= "
            f"{document.target:.2f}x: {verdict})"
        )
        per_round = [g["rps"] / b["rps"] for g, b in zip(per[GRAPHQL], per[BASELINE], strict=True)]
        entry: dict[str, Any] = {
            "ratio": ratio,
            "target": document.target,
            "ratio_per_round": per_round,
            "targets": {name: {"median": median_run(rs), "runs": rs} for name, rs in per.items()},
            "post_load_check_failures": {n: len(p) for n, p in run.after[document.name].items()},
        }
        if NOPLANS in per:
            gain = median_run(per[GRAPHQL])["rps"] / median_run(per[NOPLANS])["rps"]
            compiled = run.statements.compiled.get(document.name)
            if compiled is False:
                why = "no compiled plan for it: both take the general path"
            else:
                keep = "earn their place" if gain >= PLANS_KEEP else "do not earn their place"
                why = f"plans {keep}: >= {PLANS_KEEP}x"
            line += f";  plans/no-plans {gain:4.2f}x ({why})"
            entry["plans_gain"] = gain
            entry["compiled_plan"] = compiled
        print(line)
        if args.rounds > 1:
            print("           per round: " + ", ".join(f"{r:.2f}x" for r in per_round))
        summary[document.name] = entry

    print()
    print("SQL statements per request (one warm request, counted in-process):")
    st = run.statements
    names = [n for n in run.target_names if n in (st.small or st.page or st.history)]
    print(f"  {'':<32}" + "".join(f"{n:>17}" for n in names))
    if st.small:
        print(f"  {'small':<32}" + "".join(f"{st.small[n]:>17}" for n in names))
    if st.page:
        kinds = run.seeded.kind_of
        means = {n: statistics.mean(st.page[n].values()) for n in names}
        label = f"page, mean over {len(st.page[GRAPHQL])} orders"
        print(f"  {label:<32}" + "".join(f"{means[n]:>17.2f}" for n in names))
        for kind in ordered_kinds(kinds):
            of_kind = [c for c in st.page[GRAPHQL] if kinds[c] == kind]
            if not of_kind:
                continue
            cells = "".join(f"{span(st.page[n][c] for c in of_kind):>17}" for n in names)
            print(f"  {'  ' + kind.replace('_', ' ') + f' ({len(of_kind)})':<32}" + cells)
    for first in HISTORY_COUNTED:
        if st.history:
            print(
                f"  {f'history, first: {first}':<32}"
                + "".join(f"{st.history[n][first]:>17}" for n in names)
            )
    if st.history:
        counts = set(st.history[GRAPHQL].values())
        same = "independent of the page size" if len(counts) == 1 else "GROWS with the page size"
        worst = max(counts)
        verdict = "meets" if worst <= STATEMENT_TARGET else "BELOW"
        print(
            f"  history: {same}; at most {worst} statements "
            f"(target <= {STATEMENT_TARGET}: {verdict})"
        )
    for problem in st.problems[:5]:
        print(f"  in-process answer with errors: {problem}")

    if run.load_before > 0.5:
        print(
            f"\nnote: the load average was {run.load_before:.2f} before the run: other processes "
            "were using the CPUs, so these figures are noisier than on an idle machine"
        )
    if run.database == "postgresql":
        print(
            "note: db conns = connections the target opened to PostgreSQL during its measured "
            "run (pg_stat_database.sessions; a pool that keeps its connections opens none)"
        )
        print(
            "note: PostgreSQL's own processes are not pinned: they share the CPUs with the "
            "server under load and wrk"
        )
    if args.json:
        payload = {
            "database": run.database,
            "orders": run.seeded.orders,
            "my_orders": args.my_orders,
            "rows": run.seeded.rows,
            "rotation": len(run.rotation),
            "connections": args.connections,
            "threads": args.threads,
            "duration": args.duration,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "pinned": run.pinned,
            "load_average_before": run.load_before,
            "documents": summary,
            "statements": {
                "small": st.small,
                "page": {
                    n: {
                        "mean": statistics.mean(v.values()),
                        "min": min(v.values()),
                        "max": max(v.values()),
                    }
                    for n, v in st.page.items()
                },
                "history": st.history,
                "problems": st.problems,
            },
            "pre_load_check_failures": {
                doc: {n: len(p) for n, p in per.items()} for doc, per in run.checks.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


def ordered_kinds(kinds: dict[str, str]) -> Iterator[str]:
    order = ["not_shipped", "cancelled", "partially_shipped", "in_transit", "delivered", "returned"]
    present = set(kinds.values())
    yield from (k for k in order if k in present)
    yield from sorted(present - set(order))


def span(values: Iterable[int]) -> str:
    found = sorted(set(values))
    return str(found[0]) if len(found) == 1 else f"{found[0]}-{found[-1]}"


def load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


if __name__ == "__main__":
    raise SystemExit(main())
