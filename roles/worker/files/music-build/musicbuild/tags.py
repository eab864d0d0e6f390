"""Tags and cover art: read a FLAC source, write MP3 (ID3v2.4), Opus, Ogg Vorbis and FLAC outputs."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re

from mutagen.flac import FLAC, FLACNoHeaderError, Picture
from mutagen.id3 import (
    APIC, COMM, ID3, TXXX, UFID, USLT, Frames, ID3NoHeaderError, PictureType,
)

from .fsutil import atomic_write, oserror_in, write_json
from .profile import CODEC_TABLE

COVER_NAMES = ("cover", "folder", "front", "albumart")
COVER_EXTS = (".jpg", ".jpeg", ".png")

# Vorbis comment -> ID3v2.4 text frame.
ID3_TEXT = {
    "TITLE": "TIT2", "ARTIST": "TPE1", "ALBUM": "TALB", "ALBUMARTIST": "TPE2",
    "DATE": "TDRC", "ORIGINALDATE": "TDOR", "GENRE": "TCON", "COMPOSER": "TCOM",
    "CONDUCTOR": "TPE3", "REMIXER": "TPE4", "LYRICIST": "TEXT", "ORGANIZATION": "TPUB",
    "LABEL": "TPUB", "COPYRIGHT": "TCOP", "ISRC": "TSRC", "BPM": "TBPM", "ENCODEDBY": "TENC",
    "MOOD": "TMOO", "TITLESORT": "TSOT", "ARTISTSORT": "TSOP", "ALBUMSORT": "TSOA",
    "ALBUMARTISTSORT": "TSO2", "COMPOSERSORT": "TSOC", "GROUPING": "TIT1", "SUBTITLE": "TIT3",
    "DISCSUBTITLE": "TSST", "MEDIA": "TMED", "LANGUAGE": "TLAN", "COMPILATION": "TCMP",
    "KEY": "TKEY", "ENCODERSETTINGS": "TSSE",
}
ID3_TEXT_ALIASES = {"ALBUM ARTIST": "ALBUMARTIST", "PUBLISHER": "ORGANIZATION"}
# Vorbis comment -> TXXX description, as MusicBrainz Picard writes them.
ID3_TXXX = {
    "MUSICBRAINZ_ALBUMID": "MusicBrainz Album Id",
    "MUSICBRAINZ_ARTISTID": "MusicBrainz Artist Id",
    "MUSICBRAINZ_ALBUMARTISTID": "MusicBrainz Album Artist Id",
    "MUSICBRAINZ_RELEASEGROUPID": "MusicBrainz Release Group Id",
    "MUSICBRAINZ_RELEASETRACKID": "MusicBrainz Release Track Id",
    "MUSICBRAINZ_WORKID": "MusicBrainz Work Id",
    "MUSICBRAINZ_DISCID": "MusicBrainz Disc Id",
    "MUSICBRAINZ_TRMID": "MusicBrainz TRM Id",
    "RELEASECOUNTRY": "MusicBrainz Album Release Country",
    "RELEASESTATUS": "MusicBrainz Album Status",
    "RELEASETYPE": "MusicBrainz Album Type",
    "ACOUSTID_ID": "Acoustid Id",
    "ACOUSTID_FINGERPRINT": "Acoustid Fingerprint",
}
MUSICBRAINZ_UFID_OWNER = "http://musicbrainz.org"
NUMBER_PAIRS = {
    "TRCK": ("TRACKNUMBER", ("TRACKTOTAL", "TOTALTRACKS")),
    "TPOS": ("DISCNUMBER", ("DISCTOTAL", "TOTALDISCS")),
}
PAIR_KEYS = {"TRACKNUMBER", "TRACKTOTAL", "TOTALTRACKS", "DISCNUMBER", "DISCTOTAL", "TOTALDISCS"}


class SourceError(Exception):
    """A source track cannot be used; the message is the reason shown to the user."""


def read_source(path: str) -> dict:
    """Audio fingerprint, tags and embedded-art digest of one FLAC source."""
    size = os.path.getsize(path)  # an OSError (unreadable, vanished) is the caller's: not the file's fault
    if size == 0:
        raise SourceError("empty file (0 bytes)")
    try:
        flac = FLAC(path)
    except FLACNoHeaderError:
        raise SourceError("not a FLAC file (no fLaC header)") from None
    except Exception as exc:  # mutagen raises several types for damaged metadata
        oserr = oserror_in(exc)
        if oserr is not None:
            raise oserr from None
        raise SourceError(f"unreadable FLAC metadata: {exc}") from None
    info = flac.info
    if not info.total_samples:
        raise SourceError("no audio (0 samples in STREAMINFO)")
    audio = {
        "md5": f"{info.md5_signature:032x}",
        "rate": info.sample_rate,
        "channels": info.channels,
        "bits": info.bits_per_sample,
        "samples": info.total_samples,
    }
    if not info.md5_signature:
        audio["md5"] = "sha1:" + frames_digest(path)
    pairs = [(k.upper(), v) for k, v in (flac.tags or [])]
    picture = pick_picture(flac.pictures)
    return {
        "audio": audio,
        "tags": pairs,
        "embedded_art": hashlib.sha1(picture.data).hexdigest() if picture else None,
        "length": info.length,
    }


def frames_digest(path: str) -> str:
    """Digest of a FLAC's audio frames (everything after the metadata blocks)."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        if fh.read(4) != b"fLaC":
            raise SourceError("not a FLAC file (no fLaC header)")
        while True:
            header = fh.read(4)
            if len(header) < 4:
                raise SourceError("truncated metadata")
            length = int.from_bytes(header[1:4], "big")
            fh.seek(length, io.SEEK_CUR)
            if header[0] & 0x80:
                break
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pick_picture(pictures):
    if not pictures:
        return None
    for pic in pictures:
        if pic.type == PictureType.COVER_FRONT:
            return pic
    return pictures[0]


