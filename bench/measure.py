"""How every step is measured: wall time, the CPU of this run, the load of everyone else.

`Meter` times a block and takes, from getrusage, the CPU this process and its waited-for
children used, and from /proc/stat the CPU the whole machine used, so that the rest of the
machine's share ("other load", in cores) is reported beside each figure. `machine()`
describes the host and the tools' versions for the results file.
"""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine_busy() -> float:
    """CPU-seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / HZ


def own_cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Meter:
    """Wall time, CPU time of this process and its waited-for children, and what the rest
    of the machine used meanwhile (in cores)."""

    def __enter__(self):
        self.load_before = loadavg()
        self._busy, self._cpu, self._t = machine_busy(), own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._t
        self.cpu = own_cpu() - self._cpu
        busy = machine_busy() - self._busy
        self.others = max(0.0, (busy - self.cpu) / self.wall) if self.wall > 0 else 0.0
        self.load_after = loadavg()
        return False

    def figures(self) -> dict:
        return {"wall_s": round(self.wall, 3), "cpu_s": round(self.cpu, 3),
                "other_load_cores": round(self.others, 2), "loadavg_before": self.load_before,
                "loadavg_after": self.load_after}


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unavailable"


def machine() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import moto

    return {
        "cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "tup": tool_version(["tup", "--version"]),
        "flac": tool_version(["flac", "--version"]), "opusenc": tool_version(["opusenc", "--version"]),
        "lame": tool_version(["lame", "--version"]), "moto": moto.__version__,
    }
