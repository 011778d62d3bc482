"""A CPU quota for one process — its threads, and whatever it starts later — through a Linux
cgroup of its own: v1's `cpu` controller (`cpu.cfs_quota_us`) where it is mounted, else
v2's `cpu.max`. Needs write access to the cgroup tree (root, or a delegated subtree).

For scripts/loadtest `--instance-cpu`: on a machine whose cores are shared by the instances,
PostgreSQL, Redis and the load generator, holding each instance to the same fraction of a
core is how to see whether two instances serve twice what one does (no shared bottleneck)
without the machine's core count deciding it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PERIOD_US = 100_000
_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


class QuotaUnavailable(RuntimeError):
    pass


class CpuQuota:
    """A cgroup holding its processes to `cores` CPUs in all (0.5: half a core)."""

    def __init__(self, name: str, cores: float) -> None:
        if not 0 < cores <= (os.cpu_count() or 1):
            raise ValueError(f"a CPU quota of {cores} cores on this machine")
        quota = max(1_000, round(cores * PERIOD_US))
        try:
            if (_V1 / "cpu.cfs_quota_us").exists():
                self.path = _V1 / name
                self.path.mkdir(exist_ok=True)
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            elif "cpu" in (_V2 / "cgroup.controllers").read_text().split():
                subtree = _V2 / "cgroup.subtree_control"
                if "cpu" not in subtree.read_text().split():
                    subtree.write_text("+cpu")
                self.path = _V2 / name
                self.path.mkdir(exist_ok=True)
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            else:
                raise QuotaUnavailable("no cgroup cpu controller on this machine")
        except OSError as exc:
            raise QuotaUnavailable(f"cannot set a CPU quota through cgroups: {exc}") from exc
        self.cores = cores

    def add(self, pid: int) -> None:
        """Move a running process (every thread of it) into the quota."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            raise QuotaUnavailable(f"cannot move process {pid} into {self.path}: {exc}") from exc

    def remove(self) -> None:
        """Delete the cgroup once its processes have ended (one still running: left be)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()
