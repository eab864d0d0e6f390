"""Sources other than FLAC (musicbuild/formats.py): what each profile makes of them, their tags
as Vorbis-comment pairs, and a fingerprint that a tag-only edit keeps and an audio edit changes,
on files made by the real encoders (sox, ffmpeg, lame, opusenc, oggenc) and tagged by mutagen."""
from __future__ import annotations

import io
import struct
import subprocess

import mutagen
import pytest
from mutagen.apev2 import APEValue, BINARY
from mutagen.id3 import APIC, COMM, TCON, TIT2, TPE1, TPOS, TRCK, TXXX, UFID, USLT
from mutagen.mp4 import MP4, MP4Cover

from musicbuild import formats, scan
from musicbuild.profile import ProfileError, normalize_profile, parse_tup_config, render_tup_config
from musicbuild.source import SourceError


# ------------------------------------------------------------------ the profile's `lossy`

@pytest.mark.parametrize("lossy, codec, expected", [
    (None, "mp3", "encode"),  # a lossless source is always encoded
    ("mp3", "mp3", "copy"), ("mp3", "opus", "copy"),  # the default: copy
])
def test_mode_default(lossy, codec, expected):
    assert formats.mode(lossy, normalize_profile("p", {"codec": codec})) == expected


@pytest.mark.parametrize("setting, lossy, codec, expected", [
    ("copy", "aac", "flac", "copy"),
    ("skip", "opus", "opus", "skip"), ("skip", None, "opus", "encode"),
    ("transcode", "aac", "mp3", "encode"), ("transcode", "vorbis", "opus", "encode"),
    # transcoding into the codec the file already is would only lose quality: copied as it is
    ("transcode", "mp3", "mp3", "copy"), ("transcode", "opus", "opus", "copy"),
])
def test_mode(setting, lossy, codec, expected):
    assert formats.mode(lossy, normalize_profile("p", {"codec": codec, "lossy": setting})) == expected


def test_lossy_field_validated_rendered_and_parsed():
    with pytest.raises(ProfileError, match=r"profile 'car', field 'lossy': expected copy, transcode or skip, got 'drop'"):
        normalize_profile("car", {"codec": "mp3", "lossy": "drop"})
    # the default renders as before the field existed; the others round-trip
    assert "LOSSY" not in render_tup_config("car", {"codec": "mp3"})
    for value in ("transcode", "skip"):
        text = render_tup_config("car", {"codec": "mp3", "lossy": value})
        assert f"CONFIG_LOSSY={value}\n" in text
        assert parse_tup_config(text, "car")[1]["lossy"] == value
    assert parse_tup_config(render_tup_config("car", {"codec": "mp3"}), "car")[1]["lossy"] == "copy"


def test_every_format_is_a_track():
    for name in ("a.flac", "A.WAV", "b.aif", "b.aiff", "c.m4a", "d.wv", "e.mp3", "f.opus", "g.ogg", "h.oga", "i.aac"):
        assert scan.is_track(name), name
    for name in ("cover.jpg", "notes.txt", "album.cue", "x.m3u8", "wav"):
        assert not scan.is_track(name), name


# ------------------------------------------------------------------ tags, pure

def test_id3_pairs():
    frames = [TIT2(encoding=3, text=["T"]), TPE1(encoding=3, text=["A", "B"]), TRCK(encoding=3, text=["3/12"]),
              TPOS(encoding=3, text=["1"]), TCON(encoding=3, text=["Jazz"]),
              TXXX(encoding=3, desc="MusicBrainz Album Id", text=["alb"]), TXXX(encoding=3, desc="mood x", text=["m"]),
              COMM(encoding=3, lang="eng", desc="", text=["c1", "c2"]),
              USLT(encoding=3, lang="eng", desc="", text="words"),
              USLT(encoding=3, lang="eng", desc="UNSYNCEDLYRICS", text="other"),
              UFID(owner="http://musicbrainz.org", data=b"rec-id")]
    assert formats.id3_pairs(frames) == [
        ("TITLE", "T"), ("ARTIST", "A"), ("ARTIST", "B"), ("TRACKNUMBER", "3"), ("TRACKTOTAL", "12"),
        ("DISCNUMBER", "1"), ("GENRE", "Jazz"), ("MUSICBRAINZ_ALBUMID", "alb"), ("MOOD X", "m"),
        ("COMMENT", "c1"), ("COMMENT", "c2"), ("LYRICS", "words"), ("UNSYNCEDLYRICS", "other"),
        ("MUSICBRAINZ_TRACKID", "rec-id")]


