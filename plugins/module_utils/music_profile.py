"""Device profiles and the codec table: validation, normalisation, tup variant config rendering.

Pure Python (no Ansible, no mutagen, no imports of sibling modules): the `tup_profile` module
imports it as module_utils, the build program as `musicbuild.profile` (the same file), so a
profile is parsed, and a codec described, in exactly one place.

A profile is a dict such as ``{"codec": "opus", "bitrate": 96, "art_max_size": 500}``.
`normalize_profile` checks every field and fills defaults; `render_tup_config`
turns the result into the text of a tup variant's ``tup.config``;
`parse_tup_config` reads such a text back (and re-validates it), so a config
taken from elsewhere (an SSM parameter) gets the same checks. `encoder_command` is the
encoder's command line for a normalised profile.

`CODEC_TABLE` below is the only description of a codec and its encoder settings: the
validation, the tup rules (through ``CONFIG_SETTINGS``), music-encode's options and encoder
command, the tag writer (tags.py, by tag format), the benchmark and the README's profile
reference (``python -m music_devkit.profile_docs``) all read it.
"""
from __future__ import annotations

import json
import re

# ------------------------------------------------------------------------------ codec table
#
# codec name -> {
#   "extension":   the output files' extension;
#   "description": one line for the docs (what the output is, how its tags are carried);
#   "command":     the encoder's command line; it reads the decoded audio (WAV) on stdin.
#                  SETTINGS stands for the settings' arguments, OUT for the output path;
#   "tags":        the tag format, which tags.py maps to its writer (its WRITERS);
#   "settings":    setting name -> {       (in the order their arguments go on the command line)
#       "type":        "int";
#       "range":       (lowest, highest), inclusive; or
#       "choices":     the allowed values ("what": how a refusal names one: "an MP3 bitrate");
#       "default":     the value when the profile gives none (None: no value, no argument);
#       "args":        the encoder's arguments, "{}" standing for the value;
#       "doc":         one line for the docs, read after the values ("6-510 kb/s (VBR target)");
#       "encoder_default": (optional, for settings added later) the value the encoder used
#                      before the setting existed: at that value the output's audio digest
#                      stays as it was, so existing outputs are not re-encoded;
#   },
#       "limits":      (optional) what the encoder honours of this setting for a given source;
#                      music-encode adapts the setting (with a note in the report) rather
#                      than fail the track:
#                      "per_channel": (lowest, highest) kb/s per output channel: above the
#                          highest the bitrate is lowered to it; below the lowest, sources of
#                          more than 2 channels are downmixed to stereo;
#                      "max_rate": the highest sample rate (Hz) the setting works at: sources
#                          above it are resampled;
#                      "probe": the encoder's own limits depend on the source's channels and
#                          rate: they are asked of the encoder, and the nearest value it takes
#                          is used;
#                      "max_for_channels": {channels: highest}: the most the encoder takes
#                          for that many output channels at any rate it is given (a
#                          profile's `channels` that says so makes a higher value impossible
#                          for every source: refused at validation, as "per_channel"'s highest);
#                      "bits_per_sample": the most kb/s is this many bits a sample and
#                          channel at the output's rate: above it the bitrate is lowered to it;
#   },
#   "exclusive":   (optional) groups {setting: label} of which a profile gives at most one;
#                  a group's defaults apply only when the profile gives none of its settings.
#   "input":       what the encoder takes on stdin: "channels" (most channels: a source with
#                  more is downmixed), "bits" (largest integer sample size: larger ones are
#                  converted), "rate" (highest sample rate, None for any: the encoder
#                  resamples itself; a source above it is resampled before);
#   "stream_args": (optional) the encoder's arguments for WAV input of unknown length (a
#                  streamed source, or a conversion in the pipe), which it must read to its end.
#   "lossless":    (optional) True: the output keeps the bit depth it is given (the profile's
#                  max_bit_depth applies to it; lossy outputs have none).
#   (a setting's "scale": optional, the profile's value is in 1/scale of the encoder's unit:
#                  AAC's quality 5 is `-q:a 0.5`.)
# }
#
# Adding a setting is an entry here and a row in tests/unit/test_codecs.py; then
# `.venv/bin/python -m music_devkit.profile_docs` regenerates README.md's reference.
SETTINGS = "<settings>"
OUT = "<out>"
MP3_CBR_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)

