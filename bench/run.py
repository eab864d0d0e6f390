"""`make bench`: compile speed and rebuild costs, measured side by side in one run.

Sections (BENCH_SECTIONS, comma-separated; default all):
  throughput  a generated library compiled into the Opus and MP3 profiles with every core,
              against the bare encoder commands on the same files (one process, then one
              per core) and against beets' convert plugin with the same encoder flags
  scale       a 10,000-track library: first build, no-change rebuild, one changed track,
              tag-only edit of a 12-track album versus re-encoding it, one profile's bitrate
  control     provision.yml twice and the rotation of a 10,000-snapshot lineage against a
              local moto server, with the AWS API requests counted at the server

Every figure is a wall time measured in this run, reported with the CPU time of the
processes measured and the load the rest of the machine put on the cores meanwhile
(/proc/stat), so a figure taken on a busy machine says so. Results go to
bench/results/<date>.json and <date>.md. See docs/bench.md for the settings.
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))

import library  # noqa: E402
from music_profile import normalize_profile, render_tup_config  # noqa: E402


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


# --- the build program, installed into the work dir as the worker role installs it -------

def program_revision() -> dict:
    """The commit measured, and whether the build program differed from it (uncommitted edits)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"),
            "program_uncommitted_changes": bool(git("status", "--porcelain", "roles/worker/files"))}


