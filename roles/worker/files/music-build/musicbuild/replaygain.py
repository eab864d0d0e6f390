"""ReplayGain 2.0 computed for the sources that carry none (a profile's `replaygain: compute`).

Where it runs: in the scan, between the survey (which knows every track's audio
fingerprint and tags) and the index. Only albums that need it are measured, and only once:
the results are kept in the build's .music/replaygain.json under an album id made of its
tracks' audio fingerprints (and this module's METHOD), so a build with nothing changed
measures nothing (a few hashes per folder), and an album one of whose tracks changed audio
is measured again whole, since its album gain depends on every track. Albums are measured
in parallel, one loudgain process per core, and the results saved every minute, so an
interrupted first scan of a large library keeps what it measured. A first scan costs one
decode per track of the albums measured (loudgain runs at some 100-200x real time a core),
before tup starts encoding.

The scanner: loudgain (ReplayGain 2.0: EBU R128 loudness, -18 LUFS reference, true peak),
`-a` for track and album gain, `-s s` so it writes no tag, `-O -q` for its tab-separated
output. loudgain writes into the files it scans when told to, so it is only ever given
copies, made in a temporary folder of the build under plain names (01.flac, 02.wav, ...):
a source is opened for reading by the copy and by nothing else.

An album is the tracks of one source folder (as its playlist is). What a track gets:
  * a source's own ReplayGain is kept: the track pair (REPLAYGAIN_TRACK_GAIN and _PEAK) when
    it has REPLAYGAIN_TRACK_GAIN, the album pair when it has REPLAYGAIN_ALBUM_GAIN;
  * a pair it lacks is filled in from the measurement (an album is measured when one of its
    tracks lacks either pair), in loudgain's own notation: "-6.86 dB", "0.300296".
  * no REPLAYGAIN_REFERENCE_LOUDNESS: ReplayGain 2.0's reference is -18 LUFS whatever the
    tag says, players ignore it, and the Opus conversion (tags.r128_from_replaygain)
    assumes that reference.
What reaches a profile with `replaygain: compute` is the track spec's "replaygain" entry
({"tags": [[key, value], ...]} to add, or {"note": ...} when the album could not be measured),
which music-encode adds to the source's tags: the output is re-tagged, never re-encoded.
A file loudgain cannot read leaves its album without computed values, with a note naming it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from .fsutil import write_json

# What a cached measurement was made with: a change here measures every album again.
METHOD = "loudgain -a -s s -O (ReplayGain 2.0, -18 LUFS, true peak)"
LOUDGAIN = "loudgain"
REFERENCE_LUFS = -18.0  # ReplayGain 2.0
CACHE_NAME = "replaygain.json"  # in the build's .music folder
CACHE_VERSION = 1
SAVE_EVERY = 60  # seconds, while albums are measured
PAIRS = {
    "track": ("REPLAYGAIN_TRACK_GAIN", "REPLAYGAIN_TRACK_PEAK"),
    "album": ("REPLAYGAIN_ALBUM_GAIN", "REPLAYGAIN_ALBUM_PEAK"),
}


class ScannerError(Exception):
    """loudgain failed or said something this module cannot read."""


class NoLoudness(ScannerError):
    """A file without measurable loudness: -inf LUFS, an infinite gain."""


NO_LOUDNESS = "no loudness measured (silent, or audio loudgain's decoder cannot read)"


# ------------------------------------------------------------------ pure logic

def wants_compute(profiles: dict[str, dict]) -> bool:
    return any(p.get("replaygain") == "compute" for p in profiles.values())


def missing_parts(pairs) -> list[str]:
    """The pairs ("track", "album") a source's tags lack: a pair is there when its gain is
    (a value that starts with a number, as players read it), as REPLAYGAIN_* or, in an Opus
    source, R128_* (its own gain, never replaced by a computed one)."""
    present = {str(k).upper() for k, v in pairs if _number(v) is not None}
    return [part for part, (gain, _) in PAIRS.items()
            if gain not in present and f"R128_{part.upper()}_GAIN" not in present]


def _number(value) -> float | None:
    try:
        return float(str(value).split()[0])
    except (ValueError, IndexError):
        return None


def album_id(fingerprints: list) -> str:
    """The cache key of an album's measurement: its tracks' audio fingerprints, in order."""
    h = hashlib.sha1(METHOD.encode())
    for fp in fingerprints:
        h.update(b"\0" + json.dumps(fp, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def parse_output(text: str, names: list[str], album: bool = True) -> dict:
    """loudgain -O's table for `names` (in the order given) -> {"tracks": [(gain, peak)],
    "album": (gain, peak)}: the ReplayGain 2.0 gain is -18 LUFS minus the Loudness column (not
    its Gain column, which is against -23 LUFS for Opus files), the peak its True_Peak.
    Columns are found by the header's names; every file given must
    have its row, in order, and the Album row must be there (with `album`). A file without
    measurable loudness (-inf LUFS, an infinite gain: silence, or audio loudgain's decoder
    cannot read) is a ScannerError naming it."""
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    header = next((r for r in rows if r and r[0] == "File"), None)
    if header is None:
        raise ScannerError("loudgain printed no result table")
    try:
        loud_col, peak_col = header.index("Loudness"), header.index("True_Peak")
    except ValueError:
        raise ScannerError(f"loudgain's table has no Loudness or True_Peak column: {' '.join(header)}") from None
    body = [r for r in rows[rows.index(header) + 1:] if len(r) == len(header)]

    def values(row) -> tuple[float, float]:
        loudness, peak = _number(row[loud_col]), _number(row[peak_col])
        if loudness is not None and abs(loudness) == float("inf"):
            raise NoLoudness(f"{row[0]}: {NO_LOUDNESS}")
        if loudness is None or peak is None or not -150 < loudness < 50 or not 0 <= peak < 1000:
            raise ScannerError(f"loudgain's row for {row[0]} holds no loudness and peak: "
                               f"{row[loud_col]!r}, {row[peak_col]!r}")
        return round(REFERENCE_LUFS - loudness, 2), peak

    files = body[:-1] if album else body
    if [r[0] for r in files] != names or (album and (len(body) != len(names) + 1 or body[-1][0] != "Album")):
        raise ScannerError(f"loudgain's table lists {[r[0] for r in body]}, not {names}" + (" and Album" if album else ""))
    return {"tracks": [values(r) for r in files], "album": values(body[-1]) if album else None}


def gain_tags(gain: float, peak: float, part: str) -> list[list[str]]:
    g, p = PAIRS[part]
    return [[g, f"{gain:.2f} dB"], [p, f"{peak:.6f}"]]


def track_additions(pairs, measured: dict, index: int) -> list[list[str]]:
    """The tags a track adds to its source's: the pairs it lacks, from the album's
    measurement (`index`: its place in the album)."""
    out: list[list[str]] = []
    for part in missing_parts(pairs):
        gain, peak = measured["tracks"][index] if part == "track" else measured["album"]
        out += gain_tags(gain, peak, part)
    return out


def merge(pairs, spec_entry) -> list:
    """The tags an output carries: the source's, then what was computed for it."""
    if not spec_entry or not spec_entry.get("tags"):
        return list(pairs)
    return list(pairs) + [list(p) for p in spec_entry["tags"]]