def find_cover_file(names) -> str | None:
    """The cover image among a folder's file names (cover.jpg, folder.jpg, ...), if any."""
    lowered = {n.lower(): n for n in names}
    for base in COVER_NAMES:
        for ext in COVER_EXTS:
            if base + ext in lowered:
                return lowered[base + ext]
    return None


def tag_dict(pairs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key.upper(), []).append(value)
    return out


# ---------------------------------------------------------------- cover art

class Art:
    def __init__(self, data: bytes, mime: str, width: int, height: int, depth: int = 24):
        self.data, self.mime, self.width, self.height, self.depth = data, mime, width, height, depth

    def flac_picture(self) -> Picture:
        pic = Picture()
        pic.type = PictureType.COVER_FRONT
        pic.mime = self.mime
        pic.desc = "Cover"
        pic.width, pic.height, pic.depth = self.width, self.height, self.depth
        pic.data = self.data
        return pic


def load_art(source_path: str, cover_file: str | None, max_size: int, cache_dir: str | None = None) -> Art | None:
    """The track's cover: its embedded front cover, else the folder's cover file, scaled down.

    With `cache_dir`, the prepared picture is kept by the digest of the original and the size
    asked for, so the tracks of an album (and a re-tag) decode and scale it once.
    """
    data = None
    try:
        pic = pick_picture(FLAC(source_path).pictures)
        if pic is not None:
            data = pic.data
    except Exception:
        data = None
    if data is None and cover_file:
        try:
            with open(cover_file, "rb") as fh:
                data = fh.read()
        except OSError:
            data = None
    if not data:
        return None
    cached = None
    if cache_dir:
        cached = os.path.join(cache_dir, f"{hashlib.sha1(data).hexdigest()}-{max_size}")
        try:
            with open(cached + ".json", encoding="utf-8") as fh:
                meta = json.load(fh)
            with open(cached + ".img", "rb") as fh:
                return Art(fh.read(), meta["mime"], meta["width"], meta["height"])
        except (OSError, ValueError, KeyError):
            pass
    art = prepare_art(data, max_size)
    if art is not None and cached:
        os.makedirs(cache_dir, exist_ok=True)
        atomic_write(cached + ".img", art.data)
        write_json(cached + ".json", {"mime": art.mime, "width": art.width, "height": art.height})
    return art


def prepare_art(data: bytes, max_size: int) -> Art | None:
    """Scale a picture down to `max_size` (longest side; 0 keeps it) as JPEG; keep JPEG/PNG that fit."""
    from PIL import Image  # imported only when a picture has to be looked at

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:
        return None
    fmt = (image.format or "").upper()
    if max_size and max(image.size) > max_size:
        image = image.convert("RGB")
        image.thumbnail((max_size, max_size), Image.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90, optimize=True)
        return Art(buf.getvalue(), "image/jpeg", image.width, image.height)
    if fmt not in ("JPEG", "PNG"):
        buf = io.BytesIO()
        image.convert("RGB").save(buf, "JPEG", quality=90)
        return Art(buf.getvalue(), "image/jpeg", image.width, image.height)
    return Art(data, "image/jpeg" if fmt == "JPEG" else "image/png", image.width, image.height)


# ---------------------------------------------------------------- writers

def _db(value: str) -> float | None:
    match = re.match(r"\s*([-+]?\d+(?:\.\d+)?)", value or "")
    return float(match.group(1)) if match else None


def r128_from_replaygain(gain_db: float) -> str:
    """ReplayGain (-18 LUFS reference) to an Opus R128 gain (-23 LUFS, Q7.8 dB)."""
    q = round((gain_db - 5.0) * 256)
    return str(max(-32768, min(32767, q)))


def vorbis_pairs_for(codec: str, pairs):
    """Tags for a Vorbis-comment output. Opus gets R128 gains instead of REPLAYGAIN_*."""
    return _vorbis_comments(pairs, r128=CODEC_TABLE[codec]["tags"] == "opus")


