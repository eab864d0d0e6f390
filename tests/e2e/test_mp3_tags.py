"""Every tag of a collector's FLACs reaches every profile (issue 14, item 4).

One real build (music-build run directly) of three one-second tracks with awkward tags into
an MP3, a FLAC, an Opus and an Ogg Vorbis profile. Every output is decoded, and its tags are
read back with mutagen and with a second reader, then compared with the source's:
- MP3 (ID3v2.4): mutagen frame by frame against the mapping tags.id3_frames documents
  (distinct COMM and USLT frames per description, TRCK/TPOS from the number part with the
  total, UFID with the id's bytes, empty values kept), and no source value missing; ffprobe
  for what it shows of ID3 (the first value of a frame; empty standard text frames it skips).
- FLAC, Opus, Vorbis: the Vorbis comments exactly as the source's, in order, empty, multi-line,
  non-ASCII, '=' and repeated values included, by mutagen and by the format's own tool
  (metaflac, opusinfo, vorbiscomment); ffprobe agrees with the source for what it shows
  (the non-empty values of a name, joined by ';').
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import mutagen
import pytest
from mutagen.flac import FLAC
from mutagen.id3 import ID3

from music_devkit.library import synth_flac
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = ROOT / "roles/worker/files/music-build/music-build"
PROFILES = {"car": {"codec": "mp3"}, "flac": {"codec": "flac"}, "phone": {"codec": "opus"},
            "ogg": {"codec": "vorbis"}}
SUFFIX = {"car": ".mp3", "flac": ".flac", "phone": ".opus", "ogg": ".ogg"}
UTF8 = dict(os.environ, LC_ALL="C.UTF-8")

# The source tracks: (key, value) in the order they are written, repeated keys apart.
TRACKS = {
    "01 One": [
        ("TITLE", "Ünïcødé ☃ title"), ("ARTIST", ""), ("ALBUM", "Box=Set"),
        ("TRACKNUMBER", "07"), ("TOTALTRACKS", "3/3"), ("DISCNUMBER", "1"), ("DISCTOTAL", "2"),
        ("COMMENT", "first"), ("DESCRIPTION", "liner notes"), ("COMMENT", "second\nline"),
        ("LYRICS", "do re mi\nfa"), ("UNSYNCEDLYRICS", "la la la"),
        ("MUSICBRAINZ_TRACKID", "ünï-id-☃"), ("DATE", "2001-02-03"),
        ("ISRC", "USRC17607839"), ("ISRC", "GBAYE0601498"), ("COMPILATION", "1"),
        ("LABEL", "Sony"), ("ORGANIZATION", "Sony"),
        *[("CUSTOM", f"v{i}") for i in range(12)],
    ],
    "02 Two": [
        ("ARTIST", "A"), ("TITLE", "Two"), ("ARTIST", ""), ("ARTIST", "B"),
        ("TRACKNUMBER", "2/12"), ("TRACKTOTAL", "13"), ("DATE", "1970s"), ("COMMENT", ""),
        ("LYRICS", "same words"), ("UNSYNCEDLYRICS", "same words"),
        ("MUSICBRAINZ_TRACKID", "0a1b2c3d-0000-4000-8000-000000000002"),
        ("WEIRD KEY", "x=y=z"), ("Mixed", "ok"), ("EMPTY", ""),
    ],
    "03 Three": [("TITLE", "Three"), ("ARTIST", "C"), ("TRACKNUMBER", "3"), ("TRACKTOTAL", "3")],
}

# What the MP3s must hold: every frame (mutagen's HashKey: text, or bytes for UFID).
ID3_EXPECTED = {
    "01 One": {
        "TIT2": ["Ünïcødé ☃ title"], "TPE1": [""], "TALB": ["Box=Set"], "TRCK": ["07/3"],
        "TXXX:TOTALTRACKS": ["3/3"], "TPOS": ["1/2"],
        "COMM::eng": ["first", "second\nline"], "TXXX:DESCRIPTION": ["liner notes"],
        "USLT::eng": "do re mi\nfa", "USLT:UNSYNCEDLYRICS:eng": "la la la",
        "UFID:http://musicbrainz.org": "ünï-id-☃".encode("utf-8"), "TDRC": ["2001-02-03"],
        "TSRC": ["USRC17607839", "GBAYE0601498"], "TCMP": ["1"], "TPUB": ["Sony"],
        "TXXX:CUSTOM": [f"v{i}" for i in range(12)],
    },
    "02 Two": {
        "TPE1": ["A", "", "B"], "TIT2": ["Two"], "TRCK": ["2/12"], "TXXX:TRACKTOTAL": ["13"],
        "TXXX:DATE": ["1970s"], "COMM::eng": [""], "USLT::eng": "same words",
        "UFID:http://musicbrainz.org": b"0a1b2c3d-0000-4000-8000-000000000002",
        "TXXX:WEIRD KEY": ["x=y=z"], "TXXX:MIXED": ["ok"], "TXXX:EMPTY": [""],
    },
    "03 Three": {"TIT2": ["Three"], "TPE1": ["C"], "TRCK": ["3/3"]},
}
# What ffprobe shows of them (ffmpeg 5.1: the first value of a frame, a COMM without
# description as "comment", USLT as lyrics-<description>-<language>, TXXX by description).
FFPROBE_MP3 = {
    "01 One": {"title": "Ünïcødé ☃ title", "album": "Box=Set", "track": "07/3", "disc": "1/2",
               "comment": "first", "DESCRIPTION": "liner notes", "lyrics-eng": "do re mi\nfa",
               "lyrics-UNSYNCEDLYRICS-eng": "la la la", "date": "2001-02-03", "TSRC": "USRC17607839",
               "publisher": "Sony", "TOTALTRACKS": "3/3", "CUSTOM": "v0"},
    "02 Two": {"artist": "A", "title": "Two", "track": "2/12", "TRACKTOTAL": "13", "DATE": "1970s",
               "comment": "", "lyrics-eng": "same words", "WEIRD KEY": "x=y=z", "EMPTY": ""},
    "03 Three": {"title": "Three", "artist": "C", "track": "3/3"},
}
# ffmpeg renames these Vorbis comments, DESCRIPTION onto COMMENT (so it shows one of them).
FFMPEG_VORBIS_NAMES = {"ALBUMARTIST": "album_artist", "TRACKNUMBER": "track", "DISCNUMBER": "disc",
                       "DESCRIPTION": None, "COMMENT": None}


@pytest.fixture(scope="module")
def built(world_readable_tmp):
    base = world_readable_tmp / f"mp3tags-{uuid.uuid4().hex[:8]}"
    src = base / "src" / "Box"
    src.mkdir(parents=True)
    for seed, (name, pairs) in enumerate(TRACKS.items()):
        path = src / f"{name}.flac"
        synth_flac(str(path), 1.0, seed)
        audio = FLAC(path)
        audio.tags.clear()
        for pair in pairs:
            audio.tags.append(pair)
        audio.save()
    builds = base / "builds"
    for profile, settings in PROFILES.items():
        folder = builds / ".music" / "tup" / profile
        folder.mkdir(parents=True)
        (folder / "tup.config").write_text(render_tup_config(profile, settings))
    run = subprocess.run([str(MUSIC_BUILD), "--sources", str(base / "src"), "--builds", str(builds), "--jobs", "2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    yield builds
    shutil.rmtree(base, ignore_errors=True)


def output(builds: Path, profile: str, name: str) -> Path:
    (path,) = (builds / profile).rglob(name + SUFFIX[profile])
    return path


def source_pairs(name: str) -> list[tuple[str, str]]:
    """The source's Vorbis comments (names are case-insensitive: compared upper-cased)."""
    return [(k.upper(), v) for k, v in TRACKS[name]]