# ------------------------------------------------------------------ loudgain

def _say(msg: str) -> None:
    print(f"music-build: {msg}", flush=True)


def _temp_name(number: int, path: str) -> str:
    return f"{number:04d}{os.path.splitext(path)[1].lower()}"


def _run(argv: list[str], cwd: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise ScannerError("loudgain is not installed (the Debian package loudgain)") from None
    except subprocess.TimeoutExpired:
        raise ScannerError(f"loudgain took longer than {timeout:.0f} s") from None


def _said(done: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    text = lines[-1] if lines else f"exited with {done.returncode}"
    # its messages start with a coloured "[✘]"
    for mark in ("\x1b[1;31m✘\x1b[0m", "✘"):
        text = text.replace(f"[{mark}]", "")
    return text.strip()


def measure(paths: list[str], workdir: str, seconds: float = 0.0, decode=()) -> dict:
    """Measure the album of `paths` with loudgain, on copies in a folder made under
    `workdir` (removed after); the FLACs whose indexes are in `decode` are given to it as
    WAV decoded by flac (32-bit FLAC, which ffmpeg 5.1's decoder in loudgain reads as
    silence). Returns parse_output's result, or {"failed": {index: message}} when some files
    cannot be measured (each then tried alone, to name them); raises ScannerError when
    loudgain cannot run at all."""
    os.makedirs(workdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="replaygain.", dir=workdir)
    timeout = 60 + seconds / 5  # loudgain runs at some 100x real time; 5x is a stuck one
    try:
        names = []
        for number, path in enumerate(paths, 1):
            if number - 1 in decode:
                name = _temp_name(number, "x.wav")
                done = subprocess.run(["flac", "--decode", "--silent", "--output-name", name, "--", path], cwd=tmp,
                                      stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
                if done.returncode != 0:
                    return {"failed": {number - 1: "flac cannot decode it for loudgain: " + _said(done)}}
            else:
                name = _temp_name(number, path)
                shutil.copyfile(path, os.path.join(tmp, name))
            names.append(name)
        done = _run([LOUDGAIN, "-q", "-O", "-a", "-s", "s"] + names, tmp, timeout)
        if done.returncode == 0:
            try:
                return parse_output(done.stdout.decode("utf-8", "replace"), names)
            except ScannerError:
                pass  # then file by file, to say which
        failed = {}
        for i, name in enumerate(names):
            alone = _run([LOUDGAIN, "-q", "-O", "-s", "s", name], tmp, timeout)
            if alone.returncode != 0:
                failed[i] = _said(alone)
                continue
            try:
                parse_output(alone.stdout.decode("utf-8", "replace"), [name], album=False)
            except NoLoudness:
                failed[i] = NO_LOUDNESS
            except ScannerError as exc:
                failed[i] = str(exc)
        if not failed:
            raise ScannerError(f"loudgain failed on the album: {_said(done)}")
        return {"failed": failed}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ the scan's stage

def load_cache(path: str) -> dict:
    """Album id -> measurement, as the last scan (or an interrupted one) left it."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            data = json.load(fh)
        if data.get("version") == CACHE_VERSION and isinstance(data.get("albums"), dict):
            return data["albums"]
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def save_cache(path: str, albums: dict) -> None:
    try:
        write_json(path, {"version": CACHE_VERSION, "albums": albums}, separators=(",", ":"))
    except OSError:
        pass  # a full disk: measured again next time


def compute(folders, new_sources: dict, profiles: dict[str, dict], sources: str, music_dir: str,
            jobs: int | None = None, measure_fn=None, say=None) -> dict[str, dict]:
    """Source relpath -> its track spec's "replaygain" entry, for the tracks of every album
    one of whose tracks lacks ReplayGain, when a profile computes it ({} otherwise, at no
    cost). Measurements come from the cache (<music_dir>/replaygain.json: album id -> result)
    or loudgain; the cache is saved every SAVE_EVERY seconds while albums are measured (an
    interrupted first scan of a large library keeps what it measured) and keeps, at the end,
    the albums of this scan (a scanner that could not run is not kept)."""
    if not wants_compute(profiles):
        return {}
    measure_fn = measure_fn or measure
    cache_path = os.path.join(music_dir, CACHE_NAME)
    old = load_cache(cache_path)
    albums = []  # (album id, [relpaths])
    for folder in folders:
        if folder.stale or not folder.good:
            continue
        rels = [f"{folder.rel}/{n}" if folder.rel else n for n in folder.good]
        if not any(missing_parts(new_sources[r]["tags"]) for r in rels):
            continue
        albums.append((album_id([new_sources[r]["audio"] for r in rels]), rels))
    todo = {aid: rels for aid, rels in albums if aid not in old}
    results = {aid: old[aid] for aid, _ in albums if aid in old}

    def run(item):
        aid, rels = item
        seconds = sum(new_sources[r].get("length") or 0 for r in rels)
        decode = {i for i, r in enumerate(rels)
                  if r.lower().endswith(".flac") and (new_sources[r]["audio"].get("bits") or 0) > 24}
        try:
            got = measure_fn([os.path.join(sources, r) for r in rels], os.path.join(music_dir, "tmp"), seconds,
                             decode)
        except ScannerError as exc:
            return aid, {"error": str(exc), "keep": False}
        except Exception as exc:  # a full disk, a source gone, a stuck decoder: tried again next build
            return aid, {"error": f"{type(exc).__name__}: {exc}", "keep": False}
        if "failed" in got:
            return aid, {"failed": {str(i): msg for i, msg in got["failed"].items()}}
        return aid, {"tracks": [list(t) for t in got["tracks"]], "album": list(got["album"])}

    if todo:
        (say or _say)(f"ReplayGain: measuring {len(todo)} album(s), "
                      f"{sum(len(r) for r in todo.values())} track(s), with loudgain")
        workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
        saved = time.monotonic()
        with ThreadPoolExecutor(workers) as pool:
            for future in as_completed([pool.submit(run, item) for item in todo.items()]):
                aid, got = future.result()
                results[aid] = got
                if time.monotonic() - saved > SAVE_EVERY:
                    save_cache(cache_path, {**old, **{a: r for a, r in results.items() if r.get("keep", True)}})
                    saved = time.monotonic()
    kept = {aid: r for aid, r in results.items() if r.get("keep", True)}
    if kept != old:
        save_cache(cache_path, kept)

    out: dict[str, dict] = {}
    for aid, rels in albums:
        r = results[aid]
        for i, rel in enumerate(rels):
            if "tracks" in r:
                add = track_additions(new_sources[rel]["tags"], r, i)
                if add:
                    out[rel] = {"tags": add}
            elif not missing_parts(new_sources[rel]["tags"]):
                continue  # it has its own; nothing computed is missed
            elif "failed" in r:
                bad = [rels[int(k)].rsplit("/", 1)[-1] for k in sorted(r["failed"], key=int)]
                own = r["failed"].get(str(i))
                out[rel] = {"note": ("ReplayGain not computed: loudgain could not measure this file: " + own) if own
                            else f"ReplayGain not computed: loudgain could not measure {', '.join(bad)} of its album"}
            else:
                out[rel] = {"note": "ReplayGain not computed: " + r["error"]}
    return out