CODEC_TABLE = {
    "flac": {
        "extension": "flac",
        "description": "FLAC, lossless; Vorbis comments and FLAC pictures",
        "command": ("flac", SETTINGS, "--silent", "--force", "-o", OUT, "-"),
        "tags": "flac",
        "input": {"channels": 8, "bits": 32, "rate": None},
        "stream_args": ("--ignore-chunk-sizes",),
        "lossless": True,  # its output keeps the bit depth it is given (max_bit_depth applies)
        "settings": {
            "compression_level": {
                "type": "int", "range": (0, 8), "default": 8, "args": ("-{}",),
                "doc": "(higher: smaller files, slower to encode; the audio is the same)",
            },
        },
    },
    "opus": {
        "extension": "opus",
        "description": "Opus in Ogg; Vorbis comments, ReplayGain as R128 gains",
        "command": ("opusenc", "--quiet", SETTINGS, "-", OUT),
        "tags": "opus",
        # opusenc reads 8, 16 and 24-bit integers (and floats), and resamples to 48 kHz itself.
        "input": {"channels": 255, "bits": 24, "rate": None},
        "settings": {
            "bitrate": {
                "type": "int", "range": (6, 510), "default": 128, "args": ("--bitrate", "{}"),
                "doc": "kb/s (VBR target)",
                # opusenc: at most 256 kb/s per channel; surround under 16 kb/s per channel it
                # downmixes to stereo itself (opus-tools' opusenc.c)
                "limits": {"per_channel": (16, 256)},
            },
        },
    },
    "mp3": {
        "extension": "mp3",
        "description": "MP3 (LAME, with its gapless header); ID3v2.4 tags",
        "command": ("lame", "--quiet", SETTINGS, "-", OUT),
        "tags": "id3v2.4",
        # MP3 carries 1 or 2 channels; lame reads 8-32-bit integers and resamples itself (an
        # MP3 has at most 48 kHz).
        "input": {"channels": 2, "bits": 32, "rate": None},
        "settings": {
            "bitrate": {
                "type": "int", "choices": MP3_CBR_BITRATES, "what": "an MP3 bitrate", "default": None,
                "args": ("--cbr", "-b", "{}"), "doc": "kb/s, constant bitrate (CBR)",
            },
            "quality": {
                "type": "int", "range": (0, 9), "default": 2, "args": ("-V", "{}"),
                "doc": "(LAME VBR; 0 is best and largest)",
            },
        },
        "exclusive": ({"bitrate": "CBR", "quality": "VBR"},),
    },
    "vorbis": {
        "extension": "ogg",
        "description": "Ogg Vorbis; Vorbis comments",
        "command": ("oggenc", "--quiet", SETTINGS, "-o", OUT, "-"),
        "tags": "vorbis",
        # oggenc reads 8, 16 and 24-bit integers (and floats); libvorbis encodes at most 200 kHz.
        "input": {"channels": 255, "bits": 24, "rate": 200000},
        "settings": {
            "bitrate": {
                "type": "int", "range": (45, 500), "default": None, "args": ("-b", "{}"),
                "doc": "kb/s, average bitrate (ABR)",
                # libvorbis' bitrate mode has no setup above 50 kHz, and takes a range of
                # bitrates that depends on the channels and the rate (mono 44.1 kHz: 32-240;
                # mono at most 240 at every rate up to 50 kHz, stereo 500)
                "limits": {"max_rate": 50000, "probe": True, "max_for_channels": {1: 240, 2: 500}},
            },
            "quality": {
                "type": "int", "range": (-1, 10), "default": 5, "args": ("-q", "{}"),
                "doc": "(VBR; 10 is best and largest)",
            },
        },
        "exclusive": ({"bitrate": "ABR", "quality": "VBR"},),
    },
    "aac": {
        "extension": "m4a",
        "description": ("AAC-LC in MP4 (ffmpeg's native encoder), for Apple devices; MP4 atoms, MusicBrainz ids "
                        "and ReplayGain as iTunes freeform atoms, gapless as an edit list and iTunSMPB"),
        # The movie timescale is a multiple of every rate the encoder takes (7350-96000 Hz), so
        # the edit list that trims the encoder's priming and padding is exact to the sample.
        "command": ("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-f", "wav", "-i", "-", "-map_metadata", "-1",
                    "-c:a", "aac", SETTINGS, "-movie_timescale", "28224000", "-f", "ipod", "-y", OUT),
        "tags": "mp4",
        # ffmpeg's aac takes 1-8 channels at 7350-96000 Hz (a source above is resampled first).
        "input": {"channels": 8, "bits": 32, "rate": 96000},
        "settings": {
            "bitrate": {
                "type": "int", "range": (16, 512), "default": 256, "args": ("-b:a", "{}k"),
                "doc": "kb/s, for all channels (above what AAC holds at the output's rate, 6 bits a sample "
                       "and channel, it is lowered to that, with a note)",
                # ffmpeg's aacenc clamps the bitrate to 6144 bits a frame of 1024 samples a channel
                "limits": {"bits_per_sample": 6},
            },
            "quality": {
                "type": "int", "range": (1, 20), "default": None, "args": ("-q:a", "{}"), "scale": 10,
                "doc": "(ffmpeg's VBR `-q:a` in tenths: 1-20 is 0.1-2.0, higher is better and larger)",
            },
        },
        "exclusive": ({"bitrate": "ABR", "quality": "VBR"},),
    },
}

