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
