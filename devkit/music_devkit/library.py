#!/usr/bin/env python3
"""Generate a small lossless library: tagged FLAC albums with synthesised audio and cover art.

    python3 -m music_devkit.library OUT_DIR [--albums N] [--tracks N] [--seconds S]

Audio comes from sox (a different chord per track), tags are written with mutagen
(multi-valued artists, MusicBrainz ids, dates, disc/track numbers with totals,
ReplayGain), and art is a cover.jpg beside the tracks or, for every third album, a
picture embedded in each FLAC.
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import uuid

ARTISTS = ["Aurora Lines", "The Quiet Engines", "Mira Solen", "Kettle & Drum", "Nørdlys Ensemble"]
GENRES = ["Ambient", "Rock", "Jazz", "Folk", "Classical"]
NOTES = [220.0, 246.9, 261.6, 293.7, 329.6, 349.2, 392.0, 440.0]


def make_image(size: int, seed: int, fmt: str = "JPEG") -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), ((seed * 53) % 256, (seed * 97) % 256, (seed * 29) % 256))
    draw = ImageDraw.Draw(img)
    for i in range(0, size, max(1, size // 8)):
        draw.line([(0, i), (size, size - i)], fill=(255 - (seed * 7) % 256, 200, 80), width=max(1, size // 100))
    buf = io.BytesIO()
    img.save(buf, fmt, quality=85)
    return buf.getvalue()


def synth_flac(path: str, seconds: float, seed: int) -> None:
    a, b = NOTES[seed % len(NOTES)], NOTES[(seed * 3 + 2) % len(NOTES)]
    # --no-glob: sox would read '?' and '*' in a file name as wildcards.
    subprocess.run(["sox", "--no-glob", "-n", "-r", "44100", "-c", "2", "-b", "16", path, "synth", str(seconds),
                    "sine", str(a), "sine", str(b), "gain", "-6"], check=True)


def tag_track(path: str, tags: dict, picture: bytes | None = None) -> None:
    from mutagen.flac import FLAC, Picture

    audio = FLAC(path)
    for key, value in tags.items():
        audio[key] = value if isinstance(value, list) else [value]
    if picture is not None:
        pic = Picture()
        pic.type = 3
        pic.mime = "image/png"
        pic.desc = "Front"
        pic.width = pic.height = 1000
        pic.depth = 24
        pic.data = picture
        audio.add_picture(pic)
    audio.save()


def album_tags(artist: str, album: str, year: int, index: int) -> dict:
    return {
        "ALBUM": album,
        "ALBUMARTIST": artist,
        "DATE": f"{year}-0{1 + index % 9}-1{index % 10}",
        "ORIGINALDATE": str(year - 1),
        "GENRE": GENRES[index % len(GENRES)],
        "LABEL": "Sample Records",
        "MUSICBRAINZ_ALBUMID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"album/{album}")),
        "MUSICBRAINZ_ALBUMARTISTID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"artist/{artist}")),
        "MUSICBRAINZ_RELEASEGROUPID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"rg/{album}")),
        "RELEASECOUNTRY": "XE",
        "REPLAYGAIN_ALBUM_GAIN": f"{-6.5 - index * 0.25:.2f} dB",
        "REPLAYGAIN_ALBUM_PEAK": "0.501187",
    }


def make_library(root: str, albums: int = 3, tracks: int = 4, seconds: float = 3.0, discs: int = 1) -> list[str]:
    """Write the library under `root`; return the FLAC paths, relative to root."""
    made = []
    for a in range(albums):
        artist = ARTISTS[a % len(ARTISTS)]
        album = f"Album {a + 1}: Songs of {['Spring', 'Ice', 'Night', 'Rain', 'Stone'][a % 5]}"
        folder = os.path.join(root, artist, f"{2000 + a} - {album}")
        os.makedirs(folder, exist_ok=True)
        embedded = a % 3 == 2
        if not embedded:
            with open(os.path.join(folder, "cover.jpg"), "wb") as fh:
                fh.write(make_image(800, a))
        picture = make_image(1000, a + 50, "PNG") if embedded else None
        base = album_tags(artist, album, 2000 + a, a)
        per_disc = max(1, tracks // discs)
        for t in range(tracks):
            disc, number = t // per_disc + 1, t % per_disc + 1
            name = f"{disc}-{number:02d} Track {t + 1}.flac" if discs > 1 else f"{number:02d} Track {t + 1}.flac"
            path = os.path.join(folder, name)
            synth_flac(path, seconds, a * 31 + t)
            tags = dict(base)
            tags.update({
                "TITLE": f"Track {t + 1} of {album}",
                "ARTIST": [artist, "Guest Player"] if t % 2 else artist,
                "ARTISTS": [artist, "Guest Player"] if t % 2 else [artist],
                "TRACKNUMBER": str(number),
                "TRACKTOTAL": str(per_disc),
                "DISCNUMBER": str(disc),
                "DISCTOTAL": str(discs),
                "MUSICBRAINZ_TRACKID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"rec/{album}/{t}")),
                "MUSICBRAINZ_ARTISTID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"artist/{artist}")),
                "MUSICBRAINZ_RELEASETRACKID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"track/{album}/{t}")),
                "ISRC": f"XE{a:03d}{t:07d}",
                "COMMENT": "Synthesised sample track",
                "REPLAYGAIN_TRACK_GAIN": f"{-7.0 + t * 0.5:.2f} dB",
                "REPLAYGAIN_TRACK_PEAK": "0.398107",
            })
            tag_track(path, tags, picture)
            made.append(os.path.relpath(path, root))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--albums", type=int, default=3)
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    made = make_library(args.root, args.albums, args.tracks, args.seconds)
    print(f"{len(made)} tracks in {args.albums} albums under {args.root}")


if __name__ == "__main__":
    main()
