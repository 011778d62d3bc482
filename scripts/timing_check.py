"""Enumeration by timing: can a caller tell "not yours" from "not found" by how long the
answer takes (DESIGN §3: no measurable timing difference)?

Starts the real server (development mode, lookup budgets raised so nothing is refused),
logs in as bob and sends interleaved PAIRS of `order(code)` requests on one keep-alive
connection, in random order within each pair: alice's real order code ("not yours") and a
fresh random valid code ("not found"). Latency is measured client-side with
time.perf_counter_ns around each request. Then:

* a two-sided Wilcoxon signed-rank test on the paired latencies (normal approximation with
  tie and continuity corrections; scipy is not a dependency), and
* a check that bodies, status codes and header sets (minus date and request id) are
  identical.

Prints n, the medians and the p-value; exits 1 if p < --alpha (0.001) or any answer
differs, 2 if the setup fails. `scripts/timing_check --help`.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # app.security.codes, to make valid codes

from app.security import codes  # noqa: E402

DEMO_PASSWORD = "orders-demo-2026"
LOOKUP = "query Lookup($code: String!) { order(code: $code) { code status } }"
VOLATILE_HEADERS = {"date", "x-request-id"}
UNLIMITED = {
    "RATE_LOOKUPS_PER_USER": "100000/minute",
    "RATE_LOOKUPS_PER_IP": "100000/minute",
    "RATE_FAILED_LOOKUPS_PER_USER": "100000/minute",
    "RATE_FAILED_LOOKUPS_PER_IP": "100000/minute",
}


# -- statistics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Wilcoxon:
    n: int  # pairs with a non-zero difference
    w_plus: float
    z: float
    p_value: float


def wilcoxon_signed_rank(differences: list[float]) -> Wilcoxon:
    """Two-sided Wilcoxon signed-rank test, normal approximation: zero differences dropped
    (Wilcoxon's method), average ranks for ties with the tie correction of the variance, and
    a continuity correction of 0.5. Matches scipy.stats.wilcoxon(method="approx",
    correction=True)."""
    nonzero = [d for d in differences if d != 0]
    n = len(nonzero)
    if n == 0:
        return Wilcoxon(0, 0.0, 0.0, 1.0)
    ordered = sorted(range(n), key=lambda i: abs(nonzero[i]))
    ranks = [0.0] * n
    tie_term = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(nonzero[ordered[j + 1]]) == abs(nonzero[ordered[i]]):
            j += 1
        average = (i + j) / 2 + 1  # ranks i+1 .. j+1
        for k in range(i, j + 1):
            ranks[ordered[k]] = average
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    w_plus = sum(r for r, d in zip(ranks, nonzero, strict=True) if d > 0)
    mean = n * (n + 1) / 4
    variance = n * (n + 1) * (2 * n + 1) / 24 - tie_term / 48
    if variance <= 0:
        return Wilcoxon(n, w_plus, 0.0, 1.0)
    deviation = w_plus - mean
    corrected = max(0.0, abs(deviation) - 0.5)
    z = math.copysign(corrected / math.sqrt(variance), deviation)
    p_value = math.erfc(abs(z) / math.sqrt(2))  # two-sided: 2 * (1 - Phi(|z|))
    return Wilcoxon(n, w_plus, z, min(1.0, p_value))


# -- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalServer:
    """`python -m app.cli serve` on a free loopback port, demo data, generous budgets."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "APP_ENV": "development",
            "JWT_SECRET": secrets.token_urlsafe(48),
            "CARRIER_WEBHOOK_SECRET": secrets.token_urlsafe(48),
            "DATABASE_URL": f"sqlite:///{workdir / 'orders.db'}",
            "MAIL_DIR": str(workdir / "mail"),
            "LOG_LEVEL": "WARNING",
            **UNLIMITED,
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.process: subprocess.Popen[bytes] | None = None

    def _cli(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=self.env,
            cwd=self.workdir,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self._cli("migrate")
        self._cli("seed-demo")
        stderr = (self.workdir / "server.stderr").open("wb")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.cli", "serve", "--no-sender"),
                *("--host", "127.0.0.1", "--port", str(self.port)),
            ],
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.stderr_tail()}")
            try:
                health = f"http://127.0.0.1:{self.port}/healthz"
                if httpx.get(health, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not healthy in 30 s: {self.stderr_tail()}")

    def stderr_tail(self) -> str:
        path = self.workdir / "server.stderr"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# -- the measurement ----------------------------------------------------------------------


def login(client: httpx.Client, url: str, email: str) -> str:
    body = client.post(
        url,
        json={
            "query": "mutation L($e: String!, $p: String!) { login(email: $e, password: $p) "
            "{ tokens { accessToken } userErrors { message } } }",
            "variables": {"e": email, "p": DEMO_PASSWORD},
        },
    ).json()
    token: str = body["data"]["login"]["tokens"]["accessToken"]
    return token


def first_order_code(client: httpx.Client, url: str, token: str) -> str:
    body = client.post(
        url,
        json={"query": "{ myOrders(first: 1) { edges { node { code } } } }"},
        headers={"authorization": f"Bearer {token}"},
    ).json()
    code: str = body["data"]["myOrders"]["edges"][0]["node"]["code"]
    return code


@dataclass
class Answer:
    nanoseconds: int
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


def ask(client: httpx.Client, url: str, code: str) -> Answer:
    payload = {"query": LOOKUP, "variables": {"code": code}}
    started = time.perf_counter_ns()
    response = client.post(url, json=payload)
    body = response.read()
    elapsed = time.perf_counter_ns() - started
    headers = tuple(
        sorted(
            (name.lower(), value if name.lower() not in VOLATILE_HEADERS else "*")
            for name, value in response.headers.items()
        )
    )
    return Answer(elapsed, response.status_code, body, headers)


def measure(url: str, pairs: int, warmup: int, seed: int | None, alpha: float) -> int:
    rng = random.Random(seed)
    with httpx.Client(timeout=30.0) as setup:
        alice = login(setup, url, "alice@example.com")
        bob = login(setup, url, "bob@example.com")
        alices_code = first_order_code(setup, url, alice)
    not_yours: list[Answer] = []
    not_found: list[Answer] = []
    with httpx.Client(timeout=30.0, headers={"authorization": f"Bearer {bob}"}) as client:
        for index in range(warmup + pairs):
            unknown = codes.display(codes.generate())
            order = [("not_yours", alices_code), ("not_found", unknown)]
            rng.shuffle(order)
            answers = {kind: ask(client, url, code) for kind, code in order}
            if index >= warmup:
                not_yours.append(answers["not_yours"])
                not_found.append(answers["not_found"])

    differences = [a.nanoseconds - b.nanoseconds for a, b in zip(not_yours, not_found, strict=True)]
    test = wilcoxon_signed_rank([float(d) for d in differences])
    median_yours = statistics.median(a.nanoseconds for a in not_yours) / 1000
    median_found = statistics.median(a.nanoseconds for a in not_found) / 1000
    median_diff = statistics.median(differences) / 1000

    reference = not_yours[0]
    mismatches = []
    for kind, series in (("not yours", not_yours), ("not found", not_found)):
        for i, answer in enumerate(series):
            for part in ("status", "body", "headers"):
                if getattr(answer, part) != getattr(reference, part):
                    mismatches.append(f"{kind} #{i}: {part} differs")
    distinct_bodies = {a.body for a in not_yours + not_found}

    print(f"pairs (n): {len(differences)} (+{warmup} warm-up pairs discarded)")
    print(f"median latency, not yours: {median_yours:.1f} us")
    print(f"median latency, not found: {median_found:.1f} us")
    print(f"median paired difference (not yours - not found): {median_diff:+.1f} us")
    print(f"Wilcoxon signed-rank: n={test.n} W+={test.w_plus:.0f} z={test.z:+.3f}")
    print(f"p-value: {test.p_value:.4g}")
    print(f"distinct bodies: {len(distinct_bodies)}; status: {reference.status}")
    print(f"answer: {reference.body.decode(errors='replace')}")
    failed = False
    if mismatches:
        print(f"FAIL: answers differ ({len(mismatches)}), e.g. {mismatches[:3]}")
        failed = True
    if b"ORDER_NOT_FOUND" not in reference.body:
        print("FAIL: the answer is not ORDER_NOT_FOUND: the measurement measured nothing")
        failed = True
    if test.p_value < alpha:
        print(f"FAIL: p = {test.p_value:.4g} < {alpha}: the two answers are told apart by time")
        failed = True
    print("FAIL" if failed else f"PASS: same answers, no timing difference at alpha={alpha}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000, help="measured pairs (>= 1000)")
    parser.add_argument("--warmup", type=int, default=100, help="pairs discarded first")
    parser.add_argument("--alpha", type=float, default=0.001, help="fail below this p-value")
    parser.add_argument("--seed", type=int, default=None, help="order within pairs")
    parser.add_argument("--url", help="measure a running server with demo data instead")
    args = parser.parse_args(argv)
    if args.url:
        return measure(args.url, args.pairs, args.warmup, args.seed, args.alpha)
    with tempfile.TemporaryDirectory(prefix="timing-check-") as tmp:
        server = LocalServer(Path(tmp))
        try:
            server.start()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 2
        started = time.monotonic()
        try:
            code = measure(server.url, args.pairs, args.warmup, args.seed, args.alpha)
        finally:
            server.stop()
        print(f"measured in {time.monotonic() - started:.1f} s")
        return code


if __name__ == "__main__":
    raise SystemExit(main())
