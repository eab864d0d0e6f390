"""The codec table (CODEC_TABLE in plugins/module_utils/music_profile.py, musicbuild.profile in the
build program): every codec and every setting, read back through what uses the table
(normalize_profile, tup.config, music-encode's options, the encoder command, the tag writer).

Adding a setting to the table is adding its row to SETTINGS here (README.md, "Add a profile
setting"); the tests below then cover it.
"""
import pytest

from musicbuild import encode, outputs, tags
from musicbuild import profile as music_profile
from musicbuild.profile import (
    AUDIO_FIELDS, CODEC_TABLE, COMMON_FIELDS, MP3_CBR_BITRATES, OUT, SETTING_NAMES, SETTINGS as SETTINGS_ARGS, TYPES,
    ProfileError, digest_settings, encoder_command, normalize_profile, parse_tup_config, render_tup_config,
)

# One row per codec setting: codec, setting, allowed values ((lowest, highest) or a tuple of the
# choices), default (None: no default), the encoder's arguments ("{}" is the value).
SETTINGS = [
    ("flac", "compression_level", (0, 8), 8, ("-{}",)),
    ("opus", "bitrate", (6, 510), 128, ("--bitrate", "{}")),
    ("mp3", "bitrate", MP3_CBR_BITRATES, None, ("--cbr", "-b", "{}")),
    ("mp3", "quality", (0, 9), 2, ("-V", "{}")),
    ("vorbis", "bitrate", (45, 500), None, ("-b", "{}")),
    ("vorbis", "quality", (-1, 10), 5, ("-q", "{}")),
    ("aac", "bitrate", (16, 512), 256, ("-b:a", "{}k")),
    ("aac", "quality", (1, 20), None, ("-q:a", "{}")),  # in tenths: 5 is -q:a 0.5 (SCALE)
]

# codec: extension, tag writer, the encoder command (S: the settings' arguments, O: the output).
S, O = SETTINGS_ARGS, OUT
CODECS = {
    "flac": ("flac", tags.write_flac, ["flac", S, "--silent", "--force", "-o", O, "-"]),
    "opus": ("opus", tags.write_opus, ["opusenc", "--quiet", S, "-", O]),
    "mp3": ("mp3", tags.write_id3v24, ["lame", "--quiet", S, "-", O]),
    "vorbis": ("ogg", tags.write_vorbis, ["oggenc", "--quiet", S, "-o", O, "-"]),
    "aac": ("m4a", tags.write_mp4, ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-f", "wav", "-i", "-",
                                    "-map_metadata", "-1", "-c:a", "aac", S, "-movie_timescale", "28224000",
                                    "-f", "ipod", "-y", O]),
}
ROWS = {(codec, setting): row for codec, setting, *row in SETTINGS}
# Settings given in a fraction of the encoder's unit: the value the encoder gets is value / scale.
SCALE = {("aac", "quality"): 10}


def _encoder_value(codec, setting, value):
    return value / SCALE[codec, setting] if (codec, setting) in SCALE else value


def _edges(allowed):
    """Values accepted, and values refused with the words of the refusal."""
    if isinstance(allowed, tuple) and len(allowed) == 2:
        lo, hi = allowed
        return [lo, hi], [(lo - 1, f"out of range ({lo}-{hi})"), (hi + 1, f"out of range ({lo}-{hi})")]
    lo, hi = min(allowed), max(allowed)
    between = next(v for v in range(lo, hi) if v not in allowed)
    return list(allowed), [(lo - 1, f"out of range ({lo}-{hi})"), (hi + 1, f"out of range ({lo}-{hi})"),
                           (between, f"{between} is not ")]


def _alone(codec, setting, value):
    """A profile giving `setting` alone (none of the settings it excludes)."""
    return {"codec": codec, setting: value}


