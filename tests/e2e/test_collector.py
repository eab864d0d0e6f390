"""Issue 14, tried as a collector would: a library of ripped CDs with back covers, a 5.1
concert, a 24/192 album, FLACs made by streaming tools (one with an ID3v2 tag in front) and a
box set whose album folders collide on FAT32 (music_devkit.collector) compiles into every
profile with nothing missing and nothing mislabelled.

The library is compiled once, by the build program run directly as the build user (as
test_data_safety does), into four profiles: flac; Opus with playlists (phone); MP3 with FAT32
names and playlists (car); Vorbis (ogg). Then, per source and profile, against the manifest
the generator wrote: the output exists and is the one the build recorded for that source;
it decodes to the end (ffmpeg); it has the channels the issue asks for (FLAC, Opus and
Vorbis keep the 5.1 layout, MP3 gets a stereo downmix, and the report notes it) and the
source's length (every track's length is distinct, so another track's audio shows); title,
artist, album, track and disc numbers, read by mutagen AND by ffprobe, are the source's;
FLAC, Opus and Vorbis keep every Vorbis comment, and MP3 its comments, description, lyrics
and MusicBrainz recording id as distinct frames (mutagen; ffprobe shows one value per key); the
picture is the front cover (cover.jpg beside the tracks wins over an embedded back cover),
or the back cover labelled as back when nothing else exists, with the same bytes and type
through both readers. The playlists list every track of their album once, in order, under
labels without control characters; no two names share a FAT folder case-insensitively, and
the car's tree copies onto a real FAT32 filesystem (mtools) name for name. report.json has
no failures, and a second build changes nothing.
"""
from __future__ import annotations

import base64
import collections
import concurrent.futures
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from mutagen.flac import FLAC, Picture
from mutagen.mp3 import MP3
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis

from music_devkit.collector import make_collector_library
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = Path(os.environ.get("MUSIC_BUILD_PROGRAM", ROOT / "roles/worker/files/music-build/music-build"))
USER = "music"
PROFILES = {
    "flac": {"codec": "flac"},
    "phone": {"codec": "opus", "playlists": True},
    "car": {"codec": "mp3", "fat32_names": True, "playlists": True},
    "ogg": {"codec": "vorbis"},
}
EXTENSIONS = {"flac": ".flac", "opus": ".opus", "mp3": ".mp3", "vorbis": ".ogg"}
MUTAGEN = {"flac": FLAC, "opus": OggOpus, "mp3": MP3, "vorbis": OggVorbis}
LENGTH_TOLERANCE = 0.05  # s; the tracks' lengths are 0.1 s apart
# ffmpeg's names of the ID3/FLAC picture types (libavformat/id3v2.c), as ffprobe shows them.
PICTURE_TYPES = ["Other", "32x32 pixels 'file icon'", "Other file icon", "Cover (front)", "Cover (back)",
                 "Leaflet page", "Media (e.g. label side of CD)", "Lead artist/lead performer/soloist",
                 "Artist/performer", "Conductor", "Band/Orchestra", "Composer", "Lyricist/text writer",
                 "Recording Location", "During recording", "During performance", "Movie/video screen capture",
                 "A bright coloured fish", "Illustration", "Band/artist logotype", "Publisher/Studio logotype"]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- the world: the build user, the library, one build -------------------------------------------

