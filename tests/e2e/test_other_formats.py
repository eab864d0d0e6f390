"""Other formats in the library, never skipped in silence (issue 15, item 1).

A generated album holds one track of every format the build reads besides FLAC: WAV (RIFF
INFO tags, as ffmpeg writes them), AIFF (ID3 with a picture), ALAC (MP4 atoms and covr),
24-bit WavPack (APEv2 with a front cover), and lossy MP3, AAC, Opus and Ogg Vorbis, plus a
'.m4a' that is not audio. Three profiles built by music-build itself:
- flac (lossy: copy, the default): the lossless tracks as FLAC with the same decoded
  samples, the lossy ones byte for byte as they are, under their own names;
- car (mp3, lossy: transcode, id3: "2.3"): everything as MP3 with ID3v2.3 tags; the MP3
  source copied (its codec is the profile's: the same audio frames, its tag saved as v2.3),
  the others transcoded with a note in the report;
- phone (opus, lossy: skip, playlists): the lossless tracks only, the lossy ones listed in
  the report's `skipped`, the album playlist without them.
Outputs are read back with ffprobe and mutagen (codec, title, cover picture), decoded by
ffmpeg. Then, as a user edits the library: a tag-only edit re-tags (lossless) or re-copies
(lossy, cheap), an audio edit re-encodes, a removed file's outputs go, and a profile turned
to `lossy: skip` drops what it had copied.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import mutagen
import pytest
from mutagen.apev2 import APEValue, BINARY
from mutagen.id3 import APIC, ID3, TIT2, TPE1, TRCK
from mutagen.mp4 import MP4, MP4Cover

from musicbuild import formats
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = ROOT / "roles/worker/files/music-build/music-build"
PROFILES = {"flac": {"codec": "flac"}, "car": {"codec": "mp3", "lossy": "transcode", "id3": "2.3"},
            "phone": {"codec": "opus", "lossy": "skip", "playlists": True}}
LOSSLESS = ["01 Wave.wav", "02 Aiff.aiff", "03 Alac.m4a", "04 Pack.wv"]
LOSSY = ["05 Mpeg.mp3", "06 Aac.m4a", "07 Opus.opus", "08 Vorbis.ogg"]
CODEC = {"01 Wave.wav": "pcm_s16le", "02 Aiff.aiff": "pcm_s16be", "03 Alac.m4a": "alac", "04 Pack.wv": "wavpack",
         "05 Mpeg.mp3": "mp3", "06 Aac.m4a": "aac", "07 Opus.opus": "opus", "08 Vorbis.ogg": "vorbis"}
WITH_ART = ["02 Aiff.aiff", "03 Alac.m4a", "04 Pack.wv"]


def png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), color).save(buf, "PNG")
    return buf.getvalue()


PICTURE = {"02 Aiff.aiff": png((200, 0, 0)), "03 Alac.m4a": png((0, 200, 0)), "04 Pack.wv": png((0, 0, 200))}


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def title(name: str) -> str:
    return name.split(" ", 1)[1].rsplit(".", 1)[0] + " title"


def make_track(folder: Path, name: str, seed: int) -> None:
    path = folder / name
    wav = folder / f".{seed}.wav"
    bits = "24" if name.endswith(".wv") else "16"
    run("sox", "-n", "-r", "44100", "-c", "2", "-b", bits, str(wav), "synth", "1", "sine", str(300 + 40 * seed),
        "gain", "-6")
    ff = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav)]
    if name.endswith(".wav"):  # RIFF INFO tags, as ffmpeg writes them
        run(*ff, "-metadata", f"title={title(name)}", "-metadata", "artist=Wave Artist", "-metadata", "track=1",
            str(path))
    elif name.endswith(".aiff"):
        run(*ff, str(path))
        audio = mutagen.File(path)
        audio.add_tags()
        audio.tags.add(TIT2(encoding=3, text=[title(name)]))
        audio.tags.add(TPE1(encoding=3, text=["Aiff Artist"]))
        audio.tags.add(TRCK(encoding=3, text=["2/8"]))
        audio.tags.add(APIC(encoding=3, mime="image/png", type=3, desc="", data=PICTURE[name]))
        audio.save()
    elif name.endswith(".m4a"):
        run(*ff, "-c:a", "alac" if "Alac" in name else "aac", str(path))
        audio = MP4(path)
        audio["\xa9nam"] = [title(name)]
        audio["\xa9ART"] = ["Mp4 Artist"]
        audio["trkn"] = [(seed, 8)]
        audio["----:com.apple.iTunes:MusicBrainz Track Id"] = [b"0a1b2c3d-0000-4000-8000-00000000000%d" % seed]
        if name in PICTURE:
            audio["covr"] = [MP4Cover(PICTURE[name], imageformat=MP4Cover.FORMAT_PNG)]
        audio.save()
    elif name.endswith(".wv"):
        run(*ff, "-c:a", "wavpack", "-bits_per_raw_sample", bits, str(path))  # (else ffmpeg says 32)
        audio = mutagen.File(path)
        audio.delete()
        audio = mutagen.File(path)
        audio.add_tags()
        audio.tags["Title"] = title(name)
        audio.tags["Artist"] = "Pack Artist"
        audio.tags["Track"] = "4/8"
        audio.tags["Cover Art (Front)"] = APEValue(b"cover.png\0" + PICTURE[name], BINARY)
        audio.save()
    elif name.endswith(".mp3"):
        run("lame", "--quiet", "--tt", title(name), "--ta", "Mp3 Artist", "--tn", "5/8", str(wav), str(path))
        ID3(path).save()  # as a purchase's ID3v2.4 (lame writes v2.3)
    elif name.endswith(".opus"):
        run("opusenc", "--quiet", "--title", title(name), "--artist", "Opus Artist", "--comment", "TRACKNUMBER=7",
            str(wav), str(path))
    elif name.endswith(".ogg"):
        run("oggenc", "-Q", "-t", title(name), "-a", "Ogg Artist", "-N", "8", "-o", str(path), str(wav))
    wav.unlink()


@pytest.fixture(scope="module")
def world(world_readable_tmp):
    base = world_readable_tmp / f"formats-{uuid.uuid4().hex[:8]}"
    album = base / "src" / "Mixed"
    album.mkdir(parents=True)
    for seed, name in enumerate(LOSSLESS + LOSSY, 1):
        make_track(album, name, seed)
    (album / "09 Broken.m4a").write_text("not audio at all\n")
    builds = base / "builds"
    for profile, settings in PROFILES.items():
        set_profile(builds, profile, settings)
    yield base, album, builds
    shutil.rmtree(base, ignore_errors=True)


def set_profile(builds: Path, profile: str, settings: dict) -> None:
    folder = builds / ".music" / "tup" / profile
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tup.config").write_text(render_tup_config(profile, settings))


def build(base: Path, builds: Path) -> dict:
    done = subprocess.run([str(MUSIC_BUILD), "--sources", str(base / "src"), "--builds", str(builds), "--jobs", "2"],
                          capture_output=True, text=True, timeout=180)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    return json.loads((builds / "report.json").read_text())["profiles"]


def probe(path: Path) -> dict:
    shown = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                           capture_output=True, text=True, check=True)
    return json.loads(shown.stdout)


def ffprobe_title(data: dict) -> str | None:
    tags = {}
    for stream in data["streams"]:  # the audio stream's (Ogg), not a picture's
        if stream["codec_type"] == "audio":
            tags.update({k.lower(): v for k, v in stream.get("tags", {}).items()})
    tags.update({k.lower(): v for k, v in data["format"].get("tags", {}).items()})
    return tags.get("title")


def decoded_md5(path: Path) -> str:
    """The MD5 of the decoded samples (24-bit: every source here fits)."""
    done = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-c:a", "pcm_s24le",
                           "-f", "md5", "-"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def output(builds: Path, profile: str, name: str) -> Path:
    found = [p for p in (builds / profile).rglob("*") if p.is_file() and p.stem == Path(name).stem]
    assert len(found) == 1, (profile, name, found)
    return found[0]


def has_output(builds: Path, profile: str, name: str) -> bool:
    return any(p.stem == Path(name).stem for p in (builds / profile).rglob("*") if p.is_file())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_format_in_every_profile(world):
    base, album, builds = world
    report = build(base, builds)
    for p in PROFILES:
        failed = report[p]["failed"]
        assert [f["source"] for f in failed] == ["Mixed/09 Broken.m4a"], failed
        assert "\n" not in failed[0]["reason"] and "not a readable mp4 file" in failed[0]["reason"]

    # flac: lossless as FLAC with the very samples; lossy as they are
    for name in LOSSLESS:
        out = output(builds, "flac", name)
        assert out.suffix == ".flac"
        data = probe(out)
        assert data["streams"][0]["codec_name"] == "flac"
        assert decoded_md5(out) == decoded_md5(album / name), name
        assert ffprobe_title(data) == title(name) and mutagen.File(out)["TITLE"] == [title(name)]
        if name in WITH_ART:
            assert [pic.data for pic in mutagen.File(out).pictures] == [PICTURE[name]], name
    assert mutagen.File(output(builds, "flac", "01 Wave.wav"))["ARTIST"] == ["Wave Artist"]
    assert mutagen.File(output(builds, "flac", "04 Pack.wv"))["TRACKNUMBER"] == ["4"]
    assert mutagen.File(output(builds, "flac", "04 Pack.wv"))["TRACKTOTAL"] == ["8"]
    assert probe(output(builds, "flac", "04 Pack.wv"))["streams"][0]["bits_per_raw_sample"] == "24"
    assert mutagen.File(output(builds, "flac", "03 Alac.m4a"))["MUSICBRAINZ_TRACKID"] == [
        "0a1b2c3d-0000-4000-8000-000000000003"]
    for name in LOSSY:
        out = output(builds, "flac", name)
        assert out.name == name and sha(out) == sha(album / name), name

    # car: every track an MP3; the MP3 source as it is, the others transcoded with a note
    notes = {n["source"]: n["note"] for n in report["car"]["notes"]}
    for name in LOSSLESS + LOSSY:
        out = output(builds, "car", name)
        data = probe(out)
        assert out.suffix == ".mp3" and data["streams"][0]["codec_name"] == "mp3", name
        assert ffprobe_title(data) == title(name) and ID3(out)["TIT2"].text == [title(name)], name
        if name in WITH_ART:
            assert ID3(out).getall("APIC")[0].data == PICTURE[name]
        lossy_to_lossy = name in LOSSY and name != "05 Mpeg.mp3"
        assert ("lossy to lossy" in notes.get(f"Mixed/{name}", "")) == lossy_to_lossy, (name, notes)
        assert ID3(out).version == (2, 3, 0), name
    copied = output(builds, "car", "05 Mpeg.mp3")
    assert formats.packets_digest(str(copied)) == formats.packets_digest(str(album / "05 Mpeg.mp3"))
    assert ID3(album / "05 Mpeg.mp3").version == (2, 4, 0)  # the source is untouched

    # phone: the lossless tracks only; every lossy one listed as skipped
    for name in LOSSLESS:
        assert probe(output(builds, "phone", name))["streams"][0]["codec_name"] == "opus"
    assert not any(has_output(builds, "phone", name) for name in LOSSY)
    assert report["phone"]["skipped"] == {"count": 4, "sources": [f"Mixed/{n}" for n in LOSSY]}
    assert report["flac"]["skipped"]["count"] == report["car"]["skipped"]["count"] == 0
    playlist = (builds / "phone" / "Mixed" / "Mixed.m3u8").read_text()
    assert [ln for ln in playlist.splitlines() if not ln.startswith("#")] == [
        Path(n).stem + ".opus" for n in LOSSLESS]

    again = build(base, builds)
    assert all(again[p]["encoded"] == again[p]["retagged"] == 0 for p in PROFILES), again


def test_edits_retag_reencode_recopy_and_remove(world):
    base, album, builds = world
    build(base, builds)
    copied_before = output(builds, "flac", "05 Mpeg.mp3").stat().st_mtime_ns
    # tag-only edits: an ALAC title, an MP3 title
    audio = MP4(album / "03 Alac.m4a")
    audio["\xa9nam"] = ["New title"]
    audio.save()
    audio = ID3(album / "05 Mpeg.mp3")
    audio.add(TIT2(encoding=3, text=["Renamed mp3"]))
    audio.save()
    # an audio edit: the WavPack's samples replaced, its tags kept
    tags_of = mutagen.File(album / "04 Pack.wv").tags
    kept = {k: v for k, v in tags_of.items()}
    make_track(album, "04 Pack.wv", 40)
    audio = mutagen.File(album / "04 Pack.wv")
    audio.delete()
    audio = mutagen.File(album / "04 Pack.wv")
    audio.add_tags()
    for k, v in kept.items():
        audio.tags[k] = v
    audio.save()
    # a removed file
    (album / "07 Opus.opus").unlink()

    report = build(base, builds)
    # flac: the ALAC re-tagged, the WavPack re-encoded, the MP3 copied again
    assert report["flac"]["encoded"] == 1 and report["flac"]["retagged"] == 1, report["flac"]
    assert mutagen.File(output(builds, "flac", "03 Alac.m4a"))["TITLE"] == ["New title"]
    assert decoded_md5(output(builds, "flac", "04 Pack.wv")) == decoded_md5(album / "04 Pack.wv")
    assert sha(output(builds, "flac", "05 Mpeg.mp3")) == sha(album / "05 Mpeg.mp3")
    assert output(builds, "flac", "05 Mpeg.mp3").stat().st_mtime_ns != copied_before
    # car: the same, and the MP3 (copied as it is) carries its new title
    assert report["car"]["encoded"] == 1 and report["car"]["retagged"] == 1, report["car"]
    assert ID3(output(builds, "car", "05 Mpeg.mp3"))["TIT2"].text == ["Renamed mp3"]
    assert ID3(output(builds, "car", "05 Mpeg.mp3")).version == (2, 3, 0)
    assert ID3(output(builds, "car", "03 Alac.m4a"))["TIT2"].text == ["New title"]
    # the removed Opus: its copy and its transcode are gone
    assert not has_output(builds, "flac", "07 Opus.opus") and not has_output(builds, "car", "07 Opus.opus")
    assert report["flac"]["removed"] == 1 and report["car"]["removed"] == 1
    assert report["phone"]["skipped"]["count"] == 3

    # the flac profile turned to lossy: skip drops the copies, and says so
    set_profile(builds, "flac", {"codec": "flac", "lossy": "skip"})
    report = build(base, builds)
    assert report["flac"]["removed"] == 3 and report["flac"]["skipped"]["count"] == 3, report["flac"]
    assert not any(has_output(builds, "flac", name) for name in LOSSY)
    assert all(has_output(builds, "flac", name) for name in LOSSLESS)
    assert report["flac"]["encoded"] == report["flac"]["retagged"] == 0