def _expected_command(codec, profile):
    """The encoder command a normalised profile should get, from the rows above."""
    argv = []
    for part in CODECS[codec][2]:
        if part == S:
            for setting in CODEC_TABLE[codec]["settings"]:
                if profile.get(setting) is not None:
                    argv += [a.format(_encoder_value(codec, setting, profile[setting])) for a in ROWS[codec, setting][2]]
        else:
            argv.append("OUT" if part == O else part)
    return argv


def test_rows_cover_the_table():
    assert set(CODECS) == set(CODEC_TABLE)
    assert set(ROWS) == {(c, s) for c, entry in CODEC_TABLE.items() for s in entry["settings"]}, \
        "every setting of the codec table has its row in SETTINGS, and only those"


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_entry(codec):
    extension, writer, command = CODECS[codec]
    entry = CODEC_TABLE[codec]
    assert entry["extension"] == extension
    assert tags.WRITERS[entry["tags"]] is writer
    assert list(entry["command"]) == command
    assert entry["description"] and "\n" not in entry["description"]
    assert "." + extension in outputs.AUDIO_EXTS


def test_settings_are_well_formed():
    track = ["track", "--profile", "p", "--codec", "flac", "--audio", "a", "--tags", "t", "--track", "k", "--receipt", "r"]
    own = {"command", "profile", "codec", "art", "art_max_size", "id3", "audio", "tags", "track", "receipt"}
    assert set(vars(encode.parser().parse_args(track))) == own | set(SETTING_NAMES) | set(AUDIO_FIELDS)
    for codec, entry in CODEC_TABLE.items():
        for setting, spec in entry["settings"].items():
            # profile fields, tup.config's keys and music-encode's options stay distinct
            assert setting not in COMMON_FIELDS and setting not in ("profile", "ext", "settings") and setting not in own
            assert spec["type"] in TYPES
            if "encoder_default" in spec:
                normalize_profile("p", _alone(codec, setting, spec["encoder_default"]))
            assert all(spec["type"] == e["settings"][setting]["type"]
                       for e in CODEC_TABLE.values() if setting in e["settings"])
            assert spec["doc"] and "\n" not in spec["doc"]
        for group in entry.get("exclusive", ()):
            assert set(group) <= set(entry["settings"]) and len(group) > 1


@pytest.mark.parametrize("codec, setting, allowed, default, args", SETTINGS)
def test_range_edges(codec, setting, allowed, default, args):
    good, bad = _edges(allowed)
    for value in good:
        assert normalize_profile("p", _alone(codec, setting, value))[setting] == value
        assert normalize_profile("p", _alone(codec, setting, str(value)))[setting] == value  # as tup.config has it
    for value, words in bad:
        with pytest.raises(ProfileError) as err:
            normalize_profile("p", _alone(codec, setting, value))
        assert err.value.field == setting
        assert str(err.value).startswith(f"profile 'p', field '{setting}': ") and words in str(err.value)
    for value in ("loud", 1.5, True):
        with pytest.raises(ProfileError, match=f"field '{setting}': expected an integer"):
            normalize_profile("p", _alone(codec, setting, value))
    other = next(c for c in CODEC_TABLE if setting not in CODEC_TABLE[c]["settings"])
    with pytest.raises(ProfileError, match=f"field '{setting}': does not apply to codec {other}"):
        normalize_profile("p", {"codec": other, setting: good[0]})


@pytest.mark.parametrize("codec, setting, allowed, default, args", SETTINGS)
def test_default(codec, setting, allowed, default, args):
    assert CODEC_TABLE[codec]["settings"][setting]["default"] == default
    assert normalize_profile("p", {"codec": codec}).get(setting) == default
    assert normalize_profile("p", {"codec": codec, setting: None}).get(setting) == default


@pytest.mark.parametrize("codec", sorted(c for c in CODEC_TABLE if CODEC_TABLE[c].get("exclusive")))
def test_exclusive_settings(codec):
    for group in CODEC_TABLE[codec]["exclusive"]:
        first, *others = group
        values = {s: _edges(ROWS[codec, s][0])[0][-1] for s in group}
        with pytest.raises(ProfileError) as err:
            normalize_profile("p", {"codec": codec, **values})
        assert err.value.field == first and f"{codec} takes either {first} ({group[first]})" in str(err.value)
        for setting in group:
            # given one, the others' defaults do not apply
            chosen = normalize_profile("p", _alone(codec, setting, values[setting]))
            assert chosen[setting] == values[setting]
            assert all(s not in chosen for s in group if s != setting)