# The settings every output's audio digest has carried since before this table, None when
# absent (music-encode re-encodes an output when its digest changes). Never change this
# tuple: a setting added later enters the digest only where a profile sets it.
DIGEST_SETTINGS = ("compression_level", "bitrate", "quality")

# Views of the table.
CODECS = tuple(CODEC_TABLE)
EXTENSIONS = {codec: entry["extension"] for codec, entry in CODEC_TABLE.items()}
CODEC_FIELDS = {codec: tuple(entry["settings"]) for codec, entry in CODEC_TABLE.items()}
# Every setting name, with its type (a name means the same in every codec that has it).
SETTING_TYPES = {name: spec["type"] for entry in CODEC_TABLE.values() for name, spec in entry["settings"].items()}
SETTING_NAMES = tuple(SETTING_TYPES)
TYPES = {"int": int}

# ------------------------------------------------------------------ fields of every profile
ART_MAX_SIZE_RANGE = (16, 8192)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Names that would clash with the build's own entries in a tup tree or builds dir.
RESERVED_NAMES = frozenset({"index", "report", "tup"})

COMMON_FIELDS = ("codec", "channels", "art", "art_max_size", "fat32_names", "playlists", "extra_files")
# Names, tags and subsets for devices (issue 15): see _device_fields.
COMMON_FIELDS += ("names", "ascii_names", "id3", "include", "exclude")
NAMES_STYLES = ("exfat", "fat32", "posix")
ID3_VERSIONS = ("2.4", "2.3")
SUBSET_RULES = ("paths", "tags")
# ReplayGain (issue 15): `keep` carries the sources' tags as they are; `compute` adds the
# ReplayGain 2.0 values they lack, measured by loudgain (musicbuild/replaygain.py).
COMMON_FIELDS += ("replaygain",)
REPLAYGAIN_MODES = ("keep", "compute")
# Lossy sources (issue 15; musicbuild/formats.py): MP3, AAC, Opus and Vorbis files are copied
# as they are, transcoded like a lossless source, or skipped (listed in the report).
COMMON_FIELDS += ("lossy",)
LOSSY_MODES = ("copy", "transcode", "skip")
# `channels`: sources with more channels are downmixed to this many (mono or stereo); absent,
# every source keeps its channels (up to what the codec carries, its "input" "channels").
CHANNELS_RANGE = (1, 2)
# Common fields that change the audio: in the audio digest (a change re-encodes), and only
# when set, so that a profile without them keeps the digests of its existing outputs.
AUDIO_FIELDS = ("channels",)
# Limits of portable players (issue 15; musicbuild/limits.py): sources above them are
# converted, sources at or under them pass unchanged. In the audio digest only when set.
COMMON_FIELDS += ("max_sample_rate", "max_bit_depth")
AUDIO_FIELDS += ("max_sample_rate", "max_bit_depth")
SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 352800, 384000)
BIT_DEPTHS = (16, 24)
# For the docs (README.md's profile reference): field -> (values, default).
COMMON_FIELDS_DOC = {
    "channels": ("`1` or `2`: sources with more channels are downmixed to mono or stereo (ffmpeg, from the "
                 "FLAC channel layout); unset: every source keeps its channels, MP3 downmixes to 2", "-"),
    "max_sample_rate": ("one of " + ", ".join(str(r) for r in SAMPLE_RATES) + " Hz: sources above it are resampled "
                        "(ffmpeg) to the highest rate of their family (44.1 or 48 kHz) at or under it, or to the limit "
                        "itself when that family's rate is lower still (192 kHz under 44100 is 44100, 176.4 kHz under "
                        "48000 is 44100); sources at or under it pass unchanged", "-"),
    "max_bit_depth": ("`16` or `24`: sources with more bits are reduced to it with triangular dither (ffmpeg), "
                      "the output's depth for `flac`, the encoder's input for lossy codecs; sources at or under it "
                      "pass unchanged (bit-identical audio)", "-"),
    "art": ("embed cover art", "`true`"),
    "art_max_size": ("longest side in pixels (16-8192); larger art is scaled down; 0 = as is", "0"),
    "fat32_names": ("`true` is `names: fat32` (kept as its alias)", "`false`"),
    "names": ("`exfat`: names an exFAT SD card or Android phone takes (no `\"*/:<>?\\|` or control characters, "
              "no trailing dot or space, at most 255 UTF-16 units and 255 bytes a name, names that differ only in "
              "case kept apart); `fat32`: FAT32/car-stereo-safe names (also no DOS device names, at most 64 "
              "characters a name and 240 a path); `posix`: the sources' names, control characters replaced", "`exfat`"),
    "ascii_names": ("`true`: names transliterated to ASCII as beets' `asciify_paths` does (Unidecode: `Björk` is "
                    "`Bjork`, `東京` `Dong Jing`)", "`false`"),
    "id3": ("MP3 only: `\"2.4\"` or `\"2.3\"` (car stereos that read only ID3v2.3: a frame's values joined with `/`, "
            "DATE as TYER/TDAT, frames v2.3 lacks kept as TXXX, text in UTF-16)", "`\"2.4\"`"),
    "include": ("only the tracks that match: `{paths: [globs], tags: {TAG: [values]}}` (see Subsets)", "everything"),
    "exclude": ("leave out the tracks that match, same shape as `include`, e.g. `{paths: [\"Audiobooks/**\"]}`", "nothing"),
    "playlists": ("one `<album>.m3u8` per album folder", "`false`"),
    "extra_files": ('globs of files copied beside the tracks, e.g. `["cover.jpg", "*.cue", "*.log"]`', "`[]`"),
    "replaygain": ("`keep`: the sources' ReplayGain tags as they are; `compute`: also the ReplayGain 2.0 track and "
                   "album gain and peak a source lacks, measured by loudgain (an album is a source folder; a pair a "
                   "source has is kept; Opus gets them as R128 gains)", "`keep`"),
    "lossy": ("lossy sources (MP3, AAC, Opus, Vorbis): `copy`: the file as it is, tags and art untouched (an MP3's "
              "tag saved as ID3v2.3 with `id3: \"2.3\"`), under the "
              "profile's names (copied again when it changes); `transcode`: decoded and encoded like a lossless "
              "source, with a note (one already in the profile's codec is copied, never re-encoded); `skip`: left "
              "out, each one listed in the report's `skipped`", "`copy`"),
}
ALL_FIELDS = frozenset(COMMON_FIELDS) | frozenset(SETTING_NAMES)
HEADER = "# tup variant config for profile '{name}', rendered by tup_profile. Do not edit.\n"


