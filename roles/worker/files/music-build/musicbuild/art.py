"""Cover art: which picture a track gets, and the picture prepared for an output.

The candidates, in order (`candidates`): the embedded front covers (picture type 3), then the
cover files beside the tracks (COVER_NAMES x COVER_EXTS, in that order), then every other
embedded picture (file icons last). The first candidate that can be used is the track's
picture, written with its true type (a cover file is a front cover); each one left out before
it is a note saying what and why.

Whether a candidate can be used is decided by one function, `check`, the same at every
`art_max_size` and in the scan as in the encode: a picture over MAX_PIXELS is refused from its
header, never decoded; one within the bound is decoded to check it (a JPEG at its smallest
draft scale), once per picture (the prepared-art cache). A JPEG or PNG that fits (any size
with `art_max_size` 0) is then embedded as it is, byte for byte, with the source picture's
description when it is an embedded one (mime, size and depth from its header); other formats
(WebP, GIF, ...) become JPEG, which every player shows.

The scan (`embedded_pictures`, `cover_candidates`, `art_identity`) checks the candidates the
same way (`examine`) and puts into the index the candidates up to the first good one: the
track's art identity, which changes exactly when what the encode would pick can change.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass

from mutagen.flac import Picture
from mutagen.id3 import PictureType

from .fsutil import atomic_write, write_json

COVER_NAMES = ("cover", "folder", "front", "albumart")
COVER_EXTS = (".jpg", ".jpeg", ".png", ".webp")
AS_IS = ("JPEG", "PNG")  # formats embedded as they are; others are converted to JPEG
FRONT = PictureType.COVER_FRONT  # 3
ICONS = (PictureType.FILE_ICON, PictureType.OTHER_FILE_ICON)  # 1, 2: 32x32 icons, a last resort
# The largest picture ever decoded: 8192x8192 (a 600 dpi scan of an LP sleeve is 7200x7200).
# Decoded as RGB(A), that is at most 256 MiB; a JPEG scaled down is decoded at a reduced size.
MAX_PIXELS = 8192 * 8192
CACHE_FORMAT = 2  # part of the prepared-art cache's keys
# The rule deciding a candidate, where it changed what an output gets (see art_identity):
#   2: a broken picture or one over the bound falls through at art_max_size 0 too.
CHECK_RULE = 2

# Statuses from `examine`: "good" decodes; "broken" has a readable header within the bound but
# does not decode; "big" is over the bound (never decoded); "bad" has no readable header.
GOOD, BROKEN, BIG, BAD = "good", "broken", "big", "bad"

TYPE_NAMES = {0: "other picture", 1: "file icon", 2: "file icon", 3: "front cover", 4: "back cover",
              5: "leaflet page", 6: "media picture", 7: "lead artist picture", 8: "artist picture",
              9: "conductor picture", 10: "band picture", 11: "composer picture", 12: "lyricist picture",
              13: "recording location picture", 14: "picture taken during recording",
              15: "picture taken during performance", 16: "video capture", 17: "picture of a fish",
              18: "illustration", 19: "band logo", 20: "publisher logo"}


class ArtError(Exception):
    """A picture that cannot be used; the message says why (for a note), `status` what the
    scan records for it (BAD, BIG or BROKEN)."""

    def __init__(self, message: str, status: str = BROKEN):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Header:
    """What a picture's header says, read without decoding it."""
    fmt: str
    mime: str
    width: int
    height: int
    depth: int = 24
    colors: int = 0
    huge: bool = False  # too large for Pillow even to say its size

    @property
    def pixels(self) -> int:
        return MAX_PIXELS + 1 if self.huge else self.width * self.height


def type_name(ptype: int) -> str:
    return TYPE_NAMES.get(int(ptype), f"picture of type {int(ptype)}")


def picture_desc(ptype: int) -> str:
    """The description written with a picture: 'Cover' for the front cover, as before."""
    return "Cover" if ptype == FRONT else type_name(ptype).capitalize()


class Art:
    def __init__(self, data: bytes, mime: str, width: int, height: int, depth: int = 24, colors: int = 0,
                 type: int = FRONT, desc: str | None = None):
        self.data, self.mime, self.width, self.height = data, mime, width, height
        self.depth, self.colors, self.type = depth, colors, PictureType(type)
        self.desc = picture_desc(type) if desc is None else desc

    def flac_picture(self) -> Picture:
        pic = Picture()
        pic.type = self.type
        pic.mime = self.mime
        pic.desc = self.desc
        pic.width, pic.height, pic.depth, pic.colors = self.width, self.height, self.depth, self.colors
        pic.data = self.data
        return pic


