"""Every valid FLAC, every codec: reading odd-but-valid sources (source.py) and what a source
needs for a codec (encode.plan_audio), with the real tools.

The sources are made here (sox, flac, ffmpeg, mutagen): streamed FLACs (STREAMINFO total
samples 0 and MD5 0, "unknown" in the FLAC spec), an ID3v2 tag in front of `fLaC`, 8 to
32-bit samples, 1 to 8 channels, 8 kHz to 384 kHz. The plan's decisions are pure and tested
directly; the encoder's own limits (libvorbis' bitrate mode) are asked of the real oggenc.
"""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import mutagen
import pytest
from hypothesis import given, strategies as st
from mutagen.id3 import ID3, TIT2

from musicbuild import encode, source
from musicbuild.source import SourceError, StreamInfo


def raw_audio(rate: int, channels: int, bits: int, seconds: float, kind: str = "sine", freq: float = 440) -> bytes:
    """Signed little-endian PCM from sox: one tone (or noise) per channel, each its own; the
    same every time (-R: sox's dither and noise repeat)."""
    tones = []
    for c in range(channels):
        tones += ["whitenoise"] if kind == "noise" else ["sine", str(freq * (1 + c / 5))]
    return subprocess.run(["sox", "-R", "-n", "-r", str(rate), "-c", str(channels), "-b", str(bits), "-e", "signed",
                           "-t", "raw", "-", "synth", str(seconds), *tones, "gain", "-9"],
                          check=True, capture_output=True).stdout


def flac_of(raw: bytes, path: Path, rate: int, channels: int, bits: int, streamed: bool) -> Path:
    """A FLAC of `raw`; `streamed`: written to a pipe, as streaming tools do (flac cannot seek
    back to fill in STREAMINFO's total samples and MD5, which stay 0)."""
    argv = ["flac", "--silent", "--force-raw-format", "--endian=little", "--sign=signed", f"--channels={channels}",
            f"--bps={bits}", f"--sample-rate={rate}", "--channel-map=none", "-"]
    if streamed:
        with open(path, "wb") as out:
            subprocess.run(argv[:-1] + ["-o", "-", "-"], input=raw, stdout=out, check=True)
    else:
        subprocess.run(argv[:-1] + ["-f", "-o", str(path), "-"], input=raw, check=True)
    return path


def prefix_id3(path: Path, title: str = "from ID3") -> None:
    tag = ID3()
    tag.add(TIT2(encoding=3, text=[title]))
    tag.save(str(path), v2_version=4)  # mutagen inserts it at the start of the file


def streaminfo(path: Path) -> str:
    return subprocess.run(["metaflac", "--show-total-samples", "--show-md5sum", str(path)],
                          check=True, capture_output=True, text=True).stdout


# --- source.py: the checksums and headers it reads ---------------------------------------------

def test_crcs_are_flacs():
    # the check values of CRC-8 (poly 0x07) and CRC-16/UMTS (poly 0x8005, unreflected) on "123456789"
    assert source.crc8(b"123456789") == 0xF4
    assert source.crc16(b"123456789") == 0xFEE8


def test_id3v2_size():
    assert source.id3v2_size(b"ID3\x04\x00\x00\x00\x00\x02\x01") == 10 + 257
    assert source.id3v2_size(b"ID3\x04\x00\x10\x00\x00\x00\x05") == 10 + 5 + 10  # with a footer
    assert source.id3v2_size(b"fLaC\x00\x00\x00\x22\x10\x00") == 0
    assert source.id3v2_size(b"ID3\x04\x00\x00\x80\x00\x00\x00") == 0  # not syncsafe: not a tag


