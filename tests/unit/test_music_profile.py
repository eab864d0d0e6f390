"""Profile validation and tup.config rendering (plugins/module_utils/music_profile.py)."""
import pytest
import yaml
from hypothesis import given, strategies as st

from ansible_collections.music.profiles.plugins.module_utils.music_profile import (
    MP3_CBR_BITRATES, ProfileError, most_for_channels, normalize_profile, parse_tup_config, render_tup_config,
)


def test_default_profiles_render(repo_root):
    profiles = yaml.safe_load((repo_root / "group_vars/all/profiles.yml").read_text())["music_profiles"]
    assert set(profiles) == {"flac", "phone", "car"}
    configs = {name: render_tup_config(name, p) for name, p in profiles.items()}
    assert "CONFIG_CODEC=flac" in configs["flac"] and "CONFIG_COMPRESSION_LEVEL=8" in configs["flac"]
    assert "CONFIG_CODEC=opus" in configs["phone"] and "CONFIG_BITRATE=96" in configs["phone"]
    assert "CONFIG_ART_MAX_SIZE=500" in configs["phone"]
    assert "CONFIG_CODEC=mp3" in configs["car"] and "CONFIG_QUALITY=2" in configs["car"]
    assert "CONFIG_NAMES=fat32" in configs["car"] and "CONFIG_NAMES=exfat" in configs["phone"]


@pytest.mark.parametrize("profile, field, words", [
    ({"codec": "alac"}, "codec", "unknown codec 'alac'"),
    ({}, "codec", "unknown codec None"),
    ({"codec": "aac", "bitrate": 256, "quality": 10}, "bitrate", "not both"),
    ({"codec": "aac", "quality": 21}, "quality", "21 is out of range (1-20)"),
    ({"codec": "flac", "max_sample_rate": 50000}, "max_sample_rate", "50000 is not a sample rate"),
    ({"codec": "flac", "max_sample_rate": 500000}, "max_sample_rate", "out of range (8000-384000)"),
    ({"codec": "flac", "max_bit_depth": 20}, "max_bit_depth", "20 is not a bit depth"),
    ({"codec": "flac", "max_bit_depth": "sixteen"}, "max_bit_depth", "expected an integer"),
    ({"codec": "opus", "bitrate": 700}, "bitrate", "700 is out of range (6-510)"),
    ({"codec": "opus", "bitrate": 2}, "bitrate", "out of range"),
    ({"codec": "mp3", "bitrate": 100}, "bitrate", "not an MP3 bitrate"),
    ({"codec": "mp3", "bitrate": 128, "quality": 2}, "bitrate", "not both"),
    ({"codec": "mp3", "quality": 10}, "quality", "out of range (0-9)"),
    ({"codec": "vorbis", "bitrate": 20}, "bitrate", "out of range (45-500)"),
    ({"codec": "flac", "compression_level": 9}, "compression_level", "out of range (0-8)"),
    ({"codec": "flac", "bitrate": 320}, "bitrate", "does not apply to codec flac"),
    ({"codec": "opus", "bitrat": 96}, "bitrat", "unknown setting"),
    ({"codec": "opus", "bitrate": "fast"}, "bitrate", "expected an integer"),
    ({"codec": "opus", "bitrate": True}, "bitrate", "expected an integer"),
    ({"codec": "opus", "art": "maybe"}, "art", "expected true or false"),
    ({"codec": "opus", "art_max_size": 4}, "art_max_size", "out of range"),
    ({"codec": "opus", "extra_files": "cover.jpg"}, "extra_files", "expected a list"),
    ({"codec": "opus", "extra_files": ["../x"]}, "extra_files", "no '/'"),
    ({"codec": "opus", "extra_files": ["*.flac"]}, "extra_files", "encoded, not copied"),
    ({"codec": "mp3", "channels": 6}, "channels", "6 is out of range (1-2)"),
    ({"codec": "flac", "channels": 0}, "channels", "out of range (1-2)"),
    ({"codec": "opus", "channels": "stereo"}, "channels", "expected an integer"),
    # impossible for every source: no output of this profile has more than one channel
    ({"codec": "opus", "channels": 1, "bitrate": 510}, "bitrate",
     "510 is more than opus takes for 1 channel (at most 256; the profile's channels: 1)"),
    ({"codec": "vorbis", "channels": "1", "bitrate": "500"}, "bitrate",
     "500 is more than vorbis takes for 1 channel (at most 240; the profile's channels: 1)"),
])
def test_bad_fields_are_named(profile, field, words):
    with pytest.raises(ProfileError) as err:
        normalize_profile("phone", profile)
    assert err.value.field == field
    assert str(err.value).startswith(f"profile 'phone', field '{field}': ")
    assert words in str(err.value)


