"""AAC for an iPhone and a 16/44.1 FLAC copy for a portable player (issue 15, items 3 and 4),
through music-build as a collector runs it.

The library: a CD album (16-bit, 44.1 kHz, a cover.jpg beside it) and a hi-res album (24-bit,
192 kHz and 176.4 kHz), made here with sox and flac and tagged with mutagen. Profiles:
`iphone` (codec aac, its defaults) and `portable` (flac, max_sample_rate 44100, max_bit_depth 16).

Read back as the devices would see them:
- iphone: every track an AAC-LC `.m4a`; title, artist, album, album artist, track and disc
  with totals, date, MusicBrainz id by mutagen and by ffprobe; the cover.jpg's bytes as covr
  (mutagen) and as the attached picture (ffmpeg); the audio's length to the sample (the edit
  list, by ffprobe; iTunSMPB, by mutagen) equal to the source's at the output's rate (a
  192 kHz source is 96 kHz in AAC, with a note).
- portable: the CD album's audio bit for bit (STREAMINFO MD5 equal to the source's) and no
  note; the hi-res tracks 16-bit 44.1 kHz of the same length, with the conversion noted.
- A second build changes nothing. Raising the limit to 48000 re-encodes the 192 kHz track
  alone (the 176.4 kHz one still goes to 44100, the CD album is under it): no other output
  is rewritten, in either profile.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from mutagen.flac import FLAC
from mutagen.mp4 import MP4, MP4Cover

from musicbuild import mp4tags
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = ROOT / "roles/worker/files/music-build/music-build"
PROFILES = {"iphone": {"codec": "aac"},
            "portable": {"codec": "flac", "max_sample_rate": 44100, "max_bit_depth": 16}}
# source -> (rate, bits, seconds, tags)
TRACKS = {
    "CD/01 First.flac": (44100, 16, 1.3, {"TRACKNUMBER": "1", "TRACKTOTAL": "2"}),
    "CD/02 Second.flac": (44100, 16, 0.9, {"TRACKNUMBER": "2", "TRACKTOTAL": "2"}),
    "HiRes/01 Air.flac": (192000, 24, 1.1, {"TRACKNUMBER": "1/2", "DISCNUMBER": "1", "DISCTOTAL": "1"}),
    "HiRes/02 Water.flac": (176400, 24, 0.7, {"TRACKNUMBER": "2/2", "DISCNUMBER": "1", "DISCTOTAL": "1"}),
}


def make_library(src: Path) -> bytes:
    from PIL import Image

    for n, (rel, (rate, bits, seconds, numbers)) in enumerate(TRACKS.items()):
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["sox", "-R", "-n", "-r", str(rate), "-c", "2", "-b", str(bits), str(path.with_suffix(".wav")),
                        "synth", str(seconds), "sine", str(300 + 100 * n), "sine", str(500 + 100 * n), "gain", "-8"],
                       check=True)
        subprocess.run(["flac", "--silent", "-f", str(path.with_suffix(".wav")), "-o", str(path)], check=True)
        path.with_suffix(".wav").unlink()
        audio = FLAC(path)
        album = rel.split("/")[0]
        audio.update({"TITLE": path.stem[3:], "ARTIST": f"Artist {album}", "ALBUM": f"Album {album}",
                      "ALBUMARTIST": "Album Artist", "DATE": "1999", "MUSICBRAINZ_TRACKID": f"id-{n}", **numbers})
        audio.save()
    cover = src / "CD" / "cover.jpg"
    Image.new("RGB", (64, 64), (10, 120, 200)).save(cover, "JPEG")
    return cover.read_bytes()


def configure(builds: Path, profiles: dict) -> None:
    for name, settings in profiles.items():
        folder = builds / ".music" / "tup" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tup.config").write_text(render_tup_config(name, settings))


def build(src: Path, builds: Path) -> dict:
    run = subprocess.run([str(MUSIC_BUILD), "--sources", str(src), "--builds", str(builds), "--jobs", "2"],
                         capture_output=True, text=True, timeout=180)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "Traceback" not in out, out[-3000:]
    report = json.loads((builds / "report.json").read_text())
    for name in PROFILES:
        assert not report["profiles"][name].get("failed"), report["profiles"][name]["failed"]
    return report


def notes(report: dict, profile: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in report["profiles"][profile]["notes"]:
        out.setdefault(n["source"], []).append(n["note"])
    return out


def output(builds: Path, profile: str, rel: str) -> Path:
    suffix = ".m4a" if profile == "iphone" else ".flac"
    (path,) = (builds / profile).rglob(Path(rel).stem + suffix)
    return path


def state(builds: Path) -> dict[str, tuple[int, int, str]]:
    """Every file of the profiles' trees: (inode, mtime, sha256): a rewrite shows."""
    return {str(p.relative_to(builds)): (p.stat().st_ino, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for name in PROFILES for p in sorted((builds / name).rglob("*")) if p.is_file()}


def metaflac(path: Path) -> list[str]:
    return subprocess.run(["metaflac", "--show-sample-rate", "--show-bps", "--show-total-samples", "--show-md5sum",
                           str(path)], check=True, capture_output=True, text=True).stdout.split()


def ffprobe(path: Path) -> dict:
    return json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                                     check=True, capture_output=True).stdout)


