"""Reading one FLAC source: its audio fingerprint, tags and embedded-art digest.

Every valid FLAC is read, including what the FLAC spec allows to be unknown or in front:
ID3v2 tags before `fLaC` (skipped: one or several, with or without a v2.4 footer), an unset
MD5 (the fingerprint is then a digest of the audio frames), and an unknown length
(STREAMINFO total samples 0, as streaming encoders write): the length is then counted from
the last frame's header, checked by its CRCs, or by decoding when that fails. Tags old
taggers append after the audio (ID3v1, APEv1/v2, Lyrics3v2) are no part of the FLAC stream:
the decoder is given the stream alone (`start_decoder`) and the fingerprint leaves them out.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import threading

from mutagen.flac import FLAC, FLACNoHeaderError

from .art import embedded_pictures
from .fsutil import oserror_in


class SourceError(Exception):
    """A source track cannot be used; the message is the reason shown to the user."""


def read_source(path: str) -> dict:
    """Audio fingerprint, tags and embedded-art digest of one FLAC source."""
    size = os.path.getsize(path)  # an OSError (unreadable, vanished) is the caller's: not the file's fault
    if size == 0:
        raise SourceError("empty file (0 bytes)")
    try:
        flac = flac_metadata(path)
    except SourceError:
        raise
    except Exception as exc:  # mutagen raises several types for damaged metadata
        oserr = oserror_in(exc)
        if oserr is not None:
            raise oserr from None
        raise SourceError(f"unreadable FLAC metadata: {exc}") from None
    info = flac.info
    samples = info.total_samples
    stream = None
    if not samples or not info.md5_signature:
        stream = read_streaminfo(path)
    if not samples:  # unknown length (a streamed FLAC): counted
        samples = count_samples(path, stream)
        if not samples:
            raise SourceError("no audio (no audio frames)")
    audio = {
        "md5": f"{info.md5_signature:032x}",
        "rate": info.sample_rate,
        "channels": info.channels,
        "bits": info.bits_per_sample,
        "samples": samples,
    }
    if not info.md5_signature:
        audio["md5"] = "sha1:" + frames_digest(path, stream)
    pairs = [(k.upper(), v) for k, v in (flac.tags or [])]
    return {
        "audio": audio,
        "tags": pairs,
        # Every embedded picture's digest, type and status, for the track's art identity.
        "embedded_art": embedded_pictures(flac.pictures),
        "length": samples / info.sample_rate if info.sample_rate else 0.0,
    }


def flac_metadata(path: str) -> FLAC:
    """mutagen's view of a FLAC's metadata blocks (tags, pictures, STREAMINFO). mutagen reads
    past one ID3v2 tag in front; behind several, or one with a footer, it is given the
    metadata from `fLaC` on (a SourceError when there is no `fLaC` after the ID3v2 tags)."""
    try:
        return FLAC(path)
    except FLACNoHeaderError:
        pass
    stream = read_streaminfo(path)  # a SourceError when there is no fLaC either
    with open(path, "rb") as fh:
        fh.seek(stream.start)
        return FLAC(io.BytesIO(fh.read(stream.frames_at - stream.start)))


class StreamInfo:
    """A FLAC's STREAMINFO, where the stream starts (`fLaC`, after any ID3v2 tags), where its
    audio frames start (after the metadata blocks) and where they end (before any tags
    appended to the file: ID3v1, APE, Lyrics3); `frames_end` None: at the end of the file."""

    def __init__(self, rate: int, channels: int, bits: int, total_samples: int, md5: bytes,
                 min_blocksize: int, max_blocksize: int, max_framesize: int, frames_at: int,
                 start: int = 0, frames_end: int | None = None, size: int | None = None):
        self.rate, self.channels, self.bits = rate, channels, bits
        self.total_samples, self.md5 = total_samples, md5
        self.min_blocksize, self.max_blocksize, self.max_framesize = min_blocksize, max_blocksize, max_framesize
        self.frames_at, self.start, self.frames_end, self.size = frames_at, start, frames_end, size

    @property
    def whole_file(self) -> bool:
        """The file is the FLAC stream alone: nothing before `fLaC`, nothing after the frames."""
        return self.start == 0 and (self.frames_end is None or self.frames_end == self.size)

    @property
    def length_known(self) -> bool:
        return self.total_samples > 0

    def __repr__(self) -> str:
        return (f"StreamInfo({self.rate} Hz, {self.channels} ch, {self.bits} bit, {self.total_samples} samples, "
                f"fLaC at {self.start}, frames at {self.frames_at} to {self.frames_end})")


def id3v2_size(header: bytes) -> int:
    """The length of an ID3v2 tag (header, body and footer) from its first 10 bytes; 0 when
    they are not an ID3v2 header."""
    if len(header) < 10 or header[:3] != b"ID3" or any(b & 0x80 for b in header[6:10]):
        return 0
    body = (header[6] << 21) | (header[7] << 14) | (header[8] << 7) | header[9]
    return 10 + body + (10 if header[5] & 0x10 else 0)


def parse_streaminfo(block: bytes) -> dict:
    """The fields of a STREAMINFO block's 34 bytes."""
    if len(block) < 34:
        raise SourceError("truncated metadata (STREAMINFO)")
    packed = int.from_bytes(block[10:18], "big")
    return {
        "min_blocksize": int.from_bytes(block[0:2], "big"),
        "max_blocksize": int.from_bytes(block[2:4], "big"),
        "max_framesize": int.from_bytes(block[7:10], "big"),
        "rate": packed >> 44,
        "channels": ((packed >> 41) & 0x7) + 1,
        "bits": ((packed >> 36) & 0x1F) + 1,
        "total_samples": packed & 0xFFFFFFFFF,
        "md5": bytes(block[18:34]),
    }