def install_program() -> Path:
    prog = WORK / "program"
    shutil.rmtree(prog, ignore_errors=True)
    files = ROOT / "roles" / "worker" / "files"
    shutil.copytree(files / "musicbuild", prog / "musicbuild", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(files / "bin", prog / "bin")
    shutil.copyfile(files / "music_profile.py", prog / "music_profile.py")
    subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", str(prog)], check=True)
    return prog


def load_profiles() -> dict:
    import yaml

    data = yaml.safe_load((ROOT / "group_vars" / "all" / "profiles.yml").read_text())
    return data["music_profiles"]


def encoder_command(codec: str, profile: dict, out: str) -> list[str]:
    """The build's own encoder command (musicbuild/encode.py), not a copy of it."""
    sys.path.insert(0, str(WORK / "program"))
    from musicbuild.encode import encoder_command as build_command

    p = normalize_profile("x", profile)
    return build_command(codec, {"compression_level": p.get("compression_level"), "bitrate": p.get("bitrate"),
                                 "quality": p.get("quality")}, out)


EXT = {"opus": "opus", "mp3": "mp3", "flac": "flac", "vorbis": "ogg"}


def bare_encode(files: list[Path], profiles: dict, names: list[str], out: Path, parallel: int) -> dict:
    """`flac -d -c -s SRC | <encoder>` per file and profile, `parallel` at a time."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = [(src, name, i) for name in names for i, src in enumerate(files)]

    def one(job):
        src, name, i = job
        codec = profiles[name]["codec"]
        dest = out / f"{name}-{i}.{EXT[codec]}"
        dec = subprocess.Popen(["flac", "-d", "-c", "-s", "--", str(src)], stdout=subprocess.PIPE)
        enc = subprocess.Popen(encoder_command(codec, profiles[name], str(dest)), stdin=dec.stdout,
                               stdout=subprocess.DEVNULL)
        dec.stdout.close()
        if enc.wait() != 0 or dec.wait() != 0:
            raise RuntimeError(f"bare encoder failed on {src}")

    with Meter() as m:
        if parallel == 1:
            for job in jobs:
                one(job)
        else:
            with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
                list(pool.map(one, jobs))
    shutil.rmtree(out, ignore_errors=True)
    return {"processes": parallel, "encodes": len(jobs), **m.figures()}


# --- music-build --------------------------------------------------------------------------

def prepare_builds(builds: Path, profiles: dict, names: list[str]) -> None:
    for name in names:
        d = builds / ".music" / "tup" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "tup.config").write_text(render_tup_config(name, profiles[name]))


TUP_TIME = re.compile(r"^\[ tup \] \[(\d+(?:\.\d+)?)s\]", re.M)


def music_build(sources: Path, builds: Path, label: str) -> dict:
    log = WORK / "logs" / f"{label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh, Meter() as m:
        proc = subprocess.run([str(WORK / "program" / "bin" / "music-build"), "--sources", str(sources),
                               "--builds", str(builds), "--jobs", str(JOBS)], stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"music-build failed ({label}), see {log}")
    music = builds / ".music"
    tup_log = (music / "build.log").read_text(errors="replace")
    stamps = [float(x) for x in TUP_TIME.findall(tup_log)]
    events = [json.loads(line) for line in (music / "journal.jsonl").read_text().splitlines() if line.strip()]
    report = json.loads((builds / "report.json").read_text())
    encoders: dict[str, int] = {}
    for e in events:
        if e.get("event") == "encoder":
            encoders[e["profile"]] = encoders.get(e["profile"], 0) + 1
    result = {
        **m.figures(),
        "tup_s": stamps[-1] if stamps else None,
        "encoder_runs": encoders,
        "report": {p: {k: r[k] for k in ("encoded", "retagged", "unchanged", "removed")} | {"failed": len(r["failed"])}
                   for p, r in report["profiles"].items()},
    }
    if any(r["failed"] for r in report["profiles"].values()):
        raise RuntimeError(f"music-build reported failed tracks ({label}): {report}")
    say(f"  {label}: {result['wall_s']:.2f} s wall, tup {result['tup_s']} s, encoder runs {encoders or 0}, "
        f"others {result['other_load_cores']} cores")
    return result


def audio_seconds(files: list[Path]) -> float:
    from mutagen.flac import FLAC

    return sum(FLAC(str(f)).info.length for f in files)


# --- beets --------------------------------------------------------------------------------

def beets_config(home: Path, profiles: dict, names: list[str]) -> None:
    formats = {}
    for name in names:
        p = profiles[name]
        enc = " ".join(encoder_command(p["codec"], p, "OUT")).replace(" OUT", ' "$1"')
        formats[p["codec"]] = {
            "command": f"sh -c 'flac -d -c -s -- \"$0\" | {enc}' $source $dest",
            "extension": EXT[p["codec"]],
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


# --- sections -----------------------------------------------------------------------------

def section_throughput(profiles: dict) -> dict:
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
        res["beets"] = section_beets(work, src, profiles, res)
    else:
        res["beets"] = {"skipped": f"{BEET} not found (scripts/bench.sh installs beets)"}
    if not KEEP:
        shutil.rmtree(work, ignore_errors=True)
    return res


def section_beets(work: Path, src: Path, profiles: dict, res: dict) -> dict:
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
        out.setdefault("converted", {})[name] = count_files(dest, EXT[codec])
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


def section_scale(profiles: dict) -> dict:
    work = WORK / "scale"
    shutil.rmtree(work, ignore_errors=True)
    src = work / "library"
    say(f"scale: generating {SCALE_TRACKS} tracks of {SCALE_SECONDS:g} s (album '{library.LONG_ALBUM}': "
        f"12 x {ALBUM_SECONDS:g} s)")
    with Meter() as gen:
        made = library.scale_library(src, SCALE_TRACKS, SCALE_SECONDS, ALBUM_SECONDS)
    long_album = [src / r for r in made if r.startswith(library.LONG_ALBUM + "/")]
    short = [src / r for r in made if not r.startswith(library.LONG_ALBUM + "/")]
    res: dict = {"tracks": len(made), "track_s": SCALE_SECONDS, "album_track_s": ALBUM_SECONDS,
                 "profiles": SCALE_PROFILES, "jobs": JOBS, "generate": gen.figures()}

    # Bare encoder time for the same tracks: a sample of the short ones, all of the long album.
    sample = short[:: max(1, len(short) // 100)][:100]
    say(f"scale: bare encoders on {len(sample)} short tracks and the long album, one process")
    bare_short = bare_encode(sample, profiles, SCALE_PROFILES, work / "bare", 1)
    bare_album = bare_encode(long_album, profiles, SCALE_PROFILES, work / "bare", 1)
    per_short = bare_short["wall_s"] / len(sample)
    bare_total = per_short * len(short) + bare_album["wall_s"]
    bare_cpu = bare_short["cpu_s"] / len(sample) * len(short) + bare_album["cpu_s"]
    res["bare_short_per_track_s"] = round(per_short / len(SCALE_PROFILES), 4)
    res["bare_short_sample"] = bare_short
    res["bare_album"] = bare_album
    res["bare_library_estimate_s"] = round(bare_total, 1)
    res["bare_library_estimate_cpu_s"] = round(bare_cpu, 1)

    builds = work / "builds"
    prepare_builds(builds, profiles, SCALE_PROFILES)
    say("scale: first build")
    first = res["build_first"] = music_build(src, builds, "scale-first")
    outputs = len(made) * len(SCALE_PROFILES)
    res["overhead_per_output_s"] = round((first["wall_s"] * JOBS - bare_total) / outputs, 4)
    res["overhead_per_output_cpu_s"] = round((first["cpu_s"] - bare_cpu) / outputs, 4)
    res["build_core_s_per_output"] = round(first["wall_s"] * JOBS / outputs, 4)

    say("scale: no-change rebuild")
    res["nochange"] = music_build(src, builds, "scale-nochange")
    res["nochange_again"] = music_build(src, builds, "scale-nochange-again")

    one = short[len(short) // 2]
    library.change_audio(src, str(one.relative_to(src)), SCALE_SECONDS, seed=7)
    say("scale: one track's audio changed")
    res["one_track"] = music_build(src, builds, "scale-one-track")

    for f in long_album:
        library.edit_tag(src, str(f.relative_to(src)), "COMMENT", "Edited by the benchmark")
    say("scale: tag-only edit of the 12-track album")
    res["album_tags"] = music_build(src, builds, "scale-album-tags")

    for i, f in enumerate(long_album):
        library.change_audio(src, str(f.relative_to(src)), ALBUM_SECONDS, seed=100 + i)
    say("scale: the same album re-encoded (new audio)")
    res["album_reencode"] = music_build(src, builds, "scale-album-reencode")

    base = res["nochange"]
    tag, enc = res["album_tags"], res["album_reencode"]
    res["album_ratio_tup"] = round(tag["tup_s"] / enc["tup_s"], 4) if enc["tup_s"] else None
    res["album_ratio_wall"] = round(tag["wall_s"] / enc["wall_s"], 4)
    marg_tag, marg_enc = tag["wall_s"] - base["wall_s"], enc["wall_s"] - base["wall_s"]
    res["album_ratio_marginal_wall"] = round(marg_tag / marg_enc, 4) if marg_enc > 0 else None

    name = SCALE_PROFILES[0]
    changed = dict(profiles[name])
    if changed.get("bitrate"):
        changed["bitrate"] = int(changed["bitrate"]) + 32
    elif changed["codec"] in ("mp3", "vorbis"):
        changed["quality"] = (int(changed.get("quality", 2)) + 2) % 10
    else:
        changed["compression_level"] = (int(changed.get("compression_level", 8)) + 3) % 9
    (builds / ".music" / "tup" / name / "tup.config").write_text(render_tup_config(name, changed))
    say(f"scale: profile {name} changed ({profiles[name]} -> {changed})")
    res["profile_change"] = music_build(src, builds, "scale-profile-change")
    res["profile_change"]["change"] = {name: {k: changed.get(k) for k in ("bitrate", "quality")}}
    res["disk_mb"] = round(sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 1e6, 1)
    if not KEEP:
        shutil.rmtree(work, ignore_errors=True)
    return res


def section_control() -> dict:
    from datetime import datetime, timezone

    import moto_count

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    import aws_helpers
    import aws_moto_fixes
    import rotate_world as rw
    from moto_harness import MotoServer

    moto_count.install()
    aws_moto_fixes.apply()
    server = MotoServer().start()
    res: dict = {}
    try:
        server.reset()
        for label in ("provision_first", "provision_again"):
            say(f"control: provision.yml ({label})")
            with moto_count.counting() as calls, Meter() as m:
                run = aws_helpers.playbook(server, "provision.yml")
            if run.rc != 0:
                raise RuntimeError(f"provision.yml failed: {aws_helpers.summary(run)}")
            res[label] = {**m.figures(), "changed": run.changed, "api_requests": calls["total"],
                          "api_by_action": calls["by_action"]}
            say(f"  {m.wall:.1f} s, changed={run.changed}, {calls['total']} API requests")

        server.reset()
        with rw.indexed_moto_tags():
            ec2 = server.client("ec2")
            vol = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=1, Encrypted=True)["VolumeId"]
            moments = rw.hours_from(datetime(2023, 6, 1, 0, 30, tzinfo=timezone.utc), SNAPSHOTS)
            say(f"control: {SNAPSHOTS} snapshots in one lineage (straight into moto's backend)")
            ids = rw.bulk_snapshots(vol, moments, {"Project": "music", "Lineage": "builds"})
            expected = rw.expected_survivors(dict(zip(ids, moments)))
            extra = {"music_rotate_lineages": ["builds"]}
            for label in ("rotate_first", "rotate_again"):
                say(f"control: rotate.yml ({label})")
                with moto_count.counting() as calls, Meter() as m:
                    proc = rw.playbook(server, "playbooks/rotate.yml", extra_vars=extra)
                result = rw.task_results(proc, "Prune the snapshots of each lineage")[0]
                res[label] = {**m.figures(), "deleted": len(result.get("deleted", [])),
                              "api_requests": calls["total"], "api_by_action": calls["by_action"],
                              "module_api_calls": result.get("api_calls")}
                say(f"  {m.wall:.1f} s, deleted {res[label]['deleted']}, {calls['total']} API requests")
            left = set(rw.tagged(ec2, {"Project": "music", "Lineage": "builds"}))
            res["snapshots"] = SNAPSHOTS
            res["kept"] = len(left)
            res["kept_as_policy_says"] = left == expected
    finally:
        server.stop()
    return res


# --- results ------------------------------------------------------------------------------

def derived(results: dict) -> None:
    """Load-independent companions of the wall-time ratios: the same ratios in CPU time."""
    t = results.get("throughput")
    if t:
        b = t.get("beets", {})
        if "convert_first" in b:
            b["cpu_ratio_first"] = round(b["convert_first"]["cpu_s"] / t["build_first"]["cpu_s"], 3)
            b["cpu_ratio_nochange"] = round(b["convert_nochange"]["cpu_s"] / t["build_nochange"]["cpu_s"], 3)
    s = results.get("scale")
    if s:
        base, tag, enc = s["nochange"]["cpu_s"], s["album_tags"]["cpu_s"], s["album_reencode"]["cpu_s"]
        s["album_ratio_cpu"] = round(tag / enc, 4)
        s["album_ratio_marginal_cpu"] = round((tag - base) / (enc - base), 4) if enc > base else None


def beets_gap(t: dict) -> str:
    """Why the build is behind beets, in the run's own figures."""
    b = t["beets"]
    outputs = t["tracks"] * len(t["profiles"])
    extra = (t["build_first"]["cpu_s"] - b["convert_first"]["cpu_s"]) / outputs
    why = []
    if b["ratio_first"] <= 1 and extra > 0:
        why.append(f"first build: the build used {extra * 1000:.0f} ms more CPU per output than beets "
                   "(a music-encode process per output under tup, where beets converts in one process)")
    elif b["ratio_first"] <= 1:
        why.append(f"first build: less CPU than beets ({-extra * 1000:.0f} ms per output) but a longer wall "
                   "time (scheduling, the last outputs running alone)")
    if b["ratio_nochange"] <= 1:
        why.append("no-change re-run: slower than beets")
    return "; ".join(why)


def targets(results: dict) -> list[dict]:
    out = []
    t = results.get("throughput")
    if t:
        others = t["build_first"]["other_load_cores"]
        eff = t["parallel_efficiency"]
        out.append({"target": "parallel efficiency >= 0.9",
                    "value": {"wall": eff, "encoder_cpu_share": t["cpu_efficiency"]}, "met": eff >= 0.9,
                    "why": "" if eff >= 0.9 else (
                        f"the bare encoders' own efficiency with {JOBS} processes in this run was "
                        f"{t['bare_parallel_efficiency']}; the build spends {1 - t['cpu_efficiency']:.0%} of its CPU outside "
                        f"the encoders (music-encode start-up, tags, art, tup); other processes used {others} cores "
                        f"during the build")})
        b = t.get("beets", {})
        if "ratio_first" in b:
            met = b["ratio_first"] > 1 and b["ratio_nochange"] > 1
            out.append({"target": "faster than beets convert at equal settings (beets wall / build wall > 1)",
                        "value": {"first": b["ratio_first"], "no_change": b["ratio_nochange"],
                                  "first_cpu": b.get("cpu_ratio_first"), "no_change_cpu": b.get("cpu_ratio_nochange")},
                        "met": met, "why": "" if met else beets_gap(t)})
    s = results.get("scale")
    if s:
        tup = s["nochange"]["tup_s"]
        met = tup is not None and tup < 1 and s["tracks"] >= 10_000
        out.append({"target": "no-change rebuild of 10,000 tracks under 1 s of build-tool (tup) time",
                    "value": {"tup_s": tup, "music_build_wall_s": s["nochange"]["wall_s"], "tracks": s["tracks"]},
                    "met": met, "why": "" if met else (
                        f"not measured at 10,000: this run had BENCH_SCALE_TRACKS={s['tracks']}"
                        if s["tracks"] < 10_000 else "see the closing note")})
        r = s["album_ratio_tup"]
        met = r is not None and r < 0.05
        out.append({"target": "tag-only edit of a 12-track album under 5% of its re-encode (tup time)",
                    "value": {"tup_ratio": r, "wall_ratio": s["album_ratio_wall"],
                              "marginal_wall_ratio": s["album_ratio_marginal_wall"],
                              "cpu_ratio": s.get("album_ratio_cpu"),
                              "marginal_cpu_ratio": s.get("album_ratio_marginal_cpu")},
                    "met": met, "why": "" if met else "see the closing note"})
    return out


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
            results["throughput"] = section_throughput(profiles)
        if "scale" in SECTIONS:
            results["scale"] = section_scale(profiles)
        if "control" in SECTIONS:
            results["control"] = section_control()
    results["loadavg_after"] = loadavg()
    results["total"] = total.figures()
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    derived(results)
    results["targets"] = targets(results)
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / results["date"]
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    import report

    stem.with_suffix(".md").write_text(report.markdown(results))
    say(f"wrote {stem}.json and {stem}.md ({total.wall / 60:.1f} min; load after {results['loadavg_after']})")
    return 0


def rereport(path: str) -> int:
    """Recompute the derived ratios, targets and Markdown of a results file (keeps its note)."""
    import report

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
