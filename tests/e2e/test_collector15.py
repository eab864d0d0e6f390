"""Issue 15, tried as a collector would: FLAC albums plus MP3 and AAC purchases, a 24/192
album, ALAC, WavPack, WAV and Opus files and an `Audiobooks/` folder (music_devkit.collector15)
compile into

- car: MP3 with `id3: "2.3"`, `names: fat32` and `ascii_names`, the Jazz albums only
  (`include` by GENRE, whatever the source's format: FLAC, ALAC, MP3 and AAC purchases), lossy
  files transcoded (a car stereo plays MP3 alone; the MP3 purchase is copied, being MP3);
- phone: Opus with `names: exfat`, everything but `Audiobooks/` (`exclude` by path), lossy
  files copied as they are (`lossy: copy`);
- iphone: AAC, everything, lossy files transcoded (the AAC purchase copied: it is AAC already);
- portable: FLAC with `max_sample_rate: 44100` and `max_bit_depth: 16`, lossy files skipped;

with nothing missing that the owner did not leave out. The library is compiled once by the
build program run directly as the build user (as test_collector does). Per profile and
source, against the generator's manifest: exactly the sources the profile's subset and
`lossy` keep have one output each, and no other; every output decodes to the end (ffmpeg)
in the profile's codec (or the source's, copied) with the source's channels and length (the
samples ffmpeg decodes, or an MP4's iTunSMPB, which Apple's players read; every track's
length is distinct, so another track's audio shows); title, artist(s), album and track
number read back by mutagen AND ffprobe; the source's cover (the same bytes) by both.
Car: every MP3 has an ID3v2.3 header (the copied purchase too), ffprobe sees both artists of
a two-artist track, names are ASCII and FAT32-safe, and the tree is copied with the
README's rsync command onto a FAT32 image mounted through fusefat and listed back (on the
mount, then by mtools) name for name, byte for byte. Phone: no name holds a character exFAT
refuses, copied lossy files keep their audio (the Opus file its bytes), and the tree is
copied with the same command onto an exFAT image (mkfs.exfat; mount.exfat-fuse on a loop
device) and read back, again from a fresh read-only mount, name for name and byte for byte.
iPhone: AAC in MP4 files. Portable: every output 16-bit at 32-44.1 kHz, the 24/192 album
converted, every source already within the limits bit-identical audio. report.json: no
failures; its counts add up to what each profile holds; it counts what each profile left
out and names every lossy file the portable profile skipped; a second build changes nothing.

fusefat and exfat-fuse fall short of a kernel's filesystems in ways test_fat_device.py
describes (no chmod: rsync's complaints of it are the only errors accepted).
"""
from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import mutagen
import pytest
from mutagen.apev2 import APEv2
from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3
from mutagen.mp4 import MP4

from music_devkit.collector15 import make_collector15_library
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = Path(os.environ.get("MUSIC_BUILD_PROGRAM", ROOT / "roles/worker/files/music-build/music-build"))
USER = "music"
# The four devices of the last paragraph, in the profile reference's words.
PROFILES = {
    "car": {"codec": "mp3", "id3": "2.3", "names": "fat32", "ascii_names": True, "lossy": "transcode",
            "include": {"tags": {"GENRE": ["Jazz"]}}},
    "phone": {"codec": "opus", "names": "exfat", "lossy": "copy", "exclude": {"paths": ["Audiobooks/**"]}},
    "iphone": {"codec": "aac", "lossy": "transcode"},
    "portable": {"codec": "flac", "max_sample_rate": 44100, "max_bit_depth": 16, "lossy": "skip"},
}
MAX_RATE, MAX_BITS = 44100, 16


def kept(profile: str, t: dict) -> bool:
    """Whether the owner's settings keep source `t` in `profile` (what the device must show)."""
    if profile == "car":
        return t["genre"] == "Jazz"
    if profile == "phone":
        return not t["audiobook"]
    if profile == "portable":
        return not t["lossy"]
    return True


def codec_of(profile: str, t: dict) -> str:
    """The codec the output of source `t` has in `profile` (ffprobe's codec name)."""
    if profile == "phone" and t["lossy"]:
        return {"mp3": "mp3", "m4a": "aac", "opus": "opus"}[t["format"]]  # copied
    return {"car": "mp3", "phone": "opus", "iphone": "aac", "portable": "flac"}[profile]


