"""`make bench`: compile speed and rebuild costs, measured side by side in one run.

Sections (BENCH_SECTIONS, comma-separated; default all), one module each:
  throughput  a generated library compiled into the Opus and MP3 profiles with every core,
              against the bare encoder commands on the same files (one process, then one
              per core) and against beets' convert plugin with the same encoder flags
  scale       a 10,000-track library: first build, no-change rebuild, one changed track,
              tag-only edit of a 12-track album versus re-encoding it, one profile's bitrate
  control     provision.yml twice and the rotation of a 10,000-snapshot lineage against a
              local moto server, with the AWS API requests counted at the server

Every figure is a wall time measured in this run, reported with the CPU time of the
processes measured and the load the rest of the machine put on the cores meanwhile
(/proc/stat, measure.py), so a figure taken on a busy machine says so. Results go to
bench/results/<date>.json and <date>.md (targets.py, report.py). See docs/bench.md for the
settings (settings.py).

    python bench/run.py                  # the sections of BENCH_SECTIONS
    python bench/run.py --report FILE    # recompute a results file's ratios, targets and Markdown
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import control
import report
import scale
import throughput
from measure import Meter, loadavg, machine, say
from program import install_program, load_profiles, program_revision
from settings import (ALBUM_SECONDS, JOBS, OUT, PROFILES, SCALE_PROFILES, SCALE_SECONDS, SCALE_TRACKS, SECONDS,
                      SECTIONS, SNAPSHOTS, TRACKS, WORK)
from targets import derived, targets


def main() -> int:
    started = dt.datetime.now(dt.timezone.utc)
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK / "logs", ignore_errors=True)
    install_program()
    profiles = load_profiles()
    results: dict = {
        "date": started.date().isoformat(), "started": started.isoformat(timespec="seconds"),
        "machine": machine(), "revision": program_revision(),
        "settings": {"sections": SECTIONS, "jobs": JOBS, "tracks": TRACKS, "seconds": SECONDS,
                     "profiles": {n: profiles[n] for n in PROFILES},
                     "scale_tracks": SCALE_TRACKS, "scale_seconds": SCALE_SECONDS,
                     "album_seconds": ALBUM_SECONDS, "scale_profiles": SCALE_PROFILES,
                     "rotate_snapshots": SNAPSHOTS},
        "loadavg_before": loadavg(),
    }
    say(f"load before: {results['loadavg_before']}; sections {SECTIONS}; work dir {WORK}")
    with Meter() as total:
        if "throughput" in SECTIONS:
            results["throughput"] = throughput.run(profiles)
        if "scale" in SECTIONS:
            results["scale"] = scale.run(profiles)
        if "control" in SECTIONS:
            results["control"] = control.run()
    results["loadavg_after"] = loadavg()
    results["total"] = total.figures()
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    derived(results)
    results["targets"] = targets(results)
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / results["date"]
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(report.markdown(results))
    say(f"wrote {stem}.json and {stem}.md ({total.wall / 60:.1f} min; load after {results['loadavg_after']})")
    return 0


def rereport(path: str) -> int:
    """Recompute the derived ratios, targets and Markdown of a results file (keeps its note)."""
    results = json.loads(Path(path).read_text())
    derived(results)
    results["targets"] = targets(results)
    Path(path).write_text(json.dumps(results, indent=2) + "\n")
    Path(path).with_suffix(".md").write_text(report.markdown(results))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        sys.exit(rereport(sys.argv[2]))
    sys.exit(main())