def read_streaminfo(path: str) -> StreamInfo:
    """STREAMINFO and the offset of the first audio frame, reading only the metadata."""
    with open(path, "rb") as fh:
        start = 0
        while True:  # ID3v2 tags in front of fLaC, as some tools write them (readers skip them)
            skip = id3v2_size(fh.read(10))
            if not skip:
                break
            start += skip
            fh.seek(start)
        fh.seek(start)
        if fh.read(4) != b"fLaC":
            raise SourceError("not a FLAC file (no fLaC header)")
        info = None
        while True:
            header = fh.read(4)
            if len(header) < 4:
                raise SourceError("truncated metadata")
            length = int.from_bytes(header[1:4], "big")
            if info is None:
                if header[0] & 0x7F != 0:
                    raise SourceError("unreadable FLAC metadata: the first block is not STREAMINFO")
                info = parse_streaminfo(fh.read(length))
            else:
                fh.seek(length, io.SEEK_CUR)
            if header[0] & 0x80:
                break
        frames_at = fh.tell()
        size = fh.seek(0, io.SEEK_END)
        stream = StreamInfo(frames_at=frames_at, start=start, size=size, **info)
        end = appended_tags_start(fh, frames_at, size)
        if end < size:
            # An ID3v1 tag's mark ("TAG") is only 3 bytes: audio that ends at the end of the
            # file (its last frame's CRC covers it) has no tag after it, whatever it ends with.
            fh.seek(max(frames_at, size - last_frame_window(stream)))
            if samples_from_last_frame(fh.read(), stream) is not None:
                end = size
        stream.frames_end = end
        return stream


# Tags that old taggers append after the audio: ID3v1 (128 bytes, "TAG"; "TAG+" 227 bytes
# before it), APEv1/APEv2 (a 32-byte footer "APETAGEX", and a header with APEv2's flag),
# Lyrics3v2 (its size in 6 digits, then "LYRICS200"), in any order.
def appended_tags_start(fh, lowest: int, size: int) -> int:
    """Where the tags appended to a file of `size` bytes start: `size` when there are none.
    `fh` is the open file (any seekable binary file object); no tag reaches below `lowest`
    (the end of the metadata blocks)."""
    end = size
    while True:
        found = _appended_tag(fh, end)
        if found is None or found < lowest:
            return end
        end = found