class ProfileError(ValueError):
    """A profile is invalid. The message names the profile and the field."""

    def __init__(self, name: str, field: str | None, problem: str):
        self.profile = name
        self.field = field
        where = f"profile '{name}'" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_field(name, profile, field, lo, hi, default=None):
    value = profile.get(field, default)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if not _is_int(value):
        raise ProfileError(name, field, f"expected an integer, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ProfileError(name, field, f"{value} is out of range ({lo}-{hi})")
    return value


def _bool_field(name, profile, field, default):
    value = profile.get(field, default)
    if isinstance(value, str) and value.lower() in ("y", "yes", "true", "on", "1", "n", "no", "false", "off", "0"):
        return value.lower() in ("y", "yes", "true", "on", "1")
    if not isinstance(value, bool):
        raise ProfileError(name, field, f"expected true or false, got {value!r}")
    return value


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name in RESERVED_NAMES:
        raise ProfileError(
            str(name), None,
            "a profile name is 1-32 characters of a-z, 0-9, '_' and '-', starting with a letter or "
            f"digit, and not one of {sorted(RESERVED_NAMES)}",
        )
    return name


def _setting_value(name, codec, field, spec, value):
    """One codec setting checked against its entry in the codec table."""
    if spec["type"] != "int":
        raise ValueError(f"codec table: {codec}.{field} has an unknown type {spec['type']!r}")
    choices = spec.get("choices")
    lo, hi = (min(choices), max(choices)) if choices else spec["range"]
    value = _int_field(name, {field: value}, field, lo, hi)
    if choices and value not in choices:
        raise ProfileError(name, field, f"{value} is not {spec.get('what', 'an allowed ' + field)} (one of {list(choices)})")
    return value


def _codec_settings(name, codec, profile) -> dict:
    """The codec's settings of `profile`, checked, defaults filled (codec table order)."""
    entry = CODEC_TABLE[codec]
    given = {f for f in entry["settings"] if profile.get(f) is not None}
    excluded = set()
    for group in entry.get("exclusive", ()):
        chosen = [f for f in group if f in given]
        if len(chosen) > 1:
            either = " or ".join(f"{f} ({group[f]})" for f in group)
            raise ProfileError(name, chosen[0], f"{codec} takes either {either}, not {'both' if len(group) == 2 else 'several'}")
        if chosen:
            excluded |= set(group) - set(chosen)
    out = {}
    for field, spec in entry["settings"].items():
        if field in given:
            value = profile[field]
        elif field in excluded:
            continue
        else:
            value = spec["default"]
        if value is not None:
            out[field] = _setting_value(name, codec, field, spec, value)
    return out


def most_for_channels(codec: str, field: str, channels: int) -> int | None:
    """The highest value of a codec setting its encoder takes for output of `channels`
    channels, whatever the source (its "limits"); None when the table says no limit."""
    limits = CODEC_TABLE[codec]["settings"][field].get("limits", {})
    highest = [limits["per_channel"][1] * channels] if "per_channel" in limits else []
    highest += [limits["max_for_channels"][channels]] if channels in limits.get("max_for_channels", {}) else []
    return min(highest) if highest else None


def _check_for_channels(name, codec, settings, channels) -> None:
    """Settings that no output of at most `channels` channels can honour (the profile's
    `channels`): refused here, where they are known for every source (what depends on a
    source is adapted with a note when it is encoded)."""
    for field, value in settings.items():
        if field not in CODEC_TABLE[codec]["settings"] or not _is_int(value):
            continue
        most = most_for_channels(codec, field, channels)
        if most is not None and value > most:
            raise ProfileError(name, field, f"{value} is more than {codec} takes for {channels} channel"
                                            f"{'' if channels == 1 else 's'} (at most {most}; the profile's "
                                            f"channels: {channels})")


def _limit_fields(name, codec, profile) -> dict:
    """`max_sample_rate` and `max_bit_depth`, checked; absent from the result when unset (a
    profile without them renders, and builds, as before they existed)."""
    out = {}
    for field, allowed, what in (("max_sample_rate", SAMPLE_RATES, "a sample rate"),
                                 ("max_bit_depth", BIT_DEPTHS, "a bit depth")):
        value = _int_field(name, profile, field, min(allowed), max(allowed))
        if value is None:
            continue
        if value not in allowed:
            raise ProfileError(name, field, f"{value} is not {what} this setting takes (one of {list(allowed)})")
        out[field] = value
    return out


def normalize_profile(name: str, profile) -> dict:
    """Validate `profile` and return it with every field present (defaults filled)."""
    check_name(name)
    if not isinstance(profile, dict):
        raise ProfileError(name, None, f"expected a mapping of settings, got {type(profile).__name__}")
    unknown = sorted(set(profile) - ALL_FIELDS)
    if unknown:
        raise ProfileError(name, unknown[0], f"unknown setting (known: {', '.join(sorted(ALL_FIELDS))})")
    codec = profile.get("codec")
    if codec not in CODECS:
        raise ProfileError(name, "codec", f"unknown codec {codec!r} (choose one of {', '.join(CODECS)})")
    for field in sorted(set(profile) & ALL_FIELDS - set(COMMON_FIELDS) - set(CODEC_FIELDS[codec])):
        raise ProfileError(name, field, f"does not apply to codec {codec}")

    out: dict = {"codec": codec}
    out.update(_codec_settings(name, codec, profile))
    channels = _int_field(name, profile, "channels", *CHANNELS_RANGE)
    if channels is not None:
        most = CODEC_TABLE[codec]["input"]["channels"]
        if channels > most:
            raise ProfileError(name, "channels", f"{codec} carries at most {most} channels, not {channels}")
        out["channels"] = channels
        _check_for_channels(name, codec, out, channels)
    out.update(_limit_fields(name, codec, profile))
    out["art"] = _bool_field(name, profile, "art", True)
    size = profile.get("art_max_size", 0)
    if size in (0, "0"):
        out["art_max_size"] = 0
    else:
        out["art_max_size"] = _int_field(name, profile, "art_max_size", *ART_MAX_SIZE_RANGE)
    out.update(_device_fields(name, codec, profile))
    out["playlists"] = _bool_field(name, profile, "playlists", False)
    extra = profile.get("extra_files", [])
    if extra is None:
        extra = []
    if not isinstance(extra, (list, tuple)):
        raise ProfileError(name, "extra_files", f"expected a list of glob patterns, got {extra!r}")
    for pattern in extra:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ProfileError(name, "extra_files", f"expected a non-empty glob pattern, got {pattern!r}")
        if "/" in pattern or "\n" in pattern or pattern.startswith("."):
            raise ProfileError(name, "extra_files", f"{pattern!r}: a pattern matches file names beside the tracks (no '/', no leading '.')")
        if pattern.lower().endswith(".flac"):
            raise ProfileError(name, "extra_files", f"{pattern!r}: FLAC tracks are encoded, not copied")
    out["extra_files"] = list(extra)
    mode = profile.get("replaygain", "keep")
    if mode not in REPLAYGAIN_MODES:
        raise ProfileError(name, "replaygain", f"expected keep or compute, got {mode!r}")
    out["replaygain"] = mode
    lossy = profile.get("lossy", "copy")
    if lossy not in LOSSY_MODES:
        raise ProfileError(name, "lossy", f"expected copy, transcode or skip, got {lossy!r}")
    out["lossy"] = lossy
    return out


def _device_fields(name: str, codec: str, profile: dict) -> dict:
    """`names` (with `fat32_names: true` its alias), `ascii_names`, `id3` and the subset
    (`include`, `exclude`), checked; `fat32_names` stays in the result as `names == "fat32"`."""
    out: dict = {}
    style = profile.get("names")
    alias = profile.get("fat32_names")
    fat32 = None if alias is None else _bool_field(name, profile, "fat32_names", False)
    if style is None:
        style = "fat32" if fat32 else "exfat"
    elif style not in NAMES_STYLES:
        raise ProfileError(name, "names", f"unknown names {style!r} (choose one of {', '.join(NAMES_STYLES)})")
    elif fat32 is not None and fat32 != (style == "fat32"):
        raise ProfileError(name, "fat32_names", f"fat32_names: {str(fat32).lower()} contradicts names: {style} "
                                                "(fat32_names: true is names: fat32; give names alone)")
    out["names"] = style
    out["fat32_names"] = style == "fat32"
    out["ascii_names"] = _bool_field(name, profile, "ascii_names", False)
    version = profile.get("id3")
    takes_id3 = CODEC_TABLE[codec]["tags"].startswith("id3")
    if version is not None and not takes_id3:
        raise ProfileError(name, "id3", f"does not apply to codec {codec} (ID3 tags are MP3's)")
    if takes_id3:
        version = "2.4" if version is None else (str(version) if isinstance(version, (str, float)) else version)
        if version not in ID3_VERSIONS:
            raise ProfileError(name, "id3", f"expected \"2.4\" or \"2.3\", got {profile.get('id3')!r}")
        out["id3"] = version
    for field in ("include", "exclude"):
        out[field] = _subset_rules(name, field, profile.get(field))
    return out


def _subset_rules(name: str, field: str, rules) -> dict | None:
    """`include` / `exclude`: {paths: [globs], tags: {TAG: [values]}}, normalised (tag names in
    upper case, a single value as a list of one); None when not given."""
    if rules is None:
        return None
    if not isinstance(rules, dict):
        raise ProfileError(name, field, f"expected a mapping with paths and/or tags, got {rules!r}")
    unknown = sorted(set(rules) - set(SUBSET_RULES), key=str)
    if unknown:
        raise ProfileError(name, field, f"unknown rule {unknown[0]!r} (known: paths, tags)")
    paths = rules.get("paths") or []
    paths = [paths] if isinstance(paths, str) else paths
    if not isinstance(paths, (list, tuple)):
        raise ProfileError(name, field, f"paths: expected a list of globs, got {paths!r}")
    for glob in paths:
        if not isinstance(glob, str) or not glob.strip("/ "):
            raise ProfileError(name, field, f"paths: expected a non-empty glob, got {glob!r}")
        if glob.startswith("/") or ".." in glob.split("/") or any(ord(ch) < 32 for ch in glob):
            raise ProfileError(name, field, f"paths: {glob!r}: a glob of paths within the sources folder "
                                            "(no leading '/', no '..', no control characters)")
    tags = rules.get("tags") or {}
    if not isinstance(tags, dict):
        raise ProfileError(name, field, f"tags: expected a mapping of tag name to values, got {tags!r}")
    norm_tags: dict[str, list[str]] = {}
    for tag, values in tags.items():
        if not isinstance(tag, str) or not re.fullmatch(r"[\x20-\x3C\x3E-\x7D]+", tag):
            raise ProfileError(name, field, f"tags: {tag!r} is not a tag name (printable ASCII, no '=')")
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) for v in values):
            raise ProfileError(name, field, f"tags: {tag}: expected a value or a list of values, got {values!r}")
        norm_tags.setdefault(tag.upper(), []).extend(values)
    if not paths and not norm_tags:
        raise ProfileError(name, field, "names no paths and no tags (leave it out to match "
                                        + ("everything)" if field == "include" else "nothing)"))
    return {"paths": list(paths), "tags": norm_tags}