def ffprobe_tags(path: Path) -> dict[str, str]:
    shown = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags:stream_tags", "-of", "json",
                            str(path)], capture_output=True, text=True, check=True)
    data = json.loads(shown.stdout)
    out = dict(data.get("format", {}).get("tags", {}))
    for stream in data.get("streams", []):
        out.update(stream.get("tags", {}))
    return out


def decodes(path: Path) -> None:
    done = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), (path, done.stderr)


@pytest.mark.parametrize("name", TRACKS)
def test_mp3_frames_carry_every_value(built, name):
    path = output(built, "car", name)
    decodes(path)
    id3 = ID3(path)
    assert id3.version == (2, 4, 0)
    got = {}
    for key, frame in id3.items():
        if frame.FrameID == "UFID":
            got[key] = frame.data
        elif frame.FrameID == "USLT":
            got[key] = frame.text
        else:
            got[key] = [str(t) for t in frame.text]
    assert got == ID3_EXPECTED[name]
    # No value of the source is missing (dates and numbers as ID3 writes them).
    everything = json.dumps(got, default=lambda b: b.decode("utf-8"), ensure_ascii=False)
    for _key, value in TRACKS[name]:
        assert json.dumps(value, ensure_ascii=False)[1:-1] in everything, value

    shown = ffprobe_tags(path)
    for key, value in FFPROBE_MP3[name].items():
        assert shown.get(key) == value, (key, shown)
    assert "/3/3" not in shown.get("track", "") and "?" not in json.dumps(shown, ensure_ascii=False)


