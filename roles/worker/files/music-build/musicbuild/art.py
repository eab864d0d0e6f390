"""Cover art: which picture a track gets, and the picture prepared for an output."""
from __future__ import annotations

import hashlib
import io
import json
import os

from mutagen.flac import FLAC, Picture
from mutagen.id3 import PictureType

from .fsutil import atomic_write, write_json

COVER_NAMES = ("cover", "folder", "front", "albumart")
COVER_EXTS = (".jpg", ".jpeg", ".png")


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


def load_art(source_path: str, cover_file: str | None, max_size: int, cache_dir: str | None = None,
             notes: list[str] | None = None) -> Art | None:
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
