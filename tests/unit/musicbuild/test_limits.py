"""Limits of portable players (issue 15, item 3): a profile's `max_sample_rate` and
`max_bit_depth` (musicbuild/limits.py, hooked into encode.plan_audio and the converter).

The rate rule, the plan and the audio digest are pure and tested directly; then real sources
(sox, flac) go through encode.run_pipeline (flac, ffmpeg, the encoders) and the outputs are
read back as a player would see them: rate, bits, channels and length by metaflac and ffprobe,
the audio bit for bit (STREAMINFO's MD5) where nothing is over a limit, and the dither heard
where it matters: a -100 dBFS tone in a 24-bit source is under half a 16-bit step, so reducing
it without dither turns it into a one-step square wave (ffmpeg truncates: 6 dB louder, with
harmonics); with dither the tone is still there at its level, under the noise.
"""
from __future__ import annotations

import array
import math
import subprocess
from pathlib import Path

import pytest

from musicbuild import encode, limits
from musicbuild import profile as music_profile
from musicbuild.source import StreamInfo


def stream(rate=44100, channels=2, bits=16):
    return StreamInfo(rate, channels, bits, 1000, bytes(16), 4096, 4096, 0, 8192)


def refuse(*args):
    raise AssertionError("no encoder is asked here")


# --- the rate a source gets -----------------------------------------------------------------------

@pytest.mark.parametrize("rate, limit, expected", [
    (192000, 44100, 44100),    # the 48 kHz family has 32000 under 44100: too far, the limit itself
    (176400, 48000, 44100),    # the 44.1 kHz family's own rate under the limit
    (192000, 48000, 48000),
    (192000, 96000, 96000),
    (176400, 96000, 88200),
    (352800, 192000, 176400),
    (96000, 88200, 88200),     # 48000 is too far under 88200
    (88200, 48000, 44100),
    (48000, 44100, 44100),
    (44100, 44100, 44100),     # at the limit: unchanged
    (22050, 44100, 22050),     # under it: unchanged
    (11025, 8000, 8000),
    (37800, 32000, 32000),     # a rate of neither family: as the 48 kHz one
])
def test_limited_rate(rate, limit, expected):
    assert limits.limited_rate(rate, limit) == expected


def test_limited_rate_never_exceeds_the_limit_nor_falls_far_under_it():
    for rate in (*limits.RATES_441, *limits.RATES_48, 37800, 50000):
        for limit in music_profile.SAMPLE_RATES:
            got = limits.limited_rate(rate, limit)
            if rate <= limit:
                assert got == rate
            else:
                assert got <= limit and got * 48000 >= limit * 44100, (rate, limit, got)


# --- the plan -----------------------------------------------------------------------------------

@pytest.mark.parametrize("source", [(44100, 2, 16), (48000, 2, 24), (44100, 1, 16), (8000, 2, 8)])
def test_sources_at_or_under_the_limits_keep_the_plain_pipe(source):
    settings = {"compression_level": 8, "max_sample_rate": 48000, "max_bit_depth": 24}
    plan = encode.plan_audio("flac", settings, stream(*source), accepts=refuse)
    assert plan.converter() is None and plan.notes == [] and not plan.dither
    assert (plan.rate, plan.channels, plan.bits) == (source[0], source[1], source[2])


def test_hires_to_cd_for_flac():
    settings = {"compression_level": 8, "max_sample_rate": 44100, "max_bit_depth": 16}
    plan = encode.plan_audio("flac", settings, stream(192000, 2, 24), accepts=refuse)
    assert (plan.rate, plan.bits, plan.channels) == (44100, 16, 2) and plan.dither
    assert plan.notes == ["resampled 192000 Hz to 44100 Hz (the profile's max_sample_rate: 44100)",
                          "reduced 24-bit samples to 16 bits with dither (the profile's max_bit_depth: 16)"]
    argv = plan.converter()
    assert argv[argv.index("-af") + 1] == "aresample=osr=44100:osf=s16:dither_method=triangular"
    assert argv[argv.index("-c:a") + 1] == "pcm_s16le"


def test_dither_filter():
    assert limits.dither_filter(48000, 24) == "aresample=osr=48000:osf=s32:dither_method=triangular:dither_scale=256"
    assert limits.dither_filter(44100, 16, 2) == "aresample=osr=44100:osf=s16:dither_method=triangular:ocl=stereo"
    # a downmix in the same step: the converter's -ac would requantize after the dither
    plan = encode.plan_audio("flac", {"channels": 2, "max_bit_depth": 16}, stream(48000, 6, 24), accepts=refuse)
    assert plan.converter()[plan.converter().index("-af") + 1].endswith(":ocl=stereo")


