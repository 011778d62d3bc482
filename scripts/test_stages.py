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
but the servers. Each lane's output is printed as it comes, every line prefixed with the
lane's name (a line per test file), and kept whole in test-output/stages/<lane>.log; when
a lane ends its time is printed, and at the very end the short test summary of every lane
that failed. Exits non-zero when any lane failed (every lane still runs), so one run shows
every failure.

`scripts/test ARGS` (any argument) runs one plain pytest instead: `scripts/test -k orders`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "test-output" / "stages"

# Tests whose assertions are about elapsed time: run alone (phase 2).
TIMED = [
    "tests/nonblocking",
    "tests/scale",
    "tests/e2e/test_live_updates.py",
    "tests/security/test_slow_body.py",
    "tests/security/test_slow_client_deadlines.py",
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

    def start(self) -> Running:
        log = LOGS / f"{self.name}.log"
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *self.args]
        print(f"== stage {self.name}: {' '.join(command[1:])}", flush=True)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        assert process.stdout is not None
        copier = threading.Thread(target=_copy, args=(process.stdout, log, self.name))
        copier.start()
        return Running(self.name, process, copier, time.monotonic(), log)


@dataclass
class Running:
    name: str
    process: subprocess.Popen[bytes]
    copier: threading.Thread
    began: float
    log: Path

    def summary(self) -> str:
        """The short test summary pytest printed (`-ra`), or the log's last lines."""
        text = self.log.read_text(errors="replace")
        marker = text.rfind("short test summary info")
        if marker >= 0:
            return text[text.rfind("\n", 0, marker) + 1 :]
        return "\n".join(text.splitlines()[-40:]) + "\n"


_printing = threading.Lock()


def _copy(output: IO[bytes], log: Path, name: str) -> None:
    """A lane's output, line by line, to its log and (prefixed) to ours."""
    with log.open("wb") as kept:
        for line in output:
            kept.write(line)
            with _printing:
                sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
                sys.stdout.flush()


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
    failed: list[Running] = []
    for phase in PHASES:
        running = [lane.start() for lane in phase]
        while running:
            for lane in [lane for lane in running if lane.process.poll() is not None]:
                running.remove(lane)
                lane.copier.join()
                with _printing:
                    print(
                        f"== stage {lane.name}: exit {lane.process.returncode} "
                        f"after {time.monotonic() - lane.began:.0f} s",
                        flush=True,
                    )
                if lane.process.returncode != 0:
                    failed.append(lane)
            time.sleep(0.5)
    for lane in failed:
        print(f"== stage {lane.name} failed ({lane.log}):\n{lane.summary()}", end="")
    total = time.monotonic() - started
    verdict = f"FAILED: {', '.join(lane.name for lane in failed)}" if failed else "passed"
    print(f"== test stages {verdict} in {total / 60:.1f} min", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