@pytest.mark.parametrize("codec, setting, allowed, default, args", SETTINGS)
def test_encoder_arguments(codec, setting, allowed, default, args):
    for value in _edges(allowed)[0] + ([default] if default is not None else []):
        profile = normalize_profile("p", _alone(codec, setting, value))
        argv = encoder_command(profile, "OUT")
        assert argv == _expected_command(codec, profile)
        mine = [a.format(_encoder_value(codec, setting, value)) for a in args]
        assert any(argv[i:i + len(mine)] == mine for i in range(len(argv)))
        # music-encode's own encoder_command takes the settings as music-encode parsed them
        assert encode.encoder_command(codec, {s: profile.get(s) for s in CODEC_TABLE[codec]["settings"]}, "OUT") == argv


@pytest.mark.parametrize("codec, setting, allowed, default, args", SETTINGS)
def test_tup_config_and_music_encode_options(codec, setting, allowed, default, args):
    """The setting travels tup.config -> the tup rules' command line -> music-encode's options."""
    value = _edges(allowed)[0][-1]
    profile = normalize_profile("p", _alone(codec, setting, value))
    text = render_tup_config("p", profile)
    lines = dict(line.split("=", 1) for line in text.splitlines()[1:])
    assert lines[f"CONFIG_{setting.upper()}"] == str(value)
    present = [s for s in CODEC_TABLE[codec]["settings"] if profile.get(s) is not None]
    assert lines["CONFIG_SETTINGS"] == ",".join(present)
    assert parse_tup_config(text, "p") == ("p", profile)
    # what Tupdefault.lua makes of CONFIG_SETTINGS: --<setting> <CONFIG_SETTING>, in that order
    options = [x for s in lines["CONFIG_SETTINGS"].split(",") for x in ("--" + s.replace("_", "-"), lines[f"CONFIG_{s.upper()}"])]
    parsed = encode.parser().parse_args(["track", "--profile", "p", "--codec", codec, *options, "--art", "y",
                                         "--art-max-size", "0", "--audio", "k.audio", "--tags", "k.tags",
                                         "--track", "k.p.track", "--receipt", "k.p.done"])
    assert {s: getattr(parsed, s) for s in present} == {s: profile[s] for s in present}


def test_config_settings_line_must_match():
    text = render_tup_config("p", {"codec": "mp3", "quality": 3})
    assert "CONFIG_SETTINGS=quality\n" in text
    with pytest.raises(ProfileError, match="CONFIG_SETTINGS=bitrate does not name"):
        parse_tup_config(text.replace("CONFIG_SETTINGS=quality", "CONFIG_SETTINGS=bitrate"), "p")
    # A config rendered before the codec table (no CONFIG_SETTINGS line) still reads.
    old = text.replace("CONFIG_SETTINGS=quality\n", "")
    assert parse_tup_config(old, "p") == parse_tup_config(text, "p")