def encoder_command(profile: dict, out: str) -> list[str]:
    """The encoder's command line (argv) for a normalised profile, writing to `out`.

    The encoder reads the decoded audio on stdin; settings the profile leaves out (None or
    absent) give no arguments.
    """
    entry = CODEC_TABLE[profile["codec"]]
    argv: list[str] = []
    for part in entry["command"]:
        if part == SETTINGS:
            for field, spec in entry["settings"].items():
                if profile.get(field) is not None:
                    # "scale": the profile's value is in 1/scale of the encoder's unit
                    value = profile[field] / spec["scale"] if "scale" in spec else profile[field]
                    argv += [arg.format(value) for arg in spec["args"]]
        else:
            argv.append(out if part == OUT else part)
    return argv


def digest_settings(codec: str, settings: dict) -> dict:
    """The codec settings that go into an output's audio digest (a change re-encodes it).

    `settings` maps setting names (and AUDIO_FIELDS) to values or None. DIGEST_SETTINGS are
    always there, as every build has recorded them; a setting added later only when the
    profile has a value for it other than its `encoder_default`; AUDIO_FIELDS when set.
    """
    out = {field: settings.get(field) for field in DIGEST_SETTINGS}
    for field, spec in CODEC_TABLE[codec]["settings"].items():
        value = settings.get(field)
        if field not in out and value is not None and value != spec.get("encoder_default"):
            out[field] = value
    for field in AUDIO_FIELDS:
        if settings.get(field) is not None:
            out[field] = settings[field]
    return out


