"""Device profiles: validation, normalisation and tup variant config rendering.

Pure Python (no Ansible, no boto3): the `tup_profile` module, the worker's build
program and the tests all use it, so a profile is parsed in exactly one place.

A profile is a dict such as ``{"codec": "opus", "bitrate": 96, "art_max_size": 500}``.
`normalize_profile` checks every field and fills defaults; `render_tup_config`
turns the result into the text of a tup variant's ``tup.config``;
`parse_tup_config` reads such a text back (and re-validates it), so a config
taken from elsewhere (an SSM parameter) gets the same checks.
"""
from __future__ import annotations

import json
import re

CODECS = ("flac", "opus", "mp3", "vorbis")
EXTENSIONS = {"flac": "flac", "opus": "opus", "mp3": "mp3", "vorbis": "ogg"}
MP3_CBR_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
OPUS_BITRATE_RANGE = (6, 510)
VORBIS_BITRATE_RANGE = (45, 500)
ART_MAX_SIZE_RANGE = (16, 8192)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Names that would clash with the build's own entries in a tup tree or builds dir.
RESERVED_NAMES = frozenset({"index", "report", "tup"})

COMMON_FIELDS = ("codec", "art", "art_max_size", "fat32_names", "playlists", "extra_files")
CODEC_FIELDS = {
    "flac": ("compression_level",),
    "opus": ("bitrate",),
    "mp3": ("bitrate", "quality"),
    "vorbis": ("bitrate", "quality"),
}
ALL_FIELDS = frozenset(COMMON_FIELDS) | {f for fs in CODEC_FIELDS.values() for f in fs}
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
    if codec == "flac":
        out["compression_level"] = _int_field(name, profile, "compression_level", 0, 8, 8)
    elif codec == "opus":
        out["bitrate"] = _int_field(name, profile, "bitrate", *OPUS_BITRATE_RANGE, default=128)
    elif codec == "mp3":
        if profile.get("bitrate") is not None and profile.get("quality") is not None:
            raise ProfileError(name, "bitrate", "mp3 takes either bitrate (CBR) or quality (VBR), not both")
        if profile.get("bitrate") is not None:
            bitrate = _int_field(name, profile, "bitrate", MP3_CBR_BITRATES[0], MP3_CBR_BITRATES[-1])
            if bitrate not in MP3_CBR_BITRATES:
                raise ProfileError(name, "bitrate", f"{bitrate} is not an MP3 bitrate (one of {list(MP3_CBR_BITRATES)})")
            out["bitrate"] = bitrate
        else:
            out["quality"] = _int_field(name, profile, "quality", 0, 9, 2)
    else:  # vorbis
        if profile.get("bitrate") is not None and profile.get("quality") is not None:
            raise ProfileError(name, "bitrate", "vorbis takes either bitrate (ABR) or quality (VBR), not both")
        if profile.get("bitrate") is not None:
            out["bitrate"] = _int_field(name, profile, "bitrate", *VORBIS_BITRATE_RANGE)
        else:
            out["quality"] = _int_field(name, profile, "quality", -1, 10, 5)

    out["art"] = _bool_field(name, profile, "art", True)
    size = profile.get("art_max_size", 0)
    if size in (0, "0"):
        out["art_max_size"] = 0
    else:
        out["art_max_size"] = _int_field(name, profile, "art_max_size", *ART_MAX_SIZE_RANGE)
    out["fat32_names"] = _bool_field(name, profile, "fat32_names", False)
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
    return out


def encoder_settings(profile: dict) -> list[str]:
    """The codec settings that change the encoded audio, as `music-encode` options."""
    codec = profile["codec"]
    if codec == "flac":
        return ["--compression-level", str(profile["compression_level"])]
    if "bitrate" in profile and profile["bitrate"] is not None:
        return ["--bitrate", str(profile["bitrate"])]
    if "quality" in profile and profile["quality"] is not None:
        return ["--quality", str(profile["quality"])]
    return []


def render_tup_config(name: str, profile) -> str:
    """The tup.config text of profile `name` (validated first)."""
    p = normalize_profile(name, profile)
    lines = [
        ("PROFILE", name),
        ("CODEC", p["codec"]),
        ("EXT", EXTENSIONS[p["codec"]]),
    ]
    for field in CODEC_FIELDS[p["codec"]]:
        if p.get(field) is not None:
            lines.append((field.upper(), str(p[field])))
    lines += [
        ("ART", "y" if p["art"] else "n"),
        ("ART_MAX_SIZE", str(p["art_max_size"])),
        ("FAT32_NAMES", "y" if p["fat32_names"] else "n"),
        ("PLAYLISTS", "y" if p["playlists"] else "n"),
        ("EXTRA_FILES", json.dumps(p["extra_files"], ensure_ascii=True, separators=(",", ":"))),
    ]
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
    profile: dict = {}
    for key, raw in values.items():
        field = key.lower()
        if field in ("art", "fat32_names", "playlists"):
            profile[field] = raw
        elif field == "extra_files":
            try:
                profile[field] = json.loads(raw)
            except ValueError as exc:
                raise ProfileError(config_name, field, f"not a JSON list: {exc}") from None
        else:
            profile[field] = raw
    return config_name, normalize_profile(config_name, profile)
