"""Tags: write MP3 (ID3v2.4), Opus, Ogg Vorbis and FLAC outputs.

FLAC, Opus and Vorbis outputs carry the source's Vorbis comments as they are (every value,
empty ones too; Opus gets R128 gains in place of ReplayGain). MP3 gets ID3v2.4 frames mapped
by id3_frames, which loses no value either.
"""
from __future__ import annotations

import base64
import copy
import re
import unicodedata

from mutagen.flac import FLAC
from mutagen.id3 import APIC, COMM, ID3, TXXX, UFID, USLT, Frames, ID3NoHeaderError, PictureType, TextFrame

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
UFID_MAX_BYTES = 64  # ID3v2.4 section 4.1: the identifier holds up to 64 bytes
NUMBER_PAIRS = {
    "TRCK": ("TRACKNUMBER", ("TRACKTOTAL", "TOTALTRACKS")),
    "TPOS": ("DISCNUMBER", ("DISCTOTAL", "TOTALDISCS")),
}
PAIR_KEYS = {"TRACKNUMBER", "TRACKTOTAL", "TOTALTRACKS", "DISCNUMBER", "DISCTOTAL", "TOTALDISCS"}
# Frames whose values must be ID3 timestamps (yyyy[-MM[-dd[THH[:mm[:ss]]]]]).
ID3_TIMESTAMPS = {"TDRC", "TDOR"}
COMMENT_KEY = "COMMENT"
LYRICS_KEYS = ("LYRICS", "UNSYNCEDLYRICS")
ID3_LANG = "eng"

# A track or disc number: digits (any script's decimal digits), optionally a total after "/"
# or "of" ("7/12", "03 of 12"), white space around each part.
_NUMBER = re.compile(r"\s*(\d+)\s*(?:(?:/|(?i:of))\s*(\d*)\s*)?")
# ID3v2.4 separates the values of a text frame with NUL; a value's own NUL becomes this.
ID3_NUL_STANDIN = "/"
_DATE = re.compile(r"\s*(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2})"
                   r"(?:[T ](\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?)?)?)?\s*")
_DATE_LIMITS = (None, (1, 12), (1, 31), (0, 23), (0, 59), (0, 59))


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


def ascii_digits(digits: str) -> str:
    """Decimal digits of any script ("３", "٣") as ASCII ones, digit by digit: leading zeros
    stay ("07", "０７" are "07")."""
    return "".join(str(unicodedata.decimal(ch)) for ch in digits)


def parse_number(value: str) -> tuple[str, str | None] | None:
    """A TRACKNUMBER or DISCNUMBER value as (number, total) in ASCII digits, total None when
    the value states none, or None when the value is no number. The one reading of a number
    that TRCK/TPOS (number_frame) and the playlists' track order (scan.playlist_spec) share.

    "7" is ("7", None); "07" ("07", None: leading zeros kept); " 3 " ("3", None); "7/12" and
    "03 of 12" ("7", "12") and ("03", "12"); "1/" and "1 of" ("1", None: a total left out);
    "７" ("7", None); "7/0" ("7", "0"). No number: "/12" (a total without its number), "A1",
    "7a", "-1", "1.5", "".
    """
    match = _NUMBER.fullmatch(value)
    if match is None:
        return None
    number, total = match.groups()
    return ascii_digits(number), (ascii_digits(total) if total else None)