def _vorbis_comments(pairs, r128: bool):
    if not r128:
        return list(pairs)
    out = [(k, v) for k, v in pairs if not k.startswith("REPLAYGAIN_") and not k.startswith("R128_")]
    tags = tag_dict(pairs)
    for rg, r128 in (("REPLAYGAIN_TRACK_GAIN", "R128_TRACK_GAIN"), ("REPLAYGAIN_ALBUM_GAIN", "R128_ALBUM_GAIN")):
        gain = _db(tags.get(rg, [""])[0])
        if gain is not None:
            out.append((r128, r128_from_replaygain(gain)))
    return out


def id3_frames(pairs) -> list:
    """ID3v2.4 frames carrying every Vorbis comment of the source."""
    tags = tag_dict(pairs)
    frames = []
    for frame_id, (number_key, total_keys) in NUMBER_PAIRS.items():
        if number_key in tags:
            number = tags[number_key][0]
            total = next((tags[k][0] for k in total_keys if k in tags), None)
            if total and "/" not in number:
                number = f"{number}/{total}"
            frames.append(Frames[frame_id](encoding=3, text=[number]))
    text_frames: dict[str, list[str]] = {}
    for key, values in tags.items():
        key = ID3_TEXT_ALIASES.get(key, key)
        if key in PAIR_KEYS:
            if key in ("TRACKTOTAL", "TOTALTRACKS") and "TRACKNUMBER" not in tags:
                frames.append(TXXX(encoding=3, desc=key, text=values))
            if key in ("DISCTOTAL", "TOTALDISCS") and "DISCNUMBER" not in tags:
                frames.append(TXXX(encoding=3, desc=key, text=values))
            continue
        if key in ID3_TEXT:
            text_frames.setdefault(ID3_TEXT[key], []).extend(values)
        elif key == "MUSICBRAINZ_TRACKID":
            frames.append(UFID(owner=MUSICBRAINZ_UFID_OWNER, data=values[0].encode("ascii", "replace")))
        elif key in ("COMMENT", "DESCRIPTION"):
            frames.append(COMM(encoding=3, lang="eng", desc="", text=values))
        elif key in ("LYRICS", "UNSYNCEDLYRICS"):
            frames.append(USLT(encoding=3, lang="eng", desc="", text="\n".join(values)))
        else:
            frames.append(TXXX(encoding=3, desc=ID3_TXXX.get(key, key), text=values))
    for frame_id, values in text_frames.items():
        frames.append(Frames[frame_id](encoding=3, text=values))
    return frames


def write_id3v24(path: str, pairs, art: Art | None) -> None:
    """ID3v2.4 frames (MP3): every Vorbis comment mapped by id3_frames, the cover as APIC."""
    try:
        id3 = ID3(path)
    except ID3NoHeaderError:
        id3 = ID3()
    id3.clear()
    for frame in id3_frames(pairs):
        id3.add(frame)
    if art is not None:
        id3.add(APIC(encoding=3, mime=art.mime, type=PictureType.COVER_FRONT, desc="Cover", data=art.data))
    id3.save(path, v2_version=4, v1=0)


def write_flac(path: str, pairs, art: Art | None) -> None:
    """FLAC: the Vorbis comments as they are, the cover as a PICTURE block."""
    audio = FLAC(path)
    audio.clear_pictures()
    if audio.tags is None:
        audio.add_tags()
    audio.tags.clear()
    for key, value in pairs:
        audio.tags.append((key, value))
    if art is not None:
        audio.add_picture(art.flac_picture())
    audio.save()


def _write_ogg(audio, pairs, art: Art | None, r128: bool) -> None:
    audio.tags.clear()
    for key, value in _vorbis_comments(pairs, r128):
        audio.tags.append((key, value))
    if art is not None:
        encoded = base64.b64encode(art.flac_picture().write()).decode("ascii")
        audio.tags.append(("METADATA_BLOCK_PICTURE", encoded))
    audio.save()


def write_opus(path: str, pairs, art: Art | None) -> None:
    """Ogg Opus: Vorbis comments with R128 gains in place of ReplayGain, the cover as
    METADATA_BLOCK_PICTURE."""
    from mutagen.oggopus import OggOpus

    _write_ogg(OggOpus(path), pairs, art, r128=True)


def write_vorbis(path: str, pairs, art: Art | None) -> None:
    """Ogg Vorbis: the Vorbis comments as they are, the cover as METADATA_BLOCK_PICTURE."""
    from mutagen.oggvorbis import OggVorbis

    _write_ogg(OggVorbis(path), pairs, art, r128=False)


# The codec table's tag formats ("tags" of each codec) -> their writer.
WRITERS = {"id3v2.4": write_id3v24, "flac": write_flac, "opus": write_opus, "vorbis": write_vorbis}


def write_tags(path: str, codec: str, pairs, art: Art | None) -> None:
    """Replace every tag and picture of an output file with the source's."""
    WRITERS[CODEC_TABLE[codec]["tags"]](path, pairs, art)
