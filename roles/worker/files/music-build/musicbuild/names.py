"""Output names: index keys that are safe for tup, and the names each profile's `names`
style gives its outputs: `exfat` (SD cards, Android), `fat32` (car stereos) or `posix`, with
`ascii_names` transliterating them first.

Pure functions, no I/O (Unidecode is imported only for `ascii_names`).
"""
from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from dataclasses import dataclass

# Control characters (C0, DEL, C1) and the line and paragraph separators: a playlist line or a
# listing cannot hold them (several readers, Python's str.splitlines among them, end a line at
# \x0b, \x0c, \x1c-\x1e, \x85, U+2028 and U+2029 too), so no output name or #EXTINF label has them.
CONTROLS = frozenset({chr(c) for c in range(32)} | {chr(c) for c in range(0x7F, 0xA0)} | {"\u2028", "\u2029"})
# FAT32 long file names refuse these and the C0 controls; the other controls go too (above).
FAT32_FORBIDDEN = set('<>:"/\\|?*') | CONTROLS
_CONTROL_RUNS = re.compile("[" + "".join(sorted(CONTROLS)) + "]+")
DOS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
# Many car stereos show or accept at most 64 characters of a name; Windows paths stop at 260
# (drive and root included), so whole relative paths stay within 240.
FAT32_MAX_COMPONENT = 64
FAT32_MAX_PATH = 240
MIN_STEM = 8
# exFAT (the exFAT specification, section 7.7.3, and exfat-fuse / mkfs.exfat as tried): these
# and the C0 controls are refused in a name; a name holds 255 UTF-16 code units. Names that
# differ only in case are one name (its up-case table). Trailing dots and spaces are written
# by exfat-fuse but Windows cannot open such a file (its API strips them), so they go too.
EXFAT_FORBIDDEN = set('"*/:<>?\\|') | CONTROLS
EXFAT_MAX_COMPONENT = 255
# A name in the builds tree itself (ext4 and the like): at most 255 bytes of UTF-8.
POSIX_MAX_BYTES = 255
STYLES = ("exfat", "fat32", "posix")


@dataclass(frozen=True)
class Naming:
    """A profile's names: its style (STYLES) and whether they are transliterated to ASCII."""
    style: str = "posix"
    ascii: bool = False

    @property
    def fat32(self) -> bool:
        return self.style == "fat32"

    @property
    def folds_case(self) -> bool:
        """Names that differ only in case are one name on the device."""
        return self.style in ("fat32", "exfat")


def naming(value) -> Naming:
    """A Naming from a normalised profile (its `names` and `ascii_names`), a style name, a
    Naming, or a bool (True: fat32, False: posix, as `fat32_names` once was)."""
    if isinstance(value, Naming):
        return value
    if isinstance(value, dict):
        style = value.get("names") or ("fat32" if value.get("fat32_names") else "posix")
        return Naming(style, bool(value.get("ascii_names")))
    if isinstance(value, str):
        if value not in STYLES:
            raise ValueError(f"unknown names style {value!r}")
        return Naming(value)
    return Naming("fat32" if value else "posix")


def digest(text: str, length: int = 10) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:length]


