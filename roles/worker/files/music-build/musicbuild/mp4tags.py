"""Tags for AAC outputs (MP4, `.m4a`): every Vorbis comment of the source as an MP4 atom, the
cover as `covr`, and the gapless data as iTunSMPB (issue 15).

The mapping is MusicBrainz Picard's (picard/formats/mp4.py), which mediafile (beets) and
iTunes read:
- TITLE ©nam, ARTIST ©ART, ALBUM ©alb, ALBUMARTIST (ALBUM ARTIST) aART, DATE ©day, GENRE
  ©gen, COMPOSER ©wrt, COMMENT ©cmt, LYRICS and UNSYNCEDLYRICS ©lyr (a text both carry is
  one value), GROUPING ©grp, COPYRIGHT cprt, ENCODEDBY ©too, the sort tags sonm soar soal
  soaa soco: text atoms, every value (an atom holds several).
- TRACKNUMBER with TRACKTOTAL/TOTALTRACKS: trkn (number, total); DISCNUMBER with
  DISCTOTAL/TOTALDISCS: disk, read as the MP3 writer reads TRCK (tags.number_frame); what they
  cannot say (a number that is none, a second value, a total that disagrees, a number over
  65535, which an MP4 number cannot hold) is kept as a freeform atom named by its key.
- COMPILATION 1 or 0: cpil; BPM a whole number: tmpo; other values of them freeform.
- MusicBrainz and AcoustID ids (tags.ID3_TXXX's names, MUSICBRAINZ_TRACKID as "MusicBrainz
  Track Id"), ReplayGain (lower-case `replaygain_track_gain` ..., as Picard and mediafile
  write them) and every other key: freeform atoms `----:com.apple.iTunes:<name>` holding
  UTF-8 text, every value.
Empty values are kept. Gapless: ffmpeg's MP4 muxer writes an edit list that trims the
encoder's priming (1024 samples) and its padding, exact to the sample with the codec table's
movie timescale; iTunSMPB, which iTunes and iPods read instead, is written from that list.
"""
from __future__ import annotations

from mutagen.mp4 import MP4, Atoms, MP4Cover, MP4FreeForm

from . import tags

FREEFORM = "----:com.apple.iTunes:"
MP4_TEXT = {
    "TITLE": "©nam", "ARTIST": "©ART", "ALBUM": "©alb", "ALBUMARTIST": "aART", "ALBUM ARTIST": "aART",
    "DATE": "©day", "GENRE": "©gen", "COMPOSER": "©wrt", "COMMENT": "©cmt", "LYRICS": "©lyr",
    "UNSYNCEDLYRICS": "©lyr", "GROUPING": "©grp", "COPYRIGHT": "cprt", "ENCODEDBY": "©too",
    "TITLESORT": "sonm", "ARTISTSORT": "soar", "ALBUMSORT": "soal", "ALBUMARTISTSORT": "soaa",
    "COMPOSERSORT": "soco",
}
FREEFORM_NAMES = {**tags.ID3_TXXX, "MUSICBRAINZ_TRACKID": "MusicBrainz Track Id"}
NUMBER_ATOMS = {"trkn": tags.NUMBER_PAIRS["TRCK"], "disk": tags.NUMBER_PAIRS["TPOS"]}
MP4_NUMBER_MAX = 65535  # trkn, disk and tmpo hold 16-bit numbers
ITUNSMPB = "iTunSMPB"
AAC_FRAME = 1024  # samples an AAC-LC frame decodes to


def freeform_name(key: str) -> str:
    """The freeform atom's name of a Vorbis comment key."""
    if key.startswith("REPLAYGAIN_"):
        return key.lower()
    return FREEFORM_NAMES.get(key, key)


