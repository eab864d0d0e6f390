"""Album playlists, from the scanner's stages to the m3u8 written: names assigned with the
tracks' (a box set whose discs merge into one FAT32 folder, albums that differ only in case,
a copied *.m3u8), entries pointing at the tracks' assigned names, one line per title.
The FAT32 filesystem side is tests/e2e/test_fat_device.py."""
from __future__ import annotations

import os

from musicbuild import names, scan
from musicbuild.outputs import write_playlists
from musicbuild.profile import normalize_profile

PROFILES = {
    "car": normalize_profile("car", {"codec": "mp3", "fat32_names": True, "playlists": True,
                                     "extra_files": ["*.m3u8"]}),
    "phone": normalize_profile("phone", {"codec": "opus", "playlists": True, "extra_files": ["*.m3u8"]}),
}
LIBRARY = {  # album folder -> [(file, TITLE, TRACKNUMBER)]; others: files beside them
    "Box/CD 1: Spring": [("01 Song.flac", "Song", "1"), ("02 Rain.flac", "Rain\nfalling", "2")],
    "Box/CD 1? Spring": [("01 Song.flac", "Other song", "1"), ("02 Rain.flac", "Other rain", "2")],
    "Artist/Live": [("#1 Hit.flac", "Hit", "1")],
    "artist/live": [("01 b.flac", "B\r\n\x1b", "1")],
    "Mixes/Album": [("2 Second.flac", "Second", "2"), ("1 First.flac", "First", "1")],
}
OTHERS = {"Mixes/Album": ["Album.m3u8", "notes.txt"]}


def plan(cache: dict, builds: str = "/b", library: dict = LIBRARY) -> tuple[scan.ScanResult, dict]:
    """The scanner's stages 2 and 5 for `library`: (the result, each profile's track names)."""
    folders = [scan.Folder(rel, sorted(n for n, _, _ in tracks), OTHERS.get(rel, []), None)
               for rel, tracks in sorted(library.items())]
    sources = {f"{rel}/{n}": {"tags": [["TITLE", title], ["TRACKNUMBER", number], ["ARTIST", "A"]], "length": 61.4}
               for rel, tracks in library.items() for n, title, number in tracks}
    result = scan.ScanResult()
    dests = scan.assign_destinations(folders, PROFILES, result, cache)
    scan.plan_outputs(folders, sources, dests, PROFILES, builds, result)
    return result, dests


def test_playlists_get_names_of_their_own_beside_their_tracks():
    result, dests = plan({})
    car = result.playlist_dests["car"]
    assert car == {
        "Box/CD 1: Spring/": "Box/CD 1_ Spring/CD 1_ Spring.m3u8",
        "Box/CD 1? Spring/": "Box/CD 1_ Spring/CD 1_ Spring (2).m3u8",
        "Artist/Live/": "Artist/Live/Live.m3u8",
        "artist/live/": "Artist/Live/live (2).m3u8",
        "Mixes/Album/": "Mixes/Album/Album (2).m3u8",  # the library's own Album.m3u8 is copied as it is
    }
    assert dests["car"]["Mixes/Album/Album.m3u8"] == "Mixes/Album/Album.m3u8"
    every = [*dests["car"].values(), *car.values()]
    assert len({p.casefold() for p in every}) == len(every)
    # phone (names: exfat, the default): exFAT folds case as FAT32 does, so the case-different
    # albums share one folder there too, and ':' is no exFAT name's; the copied m3u8 still wins.
    assert result.playlist_dests["phone"]["artist/live/"] == "Artist/Live/live (2).m3u8"
    assert result.playlist_dests["phone"]["Box/CD 1: Spring/"] == "Box/CD 1_ Spring/CD 1_ Spring.m3u8"
    assert result.playlist_dests["phone"]["Mixes/Album/"] == "Mixes/Album/Album (2).m3u8"


