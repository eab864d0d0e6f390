"""Generated FLAC libraries for the benchmarks.

`throughput_library` is the tests' sample library as it is (music_devkit.library: sox audio
per track, full tags, cover.jpg or an embedded picture). `scale_library` makes 10,000-track
libraries in about a minute: one sox call per album, the album's tracks are copies of that
file, each then tagged with mutagen with the same tags and art the sample library writes. Album 0 of a
scale library holds 12 tracks of realistic length (4 minutes by default): the tag-only
edit and the album re-encode are measured on it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from music_devkit import library as sl

ALBUM_TRACKS = 12
LONG_ALBUM = "Long Songs/2000 - The Long Album"


def throughput_library(root: Path, tracks: int, seconds: float, per_album: int = 10) -> list[str]:
    albums = max(1, -(-tracks // per_album))
    made = sl.make_library(str(root), albums=albums, tracks=per_album, seconds=seconds)
    for extra in made[tracks:]:  # a partial last album
        os.unlink(root / extra)
    return made[:tracks]


def synth(path: Path, seconds: float, seed: int) -> None:
    sl.synth_flac(str(path), seconds, seed)


def track_tags(base: dict, artist: str, album: str, t: int, total: int, a: int) -> dict:
    tags = dict(base)
    tags.update({
        "TITLE": f"Track {t + 1} of {album}",
        "ARTIST": [artist, "Guest Player"] if t % 2 else artist,
        "TRACKNUMBER": str(t + 1),
        "TRACKTOTAL": str(total),
        "DISCNUMBER": "1",
        "DISCTOTAL": "1",
        "MUSICBRAINZ_TRACKID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"rec/{album}/{t}")),
        "ISRC": f"XE{a % 1000:03d}{t:07d}",
        "COMMENT": "Generated benchmark track",
        "REPLAYGAIN_TRACK_GAIN": f"{-7.0 + t * 0.5:.2f} dB",
    })
    return tags


def make_album(root: Path, rel_dir: str, a: int, tracks: int, seconds: float, distinct_audio: bool) -> list[str]:
    artist = sl.ARTISTS[a % len(sl.ARTISTS)]
    album = os.path.basename(rel_dir)
    folder = root / rel_dir
    folder.mkdir(parents=True, exist_ok=True)
    embedded = a % 3 == 2
    picture = sl.make_image(1000, a + 50, "PNG") if embedded else None
    if not embedded:
        (folder / "cover.jpg").write_bytes(sl.make_image(800, a))
    base = sl.album_tags(artist, album, 2000 + a % 25, a)
    template = folder / ".template.flac"
    if not distinct_audio:
        synth(template, seconds, a)
    made = []
    for t in range(tracks):
        path = folder / f"{t + 1:02d} Track {t + 1}.flac"
        if distinct_audio:
            synth(path, seconds, a * 31 + t)
        else:
            shutil.copyfile(template, path)
        sl.tag_track(str(path), track_tags(base, artist, album, t, tracks, a), picture)
        made.append(f"{rel_dir}/{path.name}")
    if template.exists():
        template.unlink()
    return made


def scale_library(root: Path, tracks: int, seconds: float, long_seconds: float) -> list[str]:
    """`tracks` tracks in albums of 12; the first album is LONG_ALBUM with long tracks."""
    made = make_album(root, LONG_ALBUM, 0, min(ALBUM_TRACKS, tracks), long_seconds, distinct_audio=True)
    a = 1
    while len(made) < tracks:
        n = min(ALBUM_TRACKS, tracks - len(made))
        artist = sl.ARTISTS[a % len(sl.ARTISTS)]
        made += make_album(root, f"{artist}/{2000 + a % 25} - Album {a:04d}", a, n, seconds, distinct_audio=False)
        a += 1
    return made


def change_audio(root: Path, rel: str, seconds: float, seed: int) -> None:
    """New audio for a track, same tags and art (what re-ripping a track does)."""
    from mutagen.flac import FLAC

    path = root / rel
    old = FLAC(str(path))
    tags = {k: list(v) for k, v in old.tags.as_dict().items()}
    pictures = list(old.pictures)
    tmp = path.with_name(".new.flac")
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(tmp), "synth", str(seconds),
                    "sine", str(300 + seed % 500), "sine", str(500 + seed % 300), "gain", "-8"], check=True)
    new = FLAC(str(tmp))
    for key, value in tags.items():
        new[key] = value
    for pic in pictures:
        new.add_picture(pic)
    new.save()
    os.replace(tmp, path)


def edit_tag(root: Path, rel: str, key: str, value: str) -> None:
    from mutagen.flac import FLAC

    audio = FLAC(str(root / rel))
    audio[key] = [value]
    audio.save()