def mp4_atoms(pairs) -> dict:
    """{atom key (mutagen's MP4 keys): value} carrying every value of the source's Vorbis
    comments (see the module's docstring). Pure."""
    values = tags.tag_dict(pairs)
    out: dict = {}
    free: dict[str, list[str]] = {}

    def keep(key: str, vals: list[str]) -> None:
        have = free.setdefault(freeform_name(key), [])
        have.extend(vals)

    for atom, (number_key, total_keys) in NUMBER_ATOMS.items():
        totals = [(k, values[k]) for k in total_keys if k in values]
        if number_key not in values and not totals:
            continue
        text, leftovers = tags.number_frame(number_key, values.get(number_key, []), totals)
        if text is not None:
            number, _, total = text.partition("/")
            if int(number) <= MP4_NUMBER_MAX and int(total or 0) <= MP4_NUMBER_MAX:
                out[atom] = [(int(number), int(total or 0))]
            else:
                leftovers = {number_key: values.get(number_key, []), **{k: v for k, v in totals}}
        for key, vals in leftovers.items():
            keep(key, vals)
    text_values: dict[str, list[str]] = {}
    text_keys: dict[str, set[str]] = {}
    for key, vals in values.items():
        if key in tags.PAIR_KEYS:
            continue
        if key in MP4_TEXT:  # keys sharing an atom fill it together, a value once
            tags._add_values(text_values, text_keys, MP4_TEXT[key], key, vals)
        elif key == "COMPILATION" and vals and vals[0] in ("0", "1"):
            out["cpil"] = vals[0] == "1"
            if vals[1:]:
                keep(key, vals[1:])
        elif key == "BPM" and vals and vals[0].isascii() and vals[0].isdigit() and int(vals[0]) <= MP4_NUMBER_MAX:
            out["tmpo"] = [int(vals[0])]
            if vals[1:]:
                keep(key, vals[1:])
        else:
            keep(key, vals)
    out.update(text_values)
    for name, vals in free.items():
        out[FREEFORM + name] = [MP4FreeForm(v.encode("utf-8", "surrogateescape")) for v in vals]
    return out


def gapless_info(path: str) -> tuple[int, int, int] | None:
    """(priming, padding, samples) from the file's audio track: its edit list (the part of
    the encoded samples that is the audio) and its sample table (every sample encoded), in
    samples of the track's rate; None without an edit list."""
    with open(path, "rb") as fh:
        atoms = Atoms(fh)

        def body(*names: bytes) -> bytes | None:
            try:
                atom = atoms.path(b"moov", *names)[-1]
            except KeyError:
                return None
            ok, data = atom.read(fh)
            return data if ok else None

        mvhd = body(b"mvhd")
        edts = body(b"trak", b"edts")  # mutagen does not read into edts: its first child is elst
        elst = edts[8:] if edts and edts[4:8] == b"elst" else None
        mdhd = body(b"trak", b"mdia", b"mdhd")
        stts = body(b"trak", b"mdia", b"minf", b"stbl", b"stts")
    if not (mvhd and elst and mdhd and stts):
        return None
    movie_scale = int.from_bytes(mvhd[20:24] if mvhd[0] == 1 else mvhd[12:16], "big")
    media_scale = int.from_bytes(mdhd[20:24] if mdhd[0] == 1 else mdhd[12:16], "big")
    if elst[0] == 1:
        duration, media_time = int.from_bytes(elst[8:16], "big"), int.from_bytes(elst[16:24], "big", signed=True)
    else:
        duration, media_time = int.from_bytes(elst[8:12], "big"), int.from_bytes(elst[12:16], "big", signed=True)
    entries = [(int.from_bytes(stts[8 + 8 * i:12 + 8 * i], "big"), int.from_bytes(stts[12 + 8 * i:16 + 8 * i], "big"))
               for i in range(int.from_bytes(stts[4:8], "big"))]
    # ffmpeg gives the last packet the duration of the audio left in it, but an AAC-LC
    # decoder puts out a whole frame of 1024 samples for each: the rest is padding
    total = max(sum(n * d for n, d in entries), sum(n for n, _ in entries) * AAC_FRAME)
    if media_time < 0 or not movie_scale:
        return None
    samples = duration * media_scale // movie_scale
    return media_time, max(0, total - media_time - samples), samples


def itunsmpb(priming: int, padding: int, samples: int) -> str:
    """The iTunSMPB text iTunes writes: priming, padding and the audio's samples in hex."""
    return " " + " ".join(["00000000", f"{priming:08X}", f"{padding:08X}", f"{samples:016X}"] + ["00000000"] * 8)


def write_mp4(path: str, pairs, art) -> None:
    """MP4 (AAC): every Vorbis comment as an atom (mp4_atoms), the picture as covr, and
    iTunSMPB from the file's edit list."""
    audio = MP4(path)
    if audio.tags is None:
        audio.add_tags()
    audio.tags.clear()
    audio.tags.update(mp4_atoms(pairs))
    gapless = gapless_info(path)
    if gapless is not None:
        audio.tags[FREEFORM + ITUNSMPB] = [MP4FreeForm(itunsmpb(*gapless).encode("ascii"))]
    if art is not None:
        kind = MP4Cover.FORMAT_PNG if art.mime == "image/png" else MP4Cover.FORMAT_JPEG
        audio.tags["covr"] = [MP4Cover(art.data, imageformat=kind)]
    audio.save()
