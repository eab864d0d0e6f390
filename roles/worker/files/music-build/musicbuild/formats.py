"""Sources other than FLAC: lossless WAV, AIFF, ALAC and WavPack, lossy MP3, AAC, Opus and Vorbis.

Every one is read like a FLAC (`read_other`, the same entry as source.read_source gives):
- its audio fingerprint is a digest of its audio packets as ffmpeg's demuxer gives them
  (`ffmpeg -c copy -f hash`): the samples of a WAV/AIFF data chunk, the frames of an MP3,
  ALAC, AAC, WavPack, Opus or Vorbis stream, never its tags or pictures. A tag-only edit keeps
  it (the outputs are re-tagged), an audio edit changes it (they are re-encoded). It is
  computed when the scan reads the file: once per change of its size or mtime;
- its tags (ID3 in MP3, WAV and AIFF, RIFF INFO in WAV, MP4 atoms in ALAC/AAC, APEv2 in
  WavPack, Vorbis comments in Opus and Ogg) become the Vorbis-comment pairs every writer
  takes (`id3_pairs`, `mp4_pairs`, `ape_pairs`, `riff_info_pairs`: pure);
- its embedded pictures (APIC, covr, APEv2 "Cover Art (...)", METADATA_BLOCK_PICTURE) go
  to the art module like a FLAC's (`pictures`);
- its length comes from ffprobe (playlists).
A lossless source is decoded by ffmpeg to WAV (`start_decoder`), into the same encoder pipe
and audio plan as a FLAC. A lossy one follows the profile's `lossy` (`mode`): copied as it is
(the default), transcoded (with a note), or skipped (listed in the report).
"""
from __future__ import annotations

import base64
import errno
import json
import os
import struct
import subprocess

from .fsutil import oserror_in

# Source extensions (lower case) -> container kind. An .m4a/.mp4 holds ALAC (lossless) or
# AAC (lossy), an .ogg/.oga Vorbis, Opus or FLAC: the codec, read by ffprobe, decides.
KINDS = {
    ".wav": "wav", ".aif": "aiff", ".aiff": "aiff", ".aifc": "aiff", ".wv": "wavpack",
    ".m4a": "mp4", ".mp4": "mp4", ".m4b": "mp4", ".aac": "aac", ".mp3": "mp3",
    ".opus": "ogg", ".ogg": "ogg", ".oga": "ogg",
}
# ffprobe's codec names: lossless ones are decoded and encoded like a FLAC; lossy ones are
# named as the profile codec they are (a profile of that codec copies them as they are).
LOSSLESS_CODECS = ("alac", "wavpack", "flac")  # and every pcm_*
LOSSY_CODECS = {"mp3": "mp3", "aac": "aac", "opus": "opus", "vorbis": "vorbis"}
LOSSY_CHOICES = ("copy", "transcode", "skip")
LOSSY_BITS = 16  # the sample size a lossy source is decoded to


def _source_error():
    from .source import SourceError as error  # one exception type for every unusable source
    return error


def kind_of(path: str) -> str | None:
    """The container kind of a non-FLAC audio source by its name, or None (a FLAC, or not audio)."""
    return KINDS.get(os.path.splitext(path)[1].lower())


def is_audio(name: str) -> bool:
    """A track (FLAC or another format): encoded, copied or skipped, never silently left out."""
    return name.lower().endswith(".flac") or kind_of(name) is not None


def mode(lossy_codec: str | None, profile: dict) -> str:
    """What profile `profile` makes of a source: "encode" (a lossless source, or a lossy one
    with `lossy: transcode` into another codec), "copy" (a lossy source as it is: `lossy:
    copy`, or `transcode` into the codec it already is, which would only lose quality) or
    "skip" (`lossy: skip`, listed in the report)."""
    if not lossy_codec:
        return "encode"
    choice = profile.get("lossy", "copy")
    if choice == "skip":
        return "skip"
    if choice == "transcode" and lossy_codec != profile["codec"]:
        return "encode"
    return "copy"


