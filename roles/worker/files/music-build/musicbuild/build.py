"""music-build: one incremental build of every profile.

    scan the sources into tup's index  ->  tup -k (one variant per profile)
    ->  remove outputs whose source is gone  ->  <builds>/report.json

Layout of the builds directory:
    <builds>/<profile>/...          what users read (served by rsync)
    <builds>/report.json            the last build's report
    <builds>/.music/tup/            tup's tree: Tupdefault.lua, index/, <profile>/tup.config
    <builds>/.music/state, tmp, journal.jsonl, scan-cache.json, build.log, lock
"""
from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys

from .profile import ProfileError, parse_tup_config

from . import scan, service
from .fsutil import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
AUDIO_EXTS = (".flac", ".opus", ".mp3", ".ogg")


class BuildError(Exception):
    pass


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def say(msg: str) -> None:
    print(f"music-build: {msg}", flush=True)


def read_profiles(tup_root: str) -> dict[str, dict]:
    profiles = {}
    for name in sorted(os.listdir(tup_root)):
        config = os.path.join(tup_root, name, "tup.config")
        if name.startswith(".") or name == "index" or not os.path.isfile(config):
            continue
        with open(config, encoding="utf-8") as fh:
            try:
                profile_name, profile = parse_tup_config(fh.read(), name)
            except ProfileError as exc:
                raise BuildError(f"{config}: {exc}") from None
        profiles[profile_name] = profile
    return profiles


def install_rules(tup_root: str) -> None:
    scan.write_if_changed(os.path.join(tup_root, "Tupdefault.lua"),
                          open(os.path.join(HERE, "Tupdefault.lua"), encoding="utf-8").read())
    # The top folder and the index folder hold no tracks; give them empty Tupfiles.
    for folder in (tup_root, os.path.join(tup_root, "index")):
        os.makedirs(folder, exist_ok=True)
        scan.write_if_changed(os.path.join(folder, "Tupfile.lua"), "-- nothing to build here\n")