def number_frame(number_key: str, numbers: list[str], totals: list[tuple[str, list[str]]]
                 ) -> tuple[str | None, dict[str, list[str]]]:
    """The TRCK text from the values of TRACKNUMBER (`number_key`) and of its totals,
    [(TRACKTOTAL, values), (TOTALTRACKS, values)] (TPOS from DISCNUMBER likewise), and the
    values that text does not say, by key, which id3_frames keeps verbatim as TXXX frames.

    - The number is the first value read by parse_number: a whole number (in any script's
      decimal digits, written in ASCII ones; leading zeros kept as written), alone or with a
      total after a slash or "of", white space around each part ignored: "7", "07", " 3 ",
      "７", "7/12", "03 of 12", "1/" (no total stated). Anything else ("A1", "7a", "/12" (a
      total without its number), "-1", "") is no number, and there is no frame: ID3 makes
      TRCK and TPOS numeric strings.
    - The total is the number's own when it has one ("7/12" and "7 of 12" keep 12, whatever
      TRACKTOTAL says), else the first total value that is a whole number, or a number with a
      total ("3" of a mistaken "3/3"). A total of 0, how some taggers say "unknown", is none.
    - The text is "number/total", or the number alone when there is no total: TRACKNUMBER
      07 with TOTALTRACKS 3/3 is "07/3", never "07/3/3"; "03 of 12" is "03/12".
    - A value the text does not say goes back by its key: a second value, a number whose own
      total is 0, a total that disagrees with the number's own or is junk ("3/3", "12
      tracks", "?", ""). So nothing is lost. A number the text says in other characters
      ("7 of 12", "７", "1/") is said, and not kept again.
    """
    def positive(text: str | None) -> str | None:
        return text if text and int(text) > 0 else None

    parsed = parse_number(numbers[0]) if numbers else None
    if parsed is None:
        leftovers = {key: list(values) for key, values in totals if values}
        return None, ({number_key: list(numbers)} if numbers else {}) | leftovers
    number, own_total = parsed
    total = positive(own_total)
    if total is None:
        found = (parse_number(v) for _key, values in totals for v in values)
        total = next((p[0] for p in found if p and positive(p[0])), None)
    text = f"{number}/{total}" if total else number
    leftovers: dict[str, list[str]] = {}
    kept = [v for i, v in enumerate(numbers) if i > 0 or own_total not in (None, total)]
    if kept:
        leftovers[number_key] = kept
    for key, values in totals:
        kept = [v for v in values if parse_number(v) != (total, None)]
        if kept:
            leftovers[key] = kept
    return text, leftovers


def id3_timestamp(value: str) -> str | None:
    """The ID3 timestamp a date value means, written the ID3 way ("2001/2/3" and "2001-02-03"
    are "2001-02-03", "2001-02-03 10:20" is "2001-02-03T10:20"), or None for a value that is
    no such date ("1970s", "circa 1970", "20010203", "2001-13-01", ""): mutagen would empty
    or truncate those in TDRC, so id3_frames keeps them in a TXXX frame."""
    match = _DATE.fullmatch(value)
    if match is None:
        return None
    parts = [p for p in match.groups() if p is not None]
    for part, limits in zip(parts, _DATE_LIMITS):
        if limits and not limits[0] <= int(part) <= limits[1]:
            return None
    text = parts[0]
    for part, sep in zip(parts[1:], "--T::"):
        text += sep + part.zfill(2)
    return text


def _add_values(store: dict[str, list[str]], sources: dict[str, set[str]], name: str, key: str,
                values: list[str]) -> None:
    """Append `values` (of source key `key`) to the frame `name` of `store`; a value that
    another key already put there is not repeated (LABEL and ORGANIZATION alike, say)."""
    have = store.setdefault(name, [])
    from_others = set(have) if sources.setdefault(name, set()) - {key} else set()
    sources[name].add(key)
    have.extend(v for v in values if v not in from_others)


def _free_descriptions(first: str, base: str):
    yield first
    if base != first:
        yield base
    n = 2
    while True:
        yield f"{base} {n}"
        n += 1


def lyrics_frames(tags: dict[str, list[str]]) -> dict[str, str]:
    """USLT frames {description: text} from LYRICS and UNSYNCEDLYRICS (and LYRICS:<desc>,
    UNSYNCEDLYRICS:<desc>). A USLT frame holds one text, and one frame per description is
    allowed: the first text gets the empty description that players show, another its key's
    name (UNSYNCEDLYRICS; LYRICS for a second LYRICS value), numbered when that is taken
    ("LYRICS 2"). A text that LYRICS and UNSYNCEDLYRICS both carry, the two conventions
    taggers follow, is one frame. LYRICS:<desc> keeps its description (numbered if taken)."""
    frames: dict[str, str] = {}
    plain: set[str] = set()
    for key in LYRICS_KEYS:
        for value in tags.get(key, []):
            if value in plain:
                continue
            plain.add(value)
            frames[next(d for d in _free_descriptions("", key) if d not in frames)] = value
    for key, values in tags.items():
        name, colon, desc = key.partition(":")
        if colon and name in LYRICS_KEYS:
            for value in values:
                frames[next(d for d in _free_descriptions(desc, desc or name) if d not in frames)] = value
    return frames


