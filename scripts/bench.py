"""`order(code)` over HTTP: the real server against a bare Starlette route, in one run.

Seeds a fresh SQLite database (N orders, 1-2 lines each) with SQLAlchemy Core, starts
`python -m app.cli serve` and `scripts/bench_baseline.py` (same uvicorn settings, one
process each), checks that both answer the order correctly, then loads each in turn with
wrk (warm-up, then the measured run) and prints req/s, p50/p99 latency, non-2xx and the
ratio graphql/baseline. Run it as `scripts/bench [--orders N] [--duration S] ...`.

By default the servers are pinned to CPU 0 and wrk to CPU 1 (`taskset`), so the load tool
never competes with the server it measures; `--no-pin` lets the OS place them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import insert  # noqa: E402

import app.models  # noqa: E402, F401  (registers every table)
from app.accounts.models import AuthSession, User  # noqa: E402
from app.catalog.models import Product  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.orders.models import Order, OrderLine, OrderStatus  # noqa: E402
from app.orders.pricing import compute_totals  # noqa: E402
from app.security import codes  # noqa: E402
from app.security.tokens import AccessTokens, new_public_id  # noqa: E402
from app.settings import Settings  # noqa: E402

QUERY = "query($code:String!){ order(code:$code){ code status total { amount currency } } }"
ISSUER = Settings.jwt_issuer
AUDIENCE = Settings.jwt_audience
TOKEN_TTL = 900  # the app's maximum (Settings.validate)
RAISED_LIMIT = "1000000000/minute"
CHUNK = 10_000
STATUSES = [OrderStatus.PLACED, OrderStatus.PROCESSING, OrderStatus.SHIPPED, OrderStatus.DELIVERED]


def fail(message: str) -> SystemExit:
    return SystemExit(f"bench: FAILED: {message}")


# -- seeding ------------------------------------------------------------------------------


@dataclass
class Seeded:
    user_public_id: str
    session_public_id: str
    expected: dict[str, dict[str, Any]]  # canonical code -> {status, total}
    seconds: float
    orders: int
    lines: int


def seed(database_url: str, n_orders: int, n_customers: int, n_codes: int) -> Seeded:
    started = time.perf_counter()
    upgrade(database_url)
    engine = make_engine(database_url)
    rng = random.Random(20260101)
    now = datetime.now(UTC)
    product_prices = [(1, "BENCH-TEE", "Bench T-shirt", 1999)]
    users = [
        {
            "id": i + 1,
            "public_id": new_public_id(),
            "email": f"bench-customer-{i}@shop.example",
            "password_hash": "!bench-no-login",
            "name": f"Bench Customer {i}",
            "role": "CUSTOMER",
            "created_at": now,
        }
        for i in range(n_customers)
    ]
    customer = users[0]
    chosen: dict[str, dict[str, Any]] = {}
    mine: list[tuple[str, dict[str, Any]]] = []
    n_lines = 0
    with engine.begin() as conn:
        conn.execute(
            insert(Product.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": pid,
                    "sku": sku,
                    "name": name,
                    "description": "",
                    "price_minor": price,
                    "currency": "EUR",
                    "stock": 1_000_000,
                    "bin_location": "A-01",
                    "active": True,
                }
                for pid, sku, name, price in product_prices
            ],
        )
        conn.execute(insert(User.__table__), users)  # type: ignore[attr-defined]
        seen: set[str] = set()
        order_id = 0
        line_id = 0
        for start in range(0, n_orders, CHUNK):
            orders: list[dict[str, Any]] = []
            lines: list[dict[str, Any]] = []
            for _ in range(min(CHUNK, n_orders - start)):
                order_id += 1
                code = codes.generate()
                while code in seen:
                    code = codes.generate()
                seen.add(code)
                owner = users[order_id % n_customers]
                quantities = [rng.randint(1, 3) for _ in range(rng.randint(1, 2))]
                _, sku, name, price = product_prices[0]
                totals = compute_totals(
                    [price * q for q in quantities],
                    shipping_flat=495,
                    free_from=5000,
                    tax_basis_points=2000,
                )
                placed = now - timedelta(minutes=order_id)
                status = STATUSES[order_id % len(STATUSES)].value
                orders.append(
                    {
                        "id": order_id,
                        "code": code,
                        "user_id": owner["id"],
                        "status": status,
                        "currency": "EUR",
                        "subtotal_minor": totals.subtotal_minor,
                        "shipping_minor": totals.shipping_minor,
                        "tax_minor": totals.tax_minor,
                        "total_minor": totals.total_minor,
                        "refunded_minor": 0,
                        "ship_name": owner["name"],
                        "ship_line1": "1 Bench Street",
                        "ship_line2": "",
                        "ship_city": "Berlin",
                        "ship_postal_code": "10115",
                        "ship_country": "DE",
                        "payment_brand": "visa",
                        "payment_last4": "4242",
                        "payment_reference": f"ch_bench_{order_id}",
                        "idempotency_key": f"bench-{order_id}",
                        "request_fingerprint": "0" * 64,
                        "estimated_delivery": date(2026, 1, 5),
                        "placed_at": placed,
                        "updated_at": placed,
                        "cancelled_at": None,
                    }
                )
                for quantity in quantities:
                    line_id += 1
                    lines.append(
                        {
                            "id": line_id,
                            "order_id": order_id,
                            "product_id": 1,
                            "sku": sku,
                            "name": name,
                            "unit_price_minor": price,
                            "quantity": quantity,
                        }
                    )
                if owner is customer:
                    mine.append(
                        (code, {"status": status, "amount": totals.total_minor, "currency": "EUR"})
                    )
            conn.execute(insert(Order.__table__), orders)  # type: ignore[attr-defined]
            conn.execute(insert(OrderLine.__table__), lines)  # type: ignore[attr-defined]
            n_lines += len(lines)
        session_public_id = new_public_id()
        conn.execute(
            insert(AuthSession.__table__),  # type: ignore[attr-defined]
            [
                {
                    "public_id": session_public_id,
                    "user_id": customer["id"],
                    "created_at": now,
                    "revoked_at": None,
                    "revoked_reason": None,
                }
            ],
        )
    engine.dispose()
    if not mine:
        raise fail("the bench customer owns no order: use more --orders")
    for code, expected in rng.sample(mine, min(n_codes, len(mine))):
        chosen[code] = expected
    return Seeded(
        user_public_id=customer["public_id"],
        session_public_id=session_public_id,
        expected=chosen,
        seconds=time.perf_counter() - started,
        orders=n_orders,
        lines=n_lines,
    )


# -- processes ----------------------------------------------------------------------------


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
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def results(self) -> dict[str, Any]:
        """The run with the median req/s (the only one unless --rounds > 1)."""
        ranked = sorted(self.runs, key=lambda run: run["rps"])
        return ranked[(len(ranked) - 1) // 2]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

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


# -- checks -------------------------------------------------------------------------------


def body_for(code: str) -> dict[str, Any]:
    return {"query": QUERY, "variables": {"code": code}}


def check_answer(code: str, expected: dict[str, Any], response: httpx.Response) -> str | None:
    """None if the response is the expected order, else what is wrong with it."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    try:
        payload = response.json()
    except ValueError:
        return f"not JSON: {response.text[:300]}"
    if payload.get("errors"):
        return f"errors: {json.dumps(payload['errors'])[:300]}"
    order = (payload.get("data") or {}).get("order")
    want = {
        "code": codes.display(code),
        "status": expected["status"],
        "total": {"amount": expected["amount"], "currency": expected["currency"]},
    }
    if order != want:
        return f"wrong order: got {order}, want {want}"
    return None