# --- headers, read by hand: no decoding, no limit on the size they state -------------------------

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def png_header(data: bytes) -> Header | None:
    if not data.startswith(_PNG_SIG) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    bits, ctype = data[24], data[25]
    if not width or not height or ctype not in _PNG_CHANNELS or bits not in (1, 2, 4, 8, 16):
        return None
    colors = 0
    pos = 8
    while pos + 8 <= len(data):  # the palette, if any, comes before the first IDAT
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"PLTE":
            colors = length // 3
            break
        pos += 12 + length
    return Header("PNG", "image/png", width, height, bits * _PNG_CHANNELS[ctype], colors if ctype == 3 else 0)


def jpeg_header(data: bytes) -> Header | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            seg = data[pos + 4:pos + 10]
            if len(seg) < 6:
                return None
            precision, height, width, comps = seg[0], int.from_bytes(seg[1:3], "big"), \
                int.from_bytes(seg[3:5], "big"), seg[5]
            if not width or not height or not comps:
                return None
            return Header("JPEG", "image/jpeg", width, height, precision * comps)
        pos += 2 + length
    return None


def read_header(data: bytes) -> Header | None:
    """The picture's format, size and depth from its header alone; None if it has none."""
    hdr = jpeg_header(data) or png_header(data)
    if hdr is not None or data.startswith((b"\xff\xd8", _PNG_SIG)):
        return hdr
    from PIL import Image  # other formats: Pillow reads their header without decoding

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: the bound here is lower
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        return Header("?", "application/octet-stream", 0, 0, huge=True)
    except Exception:
        return None
    fmt = (image.format or "").upper()
    mime = Image.MIME.get(fmt, "application/octet-stream")
    return Header(fmt, mime, image.width, image.height)


def _decode(data: bytes, hdr: Header, target: int | None):
    """The decoded image, within the bound; a JPEG scaled down is decoded at a reduced size
    (`target` the longest side wanted, None to decode only to check it)."""
    if hdr.pixels > MAX_PIXELS:
        size = "" if hdr.huge else f"{hdr.width}x{hdr.height} pixels, "
        raise ArtError(f"{size}over the {MAX_PIXELS // 1_000_000}-megapixel bound for decoding", BIG)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            if (image.width, image.height) != (hdr.width, hdr.height) or image.width * image.height > MAX_PIXELS:
                raise ArtError(f"its header says {hdr.width}x{hdr.height}, its data {image.width}x{image.height}")
            if hdr.fmt == "JPEG":
                size = target or 1  # checking only: the smallest scale still reads every byte
                image.draft("RGB", (size, size))
            image.load()
    except ArtError:
        raise
    except Exception as exc:
        raise ArtError(f"cannot be decoded ({_reason(exc)})") from None
    return image


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if "<" not in text else type(exc).__name__  # no object reprs in a note


def check(data: bytes):
    """The one decision whether a picture can be used, whatever the profile's art_max_size and
    in the scan (`examine`) as in the encode (`prepare_art`): its header read, a picture over
    the bound refused from it (never decoded), one within decoded (a JPEG at its smallest draft
    scale). Returns the header and the image decoded to check it; raises ArtError saying why
    not, with the status the scan records."""
    hdr = read_header(data)
    if hdr is None:
        raise ArtError("not a picture in a format that can be read", BAD)
    return hdr, _decode(data, hdr, None)


def examine(data: bytes) -> str:
    """GOOD, BROKEN, BIG or BAD (see above): what the scan knows of a candidate (`check`)."""
    try:
        check(data)
    except ArtError as exc:
        return exc.status
    return GOOD


def prepare_art(data: bytes, max_size: int, ptype: int = FRONT) -> Art:
    """The picture as embedded, once `check` accepts it: scaled down to `max_size` (longest
    side) as JPEG; a JPEG or PNG that fits (any size with `max_size` 0) kept as it is, its bytes
    never re-encoded; other formats as JPEG. Raises ArtError saying why it cannot be used."""
    hdr, image = check(data)
    scale = bool(max_size) and max(hdr.width, hdr.height) > max_size
    if not scale and hdr.fmt in AS_IS:
        return Art(data, hdr.mime, hdr.width, hdr.height, hdr.depth, hdr.colors, ptype)
    if scale and hdr.fmt == "JPEG":  # checked at its smallest scale: decoded again, at one that suffices
        image = _decode(data, hdr, max_size)
    from PIL import Image

    image = image.convert("RGB")
    if scale:
        image.thumbnail((max_size, max_size), Image.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, optimize=True)
    return Art(buf.getvalue(), "image/jpeg", image.width, image.height, 24, 0, ptype)