def flac_comments(path: Path) -> list[tuple[str, str]]:
    listed = subprocess.run(["metaflac", "--list", "--block-type=VORBIS_COMMENT", "--no-utf8-convert", str(path)],
                            capture_output=True, check=True).stdout.decode("utf-8")
    count = int(re.search(r"^  comments: (\d+)$", listed, re.M).group(1))
    entries = re.split(r"\n    comment\[\d+\]: ", listed.rstrip("\n"))[1:]
    assert len(entries) == count
    return [tuple(e.split("=", 1)) for e in entries]


def opus_comments(path: Path) -> list[tuple[str, str]]:
    shown = subprocess.run(["opusinfo", str(path)], capture_output=True, check=True, env=UTF8).stdout.decode("utf-8")
    section = shown.split("User comments section follows...\n", 1)[1].split("\nOpus stream 1:", 1)[0]
    entries = re.split(r"(?:^|\n)\t", section)[1:]
    return [tuple(e.split("=", 1)) for e in entries]


def vorbis_comments(path: Path) -> list[tuple[str, str]]:
    shown = subprocess.run(["vorbiscomment", "-l", "-R", "-e", str(path)], capture_output=True, check=True,
                           env=UTF8).stdout.decode("utf-8")
    unescape = {"n": "\n", "r": "\r", "0": "\0", "\\": "\\"}
    return [tuple(re.sub(r"\\(.)", lambda m: unescape[m.group(1)], line).split("=", 1))
            for line in shown.splitlines()]


SECOND_READER = {"flac": flac_comments, "phone": opus_comments, "ogg": vorbis_comments}


@pytest.mark.parametrize("profile", SECOND_READER)
@pytest.mark.parametrize("name", TRACKS)
def test_vorbis_comment_outputs_keep_every_value_as_it_is(built, profile, name):
    path = output(built, profile, name)
    decodes(path)
    expected = source_pairs(name)
    assert [(k.upper(), v) for k, v in mutagen.File(path).tags] == expected
    assert [(k.upper(), v) for k, v in SECOND_READER[profile](path)] == expected
    # ffprobe: the non-empty values of a name joined by ';', some names its own.
    shown = {k.upper(): v for k, v in ffprobe_tags(path).items()}
    joined: dict[str, list[str]] = {}
    for key, value in expected:
        if FFMPEG_VORBIS_NAMES.get(key, key) is not None and value:
            joined.setdefault(FFMPEG_VORBIS_NAMES.get(key, key).upper(), []).append(value)
    for key, values in joined.items():
        assert shown.get(key) == ";".join(values), (key, shown)