# What each codec's encoder takes on stdin (the codec table's "input"): found with the real
# encoders (tests/unit/musicbuild/test_audio_plan.py runs them): lame refuses more than 2
# channels, opusenc and oggenc refuse 32-bit integers, libvorbis refuses more than 200 kHz.
INPUT = {
    "flac": {"channels": 8, "bits": 32, "rate": None},
    "opus": {"channels": 255, "bits": 24, "rate": None},
    "mp3": {"channels": 2, "bits": 32, "rate": None},
    "vorbis": {"channels": 255, "bits": 24, "rate": 200000},
    "aac": {"channels": 8, "bits": 32, "rate": 96000},  # ffmpeg's aac: 7350-96000 Hz, up to 7.1
}


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_input_limits(codec):
    assert CODEC_TABLE[codec]["input"] == INPUT[codec]
    for spec in CODEC_TABLE[codec]["settings"].values():
        assert set(spec.get("limits", {})) <= {"per_channel", "max_rate", "probe", "max_for_channels", "bits_per_sample"}
    # flac reads a WAV of unknown length to its end only when told; the others always do
    assert CODEC_TABLE[codec].get("stream_args", ()) == (("--ignore-chunk-sizes",) if codec == "flac" else ())


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_channels_field(codec):
    """`channels` (a common field that changes the audio): 1 or 2, absent by default; it
    travels tup.config -> the tup rules -> music-encode, and into the audio digest only when set."""
    plain = normalize_profile("p", {"codec": codec})
    assert "channels" not in plain
    for value in (1, 2, "2"):
        assert normalize_profile("p", {"codec": codec, "channels": value})["channels"] == int(value)
    for value, words in ((0, "out of range (1-2)"), (3, "out of range (1-2)"), (6, "out of range (1-2)"),
                         ("stereo", "expected an integer"), (True, "expected an integer")):
        with pytest.raises(ProfileError) as err:
            normalize_profile("p", {"codec": codec, "channels": value})
        assert err.value.field == "channels" and words in str(err.value)

    text = render_tup_config("p", {"codec": codec})
    assert "CHANNELS" not in text  # a profile without it renders as before the field existed
    two = render_tup_config("p", {"codec": codec, "channels": 2})
    assert two == text.replace("\nCONFIG_ART=", "\nCONFIG_CHANNELS=2\nCONFIG_ART=")
    assert parse_tup_config(two, "p") == ("p", normalize_profile("p", {"codec": codec, "channels": 2}))
    parsed = encode.parser().parse_args(["track", "--profile", "p", "--codec", codec, "--channels", "2", "--audio", "a",
                                         "--tags", "t", "--track", "k", "--receipt", "r"])
    assert parsed.channels == 2
    with pytest.raises(SystemExit):
        encode.parser().parse_args(["track", "--profile", "p", "--codec", codec, "--channels", "3", "--audio", "a",
                                    "--tags", "t", "--track", "k", "--receipt", "r"])
    settings = {s: plain.get(s) for s in SETTING_NAMES}
    assert digest_settings(codec, {**settings, "channels": None}) == digest_settings(codec, settings)
    assert digest_settings(codec, {**settings, "channels": 2}) == {**digest_settings(codec, settings), "channels": 2}


def test_channels_beyond_what_the_codec_carries_are_refused(monkeypatch):
    """Were `channels` to allow more than stereo, a codec's "input" "channels" bounds it."""
    monkeypatch.setattr(music_profile, "CHANNELS_RANGE", (1, 8))
    with pytest.raises(ProfileError) as err:
        normalize_profile("car", {"codec": "mp3", "channels": 6})
    assert err.value.field == "channels" and "mp3 carries at most 2 channels, not 6" in str(err.value)
    assert normalize_profile("phone", {"codec": "opus", "channels": 6})["channels"] == 6


@pytest.mark.parametrize("channels", [1, 2])
def test_vorbis_most_for_channels_is_what_oggenc_takes_at_any_rate(channels):
    """The table's "max_for_channels" (the validation refuses more for a profile's `channels`)
    is libvorbis' own: taken at some rate, one more taken at none (bitrate mode: up to 50 kHz)."""
    most = music_profile.most_for_channels("vorbis", "bitrate", channels)
    rates = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 50000)
    assert any(encode.encoder_accepts("vorbis", "bitrate", most, channels, r) for r in rates)
    if most < CODEC_TABLE["vorbis"]["settings"]["bitrate"]["range"][1]:
        assert not any(encode.encoder_accepts("vorbis", "bitrate", most + 1, channels, r) for r in rates)
    assert music_profile.most_for_channels("opus", "bitrate", channels) == 256 * channels
    assert music_profile.most_for_channels("mp3", "bitrate", channels) is None
