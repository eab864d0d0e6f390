"""The benchmark's settings, read once from the environment (BENCH_*; docs/bench.md)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


JOBS = env_int("BENCH_JOBS", os.cpu_count() or 1)
SECTIONS = [s.strip() for s in (os.environ.get("BENCH_SECTIONS") or "throughput,scale,control").split(",") if s.strip()]
WORK = Path(os.environ.get("BENCH_WORK") or ROOT / "bench" / "work").resolve()
OUT = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "results").resolve()
BEET = os.environ.get("BENCH_BEET") or str(ROOT / ".cache" / "bench-venv" / "bin" / "beet")
TRACKS = env_int("BENCH_TRACKS", 200)
SECONDS = env_float("BENCH_SECONDS", 30)
PROFILES = (os.environ.get("BENCH_PROFILES") or "phone,car").split(",")
SCALE_TRACKS = env_int("BENCH_SCALE_TRACKS", 10_000)
SCALE_SECONDS = env_float("BENCH_SCALE_SECONDS", 1)
ALBUM_SECONDS = env_float("BENCH_ALBUM_SECONDS", 240)
SCALE_PROFILES = (os.environ.get("BENCH_SCALE_PROFILES") or "phone").split(",")
SNAPSHOTS = env_int("BENCH_ROTATE_SNAPSHOTS", 10_000)
KEEP = os.environ.get("BENCH_KEEP") == "1"
