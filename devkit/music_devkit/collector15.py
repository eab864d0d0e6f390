#!/usr/bin/env python3
"""Generate a collector's library as issue 15 has it: FLAC albums of several genres, MP3 and
AAC purchases, a 24/192 album, an `Audiobooks/` folder, and a few files in the other formats
people keep (ALAC, WavPack, WAV, Opus).

    python3 -m music_devkit.collector15 OUT_DIR [--manifest FILE]

Everything is made here with sox, flac, lame, opusenc, ffmpeg, mutagen and PIL (nothing
downloaded); the tracks are short (1-2 s), and every track's length differs from every
other's by 0.05 s, so an output carrying another track's audio is seen by its length.

- Jazz: a FLAC album with `cover.jpg` (one track with two ARTIST values), a FLAC single at
  16/48 under names no FAT or exFAT device takes (`Café Nocturne/2004 - Après Minuit: Live?`),
  a 24/192 album with `folder.jpg`, an ALAC album (`.m4a`, MP4 tags and cover), an AAC
  purchase (as the iTunes Store sells it: no edit list, iTunSMPB) and an MP3 purchase
  (ID3v2.4, APIC front cover);
- other genres: a Rock FLAC album `Album 1: Songs of Spring` (the issue's example of a name an
  exFAT card refuses), a WavPack album (APEv2 tags, `cover.jpg` beside), a WAV field recording
  (an ID3 chunk, no picture), MP3 purchases (Pop), an AAC purchase and an Opus download
  (Vorbis comments, picture);
- `Audiobooks/`: a book ripped from CD as mono FLAC chapters and one bought as MP3.

`make_collector15_library(root)` returns the manifest: for each source (its path relative
to root) its format, whether it is lossy, GENRE, title, artists, album, track number and
total, length, rate, bit depth, channels, whether it is an audiobook, and the SHA-256 of the
cover a device must show (None when the source has none).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import tempfile

from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, COMM, ID3, TALB, TCON, TDRC, TIT2, TPE1, TPE2, TRCK
from mutagen.mp4 import MP4, MP4Cover
from mutagen.wave import WAVE
from mutagen.wavpack import WavPack

from music_devkit.collector import synth_args
from music_devkit.library import make_image

LOSSY = ("mp3", "m4a", "opus")
EXTENSION = {"flac": ".flac", "alac": ".m4a", "wavpack": ".wv", "wav": ".wav", "mp3": ".mp3", "m4a": ".m4a",
             "opus": ".opus"}
STEP = 0.05  # s between the lengths of any two tracks


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Library:
    def __init__(self, root: str, scratch: str):
        self.root, self.scratch = root, scratch
        self.tracks: dict[str, dict] = {}
        self.seed = 0
        self.length = 1.0

    def folder(self, *parts: str) -> str:
        rel = os.path.join(*parts)
        os.makedirs(os.path.join(self.root, rel), exist_ok=True)
        return rel

    def image(self, size: int, rel_dir: str | None = None, name: str | None = None) -> bytes:
        self.seed += 1
        data = make_image(size, self.seed * 13 + 5)
        if rel_dir and name:
            with open(os.path.join(self.root, rel_dir, name), "wb") as fh:
                fh.write(data)
        return data

    def wav(self, seconds: float, rate: int, channels: int, bits: int) -> str:
        """A fresh WAV of sines (different per track) in the scratch folder."""
        self.seed += 1
        path = os.path.join(self.scratch, f"{self.seed}.wav")
        run(["sox", "-n", "-r", str(rate), "-c", str(channels), "-b", str(bits), path,
             *synth_args(channels, seconds, self.seed)])
        return path

    def track(self, rel_dir: str, name: str, fmt: str, *, title: str, artist, album: str, genre: str,
              number: int, total: int, year: int, cover: bytes | None = None, embed: bool = True,
              rate: int = 44100, bits: int = 16, channels: int = 2) -> str:
        """One source in `fmt`; `cover` is the picture a device must show (embedded when
        `embed`, else already beside the track)."""
        rel = os.path.join(rel_dir, name + EXTENSION[fmt])
        path = os.path.join(self.root, rel)
        seconds = round(self.length, 2)
        self.length += STEP
        artists = artist if isinstance(artist, list) else [artist]
        pcm = self.wav(seconds, rate, channels, bits)
        picture = cover if embed else None
        WRITE[fmt](pcm, path)
        TAG[fmt](path, title=title, artists=artists, album=album, genre=genre, number=number, total=total,
                 year=year, picture=picture)
        if os.path.exists(pcm):
            os.remove(pcm)
        self.tracks[rel] = {
            "format": fmt,
            "lossy": fmt in LOSSY,
            "genre": genre,
            "audiobook": rel.startswith("Audiobooks/"),
            "title": title,
            "artists": artists,
            "album": album,
            "track": number,
            "total": total,
            "seconds": seconds,
            "rate": rate,
            "bits": bits if fmt not in LOSSY else None,
            "channels": channels,
            "cover": sha256(cover) if cover is not None else None,
        }
        return rel


# --- audio, per format (from a WAV) ---------------------------------------------------------

def _flac(pcm: str, out: str) -> None:
    run(["flac", "--silent", "-5", "-o", out, pcm])


def _ffmpeg(codec: list[str]):
    def write(pcm: str, out: str) -> None:
        run(["ffmpeg", "-nostdin", "-v", "error", "-i", pcm, *codec, "-vn", out])
    return write


def _wav(pcm: str, out: str) -> None:
    os.replace(pcm, out)


def _mp3(pcm: str, out: str) -> None:
    run(["lame", "--quiet", "-V", "4", pcm, out])


def _opus(pcm: str, out: str) -> None:
    run(["opusenc", "--quiet", "--bitrate", "96", pcm, out])


def _m4a(pcm: str, out: str) -> None:
    """AAC in MP4 as the iTunes Store sells it: no edit list, and iTunSMPB saying the encoder's
    priming (1024 samples for ffmpeg's native encoder), the padding and the track's length in
    samples, which Apple's players read for gapless playback (ffmpeg reads only edit lists, so
    it plays the priming and the padding as audio)."""
    run(["ffmpeg", "-nostdin", "-v", "error", "-i", pcm, "-c:a", "aac", "-b:a", "96k", "-vn",
         "-use_editlist", "0", out])
    info = WAVE(pcm).info
    samples = round(info.length * info.sample_rate)
    packets = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-count_packets",
                              "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", out],
                             check=True, capture_output=True, text=True).stdout.strip()
    padding = int(packets) * 1024 - 1024 - samples
    smpb = " " + " ".join(["00000000", f"{1024:08X}", f"{padding:08X}", f"{samples:016X}"] + ["00000000"] * 8)
    audio = MP4(out)
    audio["----:com.apple.iTunes:iTunSMPB"] = [smpb.encode("ascii")]
    audio.save()


WRITE = {
    "flac": _flac,
    "alac": _ffmpeg(["-c:a", "alac"]),
    "wavpack": _ffmpeg(["-c:a", "wavpack"]),
    "wav": _wav,
    "mp3": _mp3,
    "m4a": _m4a,
    "opus": _opus,
}


# --- tags, per format, as the tools that make such files write them -------------------------------

def _tag_vorbis(audio, title, artists, album, genre, number, total, year, picture):
    audio["TITLE"] = [title]
    audio["ARTIST"] = artists
    audio["ALBUMARTIST"] = [artists[0]]
    audio["ALBUM"] = [album]
    audio["GENRE"] = [genre]
    audio["TRACKNUMBER"] = [str(number)]
    audio["TRACKTOTAL"] = [str(total)]
    audio["DATE"] = [str(year)]
    if picture is not None:
        pic = Picture()
        pic.type, pic.mime, pic.desc, pic.width, pic.height, pic.depth = 3, "image/jpeg", "", 300, 300, 24
        pic.data = picture
        if isinstance(audio, FLAC):
            audio.add_picture(pic)
        else:
            import base64
            audio["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]


def tag_flac(path, **kw):
    audio = FLAC(path)
    _tag_vorbis(audio, **kw)
    audio.save()


def tag_opus(path, **kw):
    from mutagen.oggopus import OggOpus

    audio = OggOpus(path)
    _tag_vorbis(audio, **kw)
    audio.save()


def tag_mp4(path, title, artists, album, genre, number, total, year, picture):
    """As iTunes writes a purchase or an ALAC rip."""
    audio = MP4(path)
    audio["\xa9nam"] = [title]
    audio["\xa9ART"] = artists
    audio["aART"] = [artists[0]]
    audio["\xa9alb"] = [album]
    audio["\xa9gen"] = [genre]
    audio["\xa9day"] = [str(year)]
    audio["trkn"] = [(number, total)]
    if picture is not None:
        audio["covr"] = [MP4Cover(picture, imageformat=MP4Cover.FORMAT_JPEG)]
    audio.save()


def tag_apev2(path, title, artists, album, genre, number, total, year, picture):
    audio = WavPack(path)
    if audio.tags is None:
        audio.add_tags()
    audio.tags["Title"] = title
    audio.tags["Artist"] = artists
    audio.tags["Album"] = album
    audio.tags["Genre"] = genre
    audio.tags["Track"] = f"{number}/{total}"
    audio.tags["Year"] = str(year)
    assert picture is None, "WavPack sources here have their cover beside them"
    audio.save()


def _id3_frames(tag, title, artists, album, genre, number, total, year, picture):
    tag.add(TIT2(encoding=3, text=[title]))
    tag.add(TPE1(encoding=3, text=artists))
    tag.add(TPE2(encoding=3, text=[artists[0]]))
    tag.add(TALB(encoding=3, text=[album]))
    tag.add(TCON(encoding=3, text=[genre]))
    tag.add(TRCK(encoding=3, text=[f"{number}/{total}"]))
    tag.add(TDRC(encoding=3, text=[str(year)]))
    if picture is not None:
        tag.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="", data=picture))


def tag_id3(path, **kw):
    """As a store writes a purchase: ID3v2.4 (mutagen's default), a comment, the front cover."""
    tag = ID3()
    _id3_frames(tag, **kw)
    tag.add(COMM(encoding=3, lang="eng", desc="", text=["Purchased from a download store"]))
    tag.save(path, v2_version=4)


def tag_wav(path, **kw):
    audio = WAVE(path)
    if audio.tags is None:
        audio.add_tags()
    _id3_frames(audio.tags, **kw)
    audio.save()


TAG = {"flac": tag_flac, "alac": tag_mp4, "wavpack": tag_apev2, "wav": tag_wav, "mp3": tag_id3, "m4a": tag_mp4,
       "opus": tag_opus}


# --- the library --------------------------------------------------------------------------------

def jazz(lib: Library) -> None:
    d = lib.folder("Blue Harbour Quartet", "1959 - Night Ferry")
    cover = lib.image(300, d, "cover.jpg")
    lib.track(d, "01 Night Ferry", "flac", title="Night Ferry", artist="Blue Harbour Quartet", album="Night Ferry",
              genre="Jazz", number=1, total=2, year=1959, cover=cover, embed=False)
    lib.track(d, "02 Fog Horn Blues", "flac", title="Fog Horn Blues", artist=["Blue Harbour Quartet", "Lena Vass"],
              album="Night Ferry", genre="Jazz", number=2, total=2, year=1959, cover=cover, embed=False)

    d = lib.folder("Café Nocturne", "2004 - Après Minuit: Live?")
    lib.track(d, "01 Minuit à Paris", "flac", title="Minuit à Paris", artist="Café Nocturne",
              album="Après Minuit: Live?", genre="Jazz", number=1, total=1, year=2004, cover=lib.image(280),
              rate=48000)

    d = lib.folder("Nørdlys Trio", "2019 - Polar Night [24-192]")
    cover = lib.image(300, d, "folder.jpg")
    for n, title in ((1, "Første lys"), (2, "Polar Night")):
        lib.track(d, f"{n:02d} {title}", "flac", title=title, artist="Nørdlys Trio", album="Polar Night",
                  genre="Jazz", number=n, total=2, year=2019, cover=cover, embed=False, rate=192000, bits=24)

    d = lib.folder("Iris Okoye", "2017 - Lowlands")
    lib.track(d, "01 Delta", "alac", title="Delta", artist="Iris Okoye", album="Lowlands", genre="Jazz",
              number=1, total=1, year=2017, cover=lib.image(260))

    d = lib.folder("Purchases", "Iris Okoye", "2018 - Night Market")
    lib.track(d, "01 Lanterns", "m4a", title="Lanterns", artist="Iris Okoye", album="Night Market", genre="Jazz",
              number=1, total=1, year=2018, cover=lib.image(265))

    d = lib.folder("Purchases", "Blue Harbour Quartet", "2022 - Ferry Sessions")
    lib.track(d, "01 Crossing", "mp3", title="Crossing", artist="Blue Harbour Quartet", album="Ferry Sessions",
              genre="Jazz", number=1, total=1, year=2022, cover=lib.image(250))


def others(lib: Library) -> None:
    d = lib.folder("The Weathervanes", "2011 - Album 1: Songs of Spring")
    cover = lib.image(300, d, "cover.jpg")
    for n, title in ((1, "Thaw"), (2, "Bloom")):
        lib.track(d, f"{n:02d} {title}", "flac", title=title, artist="The Weathervanes", album="Album 1: Songs of Spring",
                  genre="Rock", number=n, total=2, year=2011, cover=cover, embed=False)

    d = lib.folder("Synthetics", "2020 - Grid")
    cover = lib.image(240, d, "cover.jpg")
    lib.track(d, "01 Pulse", "wavpack", title="Pulse", artist="Synthetics", album="Grid", genre="Electronic",
              number=1, total=1, year=2020, cover=cover, embed=False)

    d = lib.folder("Field Recordings")
    lib.track(d, "Harbour at Dawn", "wav", title="Harbour at Dawn", artist="Unknown Recordist",
              album="Field Recordings", genre="Ambient", number=1, total=1, year=2018)

    d = lib.folder("Purchases", "Mara Lindqvist", "2021 - Paper Boats")
    cover = lib.image(290)
    for n, title in ((1, "Paper Boats"), (2, "Tin Roof")):
        lib.track(d, f"{n:02d} {title}", "mp3", title=title, artist="Mara Lindqvist", album="Paper Boats",
                  genre="Pop", number=n, total=2, year=2021, cover=cover)

    d = lib.folder("Purchases", "Sol Avery", "2016 - Sunroom")
    lib.track(d, "01 Sunroom", "m4a", title="Sunroom", artist="Sol Avery", album="Sunroom", genre="Pop",
              number=1, total=1, year=2016, cover=lib.image(270))

    d = lib.folder("Bandcamp", "Echo Vale", "2023 - Moss")
    lib.track(d, "01 Lichen", "opus", title="Lichen", artist="Echo Vale", album="Moss", genre="Folk",
              number=1, total=1, year=2023, cover=lib.image(230))


def audiobooks(lib: Library) -> None:
    d = lib.folder("Audiobooks", "Ada Quill - The Lighthouse Keeper")
    cover = lib.image(300, d, "cover.jpg")
    for n in (1, 2):
        lib.track(d, f"Chapter {n:02d}", "flac", title=f"Chapter {n}", artist="Ada Quill",
                  album="The Lighthouse Keeper", genre="Audiobook", number=n, total=2, year=2012, cover=cover,
                  embed=False, channels=1)
    d = lib.folder("Audiobooks", "Tom Reyes - Short Stories")
    lib.track(d, "01 The Clock", "mp3", title="The Clock", artist="Tom Reyes", album="Short Stories",
              genre="Audiobook", number=1, total=1, year=2020, cover=lib.image(220), channels=1)


def make_collector15_library(root: str) -> dict:
    """Write the library under `root`; return {"tracks": {relpath: what a device must show}}."""
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="collector15-") as scratch:
        lib = Library(root, scratch)
        jazz(lib)
        others(lib)
        audiobooks(lib)
    return {"tracks": lib.tracks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--manifest", help="also write the manifest (JSON) to this file")
    args = parser.parse_args()
    manifest = make_collector15_library(args.root)
    if args.manifest:
        with open(args.manifest, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, ensure_ascii=False)
    print(f"{len(manifest['tracks'])} tracks under {args.root}")


if __name__ == "__main__":
    main()
