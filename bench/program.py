"""The program measured, and the bare encoders it is measured against.

The build program is installed into the work dir as the worker role installs it on a host:
packed into one archive by the role's lookup (music.profiles.build_program), unpacked and
precompiled by the archive's own installer. `music_build` runs it once and reads back what it
did (tup's time, the encoder runs of the journal, report.json). `bare_encode` runs the
encoder commands of the codec table (musicbuild.profile), the build's own, without the
build around them.
"""
from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import subprocess
from pathlib import Path

from musicbuild import profile as codec_table
from musicbuild.profile import EXTENSIONS, normalize_profile, render_tup_config

from measure import Meter, say
from settings import JOBS, ROOT, WORK

SOURCE = ROOT / "roles" / "worker" / "files" / "music-build"
INSTALLED = WORK / "program" / "current"  # the installer points `current` at the copy it made


def program_revision() -> dict:
    """The commit measured, and whether the build program differed from it (uncommitted edits)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"),
            "program_uncommitted_changes": bool(git("status", "--porcelain", "roles/worker/files",
                                                    "plugins/module_utils/music_profile.py"))}


def install_program() -> Path:
    from ansible_collections.music.profiles.plugins.lookup import build_program

    shutil.rmtree(WORK / "program", ignore_errors=True)
    packed = build_program.pack(str(SOURCE), str(WORK))
    subprocess.run(["/usr/bin/python3", "-I", packed["path"], "install", "--into", str(WORK / "program"),
                    "--remove-archive"], check=True, stdout=subprocess.DEVNULL)
    return INSTALLED


def load_profiles() -> dict:
    import yaml

    data = yaml.safe_load((ROOT / "group_vars" / "all" / "profiles.yml").read_text())
    return data["music_profiles"]


def encoder_command(name: str, profile: dict, out: str) -> list[str]:
    """The encoder command of profile `name`, from the codec table the build itself reads."""
    return codec_table.encoder_command(normalize_profile(name, profile), out)


def bare_encode(files: list[Path], profiles: dict, names: list[str], out: Path, parallel: int) -> dict:
    """`flac -d -c -s SRC | <encoder>` per file and profile, `parallel` at a time."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = [(src, name, i) for name in names for i, src in enumerate(files)]

    def one(job):
        src, name, i = job
        dest = out / f"{name}-{i}.{EXTENSIONS[profiles[name]['codec']]}"
        dec = subprocess.Popen(["flac", "-d", "-c", "-s", "--", str(src)], stdout=subprocess.PIPE)
        enc = subprocess.Popen(encoder_command(name, profiles[name], str(dest)), stdin=dec.stdout,
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
        proc = subprocess.run([str(INSTALLED / "music-build"), "--sources", str(sources),
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
