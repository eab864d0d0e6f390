"""The outputs after tup: what the encoders did (the journal), each profile's playlists, the
outputs no current source accounts for removed, and the profile's part of the report.

The build owns only what it made. Each profile's record (`.music/outputs/<profile>.json`,
output path -> source path) lists the outputs it wrote; pruning removes only recorded outputs,
so anything else in a profile's tree (a `.stfolder`, `.nomedia`, the user's own files) is left
alone and reported as `foreign`. A source that could not be read this time keeps its outputs.
And when more than a set share of a profile's outputs would go because their sources are
gone (an unmounted disk, a wrong sync prefix), nothing is removed unless the user confirms.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from . import names
from .fsutil import describe, display, exact, write_json
from .profile import EXTENSIONS
from .scan import ScanResult, write_if_changed

AUDIO_EXTS = tuple("." + ext for ext in EXTENSIONS.values())  # what the codec table's encoders write
from .formats import KINDS as _COPIED  # noqa: E402 (lossy sources copied as they are are tracks too)
AUDIO_EXTS += tuple(ext for ext in _COPIED if ext not in AUDIO_EXTS)
MADE_EVENTS = ("encoded", "retagged", "unchanged", "copied", "moved")
FIRST = 5  # paths listed in the report for long lists


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


def record_path(music: str, profile: str) -> str:
    return os.path.join(music, "outputs", f"{profile}.json")


def load_records(music: str, builds: str, profiles, cache: dict) -> dict[str, dict[str, str]]:
    """Each profile's record of the outputs the build made (output relpath -> source relpath).

    A build made before records existed gets one seeded from its scan cache: the outputs its
    last scan assigned that are there, so they are not mistaken for foreign files."""
    records = {}
    for p in profiles:
        try:
            with open(record_path(music, p), encoding="utf-8", errors="surrogateescape") as fh:
                records[p] = json.load(fh)["outputs"]
            continue
        except (OSError, ValueError, KeyError):
            pass
        assigned = cache.get("dests", {}).get(p, {})
        tree = os.path.join(builds, p)
        records[p] = {dest: rel for rel, (_, dest) in assigned.items() if os.path.lexists(os.path.join(tree, dest))}
    return records


def fold_journal(records: dict[str, dict[str, str]], builds: str, events: list[dict]) -> None:
    """Add to the records the outputs a journal says were made. Run with the last build's
    journal before a build starts: when that build was killed after tup ran its commands but
    before it recorded their outputs, tup will not run them again, and nothing else would
    ever record them (they would be neither pruned nor made again when deleted). For a build
    that finished, this changes nothing."""
    for e in events:
        if e.get("event") not in MADE_EVENTS or not isinstance(e.get("dest"), str):
            continue
        p = e.get("profile")
        tree = os.path.join(builds, str(p))
        if p in records and e["dest"].startswith(tree + os.sep):
            records[p][os.path.relpath(e["dest"], tree)] = e["source"]


def save_record(music: str, profile: str, record: dict[str, str]) -> None:
    os.makedirs(os.path.join(music, "outputs"), exist_ok=True)
    write_json(record_path(music, profile), {"version": 1, "outputs": record}, separators=(",", ":"))


def notes_path(music: str, profile: str) -> str:
    return os.path.join(music, "outputs", f"{profile}.notes.json")


def update_notes(music: str, profile: str, events: list[dict], result: ScanResult) -> dict[str, list[str]]:
    """Each source's notes for a profile (what had to be adapted for it: a downmix, a setting
    the codec cannot honour, a picture left out), kept between builds: an output written
    replaces its source's notes, a source gone takes them along."""
    try:
        with open(notes_path(music, profile), encoding="utf-8", errors="surrogateescape") as fh:
            notes = json.load(fh)["notes"]
    except (OSError, ValueError, KeyError):
        notes = {}
    before = json.dumps(notes, sort_keys=True)
    for e in events:
        if e.get("event") in MADE_EVENTS and "notes" in e:
            if e["notes"]:
                notes[e["source"]] = list(e["notes"])
            else:
                notes.pop(e["source"], None)
    tracks = set(result.tracks)
    outside = result.outside.get(profile, set())  # left out by the profile's subset: its output is gone
    for source in list(notes):
        if (source not in tracks or source in outside) and not result.is_protected(source):
            del notes[source]
    if json.dumps(notes, sort_keys=True) != before:
        os.makedirs(os.path.dirname(notes_path(music, profile)), exist_ok=True)
        write_json(notes_path(music, profile), {"version": 1, "notes": notes}, separators=(",", ":"))
    return notes


def write_playlists(specs: list[dict], tree: str, expected: set[str], record: dict[str, str]) -> list[dict]:
    """One m3u8 per album, listing the tracks of the album that are in the tree, in order,
    each as one #EXTINF line and one path line (names.m3u_label, names.m3u_path).
    Returns the failures (a playlist that cannot be written keeps its last version)."""
    failures = []
    for spec in specs:
        folder = os.path.dirname(spec["dest"])
        lines = ["#EXTM3U"]
        for path, secs, label in spec["entries"]:
            line = names.m3u_path(path)
            if line is not None and os.path.isfile(os.path.join(folder, path)):
                lines += [f"#EXTINF:{secs},{names.m3u_label(label)}", line]
        if len(lines) == 1:
            continue
        rel = os.path.relpath(spec["dest"], tree)
        expected.add(rel)
        try:
            write_if_changed(spec["dest"], "\n".join(lines) + "\n")
        except OSError as exc:
            failures.append({"source": spec["source"], "reason": f"playlist not written: {describe(exc)}",
                             "retry": True})
            continue
        record[rel] = spec["source"]
    return failures


