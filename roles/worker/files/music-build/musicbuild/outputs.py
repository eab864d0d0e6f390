"""The outputs after tup: what the encoders did (the journal), each profile's playlists, the
files no current source accounts for removed, and the profile's part of the report.
"""
from __future__ import annotations

import json
import os

from .profile import EXTENSIONS
from .scan import ScanResult, write_if_changed

AUDIO_EXTS = tuple("." + ext for ext in EXTENSIONS.values())  # what the codec table's encoders write


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
        write_if_changed(spec["dest"], "\n".join(lines) + "\n")
        expected.add(os.path.relpath(spec["dest"], tree))


def account(p: str, builds: str, result: ScanResult, events: list[dict]) -> dict:
    """Profile p after tup: its playlists written, what no source accounts for pruned, and its
    part of the report."""
    mine = [e for e in events if e.get("profile") == p]
    usable = set(result.tracks)
    failed = [{"source": f["source"], "reason": f["reason"]} for f in result.failed]
    failed += [{"source": e["source"], "reason": e["reason"]} for e in mine if e["event"] == "failed"]
    encoded = sum(1 for e in mine if e["event"] == "encoded")
    retagged = sum(1 for e in mine if e["event"] == "retagged")
    track_failures = sum(1 for e in mine if e["event"] == "failed" and e["source"] in usable)
    write_playlists(result.playlists[p], os.path.join(builds, p), result.expected[p])
    removed = prune(os.path.join(builds, p), result.expected[p])
    return {
        "path": os.path.join(builds, p),
        "encoded": encoded,
        "retagged": retagged,
        "unchanged": max(0, len(result.tracks) - encoded - retagged - track_failures),
        "removed": removed,
        "failed": sorted(failed, key=lambda f: f["source"]),
    }
