"""Subsets: which sources a profile holds (its `include` and `exclude`).

Pure functions, no I/O. A profile's rules, as music_profile normalises them:

    include: {paths: [globs], tags: {TAG: [values]}}    (None: every track)
    exclude: {paths: [globs], tags: {TAG: [values]}}    (None: none)

A track is in the profile when it matches `include` (or there is none) and does not match
`exclude`. A track matches a set of rules when any of its globs matches its path, or any of
its tags has a value that matches one of the values listed for that tag:

- paths are globs of the source's path relative to the sources folder, '/' between folders,
  matched case-sensitively as the filesystem names them: `*` and `?` within one name,
  `[abc]` one of, `**` any number of folders (`Jazz/**`); a glob that matches a folder
  matches everything in it (`Audiobooks`, `Audiobooks/` and `Audiobooks/**` alike);
- tags: tag names in any case (Vorbis comment names are case-insensitive); values compared
  case-insensitively (`jazz` matches `Jazz`), whole values, with the same `*`, `?` and
  `[...]` wildcards (`*jazz*` matches `Acid Jazz`); a tag with several values matches when
  any of them does.

Files copied beside the tracks (`extra_files`) follow their folder's tracks: copied when at
least one of them is in the profile; in a folder without tracks, by the path rules alone.
"""
from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=512)
def glob_regex(glob: str, fold: bool = False) -> re.Pattern:
    """A glob as a regular expression over a whole '/'-separated path (or a tag value when
    `fold`: case-insensitive, '/' an ordinary character). An unclosed '[' is itself."""
    out = []
    i, n = 0, len(glob)
    other = "." if fold else "[^/]"
    while i < n:
        ch = glob[i]
        if not fold and glob.startswith("**", i):
            j = i + 2
            at_start = i == 0 or glob[i - 1] == "/"
            if at_start and j < n and glob[j] == "/":
                out.append("(?:[^/]*/)*")  # zero or more folders
                i = j + 1
                continue
            out.append(".*")
            i = j
            continue
        if ch == "*":
            out.append(other + "*")
        elif ch == "?":
            out.append(other)
        elif ch == "[":
            j = i + 1
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(ch))
            else:
                body = glob[i + 1:j]
                if body[:1] in "!^":
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if fold else 0))


def path_matches(glob: str, rel: str) -> bool:
    """Whether `glob` matches the path `rel` or one of the folders it is in."""
    glob = glob.strip("/")
    regex = glob_regex(glob)
    parts = rel.split("/")
    return any(regex.fullmatch("/".join(parts[:k])) for k in range(len(parts), 0, -1))


def value_matches(pattern: str, value: str) -> bool:
    return glob_regex(pattern.casefold(), fold=True).fullmatch(value.casefold()) is not None


def tags_match(rules: dict[str, list[str]], tags: dict[str, list[str]]) -> bool:
    """Whether any tag named in `rules` has a value matching one of its patterns. `tags` maps
    tag names (any case) to values."""
    if not rules:
        return False
    upper: dict[str, list[str]] = {}
    for key, values in tags.items():
        upper.setdefault(key.upper(), []).extend(values)
    return any(value_matches(p, v) for key, patterns in rules.items() for v in upper.get(key.upper(), ())
               for p in patterns)


def matches(rules: dict | None, rel: str, tags: dict[str, list[str]] | None) -> bool:
    """Whether a source matches a set of rules (paths or tags; `tags` None: a file that is no
    track, which tag rules never match)."""
    if not rules:
        return False
    if any(path_matches(g, rel) for g in rules.get("paths") or ()):
        return True
    return tags is not None and tags_match(rules.get("tags") or {}, tags)


def is_everything(profile: dict) -> bool:
    return not profile.get("include") and not profile.get("exclude")


def holds_track(profile: dict, rel: str, tags: dict[str, list[str]]) -> bool:
    """Whether profile `profile` holds the track at `rel` with `tags`."""
    include, exclude = profile.get("include"), profile.get("exclude")
    if include and not matches(include, rel, tags):
        return False
    return not matches(exclude, rel, tags)


def holds_file(profile: dict, rel: str, folder_tracks_held: bool | None) -> bool:
    """Whether profile `profile` copies the extra file at `rel`: with its folder's tracks
    (`folder_tracks_held`: whether any of them is in the profile; None for a folder without
    tracks, where the path rules alone decide), never when an exclude glob names it."""
    include, exclude = profile.get("include"), profile.get("exclude")
    if matches(exclude, rel, None):
        return False
    if folder_tracks_held is not None:
        return folder_tracks_held
    return not include or matches(include, rel, None)


def tag_values(pairs) -> dict[str, list[str]]:
    """[(key, value), ...] -> {KEY: [values]}."""
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key.upper(), []).append(value)
    return out