def test_entries_point_at_the_tracks_assigned_names_in_track_order():
    result, _ = plan({})
    specs = {os.path.relpath(s["dest"], "/b/car"): s for s in result.playlists["car"]}
    assert [e[0] for e in specs["Box/CD 1_ Spring/CD 1_ Spring (2).m3u8"]["entries"]] == [
        "01 Song (2).mp3", "02 Rain (2).mp3"]
    assert [e[0] for e in specs["Box/CD 1_ Spring/CD 1_ Spring.m3u8"]["entries"]] == ["01 Song.mp3", "02 Rain.mp3"]
    assert [e[0] for e in specs["Mixes/Album/Album (2).m3u8"]["entries"]] == ["1 First.mp3", "2 Second.mp3"]
    labels = [e[2] for s in specs.values() for e in s["entries"]]
    assert "A - Rain falling" in labels and "A - B" in labels
    assert all(len(label.splitlines()) == 1 for label in labels)


def test_a_playlists_name_is_kept_across_builds():
    cache: dict = {}
    first, first_dests = plan(cache)
    # The colon disc is gone, then back: the question-mark disc keeps the name it has.
    second, _ = plan(cache, library={k: v for k, v in LIBRARY.items() if k != "Box/CD 1: Spring"})
    assert second.playlist_dests["car"]["Box/CD 1? Spring/"] == "Box/CD 1_ Spring/CD 1_ Spring (2).m3u8"
    again, again_dests = plan(cache)
    assert again.playlist_dests == first.playlist_dests and again_dests == first_dests


def test_the_m3u8_written_has_one_line_per_title_and_paths_that_resolve(tmp_path):
    result, dests = plan({}, builds=str(tmp_path))
    tree = tmp_path / "car"
    for dest in dests["car"].values():
        (tree / dest).parent.mkdir(parents=True, exist_ok=True)
        (tree / dest).write_bytes(dest.encode())
    user_m3u8 = (tree / "Mixes/Album/Album.m3u8").read_bytes()
    record: dict[str, str] = {}
    assert write_playlists(result.playlists["car"], str(tree), set(result.expected["car"]), record) == []
    assert (tree / "Mixes/Album/Album.m3u8").read_bytes() == user_m3u8  # not written over
    for key, rel in result.playlist_dests["car"].items():
        path = tree / rel
        lines = path.read_text(encoding="utf-8").split("\n")
        assert lines[0] == "#EXTM3U" and lines[-1] == ""
        body = lines[1:-1]
        assert len(body) == 2 * len(LIBRARY[key[:-1]])
        infos, paths = body[0::2], body[1::2]
        assert all(i.startswith("#EXTINF:61,A - ") for i in infos)
        assert not any(p.startswith("#") for p in paths)
        for p in paths:  # every entry is one of this album's tracks
            track = os.path.normpath(path.parent / p)
            source = next(s for s, d in dests["car"].items() if os.path.normpath(tree / d) == track)
            assert source.startswith(key)
        assert record[rel].startswith(key)
    assert (tree / "Artist/Live/Live.m3u8").read_text().split("\n")[2] == "./#1 Hit.mp3"


def test_track_order_reads_numbers_as_trck_does_and_labels_skip_empty_values():
    # (review of issue 14: "03 of 12" sorted as 0; an empty ARTIST made "Tagger / - x")
    tracks = {  # file -> tags
        "a.flac": [["TRACKNUMBER", "10 of 12"], ["ARTIST", "Tagger"], ["ARTIST", ""], ["TITLE", ""], ["TITLE", "x"]],
        "b.flac": [["TRACKNUMBER", "3 of 12"], ["ARTIST", ""], ["TITLE", "\n"], ["TITLE", "y"]],
        "c.flac": [["TRACKNUMBER", "２"], ["ARTIST", ""], ["TITLE", ""]],
        "d.flac": [["TRACKNUMBER", " 1/"], ["DISCNUMBER", "1 of 2"], ["TITLE", "z"]],
        "e.flac": [["TRACKNUMBER", "1"], ["DISCNUMBER", "2 of 2"], ["TITLE", "w"]],
    }
    sources = {f"Al/{n}": {"tags": t, "length": 1} for n, t in tracks.items()}
    dests = {f"Al/{n}": f"Al/{n[:-5]}.mp3" for n in tracks}
    spec = scan.playlist_spec("Al", sorted(tracks), sources, dests, "/b", "car", "Al/Al.m3u8")
    assert [(path, label) for path, _, label in spec["entries"]] == [
        ("c.mp3", "c"), ("b.mp3", "y"), ("a.mp3", "Tagger - x"),  # disc 0: no DISCNUMBER
        ("d.mp3", "z"), ("e.mp3", "w")]