def run_tup(tup_root: str, jobs: int, log_path: str, targets: list[str], service_name: str | None) -> int:
    if not os.path.isdir(os.path.join(tup_root, ".tup")):
        subprocess.run(["tup", "init"], cwd=tup_root, check=True, stdout=subprocess.DEVNULL)
    bindir = os.path.join(os.path.dirname(HERE), "bin")
    env = {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/"),
           "MUSIC_ENCODE_SERVICE": service_name or ""}
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(["tup", "--keep-going", f"-j{jobs}", *targets], cwd=tup_root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(line)
            sys.stdout.flush()
        return proc.wait()


def read_journal(path: str) -> list[dict]:
    events = []
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return events


def prune(tree: str, expected: set[str]) -> int:
    """Remove files of a profile's tree that no current source accounts for. Returns tracks removed."""
    removed = 0
    if not os.path.isdir(tree):
        return 0
    for top, dirs, files in os.walk(tree, topdown=False):
        for name in files:
            path = os.path.join(top, name)
            if os.path.relpath(path, tree) not in expected:
                os.unlink(path)
                if name.lower().endswith(AUDIO_EXTS):
                    removed += 1
        if top != tree and not os.listdir(top):
            os.rmdir(top)
    return removed


def write_playlists(specs: list[dict], tree: str, expected: set[str]) -> None:
    """One m3u8 per album, listing the tracks of the album that are in the tree, in order."""
    for spec in specs:
        folder = os.path.dirname(spec["dest"])
        lines = ["#EXTM3U"]
        for path, secs, label in spec["entries"]:
            if os.path.isfile(os.path.join(folder, path)):
                lines += [f"#EXTINF:{secs},{label}", path]
        if len(lines) == 1:
            continue
        scan.write_if_changed(spec["dest"], "\n".join(lines) + "\n")
        expected.add(os.path.relpath(spec["dest"], tree))


def build(sources: str, builds: str, jobs: int, only: list[str] | None = None) -> dict:
    sources = os.path.abspath(sources)
    builds = os.path.abspath(builds)
    if not os.path.isdir(sources):
        raise BuildError(f"sources directory {sources} does not exist")
    if not os.access(sources, os.R_OK | os.X_OK):
        raise BuildError(f"sources directory {sources} is not readable by this user")
    music = os.path.join(builds, ".music")
    tup_root = os.path.join(music, "tup")
    os.makedirs(tup_root, exist_ok=True)
    lock = open(os.path.join(music, "lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BuildError(f"another build of {builds} is running") from None

    profiles = read_profiles(tup_root)
    if not profiles:
        raise BuildError(f"no profiles: no {tup_root}/<profile>/tup.config")
    unknown = sorted(set(only or []) - set(profiles))
    if unknown:
        raise BuildError(f"--only names {', '.join(unknown)}, not among the profiles ({', '.join(profiles)})")
    chosen = [p for p in profiles if not only or p in only]
    started = now()
    shutil.rmtree(os.path.join(music, "tmp"), ignore_errors=True)
    # Prepared cover art is shared by the tracks of one build; start each build afresh.
    shutil.rmtree(os.path.join(music, "art"), ignore_errors=True)
    os.makedirs(os.path.join(music, "tmp"))
    journal_path = os.path.join(music, "journal.jsonl")
    open(journal_path, "w").close()
    install_rules(tup_root)

    encode_service = service.Service(music)  # it loads its libraries while the sources are scanned
    try:
        say(f"scanning {sources}; building {', '.join(chosen)}")
        result = scan.scan(sources, builds, tup_root, profiles, os.path.join(music, "scan-cache.json"))
        say(f"{len(result.tracks)} tracks, {len(result.failed)} unusable, {result.index_changes} index changes")
        for p in chosen:
            os.makedirs(os.path.join(builds, p), exist_ok=True)
        # Only the chosen variants are brought up to date; the others wait for their turn.
        rc = run_tup(tup_root, jobs, os.path.join(music, "build.log"), chosen if only else [], encode_service.name())
    finally:
        served = encode_service.stop()
    events = read_journal(journal_path)

    report = {"profiles": {}, "started": started, "encode_service_commands": served}
    usable = set(result.tracks)
    for p in chosen:
        mine = [e for e in events if e.get("profile") == p]
        failed = [{"source": f["source"], "reason": f["reason"]} for f in result.failed]
        failed += [{"source": e["source"], "reason": e["reason"]} for e in mine if e["event"] == "failed"]
        encoded = sum(1 for e in mine if e["event"] == "encoded")
        retagged = sum(1 for e in mine if e["event"] == "retagged")
        track_failures = sum(1 for e in mine if e["event"] == "failed" and e["source"] in usable)
        write_playlists(result.playlists[p], os.path.join(builds, p), result.expected[p])
        removed = prune(os.path.join(builds, p), result.expected[p])
        report["profiles"][p] = {
            "path": os.path.join(builds, p),
            "encoded": encoded,
            "retagged": retagged,
            "unchanged": max(0, len(result.tracks) - encoded - retagged - track_failures),
            "removed": removed,
            "failed": sorted(failed, key=lambda f: f["source"]),
        }
    explained = any(r["failed"] for r in report["profiles"].values())
    if rc != 0 and not any(e["event"] == "failed" for e in events):
        tail = open(os.path.join(music, "build.log"), encoding="utf-8", errors="replace").read()[-2000:]
        raise BuildError(f"tup failed (exit {rc}) without a track failure; see {music}/build.log:\n{tail}")
    report["finished"] = now()
    write_json(os.path.join(builds, "report.json"), report, indent=2)
    for p, r in report["profiles"].items():
        say(f"{p}: {r['encoded']} encoded, {r['retagged']} retagged, {r['unchanged']} unchanged, "
            f"{r['removed']} removed, {len(r['failed'])} failed")
    if explained:
        say("failed tracks are listed in " + os.path.join(builds, "report.json"))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="music-build", description="Build every profile of a music library, incrementally, with tup.")
    parser.add_argument("--sources", required=True, help="the lossless library (read only)")
    parser.add_argument("--builds", required=True, help="where the profiles' trees and report.json go")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel encoders (default: cores)")
    parser.add_argument("--only", default="", help="comma-separated profiles to build this time (default: all)")
    args = parser.parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    try:
        build(args.sources, args.builds, max(1, args.jobs), only)
    except BuildError as exc:
        print(f"music-build: error: {exc}", file=sys.stderr)
        return 1
    return 0