def render_tup_config(name: str, profile) -> str:
    """The tup.config text of profile `name` (validated first)."""
    p = normalize_profile(name, profile)
    lines = [
        ("PROFILE", name),
        ("CODEC", p["codec"]),
        ("EXT", EXTENSIONS[p["codec"]]),
    ]
    # One line per codec setting, then CONFIG_SETTINGS naming them: the tup rules
    # (Tupdefault.lua) pass each one named there to music-encode as --<setting> <value>.
    present = [field for field in CODEC_FIELDS[p["codec"]] if p.get(field) is not None]
    lines += [(field.upper(), str(p[field])) for field in present]
    lines += [("SETTINGS", ",".join(present))]
    # Common fields that change the audio, only when set: a profile without them renders
    # (and so builds) as before they existed.
    lines += [(field.upper(), str(p[field])) for field in AUDIO_FIELDS if p.get(field) is not None]
    lines += [
        ("ART", "y" if p["art"] else "n"),
        ("ART_MAX_SIZE", str(p["art_max_size"])),
        ("NAMES", p["names"]),
        ("ASCII_NAMES", "y" if p["ascii_names"] else "n"),
        *([("ID3", p["id3"])] if p.get("id3") else []),
        *[(field.upper(), json.dumps(p[field], ensure_ascii=True, sort_keys=True, separators=(",", ":")))
          for field in ("include", "exclude") if p[field] is not None],
        ("PLAYLISTS", "y" if p["playlists"] else "n"),
        ("EXTRA_FILES", json.dumps(p["extra_files"], ensure_ascii=True, separators=(",", ":"))),
    ]
    # only when computed: a profile that keeps the sources' ReplayGain renders as before
    lines += [("REPLAYGAIN", p["replaygain"])] if p["replaygain"] != "keep" else []
    lines += [("LOSSY", p["lossy"])] if p["lossy"] != "copy" else []  # (the default renders as before)
    return HEADER.format(name=name) + "".join(f"CONFIG_{k}={v}\n" for k, v in lines)


