"""music-build: one incremental build of every profile.

    scan.py: the sources into tup's index  ->  tup.py: tup -k (one variant per profile),
    running encode.py per track through service.py  ->  outputs.py: playlists, remove
    outputs whose source is gone  ->  <builds>/report.json

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
import os
import shutil
import sys

from . import install, scan, service
from .fsutil import write_json
from .outputs import account, read_journal
from .profile import ProfileError, parse_tup_config, render_tup_config
from .tup import install_rules, run_tup


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
            text = fh.read()
        try:
            profile_name, profile = parse_tup_config(text, name)
        except ProfileError as exc:
            raise BuildError(f"{config}: {exc}") from None
        if text != render_tup_config(profile_name, profile):
            # The tup rules read it as this version renders it (CONFIG_SETTINGS and all).
            raise BuildError(f"{config} is not as this version of tup_profile renders it: run the compile "
                             "playbook (or the tup_profile module) to write it again")
        profiles[profile_name] = profile
    return profiles


def build(sources: str, builds: str, jobs: int, only: list[str] | None = None) -> dict:
    """One build, in named stages: check and lock, choose profiles, prepare the state folder,
    scan and run tup, account per profile (playlists, prune), report."""
    sources = os.path.abspath(sources)
    builds = os.path.abspath(builds)
    music = os.path.join(builds, ".music")
    tup_root = os.path.join(music, "tup")
    lock = open_build(sources, builds, music, tup_root)  # held until this function returns
    profiles, chosen = choose_profiles(tup_root, only)
    started = now()
    journal_path = prepare_state(music, tup_root)
    result, rc, served = compile_profiles(sources, builds, music, tup_root, profiles, chosen, jobs, bool(only))
    events = read_journal(journal_path)
    report = {"profiles": {p: account(p, builds, result, events) for p in chosen}, "started": started,
              "encode_service_commands": served}
    check_tup(rc, events, music)
    report["finished"] = now()
    write_json(os.path.join(builds, "report.json"), report, indent=2)
    summarize(report, builds)
    lock.close()
    return report


def open_build(sources: str, builds: str, music: str, tup_root: str):
    """Check the sources, make the state folder and take the build's lock (returned)."""
    if not os.path.isdir(sources):
        raise BuildError(f"sources directory {sources} does not exist")
    if not os.access(sources, os.R_OK | os.X_OK):
        raise BuildError(f"sources directory {sources} is not readable by this user")
    os.makedirs(tup_root, exist_ok=True)
    lock = open(os.path.join(music, "lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise BuildError(f"another build of {builds} is running") from None
    return lock


def choose_profiles(tup_root: str, only: list[str] | None) -> tuple[dict[str, dict], list[str]]:
    """Every configured profile, and those this build brings up to date (--only)."""
    profiles = read_profiles(tup_root)
    if not profiles:
        raise BuildError(f"no profiles: no {tup_root}/<profile>/tup.config")
    unknown = sorted(set(only or []) - set(profiles))
    if unknown:
        raise BuildError(f"--only names {', '.join(unknown)}, not among the profiles ({', '.join(profiles)})")
    return profiles, [p for p in profiles if not only or p in only]


def prepare_state(music: str, tup_root: str) -> str:
    """A fresh temporary folder, art cache and journal for this build; tup's rules. Returns
    the journal's path."""
    shutil.rmtree(os.path.join(music, "tmp"), ignore_errors=True)
    # Prepared cover art is shared by the tracks of one build; start each build afresh.
    shutil.rmtree(os.path.join(music, "art"), ignore_errors=True)
    os.makedirs(os.path.join(music, "tmp"))
    journal_path = os.path.join(music, "journal.jsonl")
    open(journal_path, "w").close()
    install_rules(tup_root)
    return journal_path


def compile_profiles(sources: str, builds: str, music: str, tup_root: str, profiles: dict[str, dict],
                     chosen: list[str], jobs: int, only: bool) -> tuple[scan.ScanResult, int, int]:
    """Scan the sources into tup's index, then run tup with the encode service. Returns the
    scan's result, tup's exit code and the number of commands the service ran."""
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
    return result, rc, served


def check_tup(rc: int, events: list[dict], music: str) -> None:
    """tup failing is explained by a track's failure, or the build fails with tup's words."""
    if rc != 0 and not any(e["event"] == "failed" for e in events):
        tail = open(os.path.join(music, "build.log"), encoding="utf-8", errors="replace").read()[-2000:]
        raise BuildError(f"tup failed (exit {rc}) without a track failure; see {music}/build.log:\n{tail}")


def summarize(report: dict, builds: str) -> None:
    for p, r in report["profiles"].items():
        say(f"{p}: {r['encoded']} encoded, {r['retagged']} retagged, {r['unchanged']} unchanged, "
            f"{r['removed']} removed, {len(r['failed'])} failed")
    if any(r["failed"] for r in report["profiles"].values()):
        say("failed tracks are listed in " + os.path.join(builds, "report.json"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="music-build", description="Build every profile of a music library, incrementally, with tup.")
    parser.add_argument("--version", action="version", version=f"music-build {install.version()} {install.stamp() or 'source'}")
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