# An MP4's channels are read from its AAC decoder config (ffprobe, and players): ffmpeg's
# mp4 muxer writes the sample entry's channelcount as 2 for AAC (ISO's template value), and
# mutagen 1.48 falls back to it when the config's mono is marked with the explicit SBR/PS
# signalling ffmpeg adds, so mutagen says 2 for a mono AAC file.
MP4_CHANNELS = "ffprobe"
LENGTH_TOLERANCE = 0.02  # s; the tracks' lengths are 0.05 s apart
EXFAT_REFUSES = re.compile(r'[\x00-\x1f"*/:<>?\\|]')
README_SOURCE, README_DEVICE = "OUT/car/", "/media/usbstick/Music/"
FUSE_NO_CHMOD = re.compile(r'rsync: \[(generator|receiver)\] failed to set permissions on ".*": '
                           r"(Function not implemented \(38\)|Operation not permitted \(1\))$")
ITEM = re.compile(r"^(\*deleting|[<>ch.][fdLDS][^ ]{9}) ")


# --- the world: the build user, the library, one build -------------------------------------------

def build_user() -> str:
    """The `music` system user, as the worker role makes it; tup (FUSE) usable by it."""
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


def music_build(src: Path, builds: Path) -> dict:
    cmd = ["runuser", "-u", USER, "--", str(MUSIC_BUILD), "--sources", str(src), "--builds", str(builds),
           "--jobs", "2"]
    run_ = subprocess.run(cmd, capture_output=True, timeout=300)
    out = run_.stdout.decode("utf-8", "replace") + run_.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out, out[-4000:]
    assert run_.returncode == 0, f"music-build exit {run_.returncode}:\n{out[-4000:]}"
    return json.loads((builds / "report.json").read_bytes().decode("utf-8"))


def tree_digests(tree: Path) -> dict[str, str]:
    return {str(p.relative_to(tree)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("*")) if p.is_file()}


class Compiled:
    def __init__(self, base: Path, src: Path, builds: Path, manifest: dict, report: dict, timings: dict):
        self.base, self.src, self.builds, self.report, self.timings = base, src, builds, report, timings
        self.tracks: dict[str, dict] = manifest["tracks"]
        # profile -> {output path relative to the profile's tree: source}, as the build recorded it
        self.record = {p: json.loads((builds / ".music/outputs" / f"{p}.json").read_text())["outputs"]
                       for p in PROFILES}
        self.digests = {p: tree_digests(builds / p) for p in PROFILES}
        self.seen: dict[tuple[str, str], dict] = {}  # (profile, output) -> what the readers saw

    def outputs(self, profile: str) -> dict[str, str]:
        """The profile's track outputs (relative path -> source)."""
        return {out: src for out, src in self.record[profile].items() if src in self.tracks}


@pytest.fixture(scope="module")
def compiled(world_readable_tmp):
    build_user()
    base = world_readable_tmp / f"collector15-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o755)
    try:
        src = base / "src"
        clock = time.monotonic()
        manifest = make_collector15_library(str(src))
        timings = {"generate": time.monotonic() - clock}
        builds = base / "builds"
        for p, settings in PROFILES.items():
            folder = builds / ".music" / "tup" / p
            folder.mkdir(parents=True)
            (folder / "tup.config").write_text(render_tup_config(p, settings))
        for top, dirs, names in os.walk(builds):
            for name in [top] + [os.path.join(top, n) for n in dirs + names]:
                shutil.chown(name, USER, USER)
        clock = time.monotonic()
        report = music_build(src, builds)
        timings["build"] = time.monotonic() - clock
        world = Compiled(base, src, builds, manifest, report, timings)
        clock = time.monotonic()
        inspect_all(world)
        timings["inspect"] = time.monotonic() - clock
        yield world
    finally:
        subprocess.run(["umount", "-l", *fuse_mounts_under(base)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def fuse_mounts_under(base: Path) -> list[str]:
    want = str(base).replace(" ", "\\040") + "/"
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(want)]


# --- what the two readers see in one file ----------------------------------------------------

def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, **kw)


def number_and_total(value) -> tuple[int | None, int | None]:
    if value is None or value == "":
        return None, None
    head, _, tail = str(value).partition("/")
    try:
        number = int(head)
    except ValueError:
        return None, None
    return number, int(tail) if tail.strip().isdigit() else None


