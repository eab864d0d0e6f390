"""Subsets per profile (include/exclude by path globs and tag values), the new device fields
of a profile (names, ascii_names, id3, include, exclude): validation, tup.config, and the
scanner's stage that gives each profile its tracks, extra files and playlists."""
import pytest
from hypothesis import given, strategies as st

from musicbuild import scan, subsets
from musicbuild.profile import ProfileError, normalize_profile, parse_tup_config, render_tup_config


# ----------------------------------------------------------------------------- matching

@pytest.mark.parametrize("glob, path, matched", [
    ("Jazz/**", "Jazz/Miles/01.flac", True),
    ("Jazz/**", "Jazz/01.flac", True),
    ("Jazz", "Jazz/Miles/01.flac", True),           # a folder's glob matches what is in it
    ("Jazz/", "Jazz/Miles/01.flac", True),
    ("Jazz", "Jazzy/01.flac", False),
    ("Jazz", "jazz/01.flac", False),                # paths are case-sensitive, as the filesystem
    ("*/Live*", "Artist/Live 1999/01.flac", True),
    ("*/Live*", "A/B/Live/01.flac", False),         # '*' stays within one name
    ("**/Live*", "A/B/Live/01.flac", True),         # '**' any number of folders, none too
    ("**/Live*", "Live/01.flac", True),
    ("Audiobooks/**", "Audiobooks", False),        # a file named so is not in the folder
    ("A?c/*.flac", "Abc/x.flac", True),
    ("A?c/*.flac", "A/c/x.flac", False),
    ("[AB]*/**", "Bach/x.flac", True),
    ("[!AB]*/**", "Bach/x.flac", False),
    ("Odd [name/**", "Odd [name/x.flac", True),     # an unclosed '[' is itself
    ("CD 1: *", "CD 1: Spring/x.flac", True),
])
def test_path_globs(glob, path, matched):
    assert subsets.path_matches(glob, path) is matched


def test_tag_values_match_case_insensitively_any_value_of_any_listed_tag():
    tags = {"GENRE": ["Rock", "Acid Jazz"], "artist": ["Miles"]}
    assert subsets.tags_match({"GENRE": ["acid jazz"]}, tags)
    assert subsets.tags_match({"GENRE": ["*jazz*"]}, tags)
    assert not subsets.tags_match({"GENRE": ["Jazz"]}, tags)          # whole values
    assert subsets.tags_match({"ARTIST": ["miles"]}, tags)            # tag names in any case
    assert subsets.tags_match({"GENRE": ["Pop"], "ARTIST": ["Miles"]}, tags)
    assert not subsets.tags_match({"COMPOSER": ["*"]}, tags)          # a tag it lacks never matches
    assert subsets.value_matches("AC/DC", "ac/dc")                    # '/' is a character in values


def test_a_track_is_in_when_included_and_not_excluded():
    car = {"include": {"paths": [], "tags": {"GENRE": ["Jazz"]}}, "exclude": {"paths": ["Jazz/Live/**"], "tags": {}}}
    assert subsets.holds_track(car, "Jazz/Studio/1.flac", {"GENRE": ["jazz"]})
    assert not subsets.holds_track(car, "Rock/1.flac", {"GENRE": ["Rock"]})
    assert not subsets.holds_track(car, "Jazz/Live/1.flac", {"GENRE": ["Jazz"]})
    assert subsets.holds_track({"include": None, "exclude": None}, "any.flac", {})
    phone = {"exclude": {"paths": ["Audiobooks/**"], "tags": {"GENRE": ["Audiobook"]}}}
    assert not subsets.holds_track(phone, "Audiobooks/Book/1.flac", {})
    assert not subsets.holds_track(phone, "Spoken/1.flac", {"GENRE": ["audiobook"]})
    assert subsets.holds_track(phone, "Rock/1.flac", {"GENRE": ["Rock"]})


def test_extra_files_follow_their_folders_tracks():
    prof = {"include": {"paths": ["Jazz/**"], "tags": {}}, "exclude": {"paths": ["**/*.log"], "tags": {}}}
    assert subsets.holds_file(prof, "Rock/A/cover.jpg", True)   # a track of its folder is in
    assert not subsets.holds_file(prof, "Jazz/A/cover.jpg", False)
    assert not subsets.holds_file(prof, "Jazz/A/rip.log", True)  # an exclude glob names it
    assert subsets.holds_file(prof, "Jazz/notes.txt", None)      # no tracks: the path rules
    assert not subsets.holds_file(prof, "Rock/notes.txt", None)
    tags_only = {"include": {"paths": [], "tags": {"GENRE": ["Jazz"]}}}
    assert not subsets.holds_file(tags_only, "Scans/front.jpg", None)