@pytest.mark.parametrize("rate, channels, bits", [
    (44100, 2, 16), (48000, 6, 24), (8000, 1, 8), (384000, 2, 24), (96000, 8, 32), (22050, 3, 16),
])
def test_a_streamed_flac_is_read_with_its_length(tmp_path, rate, channels, bits):
    """STREAMINFO says neither length nor MD5: the length is counted (from the last frame, as
    decoding it gives), the fingerprint is the frames' digest, and the audio is as it is."""
    seconds = 0.75
    path = flac_of(raw_audio(rate, channels, bits, seconds), tmp_path / "s.flac", rate, channels, bits, streamed=True)
    assert streaminfo(path) == "0\n" + "0" * 32 + "\n"
    info = source.read_source(str(path))
    expected = round(rate * seconds)
    assert info["audio"] == {"md5": info["audio"]["md5"], "rate": rate, "channels": channels, "bits": bits,
                             "samples": expected}
    assert info["audio"]["md5"].startswith("sha1:") and info["length"] == expected / rate
    stream = source.read_streaminfo(str(path))
    assert not stream.length_known
    assert source.decoded_samples(str(path), stream) == expected


def test_last_frame_count_on_noise_and_its_fallback(tmp_path):
    """Noise makes big frames and many false sync codes: the count is still the decoder's.
    Bytes after the last frame that are not audio (here a cut one) leave the count to the
    decoder, which names the damage."""
    raw = raw_audio(44100, 2, 16, 1.3, kind="noise")
    path = flac_of(raw, tmp_path / "n.flac", 44100, 2, 16, streamed=True)
    stream = source.read_streaminfo(str(path))
    data = path.read_bytes()
    assert source.samples_from_last_frame(data[stream.frames_at:], stream) == len(raw) // 4
    assert source.read_source(str(path))["audio"]["samples"] == len(raw) // 4
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[:-3000])
    assert source.samples_from_last_frame(cut.read_bytes()[stream.frames_at:], stream) is None
    with pytest.raises(SourceError, match=r"^FLAC decode failed \(truncated or damaged audio\): "):
        source.read_source(str(cut))


def test_a_stream_without_frames_has_no_audio(tmp_path):
    path = flac_of(b"", tmp_path / "empty.flac", 44100, 2, 16, streamed=True)
    with pytest.raises(SourceError, match=r"^no audio \(no audio frames\)$"):
        source.read_source(str(path))


def test_id3v2_in_front_changes_nothing_of_the_audio(tmp_path):
    """An ID3v2 tag before fLaC (readers skip it): with or without an MD5, with or without a
    length, the source reads as the same audio as without the tag."""
    raw = raw_audio(44100, 2, 16, 0.5)
    for streamed in (False, True):
        plain = flac_of(raw, tmp_path / f"plain{streamed}.flac", 44100, 2, 16, streamed)
        tagged = tmp_path / f"tagged{streamed}.flac"
        tagged.write_bytes(plain.read_bytes())
        prefix_id3(tagged)
        assert tagged.read_bytes()[:3] == b"ID3"
        assert source.read_source(str(tagged))["audio"] == source.read_source(str(plain))["audio"]
        assert source.read_streaminfo(str(tagged)).frames_at > source.read_streaminfo(str(plain)).frames_at


# ID3v2 tags in front as readers must skip them: mutagen and `flac` skip one tag without a
# footer, not these (the FLAC spec and ID3v2.4 allow both).
def id3v2(version: int, flags: int, title: bytes) -> bytes:
    body = b"TIT2" + len(title).to_bytes(4, "big") + b"\x00\x00" + title + bytes(5)  # sizes < 128: syncsafe
    return b"ID3" + bytes([version, 0, flags]) + len(body).to_bytes(4, "big") + body


def id3v24_with_footer(title: bytes) -> bytes:
    tag = id3v2(4, 0x10, title)
    return tag + b"3DI" + tag[3:10]


def id3v1(title: bytes) -> bytes:
    return b"TAG" + title.ljust(30, b"\x00") + bytes(94) + b"\xff"


def apev2(title: bytes, header: bool = True) -> bytes:
    item = len(title).to_bytes(4, "little") + bytes(4) + b"Title\x00" + title
    flags = 0x80000000 if header else 0

    def part(is_header: bool) -> bytes:
        return (b"APETAGEX" + (2000).to_bytes(4, "little") + (len(item) + 32).to_bytes(4, "little")
                + (1).to_bytes(4, "little") + (flags | (0x20000000 if is_header else 0)).to_bytes(4, "little")
                + bytes(8))
    return (part(True) if header else b"") + item + part(False)