def build_user() -> str:
    """The `music` system user, created as the worker role would when it is missing; tup
    (FUSE) usable by it, as the role makes /dev/fuse."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["groupadd", "--system", "-f", USER], check=True)
        made = subprocess.run(["useradd", "--system", "--gid", USER, "--home-dir", "/var/lib/music",
                               "--create-home", "--shell", "/usr/sbin/nologin", USER], capture_output=True, text=True)
        if made.returncode != 0:
            pwd.getpwnam(USER)  # made meanwhile by a parallel test; else this fails
    if stat.S_IMODE(os.stat("/dev/fuse").st_mode) & 0o006 != 0o006:
        os.chmod("/dev/fuse", 0o666)
    return USER


def music_build(src: Path, builds: Path) -> tuple[dict, float]:
    cmd = ["runuser", "-u", USER, "--", str(MUSIC_BUILD), "--sources", str(src), "--builds", str(builds),
           "--jobs", "2"]
    started = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, timeout=300)
    took = time.monotonic() - started
    out = run.stdout.decode("utf-8", "replace") + run.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out, out[-4000:]
    assert run.returncode == 0, f"music-build exit {run.returncode}:\n{out[-4000:]}"
    return json.loads((builds / "report.json").read_bytes().decode("utf-8")), took


def tree_digests(tree: Path) -> dict[str, str]:
    return {str(p.relative_to(tree)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("*")) if p.is_file()}


class Compiled:
    def __init__(self, src: Path, builds: Path, manifest: dict, report: dict, seconds: float):
        self.src, self.builds, self.manifest, self.report, self.seconds = src, builds, manifest, report, seconds
        self.tracks: dict[str, dict] = manifest["tracks"]
        # profile -> {output path relative to the profile's tree: source}, as the build recorded it
        self.record = {p: json.loads((builds / ".music/outputs" / f"{p}.json").read_text())["outputs"]
                       for p in PROFILES}
        self.digests = {p: tree_digests(builds / p) for p in PROFILES}
        self.seen: dict[tuple[str, str], dict] = {}  # (profile, output) -> what the readers saw

    def outputs(self, profile: str) -> dict[str, str]:
        """The profile's audio outputs (relative path -> source)."""
        ext = EXTENSIONS[PROFILES[profile]["codec"]]
        return {out: src for out, src in self.record[profile].items() if out.endswith(ext)}


@pytest.fixture(scope="module")
def compiled(world_readable_tmp):
    build_user()
    base = world_readable_tmp / f"collector-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o755)
    try:
        src = base / "src"
        manifest = make_collector_library(str(src))
        builds = base / "builds"
        for p, settings in PROFILES.items():
            folder = builds / ".music" / "tup" / p
            folder.mkdir(parents=True)
            (folder / "tup.config").write_text(render_tup_config(p, settings))
        for top, dirs, names in os.walk(builds):
            for name in [top] + [os.path.join(top, n) for n in dirs + names]:
                shutil.chown(name, USER, USER)
        report, took = music_build(src, builds)
        world = Compiled(src, builds, manifest, report, took)
        inspect_all(world)
        yield world
    finally:
        subprocess.run(["umount", "-l", *[str(m) for m in fuse_mounts_under(base)]], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def fuse_mounts_under(base: Path) -> list[str]:
    want = str(base).replace(" ", "\\040") + "/"
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(want)]


# --- what the two readers see in one output ------------------------------------------------------

def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, **kw)