def slug(text: str, limit: int = 40) -> str:
    """ASCII letters, digits, '_' and '-' only: safe in tup rules and shell words."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_")
    return (cleaned[:limit].rstrip("_") or "x")


def index_key(relpath: str) -> str:
    """Stable, tup-safe key of a source path: readable slug plus a hash of the exact path."""
    stem = posixpath.splitext(posixpath.basename(relpath))[0] if relpath else "root"
    return f"{slug(stem)}-{digest(relpath)}"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _cut(text: str, units: int) -> str:
    """The longest prefix of `text` within `units` UTF-16 code units."""
    out = []
    used = 0
    for ch in text:
        n = utf16_len(ch)
        if used + n > units:
            break
        out.append(ch)
        used += n
    return "".join(out)


def split_ext(name: str) -> tuple[str, str]:
    stem, ext = posixpath.splitext(name)
    if not stem:  # ".hidden" has no extension
        return name, ""
    return stem, ext


def fat32_component(name: str, limit: int = FAT32_MAX_COMPONENT) -> str:
    """One path component made safe for FAT32 and car stereos."""
    name = unicodedata.normalize("NFC", name)
    name = "".join("_" if ch in FAT32_FORBIDDEN or unicodedata.category(ch) == "Cs" else ch for ch in name)
    name = name.strip(" ").rstrip(". ")
    if not name:
        name = "_"
    stem, ext = split_ext(name)
    if stem.split(".")[0].upper() in DOS_DEVICES:
        stem = "_" + stem
    ext = _cut(ext, 16).rstrip(". ")  # a cut extension can end in a dot or a space
    if utf16_len(stem + ext) > limit:
        stem = _cut(stem, max(1, limit - utf16_len(ext))).rstrip(". ")
        if not stem:
            stem = "_"
    return (stem + ext).rstrip(". ") or "_"


def fat32_path(relpath: str, max_component: int = FAT32_MAX_COMPONENT, max_path: int = FAT32_MAX_PATH) -> str:
    """A relative path made of FAT32-safe components and within the whole-path limit."""
    parts = [fat32_component(p, max_component) for p in relpath.split("/") if p not in ("", ".", "..")]
    if not parts:
        return "_"
    while utf16_len("/".join(parts)) > max_path:
        excess = utf16_len("/".join(parts)) - max_path
        # Shorten the file's stem first, then the longest folder name.
        stem, ext = split_ext(parts[-1])
        if utf16_len(stem) > MIN_STEM:
            keep = max(MIN_STEM, utf16_len(stem) - excess)
            parts[-1] = (_cut(stem, keep).rstrip(". ") or "_") + ext
            continue
        longest = max(range(len(parts) - 1), key=lambda i: utf16_len(parts[i]), default=None)
        if longest is None or utf16_len(parts[longest]) <= MIN_STEM:
            break
        keep = max(MIN_STEM, utf16_len(parts[longest]) - excess)
        parts[longest] = _cut(parts[longest], keep).rstrip(". ") or "_"
    return "/".join(parts)


def is_fat32_safe(relpath: str, max_component: int = FAT32_MAX_COMPONENT, max_path: int = FAT32_MAX_PATH) -> bool:
    """What `fat32_path` promises, checked independently (used by tests and as a guard)."""
    if utf16_len(relpath) > max_path:
        return False
    for part in relpath.split("/"):
        if not part or part in (".", ".."):
            return False
        if any(ch in FAT32_FORBIDDEN for ch in part):
            return False
        if part != part.rstrip(". ") or utf16_len(part) > max_component:
            return False
        if split_ext(part)[0].split(".")[0].upper() in DOS_DEVICES:
            return False
    return True


def _cut_bytes(text: str, size: int) -> str:
    """The longest prefix of `text` within `size` bytes of UTF-8."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= size:
        return text
    return data[:size].decode("utf-8", "ignore")


def _fits(text: str, units: int, size: int = POSIX_MAX_BYTES) -> str:
    """The longest prefix of `text` within `units` UTF-16 code units and `size` UTF-8 bytes."""
    return _cut_bytes(_cut(text, units), size)


def _bounded_component(name: str, units: int) -> str:
    """`name` cut to `units` UTF-16 units and POSIX_MAX_BYTES, its extension kept."""
    if utf16_len(name) <= units and len(name.encode("utf-8", "surrogateescape")) <= POSIX_MAX_BYTES:
        return name
    stem, ext = split_ext(name)
    ext = _fits(ext, 16, 32)
    ext_bytes = len(ext.encode("utf-8", "surrogateescape"))
    stem = _fits(stem, max(1, units - utf16_len(ext)), max(1, POSIX_MAX_BYTES - ext_bytes))
    return stem + ext