def lyrics3v2(text: bytes) -> bytes:
    body = b"LYRICSBEGIN" + b"LYR" + f"{len(text):05d}".encode() + text
    return body + f"{len(body):06d}".encode() + b"LYRICS200"


@pytest.mark.parametrize("tail", [
    id3v1(b"t"), apev2(b"ape"), apev2(b"ape", header=False), apev2(b"a") + id3v1(b"t"),
    lyrics3v2(b"la la") + id3v1(b"t"), apev2(b"a") + lyrics3v2(b"la") + id3v1(b"t"),
    b"TAG+" + bytes(223) + id3v1(b"t"),
], ids=["id3v1", "apev2", "apev2 no header", "ape+id3v1", "lyrics3+id3v1", "ape+lyrics3+id3v1", "tag+"])
def test_tags_appended_after_the_audio_are_found_whole(tail):
    audio = b"fLaC" + bytes(300) + b"\xff\xf8 frames \x12\x34"
    fh = io.BytesIO(audio + tail)
    assert source.appended_tags_start(fh, 42, len(audio + tail)) == len(audio)
    assert source.appended_tags_start(io.BytesIO(audio), 42, len(audio)) == len(audio)
    # a tag cannot reach into the metadata: one that would say so is audio
    assert source.appended_tags_start(fh, len(audio) + 1, len(audio + tail)) > len(audio)


ODD_FRONTS = {"v2.4 footer": id3v24_with_footer(b"footer"), "two ID3v2 tags": id3v2(3, 0, b"one") + id3v24_with_footer(b"two")}
ODD_TAILS = {"ID3v1": id3v1(b"old tagger"), "APEv2": apev2(b"old tagger"), "APEv2+ID3v1": apev2(b"a") + id3v1(b"b")}


@pytest.mark.parametrize("streamed", [False, True], ids=["md5", "streamed"])
def test_id3v2_footers_stacked_tags_and_appended_tags_are_the_same_audio(tmp_path, streamed):
    """An ID3v2.4 tag with a footer or two ID3v2 tags in front, an ID3v1 or APE tag after the
    frames (flac refuses the first and loses sync on the second): read as the same audio as
    the plain file, decoded to its samples and encoded; without an MD5, a re-tag of what is
    appended keeps the fingerprint (no re-encode)."""
    raw = raw_audio(44100, 2, 16, 0.4)
    plain = flac_of(raw, tmp_path / "plain.flac", 44100, 2, 16, streamed)
    subprocess.run(["metaflac", "--set-tag=TITLE=the title", str(plain)], check=True)
    data = plain.read_bytes()
    want = source.read_source(str(plain))
    cases = {f"front {k}": v + data for k, v in ODD_FRONTS.items()}
    cases |= {f"tail {k}": data + v for k, v in ODD_TAILS.items()}
    cases["both"] = ODD_FRONTS["two ID3v2 tags"] + data + ODD_TAILS["APEv2+ID3v1"]
    for name, content in cases.items():
        path = tmp_path / f"{name}.flac"
        path.write_bytes(content)
        got = source.read_source(str(path))
        assert (got["audio"], got["tags"]) == (want["audio"], want["tags"]), name
        stream = source.read_streaminfo(str(path))
        assert source.decoded_samples(str(path), stream) == len(raw) // 4, name
        out = tmp_path / f"{name}.out.flac"
        encode.run_pipeline(str(path), "flac", {"compression_level": 0}, str(out))
        decoded = subprocess.run(["flac", "-d", "-c", "-s", "--force-raw-format", "--endian=little", "--sign=signed",
                                  str(out)], capture_output=True, check=True).stdout
        assert decoded == raw, name
    retagged = tmp_path / "retagged.flac"
    retagged.write_bytes(data + id3v1(b"another title"))
    assert source.read_source(str(retagged))["audio"] == want["audio"]