def test_settings_possible_for_some_source_are_kept_for_adapting():
    """What depends on the source is adapted (with a note) when it is encoded, not refused:
    510 kb/s Opus is fine for stereo (a mono source gets 256), vorbis 240 kb/s for mono at
    44.1 kHz (an 8 kHz mono source gets less)."""
    for profile in ({"codec": "opus", "bitrate": 510}, {"codec": "opus", "bitrate": 510, "channels": 2},
                    {"codec": "opus", "bitrate": 256, "channels": 1}, {"codec": "vorbis", "bitrate": 240, "channels": 1},
                    {"codec": "vorbis", "bitrate": 500, "channels": 2}, {"codec": "vorbis", "bitrate": 500}):
        assert normalize_profile("p", profile)["bitrate"] == profile["bitrate"]
    text = render_tup_config("p", {"codec": "opus", "bitrate": 510}).replace("\nCONFIG_ART=", "\nCONFIG_CHANNELS=1\nCONFIG_ART=")
    with pytest.raises(ProfileError, match=r"^profile 'p', field 'bitrate': 510 is more than opus takes for 1 channel"):
        parse_tup_config(text, "p")  # a config made elsewhere gets the same check


@pytest.mark.parametrize("name", ["", "Phone", "my phone", "index", "a" * 33, "-x", "../x"])
def test_bad_names(name):
    with pytest.raises(ProfileError, match="profile name"):
        normalize_profile(name, {"codec": "opus"})


def test_not_a_mapping():
    with pytest.raises(ProfileError, match="expected a mapping"):
        normalize_profile("phone", ["opus"])


def test_defaults_filled():
    p = normalize_profile("x", {"codec": "mp3"})
    assert p == {"codec": "mp3", "quality": 2, "art": True, "art_max_size": 0,
                 "fat32_names": False, "playlists": False, "extra_files": [],
                 "names": "exfat", "ascii_names": False, "id3": "2.4", "include": None, "exclude": None,
                 "lossy": "copy", "replaygain": "keep"}


def test_parse_refuses_foreign_config():
    with pytest.raises(ProfileError, match="is for profile 'car'"):
        parse_tup_config(render_tup_config("car", {"codec": "mp3"}), "phone")
    with pytest.raises(ProfileError, match="not CONFIG_NAME=value"):
        parse_tup_config("CONFIG_PROFILE=x\nhello\n")
    with pytest.raises(ProfileError, match="field 'bitrate'"):
        parse_tup_config("CONFIG_PROFILE=x\nCONFIG_CODEC=opus\nCONFIG_BITRATE=9999\n")


profiles = st.one_of(
    st.fixed_dictionaries({"codec": st.just("flac"), "compression_level": st.integers(0, 8)}),
    st.fixed_dictionaries({"codec": st.just("opus"), "bitrate": st.integers(6, 510)}),
    st.fixed_dictionaries({"codec": st.just("mp3"), "bitrate": st.sampled_from(MP3_CBR_BITRATES)}),
    st.fixed_dictionaries({"codec": st.just("mp3"), "quality": st.integers(0, 9)}),
    st.fixed_dictionaries({"codec": st.just("vorbis"), "quality": st.integers(-1, 10)}),
    st.fixed_dictionaries({"codec": st.just("vorbis"), "bitrate": st.integers(45, 500)}),
).flatmap(lambda base: st.fixed_dictionaries({
    **{k: st.just(v) for k, v in base.items()},
    "art": st.booleans(),
    "art_max_size": st.one_of(st.just(0), st.integers(16, 8192)),
    "fat32_names": st.booleans(),
    "playlists": st.booleans(),
    "extra_files": st.lists(st.sampled_from(["cover.jpg", "*.cue", "*.log", "folder.*", "Scans *"]), unique=True),
    "replaygain": st.sampled_from(["keep", "compute"]),
})).flatmap(lambda base: st.one_of(st.just(base), st.integers(1, 2).map(lambda n: {**base, "channels": n})))
# (a bitrate more than any output of the profile's channels can take is refused: see above)
profiles = profiles.filter(lambda p: "channels" not in p or "bitrate" not in p
                           or p["bitrate"] <= (most_for_channels(p["codec"], "bitrate", p["channels"]) or p["bitrate"]))


@given(profiles, st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True).filter(lambda n: n not in ("index", "tup", "report")))
def test_render_parse_round_trip(profile, name):
    text = render_tup_config(name, profile)
    parsed_name, parsed = parse_tup_config(text, name)
    assert parsed_name == name
    assert parsed == normalize_profile(name, profile)
    # Rendering is canonical: rendering the parsed profile gives the same text.
    assert render_tup_config(name, parsed) == text
    for line in text.splitlines()[1:]:
        assert line.startswith("CONFIG_") and "\n" not in line
