#!/usr/bin/env python3
"""Generate a library shaped like a collector's: ripped CDs, a 5.1 concert, a 24/192 album,
FLACs made by streaming tools and a box set whose album folders collide on FAT32.

    python3 -m music_devkit.collector OUT_DIR

Everything is made here, with sox, flac, metaflac, mutagen and PIL (nothing downloaded), and
the tracks are short (1-3 s) so that compiling the library into four profiles stays fast:

- ripped CDs with Picard-style tags (TRACKNUMBER `07` with TOTALTRACKS, DISCNUMBER, two
  COMMENT values and a DESCRIPTION, LYRICS and UNSYNCEDLYRICS, MusicBrainz ids, an empty
  value, a TITLE with a newline); one album has an embedded back cover (type 4) and a
  cover.jpg beside it, another only the back cover;
- a 5.1 concert (6 channels, 48 kHz, 24-bit) with an embedded front cover (PNG);
- a 24/192 album with a folder.jpg;
- streamed FLACs: one written by `flac` to a pipe (STREAMINFO total samples and MD5 both 0,
  "unknown" in the FLAC spec), one with those fields zeroed by a byte edit, one with an ID3v2
  tag in front of `fLaC` and its MD5 unset;
- a box set whose disc folders collide on FAT32: `CD 1: Spring` / `CD 1? Spring` (the same
  name once `:` and `?` are replaced) and `Live` / `live` (FAT is case-insensitive), with
  the same track file names in each.

`make_collector_library(root)` returns the manifest: for each source (its path relative to
root) what a device must show: title, artist, album, track and disc numbers with totals, the
length, the channels expected per codec (FLAC, Opus and Vorbis keep the layout, MP3 gets at
most two), the cover expected (the SHA-256 of the picture's bytes and its true picture type)
with every picture the source honestly has, and every Vorbis comment it was given. Every track's length differs from every
other's by at least 0.1 s, so an output carrying another track's audio is seen by its length.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import uuid

from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3, TIT2, TXXX

from music_devkit.library import make_image

FRONT, BACK = 3, 4  # FLAC/ID3 picture types
MULTICHANNEL_CODECS = ("flac", "opus", "vorbis")  # carry the source's layout
STEREO_CODECS = ("mp3",)  # downmixed to at most two channels
NOTES = [110.0, 146.8, 196.0, 220.0, 261.6, 293.7, 329.6, 392.0, 440.0, 523.3]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def channels_per_codec(channels: int) -> dict[str, int]:
    out = {codec: channels for codec in MULTICHANNEL_CODECS}
    out.update({codec: min(channels, 2) for codec in STEREO_CODECS})
    return out


# --- audio ----------------------------------------------------------------------------------

def synth_args(channels: int, seconds: float, seed: int) -> list[str]:
    """sox `synth` arguments: one sine per channel (different per track), -12 dB."""
    tones = []
    for c in range(channels):
        tones += ["sine", f"{NOTES[(seed + 3 * c) % len(NOTES)] * (1 + c / 7):.1f}"]
    return ["synth", f"{seconds}", *tones, "gain", "-12"]


def synth_flac(path: str, seconds: float, seed: int, rate: int = 44100, channels: int = 2, bits: int = 16) -> None:
    # --no-glob (it applies to the file name after it): sox expands wildcards in file names,
    # and `CD 1? Spring/...` would be written into `CD 1: Spring/`.
    subprocess.run(["sox", "-n", "-r", str(rate), "-c", str(channels), "-b", str(bits), "--no-glob", path,
                    *synth_args(channels, seconds, seed)], check=True)


def streamed_flac(path: str, seconds: float, seed: int, rate: int = 44100, channels: int = 2, bits: int = 16) -> None:
    """A FLAC as a streaming tool writes it: `flac` encoding to a pipe cannot seek back, so
    STREAMINFO keeps total samples 0 and an all-zero MD5 ("unknown")."""
    raw = subprocess.run(["sox", "-n", "-r", str(rate), "-c", str(channels), "-b", str(bits), "-e", "signed",
                          "-t", "raw", "-", *synth_args(channels, seconds, seed)],
                         check=True, capture_output=True).stdout
    with open(path, "wb") as out:
        subprocess.run(["flac", "--silent", "--force-raw-format", "--endian=little", "--sign=signed",
                        f"--channels={channels}", f"--bps={bits}", f"--sample-rate={rate}", "-o", "-", "-"],
                       input=raw, stdout=out, stderr=subprocess.DEVNULL, check=True)


def streaminfo_offset(data: bytes) -> int:
    """Where STREAMINFO's body starts (after an ID3v2 tag, `fLaC` and the block header)."""
    start = 0
    if data[:3] == b"ID3":
        size = 0
        for b in data[6:10]:
            size = (size << 7) | (b & 0x7F)
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    if data[start:start + 4] != b"fLaC" or data[start + 4] & 0x7F != 0:
        raise ValueError("no STREAMINFO")
    return start + 8