def test_only_the_rate_over_its_limit_converts():
    plan = encode.plan_audio("flac", {"max_sample_rate": 48000, "max_bit_depth": 24}, stream(96000, 2, 16),
                             accepts=refuse)
    assert (plan.rate, plan.bits, plan.dither) == (48000, 16, False)
    assert plan.notes == ["resampled 96000 Hz to 48000 Hz (the profile's max_sample_rate: 48000)"]
    plan = encode.plan_audio("flac", {"max_bit_depth": 16}, stream(96000, 2, 24), accepts=refuse)
    assert (plan.rate, plan.bits, plan.dither) == (96000, 16, True)


def test_the_limit_and_the_codecs_own_limits_together():
    # AAC takes at most 96 kHz: said as the codec's limit when the profile sets none or a higher one
    for settings in ({"bitrate": 256}, {"bitrate": 256, "max_sample_rate": 192000}):
        plan = encode.plan_audio("aac", settings, stream(192000, 2, 24), accepts=refuse)
        assert plan.rate == 96000 and plan.notes == ["resampled 192000 Hz to 96000 Hz (aac encodes at most 96000 Hz)"]
    plan = encode.plan_audio("aac", {"bitrate": 256, "max_sample_rate": 48000}, stream(192000, 2, 24), accepts=refuse)
    assert plan.rate == 48000 and plan.notes == ["resampled 192000 Hz to 48000 Hz (the profile's max_sample_rate: 48000)"]
    # libvorbis' bitrate mode works up to 50 kHz: the profile's 44100 comes first, then nothing more
    plan = encode.plan_audio("vorbis", {"bitrate": 128, "max_sample_rate": 44100}, stream(192000, 2, 24),
                             accepts=lambda *a: True)
    assert plan.rate == 44100 and len(plan.notes) == 1
    # MP3: lame would pick 48 kHz for a 192 kHz source; the profile's 44100 wins
    plan = encode.plan_audio("mp3", {"quality": 2, "max_sample_rate": 44100}, stream(192000, 2, 24), accepts=refuse)
    assert plan.rate == 44100 and plan.convert


# --- the audio digest: a limit re-encodes exactly the outputs whose audio it changes ------------

def test_digest_view():
    cd, hires, hr176 = ({"rate": 44100, "bits": 16}, {"rate": 192000, "bits": 24}, {"rate": 176400, "bits": 24})
    none = {"quality": 2}
    assert limits.digest_view({**none, "max_sample_rate": 48000, "max_bit_depth": 16}, cd) == \
        {**none, "max_sample_rate": None, "max_bit_depth": None}
    assert limits.digest_view({"max_sample_rate": 48000, "max_bit_depth": 16}, hires) == \
        {"max_sample_rate": 48000, "max_bit_depth": 16}
    # 176.4 kHz goes to 44100 under 44100 and under 48000 alike: the same output, the same digest
    assert limits.digest_view({"max_sample_rate": 44100}, hr176) == limits.digest_view({"max_sample_rate": 48000}, hr176)
    assert limits.digest_view({"max_sample_rate": 44100}, {"md5": "x"}) == {"max_sample_rate": 44100}

    def key(settings, audio):
        return music_profile.digest_settings("flac", limits.digest_view({"compression_level": 8, **settings}, audio))

    # a profile that adds limits its sources are under keeps their digests (no re-encode)
    assert key({"max_sample_rate": 96000, "max_bit_depth": 24}, cd) == key({}, cd)
    assert key({"max_sample_rate": 96000}, hires) != key({}, hires)
    assert key({"max_sample_rate": 96000}, hires) != key({"max_sample_rate": 48000}, hires)


# --- real sources through the real pipeline ------------------------------------------------------

def make_flac(path: Path, rate: int, channels: int, bits: int, seconds: float, gain_db: float = -9,
              freq: float = 1000) -> Path:
    tones = [x for c in range(channels) for x in ("sine", str(freq * (1 + c / 7)))]
    wav = path.with_suffix(".wav")
    subprocess.run(["sox", "-R", "-n", "-r", str(rate), "-c", str(channels), "-b", str(bits), str(wav),
                    "synth", str(seconds), *tones, "gain", str(gain_db)], check=True, capture_output=True)
    subprocess.run(["flac", "--silent", "-f", "--channel-map=none", str(wav), "-o", str(path)], check=True)
    wav.unlink()
    return path


def metaflac(path: Path) -> tuple[int, int, int, int, str]:
    out = subprocess.run(["metaflac", "--show-sample-rate", "--show-channels", "--show-bps", "--show-total-samples",
                          "--show-md5sum", str(path)], check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1]), int(out[2]), int(out[3]), out[4]


def ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                          "stream=sample_rate,channels,bits_per_raw_sample,sample_fmt", "-of", "default=nw=1", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


FLAC_PORTABLE = {"compression_level": 5, "max_sample_rate": 44100, "max_bit_depth": 16}