def number_and_total(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    head, _, tail = value.partition("/")
    try:
        number = int(head)
    except ValueError:
        return None, None
    return number, int(tail) if tail.strip().isdigit() else None


def with_mutagen(path: Path, codec: str) -> dict:
    audio = MUTAGEN[codec](path)
    seen = {"channels": audio.info.channels, "length": audio.info.length}
    if codec == "mp3":
        tags = audio.tags

        def text(frame):
            return str(tags[frame].text[0]) if tags is not None and frame in tags else None

        seen.update(title=text("TIT2"), artist=text("TPE1"), album=text("TALB"))
        seen["track"], seen["total"] = number_and_total(text("TRCK"))
        seen["disc"], _ = number_and_total(text("TPOS"))
        seen["pictures"] = sorted((int(p.type), hashlib.sha256(p.data).hexdigest())
                                  for p in (tags.getall("APIC") if tags is not None else []))
        frames = tags.getall if tags is not None else (lambda _: [])
        seen["comm"] = [str(t) for f in frames("COMM") for t in f.text]
        seen["txxx"] = {f.desc.upper(): [str(t) for t in f.text] for f in frames("TXXX")}
        seen["uslt"] = [f.text for f in frames("USLT")]
        seen["ufid"] = {f.owner: f.data for f in frames("UFID")}
        return seen
    tags = audio.tags or {}

    def first(key):
        values = tags.get(key) or []
        return values[0] if values else None

    seen.update(title=first("title"), artist=first("artist"), album=first("album"))
    seen["comments"] = [(k.upper(), v) for k, v in (audio.tags or []) if k.upper() != "METADATA_BLOCK_PICTURE"]
    seen["track"], seen["total"] = number_and_total(first("tracknumber"))
    if seen["total"] is None:
        seen["total"] = number_and_total(first("totaltracks") or first("tracktotal"))[0]
    seen["disc"], _ = number_and_total(first("discnumber"))
    if codec == "flac":
        pictures = audio.pictures
        seen["rate"], seen["bits"] = audio.info.sample_rate, audio.info.bits_per_sample
    else:
        pictures = [Picture(base64.b64decode(v)) for v in tags.get("metadata_block_picture", [])]
    seen["pictures"] = sorted((int(p.type), hashlib.sha256(p.data).hexdigest()) for p in pictures)
    return seen


def with_ffmpeg(path: Path) -> dict:
    probe = run(["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", path])
    if probe.returncode != 0:
        return {"error": f"ffprobe: {probe.stderr.decode(errors='replace').strip()}"}
    info = json.loads(probe.stdout)
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
    tags = {k.lower(): v for k, v in info["format"].get("tags", {}).items()}
    for s in audio:  # Ogg keeps the comments on the stream
        tags.update({k.lower(): v for k, v in s.get("tags", {}).items()})
    seen = {"audio_streams": len(audio), "channels": audio[0]["channels"] if audio else None,
            "rate": int(audio[0]["sample_rate"]) if audio else None,
            "bits": int(audio[0].get("bits_per_raw_sample") or 0) if audio else None,
            "length": float(info["format"].get("duration") or (audio[0].get("duration") if audio else 0) or 0),
            "title": tags.get("title"), "artist": tags.get("artist"), "album": tags.get("album")}
    seen["track"], seen["total"] = number_and_total(tags.get("track"))
    if seen["total"] is None:
        seen["total"] = number_and_total(tags.get("totaltracks") or tags.get("tracktotal"))[0]
    seen["disc"], _ = number_and_total(tags.get("disc"))
    pictures = []
    for s in info["streams"]:
        if s["codec_type"] == "video" and s.get("disposition", {}).get("attached_pic"):
            label = s.get("tags", {}).get("comment", "")
            kind = PICTURE_TYPES.index(label) if label in PICTURE_TYPES else f"unlabelled ({label!r})"
            data = run(["ffmpeg", "-v", "error", "-i", path, "-map", f"0:{s['index']}", "-c", "copy",
                        "-f", "image2pipe", "-"]).stdout
            pictures.append((kind, hashlib.sha256(data).hexdigest()))
    seen["pictures"] = sorted(pictures, key=str)
    # Decoded to the end, as 16-bit samples at the stream's rate: their count is the length a
    # player plays (the container's duration of an MP3 counts LAME's padding).
    decode = run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "s16le", "-c:a", "pcm_s16le",
                  "-"])
    seen["decodes"] = decode.returncode == 0 and not decode.stderr.strip()
    seen["decode_errors"] = decode.stderr.decode(errors="replace").strip()[-500:]
    if audio and seen["channels"] and seen["rate"]:
        seen["length"] = len(decode.stdout) / (2 * seen["channels"] * seen["rate"])
    return seen


def inspect_all(world: Compiled) -> None:
    jobs = [(p, out) for p in PROFILES for out in world.outputs(p)]

    def one(job):
        p, out = job
        path = world.builds / p / out
        codec = PROFILES[p]["codec"]
        try:
            return job, {"mutagen": with_mutagen(path, codec), "ffmpeg": with_ffmpeg(path)}
        except Exception as exc:  # a file a reader refuses: that is the finding
            return job, {"error": f"{type(exc).__name__}: {exc}"}

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for job, seen in pool.map(one, jobs):
            world.seen[job] = seen