def test_mp4_pairs():
    atoms = {"\xa9nam": ["T"], "\xa9ART": ["A"], "trkn": [(3, 12)], "disk": [(1, 0)], "cpil": True, "tmpo": [120],
             "----:com.apple.iTunes:MusicBrainz Track Id": [b"rec"], "----:com.apple.iTunes:CUSTOM": [b"v1", b"v2"],
             "covr": [b"not a tag"]}
    assert formats.mp4_pairs(atoms) == [
        ("TITLE", "T"), ("ARTIST", "A"), ("TRACKNUMBER", "3"), ("TRACKTOTAL", "12"), ("DISCNUMBER", "1"),
        ("COMPILATION", "1"), ("BPM", "120"), ("MUSICBRAINZ_TRACKID", "rec"), ("CUSTOM", "v1"), ("CUSTOM", "v2")]


def test_ape_pairs():
    items = {"Title": ["T"], "Artist": ["A", "B"], "Year": ["1999"], "Track": ["4/8"], "Album Artist": ["AA"],
             "Disc": ["2"]}
    assert formats.ape_pairs(items) == [
        ("TITLE", "T"), ("ARTIST", "A"), ("ARTIST", "B"), ("DATE", "1999"), ("TRACKNUMBER", "4"),
        ("TRACKTOTAL", "8"), ("ALBUMARTIST", "AA"), ("DISCNUMBER", "2")]


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def test_riff_info_pairs():
    info = b"INFO" + _chunk(b"INAM", "Tïtle\0".encode()) + _chunk(b"IART", b"Art\0") + _chunk(b"ITRK", b"2/9\0") \
        + _chunk(b"IXYZ", b"unknown")
    body = b"WAVE" + _chunk(b"fmt ", bytes(16)) + _chunk(b"LIST", info) + _chunk(b"data", bytes(8))
    data = b"RIFF" + struct.pack("<I", len(body)) + body
    assert formats.riff_info_pairs(data) == [("TITLE", "Tïtle"), ("ARTIST", "Art"), ("TRACKNUMBER", "2"),
                                             ("TRACKTOTAL", "9")]
    assert formats.riff_info_pairs(b"not riff") == []


def test_stream_from_probe():
    s = formats.stream_from_probe({"streams": [{"codec_type": "video", "codec_name": "png"},
                                               {"codec_type": "audio", "codec_name": "alac", "sample_rate": "96000",
                                                "channels": 6, "bits_per_raw_sample": "24", "duration": "2.5"}]})
    assert (s.codec, s.rate, s.channels, s.bits, s.length, s.lossy, s.length_known) == \
        ("alac", 96000, 6, 24, 2.5, None, False)
    s = formats.stream_from_probe({"streams": [{"codec_type": "audio", "codec_name": "aac", "sample_rate": "44100",
                                                "channels": 2}], "format": {"duration": "3.0"}})
    assert (s.lossy, s.bits, s.length) == ("aac", 16, 3.0)
    s = formats.stream_from_probe({"streams": [{"codec_type": "audio", "codec_name": "pcm_f32le", "sample_rate": "48000",
                                                "channels": 2, "bits_per_sample": 32}]})
    assert (s.lossy, s.bits) == (None, 24)  # a float WAV is given to the encoders as 24-bit integers
    for data, message in (({"streams": []}, "no audio stream"),
                          ({"streams": [{"codec_type": "audio", "codec_name": "wmav2", "sample_rate": "44100",
                                         "channels": 2}]}, "unsupported audio codec wmav2")):
        with pytest.raises(SourceError, match=message):
            formats.stream_from_probe(data)


# ------------------------------------------------------------------ real files

def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (9, 90, 200)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


def _wav(path, freq: int, bits: int = 16) -> None:
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", str(bits), str(path), "synth", "0.5", "sine",
                    str(freq)], check=True)


