"""Mutation testing of the pure modules (no I/O: rules, arithmetic, tokens) against their
unit tests, with mutmut: each module is mutated (one small change at a time: an operator,
a constant, a comparison) and its tests must fail on every mutant. Prints the score per
module and every mutant that survived, and fails below the target score.

A survivor is either a weak test (add the test that kills it) or an equivalent mutant (a
change no caller can observe); the latter are listed with their reason in
scripts/mutation_equivalent.txt, which this script reads: an equivalent mutant counts as
killed, and a listed mutant whose change no longer matches is reported as stale.

Runs in a scratch copy of the project (mutmut writes its mutants/ next to the sources),
with two workers. Too slow for scripts/test: 734 mutants in 2 to 6 minutes on the 2-core
machine (124 s alone, 330 s beside other work). `scripts/mutation [module ...]` limits the
run to some of the modules; `--keep` keeps the scratch copy (`mutmut show NAME` there).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 90.0
# module -> the unit tests that own it
MODULES: dict[str, list[str]] = {
    "app/security/tokens.py": ["tests/unit/test_tokens.py"],
    "app/security/codes.py": ["tests/unit/test_codes.py"],
    "app/security/policy.py": ["tests/unit/test_policy.py"],
    "app/orders/pricing.py": ["tests/unit/test_pricing.py"],
    "app/shipments/transitions.py": ["tests/unit/test_fulfilment_transitions.py"],
    "app/returns/rules.py": ["tests/unit/test_return_rules.py"],
    "app/returns/timeline.py": ["tests/unit/test_return_rules.py"],
    "app/tracking/places.py": ["tests/unit/test_places.py"],
}
EQUIVALENT = ROOT / "scripts" / "mutation_equivalent.txt"
PYTEST_ARGS = ["-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-x"]


@dataclass
class Score:
    killed: int = 0
    equivalent: int = 0
    survived: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # timeouts, suspicious, not checked

    @property
    def total(self) -> int:
        return self.killed + self.equivalent + len(self.survived) + len(self.other)

    @property
    def percent(self) -> float:
        return 100.0 * (self.killed + self.equivalent) / self.total if self.total else 100.0


def equivalents() -> dict[str, tuple[str, str]]:
    """mutant name -> (the mutated line, stripped; why no caller can tell the difference).

    The file: blocks separated by a blank line, each `name`, `+ the mutated line`, then
    `# the reason` (one or more lines); a block of comment lines only is a comment."""
    found: dict[str, tuple[str, str]] = {}
    if not EQUIVALENT.exists():
        return found
    for block in EQUIVALENT.read_text().split("\n\n"):
        lines = [ln for ln in block.strip().splitlines() if ln.strip()]
        if not lines or all(ln.startswith("#") for ln in lines):
            continue
        name, changed = lines[0].strip(), lines[1].removeprefix("+").strip()
        reason = " ".join(ln.lstrip("# ").strip() for ln in lines[2:])
        if not reason:
            sys.exit(f"mutation: {EQUIVALENT.name}: {name} says no reason")
        found[name] = (changed, reason)
    return found


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def prepare(work: Path, modules: list[str]) -> None:
    shutil.copytree(ROOT / "app", work / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    tests = sorted({t for m in modules for t in MODULES[m]})
    config = (ROOT / "pyproject.toml").read_text() + (
        "\n[tool.mutmut]\n"
        'source_paths = ["app"]\n'
        f"only_mutate = {toml_list(modules)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}\n"
        "use_git_change_detection = false\n"
    )
    (work / "pyproject.toml").write_text(config)


def mutmut(work: Path, *args: str) -> str:
    command = [sys.executable, "-m", "mutmut", *args]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(
            f"mutation: `mutmut {' '.join(args)}` failed:\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
    return done.stdout


def module_of(mutant: str) -> str:
    """app.orders.pricing.x_compute_totals__mutmut_3 -> app/orders/pricing.py"""
    dotted = mutant.split(".x")[0] if ".x" in mutant else mutant.rsplit(".", 1)[0]
    dotted = re.sub(r"\.x[ǁ_].*$", "", dotted)
    return dotted.replace(".", "/") + ".py"


def changed_line(work: Path, mutant: str) -> str:
    """The line the mutant adds, as `mutmut show` prints it."""
    diff = mutmut(work, "show", mutant)
    added = [
        ln[1:].strip()
        for ln in diff.splitlines()
        if ln.startswith("+") and not ln.startswith("+++")
    ]
    return added[0] if added else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="limit to these (paths under app/)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        sys.exit(f"mutation: not a module of this run: {unknown} (known: {list(MODULES)})")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mutation-"))
    try:
        prepare(work, modules)
        mutmut(work, "run", "--max-children", "2")
        listed = equivalents()
        scores = {m: Score() for m in modules}
        stale: list[str] = []
        for line in mutmut(work, "results", "--all", "true").splitlines():
            if ":" not in line:
                continue
            name, status = (part.strip() for part in line.rsplit(":", 1))
            module = module_of(name)
            if module not in scores:
                continue
            score = scores[module]
            if status == "killed":
                score.killed += 1
            elif status == "survived" and name in listed:
                if changed_line(work, name) == listed[name][0]:
                    score.equivalent += 1
                else:
                    stale.append(name)
                    score.survived.append(name)
            elif status == "survived":
                score.survived.append(name)
            else:
                score.other.append(f"{name} ({status})")
        print(
            f"\nmutation score per module (target {TARGET:.0f} %; equivalent mutants count "
            f"as killed, listed in {EQUIVALENT.relative_to(ROOT)}):"
        )
        width = max(len(m) for m in modules)
        failed = False
        for module, score in scores.items():
            low = score.percent < TARGET
            failed |= low
            print(
                f"  {module:<{width}}  {score.percent:5.1f} %  {score.killed} killed, "
                f"{score.equivalent} equivalent, {len(score.survived)} survived, "
                f"{len(score.other)} other, of {score.total}" + ("  BELOW TARGET" if low else "")
            )
        total = Score()
        for score in scores.values():
            total.killed += score.killed
            total.equivalent += score.equivalent
            total.survived += score.survived
            total.other += score.other
        print(f"  {'all':<{width}}  {total.percent:5.1f} %  of {total.total} mutants")
        for name in total.survived + total.other:
            print(f"\nsurvived: {name}\n{mutmut(work, 'show', name.split(' ')[0])}")
        for name in stale:
            print(
                f"stale entry in {EQUIVALENT.name}: {name} (its change is no longer the listed one)"
            )
        print(f"\nmutation: {time.monotonic() - started:.0f} s")
        return 1 if failed or total.survived else 0
    finally:
        if args.keep:
            print(f"scratch copy kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