# ------------------------------------------------------------------------ profile fields

def test_device_fields_defaults_and_alias():
    p = normalize_profile("phone", {"codec": "opus"})
    assert (p["names"], p["fat32_names"], p["ascii_names"], p["include"], p["exclude"]) == \
        ("exfat", False, False, None, None)
    assert "id3" not in p
    car = normalize_profile("car", {"codec": "mp3", "fat32_names": True})
    assert (car["names"], car["fat32_names"], car["id3"]) == ("fat32", True, "2.4")
    assert normalize_profile("car", {"codec": "mp3", "names": "fat32", "fat32_names": True})["names"] == "fat32"
    assert normalize_profile("car", {"codec": "mp3", "fat32_names": False})["names"] == "exfat"
    assert normalize_profile("car", {"codec": "mp3", "id3": 2.3})["id3"] == "2.3"  # YAML's unquoted 2.3
    rules = normalize_profile("car", {"codec": "mp3", "include": {"tags": {"genre": "Jazz"}},
                                      "exclude": {"paths": "Audiobooks/**"}})
    assert rules["include"] == {"paths": [], "tags": {"GENRE": ["Jazz"]}}
    assert rules["exclude"] == {"paths": ["Audiobooks/**"], "tags": {}}


@pytest.mark.parametrize("profile, field, words", [
    ({"codec": "mp3", "names": "ntfs"}, "names", "unknown names 'ntfs'"),
    ({"codec": "mp3", "names": "exfat", "fat32_names": True}, "fat32_names", "contradicts names: exfat"),
    ({"codec": "mp3", "ascii_names": "maybe"}, "ascii_names", "expected true or false"),
    ({"codec": "mp3", "id3": "2.2"}, "id3", 'expected "2.4" or "2.3"'),
    ({"codec": "flac", "id3": "2.3"}, "id3", "does not apply to codec flac"),
    ({"codec": "mp3", "include": ["Jazz/**"]}, "include", "expected a mapping"),
    ({"codec": "mp3", "include": {}}, "include", "names no paths and no tags"),
    ({"codec": "mp3", "exclude": {"path": ["x"]}}, "exclude", "unknown rule 'path'"),
    ({"codec": "mp3", "exclude": {"paths": ["/abs/**"]}}, "exclude", "no leading '/'"),
    ({"codec": "mp3", "exclude": {"paths": ["../x"]}}, "exclude", "no '..'"),
    ({"codec": "mp3", "exclude": {"paths": [""]}}, "exclude", "non-empty glob"),
    ({"codec": "mp3", "include": {"tags": ["GENRE"]}}, "include", "mapping of tag name"),
    ({"codec": "mp3", "include": {"tags": {"GEN=RE": "x"}}}, "include", "not a tag name"),
    ({"codec": "mp3", "include": {"tags": {"GENRE": []}}}, "include", "a value or a list of values"),
    ({"codec": "mp3", "include": {"tags": {"GENRE": [3]}}}, "include", "a value or a list of values"),
])
def test_bad_device_fields_are_named(profile, field, words):
    with pytest.raises(ProfileError) as err:
        normalize_profile("car", profile)
    assert err.value.field == field and words in str(err.value)
    assert str(err.value).startswith(f"profile 'car', field '{field}': ") and "\n" not in str(err.value)


rules = st.fixed_dictionaries({}, optional={
    "paths": st.lists(st.sampled_from(["Jazz/**", "Audiobooks", "**/Live*", "Ä ö/*.flac"]), min_size=1, unique=True),
    "tags": st.dictionaries(st.sampled_from(["GENRE", "artist", "Mood"]),
                            st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3), min_size=1),
}).filter(bool)


@given(st.sampled_from(["mp3", "opus", "flac"]), st.sampled_from([None, "exfat", "fat32", "posix"]),
       st.booleans(), st.sampled_from([None, "2.3", "2.4"]), st.one_of(st.none(), rules), st.one_of(st.none(), rules))
def test_device_fields_round_trip_through_tup_config(codec, style, ascii_names, id3, include, exclude):
    profile = {"codec": codec, "ascii_names": ascii_names, "include": include, "exclude": exclude}
    if style:
        profile["names"] = style
    if id3 and codec == "mp3":
        profile["id3"] = id3
    text = render_tup_config("p", profile)
    name, parsed = parse_tup_config(text, "p")
    assert parsed == normalize_profile("p", profile)
    assert render_tup_config("p", parsed) == text
    assert all(line.startswith("CONFIG_") for line in text.splitlines()[1:])