@pytest.mark.slow
def test_real_pipeline(tmp_path):
    # under the limits: the same audio, bit for bit (the MD5 of the decoded samples)
    for rate, channels, bits in ((44100, 2, 16), (32000, 1, 16), (22050, 2, 8)):
        src = make_flac(tmp_path / f"cd{rate}.flac", rate, channels, bits, 0.6)
        out = tmp_path / f"cd{rate}.out.flac"
        notes: list[str] = []
        encode.run_pipeline(str(src), "flac", FLAC_PORTABLE, str(out), notes)
        assert metaflac(out) == metaflac(src) and notes == []
    # 24/192 and 24/176.4 become 16/44.1 with the same length
    for rate in (192000, 176400):
        src = make_flac(tmp_path / f"hr{rate}.flac", rate, 2, 24, 0.75)
        out = tmp_path / f"hr{rate}.out.flac"
        notes = []
        encode.run_pipeline(str(src), "flac", FLAC_PORTABLE, str(out), notes)
        assert metaflac(out)[:4] == (44100, 2, 16, round(0.75 * 44100))
        assert ffprobe(out) == {"sample_rate": "44100", "channels": "2", "sample_fmt": "s16", "bits_per_raw_sample": "16"}
        assert len(notes) == 2
    # 5.1 24/96 for a stereo player: a downmix, 48 kHz and 16 bits in one conversion
    src = make_flac(tmp_path / "surround.flac", 96000, 6, 24, 0.5)
    out = tmp_path / "surround.out.flac"
    encode.run_pipeline(str(src), "flac", {"channels": 2, "max_sample_rate": 48000, "max_bit_depth": 16}, str(out))
    assert metaflac(out)[:4] == (48000, 2, 16, 24000)
    # lossy codecs: the rate a player sees
    src = tmp_path / "hr192000.flac"
    for codec, settings, suffix, rate in (("aac", {"bitrate": 128, "max_sample_rate": 48000}, ".m4a", "48000"),
                                          ("aac", {"bitrate": 128}, ".m4a", "96000"),
                                          ("mp3", {"quality": 5, "max_sample_rate": 44100}, ".mp3", "44100"),
                                          ("vorbis", {"quality": 3, "max_sample_rate": 44100}, ".ogg", "44100")):
        out = tmp_path / f"lossy-{codec}-{rate}{suffix}"
        encode.run_pipeline(str(src), codec, settings, str(out))
        assert ffprobe(out)["sample_rate"] == rate, (codec, settings)


def tone_level_db(path: Path, freq: float, rate: int) -> tuple[float, int]:
    """The level (dBFS) of a `freq` sine in the decoded left channel (its amplitude by
    correlation with sine and cosine), and how many samples are not zero."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map_channel", "0.0.0", "-f", "s32le", "-"],
                         check=True, capture_output=True).stdout
    samples = array.array("i", raw)
    n = len(samples)
    s = sum(x * math.sin(2 * math.pi * freq * i / rate) for i, x in enumerate(samples))
    c = sum(x * math.cos(2 * math.pi * freq * i / rate) for i, x in enumerate(samples))
    amplitude = 2 * math.hypot(s, c) / n / 2 ** 31
    return (20 * math.log10(amplitude) if amplitude else -math.inf), sum(1 for x in samples if x)


@pytest.mark.slow
def test_reducing_bits_dithers(tmp_path):
    """A -100 dBFS tone (a fade's tail) in a 24-bit source survives the reduction to 16 bits
    at its level only with dither: its peak is under half a 16-bit step (checked: without the
    dither, ffmpeg's truncation makes it -94 dBFS of square wave)."""
    src = make_flac(tmp_path / "quiet.flac", 44100, 2, 24, 1.0, gain_db=-100, freq=1000)
    level, _ = tone_level_db(src, 1000, 44100)
    assert -101 < level < -99
    out = tmp_path / "quiet.out.flac"
    notes: list[str] = []
    encode.run_pipeline(str(src), "flac", {"max_bit_depth": 16}, str(out), notes)
    assert metaflac(out)[:3] == (44100, 2, 16)
    assert notes == ["reduced 24-bit samples to 16 bits with dither (the profile's max_bit_depth: 16)"]
    level, nonzero = tone_level_db(out, 1000, 44100)
    assert nonzero > 44100 * 0.1, "dither noise"
    assert -102.5 < level < -97.5, f"the tone kept under the dither (level {level:.1f} dBFS)"


@pytest.mark.parametrize("codec", ["mp3", "opus", "vorbis", "aac"])
def test_a_lossy_codec_gets_its_input_reduced_with_dither(codec):
    """max_bit_depth on a lossy codec: the encoder is given the source reduced to that depth
    with dither (a portable player's profile of any codec takes the same limits)."""
    plan = encode.plan_audio(codec, {"max_bit_depth": 16}, stream(48000, 2, 24), accepts=refuse)
    assert plan.dither and plan.bits == 16
    argv = plan.converter()
    assert "osf=s16" in argv[argv.index("-af") + 1] and "dither_method=triangular" in argv[argv.index("-af") + 1]
    assert "reduced 24-bit samples to 16 bits with dither (the profile's max_bit_depth: 16)" in plan.notes
    assert encode.plan_audio(codec, {"max_bit_depth": 16}, stream(48000, 2, 16), accepts=refuse).converter() is None