# ------------------------------------------------------------------ reading a source

class Stream:
    """What the audio plan needs of a source (as source.StreamInfo gives for a FLAC): its
    rate, channels, sample size as decoded, and that ffmpeg's WAV on a pipe has no length."""
    length_known = False

    def __init__(self, codec: str, rate: int, channels: int, bits: int, length: float):
        self.codec, self.rate, self.channels, self.bits, self.length = codec, rate, channels, bits, length

    @property
    def lossy(self) -> str | None:
        return LOSSY_CODECS.get(self.codec)

    def __repr__(self) -> str:
        return f"Stream({self.codec}, {self.rate} Hz, {self.channels} ch, {self.bits} bit, {self.length:.3f} s)"


def _last_line(data: bytes | str, default: str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else default


def stream_from_probe(data: dict) -> Stream:
    """The first audio stream of ffprobe's JSON (-show_streams -show_format): pure."""
    error = _source_error()
    streams = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise error("no audio stream")
    s = streams[0]
    codec = s.get("codec_name", "?")
    if not (codec.startswith("pcm_") or codec in LOSSLESS_CODECS or codec in LOSSY_CODECS):
        raise error(f"unsupported audio codec {codec}")
    rate, channels = int(s.get("sample_rate") or 0), int(s.get("channels") or 0)
    if not rate or not channels:
        raise error(f"no audio ({codec} stream without a sample rate or channels)")
    if codec in LOSSY_CODECS:
        bits = LOSSY_BITS
    else:
        bits = int(s.get("bits_per_raw_sample") or 0) or int(s.get("bits_per_sample") or 0) or 16
        if codec.startswith("pcm_f"):
            bits = 24  # float: as 24-bit integers, what FLAC, every encoder and ffmpeg 5.1 read
    length = 0.0
    for value in (s.get("duration"), data.get("format", {}).get("duration")):
        try:
            length = float(value)
            break
        except (TypeError, ValueError):
            continue
    return Stream(codec, rate, channels, max(8, min(bits, 32)), length)


def probe(path: str) -> Stream:
    """The source's audio stream, by ffprobe (a SourceError when it is not audio it reads)."""
    if os.path.getsize(path) == 0:
        raise _source_error()("empty file (0 bytes)")
    done = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", "--", path],
                          capture_output=True, timeout=120)
    if done.returncode != 0:
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        raise _source_error()(f"not a readable {kind_of(path) or 'audio'} file: "
                              + _last_line(done.stderr, f"ffprobe exited with {done.returncode}"))
    return stream_from_probe(json.loads(done.stdout.decode("utf-8", "replace") or "{}"))


def packets_digest(path: str) -> str:
    """A digest of the audio packets of the first audio stream (no tags, no pictures)."""
    done = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-c", "copy",
                           "-f", "hash", "-"], capture_output=True, timeout=600)
    out = done.stdout.decode("ascii", "replace").strip()
    if done.returncode != 0 or "=" not in out:
        raise _source_error()("unreadable audio: " + _last_line(done.stderr, f"ffmpeg exited with {done.returncode}"))
    return out.split("=", 1)[1].lower()


def read_other(path: str) -> dict:
    """Audio fingerprint, tags, embedded pictures and length of a non-FLAC source, as
    source.read_source gives them for a FLAC; "lossy": the profile codec it is, for a lossy one."""
    from .art import embedded_pictures

    stream = probe(path)
    audio = {"format": kind_of(path), "codec": stream.codec, "packets": packets_digest(path),
             "rate": stream.rate, "channels": stream.channels, "bits": stream.bits}
    try:
        pairs, pics = read_tags(path)
    except Exception as exc:  # mutagen raises several types for damaged tags
        oserr = oserror_in(exc)
        if oserr is not None:
            raise oserr from None
        raise _source_error()(f"unreadable tags: {exc}") from None
    entry = {"audio": audio, "tags": pairs, "embedded_art": embedded_pictures(pics), "length": stream.length}
    if stream.lossy:
        entry["lossy"] = stream.lossy
    return entry