def id3_frames(pairs) -> list:
    """ID3v2.4 frames carrying every value of the source's Vorbis comments. No two frames
    share a HashKey (a tag holds one frame per HashKey: a second would replace the first).

    The mapping follows MusicBrainz Picard and mediafile (beets' tag layer) where they agree,
    and where they differ the way that loses nothing:
    - TITLE, ARTIST, ... (ID3_TEXT): their text frame with every value (ID3v2.4 text frames
      hold several, null-separated). Keys that share a frame (ORGANIZATION, LABEL, PUBLISHER:
      TPUB; ALBUMARTIST, ALBUM ARTIST: TPE2) fill it together, a value another key gave
      already once.
    - DATE, ORIGINALDATE: TDRC, TDOR for a value that is a date (id3_timestamp); any other
      value ("1970s") is kept as TXXX:DATE or TXXX:ORIGINALDATE.
    - TRACKNUMBER with TRACKTOTAL/TOTALTRACKS: TRCK; DISCNUMBER with DISCTOTAL/TOTALDISCS:
      TPOS (number_frame); what those cannot say goes to TXXX named by its key.
    - COMMENT: one COMM frame (language eng, empty description) with every value, as Picard
      and mediafile write it; COMMENT:<desc> (TagLib's name for a comment with a
      description) a COMM frame with that description.
    - DESCRIPTION: TXXX:DESCRIPTION, as Picard and TagLib; mediafile reads it as the comment,
      which would make it and COMMENT one frame.
    - LYRICS, UNSYNCEDLYRICS: USLT frames (lyrics_frames).
    - MUSICBRAINZ_TRACKID (the recording id, as Picard names it): UFID owned by
      http://musicbrainz.org holding the id's UTF-8 bytes; an id longer than a UFID may be
      (64 bytes) or a second value goes to TXXX:MUSICBRAINZ_TRACKID.
    - Anything else: TXXX, described as Picard does for MusicBrainz and AcoustID keys
      (ID3_TXXX), else by its key.
    Empty values are kept; write_id3v24 writes the frames that mutagen would leave out.
    A NUL inside a value becomes ID3_NUL_STANDIN ("/"): ID3v2.4 separates a text frame's
    values with NUL, so a NUL kept would make one value two ("nul\\x00here" is "nul/here").
    "/" rather than a space because a NUL in a value is most often one tool's separator of
    two values (an ID3v2.4 frame copied as it is), which "/" still shows.

    What ID3 changes on its own: a GENRE that is a number ("13", "(13)") is an ID3v1 genre
    reference in TCON, and readers (mutagen, ffmpeg) show it by name ("Pop").
    """
    tags = tag_dict((key, value.replace("\x00", ID3_NUL_STANDIN)) for key, value in pairs)
    frames = []
    text: dict[str, list[str]] = {}
    txxx: dict[str, list[str]] = {}
    comments: dict[str, list[str]] = {}
    # The source keys that filled each frame so far, by frame.
    text_keys: dict[str, set[str]] = {}
    txxx_keys: dict[str, set[str]] = {}
    comment_keys: dict[str, set[str]] = {}
    for frame_id, (number_key, total_keys) in NUMBER_PAIRS.items():
        totals = [(k, tags[k]) for k in total_keys if k in tags]
        if number_key not in tags and not totals:
            continue
        frame_text, leftovers = number_frame(number_key, tags.get(number_key, []), totals)
        if frame_text is not None:
            frames.append(Frames[frame_id](encoding=3, text=[frame_text]))
        for key, values in leftovers.items():
            _add_values(txxx, txxx_keys, key, key, values)
    for key, values in tags.items():
        name = ID3_TEXT_ALIASES.get(key, key)
        if key in PAIR_KEYS or key.partition(":")[0] in LYRICS_KEYS:
            continue
        if name in ID3_TEXT and ID3_TEXT[name] in ID3_TIMESTAMPS:
            dates = [id3_timestamp(v) for v in values]
            _add_values(text, text_keys, ID3_TEXT[name], key, [d for d in dates if d is not None])
            odd = [v for v, d in zip(values, dates) if d is None]
            if odd:
                _add_values(txxx, txxx_keys, key, key, odd)
        elif name in ID3_TEXT:
            _add_values(text, text_keys, ID3_TEXT[name], key, values)
        elif key == COMMENT_KEY or key.startswith(COMMENT_KEY + ":"):
            _add_values(comments, comment_keys, key.partition(":")[2], key, values)
        elif key == "MUSICBRAINZ_TRACKID":
            data = values[0].encode("utf-8")
            rest = values
            if len(data) <= UFID_MAX_BYTES:
                frames.append(UFID(owner=MUSICBRAINZ_UFID_OWNER, data=data))
                rest = values[1:]
            if rest:
                _add_values(txxx, txxx_keys, key, key, rest)
        else:
            _add_values(txxx, txxx_keys, ID3_TXXX.get(key, key), key, values)
    frames += [Frames[frame_id](encoding=3, text=values) for frame_id, values in text.items() if values]
    frames += [TXXX(encoding=3, desc=desc, text=values) for desc, values in txxx.items()]
    frames += [COMM(encoding=3, lang=ID3_LANG, desc=desc, text=values) for desc, values in comments.items()]
    frames += [USLT(encoding=3, lang=ID3_LANG, desc=desc, text=value) for desc, value in lyrics_frames(tags).items()]
    return frames