def with_mutagen(path: Path) -> dict:
    audio = mutagen.File(path)
    if audio is None:
        return {"error": "mutagen does not know the file"}
    seen: dict = {"kind": type(audio).__name__, "channels": audio.info.channels}
    if isinstance(audio.tags, ID3):  # MP3; a WAV source's ID3 chunk
        tags = audio.tags
        frames = tags.getall if tags is not None else (lambda _: [])

        def texts(frame):
            return [str(t) for f in frames(frame) for t in f.text]

        seen.update(title=(texts("TIT2") or [None])[0], artists=texts("TPE1"), album=(texts("TALB") or [None])[0])
        seen["track"], seen["total"] = number_and_total((texts("TRCK") or [None])[0])
        seen["id3_version"] = tags.version if tags is not None else None
        seen["pictures"] = [hashlib.sha256(f.data).hexdigest() for f in frames("APIC")]
    elif isinstance(audio, MP4):
        tags = audio.tags or {}
        seen.update(title=(tags.get("\xa9nam") or [None])[0], artists=list(tags.get("\xa9ART") or []),
                    album=(tags.get("\xa9alb") or [None])[0])
        seen["track"], seen["total"] = (tags.get("trkn") or [(None, None)])[0]
        seen["pictures"] = [hashlib.sha256(bytes(c)).hexdigest() for c in tags.get("covr") or []]
        seen["codec"] = getattr(audio.info, "codec", None)
        # iTunes' gapless data: " 00000000 priming padding samples ...", in hex
        smpb = [bytes(v).decode("ascii", "replace").split() for v in tags.get("----:com.apple.iTunes:iTunSMPB") or []]
        if smpb and len(smpb[0]) >= 4:
            seen["gapless_length"] = int(smpb[0][3], 16) / audio.info.sample_rate
    elif isinstance(audio.tags, APEv2):  # a WavPack source
        def ape(key):
            return list(audio.tags[key]) if key in audio.tags else []

        seen.update(title=(ape("Title") or [None])[0], artists=ape("Artist"), album=(ape("Album") or [None])[0])
        seen["track"], seen["total"] = number_and_total((ape("Track") or [None])[0])
        seen["pictures"] = []
    else:  # Vorbis comments: FLAC, Opus
        tags = audio.tags or {}

        def values(key):
            return list(tags.get(key) or [])

        seen.update(title=(values("title") or [None])[0], artists=values("artist"),
                    album=(values("album") or [None])[0])
        seen["track"], seen["total"] = number_and_total((values("tracknumber") or [None])[0])
        if seen["total"] is None:
            seen["total"] = number_and_total((values("tracktotal") or values("totaltracks") or [None])[0])[0]
        pictures = audio.pictures if isinstance(audio, FLAC) else \
            [Picture(base64.b64decode(v)) for v in values("metadata_block_picture")]
        seen["pictures"] = [hashlib.sha256(p.data).hexdigest() for p in pictures]
        if isinstance(audio, FLAC):
            seen["rate"], seen["bits"] = audio.info.sample_rate, audio.info.bits_per_sample
    return seen


def with_ffmpeg(path: Path) -> dict:
    probe = run(["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", path])
    if probe.returncode != 0:
        return {"error": f"ffprobe: {probe.stderr.decode(errors='replace').strip()}"}
    info = json.loads(probe.stdout)
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
    if not audio:
        return {"error": "ffprobe sees no audio stream"}
    tags = {k.lower(): v for k, v in info["format"].get("tags", {}).items()}
    for s in audio:  # Ogg keeps the comments on the stream
        tags.update({k.lower(): v for k, v in s.get("tags", {}).items()})
    a = audio[0]
    seen = {"format": info["format"]["format_name"], "codec": a["codec_name"], "audio_streams": len(audio),
            "channels": a["channels"], "rate": int(a["sample_rate"]),
            "bits": int(a.get("bits_per_raw_sample") or 0),
            "title": tags.get("title"), "artist": tags.get("artist"), "album": tags.get("album")}
    seen["track"], seen["total"] = number_and_total(tags.get("track"))
    # Decoded to the end as 16-bit samples at the stream's rate: their count is the length a
    # player plays (gapless data honoured), their MD5 the audio; each attached picture's bytes
    # copied out by the same run.
    attached = [s["index"] for s in info["streams"]
                if s["codec_type"] == "video" and s.get("disposition", {}).get("attached_pic")]
    with tempfile.TemporaryDirectory(prefix="pics-") as pics:
        extract = [arg for i in attached for arg in ("-map", f"0:{i}", "-c", "copy", "-f", "image2",
                                                    os.path.join(pics, f"{i}.img"))]
        decode = run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "s16le",
                      "-c:a", "pcm_s16le", "pipe:1", *extract])
        seen["pictures"] = [hashlib.sha256(Path(pics, f"{i}.img").read_bytes()).hexdigest()
                            for i in attached if Path(pics, f"{i}.img").is_file()]
    seen["decodes"] = decode.returncode == 0 and not decode.stderr.strip()
    seen["decode_errors"] = decode.stderr.decode(errors="replace").strip()[-500:]
    seen["length"] = len(decode.stdout) / (2 * seen["channels"] * seen["rate"])
    seen["pcm_md5"] = hashlib.md5(decode.stdout).hexdigest()
    return seen


