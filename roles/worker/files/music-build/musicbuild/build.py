"""music-build: one incremental build of every profile.

    scan.py: the sources into tup's index  ->  tup.py: tup -k (one variant per profile),
    running encode.py per track through service.py  ->  outputs.py: playlists, remove
    outputs whose source is gone  ->  <builds>/report.json

Layout of the builds directory:
    <builds>/<profile>/...          what users read (served by rsync)
    <builds>/report.json            the last build's report
    <builds>/.music/tup/            tup's tree: Tupdefault.lua, index/, <profile>/tup.config
    <builds>/.music/state, tmp, journal.jsonl, scan-cache.json, configs.json (each
                            profile config as the last build saw it), build.log, lock
    <builds>/.music/replaygain.json  ReplayGain measured for replaygain: compute (replaygain.py)
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import errno
import json
import fcntl
import hashlib
import os
import shutil
import signal
import sys
import time

from . import install, scan, service
from .fsutil import describe, display, write_json
from .outputs import account, first, fold_journal, load_records, plan_pruning, read_journal
from .profile import ProfileError, parse_tup_config, render_tup_config
from .tup import PIDFILE, TupError, clear_leftovers, install_rules, run_tup


class BuildError(Exception):
    pass


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def say(msg: str) -> None:
    print(f"music-build: {msg}", flush=True)


def read_profiles(tup_root: str, texts: dict[str, str] | None = None) -> dict[str, dict]:
    """Each profile's settings, read from its tup.config (and its text into `texts`)."""
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
        if texts is not None:
            texts[name] = text
    return profiles


CONFIGS = "configs.json"


def mark_changed_configs(tup_root: str, texts: dict[str, str]) -> None:
    """Make sure tup sees every profile config whose text changed since the last build.

    tup notices a changed file by its ctime in whole seconds: a config rewritten within the
    second tup last saw it in looks unchanged, and the outputs would keep the old settings.
    Each build records every config's digest and ctime; a changed text still in the recorded
    second is touched again once that second is over (a wait of under a second, only then)."""
    path = os.path.join(os.path.dirname(tup_root), CONFIGS)
    try:
        with open(path, encoding="utf-8") as fh:
            seen = json.load(fh)
    except (OSError, ValueError):
        seen = {}
    record = {}
    for name, text in texts.items():
        config = os.path.join(tup_root, name, "tup.config")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        ctime = os.stat(config).st_ctime_ns
        before = seen.get(name) if isinstance(seen, dict) else None
        if isinstance(before, dict) and before.get("digest") != digest and isinstance(before.get("ctime_ns"), int):
            second = before["ctime_ns"] // 10**9
            while ctime // 10**9 == second and time.time() < second + 3:
                # File times trail time.time() by a clock tick: aim a little past the second.
                time.sleep(max(0.0, second + 1.02 - time.time()))
                try:
                    os.utime(config)
                    ctime = os.stat(config).st_ctime_ns
                except OSError as exc:
                    raise BuildError(f"{config} changed within the second of the last build and could not be "
                                     f"touched for tup to see it ({describe(exc)}): run the build again") from None
        record[name] = {"digest": digest, "ctime_ns": ctime}
    write_json(path, record, indent=1)


class GuardTripped(BuildError):
    """The build removed nothing because too much would have gone; the user may confirm."""


class Interrupted(BuildError):
    pass


CONFIRM = ("to remove them, confirm for this run only: -e music_allow_mass_removal=true "
           "(music-build --allow-mass-removal)")