@pytest.fixture(scope="module")
def world(world_readable_tmp):
    base = world_readable_tmp / f"aac-limits-{uuid.uuid4().hex[:8]}"
    src, builds = base / "src", base / "builds"
    cover = make_library(src)
    configure(builds, PROFILES)
    report = build(src, builds)
    yield src, builds, cover, report
    shutil.rmtree(base, ignore_errors=True)


def test_iphone_gets_tagged_gapless_aac(world):
    src, builds, cover, report = world
    said = notes(report, "iphone")
    for rel, (rate, bits, seconds, numbers) in TRACKS.items():
        out = output(builds, "iphone", rel)
        album = rel.split("/")[0]
        probe = ffprobe(out)
        (a,) = [s for s in probe["streams"] if s["codec_type"] == "audio"]
        out_rate = min(rate, 96000) if rate % 48000 == 0 else min(rate, 88200)
        assert (a["codec_name"], a["profile"], int(a["sample_rate"]), a["channels"]) == ("aac", "LC", out_rate, 2)
        samples = round(seconds * rate) * out_rate // rate
        assert a["duration_ts"] == samples, rel  # the edit list: the source's length to the sample
        assert mp4tags.gapless_info(str(out))[2] == samples
        audio = MP4(out)
        smpb = bytes(audio.tags[mp4tags.FREEFORM + "iTunSMPB"][0]).decode().split()
        assert int(smpb[1], 16) == 1024 and int(smpb[3], 16) == samples
        track = numbers["TRACKNUMBER"].split("/")[0]
        total = numbers.get("TRACKTOTAL") or numbers["TRACKNUMBER"].split("/")[1]
        assert audio.tags["©nam"] == [Path(rel).stem[3:]] and audio.tags["©ART"] == [f"Artist {album}"]
        assert audio.tags["aART"] == ["Album Artist"] and audio.tags["trkn"] == [(int(track), int(total))]
        tags = probe["format"]["tags"]
        assert (tags["title"], tags["artist"], tags["album"], tags["album_artist"], tags["track"], tags["date"]) == \
            (Path(rel).stem[3:], f"Artist {album}", f"Album {album}", "Album Artist", f"{track}/{total}", "1999")
        assert tags["MusicBrainz Track Id"] == f"id-{list(TRACKS).index(rel)}"
        if album == "HiRes":
            assert audio.tags["disk"] == [(1, 1)] and tags["disc"] == "1/1"
            assert "covr" not in audio.tags
        else:
            (picture,) = audio.tags["covr"]
            assert bytes(picture) == cover and picture.imageformat == MP4Cover.FORMAT_JPEG
            pic = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-map", "0:v", "-c", "copy", "-f", "image2",
                                  "-"], check=True, capture_output=True).stdout
            assert pic == cover
        if rate > 96000 and rate % 48000 == 0:
            assert said[rel] == [f"resampled {rate} Hz to 96000 Hz (aac encodes at most 96000 Hz)"]
        elif rate == 176400:
            assert said[rel] == ["resampled 176400 Hz to 88200 Hz (aac encodes at most 96000 Hz)"]
        else:
            assert rel not in said


def test_portable_gets_cd_audio_and_keeps_cds_bit_for_bit(world):
    src, builds, cover, report = world
    said = notes(report, "portable")
    for rel, (rate, bits, seconds, numbers) in TRACKS.items():
        out = output(builds, "portable", rel)
        got = metaflac(out)
        if rate == 44100 and bits == 16:
            assert got == metaflac(src / rel)  # same rate, bits, length and decoded samples' MD5
            assert rel not in said
        else:
            assert got[:3] == ["44100", "16", str(round(seconds * 44100))]
            assert said[rel] == [f"resampled {rate} Hz to 44100 Hz (the profile's max_sample_rate: 44100)",
                                 "reduced 24-bit samples to 16 bits with dither (the profile's max_bit_depth: 16)"]
            (a,) = ffprobe(out)["streams"]
            assert (a["sample_rate"], a["sample_fmt"], a["bits_per_raw_sample"]) == ("44100", "s16", "16")


def test_a_limit_change_rebuilds_exactly_the_outputs_it_affects(world):
    src, builds, cover, report = world
    before = state(builds)
    build(src, builds)
    assert state(builds) == before, "a second build changes nothing"
    configure(builds, {"portable": {**PROFILES["portable"], "max_sample_rate": 48000}})
    report = build(src, builds)
    after = state(builds)
    changed = {k for k in before if after.get(k) != before[k]}
    hires_air = str(output(builds, "portable", "HiRes/01 Air.flac").relative_to(builds))
    assert changed == {hires_air}, changed
    assert metaflac(builds / hires_air)[:3] == ["48000", "16", str(round(1.1 * 48000))]
    assert report["profiles"]["portable"]["encoded"] == 1
    configure(builds, {"portable": PROFILES["portable"]})  # as it was, for other tests of this module
