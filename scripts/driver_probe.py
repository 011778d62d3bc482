"""How to reach PostgreSQL without blocking the event loop: the measurement behind the choice.

The same bare Starlette handler — the session check and the order lookup by code and owner
(two statements), a JSON answer — served six ways, each loaded with wrk in the same run:

  asyncpg     an asyncpg pool, awaited on the loop (what app/db.py's hot path does)
  psycopg     psycopg 3 async connections
  thread      psycopg 3 synchronous, both statements in one hop to a 10-thread pool
  thread2     the same, one hop per statement
  sa-core     SQLAlchemy's async engine and Core (`engine.connect()` + `execute`)
  sa-raw      SQLAlchemy's async pool, the statements on the raw asyncpg connection

Usage: scripts/driver_probe [--orders N] [--duration S] [--connections C]. Needs wrk and a
PostgreSQL at BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test); it
creates and drops a scratch database. The server is pinned to CPU 0 and wrk to CPU 1 when
the machine has two CPUs and `taskset`. docs/architecture.md quotes its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MODES = ("asyncpg", "psycopg", "thread", "thread2", "sa-core", "sa-raw")
SESSION = "SELECT user_id FROM probe_sessions WHERE public_id = $1 AND revoked_at IS NULL"
ORDER = "SELECT code, status, total, currency FROM probe_orders WHERE code = $1 AND user_id = $2"
POOL = 10


def _pyformat(sql: str) -> str:
    return sql.replace("$1", "%s").replace("$2", "%s")


def _named(sql: str) -> str:
    return sql.replace("$1", ":a").replace("$2", ":b")


# -- the server (run as `driver_probe.py serve MODE DSN`) -------------------------------------


def build_app(mode: str, dsn: str) -> Any:
    import asyncpg
    import psycopg
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state: dict[str, Any] = {}
    local = threading.local()

    def answer(row: Any) -> JSONResponse:
        code, status, total, currency = row
        body = {"order": {"code": code, "status": status, "total": total, "currency": currency}}
        return JSONResponse({"data": body})

    def sync_conn() -> Any:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(dsn, autocommit=True)
        return conn

    def both(code: str) -> Any:
        conn = sync_conn()
        user = conn.execute(_pyformat(SESSION), ("s1",)).fetchone()[0]
        return conn.execute(_pyformat(ORDER), (code, user)).fetchone()

    def one(sql: str, args: tuple[Any, ...]) -> Any:
        return sync_conn().execute(_pyformat(sql), args).fetchone()

    async def handle(request: Request) -> JSONResponse:
        code = request.query_params["code"]
        if mode == "asyncpg":
            async with state["pool"].acquire() as conn:
                user = await conn.fetchval(SESSION, "s1")
                return answer(await conn.fetchrow(ORDER, code, user))
        if mode == "psycopg":
            conn = await state["queue"].get()
            try:
                cur = await conn.execute(_pyformat(SESSION), ("s1",))
                user = (await cur.fetchone())[0]
                cur = await conn.execute(_pyformat(ORDER), (code, user))
                return answer(await cur.fetchone())
            finally:
                state["queue"].put_nowait(conn)
        loop = asyncio.get_running_loop()
        if mode == "thread":
            return answer(await loop.run_in_executor(state["threads"], both, code))
        if mode == "thread2":
            user = (await loop.run_in_executor(state["threads"], one, SESSION, ("s1",)))[0]
            return answer(await loop.run_in_executor(state["threads"], one, ORDER, (code, user)))
        async with state["engine"].connect() as conn:
            if mode == "sa-core":
                user = (await conn.execute(text(_named(SESSION)), {"a": "s1"})).scalar()
                row = (await conn.execute(text(_named(ORDER)), {"a": code, "b": user})).one()
                return answer(row)
            driver = (await conn.get_raw_connection()).driver_connection
            user = await driver.fetchval(SESSION, "s1")
            return answer(await driver.fetchrow(ORDER, code, user))

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        if mode == "asyncpg":
            state["pool"] = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL)
        elif mode == "psycopg":
            state["queue"] = asyncio.Queue()
            for _ in range(POOL):
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                state["queue"].put_nowait(conn)
        elif mode.startswith("thread"):
            state["threads"] = ThreadPoolExecutor(POOL)
        else:
            url = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
            state["engine"] = create_async_engine(url, pool_size=POOL, max_overflow=0)
        yield

    return Starlette(routes=[Route("/order", handle)], lifespan=lifespan)


def serve(mode: str, dsn: str, port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(mode, dsn), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)  # fmt: skip


# -- the run ------------------------------------------------------------------------------------


def seed(dsn: str, orders: int) -> str:
    import psycopg

    rng = random.Random(7)
    mine = ""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE probe_sessions (id serial PRIMARY KEY, public_id text UNIQUE, "
            "user_id int, revoked_at timestamptz)"
        )
        conn.execute(
            "CREATE TABLE probe_orders (id serial PRIMARY KEY, code text UNIQUE, user_id int, "
            "status text, total int, currency text)"
        )
        conn.execute("INSERT INTO probe_sessions (public_id, user_id) VALUES ('s1', 1)")
        rows = []
        for i in range(orders):
            code = secrets.token_hex(8)
            user = 1 if i % 100 == 0 else rng.randint(2, 1000)
            mine = code if user == 1 else mine
            rows.append((code, user, "PLACED", rng.randint(100, 10_000), "EUR"))
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO probe_orders (code, user_id, status, total, currency) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
        conn.execute("ANALYZE")
    return mine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("driver_probe: needs wrk (apt-get install wrk)")
    import psycopg

    pin_server = ["taskset", "-c", "0"] if shutil.which("taskset") and os.cpu_count() else []
    pin_wrk = ["taskset", "-c", "1"] if pin_server else []
    name = f"driver_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        code = seed(dsn, args.orders)
        print(f"{'mode':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for mode in args.modes.split(","):
            port = 18_000 + MODES.index(mode)
            server = subprocess.Popen(
                [*pin_server, sys.executable, __file__, "serve", mode, dsn, str(port)]
            )
            try:
                time.sleep(3)
                url = f"http://127.0.0.1:{port}/order?code={code}"
                subprocess.run([*pin_wrk, wrk, "-t1", f"-c{args.connections}", "-d2s", url],
                               capture_output=True, check=True)  # fmt: skip
                out = subprocess.run(
                    [*pin_wrk, wrk, "-t1", f"-c{args.connections}", f"-d{args.duration:g}s",
                     "--latency", url],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                print(f"{mode:<9} {_rps(out):>9,.0f} {_latency(out, '50%'):>8.2f} "
                      f"{_latency(out, '99%'):>8.2f}")  # fmt: skip
            finally:
                server.terminate()
                server.wait(timeout=10)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


def _rps(wrk_output: str) -> float:
    line = next(x for x in wrk_output.splitlines() if x.startswith("Requests/sec"))
    return float(line.split()[1])


def _latency(wrk_output: str, percentile: str) -> float:
    line = next(x for x in wrk_output.splitlines() if x.strip().startswith(percentile))
    value = line.split()[1]
    for unit, factor in (("ms", 1.0), ("us", 0.001), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value.removesuffix(unit)) * factor
    return float(value)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(main())