def verify(target: Target, token: str, expected: dict[str, dict[str, Any]], count: int) -> int:
    """`count` requests over the codes; returns how many were wrong (and prints the first)."""
    headers = {"authorization": f"Bearer {token}"}
    wrong = 0
    items = list(expected.items())
    with httpx.Client(timeout=10, trust_env=False) as client:  # no proxy for 127.0.0.1
        for code, want in items[:count]:
            response = client.post(target.url, json=body_for(code), headers=headers)
            problem = check_answer(code, want, response)
            if problem is not None:
                if wrong == 0:
                    print(f"  {target.name}: {problem}", file=sys.stderr)
                wrong += 1
    return wrong


# -- load ---------------------------------------------------------------------------------

LUA_TEMPLATE = """
-- generated by scripts/bench.py: POST order(code) bodies, rotating over the codes
local bodies = {
@BODIES@
}
local n = #bodies
local threads = {}
local next_offset = 0

wrk.method = "POST"
wrk.path = "/graphql"
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


def write_lua(path: Path, token: str, codes_: list[str]) -> None:
    bodies = ",\n".join(f"  [==[{json.dumps(body_for(code))}]==]" for code in codes_)
    path.write_text(LUA_TEMPLATE.replace("@BODIES@", bodies).replace("@TOKEN@", token))


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
    wrk: str, pin: list[str], target: Target, script: Path, seconds: float, args: argparse.Namespace
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
        target.url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise fail(
        f"wrk gave no result for {target.name} (exit {done.returncode}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )


# -- main ---------------------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=_HelpFormatter
    )
    parser.add_argument("--orders", type=int, default=100_000, help="orders to seed")
    parser.add_argument("--duration", type=float, default=15, help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per target")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measured runs per target, alternating the targets; the median is reported",
    )
    parser.add_argument("--customers", type=int, default=5, help="customers owning the orders")
    parser.add_argument("--codes", type=int, default=1000, help="codes the load rotates over")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers to CPU 0 and wrk to CPU 1"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.orders < args.customers:
        parser.error("--orders must be at least --customers")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.warmup + args.rounds * args.duration > 400:
        parser.error("warm-up + rounds x duration must stay under 400 s (tokens live 900 s)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk()
    cpus = os.cpu_count() or 1
    pinned = not args.no_pin and cpus >= 2 and shutil.which("taskset") is not None
    server_pin = ["taskset", "-c", "0"] if pinned else []
    wrk_pin = ["taskset", "-c", "1"] if pinned else []

    load_before = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="orders-bench-"))
    database_url = f"sqlite:///{workdir / 'bench.db'}"
    secret = secrets.token_urlsafe(48)
    targets: list[Target] = []
    try:
        print(f"bench: seeding {args.orders:,} orders into {workdir / 'bench.db'} ...", flush=True)
        seeded = seed(database_url, args.orders, args.customers, args.codes)
        print(
            f"bench: seeded {seeded.orders:,} orders, {seeded.lines:,} lines, "
            f"{args.customers} customers in {seeded.seconds:.1f} s; "
            f"{len(seeded.expected)} codes of one customer in rotation",
            flush=True,
        )
        tokens = AccessTokens(secret, ISSUER, AUDIENCE, TOKEN_TTL)

        def new_token() -> str:
            return tokens.issue(
                seeded.user_public_id, "CUSTOMER", seeded.session_public_id, datetime.now(UTC)
            )

        env = {
            **os.environ,
            "DATABASE_URL": database_url,
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
        graphql_port, baseline_port = free_port(), free_port()
        targets = [
            Target(
                "graphql",
                [
                    *server_pin,
                    sys.executable,
                    "-m",
                    "app.cli",
                    "serve",
                    "--no-migrate",
                    "--no-sender",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(graphql_port),
                ],
                graphql_port,
                workdir / "graphql.log",
            ),
            Target(
                "baseline",
                # The same uvicorn settings as `orders-api serve` (app/cli.py): one process,
                # default loop/http (uvloop/httptools), no access log, no proxy headers.
                [
                    *server_pin,
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench_baseline:app",
                    "--app-dir",
                    str(ROOT / "scripts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(baseline_port),
                    "--no-access-log",
                    "--no-proxy-headers",
                    "--log-level",
                    "warning",
                    "--timeout-graceful-shutdown",
                    "10",
                ],
                baseline_port,
                workdir / "baseline.log",
            ),
        ]
        for target in targets:
            target.start(env)
        print(
            f"bench: servers up (graphql :{graphql_port}, baseline :{baseline_port}); "
            f"pinning: {'servers CPU 0, wrk CPU 1' if pinned else 'off'}",
            flush=True,
        )

        first_code, first_expected = next(iter(seeded.expected.items()))
        for target in targets:
            if verify(target, new_token(), {first_code: first_expected}, 1):
                raise fail(f"{target.name} did not answer the order correctly before the load")
        print("bench: both targets return the order correctly", flush=True)

        code_list = list(seeded.expected)
        for target in targets:
            write_lua(workdir / f"{target.name}.lua", new_token(), code_list)
        for round_ in range(args.rounds):
            # Alternate the order between rounds, so a drift in the machine's load does not
            # always fall on the same target.
            for target in targets if round_ % 2 == 0 else targets[::-1]:
                script = workdir / f"{target.name}.lua"
                warmup = args.warmup if round_ == 0 else 0
                steps = f"warm-up {warmup:g} s, then " if warmup > 0 else ""
                print(
                    f"bench: round {round_ + 1}/{args.rounds}: {target.name}: "
                    f"{steps}{args.duration:g} s measured ...",
                    flush=True,
                )
                if warmup > 0:
                    run_wrk(wrk, wrk_pin, target, script, warmup, args)
                target.runs.append(run_wrk(wrk, wrk_pin, target, script, args.duration, args))
                if target.process is not None and target.process.poll() is not None:
                    raise fail(f"{target.name} died during the load:\n{target.log_tail()}")

        problems = {t.name: verify(t, new_token(), seeded.expected, 20) for t in targets}
    finally:
        for target in targets:
            target.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    report(args, seeded, targets, problems, pinned, wrk, load_before)
    if args.keep:
        print(f"bench: kept {workdir} (logs, Lua scripts, database)")
    bad = any(problems.values()) or any(
        run["non2xx"] or run["graphql_errors"] or run["timeouts"] for t in targets for run in t.runs
    )
    return 1 if bad else 0


def report(
    args: argparse.Namespace,
    seeded: Seeded,
    targets: list[Target],
    problems: dict[str, int],
    pinned: bool,
    wrk: str,
    load_before: float,
) -> None:
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    version = (wrk_version.stdout + wrk_version.stderr).split("[")[0].strip()
    by_name = {t.name: t for t in targets}
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print()
    print(
        f"order(code) over HTTP: {seeded.orders:,} orders, {args.connections} connections, "
        f"{args.threads} wrk threads, {args.duration:g} s after {args.warmup:g} s warm-up{rounds}"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {version}, pinning "
        f"{'on (servers CPU 0, wrk CPU 1)' if pinned else 'off'}, "
        f"load average before: {load_before:.2f}"
    )
    header = (
        f"{'target':<10} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'non-2xx':>8} {'gql err':>8} {'sock err':>8} {'check':>9}"
    )
    print(header)
    print("-" * len(header))
    for target in targets:
        r = target.results
        sock = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
        check = "ok" if problems[target.name] == 0 else f"{problems[target.name]}/20 bad"
        print(
            f"{target.name:<10} {r['rps']:>9,.0f} {r['p50_us'] / 1000:>8.2f} "
            f"{r['p90_us'] / 1000:>8.2f} {r['p99_us'] / 1000:>8.2f} {r['max_us'] / 1000:>8.1f} "
            f"{r['non2xx']:>8} {r['graphql_errors']:>8} {sock:>8} {check:>9}"
        )
    graphql, baseline = by_name["graphql"], by_name["baseline"]
    ratios = [g["rps"] / b["rps"] for g, b in zip(graphql.runs, baseline.runs, strict=True)]
    ratio = graphql.results["rps"] / baseline.results["rps"]
    print(f"\nratio graphql/baseline: {ratio:.2f}x  (target >= 0.50x)")
    if args.rounds > 1:
        print("ratio per round: " + ", ".join(f"{r:.2f}x" for r in ratios))
    if load_before > 0.5:
        print(
            f"note: the load average was {load_before:.2f} before the run: other processes "
            "were using the CPUs, so these figures are noisier than on an idle machine"
        )
    if args.json:
        summary = {
            "orders": seeded.orders,
            "connections": args.connections,
            "threads": args.threads,
            "duration": args.duration,
            "rounds": args.rounds,
            "pinned": pinned,
            "load_average_before": load_before,
            "ratio": ratio,
            "ratio_per_round": ratios,
            "targets": {t.name: {"median": t.results, "runs": t.runs} for t in targets},
            "post_load_check_failures": problems,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


def load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


if __name__ == "__main__":
    raise SystemExit(main())