def test_a_file_ending_in_TAG_by_chance_is_audio(tmp_path):
    """ID3v1's mark is 3 bytes: audio whose last frame ends the file is not cut, whatever its
    last 128 bytes start with. Here a verbatim-coded last frame (its samples as they are,
    big-endian) holds "TAG" where an ID3v1 tag would start."""
    samples = bytearray(raw_audio(44100, 1, 16, 0.3, kind="noise"))
    at = len(samples) - 2 * 63  # the frame ends in 63 samples, then its CRC-16: 128 bytes
    samples[at:at + 4] = b"AT\x00G"  # little-endian 0x5441, 0x4700: "TAG\x00" in the frame
    path = tmp_path / "n.flac"
    subprocess.run(["flac", "--silent", "--force-raw-format", "--endian=little", "--sign=signed", "--channels=1",
                    "--bps=16", "--sample-rate=44100", "-0", "--disable-constant-subframes", "--disable-fixed-subframes",
                    "-f", "-o", str(path), "-"], input=bytes(samples), check=True)
    data = path.read_bytes()
    assert data[-128:-125] == b"TAG"
    assert source.read_streaminfo(str(path)).frames_end == len(data)
    assert source.read_source(str(path))["audio"]["samples"] == len(samples) // 2
    out = tmp_path / "out.flac"
    encode.run_pipeline(str(path), "flac", {"compression_level": 0}, str(out))
    assert mutagen.File(str(out)).info.total_samples == len(samples) // 2


def test_fingerprint_without_md5_is_distinct_for_different_audio(tmp_path):
    """Without an MD5 the fingerprint is a digest of the frames: the same audio gives the same
    one (tags do not count), different audio a different one, however alike."""
    one = flac_of(raw_audio(44100, 2, 16, 0.5, freq=440), tmp_path / "a.flac", 44100, 2, 16, streamed=True)
    again = flac_of(raw_audio(44100, 2, 16, 0.5, freq=440), tmp_path / "b.flac", 44100, 2, 16, streamed=True)
    other = flac_of(raw_audio(44100, 2, 16, 0.5, freq=441), tmp_path / "c.flac", 44100, 2, 16, streamed=True)
    first = source.read_source(str(one))["audio"]
    subprocess.run(["metaflac", "--set-tag=TITLE=Renamed", str(again)], check=True)
    assert source.read_source(str(again))["audio"] == first
    assert source.read_source(str(other))["audio"]["md5"] != first["md5"]


# --- encode.plan_audio: what a source needs for a codec ----------------------------------------

def stream(rate=44100, channels=2, bits=16, known=True) -> StreamInfo:
    return StreamInfo(rate, channels, bits, 1000 if known else 0, bytes(16), 4096, 4096, 0, 8192)


def refuse(*args):  # an encoder taking nothing: only for cases that must not ask it
    raise AssertionError(f"the encoder was asked: {args}")


@pytest.mark.parametrize("codec, settings", [
    ("flac", {"compression_level": 8}), ("opus", {"bitrate": 96}), ("mp3", {"quality": 2}),
    ("mp3", {"bitrate": 320}), ("vorbis", {"quality": 5}),
])
@pytest.mark.parametrize("rate, bits", [(44100, 16), (48000, 24), (44100, 24), (48000, 16)])
def test_the_common_case_keeps_the_plain_pipe(codec, settings, rate, bits):
    """16/24-bit stereo at 44.1/48 kHz: `flac -d | encoder` with the profile's settings, as before."""
    plan = encode.plan_audio(codec, settings, stream(rate, 2, bits), accepts=refuse)
    assert plan.converter() is None and plan.notes == [] and not plan.stream_input
    assert plan.encoder("OUT") == encode.encoder_command(codec, settings, "OUT")


