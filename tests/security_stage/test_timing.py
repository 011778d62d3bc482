"""Enumeration by timing ("not yours" vs "not found"): scripts/timing_check.py against the
real server, 1,000 pairs, as CI runs it; and its statistics checked on known values."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import time
from types import ModuleType

import pytest

from tests.security_stage.conftest import ROOT, record

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "scripts" / "timing_check.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("timing_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_wilcoxon_on_known_values() -> None:
    wilcoxon = load_script().wilcoxon_signed_rank
    # no ties: W+ = 96 of n = 15; z = (96 - 60 - 0.5) / sqrt(310)
    d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    result = wilcoxon([float(x) for x in d])
    assert (result.n, result.w_plus) == (15, 96)
    z = 35.5 / math.sqrt(310)
    assert result.z == pytest.approx(z)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert result.p_value == pytest.approx(0.0438, abs=1e-4)
    # ties and zeros: zeros dropped, average ranks, variance 22.75 - 30/48
    result = wilcoxon([1.0, -1.0, 1.0, 0.0, 2.0, -2.0, 3.0])
    assert (result.n, result.w_plus) == (6, 14.5)
    assert result.z == pytest.approx(3.5 / math.sqrt(22.125))
    # symmetric noise is not significant, a shift is
    assert wilcoxon([float(x) for x in range(-500, 501)]).p_value > 0.9
    assert wilcoxon([float(x) + 100 for x in range(-500, 501)]).p_value < 1e-6
    assert wilcoxon([0.0, 0.0]).p_value == 1.0


def test_not_yours_and_not_found_cannot_be_told_apart_by_timing() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--pairs", "1000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    elapsed = time.monotonic() - started
    record(
        "timing_check.txt",
        [result.stdout.strip(), result.stderr.strip()[-2000:], f"wall time: {elapsed:.1f} s"],
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}"
    assert "pairs (n): 1000" in result.stdout
    assert "p-value:" in result.stdout and "distinct bodies: 1;" in result.stdout