def inspect_all(world: Compiled) -> None:
    jobs = [(p, out) for p in PROFILES for out in world.outputs(p)]
    jobs += [("source", rel) for rel in world.tracks]

    def one(job):
        p, rel = job
        path = (world.src if p == "source" else world.builds / p) / rel
        try:
            return job, {"mutagen": with_mutagen(path), "ffmpeg": with_ffmpeg(path)}
        except Exception as exc:  # a file a reader refuses: that is the finding
            return job, {"error": f"{type(exc).__name__}: {exc}"}

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for job, seen in pool.map(one, jobs):
            world.seen[job] = seen


def played_length(seen: dict) -> float:
    """The length a player plays: an MP4's iTunSMPB where it has one (Apple's players read
    it; ffmpeg only the edit list), else the samples ffmpeg decoded."""
    return seen["mutagen"].get("gapless_length", seen["ffmpeg"]["length"])


def check(problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{len(problems)} problem(s):\n" + "\n".join(problems), pytrace=False)


def readable(world: Compiled):
    """(profile, output, source, manifest entry, what the readers saw) of every output both
    readers could open (the others are test_every_output_decodes' findings)."""
    for (p, out), seen in sorted(world.seen.items()):
        if p == "source" or "error" in seen or "error" in seen["mutagen"] or "error" in seen["ffmpeg"]:
            continue
        src = world.record[p][out]
        yield p, out, src, world.tracks[src], seen


# --- the library and the build -------------------------------------------------------------------

def test_the_library_is_what_a_collector_has(compiled):
    """The generator made what the issue describes (else the rest proves less than it says)."""
    print("timings (s):", {k: round(v, 1) for k, v in compiled.timings.items()})
    t = compiled.tracks
    formats = {v["format"] for v in t.values()}
    assert {"flac", "mp3", "m4a", "opus", "alac", "wavpack", "wav"} <= formats
    assert {v["genre"] for v in t.values() if not v["audiobook"]} >= {"Jazz", "Rock", "Pop"}
    jazz = {v["format"] for v in t.values() if v["genre"] == "Jazz"}
    assert {"flac", "alac", "mp3", "m4a"} <= jazz  # the car's subset is by tag, across formats
    assert any(v["audiobook"] for v in t.values()) and all(r.startswith("Audiobooks/") == v["audiobook"]
                                                           for r, v in t.items())
    hires = [r for r, v in t.items() if (v["rate"], v["bits"]) == (192000, 24)]
    assert hires and all((FLAC(compiled.src / r).info.sample_rate, FLAC(compiled.src / r).info.bits_per_sample)
                         == (192000, 24) for r in hires)
    for rel, v in t.items():
        seen = compiled.seen[("source", rel)]
        assert "error" not in seen and "error" not in seen["mutagen"], (rel, seen)
        assert seen["mutagen"]["title"] == v["title"] and seen["ffmpeg"]["title"] == v["title"], (rel, seen)
        assert abs(played_length(seen) - v["seconds"]) <= LENGTH_TOLERANCE, (rel, played_length(seen))
    purchases = [r for r, v in t.items() if v["format"] == "mp3"]
    assert all(ID3(compiled.src / r).version == (2, 4, 0) for r in purchases)  # as stores write them
    assert any(":" in r or "?" in r for r in t) and any(not r.isascii() for r in t)


def test_report_has_no_failures(compiled):
    problems = []
    for p in PROFILES:
        r = compiled.report["profiles"][p]
        problems += [f"{p}: failed: {f['source']}: {f['reason']}" for f in r["failed"]]
        if r["foreign"]["count"]:
            problems.append(f"{p}: foreign files {r['foreign']}")
        if r["removed"] or r["moved"] or r["retagged"]:
            problems.append(f"{p}: a first build removed {r['removed']}, moved {r['moved']}, retagged {r['retagged']}")
    check(problems)


def test_each_profile_holds_what_the_owner_kept_and_nothing_else(compiled):
    """Every source the profile keeps has exactly one output; no output stands for a source
    it leaves out; the tree holds exactly the recorded outputs."""
    problems = []
    for p in PROFILES:
        by_source: dict[str, list[str]] = {}
        for out, src in compiled.record[p].items():
            by_source.setdefault(src, []).append(out)
        for rel, t in compiled.tracks.items():
            outs = [o for o in by_source.get(rel, []) if not o.endswith(".m3u8")]
            want = 1 if kept(p, t) else 0
            if len(outs) != want:
                why = "kept" if want else "left out by the profile's settings"
                problems.append(f"{p}: {rel!r} ({t['format']}, {t['genre']}) is {why}, has outputs {outs}")
        for src in set(by_source) - set(compiled.tracks):
            problems.append(f"{p}: an output {by_source[src]} for {src!r}, which is not a source")
        tree = set(compiled.digests[p])
        if tree != set(compiled.record[p]):
            problems.append(f"{p}: tree and record differ: only in tree {sorted(tree - set(compiled.record[p]))}, "
                            f"only recorded {sorted(set(compiled.record[p]) - tree)}")
    check(problems)


def test_every_output_decodes_with_its_sources_channels_and_length(compiled):
    problems = []
    for (p, out), seen in sorted(compiled.seen.items()):
        if p == "source":
            continue
        src = compiled.record[p][out]
        t = compiled.tracks[src]
        where = f"{p}: {out!r} (from {src!r})"
        if "error" in seen or "error" in seen["mutagen"] or "error" in seen["ffmpeg"]:
            problems.append(f"{where}: unreadable: {seen.get('error') or seen['mutagen'].get('error') or seen['ffmpeg']['error']}")
            continue
        f = seen["ffmpeg"]
        if not f["decodes"]:
            problems.append(f"{where}: does not decode: {f['decode_errors']}")
        if f["codec"] != codec_of(p, t):
            problems.append(f"{where}: {f['codec']} audio, want {codec_of(p, t)}")
        if f["audio_streams"] != 1:
            problems.append(f"{where}: {f['audio_streams']} audio streams")
        readers = [("ffprobe", f["channels"])]
        if seen["mutagen"]["kind"] != "MP4":  # see MP4_CHANNELS
            readers.append(("mutagen", seen["mutagen"]["channels"]))
        for reader, ch in readers:
            if ch != t["channels"]:
                problems.append(f"{where}: {ch} channels ({reader}), the source has {t['channels']}")
        if abs(played_length(seen) - t["seconds"]) > LENGTH_TOLERANCE:
            problems.append(f"{where}: plays {played_length(seen):.3f} s (decoded by ffmpeg: {f['length']:.3f} s), "
                            f"the source {t['seconds']} s")
    check(problems)


def test_tags_and_cover_read_back_by_mutagen_and_ffprobe(compiled):
    problems = []
    for p, out, src, t, seen in readable(compiled):
        where = f"{p}: {out!r} (from {src!r})"
        m, f = seen["mutagen"], seen["ffmpeg"]
        for reader, got in (("mutagen", m), ("ffprobe", f)):
            for key in ("title", "album", "track"):
                if got[key] != t[key]:
                    problems.append(f"{where}: {key} {got[key]!r} ({reader}), want {t[key]!r}")
            if t["cover"] is not None and t["cover"] not in got["pictures"]:
                problems.append(f"{where}: {reader} sees {len(got['pictures'])} picture(s), not the source's cover")
        if m["total"] != t["total"]:
            problems.append(f"{where}: track total {m['total']!r} (mutagen), want {t['total']}")
        # Every artist, as one value each (mutagen) and in the one string ffprobe shows.
        joined = " / ".join(m["artists"])
        if not all(a in joined for a in t["artists"]) or (len(t["artists"]) == 1 and m["artists"][:1] != t["artists"]):
            problems.append(f"{where}: artists {m['artists']!r} (mutagen), want {t['artists']!r}")
        # ffprobe shows one string: every artist where the format joins them (ID3v2.3's '/',
        # which car stereos read), at least the first elsewhere (ffmpeg reads only the first
        # of an ID3v2.4 frame's values)
        shown = t["artists"] if p == "car" else t["artists"][:1]
        if not f["artist"] or not all(a in f["artist"] for a in shown):
            problems.append(f"{where}: artist {f['artist']!r} (ffprobe), want {shown!r}")
    check(problems)


# --- per device ------------------------------------------------------------------------------

TRANSLITERATED = str.maketrans({"é": "e", "è": "e", "à": "a", "ø": "o"})  # as Unidecode has them


def letters(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", os.path.splitext(path)[0])


def test_car_has_id3v23_tags_and_ascii_fat32_names(compiled):
    """A car stereo that reads only ID3v2.3: every MP3 in the car's tree has a v2.3 header,
    the purchase copied from an ID3v2.4 file too; names are ASCII and FAT32-safe."""
    problems = []
    for out, src in sorted(compiled.outputs("car").items()):
        try:
            version = ID3(compiled.builds / "car" / out).version
        except Exception as exc:  # not an MP3 with an ID3v2 tag: said by the codec test too
            problems.append(f"car: {out!r} (from {src!r}): no ID3v2 tag ({type(exc).__name__})")
            continue
        if version != (2, 3, 0):
            problems.append(f"car: {out!r} (from {src!r}): ID3v{'.'.join(map(str, version[:2]))} header")
        if not out.isascii() or re.search(r'[\x00-\x1f"*:<>?\\|]', out):
            problems.append(f"car: {out!r} is not an ASCII FAT32 name")
        # transliterated, not dropped: every letter and digit of the source's path is there
        if letters(out) != letters(src.translate(TRANSLITERATED)):
            problems.append(f"car: {out!r} is not {src!r} transliterated")
    check(problems)


def test_phone_names_fit_exfat(compiled):
    problems = [f"phone: {out!r} holds a character exFAT refuses" for out in sorted(compiled.record["phone"])
                if any(EXFAT_REFUSES.search(part) for part in out.split("/"))]
    check(problems)


def test_lossy_files_in_their_own_codec_are_copied_not_reencoded(compiled):
    """A lossy source that a profile keeps in its own codec (the phone's copies, the car's
    MP3 purchase, the iPhone's AAC purchase) has the library file's audio, frame for frame
    decoded to the same samples (its tags may be re-written to the profile's conventions);
    the phone's Opus file, which nothing re-tags, is the library's file byte for byte."""
    problems = []
    for p, out, src, t, seen in readable(compiled):
        if not t["lossy"] or codec_of(p, t) != compiled.seen[("source", src)]["ffmpeg"]["codec"]:
            continue
        if seen["ffmpeg"]["pcm_md5"] != compiled.seen[("source", src)]["ffmpeg"]["pcm_md5"]:
            problems.append(f"{p}: {out!r}: its audio is not {src!r}'s (re-encoded?)")
        if p == "phone" and t["format"] == "opus" and \
                (compiled.builds / p / out).read_bytes() != (compiled.src / src).read_bytes():
            problems.append(f"{p}: {out!r} is not a copy of {src!r}")
    assert any(p == "car" and t["lossy"] for p, _, _, t, _ in readable(compiled)), "no copied MP3 in the car"
    check(problems)


def test_iphone_gets_aac_in_mp4(compiled):
    problems = []
    for p, out, src, t, seen in readable(compiled):
        if p != "iphone":
            continue
        if not out.endswith(".m4a") or seen["mutagen"]["kind"] != "MP4" or "mp4" not in seen["ffmpeg"]["format"]:
            problems.append(f"iphone: {out!r} (from {src!r}) is not an MP4 file ({seen['mutagen']['kind']}, "
                            f"{seen['ffmpeg']['format']})")
    check(problems)


def test_portable_is_16_bit_at_most_44k_and_otherwise_bit_identical(compiled):
    problems = []
    for p, out, src, t, seen in readable(compiled):
        if p != "portable" or t["lossy"]:  # lossy sources: skipped (test_each_profile_holds...)
            continue
        where = f"portable: {out!r} (from {src!r}, {t['bits']}-bit {t['rate']} Hz)"
        m, f = seen["mutagen"], seen["ffmpeg"]
        if (m.get("bits"), f["bits"]) != (MAX_BITS, MAX_BITS):
            problems.append(f"{where}: {m.get('bits')}-bit (mutagen), {f['bits']}-bit (ffprobe)")
        if not (m.get("rate") == f["rate"] and 32000 <= f["rate"] <= MAX_RATE):
            problems.append(f"{where}: {m.get('rate')} Hz (mutagen), {f['rate']} Hz (ffprobe)")
        if t["rate"] <= MAX_RATE and t["bits"] <= MAX_BITS:
            if (f["rate"], f["bits"]) != (t["rate"], t["bits"]):
                problems.append(f"{where}: within the limits, but {f['bits']}-bit {f['rate']} Hz")
            if f["pcm_md5"] != compiled.seen[("source", src)]["ffmpeg"]["pcm_md5"]:
                problems.append(f"{where}: within the limits, but its audio is not the source's sample for sample")
    assert any(t["rate"] == 192000 for _, _, _, t, _ in readable(compiled)), "no 24/192 output was read"
    check(problems)


# --- the report ------------------------------------------------------------------------------------

LEFT_OUT_KEYS = re.compile(r"skip|exclu|outside|left", re.I)


def left_out_in_report(r: dict) -> tuple[int, list[str]]:
    """What a profile's report says it left out: the count and the sources named, summed over
    its keys that say so (`skipped`: lossy files under `lossy: skip`; the subset's own key)."""
    count, named = 0, []
    for key, value in r.items():
        if not LEFT_OUT_KEYS.search(key):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            count += value
        elif isinstance(value, dict):
            count += int(value.get("count", 0))
            named += [str(v) for v in value.get("first", value.get("sources", []))]
        elif isinstance(value, list):
            count += len(value)
            named += [str(v.get("source", v)) if isinstance(v, dict) else str(v) for v in value]
    return count, named


def test_the_report_lists_what_each_profile_left_out(compiled):
    """Each profile's report counts the sources its subset or `lossy: skip` left out, and
    names every lossy file it skipped (the issue: every skip is listed in the report); it
    names nothing the profile holds."""
    problems = []
    for p in PROFILES:
        r = compiled.report["profiles"][p]
        left_out = {rel for rel, t in compiled.tracks.items() if not kept(p, t)}
        count, named = left_out_in_report(r)
        if count != len(left_out):
            problems.append(f"{p}: {len(left_out)} sources left out, the report counts {count}: "
                            f"{json.dumps({k: v for k, v in r.items() if k != 'notes'})[:700]}")
        problems += [f"{p}: the report lists {n!r} as left out, the profile holds it" for n in named
                     if n not in left_out]
        if p == "portable":
            problems += [f"portable: skipped {rel!r} is not named in the report" for rel in sorted(left_out)
                         if rel not in named]
    check(problems)


def test_the_reports_counts_are_of_what_each_profile_holds(compiled):
    """A first build's counts add up to the tracks the profile holds: the sources a subset or
    `lossy: skip` left out are not counted as unchanged tracks of the device."""
    problems = []
    for p in PROFILES:
        r = compiled.report["profiles"][p]
        holds = sum(1 for t in compiled.tracks.values() if kept(p, t))
        counted = {k: r[k] for k in ("encoded", "copied", "retagged", "moved", "unchanged") if isinstance(r.get(k), int)}
        if sum(counted.values()) != holds:
            problems.append(f"{p}: holds {holds} tracks, the report counts {counted}")
    check(problems)


def test_the_report_notes_each_conversion(compiled):
    """What a profile did to a source's audio besides encoding it is noted per source: a lossy
    file transcoded into another lossy codec, a hi-res track resampled and reduced to 16 bits."""
    problems = []
    for p in PROFILES:
        notes: dict[str, str] = {}
        for n in compiled.report["profiles"][p].get("notes", []):
            notes[n["source"]] = notes.get(n["source"], "") + " | " + n["note"]
        for rel, t in sorted(compiled.tracks.items()):
            if not kept(p, t):
                continue
            said = notes.get(rel, "")
            if t["lossy"] and codec_of(p, t) != {"mp3": "mp3", "m4a": "aac", "opus": "opus"}[t["format"]] \
                    and not re.search(r"lossy|transcod", said, re.I):
                problems.append(f"{p}: {rel!r}: a lossy file transcoded to {codec_of(p, t)}, the notes say {said!r}")
            if p == "portable" and t["rate"] > MAX_RATE and not re.search(r"resampl|Hz", said):
                problems.append(f"portable: {rel!r}: {t['rate']} Hz resampled, the notes say {said!r}")
            if p == "portable" and t["bits"] > MAX_BITS and not re.search(r"bit|dither", said):
                problems.append(f"portable: {rel!r}: {t['bits']}-bit reduced, the notes say {said!r}")
    check(problems)


# --- onto the devices ----------------------------------------------------------------------------

def readme_command() -> list[str]:
    """The README's command for copying a profile from the builds folder to a FAT device."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines()
             if line.startswith("rsync ") and README_SOURCE in line and README_DEVICE in line]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def rsync_readme(tree: Path, device: Path) -> list[str]:
    """Copy `tree` to the device folder with the README's command: the items it copied. Only
    a FUSE filesystem's missing chmod may be complained of."""
    cmd = [str(tree) + "/" if a == README_SOURCE else str(device) + "/" if a == README_DEVICE else a
           for a in readme_command()]
    run_ = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    errors = [line for line in run_.stderr.splitlines() if line.strip() and not FUSE_NO_CHMOD.match(line)]
    if run_.returncode == 23 and errors and errors[-1].startswith("rsync error: some files/attrs were not transferred"):
        errors.pop()
    else:
        assert run_.returncode == 0, run_.stderr
    assert errors == [], run_.stderr
    return [line for line in run_.stdout.splitlines() if ITEM.match(line)]


class Mounted:
    """A FUSE filesystem process run in the foreground (this test's own), unmounted and ended
    in cleanup; and a loop device when the filesystem needs a block device."""

    def __init__(self, mnt: Path):
        self.mnt, self.proc, self.loop = mnt, None, None
        mnt.mkdir()

    def start(self, cmd: list[str]) -> Path:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mnt):
            assert self.proc.poll() is None and time.monotonic() < deadline, f"{cmd[0]} did not mount"
            time.sleep(0.02)
        return self.mnt

    def stop(self) -> None:
        if self.proc is not None:
            if os.path.ismount(self.mnt):
                subprocess.run(["fusermount", "-u", str(self.mnt)], capture_output=True)
            try:
                self.proc.wait(timeout=10)  # its writes are in the image once it has ended
            except subprocess.TimeoutExpired:
                subprocess.run(["fusermount", "-uz", str(self.mnt)], capture_output=True)
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], capture_output=True)
            self.loop = None


