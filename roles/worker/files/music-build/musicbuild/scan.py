"""The scanner: mirrors the sources into tup's tree as small, content-stable index files.

For every source folder it keeps a folder `index/<dirkey>/` in the tup tree holding
    <key>.audio           audio fingerprint (STREAMINFO MD5, format, length)
    <key>.tags            every tag and the digest of the cover art the track gets
    <key>.<P>.track       source and destination of the track in profile P
    <key>.<P>.copy        an extra file copied into profile P
A file is rewritten only when its content changes, so tup re-runs exactly the commands
whose inputs changed: a tag edit changes `.tags` but not `.audio`, so the track is
re-tagged, not re-encoded. Sources are only stat()ed unless their size or mtime changed.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import posixpath
import time
from dataclasses import dataclass, field

from .profile import EXTENSIONS

from . import names, tags
from . import art
from . import subsets
from . import replaygain
from . import formats
from .source import SourceError, read_source
from .fsutil import atomic_write, display, write_json

CACHE_VERSION = 1


class EmptySources(Exception):
    """The sources folder holds nothing although earlier builds had sources (an unmounted
    disk, a failed sync): nothing is changed."""


@dataclass
class ScanResult:
    tracks: list[str] = field(default_factory=list)          # relpaths of usable tracks
    failed: list[dict] = field(default_factory=list)         # {"source", "reason", "retry"}
    expected: dict[str, set[str]] = field(default_factory=dict)  # profile -> dest relpaths kept
    playlists: dict[str, list[dict]] = field(default_factory=dict)  # profile -> album playlist specs
    # profile -> album folder + "/" -> the album playlist's relpath (collision-resolved with the tracks)
    playlist_dests: dict[str, dict[str, str]] = field(default_factory=dict)
    index_changes: int = 0
    seen: set[str] = field(default_factory=set)               # every source path found (any kind)
    # Sources that could not be read this time (folders as "dir/" prefixes): their outputs stay.
    protected: set[str] = field(default_factory=set)
    restored: dict[str, int] = field(default_factory=dict)    # profile -> outputs found missing
    # Sources gone from their path whose audio is now at another path (renamed or moved).
    moved: set[str] = field(default_factory=set)
    # profile -> the usable tracks its subset (include/exclude) leaves out
    outside: dict[str, set[str]] = field(default_factory=dict)
    # source -> its track spec's "replaygain" entry, for profiles with replaygain: compute
    replaygain: dict[str, dict] = field(default_factory=dict)
    # profile -> lossy sources left out by its `lossy: skip` (formats.mode), for the report
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def is_protected(self, source: str) -> bool:
        return source in self.protected or any(source.startswith(p) for p in self.protected if p.endswith("/"))


def _json(data) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, indent=None, separators=(",", ":")) + "\n"


def write_if_changed(path: str, content: str, racy: list | None = None) -> bool:
    """Write `path` atomically, only when its content changes.

    tup notices a changed file by its modification time in whole seconds, so a file rewritten
    within the second of its previous version could go unnoticed: such paths are added to
    `racy`, for `settle` to move on once that second is over.
    """
    old = None
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            if fh.read() == content:
                return False
            old = os.fstat(fh.fileno())
    except FileNotFoundError:
        pass
    new = atomic_write(path, content)
    if old is not None and racy is not None and int(new.st_mtime) <= int(old.st_mtime):
        racy.append((path, int(old.st_mtime)))
    return True


def settle(racy: list) -> None:
    """Give the racy files a modification time in a later second than their previous version."""
    if not racy:
        return
    latest = max(second for _, second in racy)
    while time.time() < latest + 1.01:
        time.sleep(min(1.0, latest + 1.01 - time.time()))
    for path, second in racy:
        # File times come from the kernel's coarse clock, a tick behind time.time().
        for _ in range(100):
            os.utime(path)
            if int(os.stat(path).st_mtime) > second:
                break
            time.sleep(0.01)


def walk_sources(sources: str, onerror=None):
    """(folder relpath, [file names]) for every folder, hidden entries skipped, sorted;
    `onerror(OSError)` hears of each folder that cannot be listed. A filesystem's own
    lost+found (at the root of a mounted volume, root's only) is not part of the library."""
    for top, dirs, files in os.walk(sources, followlinks=False, onerror=onerror):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not (d == "lost+found" and os.path.ismount(top)))
        rel = os.path.relpath(top, sources)
        rel = "" if rel == "." else rel.replace(os.sep, "/")
        yield rel, sorted(f for f in files if not f.startswith("."))


