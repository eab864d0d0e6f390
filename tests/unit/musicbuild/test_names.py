"""Output names: tup-safe index keys and FAT32/car-stereo-safe paths."""
import re

from hypothesis import given, settings, strategies as st

from musicbuild import names

path_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1, max_size=150,
)
relpaths = st.lists(path_text, min_size=1, max_size=5).map("/".join)


@given(relpaths)
def test_fat32_path_is_always_safe(relpath):
    out = names.fat32_path(relpath)
    assert names.is_fat32_safe(out), out
    assert not re.search(r'[<>:"\\|?*\x00-\x1f\x7f]', out)


@given(relpaths)
def test_index_keys_are_tup_safe(relpath):
    key = names.index_key(relpath)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", key)


def test_index_keys_differ_for_names_that_slug_alike():
    assert names.index_key("a/b:c.flac") != names.index_key("a/b?c.flac")


def test_forbidden_characters_trailing_dots_and_devices():
    assert names.fat32_component('a:b?c*d<e>f|g"h.mp3') == "a_b_c_d_e_f_g_h.mp3"
    assert names.fat32_component("Album...  ") == "Album"
    assert names.fat32_component("CON.mp3") == "_CON.mp3"
    assert names.fat32_component("tab\there") == "tab_here"
    assert names.fat32_component("   ") == "_"


def test_long_names_are_cut_keeping_the_extension():
    out = names.fat32_component("L" * 120 + ".mp3")
    assert out.endswith(".mp3") and names.utf16_len(out) == names.FAT32_MAX_COMPONENT
    deep = "/".join(["D" * 60] * 6) + "/" + "S" * 60 + ".mp3"
    cut = names.fat32_path(deep)
    assert names.utf16_len(cut) <= names.FAT32_MAX_PATH and cut.endswith(".mp3")


def test_desired_dest_swaps_extension():
    assert names.desired_dest("A/B/01 x.FLAC", "opus", False) == "A/B/01 x.opus"
    assert names.desired_dest("A:1/b?.flac", "mp3", True) == "A_1/b_.mp3"
    assert names.desired_dest("A/cover.jpg", None, False) == "A/cover.jpg"


def test_collisions_get_numbers_and_case_is_folded_on_fat32():
    wanted = {"k1": "A/Song.mp3", "k2": "A/song.mp3", "k3": "a/Other.mp3"}
    out = names.assign_dests(wanted, {}, fat32=True)
    assert len({v.casefold() for v in out.values()}) == 3
    assert out["k1"] == "A/Song.mp3" and out["k2"] == "A/song (2).mp3"
    assert out["k3"] == "A/Other.mp3"  # folders differing only in case are merged
    # Case matters on an ordinary filesystem.
    assert names.assign_dests(wanted, {}, fat32=False) == wanted


def test_existing_outputs_keep_their_names_when_a_colliding_file_appears():
    first = names.assign_dests({"b": "Song.mp3"}, {}, fat32=True)
    previous = {k: ("Song.mp3", v) for k, v in first.items()}
    second = names.assign_dests({"a": "SONG.mp3", "b": "Song.mp3"}, previous, fat32=True)
    assert second["b"] == "Song.mp3" and second["a"] == "SONG (2).mp3"


@settings(max_examples=200)
@given(st.dictionaries(st.text(min_size=1, max_size=5), relpaths.map(lambda p: names.fat32_path(p + ".mp3")), max_size=30))
def test_assignments_are_distinct_and_safe(wanted):
    out = names.assign_dests(wanted, {}, fat32=True)
    assert set(out) == set(wanted)
    assert len({v.casefold() for v in out.values()}) == len(out)
    for v in out.values():
        assert names.is_fat32_safe(v), v


def test_an_index_file_rewritten_within_the_same_second_moves_on_a_second(tmp_path):
    # tup compares modification times in whole seconds.
    import time
    from musicbuild.scan import settle, write_if_changed

    path = tmp_path / "k.tags"
    racy = []
    assert write_if_changed(str(path), "one\n", racy) and racy == []
    first = path.stat().st_mtime
    while time.time() - int(first) > 0.8:  # make sure the rewrite falls in the same second
        time.sleep(0.05)
        path.write_text("one\n")
        first = path.stat().st_mtime
    assert write_if_changed(str(path), "two\n", racy)
    assert racy == [(str(path), int(first))]
    settle(racy)
    assert int(path.stat().st_mtime) > int(first)
    assert path.stat().st_mtime <= time.time()
    assert not write_if_changed(str(path), "two\n", racy)


# --- control characters, playlists' names and lines (issue 14) -------------------------------

LINE_ENDS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines (and players) end a line at


