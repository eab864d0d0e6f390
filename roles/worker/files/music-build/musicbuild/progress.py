"""How far a running build has got, read from outside it: one line and its numbers.

    python3 -I .../musicbuild/progress.py --builds BUILDS     prints one JSON object

Nothing here changes the build or needs its cooperation: the build's lock file is truncated
when a build starts (its modification time is the start), tup writes one line to
<builds>/.music/build.log as each command ends, counting down the commands left (" ~ 5% 19)
[0.09s] phone/index/...: phone: 01_Track_1-..."), so the total, the commands done and each
one's profile are tup's own numbers. Each profile's share of the total is the number of its
rules whose inputs the build's scan rewrote (their index files are newer than the start);
when those shares do not add up to tup's total (a profile's settings changed, failed tracks
retried), only the commands done per profile are given, never a made-up total.

The ansible watch (music.profiles.step_watch, roles/worker/tasks/build.yml) runs this with
the environment variable MUSIC_STEP_STARTED (when the step was started, epoch seconds): a
lock older than that belongs to an earlier build. Standard library only, no imports from the
package, so it runs as a script with `python3 -I` (isolated: the package folder is not put on
the import path).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

# " ~ 5% 19) [0.095s] car/index/...: car: 02_Track_2-..." and " 100%  0) [0.048s] ...", and
# "* ~ 1% 60) car/index/...: car: ..." for a command that failed (no time).
JOB = re.compile(r"^\s*\*?\s*~?\s*\d+%\s+(\d+)\)\s+(?:\[[^\]]*\]\s+)?([^/\s]+)/index/[^:]*:\s")
EXECUTING = "Executing Commands..."
RULE_SUFFIXES = (".track", ".copy")


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def parse_log(lines) -> dict:
    """tup's output: whether commands run yet, the total, and the commands done per profile."""
    executing, total, done = False, 0, {}
    for line in lines:
        if not executing:
            executing = EXECUTING in line
            continue
        match = JOB.match(line)
        if match:
            left, profile = int(match.group(1)), match.group(2)
            done[profile] = done.get(profile, 0) + 1
            total = max(total, left + sum(done.values()))
    return {"executing": executing, "total": total, "done": done}


def planned(tup_root: str, since: float, profiles) -> dict[str, int]:
    """Per profile, its rules (tracks and copied files) with an input the scan rewrote since
    `since` (the tracks' .audio and .tags are shared by every profile)."""
    counts = {p: 0 for p in profiles}
    index = os.path.join(tup_root, "index")
    try:
        folders = [e.path for e in os.scandir(index) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return counts
    for folder in folders:
        try:
            mtimes = {e.name: e.stat(follow_symlinks=False).st_mtime for e in os.scandir(folder)}
        except OSError:
            continue
        for name, mtime in mtimes.items():
            if not name.endswith(RULE_SUFFIXES):
                continue
            key, profile, _ = name.rsplit(".", 2)
            if profile not in counts:
                continue
            inputs = [mtime] if name.endswith(".copy") else [mtime, mtimes.get(key + ".audio", 0),
                                                               mtimes.get(key + ".tags", 0)]
            if max(inputs) >= since:
                counts[profile] += 1
    return counts


def snapshot(builds: str, now: float | None = None, started: float | None = None) -> dict:
    """The build's progress as numbers and one line (see the module's docstring)."""
    now = time.time() if now is None else now
    music = os.path.join(builds, ".music")
    try:
        start = os.stat(os.path.join(music, "lock")).st_mtime
    except OSError:
        start = None
    if start is None or (started is not None and start < started - 2):
        return {"phase": "starting", "line": "starting"}
    elapsed = now - start
    try:
        with open(os.path.join(music, "build.log"), encoding="utf-8", errors="replace") as fh:
            if os.fstat(fh.fileno()).st_mtime < start - 1:
                raise FileNotFoundError  # the last build's log: this one is still scanning
            log = parse_log(fh)
    except OSError:
        log = {"executing": False, "total": 0, "done": {}}
    if not log["executing"]:
        return {"phase": "scanning", "elapsed": round(elapsed),
                "line": f"scanning the sources and planning the outputs ({duration(elapsed)} elapsed)"}
    done, total = sum(log["done"].values()), log["total"]
    profiles = sorted(log["done"])
    plan = planned(os.path.join(music, "tup"), start - 1, sorted(set(profiles) | set(_variants(music))))
    exact = total > 0 and sum(plan.values()) == total and all(plan[p] >= n for p, n in log["done"].items())
    per_profile = {p: {"done": log["done"].get(p, 0), "total": plan[p] if exact else None}
                   for p in sorted(plan) if log["done"].get(p) or (exact and plan[p])}
    eta = elapsed * (total - done) / done if done and total >= done else None
    parts = [f"{p} {v['done']}/{v['total']}" if v["total"] is not None else f"{p} {v['done']}"
             for p, v in per_profile.items()]
    line = (f"{done} of {total} outputs ({done * 100 // total if total else 0}%)"
            + (f": {', '.join(parts)}" if parts else "")
            + f"; {duration(elapsed)} elapsed, "
            + (f"about {duration(eta)} left" if eta is not None else "estimating the time left"))
    return {"phase": "building", "done": done, "total": total, "profiles": per_profile,
            "elapsed": round(elapsed), "eta": None if eta is None else round(eta), "line": line}


def _variants(music: str) -> list[str]:
    tup_root = os.path.join(music, "tup")
    try:
        return [e.name for e in os.scandir(tup_root)
                if e.is_dir() and e.name != "index" and os.path.isfile(os.path.join(e.path, "tup.config"))]
    except OSError:
        return []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Print how far a running music-build has got (JSON).")
    parser.add_argument("--builds", required=True, help="the build's builds folder")
    args = parser.parse_args(argv)
    started = os.environ.get("MUSIC_STEP_STARTED")
    try:
        started_at = float(started) if started else None
    except ValueError:
        started_at = None
    print(json.dumps(snapshot(os.path.abspath(args.builds), started=started_at)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