def unset_streaminfo(path: str, total_samples: bool = True, md5: bool = True) -> None:
    """Zero STREAMINFO's total samples (36 bits) and/or its MD5, as the FLAC spec allows."""
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    body = streaminfo_offset(bytes(data))
    if total_samples:
        data[body + 13] &= 0xF0  # its upper 4 bits: 4 of the 5 bits-per-sample bits
        data[body + 14:body + 18] = bytes(4)
    if md5:
        data[body + 18:body + 34] = bytes(16)
    with open(path, "wb") as fh:
        fh.write(data)


def prefix_id3(path: str, title: str) -> None:
    """Put an ID3v2 tag in front of `fLaC`, as some rippers and taggers do."""
    tag = ID3()
    tag.add(TIT2(encoding=3, text=[title]))
    tag.add(TXXX(encoding=3, desc="Tagger", text=["a tool that prefers ID3"]))
    tag.save(path, v2_version=3, padding=lambda info: 64)  # inserts the tag at the start of the file


# --- tags and pictures -------------------------------------------------------------------------

def picture(data: bytes, kind: int, mime: str, size: int, desc: str) -> Picture:
    pic = Picture()
    pic.type, pic.mime, pic.desc = kind, mime, desc
    pic.width = pic.height = size
    pic.depth = 24
    pic.data = data
    return pic


def write_tags(path: str, tags: dict, pictures: list[Picture]) -> None:
    audio = FLAC(path)
    for key, value in tags.items():
        audio[key] = value if isinstance(value, list) else [value]
    for pic in pictures:
        audio.add_picture(pic)
    audio.save()


def mbid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


# --- the library --------------------------------------------------------------------------------

class Builder:
    def __init__(self, root: str):
        self.root = root
        self.tracks: dict[str, dict] = {}
        self.albums: dict[str, list[str]] = {}
        self.seed = 0
        self.length = 1.0  # each track 0.1 s longer than the one before

    def folder(self, *parts: str) -> str:
        rel = os.path.join(*parts)
        os.makedirs(os.path.join(self.root, rel), exist_ok=True)
        self.albums.setdefault(rel, [])
        return rel

    def image(self, rel_dir: str | None, name: str | None, size: int, fmt: str = "JPEG") -> bytes:
        self.seed += 1
        data = make_image(size, self.seed * 11 + 3, fmt)
        if rel_dir and name:
            with open(os.path.join(self.root, rel_dir, name), "wb") as fh:
                fh.write(data)
        return data

    def track(self, rel_dir: str, name: str, tags: dict, *, make=synth_flac, rate: int = 44100, channels: int = 2,
              bits: int = 16, pictures: tuple = (), cover: tuple | None = None, kind: str,
              number: int, total: int | None, disc: int = 1, discs: int | None = 1, after=None) -> str:
        """One source. `cover` is (bytes, type) a device must show; `pictures` the embedded ones."""
        rel = os.path.join(rel_dir, name)
        path = os.path.join(self.root, rel)
        seconds = round(self.length, 1)
        self.length += 0.1
        self.seed += 1
        make(path, seconds, self.seed, rate=rate, channels=channels, bits=bits)
        write_tags(path, tags, list(pictures))
        if after:
            after(path)
        honest = [{"sha256": sha256(p.data), "type": p.type} for p in pictures]
        if cover is not None and {"sha256": sha256(cover[0]), "type": cover[1]} not in honest:
            honest.append({"sha256": sha256(cover[0]), "type": cover[1]})
        title = tags["TITLE"] if isinstance(tags["TITLE"], str) else tags["TITLE"][0]
        self.tracks[rel] = {
            "album_dir": rel_dir,
            "kind": kind,
            "title": title,
            "artist": tags["ARTIST"] if isinstance(tags["ARTIST"], str) else tags["ARTIST"][0],
            "album": tags["ALBUM"],
            "track": number,
            "total": total,
            "disc": disc,
            "discs": discs,
            "seconds": seconds,
            "rate": rate,
            "bits": bits,
            "source_channels": channels,
            "channels": channels_per_codec(channels),
            "downmix": {codec: n != channels for codec, n in channels_per_codec(channels).items()},
            "cover": None if cover is None else {"sha256": sha256(cover[0]), "type": cover[1]},
            "pictures": honest,  # every (picture, type) the source truly has
            # its Vorbis comments, in order, multiple and empty values included
            "tags": [[key, v] for key, value in tags.items() for v in (value if isinstance(value, list) else [value])],
        }
        self.albums[rel_dir].append(rel)
        return rel


