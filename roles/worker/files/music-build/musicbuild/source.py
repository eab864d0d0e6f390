"""Reading one FLAC source: its audio fingerprint, tags and embedded-art digest."""
from __future__ import annotations

import hashlib
import io
import os

from mutagen.flac import FLAC, FLACNoHeaderError

from .art import pick_picture
from .fsutil import oserror_in


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