@pytest.mark.parametrize("codec, settings, source_format, channels, note", [
    ("mp3", {"quality": 2}, (48000, 6, 24), 2, "downmixed 6 channels to 2 (mp3 carries at most 2)"),
    ("mp3", {"bitrate": 128}, (44100, 3, 16), 2, "downmixed 3 channels to 2 (mp3 carries at most 2)"),
    ("mp3", {"quality": 2}, (44100, 2, 16), 2, None),
    ("mp3", {"quality": 2, "channels": 1}, (44100, 2, 16), 1, "downmixed 2 channels to 1 (the profile's channels: 1)"),
    ("flac", {"compression_level": 8}, (48000, 8, 24), 8, None),
    ("flac", {"compression_level": 8, "channels": 2}, (48000, 6, 24), 2,
     "downmixed 6 channels to 2 (the profile's channels: 2)"),
    ("flac", {"compression_level": 8, "channels": 2}, (48000, 1, 24), 1, None),  # never an upmix
    ("vorbis", {"quality": 5}, (48000, 8, 16), 8, None),
    ("opus", {"bitrate": 96}, (48000, 6, 16), 6, None),  # 16 kb/s per channel: surround kept
    ("opus", {"bitrate": 128}, (48000, 8, 16), 8, None),
    ("opus", {"bitrate": 64}, (48000, 6, 16), 2,
     "downmixed 6 channels to 2 (opus at 64 kb/s has under 16 kb/s per channel, too little for surround)"),
    ("opus", {"bitrate": 96, "channels": 2}, (48000, 8, 16), 2, "downmixed 8 channels to 2 (the profile's channels: 2)"),
])
def test_channels(codec, settings, source_format, channels, note):
    rate, n, bits = source_format
    plan = encode.plan_audio(codec, settings, stream(rate, n, bits), accepts=refuse)
    assert plan.channels == channels
    assert plan.notes == ([note] if note else [])
    converter = plan.converter()
    assert (converter is not None) == (channels != n)
    if converter:
        assert converter[converter.index("-ac") + 1] == str(channels)
        assert converter[converter.index("-ar") + 1] == str(rate)
        # lossless keeps the sample size; lossy encoders get 24 bits
        assert converter[converter.index("-c:a") + 1] == ("pcm_s24le" if codec != "flac" or bits == 24 else
                                                          "pcm_s16le")
        # ffmpeg's WAV on a pipe has no length: flac must read it to its end
        assert ("--ignore-chunk-sizes" in plan.encoder("OUT")) == (codec == "flac")


def test_sample_size_and_unknown_length():
    # opusenc and oggenc take at most 24-bit integers: converted, without a note (lossy anyway)
    for codec in ("opus", "vorbis"):
        plan = encode.plan_audio(codec, {}, stream(96000, 2, 32), accepts=refuse)
        assert plan.converter()[-9:-7] == ["-c:a", "pcm_s24le"] and plan.notes == []
    # flac and lame take 32 bits as they are
    for codec, settings in (("flac", {"compression_level": 8}), ("mp3", {"quality": 2})):
        assert encode.plan_audio(codec, settings, stream(96000, 2, 32), accepts=refuse).converter() is None
    # a streamed source: `flac -d` writes a WAV of unknown length, which only flac must be told
    for codec in ("flac", "opus", "mp3", "vorbis"):
        plan = encode.plan_audio(codec, {}, stream(known=False), accepts=refuse)
        assert plan.converter() is None
        assert ("--ignore-chunk-sizes" in plan.encoder("OUT")) == (codec == "flac")


@pytest.mark.parametrize("rate, highest, expected", [
    (384000, 200000, 192000), (352800, 200000, 176400), (192000, 50000, 48000), (176400, 50000, 44100),
    (88200, 50000, 44100), (96000, 50000, 48000), (64000, 50000, 48000), (200000, 200000, 192000),
])
def test_resample_rate_keeps_the_family(rate, highest, expected):
    assert encode.resample_rate(rate, highest) == expected


@pytest.mark.parametrize("settings, rate, expected_rate, note", [
    ({"quality": 5}, 384000, 192000, "resampled 384000 Hz to 192000 Hz (vorbis encodes at most 200000 Hz)"),
    ({"quality": 5}, 352800, 176400, "resampled 352800 Hz to 176400 Hz (vorbis encodes at most 200000 Hz)"),
    ({"quality": 5}, 192000, 192000, None),
    ({"bitrate": 128}, 192000, 48000,
     "resampled 192000 Hz to 48000 Hz (the vorbis bitrate setting works up to 50000 Hz)"),
    ({"bitrate": 128}, 88200, 44100, "resampled 88200 Hz to 44100 Hz (the vorbis bitrate setting works up to 50000 Hz)"),
    ({"bitrate": 128}, 48000, 48000, None),
])
def test_vorbis_rates(settings, rate, expected_rate, note):
    plan = encode.plan_audio("vorbis", settings, stream(rate, 2, 24))
    assert plan.rate == expected_rate and plan.notes == ([note] if note else [])
    assert (plan.converter() is not None) == (rate != expected_rate)