def read_any(path: str) -> dict:
    """read_source for a FLAC, read_other for any other format."""
    if kind_of(path) is None:
        from .source import read_source
        return read_source(path)
    return read_other(path)


# ------------------------------------------------------------------ decoding

def pcm_codec(bits: int) -> str:
    return "pcm_s16le" if bits <= 16 else "pcm_s24le" if bits <= 24 else "pcm_s32le"


def strictness(stream: Stream) -> list[str]:
    """ffmpeg's input options for a source: a lossless one fails on a damaged frame (its CRCs
    checked, as flac does for a FLAC), so a damaged source is reported rather than encoded
    with a glitch; a lossy one is decoded as players do, over a damaged frame."""
    return [] if stream.lossy else ["-err_detect", "crccheck+explode", "-xerror"]


def decoder_command(path: str, stream: Stream) -> list[str]:
    """ffmpeg decoding the source's first audio stream to WAV on stdout, at its sample size."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *strictness(stream), "-i", path, "-map", "0:a:0",
            "-c:a", pcm_codec(stream.bits), "-flags", "+bitexact", "-fflags", "+bitexact", "-f", "wav", "-"]


def start_decoder(path: str, stream: Stream, stdout, stderr) -> subprocess.Popen:
    return subprocess.Popen(decoder_command(path, stream), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)


def check_decodes(path: str, stream: Stream) -> None:
    """A SourceError when the source does not decode by itself (damaged audio)."""
    done = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *strictness(stream), "-i", path, "-map", "0:a:0",
                           "-f", "null", "-"], capture_output=True, timeout=600)
    if done.returncode != 0 and os.path.exists(path):
        raise _source_error()("decode failed (truncated or damaged audio): "
                              + _last_line(done.stderr, f"ffmpeg exited with {done.returncode}"))


def source_notes(stream, codec: str) -> list[str]:
    """What the report says of an output made from this source: a lossy one re-encoded."""
    lossy = getattr(stream, "lossy", None)
    if not lossy:
        return []
    return [f"transcoded from {lossy} to {codec} (lossy to lossy: the profile's lossy: transcode)"]


# ------------------------------------------------------------------ tags, as Vorbis-comment pairs

def _txxx_names() -> dict[str, str]:
    from .tags import ID3_TXXX
    names = {desc.upper(): key for key, desc in ID3_TXXX.items()}
    names["MUSICBRAINZ TRACK ID"] = "MUSICBRAINZ_TRACKID"  # Picard's MP4 name of the recording id
    return names


def _id3_text_names() -> dict[str, str]:
    from .tags import ID3_TEXT
    out: dict[str, str] = {}
    for key, frame in ID3_TEXT.items():
        out.setdefault(frame, key)  # TPUB: ORGANIZATION (LABEL writes the same frame)
    return out


def split_number(value: str, number_key: str, total_key: str) -> list[tuple[str, str]]:
    """'3/12' as TRACKNUMBER 3 and TRACKTOTAL 12 ('3' alone: the number only)."""
    number, sep, total = str(value).partition("/")
    out = [(number_key, number.strip())]
    if sep and total.strip():
        out.append((total_key, total.strip()))
    return out


NUMBER_KEYS = {"TRCK": ("TRACKNUMBER", "TRACKTOTAL"), "TPOS": ("DISCNUMBER", "DISCTOTAL")}


def id3_pairs(id3) -> list[tuple[str, str]]:
    """An ID3 tag's frames (a mutagen ID3, or any mapping of frames) as Vorbis-comment pairs,
    as tags.id3_frames maps them the other way: text frames by ID3_TEXT, TXXX by description
    (Picard's names back to theirs), COMM as COMMENT, USLT as LYRICS (UNSYNCEDLYRICS by its
    description), TRCK/TPOS as number and total, the MusicBrainz UFID as MUSICBRAINZ_TRACKID."""
    text_names, txxx_names = _id3_text_names(), _txxx_names()
    pairs: list[tuple[str, str]] = []
    for frame in (id3.values() if hasattr(id3, "values") else id3):
        fid = frame.FrameID
        if fid in NUMBER_KEYS:
            for value in frame.text:
                pairs += split_number(str(value), *NUMBER_KEYS[fid])
        elif fid == "TCON" and hasattr(frame, "genres"):
            pairs += [("GENRE", g) for g in frame.genres]
        elif fid in text_names:
            pairs += [(text_names[fid], str(v)) for v in frame.text]
        elif fid == "TXXX":
            key = txxx_names.get(frame.desc.upper(), frame.desc.upper())
            pairs += [(key, str(v)) for v in frame.text]
        elif fid == "COMM":
            pairs += [("COMMENT", str(v)) for v in frame.text]
        elif fid == "USLT":
            pairs.append(("UNSYNCEDLYRICS" if frame.desc.upper() == "UNSYNCEDLYRICS" else "LYRICS", frame.text))
        elif fid == "UFID" and frame.owner == "http://musicbrainz.org":
            pairs.append(("MUSICBRAINZ_TRACKID", frame.data.decode("utf-8", "replace")))
    return pairs


MP4_NAMES = {
    "\xa9nam": "TITLE", "\xa9ART": "ARTIST", "\xa9alb": "ALBUM", "aART": "ALBUMARTIST", "\xa9day": "DATE",
    "\xa9gen": "GENRE", "\xa9wrt": "COMPOSER", "\xa9cmt": "COMMENT", "\xa9lyr": "LYRICS", "\xa9grp": "GROUPING",
    "\xa9too": "ENCODER", "cprt": "COPYRIGHT", "soal": "ALBUMSORT", "soaa": "ALBUMARTISTSORT",
    "soar": "ARTISTSORT", "sonm": "TITLESORT", "soco": "COMPOSERSORT", "desc": "DESCRIPTION",
    "\xa9wrk": "WORK", "\xa9mvn": "MOVEMENTNAME",
}
MP4_NUMBERS = {"trkn": ("TRACKNUMBER", "TRACKTOTAL"), "disk": ("DISCNUMBER", "DISCTOTAL")}
FREEFORM = "----:com.apple.iTunes:"


def mp4_pairs(atoms) -> list[tuple[str, str]]:
    """MP4 atoms (a mutagen MP4Tags, or a mapping of atom -> values) as Vorbis-comment pairs:
    the iTunes names, track/disc numbers with totals, tempo, compilation, and iTunes freeform
    atoms by their name (Picard's names back to theirs). Pictures (covr) are not tags."""
    txxx_names = _txxx_names()
    pairs: list[tuple[str, str]] = []
    for atom, values in atoms.items():
        if atom in MP4_NAMES:
            pairs += [(MP4_NAMES[atom], str(v)) for v in values]
        elif atom in MP4_NUMBERS:
            number_key, total_key = MP4_NUMBERS[atom]
            for number, total in values:
                pairs.append((number_key, str(number)))
                if total:
                    pairs.append((total_key, str(total)))
        elif atom == "tmpo":
            pairs += [("BPM", str(v)) for v in values]
        elif atom == "cpil":
            pairs.append(("COMPILATION", "1" if values else "0"))
        elif atom.startswith(FREEFORM):
            name = atom[len(FREEFORM):]
            key = txxx_names.get(name.upper(), name.upper())
            pairs += [(key, bytes(v).decode("utf-8", "replace")) for v in values]
    return pairs


APE_NAMES = {"YEAR": "DATE", "ALBUM ARTIST": "ALBUMARTIST", "TRACK": "TRACKNUMBER", "DISC": "DISCNUMBER",
             "DEBUT ALBUM": "ORIGINALALBUM", "PUBLISHER": "ORGANIZATION", "MUSICBRAINZ_TRACKID": "MUSICBRAINZ_TRACKID"}
APE_NUMBERS = {"TRACKNUMBER": "TRACKTOTAL", "DISCNUMBER": "DISCTOTAL"}


def ape_pairs(items) -> list[tuple[str, str]]:
    """APEv2 items (a mutagen APEv2, or a mapping of key -> list of text values; binary items
    such as cover art are not tags) as Vorbis-comment pairs: keys upper-cased, Year as DATE,
    Track/Disc 'n/t' as number and total, each of an item's values a pair."""
    pairs: list[tuple[str, str]] = []
    for key, value in items.items():
        if getattr(value, "kind", 0) != 0:  # APEv2: 0 text, 1 binary, 2 external link
            continue
        values = list(value) if not isinstance(value, (str, list, tuple)) else [value] if isinstance(value, str) else value
        name = APE_NAMES.get(key.upper(), key.upper())
        for v in values:
            if name in APE_NUMBERS:
                pairs += split_number(v, name, APE_NUMBERS[name])
            else:
                pairs.append((name, v))
    return pairs


RIFF_INFO_NAMES = {"INAM": "TITLE", "IART": "ARTIST", "IPRD": "ALBUM", "ICRD": "DATE", "IGNR": "GENRE",
                   "ICMT": "COMMENT", "ITRK": "TRACKNUMBER", "IPRT": "TRACKNUMBER", "ICOP": "COPYRIGHT",
                   "ISFT": "ENCODER", "IENG": "ENGINEER", "ICMS": "COMMISSIONED", "ISRC": "SOURCE"}


def riff_info_pairs(data: bytes) -> list[tuple[str, str]]:
    """The RIFF INFO list of a WAV file's bytes (its first chunks; pure) as Vorbis-comment
    pairs: INAM TITLE, IART ARTIST, IPRD ALBUM, ICRD DATE, ... (UTF-8, else Latin-1)."""
    pairs: list[tuple[str, str]] = []
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return pairs
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"LIST" and body[:4] == b"INFO":
            sub = 4
            while sub + 8 <= len(body):
                sid, ssize = body[sub:sub + 4].decode("latin-1"), struct.unpack("<I", body[sub + 4:sub + 8])[0]
                raw = body[sub + 8:sub + 8 + ssize].rstrip(b"\0")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("latin-1")
                if sid in RIFF_INFO_NAMES:
                    pairs += split_number(text, "TRACKNUMBER", "TRACKTOTAL") if RIFF_INFO_NAMES[sid] == "TRACKNUMBER" \
                        else [(RIFF_INFO_NAMES[sid], text)]
                sub += 8 + ssize + (ssize & 1)
        if cid == b"data" and size > len(data) - pos - 8:
            break  # the rest of `data` is audio
        pos += 8 + size + (size & 1)
    return pairs


def riff_info(path: str) -> list[tuple[str, str]]:
    """The INFO list of a WAV file, reading its chunk headers (not its audio)."""
    chunks = bytearray()
    with open(path, "rb") as fh:
        head = fh.read(12)
        chunks += head
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return []
        while True:
            header = fh.read(8)
            if len(header) < 8:
                break
            size = struct.unpack("<I", header[4:8])[0]
            if header[:4] == b"LIST" and size < (16 << 20):
                chunks += header + fh.read(size + (size & 1))
            else:
                chunks += header[:4] + b"\0\0\0\0"
                fh.seek(size + (size & 1), os.SEEK_CUR)
    return riff_info_pairs(bytes(chunks))


# ------------------------------------------------------------------ pictures

class Picture:
    """An embedded picture as the art module takes it (a FLAC Picture's fields)."""

    def __init__(self, data: bytes, type: int = 3, desc: str = "", mime: str = ""):
        self.data, self.type, self.desc, self.mime = bytes(data), int(type), desc, mime

    def __repr__(self) -> str:
        return f"Picture(type {self.type}, {len(self.data)} bytes)"


APE_COVER_TYPES = {"COVER ART (FRONT)": 3, "COVER ART (BACK)": 4}


def read_tags(path: str) -> tuple[list[tuple[str, str]], list[Picture]]:
    """(pairs, pictures) of a non-FLAC source, through mutagen (and the RIFF INFO list)."""
    import mutagen
    from mutagen.apev2 import APEv2
    from mutagen.flac import Picture as FlacPicture
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags
    from mutagen._vorbis import VComment

    audio = mutagen.File(path)
    tags = audio.tags if audio is not None else None
    pairs: list[tuple[str, str]] = []
    pics: list[Picture] = []
    if isinstance(tags, ID3):
        pairs = id3_pairs(tags)
        pics = [Picture(f.data, f.type, f.desc, f.mime) for f in tags.getall("APIC")]
    elif isinstance(tags, MP4Tags):
        pairs = mp4_pairs(tags)
        pics = [Picture(c, 3, "", "image/png" if c.imageformat == c.FORMAT_PNG else "image/jpeg")
                for c in tags.get("covr", [])]
    elif isinstance(tags, APEv2):
        pairs = ape_pairs(tags)
        for key, value in tags.items():
            if value.kind == 1 and key.upper().startswith("COVER ART"):
                data = bytes(value.value)
                _filename, _, image = data.partition(b"\0")  # the picture's file name, not a description
                pics.append(Picture(image, APE_COVER_TYPES.get(key.upper(), 0)))
    elif isinstance(tags, VComment):  # Vorbis comments (Opus, Ogg), in order
        for key, value in list(tags):
            if key.upper() == "METADATA_BLOCK_PICTURE":
                try:
                    pic = FlacPicture(base64.b64decode(value))
                except Exception:
                    continue  # a damaged picture is no picture; the track's art falls through
                pics.append(Picture(pic.data, pic.type, pic.desc, pic.mime))
            else:
                pairs.append((key.upper(), value))
    if kind_of(path) == "wav":
        have = {k for k, _ in pairs}
        pairs += [(k, v) for k, v in riff_info(path) if k not in have]
    return pairs, pics


def pictures(path: str) -> list[Picture]:
    """The embedded pictures of a non-FLAC source, in the file's order ([] when unreadable)."""
    try:
        return read_tags(path)[1]
    except Exception:
        return []


# ------------------------------------------------------------------ a copy in the profile's conventions

def copy_id3_version(lossy_codec: str | None, profile: dict) -> str | None:
    """The ID3 version a copied source's tag is saved in: "2.3" for an MP3 copied into a
    profile of `id3: "2.3"` (a car stereo that reads only v2.3 would show nothing of a v2.4
    tag); None: copied byte for byte."""
    if lossy_codec == "mp3" and profile.get("id3") == "2.3":
        return "2.3"
    return None


def retag_copy(path: str, version: str) -> None:
    """Save the ID3 tag of the copy at `path` as ID3v`version` ("2.3": mutagen's v2.3
    conversion, a frame's values joined with '/', dates as TYER/TDAT); the audio is untouched.
    A file without an ID3 tag is left as it is; one whose tag cannot be read is an OSError
    saying so (the copy fails, naming the source)."""
    from mutagen.id3 import ID3, ID3NoHeaderError

    try:
        tag = ID3(path)
    except ID3NoHeaderError:
        return
    except Exception as exc:  # mutagen raises several types for a damaged tag
        raise OSError(errno.EINVAL, f"its ID3 tag cannot be saved as ID3v{version}: {exc}") from None
    if version == "2.3" and tag.version != (2, 3, 0):
        tag.update_to_v23()
        tag.save(path, v2_version=3, v23_sep="/")