def make(folder, ext: str, freq: int):
    """A half-second file of `ext` made by the real encoder, titled "one" (with a picture
    where the format has one)."""
    wav = folder / f"src{freq}.wav"
    _wav(wav, freq, 24 if ext == ".wv" else 16)
    path = folder / f"track{ext}"
    ff = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav)]
    if ext == ".wav":
        subprocess.run([*ff, "-metadata", "title=one", str(path)], check=True)
    elif ext in (".aiff", ".mp3"):
        if ext == ".mp3":
            subprocess.run(["lame", "--quiet", str(wav), str(path)], check=True)
        else:
            subprocess.run([*ff, str(path)], check=True)
        audio = mutagen.File(path)
        audio.add_tags()
        audio.tags.add(TIT2(encoding=3, text=["one"]))
        audio.tags.add(APIC(encoding=3, mime="image/png", type=3, desc="", data=PNG))
        audio.save()
    elif ext in (".m4a", ".aac.m4a"):
        path = folder / "track.m4a"
        subprocess.run([*ff, "-c:a", "alac" if ext == ".m4a" else "aac", str(path)], check=True)
        audio = MP4(path)
        audio["\xa9nam"] = ["one"]
        audio["covr"] = [MP4Cover(PNG, imageformat=MP4Cover.FORMAT_PNG)]
        audio.save()
    elif ext == ".wv":
        subprocess.run([*ff, "-c:a", "wavpack", "-bits_per_raw_sample", "24", str(path)], check=True)
        audio = mutagen.File(path)
        audio.delete()
        audio = mutagen.File(path)
        audio.add_tags()
        audio.tags["Title"] = "one"
        audio.tags["Cover Art (Front)"] = APEValue(b"c.png\0" + PNG, BINARY)
        audio.save()
    elif ext == ".opus":
        subprocess.run(["opusenc", "--quiet", "--title", "one", "--picture", "3||||" + str(_png_file(folder)),
                        str(wav), str(path)], check=True)
    elif ext == ".ogg":
        subprocess.run(["oggenc", "-Q", "-t", "one", "-o", str(path), str(wav)], check=True)
    wav.unlink()
    return path


def _png_file(folder):
    path = folder / "pic.png"
    path.write_bytes(PNG)
    return path


def retitle(path, value: str) -> None:
    audio = mutagen.File(path)
    if isinstance(audio, MP4):
        audio["\xa9nam"] = [value]
    elif path.suffix == ".wv":
        audio.tags["Title"] = value
    elif path.suffix in (".opus", ".ogg"):
        audio["TITLE"] = [value]
    else:
        if audio.tags is None:
            audio.add_tags()
        audio.tags.add(TIT2(encoding=3, text=[value]))
    audio.save()


FORMATS = {".wav": (None, "pcm_s16le", False), ".aiff": (None, "pcm_s16be", True), ".m4a": (None, "alac", True),
           ".wv": (None, "wavpack", True), ".mp3": ("mp3", "mp3", True), ".aac.m4a": ("aac", "aac", True),
           ".opus": ("opus", "opus", True), ".ogg": ("vorbis", "vorbis", False)}


@pytest.mark.parametrize("ext", FORMATS)
def test_read_tag_edit_keeps_the_fingerprint_audio_edit_changes_it(tmp_path, ext):
    lossy, codec, has_art = FORMATS[ext]
    path = make(tmp_path, ext, 440)
    first = formats.read_any(str(path))
    assert first.get("lossy") == lossy and first["audio"]["codec"] == codec
    assert ("TITLE", "one") in first["tags"]
    assert 0.45 < first["length"] < 0.6
    assert [p["type"] for p in first["embedded_art"]] == ([3] if has_art else [])
    if has_art:
        assert [p.data for p in formats.pictures(str(path))] == [PNG]
    retitle(path, "two")
    second = formats.read_any(str(path))
    assert ("TITLE", "two") in second["tags"] and ("TITLE", "one") not in second["tags"]
    assert second["audio"] == first["audio"]  # a tag-only edit: re-tagged, never re-encoded
    path.unlink()
    path = make(tmp_path, ext, 660)
    assert formats.read_any(str(path))["audio"] != first["audio"]  # an audio edit: re-encoded


def test_unreadable_sources_are_one_line(tmp_path):
    (tmp_path / "x.m4a").write_text("text, not audio\n")
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(SourceError, match=r"^not a readable mp4 file: .*") as exc:
        formats.read_any(str(tmp_path / "x.m4a"))
    assert "\n" not in str(exc.value)
    with pytest.raises(SourceError, match=r"^empty file \(0 bytes\)$"):
        formats.read_any(str(tmp_path / "e.wav"))


