"""Issue 14, item 3: the picture each track gets, built for real (music-build run directly, as
the README documents) into Opus (art_max_size 500), MP3 (art_max_size 500) and FLAC
(art_max_size 0), and read back from every output by mutagen AND by ffprobe/ffmpeg (the
attached picture stream: its bytes, its size and its type as ffmpeg names it).

The library, generated here (sox, mutagen, Pillow; nothing downloaded), four one-second tracks:
- "Front": its front cover embedded (described "Front"): that one, as it is, with its
  description;
- "Back Only": a scanned back cover embedded, nothing else: written as a back cover;
- "Corrupt Front": two embedded "front covers", one not a picture and one a JPEG cut after its
  header (so its size can be read, its pixels cannot), an embedded back cover and cover.jpg
  beside it: cover.jpg, as the front cover, and two notes, in every profile alike;
- "Bomb": a 13000x13000 PNG (169 megapixels in 0.7 MB) as the embedded front cover and
  cover.png beside it: the bomb is refused from its header with a note and cover.png used, in
  every profile (with art_max_size 0 too: cover.png as it is).
Then cover.jpg is added beside "Back Only" and "Front" and, later, a front cover embedded into
the "Back Only" track: each time that track's outputs are re-tagged (not re-encoded) to the new
picture, and the other tracks (the "Front" one too, whose picture stays its own) are left as
they are.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest
from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3
from mutagen.oggopus import OggOpus

from music_devkit.library import make_image, synth_flac
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = Path(os.environ.get("MUSIC_BUILD_PROGRAM", ROOT / "roles/worker/files/music-build/music-build"))
PROFILES = {
    "phone": {"codec": "opus", "bitrate": 64, "art_max_size": 500},
    "car": {"codec": "mp3", "art_max_size": 500},
    "flac": {"codec": "flac"},  # art_max_size 0: pictures as they are
}
EXT = {"phone": ".opus", "car": ".mp3", "flac": ".flac"}
FRONT, BACK = 3, 4
# ffmpeg's names of the picture types (libavformat/id3v2.c), as ffprobe shows them.
FFMPEG_TYPES = {FRONT: "Cover (front)", BACK: "Cover (back)"}
BOMB_SIDE = 13000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid all-black palette PNG of side x side pixels."""
    comp = zlib.compressobj(1)
    row = b"\0" * (1 + side)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 3, 0, 0, 0))
            + _chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255])) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def picture(data: bytes, ptype: int, mime: str, desc: str) -> Picture:
    pic = Picture()
    pic.type, pic.mime, pic.desc, pic.data = ptype, mime, desc, data
    pic.width = pic.height = 300
    pic.depth = 24
    return pic


def track(folder: Path, name: str, seed: int, *pictures: Picture) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    synth_flac(str(path), 1.0, seed)
    audio = FLAC(path)
    audio["TITLE"], audio["ARTIST"], audio["ALBUM"] = name[:-5], "Cover Tester", folder.name
    for pic in pictures:
        audio.add_picture(pic)
    audio.save()
    return path


# --- what the outputs hold, by two readers ---------------------------------------------------------

def with_mutagen(path: Path) -> list[tuple[int, str]]:
    if path.suffix == ".flac":
        pics = FLAC(path).pictures
        return [(int(p.type), sha(p.data), p.width, p.height) for p in pics]
    if path.suffix == ".opus":
        pics = [Picture(base64.b64decode(v)) for v in OggOpus(path).get("metadata_block_picture", [])]
        return [(int(p.type), sha(p.data), p.width, p.height) for p in pics]
    return [(int(f.type), sha(f.data), None, None) for f in ID3(path).getall("APIC")]


def descriptions(path: Path) -> tuple[list[str], list[str]]:
    """The pictures' descriptions, by mutagen and by ffprobe (the attached picture's title)."""
    if path.suffix == ".flac":
        by_mutagen = [p.desc for p in FLAC(path).pictures]
    elif path.suffix == ".opus":
        by_mutagen = [Picture(base64.b64decode(v)).desc for v in OggOpus(path).get("metadata_block_picture", [])]
    else:
        by_mutagen = [f.desc for f in ID3(path).getall("APIC")]
    probe = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_streams", str(path)],
                           capture_output=True, text=True, check=True)
    by_ffprobe = [s.get("tags", {}).get("title", "") for s in json.loads(probe.stdout)["streams"]
                  if s["codec_type"] == "video"]
    return by_mutagen, by_ffprobe


def with_ffmpeg(path: Path) -> list[tuple[int | str, str, int, int]]:
    probe = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_streams", str(path)],
                           capture_output=True, text=True, check=True)
    out = []
    for s in json.loads(probe.stdout)["streams"]:
        if s["codec_type"] != "video":
            continue
        assert s["disposition"]["attached_pic"] == 1, s
        label = s.get("tags", {}).get("comment", "")
        kind = next((t for t, name in FFMPEG_TYPES.items() if name == label), f"unexpected {label!r}")
        data = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", f"0:{s['index']}",
                               "-c", "copy", "-f", "image2pipe", "-"], capture_output=True, check=True).stdout
        out.append((kind, sha(data), s["width"], s["height"]))
    return out


def expect(ptype: int, data: bytes, side: int) -> tuple:
    return ptype, sha(data), side, side


def assert_pictures(builds: Path, profile: str, name: str, ptype: int, data: bytes, side: int) -> None:
    """The output of `name` in `profile` holds exactly one picture: `data`, of type `ptype`,
    side x side, as mutagen and as ffmpeg read it."""
    path = builds / profile / name.replace(".flac", EXT[profile])
    seen = with_mutagen(path)
    if profile == "car":  # ID3 has no size fields
        assert seen == [(ptype, sha(data), None, None)], (profile, name)
    else:
        assert seen == [expect(ptype, data, side)], (profile, name)
    assert with_ffmpeg(path) == [expect(ptype, data, side)], (profile, name)