def parse_tup_config(text: str, name: str | None = None) -> tuple[str, dict]:
    """Read a tup.config text rendered by `render_tup_config` back into (name, profile).

    The result is validated again, so a hand-edited or foreign config is refused
    with the same messages as a profile dict.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"CONFIG_([A-Z0-9_]+)=(.*)", line)
        if not match:
            raise ProfileError(name or "?", None, f"tup.config line {number} is not CONFIG_NAME=value: {line!r}")
        values[match.group(1)] = match.group(2)
    config_name = values.pop("PROFILE", None)
    if config_name is None:
        raise ProfileError(name or "?", None, "tup.config has no CONFIG_PROFILE line")
    if name is not None and config_name != name:
        raise ProfileError(name, None, f"tup.config is for profile {config_name!r}")
    values.pop("EXT", None)
    listed = values.pop("SETTINGS", None)  # absent in configs rendered before the codec table
    profile: dict = {}
    for key, raw in values.items():
        field = key.lower()
        if field in ("art", "fat32_names", "playlists"):
            profile[field] = raw
        elif field in ("extra_files", "include", "exclude"):
            try:
                profile[field] = json.loads(raw)
            except ValueError as exc:
                raise ProfileError(config_name, field, f"not JSON: {exc}") from None
        else:
            profile[field] = raw
    normal = normalize_profile(config_name, profile)
    present = [field for field in CODEC_FIELDS[normal["codec"]] if normal.get(field) is not None]
    if listed is not None and listed.split(",") != (present or [""]):
        raise ProfileError(config_name, None, f"tup.config's CONFIG_SETTINGS={listed} does not name the codec "
                                              f"settings it sets ({','.join(present)}), as the tup rules need")
    return config_name, normal
