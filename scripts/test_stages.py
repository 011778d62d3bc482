"""The whole test suite in stages: `scripts/test` without arguments runs this.

One pytest run of the suite takes some 20 minutes on a 2-core machine, and most of that is
waiting: on server processes starting, on Chromium, on back-off windows. So the suite runs
in two phases (`PHASES`):

1. two lanes at once — the tests that drive real server processes and the browser
   (`servers`), and everything that runs the app in-process (`in-process`, the rest of
   `tests/`: a new test directory lands here without anyone listing it);
2. alone, one after the other, the tests whose assertions are about time (`timed`): the
   event loop answering within 100 ms while a request waits (tests/nonblocking), two
   instances and outages (tests/scale), a live update within a second, one password
   check per back-off step, response-time side channels. A second lane beside them would
   measure the machine, not the app.

Each lane is its own pytest process with its own Redis database (`TEST_REDIS_URL`; the
live-update channels carry the database number, app/events/redis_broker.py) and its own
PostgreSQL databases (every fixture creates a uniquely named one), so lanes share nothing
but the servers. Output goes to test-output/stages/<lane>.log and is printed whole when the
lane ends, with the lane's time. Exits non-zero when any lane failed (every lane still
runs), so the summary shows every failure of the run.

`scripts/test ARGS` (any argument) runs one plain pytest instead: `scripts/test -k orders`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "test-output" / "stages"

# Tests whose assertions are about elapsed time: run alone (phase 2).
TIMED = [
    "tests/nonblocking",
    "tests/scale",
    "tests/e2e/test_live_updates.py",
    "tests/security/test_slow_body.py",
    "tests/security_stage/test_bruteforce.py",
    "tests/security_stage/test_login_race.py",
    "tests/security_stage/test_nat_fair_budgets.py",
    "tests/security_stage/test_slow_clients.py",
    "tests/security_stage/test_timing.py",
]
SERVERS = ["tests/browser", "tests/e2e"]


@dataclass
class Lane:
    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> tuple[subprocess.Popen[bytes], float, Path]:
        log = LOGS / f"{self.name}.log"
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *self.args]
        print(f"== stage {self.name}: {' '.join(command[1:])}", flush=True)
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        return process, time.monotonic(), log


def ignoring(paths: list[str]) -> list[str]:
    return [f"--ignore={path}" for path in paths]


PHASES: list[list[Lane]] = [
    [
        # Redis database 12: tests/conftest.py's default (15) belongs to the other lane
        Lane(
            "servers", [*SERVERS, *ignoring(TIMED)], {"TEST_REDIS_URL": "redis://127.0.0.1:6379/12"}
        ),
        Lane("in-process", ["tests", *ignoring(SERVERS + TIMED)]),
    ],
    [Lane("timed", TIMED)],
]


def main() -> int:
    missing = [path for path in TIMED + SERVERS if not (ROOT / path).exists()]
    if missing:  # a moved file would silently change lanes
        print(f"stages: no such test path: {', '.join(missing)}", file=sys.stderr)
        return 2
    LOGS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    failed: list[str] = []
    for phase in PHASES:
        running = {lane.name: lane.start() for lane in phase}
        while running:
            for name, (process, began, log) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[name]
                sys.stdout.write(log.read_text(errors="replace"))
                print(
                    f"== stage {name}: exit {process.returncode} "
                    f"after {time.monotonic() - began:.0f} s",
                    flush=True,
                )
                if process.returncode != 0:
                    failed.append(name)
            time.sleep(0.5)
    total = time.monotonic() - started
    verdict = f"FAILED: {', '.join(failed)}" if failed else "passed"
    print(f"== test stages {verdict} in {total / 60:.1f} min", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