# --- the order of the candidates ----------------------------------------------------------------

def find_cover_files(names) -> list[str]:
    """The cover images among a folder's file names, best first (cover.jpg, cover.jpeg, ...,
    folder.jpg, ...; any case)."""
    lowered: dict[str, str] = {}
    for n in sorted(names):
        lowered.setdefault(n.lower(), n)
    return [lowered[base + ext] for base in COVER_NAMES for ext in COVER_EXTS if base + ext in lowered]


def find_cover_file(names) -> str | None:
    """The best cover image among a folder's file names, if any."""
    found = find_cover_files(names)
    return found[0] if found else None


def ordered(embedded: list, covers: list) -> list[tuple[str, object]]:
    """The candidates in the order they are tried: ("embedded", item) for the embedded
    front covers, ("file", item) for the cover files, then the other embedded pictures (file
    icons last). Embedded items have a `.type` or a "type" key."""
    def ptype(item) -> int:
        return item["type"] if isinstance(item, dict) else item.type

    fronts = [("embedded", p) for p in embedded if ptype(p) == FRONT]
    others = [("embedded", p) for p in embedded if ptype(p) != FRONT]
    others.sort(key=lambda c: ptype(c[1]) in ICONS)  # stable: file order otherwise
    return fronts + [("file", c) for c in covers] + others


def pick_picture(pictures):
    """The embedded picture tried first (a front cover, else any other), or None."""
    found = ordered(list(pictures or []), [])
    return found[0][1] if found else None


# --- the scan's side: the track's art identity --------------------------------------------------

_EXAMINED: dict[str, str] = {}  # sha1 -> status, for the tracks of an album sharing a picture


def _examine_cached(digest: str, data: bytes) -> str:
    if digest not in _EXAMINED:
        if len(_EXAMINED) > 4096:
            _EXAMINED.clear()
        _EXAMINED[digest] = examine(data)
    return _EXAMINED[digest]


def embedded_pictures(pictures) -> list[dict]:
    """The embedded pictures as the index knows them: {"sha1", "type", "status"} in the file's
    order. Only those that can matter are examined (up to the first good front cover and the
    first good other picture); the rest have status None."""
    out = [{"sha1": hashlib.sha1(p.data).hexdigest(), "type": int(p.type), "status": None} for p in pictures]
    fronts = [i for i, item in enumerate(out) if item["type"] == FRONT]
    others = sorted((i for i, item in enumerate(out) if item["type"] != FRONT), key=lambda i: out[i]["type"] in ICONS)
    for group in (fronts, others):  # as `ordered` tries them
        for i in group:
            out[i]["status"] = _examine_cached(out[i]["sha1"], pictures[i].data)
            if out[i]["status"] == GOOD:
                break
    return out


def cover_candidates(folder: str, names: list[str], old: list | None = None) -> list[dict]:
    """The folder's cover files as the index knows them: {"name", "sig", "status"}, best
    first, up to the first good one. A file whose size and mtime are as in `old` (the last
    scan's list) is not read again; one that cannot be read now is left out."""
    known = {(c.get("name"), tuple(c.get("sig") or ())): c.get("status")
             for c in old or [] if isinstance(c, dict)}
    out = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)
            sig = [st.st_size, st.st_mtime_ns]
            status = known.get((name, tuple(sig)))
            if status is None:
                with open(path, "rb") as fh:
                    status = examine(fh.read())
        except OSError:
            continue
        out.append({"name": name, "sig": sig, "status": status})
        if status == GOOD:
            break
    return out


def art_identity(embedded: list[dict] | None, covers: list[dict] | None) -> dict | None:
    """The candidates up to the first good one, as the index records them. Whatever comes
    after a good candidate cannot change any profile's picture, so it is left out: adding
    cover.jpg beside tracks with a good embedded front cover changes nothing. A single good
    front cover is {"embedded": sha1} and a single cover file {"file", "sig"}, as before.
    Candidates that were refused (broken, or over the bound) once were embedded as they are by
    a profile with art_max_size 0: such a list says `"check": CHECK_RULE`, so an upgrade
    re-tags once (in every profile) the tracks whose picture that can have changed, and no
    other."""
    if isinstance(embedded, str):  # recorded before every picture was listed: the one it chose
        embedded = [{"sha1": embedded, "type": FRONT, "status": GOOD}]
    covers = [c for c in covers or [] if isinstance(c, dict)]  # before: one [size, mtime], no name
    chain = []
    for kind, item in ordered(embedded or [], covers):
        if kind == "file":
            chain.append({"file": item["name"], "sig": item["sig"]})
        elif item["type"] == FRONT:
            chain.append({"embedded": item["sha1"]})
        else:
            chain.append({"embedded": item["sha1"], "type": item["type"]})
        if item["status"] == GOOD:
            break
    if not chain:
        return None
    if any(item["status"] in (BROKEN, BIG) for _, item in ordered(embedded or [], covers)[:len(chain)]):
        return {"chain": chain, "check": CHECK_RULE}
    return chain[0] if len(chain) == 1 else {"chain": chain}