@given(st.text(max_size=60))
def test_an_extinf_label_is_one_line_without_control_characters(text):
    label = names.m3u_label(text)
    assert len(label.splitlines()) <= 1
    assert not any(ch in names.CONTROLS for ch in label)


def test_an_extinf_label_keeps_the_words_around_a_newline():
    assert names.m3u_label("Spring\nAwakening") == "Spring Awakening"
    assert names.m3u_label("A\r\n\x1b[31mB\u2028C\x85D") == "A [31mB C D"
    assert names.m3u_label("\n\t") == ""


def test_a_path_line_is_a_path_never_a_comment_nor_two_lines():
    assert names.m3u_path("01 Song.mp3") == "01 Song.mp3"
    assert names.m3u_path("#1 Hit.mp3") == "./#1 Hit.mp3"  # a line starting with '#' is a comment
    assert names.m3u_path(" Intro.mp3") == "./ Intro.mp3"
    assert names.m3u_path("../Other/#2.mp3") == "../Other/#2.mp3"
    for ch in LINE_ENDS:
        assert names.m3u_path(f"a{ch}b.mp3") is None


@given(relpaths, st.sampled_from([None, "mp3", "opus"]), st.booleans())
def test_no_output_name_holds_a_control_character(relpath, ext, fat32):
    dest = names.desired_dest(relpath, ext, fat32)
    assert not any(ch in names.CONTROLS for ch in dest)
    assert len(dest.splitlines()) == 1


def test_control_characters_in_names_become_underscores_in_every_profile():
    assert names.desired_dest("A\nB/x\ty.flac", "opus", False) == "A_B/x_y.opus"
    assert names.desired_dest("A\u2028B/x\x85y.flac", "mp3", True) == "A_B/x_y.mp3"
    assert names.desired_dest("Ünïcødé/日本語.flac", "opus", False) == "Ünïcødé/日本語.opus"


@settings(max_examples=300)
@given(relpaths)
def test_fat32_path_is_idempotent(relpath):
    # A playlist's path is made from its tracks' (already safe) folder.
    once = names.fat32_path(relpath)
    assert names.fat32_path(once) == once


def _assign(albums, fat32, previous=None, extras=(), ext="mp3"):
    """Tracks (album folder -> file names), extra files and the albums' playlists through one
    assignment, as the scanner does. Returns (tracks' and extras' names, playlists' names)."""
    wanted = {f"{a}/{n}": names.desired_dest(f"{a}/{n}", ext, fat32) for a, ns in albums.items() for n in ns}
    wanted.update({e: names.desired_dest(e, None, fat32) for e in extras})
    lists = names.playlist_wanted({a: [f"{a}/{n}" for n in ns] for a, ns in albums.items()}, wanted, fat32)
    out = names.assign_dests({**wanted, **lists}, previous or {}, fat32, yielding=set(lists))
    prev = {k: (v, out[k]) for k, v in {**wanted, **lists}.items()}
    return ({k: out[k] for k in wanted}, {k: out[k] for k in lists}, prev)


def test_a_box_sets_discs_merged_into_one_fat_folder_keep_two_playlists():
    disc = ["01 Song.flac", "02 Rain.flac"]
    albums = {"Box/CD 1: Spring": disc, "Box/CD 1? Spring": disc}
    tracks, lists, _ = _assign(albums, fat32=True)
    assert lists == {"Box/CD 1: Spring/": "Box/CD 1_ Spring/CD 1_ Spring.m3u8",
                     "Box/CD 1? Spring/": "Box/CD 1_ Spring/CD 1_ Spring (2).m3u8"}
    assert tracks["Box/CD 1? Spring/01 Song.flac"] == "Box/CD 1_ Spring/01 Song (2).mp3"
    assert len({v.casefold() for v in [*tracks.values(), *lists.values()]}) == 6


def test_playlists_that_differ_only_in_case_never_share_a_fat_folder():
    albums = {"Artist/Live": ["01 a.flac"], "artist/live": ["01 b.flac"]}
    tracks, lists, _ = _assign(albums, fat32=True)
    assert lists["Artist/Live/"] == "Artist/Live/Live.m3u8"
    assert lists["artist/live/"] == "Artist/Live/live (2).m3u8"  # the merged folder's spelling, numbered
    assert tracks == {"Artist/Live/01 a.flac": "Artist/Live/01 a.mp3", "artist/live/01 b.flac": "Artist/Live/01 b.mp3"}
    # On an ordinary filesystem they are two folders, each with its own playlist.
    _, lists, _ = _assign(albums, fat32=False)
    assert lists == {"Artist/Live/": "Artist/Live/Live.m3u8", "artist/live/": "artist/live/live.m3u8"}