def is_track(name: str) -> bool:
    return formats.is_audio(name)  # FLAC, or another format (formats.py): never silently left out


def load_cache(path: str) -> dict:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            data = json.load(fh)
        if data.get("version") == CACHE_VERSION:
            return data
    except (OSError, ValueError):
        pass
    return {"version": CACHE_VERSION, "sources": {}, "dests": {}, "rebuild": {}}


def save_cache(path: str, cache: dict) -> None:
    write_json(path, cache, separators=(",", ":"))


@dataclass
class Folder:
    """One source folder: its usable tracks, its other files and the cover files among them
    (best first, up to the first good one).
    A stale folder could not be read this time: its index stays as the last build left it."""
    rel: str
    good: list[str]
    others: list[str]
    cover: list[str] | None
    stale: bool = False
    lossy: dict[str, str] = field(default_factory=dict)  # name -> codec, of the lossy sources among `good`


def _rel(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def scan(sources: str, builds: str, tup_root: str, profiles: dict[str, dict], cache_path: str,
         cache: dict | None = None, records: dict[str, dict[str, str]] | None = None,
         allow_empty: bool = False) -> ScanResult:
    """sources -> tup's index, in named stages; see the module's docstring. `records` (profile
    -> {output: source}, what earlier builds made) finds outputs deleted since, to make again."""
    result = ScanResult()
    music_dir = os.path.join(builds, ".music")
    cache = load_cache(cache_path) if cache is None else cache
    folders, new_sources = survey(sources, cache["sources"], result)
    if not result.seen and not result.protected and (cache["sources"] or any((records or {}).values())) \
            and not allow_empty:
        raise EmptySources(f"the sources folder {display(sources)} is empty, but earlier builds made "
                           f"{sum(len(r) for r in (records or {}).values())} outputs from it")
    dests = assign_destinations(folders, profiles, result, cache, new_sources)
    result.replaygain = replaygain.compute(folders, new_sources, profiles, sources, music_dir)
    index = os.path.join(tup_root, "index")
    rebuild = find_missing(dests, profiles, builds, records or {}, cache, result)
    keep_dirs = write_index(index, folders, new_sources, dests, profiles, sources, builds, music_dir, result,
                            rebuild)
    forget_gone(index, keep_dirs, result)
    plan_outputs(folders, new_sources, dests, profiles, builds, result)
    cache["sources"] = new_sources
    save_cache(cache_path, cache)
    return result


def survey(sources: str, old_sources: dict, result: ScanResult) -> tuple[list[Folder], dict[str, dict]]:
    """Stage 1: what is there; a source is read only where its size or mtime changed. What
    cannot be read is a failure naming the path and the cause, never a removal: its last
    entry is kept, so its index files and outputs stay as they are."""
    new_sources: dict[str, dict] = {}
    folders: list[Folder] = []
    unreadable: list[str] = []

    def cannot_list(exc: OSError) -> None:
        rel = os.path.relpath(exc.filename, sources).replace(os.sep, "/")
        unreadable.append(rel)
        result.failed.append({"source": rel + "/", "reason": f"cannot read the folder: {exc.strerror}",
                              "retry": True})

    for rel_dir, files in walk_sources(sources, cannot_list):
        track_names = [f for f in files if is_track(f)]
        others = [f for f in files if not is_track(f)]
        result.seen.update(_rel(rel_dir, f) for f in files)
        # The cover files (examined once per change of their size or mtime, as the last scan
        # recorded them in the folder's tracks) and their status; see art.cover_candidates.
        old_cover = next((old_sources[_rel(rel_dir, n)].get("cover") for n in track_names
                          if _rel(rel_dir, n) in old_sources), None)
        cover_info = art.cover_candidates(os.path.join(sources, rel_dir), art.find_cover_files(others),
                                          old_cover) if track_names else []
        cover = [c["name"] for c in cover_info]
        good, lossy = [], {}
        for name in track_names:
            rel = _rel(rel_dir, name)
            entry, kept = read_track(sources, rel, old_sources.get(rel), result)
            if entry is None:
                continue
            if not kept:
                entry["cover"] = cover_info
            new_sources[rel] = entry
            if "error" in entry:
                result.failed.append({"source": rel, "reason": entry["error"], "retry": False})
            else:
                good.append(name)
                if entry.get("lossy"):
                    lossy[name] = entry["lossy"]
                if not kept:
                    result.tracks.append(rel)
        if track_names or others:
            folders.append(Folder(rel_dir, good, others, cover, lossy=lossy))
    folders += keep_unreadable(unreadable, old_sources, new_sources, result)
    find_moved(old_sources, new_sources, result)
    return folders, new_sources


def _audio_id(entry: dict) -> str | None:
    audio = entry.get("audio")
    return _json(audio) if audio and "error" not in entry else None


def find_moved(old_sources: dict, new_sources: dict, result: ScanResult) -> None:
    """Sources no longer at their path whose audio is at a path it was not at before: a
    renamed or moved file or folder, not a removal (the mass-removal guard does not count it)."""
    arrived = {_audio_id(e) for rel, e in new_sources.items() if rel not in old_sources} - {None}
    if not arrived:
        return
    for rel, entry in old_sources.items():
        if rel not in result.seen and _audio_id(entry) in arrived:
            result.moved.add(rel)


def read_track(sources: str, rel: str, entry: dict | None, result: ScanResult) -> tuple[dict | None, bool]:
    """A track's cache entry, read afresh unless size and mtime hold, and whether it is the
    last build's entry kept because the file cannot be read now (an I/O error, permission
    denied, vanished since the folder was listed)."""
    path = os.path.join(sources, rel)
    try:
        st = os.stat(path)
        sig = [st.st_size, st.st_mtime_ns]
        # A refused file is read again every time (cheap, and a newer program may read what an
        # older one refused: streamed or ID3-prefixed FLACs); an entry from before
        # embedded_art listed every picture is read again, once.
        if not entry or entry.get("sig") != sig or "error" in entry or not isinstance(entry.get("embedded_art"), list):
            try:
                info = formats.read_any(path)  # a FLAC, or another format
                entry = {"sig": sig, "audio": info["audio"], "tags": info["tags"],
                         "embedded_art": info["embedded_art"], "length": info["length"]}
                if info.get("lossy"):
                    entry["lossy"] = info["lossy"]
            except SourceError as exc:
                entry = {"sig": sig, "error": str(exc)}
        elif not os.access(path, os.R_OK):
            # Unchanged since the last scan, so not read now; but no later build could read it
            # either (a permission taken away): said now, while its outputs are kept.
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return dict(entry), False
    except OSError as exc:
        reason = (f"vanished while the sources were scanned: {exc.strerror}" if exc.errno == errno.ENOENT
                  else f"cannot read: {exc.strerror}")
        result.failed.append({"source": rel, "reason": reason, "retry": True})
        result.protected.add(rel)
        if entry and "error" not in entry:
            return dict(entry), True
        return None, False


def keep_unreadable(unreadable: list[str], old_sources: dict, new_sources: dict,
                    result: ScanResult) -> list[Folder]:
    """The tracks of folders that could not be listed, as the last build saw them: their
    index files and outputs stay until the folder can be read again."""
    folders: dict[str, Folder] = {}
    for prefix in unreadable:
        result.protected.add(prefix + "/")
        for rel, entry in old_sources.items():
            if rel.startswith(prefix + "/") and rel not in new_sources and "error" not in entry:
                new_sources[rel] = entry
                rel_dir, name = posixpath.split(rel)
                folders.setdefault(rel_dir, Folder(rel_dir, [], [], None, stale=True)).good.append(name)
                if entry.get("lossy"):
                    folders[rel_dir].lossy[name] = entry["lossy"]
    return [folders[k] for k in sorted(folders)]


def find_missing(dests: dict[str, dict[str, str]], profiles: dict[str, dict], builds: str,
                 records: dict[str, dict[str, str]], cache: dict, result: ScanResult) -> dict[str, dict[str, int]]:
    """Outputs an earlier build made that are no longer there (deleted by hand, an old
    snapshot restored): each gets a new rebuild number, which changes its index file, so tup
    runs its command again. Returns profile -> {source: rebuild number}."""
    rebuild = cache.setdefault("rebuild", {})
    for p in profiles:
        made = records.get(p, {})
        numbers = rebuild.setdefault(p, {})
        missing = 0
        for rel, dest in dests[p].items():
            if dest in made and not os.path.lexists(os.path.join(builds, p, dest)):
                numbers[rel] = numbers.get(rel, 0) + 1
                missing += 1
        for rel in [r for r in numbers if r not in dests[p]]:
            del numbers[rel]
        result.restored[p] = missing
    return rebuild


def assign_destinations(folders: list[Folder], profiles: dict[str, dict], result: ScanResult,
                        cache: dict, sources: dict | None = None) -> dict[str, dict[str, str]]:
    """Stage 2: each source's output path per profile, stable across builds (kept in the cache).
    A profile holds the tracks its subset admits (subsets.py; tag rules read the tags of
    `sources`, the scan's entries), and the extra files that go with them."""
    wanted: dict[str, dict[str, str]] = {p: {} for p in profiles}
    for folder in folders:
        for name in folder.good:
            rel = _rel(folder.rel, name)
            track_tags = subsets.tag_values((sources or {}).get(rel, {}).get("tags", []))
            for p, prof in profiles.items():
                if not subsets.holds_track(prof, rel, track_tags):
                    # outside the profile's subset: no output (an earlier one is pruned)
                    if not folder.stale:
                        result.outside.setdefault(p, set()).add(rel)
                    continue
                how = formats.mode(folder.lossy.get(name), prof)  # encode, copy (as it is) or skip
                if how == "skip":
                    result.skipped.setdefault(p, []).append(rel)
                    continue
                wanted[p][rel] = names.desired_dest(rel, EXTENSIONS[prof["codec"]] if how == "encode" else None,
                                                    names.naming(prof))
        for name in folder.others:
            rel = _rel(folder.rel, name)
            for p, prof in profiles.items():
                held = any(_rel(folder.rel, n) in wanted[p] for n in folder.good) if folder.good else None
                if any(fnmatch.fnmatch(name.lower(), pat.lower()) for pat in prof["extra_files"]) \
                        and subsets.holds_file(prof, rel, held):
                    wanted[p][rel] = names.desired_dest(rel, None, names.naming(prof))
    # A failed track keeps whatever its last good build produced.
    failed_with_output = {f["source"] for f in result.failed}
    dests: dict[str, dict[str, str]] = {}
    old_dests = cache.get("dests", {})
    old_playlists = cache.get("playlists", {})
    albums = {f.rel: [_rel(f.rel, name) for name in f.good] for f in folders if f.good}
    lists: dict[str, dict[str, str]] = {}
    for p, prof in profiles.items():
        prev = {k: tuple(v) for k, v in old_dests.get(p, {}).items()}
        for rel in failed_with_output:
            if rel in prev:
                wanted[p][rel] = prev[rel][0]
        # Album playlists share the tracks' and extra files' names (a box set's discs merged
        # into one FAT32 folder, a copied *.m3u8) and are kept across builds as they are.
        lists[p] = names.playlist_wanted(albums, wanted[p], names.naming(prof)) if prof["playlists"] else {}
        prev.update((k, tuple(v)) for k, v in old_playlists.get(p, {}).items())
        assigned = names.assign_dests({**wanted[p], **lists[p]}, prev, names.naming(prof), yielding=set(lists[p]))
        dests[p] = {rel: assigned[rel] for rel in wanted[p]}
        result.playlist_dests[p] = {key: assigned[key] for key in lists[p]}
    cache["dests"] = {p: {rel: [wanted[p][rel], d] for rel, d in dests[p].items()} for p in profiles}
    cache["playlists"] = {p: {key: [lists[p][key], d] for key, d in result.playlist_dests[p].items()}
                          for p in profiles}
    return dests


def write_index(index: str, folders: list[Folder], new_sources: dict, dests: dict[str, dict[str, str]],
                profiles: dict[str, dict], sources: str, builds: str, music_dir: str,
                result: ScanResult, rebuild: dict[str, dict[str, int]]) -> dict[str, set[str] | None]:
    """Stage 3: the index files, written only when their content changes. Returns what each
    index folder holds now (None: a stale folder's, left as it is)."""
    os.makedirs(index, exist_ok=True)
    racy: list = []
    keep_dirs: dict[str, set[str] | None] = {}
    for folder in folders:
        dkey = names.index_key(folder.rel or "(top)")
        if folder.stale:
            keep_dirs[dkey] = None
            continue
        keep = keep_dirs.setdefault(dkey, set())
        dpath = os.path.join(index, dkey)
        os.makedirs(dpath, exist_ok=True)

        def put(fname: str, content: str) -> None:
            keep.add(fname)
            if write_if_changed(os.path.join(dpath, fname), content, racy):
                result.index_changes += 1

        cover_paths = [os.path.join(sources, folder.rel, c) for c in folder.cover or []]
        cover_path = cover_paths[0] if len(cover_paths) == 1 else cover_paths or None
        for name in folder.good:
            rel = _rel(folder.rel, name)
            entry = new_sources[rel]
            key = names.index_key(rel)
            src = os.path.join(sources, rel)
            # The candidates for its picture up to the first good one (see art.art_identity):
            # it changes exactly when the picture an output gets can change, which re-tags it.
            art_id = art.art_identity(entry["embedded_art"], entry.get("cover"))
            put(f"{key}.audio", _json(entry["audio"]))
            put(f"{key}.tags", _json({"tags": entry["tags"], "art": art_id}))
            for p in profiles:
                if rel not in dests[p]:
                    continue  # left out of this profile (skipped)
                dest = os.path.join(builds, p, dests[p][rel])
                if formats.mode(folder.lossy.get(name), profiles[p]) == "copy":
                    # A lossy source copied as it is, as an extra file is: again whenever the
                    # file changes (a tag edit too: a cheap copy).
                    spec = {"source": rel, "src": src, "dest": dest, "sig": entry["sig"], "music": music_dir}
                    id3 = formats.copy_id3_version(folder.lossy.get(name), profiles[p])
                    if id3:  # an MP3 in a profile of id3: "2.3": its tag saved as v2.3
                        spec["id3"] = id3
                    if rebuild.get(p, {}).get(rel):
                        spec["rebuild"] = rebuild[p][rel]
                    put(f"{key}.{p}.copy", _json(spec))
                    continue
                spec = {"source": rel, "src": src, "dest": dest, "cover": cover_path, "music": music_dir}
                if rebuild.get(p, {}).get(rel):
                    spec["rebuild"] = rebuild[p][rel]
                if rel in result.replaygain and profiles[p].get("replaygain") == "compute":
                    spec["replaygain"] = result.replaygain[rel]  # computed tags or a note: a re-tag
                put(f"{key}.{p}.track", _json(spec))
        for name in folder.others:
            rel = _rel(folder.rel, name)
            key = names.index_key(rel)
            sig = None
            for p in profiles:
                if rel in dests[p]:
                    if sig is None:
                        try:
                            st = os.stat(os.path.join(sources, rel))
                        except OSError as exc:
                            result.failed.append({"source": rel, "reason": f"cannot read: {exc.strerror}",
                                                  "retry": True})
                            result.protected.add(rel)
                            break
                        sig = [st.st_size, st.st_mtime_ns]
                    spec = {"source": rel, "src": os.path.join(sources, rel),
                            "dest": os.path.join(builds, p, dests[p][rel]), "sig": sig, "music": music_dir}
                    if rebuild.get(p, {}).get(rel):
                        spec["rebuild"] = rebuild[p][rel]
                    put(f"{key}.{p}.copy", _json(spec))
    settle(racy)
    return keep_dirs


def forget_gone(index: str, keep_dirs: dict[str, set[str] | None], result: ScanResult) -> None:
    """Stage 4: index files of sources that are gone are removed, so tup drops their commands."""
    for dkey in os.listdir(index):
        dpath = os.path.join(index, dkey)
        if not os.path.isdir(dpath) or (dkey in keep_dirs and keep_dirs[dkey] is None):
            continue
        keep = keep_dirs.get(dkey, set())
        for fname in os.listdir(dpath):
            if fname not in keep:
                os.unlink(os.path.join(dpath, fname))
                result.index_changes += 1
        if not keep:
            os.rmdir(dpath)


def plan_outputs(folders: list[Folder], new_sources: dict, dests: dict[str, dict[str, str]],
                 profiles: dict[str, dict], builds: str, result: ScanResult) -> None:
    """Stage 5: what each profile's tree must hold after the build (playlists are added when
    written)."""
    for p, prof in profiles.items():
        result.expected[p] = set(dests[p].values())
        lists = result.playlist_dests.get(p, {})
        result.playlists[p] = [playlist_spec(f.rel, f.good, new_sources, dests[p], builds, p,
                                             lists[names.playlist_key(f.rel)])
                               for f in folders if prof["playlists"] and f.good and not f.stale
                               and names.playlist_key(f.rel) in lists]  # (none: every track left out)


def playlist_spec(rel_dir: str, good: list[str], sources: dict, dests: dict[str, str], builds: str,
                  profile: str, dest_rel: str) -> dict:
    """The album playlist at `dest_rel` (its name assigned with the tracks'): its entries,
    in disc and track order, as paths from its folder to the tracks' assigned names, each
    with a title of one line (the non-empty values of TITLE, and of ARTIST, joined)."""
    def number(values, default=0):  # read as TRCK/TPOS read it: "03 of 12" is 3
        parsed = tags.parse_number(values[0]) if values else None
        return int(parsed[0]) if parsed else default

    def label(values) -> str:
        return " / ".join(filter(None, map(names.m3u_label, values)))

    folder = posixpath.dirname(dest_rel)
    entries = []
    for name in good:
        rel = _rel(rel_dir, name)
        if rel not in dests:
            continue  # left out of this profile
        entry = sources[rel]
        t = tags.tag_dict(entry["tags"])
        order = (number(t.get("DISCNUMBER", [])), number(t.get("TRACKNUMBER", [])), name)
        title = label(t.get("TITLE", [])) or names.m3u_label(os.path.splitext(name)[0])
        artist = label(t.get("ARTIST", []))
        path = posixpath.relpath("/" + dests[rel], "/" + folder)  # both in the tree: no cwd involved
        entries.append((order, path, round(entry["length"]), f"{artist} - {title}" if artist else title))
    entries.sort()
    return {
        "dest": os.path.join(builds, profile, dest_rel),
        "source": _rel(rel_dir, good[0]),  # the album's first track: while it is there, so is the album
        "entries": [[path, secs, label] for _, path, secs, label in entries],
    }