def _appended_tag(fh, end: int) -> int | None:
    """Where a tag that ends at `end` starts, or None when none does."""
    def at(pos: int, n: int) -> bytes:
        if pos < 0:
            return b""
        fh.seek(pos)
        return fh.read(n)

    if at(end - 128, 3) == b"TAG":
        return end - 227 - 128 if at(end - 128 - 227, 4) == b"TAG+" else end - 128
    footer = at(end - 32, 32)
    if len(footer) == 32 and footer[:8] == b"APETAGEX":
        version, length, _count, flags = (int.from_bytes(footer[i:i + 4], "little") for i in (8, 12, 16, 20))
        if version in (1000, 2000) and length >= 32:
            return end - length - (32 if version == 2000 and flags & 0x80000000 else 0)
    mark = at(end - 15, 15)
    if len(mark) == 15 and mark[6:] == b"LYRICS200" and mark[:6].isdigit():
        start = end - 15 - int(mark[:6])
        if at(start, 11) == b"LYRICSBEGIN":
            return start
    return None


def frames_digest(path: str, stream: StreamInfo | None = None) -> str:
    """Digest of a FLAC's audio frames (from the end of the metadata blocks to the end of
    the frames: tags appended after them do not count)."""
    stream = stream or read_streaminfo(path)
    h = hashlib.sha1()
    for chunk in _stream_bytes(path, stream, stream.frames_at):
        h.update(chunk)
    return h.hexdigest()


def _stream_bytes(path: str, stream: StreamInfo, start: int):
    """The bytes of `path` from `start` to the end of the FLAC frames (tags appended after them
    left out), in chunks of at most 1 MiB."""
    with open(path, "rb") as fh:
        end = stream.frames_end if stream.frames_end is not None else fh.seek(0, io.SEEK_END)
        fh.seek(start)
        left = end - start
        while left > 0:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            yield chunk
            left -= len(chunk)


def start_decoder(path: str, stream: StreamInfo, args: list[str], stdout, stderr) -> subprocess.Popen:
    """`flac <args>` (--decode, --test ...) run on the FLAC stream of `path`: the file itself
    when it is nothing else, else the bytes from `fLaC` to the end of the frames on its
    stdin (flac refuses several ID3v2 tags in front, or one with a footer, and loses sync on
    tags appended after the frames). `stdout`, `stderr` as Popen's; wait() for it as usual
    (the thread feeding it ends when its stdin is read to the end or closed)."""
    if stream.whole_file:
        return subprocess.Popen(["flac", *args, "--", path], stdout=stdout, stderr=stderr)
    proc = subprocess.Popen(["flac", *args, "-"], stdin=subprocess.PIPE, stdout=stdout, stderr=stderr)

    def feed():
        try:
            for chunk in _stream_bytes(path, stream, stream.start):
                proc.stdin.write(chunk)
        except OSError:
            pass  # flac stopped reading (it failed, and says why), or the file went away
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    threading.Thread(target=feed, daemon=True).start()
    return proc


# ------------------------------------------------------------------ a stream's length, counted