def picard_tags(artist: str, album: str, year: int, title, number: str, total: str, disc: str = "1",
                discs: str = "1") -> dict:
    """The tags MusicBrainz Picard writes for a ripped CD track."""
    return {
        "TITLE": title,
        "ARTIST": artist,
        "ARTISTS": [artist],
        "ARTISTSORT": artist,
        "ALBUM": album,
        "ALBUMARTIST": artist,
        "ALBUMARTISTSORT": artist,
        "DATE": f"{year}-03-14",
        "ORIGINALDATE": str(year),
        "ORIGINALYEAR": str(year),
        "TRACKNUMBER": number,
        "TOTALTRACKS": total,
        "TRACKTOTAL": total,
        "DISCNUMBER": disc,
        "TOTALDISCS": discs,
        "DISCTOTAL": discs,
        "MEDIA": "CD",
        "LABEL": "Harbour Records",
        "CATALOGNUMBER": f"HR-{year}-01",
        "BARCODE": "0123456789012",
        "ASIN": "B000000000",
        "SCRIPT": "Latn",
        "RELEASETYPE": "album",
        "RELEASESTATUS": "official",
        "RELEASECOUNTRY": "GB",
        "MUSICBRAINZ_TRACKID": mbid("recording", album, str(title), number),
        "MUSICBRAINZ_RELEASETRACKID": mbid("track", album, number),
        "MUSICBRAINZ_ALBUMID": mbid("release", album),
        "MUSICBRAINZ_RELEASEGROUPID": mbid("release-group", album),
        "MUSICBRAINZ_ARTISTID": mbid("artist", artist),
        "MUSICBRAINZ_ALBUMARTISTID": mbid("artist", artist),
        "ISRC": f"GBAAA{year % 100:02d}{int(number.split('/')[0]):05d}",
        "COMMENT": ["Ripped with EAC (secure mode), AccurateRip confidence 12", "From the 2011 remaster"],
        "DESCRIPTION": "Remastered from the original tapes",
        "ENCODEDBY": "EAC 1.6",
        "REPLAYGAIN_TRACK_GAIN": "-6.20 dB",
        "REPLAYGAIN_TRACK_PEAK": "0.251189",
        "REPLAYGAIN_ALBUM_GAIN": "-6.50 dB",
        "REPLAYGAIN_ALBUM_PEAK": "0.251189",
    }


def ripped_cds(b: Builder) -> None:
    # An album with a scanned back cover embedded in every track and cover.jpg beside them:
    # the device shows cover.jpg, as the front cover.
    artist, album = "Mira Solen", "Glass Harbour"
    d = b.folder(artist, f"1998 - {album}")
    front = b.image(d, "cover.jpg", 320)
    back = picture(b.image(None, None, 300), BACK, "image/jpeg", 300, "Back")
    titles = {"05": "Low Tide", "06": "Salt on the Glass", "07": "Harbour Lights\n(Reprise)"}
    for number, title in titles.items():
        tags = picard_tags(artist, album, 1998, title, number, "7")
        if number == "06":
            tags["CONDUCTOR"] = [""]  # an empty value, as some taggers leave them
            tags["LYRICS"] = "Salt on the glass\nand the light goes down"
            tags["UNSYNCEDLYRICS"] = "Salt on the glass (unsynced)"
        if number == "07":
            tags["COMMENT"] = ["Hidden track after silence", "Vinyl edit"]
            tags["LYRICS"] = "Harbour lights, harbour lights"
        b.track(d, f"{number} {title.splitlines()[0]}.flac", tags, pictures=(back,), cover=(front, FRONT),
                kind="ripped", number=int(number), total=7)
    # An album whose only picture is its back cover, and the track numbers written "n/total".
    album = "Tidewater"
    d = b.folder(artist, f"1996 - {album}")
    back_data = b.image(None, None, 280, "PNG")
    back = picture(back_data, BACK, "image/png", 280, "Back cover")
    for n, title in ((1, "Undertow"), (2, "Slack Water")):
        tags = picard_tags(artist, album, 1996, title, f"{n}/2", "2", "1/1", "1")
        del tags["TOTALTRACKS"], tags["TRACKTOTAL"]
        b.track(d, f"{n:02d} {title}.flac", tags, pictures=(back,), cover=(back_data, BACK), kind="ripped-back-only",
                number=n, total=2)