def test_a_legacy_tup_config_with_fat32_names_still_parses():
    text = ("CONFIG_PROFILE=car\nCONFIG_CODEC=mp3\nCONFIG_QUALITY=2\nCONFIG_SETTINGS=quality\nCONFIG_ART=y\n"
            "CONFIG_ART_MAX_SIZE=0\nCONFIG_FAT32_NAMES=y\nCONFIG_PLAYLISTS=n\nCONFIG_EXTRA_FILES=[]\n")
    assert parse_tup_config(text, "car")[1]["names"] == "fat32"


# ------------------------------------------------------------------------- the scanner

LIBRARY = {  # folder -> [(file, GENRE values)]
    "Jazz/Kind of Blue": [("01 So What.flac", ["Jazz"]), ("02 Freddie.flac", ["jazz"])],
    "Rock/Album": [("01 Loud.flac", ["Rock"]), ("02 Jazzy.flac", ["Rock", "JAZZ"]), ("03 Acid.flac", ["Rock; Acid Jazz"])],
    "Mixed": [("01 Cool.flac", ["Cool Jazz"]), ("02 Pop.flac", ["Pop"])],
    "Audiobooks/Book": [("01 Chapter.flac", ["Audiobook"])],
}
OTHERS = {"Jazz/Kind of Blue": ["cover.jpg"], "Rock/Album": ["cover.jpg"], "Audiobooks/Book": ["cover.jpg"],
          "Scans": ["booklet.jpg"]}
PROFILES = {
    "car": normalize_profile("car", {"codec": "mp3", "fat32_names": True, "playlists": True,
                                     "extra_files": ["*.jpg"], "include": {"tags": {"GENRE": ["jazz", "cool *"]}}}),
    "phone": normalize_profile("phone", {"codec": "opus", "playlists": True, "extra_files": ["*.jpg"],
                                         "exclude": {"paths": ["Audiobooks/**"]}}),
    "flac": normalize_profile("flac", {"codec": "flac", "extra_files": ["*.jpg"]}),
}


def plan(profiles=PROFILES, cache=None):
    folders = [scan.Folder(rel, sorted(n for n, _ in LIBRARY.get(rel, [])), OTHERS.get(rel, []), None)
               for rel in sorted(set(LIBRARY) | set(OTHERS))]
    sources = {f"{rel}/{n}": {"tags": [["GENRE", g] for g in genres] + [["TITLE", n]], "length": 60.0}
               for rel, tracks in LIBRARY.items() for n, genres in tracks}
    result = scan.ScanResult()
    dests = scan.assign_destinations(folders, profiles, result, {} if cache is None else cache, sources)
    scan.plan_outputs(folders, sources, dests, profiles, "/b", result)
    return result, dests


def test_each_profile_gets_its_subset_with_its_extra_files_and_playlists():
    result, dests = plan()
    assert sorted(dests["car"]) == ["Jazz/Kind of Blue/01 So What.flac", "Jazz/Kind of Blue/02 Freddie.flac",
                                    "Jazz/Kind of Blue/cover.jpg", "Mixed/01 Cool.flac",
                                    "Rock/Album/02 Jazzy.flac", "Rock/Album/cover.jpg"]  # one of its values is jazz
    assert "Audiobooks/Book/01 Chapter.flac" not in dests["phone"]
    assert "Audiobooks/Book/cover.jpg" not in dests["phone"]
    assert "Rock/Album/02 Jazzy.flac" in dests["phone"] and "Scans/booklet.jpg" in dests["phone"]
    assert len([d for d in dests["flac"] if d.endswith(".flac")]) == 8  # no rules: everything
    # playlists list only the profile's tracks; an album with none of them has none
    car_lists = {s["dest"]: [e[0] for e in s["entries"]] for s in result.playlists["car"]}
    assert car_lists == {"/b/car/Jazz/Kind of Blue/Kind of Blue.m3u8": ["01 So What.mp3", "02 Freddie.mp3"],
                         "/b/car/Mixed/Mixed.m3u8": ["01 Cool.mp3"], "/b/car/Rock/Album/Album.m3u8": ["02 Jazzy.mp3"]}
    assert not any("Audiobooks" in s["dest"] for s in result.playlists["phone"])
    assert result.expected["car"] == set(dests["car"].values())


def test_a_subset_change_leaves_the_other_outputs_names_alone():
    cache: dict = {}
    _, before = plan(cache=cache)
    wider = dict(PROFILES, car=normalize_profile("car", {**{k: v for k, v in PROFILES["car"].items()
                                                            if k not in ("include", "fat32_names")},
                                                         "include": {"paths": ["Jazz/**", "Rock/**"]}}))
    _, after = plan(wider, cache=cache)
    assert all(after["car"][rel] == dest for rel, dest in before["car"].items() if rel in after["car"])
    assert "Rock/Album/01 Loud.flac" in after["car"] and "Mixed/01 Cool.flac" not in after["car"]