@pytest.fixture
def device(compiled):
    made: list[Mounted] = []

    def make(name: str) -> Mounted:
        m = Mounted(compiled.base / f"mnt-{name}-{uuid.uuid4().hex[:6]}")
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


def files(tree: Path) -> dict[str, str]:
    return {os.path.relpath(os.path.join(top, n), tree): hashlib.sha256(Path(top, n).read_bytes()).hexdigest()
            for top, _, names in os.walk(tree) for n in names}


def test_car_tree_onto_a_fat32_stick_with_the_readme_command(compiled, device):
    tree = compiled.builds / "car"
    image = compiled.base / "car-fat32.img"
    with open(image, "wb") as fh:
        fh.truncate(64 << 20)  # FAT32 needs 65525 clusters: 64 MiB of 512-byte clusters
    subprocess.run(["mformat", "-i", str(image), "-F", "::"], check=True, capture_output=True)
    fat = device("fat32")
    mnt = fat.start(["fusefat", "-f", "-o", "rw+", str(image), str(fat.mnt)])
    copied = rsync_readme(tree, mnt / "Music")
    want = files(tree)
    assert len([i for i in copied if i.startswith(">f")]) == len(want)
    assert files(mnt / "Music") == want
    fat.stop()
    # What fusefat wrote, listed by another FAT implementation (mtools): the same names.
    listing = subprocess.run(["mdir", "-/", "-b", "-i", str(image), "::/Music"], check=True, capture_output=True,
                             text=True, env=dict(os.environ, LC_ALL="C.UTF-8")).stdout
    on_fat = {line[len("::/Music/"):] for line in listing.splitlines()
              if line.startswith("::/Music/") and not line.endswith("/")}
    assert on_fat == set(want)