def check(problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{len(problems)} problem(s):\n" + "\n".join(problems), pytrace=False)


# --- the tests ----------------------------------------------------------------------------------

def test_the_library_is_what_a_collector_has(compiled):
    """The generator made what the issue describes (else the rest proves less than it says)."""
    tracks = compiled.tracks
    kinds = {t["kind"] for t in tracks.values()}
    assert {"ripped", "ripped-back-only", "5.1", "24/192", "box set"} <= kinds
    src = compiled.src
    streamed = [rel for rel, t in tracks.items() if t["kind"].startswith("streamed")]
    for rel in streamed:
        info = FLAC(src / rel).info
        assert info.total_samples == 0 and info.md5_signature == 0, rel
    id3 = [rel for rel, t in tracks.items() if t["kind"].startswith("ID3v2")]
    assert id3 and all((src / rel).read_bytes()[:3] == b"ID3" for rel in id3)
    assert all(FLAC(src / rel).info.md5_signature == 0 for rel in id3)
    concert = [FLAC(src / rel).info for rel, t in tracks.items() if t["kind"] == "5.1"]
    assert concert and all((i.channels, i.sample_rate, i.bits_per_sample) == (6, 48000, 24) for i in concert)
    hires = [FLAC(src / rel).info for rel, t in tracks.items() if t["kind"] == "24/192"]
    assert hires and all((i.sample_rate, i.bits_per_sample) == (192000, 24) for i in hires)
    ripped = [rel for rel, t in tracks.items() if t["kind"] == "ripped"]
    assert all([p.type for p in FLAC(src / rel).pictures] == [4] for rel in ripped)
    assert any("\n" in tracks[rel]["title"] for rel in ripped)
    box = {os.path.basename(t["album_dir"]) for t in tracks.values() if t["kind"] == "box set"}
    assert {"CD 1: Spring", "CD 1? Spring", "Live", "live"} <= box


def test_report_has_no_failures(compiled):
    n = len(compiled.tracks)
    problems = []
    for p in PROFILES:
        r = compiled.report["profiles"][p]
        if r["failed"]:
            problems += [f"{p}: {f['source']}: {f['reason']}" for f in r["failed"]]
        if r["encoded"] + r["retagged"] + r["moved"] + r["unchanged"] != n or r["encoded"] != n:
            problems.append(f"{p}: {n} tracks, report says {dict((k, r[k]) for k in ('encoded', 'retagged', 'moved', 'unchanged'))}")
        if r["foreign"]["count"]:
            problems.append(f"{p}: foreign files {r['foreign']}")
    check(problems)


def test_nothing_missing(compiled):
    """Every source has exactly one output in every profile; the tree holds exactly the
    recorded outputs (and playlists where asked for)."""
    problems = []
    for p, settings in PROFILES.items():
        outputs = compiled.outputs(p)
        by_source: dict[str, list[str]] = {}
        for out, src in outputs.items():
            by_source.setdefault(src, []).append(out)
        for rel in compiled.tracks:
            if len(by_source.get(rel, [])) != 1:
                problems.append(f"{p}: {rel!r} has {len(by_source.get(rel, []))} outputs {by_source.get(rel)}")
        for src in set(by_source) - set(compiled.tracks):
            problems.append(f"{p}: an output for {src!r}, which is not a source")
        tree = set(compiled.digests[p])
        if tree != set(compiled.record[p]):
            problems.append(f"{p}: tree and record differ: only in tree {sorted(tree - set(compiled.record[p]))}, "
                            f"only recorded {sorted(set(compiled.record[p]) - tree)}")
        audio = {f for f in tree if f.endswith(EXTENSIONS[settings["codec"]])}
        if len(audio) != len(compiled.tracks):
            problems.append(f"{p}: {len(audio)} audio files for {len(compiled.tracks)} sources")
        playlists = {f for f in tree if f.endswith(".m3u8")}
        want = len(compiled.manifest["albums"]) if settings.get("playlists") else 0
        if len(playlists) != want:
            problems.append(f"{p}: {len(playlists)} playlists for {want} albums: {sorted(playlists)}")
    check(problems)


def test_outputs_decode_with_the_channels_and_length_of_their_source(compiled):
    problems = []
    for (p, out), seen in sorted(compiled.seen.items()):
        src = compiled.record[p][out]
        want = compiled.tracks[src]
        codec = PROFILES[p]["codec"]
        where = f"{p}: {out!r} (from {src!r}, {want['kind']})"
        if "error" in seen:
            problems.append(f"{where}: unreadable: {seen['error']}")
            continue
        m, f = seen["mutagen"], seen["ffmpeg"]
        if "error" in f:
            problems.append(f"{where}: {f['error']}")
            continue
        if not f["decodes"]:
            problems.append(f"{where}: does not decode: {f['decode_errors']}")
        if f["audio_streams"] != 1:
            problems.append(f"{where}: {f['audio_streams']} audio streams")
        for reader, ch in (("mutagen", m["channels"]), ("ffprobe", f["channels"])):
            if ch != want["channels"][codec]:
                problems.append(f"{where}: {ch} channels ({reader}), want {want['channels'][codec]} "
                                f"from a {want['source_channels']}-channel source")
        for reader, length in (("mutagen", m["length"]), ("decoded by ffmpeg", f["length"])):
            if abs(length - want["seconds"]) > LENGTH_TOLERANCE:
                problems.append(f"{where}: {length:.3f} s ({reader}), the source is {want['seconds']} s")
        if codec == "flac":
            if (m["rate"], m["bits"]) != (want["rate"], want["bits"]) or (f["rate"], f["bits"]) != (want["rate"], want["bits"]):
                problems.append(f"{where}: {m['rate']} Hz {m['bits']}-bit, the source is {want['rate']} Hz {want['bits']}-bit")
    check(problems)


def test_tags_read_back_by_mutagen_and_ffprobe(compiled):
    problems = []
    for (p, out), seen in sorted(compiled.seen.items()):
        if "error" in seen or "error" in seen["ffmpeg"]:
            continue  # said by the test above
        src = compiled.record[p][out]
        want = compiled.tracks[src]
        where = f"{p}: {out!r} (from {src!r})"
        for reader in ("mutagen", "ffmpeg"):
            got = seen[reader]
            for key in ("title", "artist", "album", "track", "total", "disc"):
                if want[key] is not None and got[key] != want[key]:
                    problems.append(f"{where}: {key} {got[key]!r} ({reader}), want {want[key]!r}")
    check(problems)


def test_every_tag_is_kept(compiled):
    """FLAC, Opus and Vorbis keep every Vorbis comment of the source, multiple and empty values
    too (Opus: ReplayGain as R128 gains); MP3 keeps each COMMENT value and the DESCRIPTION as
    whole values (not joined), each lyrics text in its own USLT frame and the MusicBrainz
    recording id as UFID bytes."""
    problems = []
    for (p, out), seen in sorted(compiled.seen.items()):
        if "error" in seen:
            continue
        src = compiled.record[p][out]
        want = compiled.tracks[src]
        codec = PROFILES[p]["codec"]
        where = f"{p}: {out!r} (from {src!r})"
        pairs = [(k.upper(), v) for k, v in want["tags"]]
        got = seen["mutagen"]
        if codec != "mp3":
            expected = [(k, v) for k, v in pairs if not (codec == "opus" and k.startswith("REPLAYGAIN_"))]
            missing = collections.Counter(expected) - collections.Counter(got["comments"])
            if missing:
                problems.append(f"{where}: lost {sorted(missing.elements())}")
            if codec == "opus" and any(k == "REPLAYGAIN_TRACK_GAIN" for k, _ in pairs) \
                    and not any(k == "R128_TRACK_GAIN" for k, _ in got["comments"]):
                problems.append(f"{where}: no R128_TRACK_GAIN for the source's REPLAYGAIN_TRACK_GAIN")
            continue
        for key, value in pairs:
            if key == "COMMENT" and value not in got["comm"]:
                problems.append(f"{where}: COMMENT {value!r} is not a value of a COMM frame: {got['comm']}")
            if key == "DESCRIPTION" and value not in got["comm"] + got["txxx"].get("DESCRIPTION", []):
                problems.append(f"{where}: DESCRIPTION {value!r} is in no COMM or TXXX frame: {got['comm']}")
            if key in ("LYRICS", "UNSYNCEDLYRICS") and value not in got["uslt"]:
                problems.append(f"{where}: {key} {value!r} is not the text of a USLT frame: {got['uslt']}")
            if key == "MUSICBRAINZ_TRACKID" and got["ufid"].get("http://musicbrainz.org") != value.encode():
                problems.append(f"{where}: UFID {got['ufid']}, want {value!r}")
    check(problems)


def test_the_cover_is_the_front_cover_with_its_true_type(compiled):
    """The front cover wins (cover.jpg beside the tracks over an embedded back cover); where
    only a back cover exists it is used and labelled back; the bytes are the picture's own
    (art_max_size 0) and no picture claims a type it does not have."""
    problems = []
    for (p, out), seen in sorted(compiled.seen.items()):
        if "error" in seen or "error" in seen["ffmpeg"]:
            continue
        src = compiled.record[p][out]
        want = compiled.tracks[src]
        where = f"{p}: {out!r} (from {src!r}, {want['kind']})"
        cover = (want["cover"]["type"], want["cover"]["sha256"])
        honest = {(pic["type"], pic["sha256"]) for pic in want["pictures"]}
        for reader in ("mutagen", "ffmpeg"):
            got = seen[reader]["pictures"]
            if cover not in got:
                problems.append(f"{where}: {reader} sees pictures {describe(got, want)}, "
                                f"want {describe([cover], want)}")
            wrong = [g for g in got if g not in honest]
            if wrong:
                problems.append(f"{where}: {reader} sees mislabelled or foreign pictures {describe(wrong, want)}")
            if sum(1 for g in got if g[0] == 3) > 1:
                problems.append(f"{where}: {reader} sees more than one front cover")
    check(problems)


def describe(pictures, want) -> str:
    names = {pic["sha256"]: ("the cover" if pic == want["cover"] else f"a type-{pic['type']} picture")
             for pic in want["pictures"]}
    return ", ".join(f"type {kind} = {names.get(digest, 'an unknown picture ' + digest[:12])}"
                     for kind, digest in pictures) or "none"


def test_mp3_downmix_is_noted_and_the_others_keep_the_layout(compiled):
    problems = []
    for p, settings in PROFILES.items():
        codec = settings["codec"]
        notes: dict[str, list[str]] = {}
        for n in compiled.report["profiles"][p].get("notes", []):
            notes.setdefault(n["source"], []).append(n["note"])
        for rel, want in compiled.tracks.items():
            said = " | ".join(notes.get(rel, []))
            mentions = bool(re.search(r"downmix|channel", said, re.I))
            if want["downmix"][codec] and not mentions:
                problems.append(f"{p}: {rel!r}: downmixed from {want['source_channels']} channels, "
                                f"the report's notes say {said!r}")
            if not want["downmix"][codec] and re.search(r"downmix", said, re.I):
                problems.append(f"{p}: {rel!r}: notes a downmix ({said!r}) where the layout is kept")
    check(problems)


def parse_playlist(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(#EXTINF line, path) pairs and the problems of the file's shape."""
    problems = []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"not UTF-8: {exc}"]
    if not text.endswith("\n"):
        problems.append("no newline at the end")
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    for line in lines:
        if CONTROL.search(line):
            problems.append(f"a control character in {line!r}")
    if not lines or lines[0] != "#EXTM3U":
        problems.append(f"first line {lines[:1]!r}, not #EXTM3U")
    pairs = []
    body = lines[1:]
    i = 0
    while i < len(body):
        line = body[i]
        if line.startswith("#EXTINF:") and i + 1 < len(body) and not body[i + 1].startswith("#"):
            pairs.append((line, body[i + 1]))
            i += 2
        else:
            problems.append(f"line {line!r} is not an #EXTINF line followed by a path")
            i += 1
    return pairs, problems


def test_playlists_list_every_track_of_their_album_once(compiled):
    problems = []
    for p, settings in PROFILES.items():
        if not settings.get("playlists"):
            continue
        tree = compiled.builds / p
        listed: dict[str, list[str]] = {}  # album folder -> the playlists listing its tracks
        for rel in sorted(f for f in compiled.digests[p] if f.endswith(".m3u8")):
            where = f"{p}: {rel!r}"
            pairs, shape = parse_playlist(tree / rel)
            problems += [f"{where}: {s}" for s in shape]
            sources = []
            for extinf, entry in pairs:
                target = os.path.normpath(os.path.join(os.path.dirname(rel), entry))
                src = compiled.record[p].get(target)
                if not (tree / target).is_file() or src not in compiled.tracks:
                    problems.append(f"{where}: {entry!r} is not a track of the build")
                    continue
                sources.append(src)
                want = compiled.tracks[src]
                secs, _, label = extinf[len("#EXTINF:"):].partition(",")
                if not (secs.strip() == "-1" or abs(int(secs) - want["seconds"]) <= 1):
                    problems.append(f"{where}: {entry!r} listed as {secs} s, it is {want['seconds']} s")
                if not all(part.strip() in label for part in want["title"].splitlines()):
                    problems.append(f"{where}: {entry!r} labelled {label!r}, its title is {want['title']!r}")
            albums = {compiled.tracks[s]["album_dir"] for s in sources}
            if len(albums) != 1:
                problems.append(f"{where}: lists tracks of {sorted(albums)}")
                continue
            album = albums.pop()
            listed.setdefault(album, []).append(rel)
            if sources != compiled.manifest["albums"][album]:
                problems.append(f"{where}: lists {sources}, the album {album!r} is {compiled.manifest['albums'][album]}")
        for album in compiled.manifest["albums"]:
            if len(listed.get(album, [])) != 1:
                problems.append(f"{p}: album {album!r} is in {len(listed.get(album, []))} playlists {listed.get(album)}")
    check(problems)


def test_car_names_never_share_a_fat_folder(compiled):
    """No two names in one folder of the car's tree differ only in case (FAT folds case),
    and the tree copies onto a real FAT32 filesystem (mtools) with every name as it is."""
    tree = compiled.builds / "car"
    problems = []
    for top, dirs, names in os.walk(tree):
        folded: dict[str, list[str]] = {}
        for name in dirs + names:
            folded.setdefault(name.casefold(), []).append(name)
        problems += [f"car: {os.path.relpath(top, tree)!r} holds {same}" for same in folded.values() if len(same) > 1]
    image = compiled.builds.parent / "car-fat32.img"
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    made = run(["mformat", "-C", "-F", "-i", image, "-T", "131072", "-h", "64", "-s", "32", "-c", "1", "::"], env=env)
    assert made.returncode == 0, made.stderr
    copy = run(["mcopy", "-s", "-D", "s", "-i", image, *sorted(tree.iterdir()), "::/"], env=env,
               stdin=subprocess.DEVNULL)
    if copy.returncode != 0:
        problems.append(f"car: mcopy onto FAT32: {copy.stderr.decode(errors='replace').strip()[-1000:]}")
    listing = run(["mdir", "-/", "-b", "-i", image, "::/"], env=env).stdout.decode("utf-8", "replace")
    on_fat = {line[len("::/"):] for line in listing.splitlines() if line.startswith("::/") and not line.endswith("/")}
    want = set(compiled.digests["car"])
    if on_fat != want:
        problems.append(f"car: on FAT32 only {sorted(on_fat - want)}; missing there {sorted(want - on_fat)}")
    check(problems)


def test_a_second_build_changes_nothing(compiled):
    report, took = music_build(compiled.src, compiled.builds)
    problems = []
    for p in PROFILES:
        r = report["profiles"][p]
        if r["encoded"] or r["retagged"] or r["moved"] or r["removed"]:  # failures: test_report_has_no_failures
            problems.append(f"{p}: second build: encoded {r['encoded']}, retagged {r['retagged']}, moved {r['moved']}, "
                            f"removed {r['removed']}")
        now = tree_digests(compiled.builds / p)
        if now != compiled.digests[p]:
            changed = sorted(k for k in set(now) | set(compiled.digests[p]) if now.get(k) != compiled.digests[p].get(k))
            problems.append(f"{p}: files changed by the second build: {changed}")
    check(problems)