def exfat_component(name: str) -> str:
    """One path component an exFAT filesystem takes and Windows opens: EXFAT_FORBIDDEN
    characters and lone surrogates (bytes that are no UTF-8) as '_', no trailing dot or
    space, within 255 UTF-16 units and 255 bytes (the builds tree's own limit), the
    extension kept."""
    name = "".join("_" if ch in EXFAT_FORBIDDEN or unicodedata.category(ch) == "Cs" else ch for ch in name)
    name = name.rstrip(". ") or "_"
    if name in (".", ".."):
        name = "_"
    name = _bounded_component(name, EXFAT_MAX_COMPONENT)
    return name.rstrip(". ") or "_"


def exfat_path(relpath: str) -> str:
    parts = [exfat_component(p) for p in relpath.split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def is_exfat_safe(relpath: str) -> bool:
    """What `exfat_path` promises, checked independently."""
    for part in relpath.split("/"):
        if not part or part in (".", "..") or part != part.rstrip(". "):
            return False
        if any(ch in EXFAT_FORBIDDEN or unicodedata.category(ch) == "Cs" for ch in part):
            return False
        if utf16_len(part) > EXFAT_MAX_COMPONENT or len(part.encode("utf-8")) > POSIX_MAX_BYTES:
            return False
    return True


def posix_path(relpath: str) -> str:
    """The source's path with control characters replaced, each name within 255 bytes."""
    return "/".join(_bounded_component(p, 10 ** 6) for p in without_controls(relpath).split("/"))


class MissingLibrary(OSError):
    """A library a profile's setting needs is not installed (music-build's one-line error)."""


def asciify(relpath: str) -> str:
    """Each name transliterated to ASCII as beets' `asciify_paths` does (Unidecode, a '/' it
    makes replaced by '_', the spaces it puts around words ("東京" is "Dong Jing ") stripped
    as beets' default replacements strip them; a name left empty is '_')."""
    try:
        from unidecode import unidecode
    except ImportError:  # an OSError: music-build says it in one line, as a missing file
        raise MissingLibrary("ascii_names needs the Unidecode library (Debian: python3-unidecode; "
                             "pip: Unidecode)") from None
    return "/".join((unidecode(p).replace("/", "_").strip() or "_") if p else p for p in relpath.split("/"))


def style_path(relpath: str, how) -> str:
    """`relpath` as profile names of `how` (a Naming, style or bool) make it."""
    how = naming(how)
    if how.ascii:
        relpath = asciify(relpath)
    if how.style == "fat32":
        return fat32_path(relpath)
    if how.style == "exfat":
        return exfat_path(relpath)
    return posix_path(relpath)


def with_suffix_number(relpath: str, number: int, fat32) -> str:
    """'a/b/Song.mp3' -> 'a/b/Song (2).mp3', kept within the style's limits."""
    how = naming(fat32)
    head, name = posixpath.split(relpath)
    stem, ext = split_ext(name)
    suffix = f" ({number})"
    if how.fat32:
        room = min(FAT32_MAX_COMPONENT, FAT32_MAX_PATH - utf16_len(head) - 1) - utf16_len(ext + suffix)
        stem = _cut(stem, max(1, room)).rstrip(". ") or "_"
    else:
        units = (EXFAT_MAX_COMPONENT if how.style == "exfat" else 10 ** 6) - utf16_len(ext + suffix)
        size = POSIX_MAX_BYTES - len((ext + suffix).encode("utf-8", "surrogateescape"))
        stem = _fits(stem, max(1, units), max(1, size))
        if how.style == "exfat":
            stem = stem.rstrip(". ") or "_"
    return posixpath.join(head, stem + suffix + ext)


def without_controls(relpath: str) -> str:
    """`relpath` with each control character (CONTROLS) replaced by '_': the name every profile
    gives an output, FAT32 or not, so that a playlist's path line can name it."""
    return "".join("_" if ch in CONTROLS else ch for ch in relpath)


def desired_dest(relpath: str, new_ext: str | None, fat32) -> str:
    """Where one source lands in a profile's tree, before collisions are resolved. `fat32`:
    the profile's Naming (or style, or a bool: True fat32, False posix)."""
    if new_ext is not None:
        stem, _ = split_ext(relpath)
        relpath = f"{stem}.{new_ext}"
    return style_path(relpath, fat32)


def playlist_key(album: str) -> str:
    """The key of an album's playlist among a profile's outputs: the album folder with a
    trailing '/', which no source file's path has."""
    return album + "/"


def playlist_wanted(albums: dict[str, list[str]], wanted: dict[str, str], fat32) -> dict[str, str]:
    """Where each album's playlist would go, before collisions are resolved: beside the
    album's tracks (`wanted`: track -> desired destination), in the folder most of them land
    in (a long path can be cut differently per track), named after the album folder.
    `albums` maps an album folder ("" for the top) to its tracks; keys are `playlist_key`s."""
    out = {}
    for album, tracks in albums.items():
        folders = [posixpath.dirname(wanted[t]) for t in tracks if t in wanted]
        if not folders:
            continue
        folder = min(set(folders), key=lambda f: (-folders.count(f), f))
        name = (posixpath.basename(album) or "playlist") + ".m3u8"
        how = naming(fat32)
        if not how.fat32:
            # the folder is the tracks' (already styled); the name is styled as theirs are
            out[playlist_key(album)] = posixpath.join(folder, style_path(name, how))
            continue
        if how.ascii:
            name = asciify(name)
        # Within the path limit by a shorter name, not by a cut folder (a folder of its own).
        stem, ext = split_ext(fat32_component(name))
        room = FAT32_MAX_PATH - utf16_len(folder) - 1 - utf16_len(ext) if folder else FAT32_MAX_COMPONENT
        if room >= 1:
            name = (_cut(stem, room).rstrip(". ") or "_") + ext
        out[playlist_key(album)] = fat32_path(posixpath.join(folder, name))
    return out


def m3u_label(text: str) -> str:
    """An #EXTINF title: each run of control characters (a newline in a TITLE would end the
    line and make the rest of it a path) becomes one space."""
    return _CONTROL_RUNS.sub(" ", text).strip()


def m3u_path(relpath: str) -> str | None:
    """A playlist's path line for `relpath`, or None when no line can hold it. A line
    starting with '#' is a comment, and leading spaces are dropped by some players: such a
    name gets './' in front."""
    if any(ch in CONTROLS for ch in relpath) or not relpath:
        return None
    if relpath.startswith(("#", " ")):
        return "./" + relpath
    return relpath


def assign_dests(wanted: dict[str, str], previous: dict[str, tuple[str, str]], fat32,
                 yielding: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """Give every key a distinct destination.

    `wanted` maps key -> desired relative destination. `previous` maps key ->
    (desired, assigned) from the last build: a key whose desired name did not change
    keeps what it had, so adding a file never renames another one's output.
    Among the keys that get a name now, those in `yielding` (the playlists the build
    writes) give way to the others (the library's own files).
    On FAT32 and exFAT (`fat32`: the profile's Naming, or a bool as before) names compare
    case-insensitively and folders that differ only in case are merged under the first spelling.
    """
    how = naming(fat32)
    fat32 = how.folds_case  # what follows folds case where the device does
    fold = (lambda s: s.casefold()) if fat32 else (lambda s: s)
    taken: set[str] = set()
    folders: dict[str, str] = {}
    result: dict[str, str] = {}

    def canonical_folders(path: str) -> str:
        if not fat32:
            return path
        parts = path.split("/")
        for i in range(len(parts) - 1):
            prefix = "/".join(parts[: i + 1])
            canon = folders.setdefault(fold(prefix), prefix)
            parts[: i + 1] = canon.split("/")
        return "/".join(parts)

    order = sorted(wanted, key=lambda k: (previous.get(k, (None,))[0] != wanted[k], k in yielding, wanted[k], k))
    for key in order:
        desired = canonical_folders(wanted[key])
        old = previous.get(key)
        candidate = old[1] if old and old[0] == wanted[key] else desired
        if fat32:
            candidate = canonical_folders(candidate)
        number = 1
        while fold(candidate) in taken:
            number += 1
            candidate = with_suffix_number(desired, number, how)
        taken.add(fold(candidate))
        result[key] = candidate
    return result