def test_phone_tree_onto_an_exfat_card_with_names_intact(compiled, device):
    tree = compiled.builds / "phone"
    image = compiled.base / "phone-exfat.img"
    with open(image, "wb") as fh:
        fh.truncate(64 << 20)
    subprocess.run(["mkfs.exfat", "-L", "PHONE", str(image)], check=True, capture_output=True)
    card = device("exfat")
    # exfat-fuse run as root asks for a block device (fuseblk): a loop device over the image.
    card.loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True,
                               text=True).stdout.strip()
    mnt = card.start(["mount.exfat-fuse", "-d", "-o", "rw", card.loop, str(card.mnt)])
    rsync_readme(tree, mnt / "Music")
    want = files(tree)
    assert files(mnt / "Music") == want  # every name as the build wrote it, every byte
    card.stop()
    # Read again from a fresh mount: what exfat-fuse wrote is on the card.
    card.loop = subprocess.run(["losetup", "-f", "--show", "-r", str(image)], check=True, capture_output=True,
                               text=True).stdout.strip()
    mnt = card.start(["mount.exfat-fuse", "-d", "-o", "ro", card.loop, str(card.mnt)])
    assert files(mnt / "Music") == want


# --- and again -------------------------------------------------------------------------------------

def test_a_second_build_changes_nothing(compiled):
    report = music_build(compiled.src, compiled.builds)
    problems = []
    for p in PROFILES:
        r = report["profiles"][p]
        if r["encoded"] or r["retagged"] or r["moved"] or r["removed"] or r["failed"]:
            problems.append(f"{p}: second build: encoded {r['encoded']}, retagged {r['retagged']}, moved {r['moved']}, "
                            f"removed {r['removed']}, failed {r['failed']}")
        now = tree_digests(compiled.builds / p)
        if now != compiled.digests[p]:
            changed = sorted(k for k in set(now) | set(compiled.digests[p]) if now.get(k) != compiled.digests[p].get(k))
            problems.append(f"{p}: files changed by the second build: {changed}")
    check(problems)