@dataclass
class Pruning:
    """What pruning a profile would remove, and whether the mass-removal guard holds it back."""
    remove: list[str] = field(default_factory=list)   # recorded outputs no current source accounts for
    gone: int = 0                                      # of which: their source is gone
    withheld: str | None = None                        # why nothing is removed, when the guard trips


def plan_pruning(record: dict[str, str], expected: set[str], result: ScanResult, share: float,
                 allow: bool, outputs_before: int | None = None) -> Pruning:
    """Recorded outputs no longer expected, minus those of sources that could not be read. A
    source that is still there but whose output moved (a profile change), or whose audio is
    still there under another name (a renamed file or folder), is not counted as gone; when
    the gone ones are more than `share` of the outputs the profile had before this build
    (`outputs_before`, default: the record's size), the guard trips. What this build adds is
    left out of the share, so that --dry-run, which cannot know it, holds the same line."""
    plan = Pruning()
    for dest, source in sorted(record.items()):
        if dest in expected or result.is_protected(source):
            continue
        plan.remove.append(dest)
        if source not in result.seen and source not in result.moved:
            plan.gone += 1
    total = len(record) if outputs_before is None else outputs_before
    if not allow and total and plan.gone > share * total:
        plan.withheld = (f"{plan.gone} of its {total} outputs would be removed because their sources "
                         f"are gone (more than {share:.0%})")
    return plan


def prune(tree: str, plan: Pruning, record: dict[str, str], failures: list[dict] | None = None) -> int:
    """Remove the planned outputs (recorded ones only) and the folders they leave empty.
    Returns the tracks removed; one that cannot be removed stays recorded, and is a failure."""
    removed = 0
    for dest in plan.remove:
        path = os.path.join(tree, dest)
        try:
            os.unlink(path)
            if dest.lower().endswith(AUDIO_EXTS):
                removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            if failures is not None:
                failures.append({"source": record[dest], "reason": f"old output not removed: {describe(exc)}",
                                 "retry": True})
            continue
        del record[dest]
        folder = os.path.dirname(path)
        while folder != tree and folder.startswith(tree + os.sep):
            try:
                os.rmdir(folder)  # only when empty: a folder holding anything else stays
            except OSError:
                break
            folder = os.path.dirname(folder)
    return removed


def foreign_files(tree: str, record: dict[str, str], expected: set[str]) -> list[str]:
    """Files in a profile's tree that the build did not make (left alone)."""
    found = []
    for top, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(top, name), tree)
            if rel not in record and rel not in expected:
                found.append(rel)
    return found


def first(paths: list[str]) -> dict:
    return {"count": len(paths), "first": [display(p) for p in paths[:FIRST]]}


def account(p: str, builds: str, music: str, result: ScanResult, events: list[dict], record: dict[str, str],
            share: float, allow: bool) -> dict:
    """Profile p after tup: its record brought up to date, its playlists written, what no
    source accounts for pruned (unless the guard holds it back), and its part of the report."""
    tree = os.path.join(builds, p)
    outputs_before = len(record)
    mine = [e for e in events if e.get("profile") == p]
    for e in mine:
        if e["event"] in MADE_EVENTS and e.get("dest", "").startswith(tree + os.sep):
            record[os.path.relpath(e["dest"], tree)] = e["source"]
    usable = set(result.tracks)
    failed = [_failure(f) for f in result.failed]
    failed += [_failure(e) for e in mine if e["event"] == "failed"]
    encoded = sum(1 for e in mine if e["event"] == "encoded")
    retagged = sum(1 for e in mine if e["event"] == "retagged")
    moved = sum(1 for e in mine if e["event"] == "moved")
    track_failures = sum(1 for e in mine if e["event"] == "failed" and e["source"] in usable)
    problems = write_playlists(result.playlists[p], tree, result.expected[p], record)
    plan = plan_pruning(record, result.expected[p], result, share, allow, outputs_before)
    removed = 0 if plan.withheld else prune(tree, plan, record, problems)
    failed += [_failure(f) for f in problems]
    save_record(music, p, record)
    notes = update_notes(music, p, mine, result)
    report = {
        "path": display(tree),
        "encoded": encoded,
        "retagged": retagged,
        "unchanged": max(0, len(result.tracks) - encoded - retagged - moved - track_failures
                         - len(getattr(result, "skipped", {}).get(p, [])) - len(result.outside.get(p, ()))),
        "moved": moved,
        "outside_subset": len(result.outside.get(p, ())),  # tracks its include/exclude leave out
        "removed": removed,
        "restored": result.restored.get(p, 0),
        "failed": sorted(failed, key=lambda f: f["source"]),
        "foreign": first(foreign_files(tree, record, result.expected[p])),
        # lossy sources this profile leaves out (its lossy: skip): every one named
        "skipped": {"count": len(getattr(result, "skipped", {}).get(p, [])),
                    "sources": [display(s) for s in sorted(getattr(result, "skipped", {}).get(p, []))]},
        "notes": [{**exact(source), "note": display(text)} for source in sorted(notes) for text in notes[source]],
    }
    if plan.withheld:
        report["withheld"] = {"reason": plan.withheld, **first(plan.remove)}
    return report


def _failure(event: dict) -> dict:
    return {**exact(event["source"]), "reason": display(event["reason"]), "retry": event.get("retry", True)}