def test_a_playlist_gives_way_to_a_copied_m3u8_and_then_keeps_its_name():
    albums = {"A/Album": ["01 x.flac"]}
    for fat32 in (True, False):
        tracks, lists, prev = _assign(albums, fat32, extras=["A/Album/Album.m3u8"])
        assert tracks["A/Album/Album.m3u8"] == "A/Album/Album.m3u8"  # the library's own file
        assert lists["A/Album/"] == "A/Album/Album (2).m3u8"
        # A playlist made before the file came keeps its name; the file is numbered.
        extra = "A/Album/album.M3U8" if fat32 else "A/Album/Album.m3u8"  # FAT32: the same name
        _, lists, prev = _assign(albums, fat32)
        tracks, lists, _ = _assign(albums, fat32, previous=prev, extras=[extra])
        assert lists["A/Album/"] == "A/Album/Album.m3u8"
        assert tracks[extra] == ("A/Album/album (2).M3U8" if fat32 else "A/Album/Album (2).m3u8")


def test_an_albums_playlist_keeps_its_name_when_a_colliding_album_arrives():
    first = {"Box/CD 1? Spring": ["01 Song.flac"]}
    _, lists, prev = _assign(first, fat32=True)
    assert lists == {"Box/CD 1? Spring/": "Box/CD 1_ Spring/CD 1_ Spring.m3u8"}
    both = {**first, "Box/CD 1: Spring": ["01 Song.flac"]}
    tracks, lists, _ = _assign(both, fat32=True, previous=prev)
    assert lists["Box/CD 1? Spring/"] == "Box/CD 1_ Spring/CD 1_ Spring.m3u8"
    assert lists["Box/CD 1: Spring/"] == "Box/CD 1_ Spring/CD 1_ Spring (2).m3u8"
    assert tracks["Box/CD 1? Spring/01 Song.flac"] == "Box/CD 1_ Spring/01 Song.mp3"


def test_a_playlist_stays_in_its_tracks_folder_at_the_path_limit():
    folder = "/".join(["D" * 60] * 3) + "/" + "E" * 50  # 233 units
    albums = {folder: ["a.flac", "b.flac"]}
    tracks, lists, _ = _assign(albums, fat32=True)
    assert {t.rsplit("/", 1)[0] for t in tracks.values()} == {folder}
    playlist = lists[folder + "/"]
    assert playlist.rsplit("/", 1)[0] == folder and playlist.endswith(".m3u8")
    assert names.is_fat32_safe(playlist)


album_names = st.lists(st.sampled_from(["Live", "live", "LIVE", "CD 1: Spring", "CD 1? Spring", "CD 1* Spring",
                                        "a\nb", "Ünï", "ünï", "x" * 70]), min_size=1, max_size=6, unique=True)


@settings(max_examples=150)
@given(album_names, st.lists(st.sampled_from(["Box", "box", "Artist"]), min_size=1, max_size=2, unique=True),
       st.booleans(), st.booleans())
def test_every_output_and_playlist_gets_its_own_name(albums, tops, fat32, extra):
    library = {f"{t}/{a}": ["01 x.flac", "02 y.flac"] for t in tops for a in albums}
    extras = [f"{a}/{a.rsplit('/', 1)[1]}.m3u8" for a in library] if extra else []
    tracks, lists, prev = _assign(library, fat32, extras=extras)
    every = [*tracks.values(), *lists.values()]
    fold = str.casefold if fat32 else str
    assert len({fold(v) for v in every}) == len(every)
    for album, playlist in lists.items():
        album_tracks = [tracks[f"{album}{n}"] for n in ("01 x.flac", "02 y.flac")]
        assert playlist.rsplit("/", 1)[0] in {t.rsplit("/", 1)[0] for t in album_tracks}
        assert not any(ch in names.CONTROLS for ch in playlist)
        if fat32:
            assert names.is_fat32_safe(playlist), playlist
    # Nothing changed: every name is kept.
    again = _assign(library, fat32, previous=prev, extras=extras)
    assert again[:2] == (tracks, lists)


def test_a_long_extension_cut_at_a_space_leaves_no_trailing_space():
    # Found by test_assignments_are_distinct_and_safe: the extension is cut to 16 units.
    assert names.fat32_component("0.000000000\U00010000\U00010000 \U00010000") == "0.000000000\U00010000\U00010000"
    assert names.fat32_component("a.bcdefghijklmno pq") == "a.bcdefghijklmno"
    assert names.is_fat32_safe(names.fat32_path("0.000000000\U00010000\U00010000 /0.mp3"))


# ------------------------------------------------------------------ names styles (issue 15)