# --- the encode's side: the picture for one output ------------------------------------------------

def _cache_key(data: bytes, max_size: int, ptype: int) -> str:
    return f"{hashlib.sha1(data).hexdigest()}-v{CACHE_FORMAT}-t{int(ptype)}-{max_size}"


def _prepare_cached(data: bytes, max_size: int, ptype: int, cache_dir: str | None) -> Art:
    """prepare_art, kept in `cache_dir` by picture, size and type (and failures too), so the
    tracks of an album (and a re-tag) check, decode and scale a picture once. A picture kept as
    it is is not copied: its entry says so, and the source's bytes are used."""
    if not cache_dir:
        return prepare_art(data, max_size, ptype)
    cached = os.path.join(cache_dir, _cache_key(data, max_size, ptype))
    try:
        with open(cached + ".json", encoding="utf-8") as fh:
            meta = json.load(fh)
        if "error" in meta:
            raise ArtError(meta["error"], meta.get("status", BROKEN))
        if meta.get("as_is"):
            kept = data
        else:
            with open(cached + ".img", "rb") as fh:
                kept = fh.read()
        return Art(kept, meta["mime"], meta["width"], meta["height"], meta["depth"], meta["colors"],
                   meta["type"], meta["desc"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        art = prepare_art(data, max_size, ptype)
    except ArtError as exc:
        _store(cache_dir, cached, None, {"error": str(exc), "status": exc.status})
        raise
    as_is = art.data is data
    _store(cache_dir, cached, None if as_is else art.data,
           {"mime": art.mime, "width": art.width, "height": art.height, "depth": art.depth, "colors": art.colors,
            "type": int(art.type), "desc": art.desc, **({"as_is": True} if as_is else {})})
    return art


def _store(cache_dir: str, cached: str, data: bytes | None, meta: dict) -> None:
    try:
        os.makedirs(cache_dir, exist_ok=True)
        if data is not None:
            atomic_write(cached + ".img", data)
        write_json(cached + ".json", meta)
    except OSError:
        pass  # a cache that cannot be written costs time, not the picture


def _label(kind: str, item) -> str:
    if kind == "file":
        return os.path.basename(item)
    return f"the embedded {type_name(item.type)}"


def load_art(source_path: str, cover_file: str | list[str] | None, max_size: int, cache_dir: str | None = None,
             notes: list[str] | None = None) -> Art | None:
    """The track's picture: the first candidate (see the module's docstring) that can be
    used, prepared for `max_size`, with its true type. Each candidate left out before it is a
    note in `notes`: what, why, and what was used instead."""
    from .source import flac_metadata  # (source.py imports this module)

    from . import formats

    try:
        if formats.kind_of(source_path) is not None:  # another format: APIC, covr, APEv2, Ogg pictures
            pictures = formats.pictures(source_path)
        else:
            pictures = list(flac_metadata(source_path).pictures)  # past any ID3v2 tags in front
    except Exception:
        pictures = []  # a source whose metadata cannot be read fails in its encode, not here
    covers = [cover_file] if isinstance(cover_file, str) else list(cover_file or [])
    left_out: list[str] = []
    art = None
    for kind, item in ordered(pictures, covers):
        label = _label(kind, item)
        try:
            if kind == "file":
                try:
                    with open(item, "rb") as fh:
                        data = fh.read()
                except OSError as exc:
                    raise ArtError(f"cannot be read ({exc.strerror})") from None
                ptype = FRONT
            else:
                data, ptype = item.data, item.type
            art = _prepare_cached(data, max_size, ptype, cache_dir)
            if kind == "embedded" and art.data == data:  # the source's own picture: its description too
                art.desc = item.desc
        except ArtError as exc:
            left_out.append(f"cover art: left out {label}: {exc}")
            continue
        if left_out:
            left_out[-1] += f"; used {label} instead"
        break
    else:
        if left_out:
            left_out[-1] += "; no picture embedded"
    if notes is not None:
        notes.extend(left_out)
    return art