_KEEPS_EMPTY: dict[type, type] = {}


def _keeping_empty(frame):
    """`frame`, written even when its text is one empty value. mutagen leaves out a text
    frame whose text is empty (id3._tags.save_frame), which dropped an empty ARTIST; ID3v2.4
    allows it (the encoding byte and a terminator) and mutagen reads it back as ['']. The copy
    is of a subclass with the same name (hence frame id) whose str() is not empty."""
    if not isinstance(frame, TextFrame) or str(frame):
        return frame
    cls = type(frame)
    if cls not in _KEEPS_EMPTY:
        _KEEPS_EMPTY[cls] = type(cls.__name__, (cls,),
                                 {"__str__": lambda self: "\u0000".join(self.text) or "\u0000"})
    kept = copy.copy(frame)
    kept.__class__ = _KEEPS_EMPTY[cls]
    return kept


def write_id3v24(path: str, pairs, art: Art | None) -> None:
    """ID3v2.4 frames (MP3): every Vorbis comment mapped by id3_frames, the picture as APIC
    (of its type, front cover unless the picture says otherwise)."""
    id3_tag(path, id3_frames(pairs), art).save(path, v2_version=4, v1=0)


def id3_tag(path: str, frames, art: Art | None) -> ID3:
    """The file's ID3 tag (a new one if it has none) holding only `frames` and the picture as
    APIC (of its type, front cover unless the picture says otherwise), not saved yet."""
    try:
        id3 = ID3(path)
    except ID3NoHeaderError:
        id3 = ID3()
    id3.clear()
    for frame in frames:
        id3.add(_keeping_empty(frame))
    if art is not None:
        desc = getattr(art, "desc", None)
        id3.add(APIC(encoding=3, mime=art.mime, type=getattr(art, "type", PictureType.COVER_FRONT),
                     desc="Cover" if desc is None else desc, data=art.data))
    return id3


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


# A tag format's writer revision, where it changed what existing outputs carry: it enters the
# outputs' tags digest, so an upgrade re-tags them once (never re-encodes). A format without
# an entry has its first revision and leaves the digest as every build recorded it.
#   id3v2.4 2: COMM/USLT per description, TRCK/TPOS from the number part, UFID as the id's
#              bytes, empty values kept, DESCRIPTION and dates ID3 cannot hold in TXXX.
WRITER_REVISIONS = {"id3v2.4": 2}

# The codec table's tag formats ("tags" of each codec) -> their writer.
WRITERS = {"id3v2.4": write_id3v24, "flac": write_flac, "opus": write_opus, "vorbis": write_vorbis}


def write_mp4(path: str, pairs, art: Art | None) -> None:
    """MP4 (AAC): atoms as Picard writes them, covr, iTunSMPB (mp4tags.py, which uses this module)."""
    from .mp4tags import write_mp4 as write

    write(path, pairs, art)


WRITERS["mp4"] = write_mp4


def write_tags(path: str, codec: str, pairs, art: Art | None, id3: str | None = None) -> None:
    """Replace every tag and picture of an output file with the source's. `id3`: the
    profile's ID3 version for an ID3 codec ("2.3": id3v23.write_id3v23)."""
    if id3 == "2.3" and CODEC_TABLE[codec]["tags"] == "id3v2.4":
        from .id3v23 import write_id3v23

        write_id3v23(path, pairs, art)
        return
    WRITERS[CODEC_TABLE[codec]["tags"]](path, pairs, art)