def test_exfat_names_lose_what_exfat_or_windows_refuse_and_keep_the_rest():
    assert names.exfat_component('Album 1: Songs of Spring?') == "Album 1_ Songs of Spring_"
    assert names.exfat_component('a"b*c<d>e|f\\g\x01h') == "a_b_c_d_e_f_g_h"
    assert names.exfat_component("Trailing dots... ") == "Trailing dots"
    assert names.exfat_component("CON.mp3") == "CON.mp3"            # no DOS devices on exFAT
    assert names.exfat_component(" Leading space") == " Leading space"
    assert names.exfat_component("Björk – Ünïcode 東京") == "Björk – Ünïcode 東京"
    assert names.exfat_component("bad\udcffbyte") == "bad_byte"   # no UTF-16 for a lone surrogate


def test_exfat_names_are_cut_to_255_utf16_units_and_255_bytes_keeping_the_extension():
    emoji = names.exfat_component("😀" * 200 + ".opus")  # two UTF-16 units and four bytes each
    assert emoji.endswith(".opus") and len(emoji.encode()) <= 255 and names.utf16_len(emoji) <= 255
    ascii_long = names.exfat_component("x" * 300 + ".flac")
    assert ascii_long == "x" * 250 + ".flac"
    assert names.exfat_component("é" * 200 + ".mp3") == "é" * 125 + ".mp3"  # 250 + 4 bytes


@given(relpaths)
def test_exfat_path_is_always_safe_and_idempotent(relpath):
    out = names.exfat_path(relpath)
    assert names.is_exfat_safe(out), out
    assert names.exfat_path(out) == out


def test_exfat_assignments_fold_case_as_the_device_does():
    wanted = {"a": "Live/Song.opus", "b": "live/song.opus", "c": "Other/Song.opus"}
    out = names.assign_dests(wanted, {}, names.naming("exfat"))
    assert out == {"a": "Live/Song.opus", "b": "Live/song (2).opus", "c": "Other/Song.opus"}
    assert names.assign_dests(wanted, {}, names.naming("posix")) == wanted


def test_a_profile_chooses_its_names():
    rel = "Ärzte/Album 1: Spring?/01 Ça va.flac"
    assert names.desired_dest(rel, "opus", names.Naming("exfat")) == "Ärzte/Album 1_ Spring_/01 Ça va.opus"
    assert names.desired_dest(rel, "opus", names.Naming("posix")) == "Ärzte/Album 1: Spring?/01 Ça va.opus"
    assert names.desired_dest(rel, "mp3", names.Naming("fat32")) == "Ärzte/Album 1_ Spring_/01 Ça va.mp3"
    assert names.desired_dest(rel, "mp3", names.Naming("fat32", ascii=True)) == "Arzte/Album 1_ Spring_/01 Ca va.mp3"
    assert names.desired_dest("東京/½.flac", "opus", names.Naming("exfat", ascii=True)) == "Dong Jing/1_2.opus"
    assert names.desired_dest(rel, "mp3", True) == names.desired_dest(rel, "mp3", names.Naming("fat32"))
    assert names.naming({"names": "exfat", "ascii_names": True}) == names.Naming("exfat", True)


def test_playlists_take_the_profiles_names():
    albums = {"Ärzte/Live: 1999": ["Ärzte/Live: 1999/1.flac"]}
    for how, expected in ((names.Naming("exfat"), "Ärzte/Live_ 1999/Live_ 1999.m3u8"),
                          (names.Naming("exfat", ascii=True), "Arzte/Live_ 1999/Live_ 1999.m3u8"),
                          (names.Naming("fat32", ascii=True), "Arzte/Live_ 1999/Live_ 1999.m3u8"),
                          (names.Naming("posix"), "Ärzte/Live: 1999/Live: 1999.m3u8")):
        wanted = {"Ärzte/Live: 1999/1.flac": names.desired_dest("Ärzte/Live: 1999/1.flac", "mp3", how)}
        assert names.playlist_wanted(albums, wanted, how) == {"Ärzte/Live: 1999/": expected}, how


def test_posix_names_fit_a_linux_filesystem():
    long = "é" * 127 + ".wav"  # 258 bytes once .wav is .flac
    out = names.desired_dest(long, "flac", names.Naming("posix"))
    assert out.endswith(".flac") and len(out.encode()) <= 255
    assert names.desired_dest("a/b.flac", "opus", names.Naming("posix")) == "a/b.opus"


def test_ascii_names_without_unidecode_is_one_line_of_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "unidecode", None)  # import fails
    try:
        names.desired_dest("Björk/x.flac", "mp3", names.Naming("exfat", ascii=True))
    except OSError as exc:  # music-build reports an OSError as one line
        assert "Unidecode" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("no error")