def concert(b: Builder) -> None:
    """A 5.1 concert: 6 channels, 48 kHz, 24-bit, an embedded front cover (PNG)."""
    artist, album = "Kettle & Drum", "Live at the Lantern (5.1)"
    d = b.folder(artist, f"2015 - {album}")
    front_data = b.image(None, None, 256, "PNG")
    front = picture(front_data, FRONT, "image/png", 256, "Front")
    for n, title in ((1, "Overture (Live)"), (2, "Encore: Drum Circle (Live)")):
        tags = picard_tags(artist, album, 2015, title, str(n), "2")
        tags["MEDIA"] = "Blu-ray"
        b.track(d, f"{n:02d} {title.split(':')[0]}.flac", tags, rate=48000, channels=6, bits=24, pictures=(front,),
                cover=(front_data, FRONT), kind="5.1", number=n, total=2)


def hires(b: Builder) -> None:
    """A 24/192 download with folder.jpg beside it."""
    artist, album = "Nørdlys Ensemble", "Aurora Borealis"
    d = b.folder(artist, f"2019 - {album} [24-192]")
    front = b.image(d, "folder.jpg", 300)
    for n, title in ((1, "Første lys"), (2, "Nordlys over Tromsø")):
        tags = picard_tags(artist, album, 2019, title, str(n), "2")
        tags["MEDIA"] = "Digital Media"
        b.track(d, f"{n:02d} {title}.flac", tags, rate=192000, bits=24, cover=(front, FRONT), kind="24/192",
                number=n, total=2)


def streamed(b: Builder) -> None:
    """A streaming service's download: tags as its tool writes them, a front cover embedded;
    STREAMINFO's length and MD5 unknown, one file with an ID3v2 tag in front."""
    artist, album = "Aurora Lines", "Signal Path"
    d = b.folder(artist, f"2023 - {album} (Web)")
    front_data = b.image(None, None, 300)
    front = picture(front_data, FRONT, "image/jpeg", 300, "")
    variants = [
        (1, "Carrier Wave", streamed_flac, None, "streamed (flac to a pipe)"),
        (2, "Packet Loss", synth_flac, lambda p: unset_streaminfo(p), "streamed (length and MD5 zeroed)"),
        (3, "Handshake", synth_flac, None, "ID3v2 in front, MD5 unset"),
    ]
    for n, title, make, after, kind in variants:
        tags = {"TITLE": title, "ARTIST": artist, "ALBUMARTIST": artist, "ALBUM": album, "TRACKNUMBER": str(n),
                "TRACKTOTAL": "3", "DISCNUMBER": "1", "DATE": "2023", "GENRE": "Electronic",
                "ISRC": f"USAAA23{n:05d}", "COMMENT": "Downloaded from a streaming store",
                "ENCODER": "a streaming tool 2.1"}
        if n == 3:
            def after(p, title=title):
                unset_streaminfo(p, total_samples=False, md5=True)
                prefix_id3(p, title)
        b.track(d, f"{n:02d} - {artist} - {title}.flac", tags, make=make, pictures=(front,), cover=(front_data, FRONT),
                kind=kind, number=n, total=3, discs=None, after=after)


def box_set(b: Builder) -> None:
    """A box set whose disc folders collide on FAT32, with the same file names in each."""
    artist, album = "The Quiet Engines", "Seasons (Box Set)"
    discs = ["CD 1: Spring", "CD 1? Spring", "Live", "live"]
    for disc_no, disc in enumerate(discs, 1):
        d = b.folder(artist, album, disc)
        front = b.image(d, "cover.jpg", 200 + 10 * disc_no)
        for n, title in ((1, "Opening"), (2, "Closing")):
            full = f"{title} ({disc})"
            tags = picard_tags(artist, album, 2010, full, str(n), "2", str(disc_no), str(len(discs)))
            b.track(d, f"{n:02d} {title}.flac", tags, cover=(front, FRONT), kind="box set", number=n, total=2,
                    disc=disc_no, discs=len(discs))


def make_collector_library(root: str) -> dict:
    """Write the library under `root`; return its manifest:
    {"tracks": {relpath: what a device must show}, "albums": {album folder: [relpaths in order]}}."""
    b = Builder(root)
    ripped_cds(b)
    concert(b)
    hires(b)
    streamed(b)
    box_set(b)
    return {"tracks": b.tracks, "albums": b.albums}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--manifest", help="also write the manifest (JSON) to this file")
    args = parser.parse_args()
    manifest = make_collector_library(args.root)
    if args.manifest:
        with open(args.manifest, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, ensure_ascii=False)
    print(f"{len(manifest['tracks'])} tracks in {len(manifest['albums'])} album folders under {args.root}")


if __name__ == "__main__":
    main()