def test_decoder_gives_the_source_samples(tmp_path):
    """What the encoders get: ffmpeg's WAV of the source at its sample size (24-bit WavPack)."""
    path = make(tmp_path, ".wv", 500)
    stream = formats.probe(str(path))
    assert stream.bits == 24
    wav = subprocess.run(formats.decoder_command(str(path), stream), capture_output=True, check=True).stdout
    ref = tmp_path / "ref.wav"
    _wav(ref, 500, 24)
    raw = subprocess.run(["sox", str(ref), "-t", "raw", "-"], capture_output=True, check=True).stdout
    assert wav[-len(raw):] == raw


def test_pipeline_downmixes_a_surround_hires_wav_and_notes_lossy_to_lossy(tmp_path):
    """run_pipeline with a non-FLAC source: ffmpeg decodes, the audio plan converts as for a
    FLAC (5.1 at 96 kHz into MP3: a downmix, noted), and a lossy source says it is transcoded."""
    from mutagen.mp3 import MP3

    from musicbuild.encode import run_pipeline

    wav = tmp_path / "surround.wav"
    subprocess.run(["sox", "-n", "-r", "96000", "-c", "6", "-b", "24", str(wav), "synth", "0.5", "sine", "440"],
                   check=True)
    out, notes = tmp_path / "out.mp3", []
    run_pipeline(str(wav), "mp3", {"quality": 2}, str(out), notes)
    info = MP3(out).info
    assert info.channels == 2 and 0.45 < info.length < 0.6
    assert any(n.startswith("downmixed 6 channels to 2") for n in notes), notes
    assert not any("lossy" in n for n in notes)

    ogg = make(tmp_path, ".ogg", 440)
    out, notes = tmp_path / "out.opus", []
    run_pipeline(str(ogg), "opus", {"bitrate": 64}, str(out), notes)
    assert mutagen.File(out).info.length > 0.45
    assert notes == ["transcoded from vorbis to opus (lossy to lossy: the profile's lossy: transcode)"]


def test_damaged_lossless_source_is_a_source_error(tmp_path):
    from musicbuild.encode import run_pipeline

    good = make(tmp_path, ".wv", 440)
    data = good.read_bytes()
    half = len(data) // 2
    bad = tmp_path / "bad.wv"
    bad.write_bytes(data[:half] + bytes(1000) + data[half + 1000:])  # 1000 bytes of audio zeroed
    with pytest.raises(SourceError, match=r"^decode failed \(truncated or damaged audio\): .*CRC error") as exc:
        run_pipeline(str(bad), "flac", {"compression_level": 5}, str(tmp_path / "o.flac"), [])
    assert "\n" not in str(exc.value)
    # a lossy source is decoded as players do, over a damaged frame
    mp3 = make(tmp_path, ".mp3", 440)
    data = mp3.read_bytes()
    mp3.write_bytes(data[:len(data) // 2] + bytes(300) + data[len(data) // 2 + 300:])
    run_pipeline(str(mp3), "opus", {"bitrate": 64}, str(tmp_path / "o.opus"), [])


def test_an_mp3_copied_into_an_id3_23_profile_gets_a_v23_tag(tmp_path):
    from mutagen.id3 import ID3, TDRC

    car = normalize_profile("car", {"codec": "mp3", "id3": "2.3"})
    assert formats.copy_id3_version("mp3", car) == "2.3"
    assert formats.copy_id3_version("mp3", normalize_profile("car", {"codec": "mp3"})) is None
    assert formats.copy_id3_version("aac", car) is None  # an AAC file has no ID3 tag
    assert formats.copy_id3_version("mp3", normalize_profile("f", {"codec": "flac"})) is None

    path = make(tmp_path, ".mp3", 440)
    tag = ID3(path)
    tag.add(TPE1(encoding=3, text=["A", "B"]))
    tag.add(TDRC(encoding=3, text=["2001-02-03"]))
    tag.save()
    before = formats.packets_digest(str(path))
    formats.retag_copy(str(path), "2.3")
    tag = ID3(path, translate=False)  # the frames as written (mutagen reads TYER back as TDRC)
    assert tag.version == (2, 3, 0)
    assert tag["TIT2"].text == ["one"] and tag["TPE1"].text == ["A/B"] and tag["TYER"].text == ["2001"]
    assert [p.data for p in tag.getall("APIC")] == [PNG]
    assert formats.packets_digest(str(path)) == before  # the audio untouched
    # no tag: left as it is
    bare = tmp_path / "bare.mp3"
    subprocess.run(["lame", "--quiet", "--id3v2-only", str(path), str(bare)], check=True)
    ID3(bare).delete()
    data = bare.read_bytes()
    formats.retag_copy(str(bare), "2.3")
    assert bare.read_bytes() == data