# --- running the build ----------------------------------------------------------------------------------

def build(src: Path, builds: Path) -> dict:
    run = subprocess.run([str(MUSIC_BUILD), "--sources", str(src), "--builds", str(builds), "--jobs", "2"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "Traceback" not in run.stdout + run.stderr, run.stdout[-2000:] + run.stderr
    return json.loads((builds / "report.json").read_text(encoding="utf-8"))


def encoder_runs(builds: Path) -> int:
    lines = (builds / ".music" / "journal.jsonl").read_text().splitlines()
    return sum(1 for line in lines if line.strip() and json.loads(line)["event"] == "encoder")


def notes(rep: dict, profile: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in rep["profiles"][profile]["notes"]:
        out.setdefault(n["source"], []).append(n["note"])
    return out


@pytest.fixture
def world(world_readable_tmp):
    base = world_readable_tmp / f"cover-art-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o755)
    yield base
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def test_each_track_gets_the_right_picture_with_its_true_type(world):
    src, builds = world / "src", world / "builds"
    back = make_image(300, 1, "PNG")
    cover_jpg = make_image(320, 2)
    cover_png = make_image(240, 3, "PNG")
    bomb = png_bomb()
    own_front = make_image(200, 6)
    track(src / "Front", "01 Front.flac", 4, picture(own_front, FRONT, "image/jpeg", "Front"))
    track(src / "Back Only", "01 Back.flac", 1, picture(back, BACK, "image/png", "Back"))
    track(src / "Corrupt Front", "01 Corrupt.flac", 2, picture(b"<html>not a picture</html>" * 40, FRONT,
                                                               "image/jpeg", "Front"),
          picture(make_image(600, 7)[:300], FRONT, "image/jpeg", "Cut"), picture(back, BACK, "image/png", "Back"))
    (src / "Corrupt Front" / "cover.jpg").write_bytes(cover_jpg)
    track(src / "Bomb", "01 Bomb.flac", 3, picture(bomb, FRONT, "image/png", "Front"))
    (src / "Bomb" / "Cover.PNG").write_bytes(cover_png)
    for p, settings in PROFILES.items():
        folder = builds / ".music" / "tup" / p
        folder.mkdir(parents=True)
        (folder / "tup.config").write_text(render_tup_config(p, settings))

    rep = build(src, builds)
    for p in PROFILES:
        r = rep["profiles"][p]
        assert (r["encoded"], r["failed"]) == (4, []), (p, r)
        assert_pictures(builds, p, "Front/01 Front.flac", FRONT, own_front, 200)
        assert_pictures(builds, p, "Back Only/01 Back.flac", BACK, back, 300)
        assert_pictures(builds, p, "Corrupt Front/01 Corrupt.flac", FRONT, cover_jpg, 320)
        left_out = notes(rep, p)
        assert left_out.pop("Corrupt Front/01 Corrupt.flac") == [
            "cover art: left out the embedded front cover: not a picture in a format that can be read",
            "cover art: left out the embedded front cover: cannot be decoded (Truncated File Read); "
            "used cover.jpg instead"], p
        # With art_max_size 0 too (the flac profile): refused from its header, never decoded.
        assert_pictures(builds, p, "Bomb/01 Bomb.flac", FRONT, cover_png, 240)
        assert left_out.pop("Bomb/01 Bomb.flac") == [
            "cover art: left out the embedded front cover: 13000x13000 pixels, over the 67-megapixel bound "
            "for decoding; used Cover.PNG instead"], p
        assert left_out == {}, p
        # An embedded picture kept as it is keeps its description; a cover file is "Cover".
        assert descriptions(builds / p / f"Front/01 Front{EXT[p]}") == (["Front"], ["Front"]), p
        assert descriptions(builds / p / f"Corrupt Front/01 Corrupt{EXT[p]}") == (["Cover"], ["Cover"]), p
    assert encoder_runs(builds) == 12

    # cover.jpg added beside the back cover's track: that track is re-tagged, as front cover;
    # beside the embedded front cover's track, nothing changes.
    new_cover = make_image(280, 4)
    (src / "Back Only" / "cover.jpg").write_bytes(new_cover)
    (src / "Front" / "cover.jpg").write_bytes(new_cover)
    rep = build(src, builds)
    assert encoder_runs(builds) == 0
    for p in PROFILES:
        r = rep["profiles"][p]
        assert (r["encoded"], r["retagged"], r["failed"]) == (0, 1, []), (p, r)
        assert_pictures(builds, p, "Back Only/01 Back.flac", FRONT, new_cover, 280)
        assert_pictures(builds, p, "Front/01 Front.flac", FRONT, own_front, 200)
        assert "Corrupt Front/01 Corrupt.flac" in notes(rep, p)  # notes kept for untouched outputs

    # A front cover embedded later: the track's audio is the same, so again a re-tag.
    front = make_image(260, 5)
    audio = FLAC(src / "Back Only" / "01 Back.flac")
    audio.add_picture(picture(front, FRONT, "image/jpeg", "Front"))
    audio.save()
    rep = build(src, builds)
    assert encoder_runs(builds) == 0
    for p in PROFILES:
        r = rep["profiles"][p]
        assert (r["encoded"], r["retagged"], r["failed"]) == (0, 1, []), (p, r)
        assert_pictures(builds, p, "Back Only/01 Back.flac", FRONT, front, 260)
