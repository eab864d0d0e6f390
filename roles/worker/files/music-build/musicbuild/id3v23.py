"""ID3v2.3 for MP3 profiles with `id3: "2.3"` (car stereos and players that read only v2.3).

The frames are the v2.4 ones of tags.id3_frames (so every value is carried as there),
turned into what a v2.3 reader expects:
- a text frame's several values are one string joined with "/" (v2.3 has no NUL separator;
  mutagen's v23_sep, as Picard's default "join multiple ID3v2.3 tags with /");
- TDRC (DATE) is TYER (year), TDAT (DDMM) and TIME (HHMM) of its first value; what those cannot
  say (a month without its day, seconds, further values) is kept verbatim in TXXX:DATE;
  TDOR (ORIGINALDATE) is TORY (year), the rest in TXXX:ORIGINALDATE;
- frames v2.3 lacks are TXXX named by the Vorbis comment (TMOO: MOOD, TSST: DISCSUBTITLE),
  except iTunes' sort frames TSOA/TSOP/TSOT, which v2.3 readers (iTunes, players) read and
  Picard writes in v2.3 too;
- text in UTF-16 with a BOM (v2.3 has no UTF-8; mutagen converts).
"""
from __future__ import annotations

from mutagen.id3 import TDAT, TIME, TORY, TXXX, TYER, ID3TimeStamp

from .art import Art
from .tags import id3_frames, id3_tag

# v2.4-only text frames id3_frames can make, as the TXXX a v2.3 tag carries them in.
V24_ONLY_TXXX = {"TMOO": "MOOD", "TSST": "DISCSUBTITLE", "TDRL": "RELEASEDATE", "TDEN": "ENCODINGTIME",
                 "TDTG": "TAGGINGTIME", "TPRO": "PRODUCEDNOTICE"}
# Kept in v2.3 although the standard lacks them ("off spec", as mutagen's update_to_v23 says).
KEPT_OFF_SPEC = ("TSOA", "TSOP", "TSOT")
SEPARATOR = "/"


def _date_frames(values: list[str]) -> tuple[dict[str, str], list[str]]:
    """{TYER/TDAT/TIME: text} for the first of TDRC's timestamps, and the values those frames
    do not say whole (kept in TXXX:DATE)."""
    if not values:
        return {}, []
    stamp = ID3TimeStamp(values[0])
    frames = {"TYER": "%04d" % stamp.year} if stamp.year else {}
    said = "%04d" % stamp.year if stamp.year else ""
    if stamp.year and stamp.month and stamp.day:
        frames["TDAT"] = "%02d%02d" % (stamp.day, stamp.month)
        said += "-%02d-%02d" % (stamp.month, stamp.day)
        if stamp.hour is not None and stamp.minute is not None:
            frames["TIME"] = "%02d%02d" % (stamp.hour, stamp.minute)
            said += " %02d:%02d" % (stamp.hour, stamp.minute)
    rest = [v for v in values[1:]]
    if values[0].replace("T", " ") != said:  # (mutagen shows a timestamp with a space)
        rest.insert(0, values[0])
    return frames, rest


def id3v23_frames(pairs) -> list:
    """The frames of a v2.3 tag for the Vorbis comments `pairs` (see the module's docstring);
    pure. Multi-valued text stays a list here: the writer joins it (SEPARATOR)."""
    frames = []
    txxx: dict[str, list[str]] = {}
    for frame in id3_frames(pairs):
        fid = frame.FrameID
        if fid == "TXXX":
            txxx.setdefault(frame.desc, []).extend(frame.text)
            continue
        if fid == "TDRC":
            made, rest = _date_frames([str(t) for t in frame.text])
            frames += [{"TYER": TYER, "TDAT": TDAT, "TIME": TIME}[k](encoding=3, text=[v]) for k, v in made.items()]
            if rest:
                txxx["DATE"] = rest + txxx.get("DATE", [])
            continue
        if fid == "TDOR":
            values = [str(t) for t in frame.text]
            stamp = ID3TimeStamp(values[0]) if values else None
            if stamp and stamp.year:
                frames.append(TORY(encoding=3, text=["%04d" % stamp.year]))
            rest = values[1:] if stamp and stamp.year and values[0] == "%04d" % stamp.year else values
            if rest:
                txxx["ORIGINALDATE"] = rest + txxx.get("ORIGINALDATE", [])
            continue
        if fid in V24_ONLY_TXXX:
            txxx.setdefault(V24_ONLY_TXXX[fid], []).extend(frame.text)
            continue
        frames.append(frame)
    frames += [TXXX(encoding=3, desc=desc, text=values) for desc, values in txxx.items()]
    return frames


def write_id3v23(path: str, pairs, art: Art | None) -> None:
    """An ID3v2.3 tag (MP3): id3v23_frames, the picture as APIC, saved as v2.3 with the
    values of a frame joined by SEPARATOR; no ID3v1."""
    id3 = id3_tag(path, id3v23_frames(pairs), art)
    kept = [id3.pop(fid) for fid in KEPT_OFF_SPEC if fid in id3]
    id3.update_to_v23()
    for frame in kept:
        id3.add(frame)
    id3.save(path, v2_version=3, v23_sep=SEPARATOR, v1=0)