def build(sources: str, builds: str, jobs: int, only: list[str] | None = None, allow_mass_removal: bool = False,
          removal_share: float = 0.5) -> dict:
    """One build, in named stages: check and lock, choose profiles, prepare the state folder,
    scan and run tup, account per profile (record, playlists, prune), report."""
    sources = os.path.abspath(sources)
    builds = os.path.abspath(builds)
    music = os.path.join(builds, ".music")
    tup_root = os.path.join(music, "tup")
    lock = open_build(sources, builds, music, tup_root)  # held until this function returns
    profiles, chosen = choose_profiles(tup_root, only)
    started = now()
    cache = scan.load_cache(os.path.join(music, "scan-cache.json"))
    records = load_records(music, builds, profiles, cache)
    # What an earlier build made but could not record (killed after tup ran its commands):
    # tup will not run those commands again, so its journal is the only word of them.
    fold_journal(records, builds, read_journal(os.path.join(music, "journal.jsonl")))
    journal_path = prepare_state(music, tup_root)
    result, rc, served, tup_problem = compile_profiles(sources, builds, music, tup_root, profiles, chosen, jobs,
                                                       bool(only), cache, records, allow_mass_removal)
    events = read_journal(journal_path)
    report = {"profiles": {p: account(p, builds, music, result, events, records[p], removal_share,
                                      allow_mass_removal) for p in chosen},
              "started": started, "encode_service_commands": served}
    check_tup(rc, events, music, tup_problem)
    report["finished"] = now()
    write_json(os.path.join(builds, "report.json"), report, indent=2)
    summarize(report, builds)
    lock.close()
    withheld = {p: r["withheld"] for p, r in report["profiles"].items() if "withheld" in r}
    if withheld:
        raise GuardTripped("; ".join(f"profile {p}: nothing removed: {w['reason']}, e.g. "
                                     + ", ".join(w["first"][:3]) for p, w in withheld.items()) + "; " + CONFIRM)
    return report


