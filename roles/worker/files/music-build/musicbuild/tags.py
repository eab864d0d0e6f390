"""Tags: write MP3 (ID3v2.4), Opus, Ogg Vorbis and FLAC outputs."""
from __future__ import annotations

import base64
import re

from mutagen.flac import FLAC
from mutagen.id3 import APIC, COMM, ID3, TXXX, UFID, USLT, Frames, ID3NoHeaderError, PictureType

from .art import Art
from .profile import CODEC_TABLE

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


def tag_dict(pairs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key.upper(), []).append(value)
    return out


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