def _crc_table(poly: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
        table.append(crc)
    return table


_CRC8 = _crc_table(0x07, 8)
_CRC16 = _crc_table(0x8005, 16)


def crc8(data: bytes) -> int:
    """FLAC's frame header CRC-8 (polynomial x^8 + x^2 + x + 1)."""
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def crc16(data: bytes) -> int:
    """FLAC's frame CRC-16 (polynomial x^16 + x^15 + x^2 + 1)."""
    crc, table = 0, _CRC16
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


# Frame header codes (FLAC format, "Frame header"): sample rates and sample sizes.
_RATES = {1: 88200, 2: 176400, 3: 192000, 4: 8000, 5: 16000, 6: 22050, 7: 24000, 8: 32000, 9: 44100,
          10: 48000, 11: 96000}
_BITS = {1: 8, 2: 12, 4: 16, 5: 20, 6: 24, 7: 32}


def frame_header(buf: bytes, pos: int, stream: StreamInfo) -> tuple[int, int, int] | None:
    """(first sample, block size, header length) of the frame header at `pos`, when there is
    a valid one consistent with STREAMINFO (sync code, codes, CRC-8); else None."""
    end = len(buf)
    if pos + 6 > end or buf[pos] != 0xFF or buf[pos + 1] not in (0xF8, 0xF9):
        return None
    variable = buf[pos + 1] & 1
    bs_code, rate_code = buf[pos + 2] >> 4, buf[pos + 2] & 0xF
    chan_code, bits_code, reserved = buf[pos + 3] >> 4, (buf[pos + 3] >> 1) & 7, buf[pos + 3] & 1
    if bs_code == 0 or rate_code == 15 or chan_code > 10 or bits_code == 3 or reserved:
        return None
    channels = chan_code + 1 if chan_code < 8 else 2
    if channels != stream.channels:
        return None
    if bits_code and _BITS[bits_code] != stream.bits:
        return None
    if rate_code in _RATES and _RATES[rate_code] != stream.rate:
        return None
    # the frame or sample number, UTF-8-like coded (1 to 7 bytes)
    i = pos + 4
    first = buf[i]
    if first < 0x80:
        number, extra = first, 0
    elif first < 0xC0 or first == 0xFF:
        return None
    else:
        extra, mask = 1, 0x20
        while first & mask:
            extra, mask = extra + 1, mask >> 1
        number = first & (mask - 1)
    if extra == 6 and not variable:  # frame numbers have at most 31 bits
        return None
    if i + 1 + extra > end:
        return None
    for k in range(1, extra + 1):
        byte = buf[i + k]
        if byte & 0xC0 != 0x80:
            return None
        number = (number << 6) | (byte & 0x3F)
    i += 1 + extra
    if bs_code == 1:
        blocksize = 192
    elif bs_code <= 5:
        blocksize = 576 << (bs_code - 2)
    elif bs_code == 6:
        if i + 1 > end:
            return None
        blocksize, i = buf[i] + 1, i + 1
    elif bs_code == 7:
        if i + 2 > end:
            return None
        blocksize, i = int.from_bytes(buf[i:i + 2], "big") + 1, i + 2
    else:
        blocksize = 256 << (bs_code - 8)
    if rate_code == 12:
        i += 1
    elif rate_code in (13, 14):
        i += 2
    if i + 1 > end or crc8(buf[pos:i]) != buf[i]:
        return None
    if stream.max_blocksize and blocksize > stream.max_blocksize:
        return None
    first_sample = number if variable else number * (stream.min_blocksize or blocksize)
    return first_sample, blocksize, i + 1 - pos


def samples_from_last_frame(tail: bytes, stream: StreamInfo) -> int | None:
    """The number of samples of a stream whose last bytes are `tail`: from the last frame's
    header (the one whose CRC-16 covers it to the end of the file). None when no such frame
    is found in `tail` (trailing bytes that are not audio, a tail too short)."""
    if len(tail) < 8:
        return None
    want = int.from_bytes(tail[-2:], "big")
    pos = len(tail) - 8
    while pos >= 0:
        pos = tail.rfind(b"\xff", 0, pos + 1)
        if pos < 0:
            return None
        header = frame_header(tail, pos, stream)
        if header is not None and crc16(tail[pos:-2]) == want:
            first, blocksize, _ = header
            return first + blocksize
        pos -= 1
    return None


def last_frame_window(stream: StreamInfo) -> int:
    """How many bytes at the end of the frames hold the whole last frame, at most."""
    worst_frame = max(stream.max_framesize,
                      (stream.max_blocksize or 65535) * stream.channels * ((stream.bits + 7) // 8) + 64)
    return worst_frame + 1024


def count_samples(path: str, stream: StreamInfo) -> int:
    """The number of samples of a FLAC whose STREAMINFO does not say it: read from its last
    frame (a few kB), else by decoding it (about 1000x faster than real time)."""
    end = stream.frames_end if stream.frames_end is not None else os.path.getsize(path)
    window = min(end - stream.frames_at, last_frame_window(stream))
    with open(path, "rb") as fh:
        fh.seek(end - window)
        tail = fh.read(window)
    counted = samples_from_last_frame(tail, stream)
    if counted is not None:
        return counted
    return decoded_samples(path, stream)


def decoded_samples(path: str, stream: StreamInfo) -> int:
    """The number of samples the FLAC decoder gives for `path`."""
    proc = start_decoder(path, stream, ["--decode", "--stdout", "--silent", "--force-raw-format", "--endian=little",
                                        "--sign=signed"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    total = 0
    for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
        total += len(chunk)
    err = proc.stderr.read()
    proc.wait()
    if proc.returncode != 0:
        lines = [ln.strip() for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise SourceError("FLAC decode failed (truncated or damaged audio): "
                          + (lines[-1] if lines else f"decoder exited with {proc.returncode}"))
    return total // (stream.channels * ((stream.bits + 7) // 8))