def open_build(sources: str, builds: str, music: str, tup_root: str):
    """Check the folders (they may not overlap), make the state folder, take the build's lock
    (returned) and end whatever a killed earlier build left running."""
    check_sources(sources)
    if not os.access(sources, os.R_OK | os.X_OK):
        raise BuildError(f"sources directory {display(sources)} is not readable by this user")
    check_overlap(sources, builds)
    os.makedirs(tup_root, exist_ok=True)
    lock = open(os.path.join(music, "lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise BuildError(f"another build of {display(builds)} is running") from None
    ended = clear_leftovers(tup_root, os.path.join(music, PIDFILE))
    if ended:
        say(f"ended what an interrupted earlier build left running (process group {ended})")
    return lock


def check_sources(sources: str) -> None:
    if not os.path.isdir(sources):
        if os.path.lexists(sources):
            raise BuildError(f"sources {display(sources)} is not a directory")
        raise BuildError(f"sources directory {display(sources)} does not exist")


def _identities(path: str) -> tuple[tuple[int, int] | None, set[tuple[int, int]]]:
    """(device, inode) of `path` (None when it does not exist yet) and of each folder above
    it, as the kernel shows them."""
    self_id, above, path = None, set(), os.path.realpath(path)
    first = True
    while True:
        try:
            st = os.stat(path)
            if first:
                self_id = (st.st_dev, st.st_ino)
            else:
                above.add((st.st_dev, st.st_ino))
        except OSError:
            pass
        first = False
        parent = os.path.dirname(path)
        if parent == path:
            return self_id, above
        path = parent


def check_overlap(sources: str, builds: str) -> None:
    """Sources and builds may not be one folder nor contain each other, through symlinks and
    bind mounts too (a folder is the same folder wherever it is mounted). A builds folder
    that does not exist yet is placed by the folders above it."""
    src_self, src_above = _identities(sources)
    out_self, out_above = _identities(builds)
    if os.path.realpath(sources) == os.path.realpath(builds) or (src_self and src_self == out_self):
        problem = "are the same folder"
    elif src_self and src_self in out_above:
        problem = "overlap: the builds folder is inside the sources folder"
    elif out_self and out_self in src_above:
        problem = "overlap: the sources folder is inside the builds folder"
    else:
        real_src, real_out = os.path.realpath(sources), os.path.realpath(builds)
        if real_out.startswith(real_src + os.sep):
            problem = "overlap: the builds folder is inside the sources folder"
        elif real_src.startswith(real_out + os.sep):
            problem = "overlap: the sources folder is inside the builds folder"
        else:
            return
    raise BuildError(f"sources {display(sources)} and builds {display(builds)} {problem}; "
                     "nothing was written. Choose folders apart from each other")


def choose_profiles(tup_root: str, only: list[str] | None) -> tuple[dict[str, dict], list[str]]:
    """Every configured profile, and those this build brings up to date (--only)."""
    texts: dict[str, str] = {}
    profiles = read_profiles(tup_root, texts)
    if not profiles:
        raise BuildError(f"no profiles: no {tup_root}/<profile>/tup.config")
    unknown = sorted(set(only or []) - set(profiles))
    if unknown:
        raise BuildError(f"--only names {', '.join(unknown)}, not among the profiles ({', '.join(profiles)})")
    mark_changed_configs(tup_root, texts)
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
                     chosen: list[str], jobs: int, only: bool, cache: dict, records: dict,
                     allow_empty: bool) -> tuple[scan.ScanResult, int, int, OSError | None]:
    """Scan the sources into tup's index, then run tup with the encode service. Returns the
    scan's result, tup's exit code, the number of commands the service ran and the error of
    a tup database that could not be written (a full disk)."""
    pidfile = os.path.join(music, PIDFILE)
    encode_service = service.Service(music, pidfile)  # it loads its libraries while the sources are scanned
    try:
        say(f"scanning {display(sources)}; building {', '.join(chosen)}")
        try:
            result = scan.scan(sources, builds, tup_root, profiles, os.path.join(music, "scan-cache.json"),
                               cache=cache, records=records, allow_empty=allow_empty)
        except scan.EmptySources as exc:
            raise GuardTripped(f"{exc}: nothing was changed (an unmounted disk or a failed sync?); "
                               + CONFIRM) from None
        say(f"{len(result.tracks)} tracks, {len(result.failed)} unusable, {result.index_changes} index changes")
        for p in chosen:
            os.makedirs(os.path.join(builds, p), exist_ok=True)
            os.chmod(os.path.join(builds, p), 0o755)  # served to others whatever an earlier umask made it
        # Only the chosen variants are brought up to date; the others wait for their turn.
        rc, problem = run_tup(tup_root, jobs, os.path.join(music, "build.log"), chosen if only else [],
                              encode_service.name(), pidfile)
    finally:
        served = encode_service.stop()
    return result, rc, served, problem


def check_tup(rc: int, events: list[dict], music: str, problem: OSError | None = None) -> None:
    """tup failing is explained by a track's failure, or the build fails with tup's words (one
    line); a tup that could not write its database (a full disk) fails the build whatever its
    exit code, as its commands may not have run."""
    if problem is not None:
        raise problem
    if rc != 0 and not any(e["event"] == "failed" for e in events):
        log = os.path.join(music, "build.log")
        try:
            with open(log, encoding="utf-8", errors="replace") as fh:
                lines = [ln.strip() for ln in fh.read()[-4000:].splitlines() if ln.strip()]
        except OSError:
            lines = []
        raise BuildError(f"tup failed (exit {rc}) without a track failure: "
                         f"{' | '.join(lines[-3:]) or 'no message'} (see {display(log)})")


def summarize(report: dict, builds: str) -> None:
    for p, r in report["profiles"].items():
        say(f"{p}: {r['encoded']} encoded, {r['retagged']} retagged, {r['unchanged']} unchanged, "
            f"{r['removed']} removed, {len(r['failed'])} failed"
            + (f", {len(r['notes'])} notes" if r.get("notes") else ""))
    if any(r["failed"] for r in report["profiles"].values()):
        say("failed tracks are listed in " + os.path.join(builds, "report.json"))


def dry_run(sources: str, builds: str, allow_mass_removal: bool = False, removal_share: float = 0.5) -> dict:
    """What a build would remove, and whether the mass-removal guard would hold it back,
    without writing anything (the play's --check). Sources are read, not the index."""
    sources, builds = os.path.abspath(sources), os.path.abspath(builds)
    music = os.path.join(builds, ".music")
    tup_root = os.path.join(music, "tup")
    check_sources(sources)
    check_overlap(sources, builds)
    try:
        os.stat(tup_root)  # not there yet (no build so far): nothing to remove; unreadable: an error
        profiles = read_profiles(tup_root)
    except FileNotFoundError:
        profiles = {}
    cache = copy.deepcopy(scan.load_cache(os.path.join(music, "scan-cache.json")))
    records = load_records(music, builds, profiles, cache)
    fold_journal(records, builds, read_journal(os.path.join(music, "journal.jsonl")))
    result = scan.ScanResult()
    folders, new_sources = scan.survey(sources, cache["sources"], result)
    plan = {"profiles": {}, "empty_sources": False}
    if not result.seen and not result.protected and any(records.values()):
        plan["empty_sources"] = not allow_mass_removal
    dests = scan.assign_destinations(folders, profiles, result, cache, new_sources)
    scan.plan_outputs(folders, new_sources, dests, profiles, builds, result)
    for p in profiles:
        tree = os.path.join(builds, p)
        expected = result.expected[p] | {os.path.relpath(spec["dest"], tree) for spec in result.playlists[p]}
        pruning = plan_pruning(records[p], expected, result, removal_share, allow_mass_removal)
        plan["profiles"][p] = {"would_remove": first(pruning.remove), "withheld": pruning.withheld}
    return plan


def share(text: str) -> float:
    """A share between 0 and 1 (a NaN would disarm the guard)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="music-build", description="Build every profile of a music library, incrementally, with tup.")
    parser.add_argument("--version", action="version", version=f"music-build {install.version()} {install.stamp() or 'source'}")
    parser.add_argument("--sources", required=True, help="the lossless library (read only)")
    parser.add_argument("--builds", required=True, help="where the profiles' trees and report.json go")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel encoders (default: cores)")
    parser.add_argument("--only", default="", help="comma-separated profiles to build this time (default: all)")
    parser.add_argument("--allow-mass-removal", action="store_true",
                        help="this run only: remove outputs even when most of a profile's sources are gone "
                             "or the sources folder is empty")
    parser.add_argument("--removal-share", type=share, default=0.5,
                        help="the share of a profile's outputs whose sources may be gone before the build "
                             "refuses to remove them (default 0.5)")
    parser.add_argument("--dry-run", action="store_true",
                        help="write nothing; print (JSON) what the build would remove and whether it would refuse")
    args = parser.parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    if args.dry_run:
        try:
            plan = dry_run(args.sources, args.builds, args.allow_mass_removal, args.removal_share)
        except (BuildError, OSError) as exc:
            print(f"music-build: error: {describe(exc) if isinstance(exc, OSError) else exc}", file=sys.stderr)
            return 1
        print(json.dumps(plan, indent=2))
        refused = plan["empty_sources"] or any(r["withheld"] for r in plan["profiles"].values())
        return 3 if refused else 0
    os.umask(0o022)  # outputs are served to other users, whatever the caller's umask
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    try:
        build(args.sources, args.builds, max(1, args.jobs), only, args.allow_mass_removal, args.removal_share)
    except GuardTripped as exc:
        print(f"music-build: refused: {exc}", file=sys.stderr)
        return 3
    except (BuildError, TupError) as exc:
        print(f"music-build: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.filename is None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            exc.filename = os.path.abspath(args.builds)  # the one filesystem the build writes to
        print(f"music-build: error: {describe(exc)}", file=sys.stderr)
        return 1
    return 0


def _interrupted(signum, _frame):
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}; tup and its commands were ended, "
                      "the next build carries on where this one stopped")