def test_opus_bitrate_beyond_256_per_channel():
    plan = encode.plan_audio("opus", {"bitrate": 510}, stream(44100, 1, 16), accepts=refuse)
    assert plan.settings == {"bitrate": 256}
    assert plan.notes == ["bitrate 510 kb/s is more than opus takes for 1 channel (256 kb/s per channel): used 256"]
    assert encode.plan_audio("opus", {"bitrate": 510}, stream(44100, 2, 16), accepts=refuse).settings == {"bitrate": 510}


@pytest.mark.parametrize("bitrate, channels, rate", [
    (500, 1, 44100), (500, 1, 22050), (500, 2, 22050), (45, 6, 48000), (500, 2, 8000), (45, 2, 192000),
    (500, 1, 192000),
])
def test_vorbis_bitrate_oggenc_refuses_becomes_the_nearest_it_takes(bitrate, channels, rate):
    """libvorbis' bitrate mode takes a range that depends on the channels and the rate: a
    bitrate out of it becomes the nearest one oggenc takes (asked of oggenc), with a note."""
    plan = encode.plan_audio("vorbis", {"bitrate": bitrate}, stream(rate, channels, 16))
    used = plan.settings["bitrate"]
    ok = lambda b: encode.encoder_accepts("vorbis", "bitrate", b, channels, plan.rate)  # noqa: E731
    assert ok(used)
    if used != bitrate:
        assert not ok(bitrate)
        assert not ok(used + 1 if used < bitrate else used - 1), "not the nearest bitrate oggenc takes"
        assert plan.notes[-1].startswith(f"vorbis bitrate {bitrate} is out of what the encoder takes for ")
        assert plan.notes[-1].endswith(f": used {used}")


def test_a_setting_the_encoder_never_takes_falls_back_to_the_codecs_default_mode():
    plan = encode.plan_audio("vorbis", {"bitrate": 128}, stream(44100, 2, 16), accepts=lambda *a: False)
    assert plan.settings == {"quality": 5}
    assert plan.notes == ["vorbis bitrate 128 is not possible for 2 channels at 44100 Hz: used quality 5 instead"]


@given(st.integers(1, 4096), st.integers(0, 3000), st.integers(1, 4096))
def test_accepted_span_finds_the_range_with_few_questions(lo, width, value):
    """An encoder's limits are one range of values, not narrower than a quarter of its lowest
    (libvorbis: 32-240 kb/s for mono at 44.1 kHz, 84-1440 for 5.1 at 48 kHz): found exactly."""
    hi = min(4096, lo + width)
    asked = []

    def ok(v):
        asked.append(v)
        return lo <= v <= hi

    span = encode.accepted_span(ok, value)
    if hi >= lo * 1.25 + 2 or lo <= value <= hi:
        assert span == (lo, hi)
    else:
        assert span in (None, (lo, hi))
    assert len(asked) <= 64
    assert encode.accepted_span(lambda v: False, value) is None


# --- run_pipeline: the real pipes --------------------------------------------------------------

@pytest.mark.parametrize("codec, settings, channels, notes", [
    ("flac", {"compression_level": 5}, 6, []),
    ("opus", {"bitrate": 128}, 6, []),
    ("vorbis", {"quality": 3}, 6, []),
    ("mp3", {"quality": 5}, 2, ["downmixed 6 channels to 2 (mp3 carries at most 2)"]),
    ("flac", {"compression_level": 5, "channels": 2}, 2, ["downmixed 6 channels to 2 (the profile's channels: 2)"]),
])
def test_a_streamed_51_source_through_each_codec(tmp_path, codec, settings, channels, notes):
    src = flac_of(raw_audio(48000, 6, 24, 0.6), tmp_path / "surround.flac", 48000, 6, 24, streamed=True)
    prefix_id3(src)
    out = tmp_path / f"out.{encode.music_profile.EXTENSIONS[codec]}"
    made: list[str] = []
    encode.run_pipeline(str(src), codec, settings, str(out), made)
    info = mutagen.File(str(out)).info
    assert info.channels == channels and made == notes
    assert info.length == pytest.approx(0.6, abs=0.06)
