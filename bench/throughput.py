"""Section `throughput`: a generated library compiled into the throughput profiles with every
core, against the bare encoder commands on the same files (one process, then one per core)
and against beets' convert plugin with the same encoder commands."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from musicbuild.profile import EXTENSIONS

import library
from measure import Meter, say
from program import audio_seconds, bare_encode, encoder_command, music_build, prepare_builds
from settings import BEET, JOBS, KEEP, PROFILES, SECONDS, TRACKS, WORK


def run(profiles: dict) -> dict:
    work = WORK / "throughput"
    shutil.rmtree(work, ignore_errors=True)
    src = work / "library"
    say(f"throughput: generating {TRACKS} tracks of {SECONDS:g} s (sox, tags, art)")
    with Meter() as gen:
        library.throughput_library(src, TRACKS, SECONDS)
    files = sorted(src.rglob("*.flac"))
    secs = audio_seconds(files)
    n_profiles = len(PROFILES)
    res: dict = {"tracks": len(files), "audio_s": round(secs, 1), "profiles": PROFILES, "jobs": JOBS,
                 "generate": gen.figures()}

    say("throughput: bare encoders, one process")
    res["bare_single"] = bare_encode(files, profiles, PROFILES, work / "bare", 1)
    say(f"  {res['bare_single']['wall_s']:.1f} s")
    say(f"throughput: bare encoders, {JOBS} processes")
    res["bare_parallel"] = bare_encode(files, profiles, PROFILES, work / "bare", JOBS)
    say(f"  {res['bare_parallel']['wall_s']:.1f} s")

    say("throughput: music-build")
    builds = work / "builds"
    prepare_builds(builds, profiles, PROFILES)
    res["build_first"] = music_build(src, builds, "throughput-first")
    res["build_nochange"] = music_build(src, builds, "throughput-nochange")

    single_rate = secs * n_profiles / res["bare_single"]["wall_s"]
    build_rate = secs * n_profiles / res["build_first"]["wall_s"]
    res["bare_single_rate_x"] = round(single_rate, 1)
    res["bare_single_rate_cpu_x"] = round(secs * n_profiles / res["bare_single"]["cpu_s"], 1)
    res["build_throughput_x"] = round(build_rate, 1)
    res["parallel_efficiency"] = round(build_rate / (JOBS * single_rate), 3)
    res["bare_parallel_efficiency"] = round(res["bare_single"]["wall_s"] / (JOBS * res["bare_parallel"]["wall_s"]), 3)
    res["cpu_efficiency"] = round(res["bare_single"]["cpu_s"] / res["build_first"]["cpu_s"], 3)

    if os.path.exists(BEET):
        res["beets"] = beets(work, src, profiles, res)
    else:
        res["beets"] = {"skipped": f"{BEET} not found (scripts/bench.sh installs beets)"}
    if not KEEP:
        shutil.rmtree(work, ignore_errors=True)
    return res


# --- beets --------------------------------------------------------------------------------

def beets_config(home: Path, profiles: dict, names: list[str]) -> None:
    formats = {}
    for name in names:
        p = profiles[name]
        enc = " ".join(encoder_command(name, p, "OUT")).replace(" OUT", ' "$1"')
        formats[p["codec"]] = {
            "command": f"sh -c 'flac -d -c -s -- \"$0\" | {enc}' $source $dest",
            "extension": EXTENSIONS[p["codec"]],
        }
    art_max = {profiles[n].get("art_max_size", 0) for n in names}
    config = {
        "directory": str(home / "music"),
        "library": str(home / "library.db"),
        "plugins": ["convert", "fetchart"],
        "import": {"copy": False, "move": False, "write": False, "autotag": False, "quiet": True,
                   "resume": False, "incremental": False, "log": str(home / "import.log")},
        "fetchart": {"auto": True, "sources": ["filesystem"], "cautious": False},
        "convert": {"threads": JOBS, "embed": True, "album_art_maxwidth": max(art_max) if art_max else 0,
                    "copy_album_art": False, "never_convert_lossy_files": True, "formats": formats},
    }
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML


def beet(home: Path, label: str, *args: str) -> dict:
    log = WORK / "logs" / f"{label}.log"
    env = dict(os.environ, BEETSDIR=str(home))
    with open(log, "w") as fh, Meter() as m:
        proc = subprocess.run([BEET, *args], stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"beet {' '.join(args)} failed, see {log}")
    say(f"  {label}: {m.wall:.2f} s wall")
    return m.figures()


def count_files(root: Path, ext: str) -> int:
    return sum(1 for _ in root.rglob(f"*.{ext}"))


def beets(work: Path, src: Path, profiles: dict, res: dict) -> dict:
    home = work / "beets"
    beets_config(home, profiles, PROFILES)
    version = subprocess.run([BEET, "version"], capture_output=True, text=True, env=dict(os.environ, BEETSDIR=str(home)))
    found = re.search(r"beets version (\S+)", version.stdout)
    out: dict = {"version": found.group(1) if found else "unknown", "threads": JOBS}
    say("beets: import -A")
    out["import"] = beet(home, "beets-import", "import", "-A", "-q", str(src))
    first, again = [], []
    for name in PROFILES:
        codec = profiles[name]["codec"]
        dest = work / "beets-out" / name
        say(f"beets: convert -f {codec}")
        first.append(beet(home, f"beets-convert-{name}", "convert", "-y", "-f", codec, "-d", str(dest)))
        out.setdefault("converted", {})[name] = count_files(dest, EXTENSIONS[codec])
    for name in PROFILES:
        codec = profiles[name]["codec"]
        again.append(beet(home, f"beets-convert-{name}-again", "convert", "-y", "-f", codec, "-d",
                          str(work / "beets-out" / name)))
    out["convert_first"] = {"wall_s": round(sum(x["wall_s"] for x in first), 3),
                            "cpu_s": round(sum(x["cpu_s"] for x in first), 3), "runs": first}
    out["convert_nochange"] = {"wall_s": round(sum(x["wall_s"] for x in again), 3),
                               "cpu_s": round(sum(x["cpu_s"] for x in again), 3), "runs": again}
    out["art_files_found"] = sum(1 for _ in src.rglob("cover.jpg"))
    out["ratio_first"] = round(out["convert_first"]["wall_s"] / res["build_first"]["wall_s"], 3)
    out["ratio_first_with_import"] = round((out["convert_first"]["wall_s"] + out["import"]["wall_s"])
                                           / res["build_first"]["wall_s"], 3)
    out["ratio_nochange"] = round(out["convert_nochange"]["wall_s"] / res["build_nochange"]["wall_s"], 3)
    return out
