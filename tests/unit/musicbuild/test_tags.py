"""MP3 tags (issue 14): id3_frames maps every value of the source's Vorbis comments to ID3v2.4
frames and none is lost on the way; write_id3v24 writes them so that mutagen reads them back.

The pure mapping is tested directly; the round trips write a real ID3v2.4 tag to a file and
read it back with mutagen (the e2e test tests/e2e/test_mp3_tags.py adds ffprobe and real MP3s).
"""
from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import example, given, settings, strategies as st
from mutagen.id3 import ID3, PictureType

from musicbuild import tags


def frames(pairs) -> dict:
    made = tags.id3_frames(pairs)
    keys = [f.HashKey for f in made]
    assert len(keys) == len(set(keys)), keys  # a second frame of a HashKey would replace the first
    return {f.HashKey: f for f in made}


def written(tmp, pairs, art=None) -> ID3:
    """Write the tag to a file and read it back with mutagen, as a player would."""
    path = os.path.join(tmp, "t.mp3")
    with open(path, "wb"):
        pass
    tags.write_id3v24(path, pairs, art)
    return ID3(path)


# --- the cases of issue 14 -----------------------------------------------------------------

def test_two_comments_and_a_description_stay_apart(tmp_path):
    pairs = [("COMMENT", "first"), ("DESCRIPTION", "about it"), ("COMMENT", "second")]
    got = frames(pairs)
    assert got["COMM::eng"].text == ["first", "second"]
    assert got["TXXX:DESCRIPTION"].text == ["about it"]
    back = written(str(tmp_path), pairs)
    assert back["COMM::eng"].text == ["first", "second"] and back["TXXX:DESCRIPTION"].text == ["about it"]


def test_comments_with_descriptions_get_their_own_frames():
    # (Vorbis comment names are case-insensitive: the source's are read upper-cased.)
    got = frames([("COMMENT", "plain"), ("COMMENT:SONGS-DB_CUSTOM1", "x"), ("COMMENT:", "also plain")])
    assert got["COMM::eng"].text == ["plain", "also plain"]
    assert got["COMM:SONGS-DB_CUSTOM1:eng"].text == ["x"]


def test_lyrics_and_unsynced_lyrics_do_not_collide(tmp_path):
    pairs = [("UNSYNCEDLYRICS", "la la\nla"), ("LYRICS", "do re mi")]
    got = frames(pairs)
    assert got["USLT::eng"].text == "do re mi"  # LYRICS, the Hydrogenaudio/Picard name, first
    assert got["USLT:UNSYNCEDLYRICS:eng"].text == "la la\nla"
    back = written(str(tmp_path), pairs)
    assert {f.desc: f.text for f in back.getall("USLT")} == {"": "do re mi", "UNSYNCEDLYRICS": "la la\nla"}


def test_the_same_lyrics_under_both_names_are_one_frame():
    got = frames([("LYRICS", "words"), ("UNSYNCEDLYRICS", "words")])
    assert [k for k in got if k.startswith("USLT")] == ["USLT::eng"]


def test_more_lyrics_are_numbered_and_described_lyrics_keep_their_description():
    got = frames([("LYRICS", "a"), ("LYRICS", "b"), ("LYRICS", "c"), ("UNSYNCEDLYRICS", "d"),
                  ("LYRICS:TRANSLATION", "e"), ("LYRICS:", "f")])
    assert {k: f.text for k, f in got.items() if k.startswith("USLT")} == {
        "USLT::eng": "a", "USLT:LYRICS:eng": "b", "USLT:LYRICS 2:eng": "c", "USLT:UNSYNCEDLYRICS:eng": "d",
        "USLT:TRANSLATION:eng": "e", "USLT:LYRICS 3:eng": "f"}


@pytest.mark.parametrize("pairs, trck, kept", [
    # (source pairs, TRCK, TXXX frames keeping what TRCK cannot say)
    ([("TRACKNUMBER", "07"), ("TOTALTRACKS", "3/3")], "07/3", {"TOTALTRACKS": ["3/3"]}),
    ([("TRACKNUMBER", "7/12")], "7/12", {}),
    ([("TRACKNUMBER", "7/12"), ("TRACKTOTAL", "12"), ("TOTALTRACKS", "12")], "7/12", {}),
    ([("TRACKNUMBER", "7/12"), ("TRACKTOTAL", "13")], "7/12", {"TRACKTOTAL": ["13"]}),
    ([("TRACKNUMBER", "7"), ("TRACKTOTAL", "12")], "7/12", {}),
    ([("TRACKNUMBER", " 7 "), ("TRACKTOTAL", " 12")], "7/12", {}),
    ([("TRACKNUMBER", "7"), ("TRACKTOTAL", "?"), ("TOTALTRACKS", "12")], "7/12", {"TRACKTOTAL": ["?"]}),
    ([("TRACKNUMBER", "7"), ("TRACKTOTAL", "0")], "7", {"TRACKTOTAL": ["0"]}),
    ([("TRACKNUMBER", "7/0")], "7", {"TRACKNUMBER": ["7/0"]}),
    ([("TRACKNUMBER", "7"), ("TRACKTOTAL", "12 tracks")], "7", {"TRACKTOTAL": ["12 tracks"]}),
    ([("TRACKNUMBER", "7"), ("TRACKTOTAL", "")], "7", {"TRACKTOTAL": [""]}),
    ([("TRACKNUMBER", "7"), ("TRACKNUMBER", "8")], "7", {"TRACKNUMBER": ["8"]}),
    ([("TRACKNUMBER", "A1"), ("TRACKTOTAL", "12")], None, {"TRACKNUMBER": ["A1"], "TRACKTOTAL": ["12"]}),
    ([("TRACKNUMBER", "")], None, {"TRACKNUMBER": [""]}),
    ([("TRACKTOTAL", "12")], None, {"TRACKTOTAL": ["12"]}),
    # "N of M", stray slashes and white space, other scripts' digits (review of issue 14)
    ([("TRACKNUMBER", "03 of 12")], "03/12", {}),
    ([("TRACKNUMBER", "3 OF 12"), ("TRACKTOTAL", "12")], "3/12", {}),
    ([("TRACKNUMBER", "3 of 12"), ("TRACKTOTAL", "13")], "3/12", {"TRACKTOTAL": ["13"]}),
    ([("TRACKNUMBER", "3of12")], "3/12", {}),
    ([("TRACKNUMBER", "1/")], "1", {}),
    ([("TRACKNUMBER", "1/"), ("TRACKTOTAL", "12")], "1/12", {}),
    ([("TRACKNUMBER", " 3 ")], "3", {}),
    ([("TRACKNUMBER", "/12")], None, {"TRACKNUMBER": ["/12"]}),
    ([("TRACKNUMBER", "/12"), ("TRACKTOTAL", "12")], None, {"TRACKNUMBER": ["/12"], "TRACKTOTAL": ["12"]}),
    ([("TRACKNUMBER", "３")], "3", {}),
    ([("TRACKNUMBER", "０７"), ("TRACKTOTAL", "１２")], "07/12", {}),
    ([("TRACKNUMBER", "٣ of ١٢")], "3/12", {}),
    ([("TRACKNUMBER", "-1")], None, {"TRACKNUMBER": ["-1"]}),
    ([("TRACKNUMBER", "1.5")], None, {"TRACKNUMBER": ["1.5"]}),
])
def test_track_number_is_the_number_part_with_its_total(pairs, trck, kept):
    got = frames(pairs)
    assert (got["TRCK"].text if "TRCK" in got else None) == ([trck] if trck else None)
    assert {k[5:]: f.text for k, f in got.items() if k.startswith("TXXX:")} == kept


def test_disc_number_likewise():
    got = frames([("DISCNUMBER", "02"), ("DISCTOTAL", "3/3"), ("TOTALDISCS", "3")])
    assert got["TPOS"].text == ["02/3"] and got["TXXX:DISCTOTAL"].text == ["3/3"] and "TXXX:TOTALDISCS" not in got


def test_n_of_m_disc_and_track_numbers_are_written_and_read_back(tmp_path):
    pairs = [("TRACKNUMBER", "03 of 12"), ("DISCNUMBER", "1 of 2")]
    got = frames(pairs)
    assert got["TRCK"].text == ["03/12"] and got["TPOS"].text == ["1/2"]
    assert not [k for k in got if k.startswith("TXXX")]
    back = written(str(tmp_path), pairs)
    assert back["TRCK"].text == ["03/12"] and back["TPOS"].text == ["1/2"]
    assert written(str(tmp_path), [("TRACKNUMBER", "３")])["TRCK"].text == ["3"]  # ASCII, as ID3 wants


@pytest.mark.parametrize("value, parsed", [
    ("7", ("7", None)), ("07", ("07", None)), (" 3 ", ("3", None)), ("7/12", ("7", "12")),
    ("03 of 12", ("03", "12")), ("1 Of 2", ("1", "2")), ("1/", ("1", None)), ("1 of", ("1", None)),
    ("7/0", ("7", "0")), ("３", ("3", None)), ("０７／", None), ("٣/١٢", ("3", "12")),
    ("/12", None), ("A1", None), ("7a", None), ("-1", None), ("1.5", None), ("", None), ("of 12", None),
    ("³", None),  # a superscript is a digit but no decimal digit
])
def test_parse_number(value, parsed):
    assert tags.parse_number(value) == parsed


def test_a_nul_inside_a_value_keeps_it_one_value(tmp_path):
    pairs = [("TITLE", "nul\x00here"), ("TITLE", "two"), ("COMPOSER", "a\x00b"), ("CUSTOM", "\x00"),
             ("COMMENT", "c\x00d"), ("LYRICS", "l\x00m")]
    back = written(str(tmp_path), pairs)
    assert back["TIT2"].text == ["nul/here", "two"]
    assert back["TCOM"].text == ["a/b"]
    assert back["TXXX:CUSTOM"].text == ["/"]
    assert back["COMM::eng"].text == ["c/d"]
    assert back["USLT::eng"].text == "l/m"


def test_a_non_ascii_musicbrainz_id_keeps_its_bytes(tmp_path):
    pairs = [("MUSICBRAINZ_TRACKID", "ünï-☃-id")]
    assert frames(pairs)["UFID:http://musicbrainz.org"].data == "ünï-☃-id".encode("utf-8")
    assert written(str(tmp_path), pairs)["UFID:http://musicbrainz.org"].data == "ünï-☃-id".encode("utf-8")


def test_a_musicbrainz_id_too_long_for_ufid_or_a_second_one_is_kept_as_text():
    long_id = "x" * 65
    assert "UFID:http://musicbrainz.org" not in frames([("MUSICBRAINZ_TRACKID", long_id)])
    assert frames([("MUSICBRAINZ_TRACKID", long_id)])["TXXX:MUSICBRAINZ_TRACKID"].text == [long_id]
    got = frames([("MUSICBRAINZ_TRACKID", "a"), ("MUSICBRAINZ_TRACKID", "b")])
    assert got["UFID:http://musicbrainz.org"].data == b"a" and got["TXXX:MUSICBRAINZ_TRACKID"].text == ["b"]


def test_empty_values_are_kept(tmp_path):
    pairs = [("ARTIST", ""), ("TITLE", "t"), ("TITLE", ""), ("COMMENT", ""), ("CUSTOM", ""), ("LYRICS", "")]
    back = written(str(tmp_path), pairs)
    assert back["TPE1"].text == [""]
    assert back["TIT2"].text == ["t", ""]
    assert back["COMM::eng"].text == [""]
    assert back["TXXX:CUSTOM"].text == [""]
    assert back["USLT::eng"].text == ""


def test_keys_sharing_a_frame_fill_it_together_without_repeating_each_other():
    got = frames([("LABEL", "Sony"), ("ORGANIZATION", "Sony"), ("PUBLISHER", "Columbia"),
                  ("ALBUMARTIST", "A"), ("ALBUM ARTIST", "B"), ("ARTIST", "x"), ("ARTIST", "x")])
    assert got["TPUB"].text == ["Sony", "Columbia"]
    assert got["TPE2"].text == ["A", "B"]
    assert got["TPE1"].text == ["x", "x"]  # the source's own repeated value is the source's


def test_multiple_values_stay_multiple(tmp_path):
    pairs = [("ISRC", "USRC17607839"), ("ISRC", "GBAYE0601498"), ("COMPILATION", "1"), ("GENRE", "Rock"),
             ("GENRE", "Jazz"), ("MUSICBRAINZ_ARTISTID", "a1"), ("MUSICBRAINZ_ARTISTID", "a2")]
    back = written(str(tmp_path), pairs)
    assert back["TSRC"].text == ["USRC17607839", "GBAYE0601498"]
    assert back["TCMP"].text == ["1"]
    assert back["TCON"].text == ["Rock", "Jazz"]
    assert back["TXXX:MusicBrainz Artist Id"].text == ["a1", "a2"]


@pytest.mark.parametrize("value, stamp", [
    ("2001", "2001"), ("2001-02", "2001-02"), ("2001-02-03", "2001-02-03"), ("2001/2/3", "2001-02-03"),
    ("2001.02.03", "2001-02-03"), ("2001-02-03T10:20:30", "2001-02-03T10:20:30"),
    ("2001-02-03 10:20", "2001-02-03T10:20"), (" 2001 ", "2001"),
    ("1970s", None), ("circa 1970", None), ("20010203", None), ("2001-13-01", None), ("2001-02-32", None),
    ("", None), ("03.02.2001", None),
])
def test_id3_timestamp(value, stamp):
    assert tags.id3_timestamp(value) == stamp


def test_a_date_id3_cannot_say_is_kept_as_text(tmp_path):
    pairs = [("DATE", "1970s"), ("DATE", "2001/2/3"), ("ORIGINALDATE", "circa 1969")]
    back = written(str(tmp_path), pairs)
    assert [s.text for s in back["TDRC"].text] == ["2001-02-03"]
    assert back["TXXX:DATE"].text == ["1970s"] and back["TXXX:ORIGINALDATE"].text == ["circa 1969"]
    assert "TDOR" not in back


def test_the_picture_keeps_its_type_and_description(tmp_path):
    class Art:  # what art.load_art returns: bytes, mime, and the picture's type and description
        data, mime, type, desc = b"\x89PNG fake", "image/png", PictureType.COVER_BACK, "Back"

    back = written(str(tmp_path), [("TITLE", "t")], Art())
    (apic,) = back.getall("APIC")
    assert (apic.type, apic.desc, apic.mime) == (PictureType.COVER_BACK, "Back", "image/png")
    assert apic.data == b"\x89PNG fake"

    class Plain:  # an Art without a type: a front cover named Cover, as before
        data, mime = b"jpeg", "image/jpeg"

    (apic,) = written(str(tmp_path), [], Plain()).getall("APIC")
    assert (apic.type, apic.desc) == (PictureType.COVER_FRONT, "Cover")


# --- nothing is lost, whatever the tags ---------------------------------------------------

# Keys with a mapping of their own (and some that collide), plus any other. GENRE is left
# out: a number there is an ID3v1 genre reference that readers show by name (docstring).
KEYS = sorted(set(tags.ID3_TEXT) - {"GENRE"} | set(tags.ID3_TEXT_ALIASES) | set(tags.ID3_TXXX) | tags.PAIR_KEYS
              | {"COMMENT", "COMMENT:X", "COMMENT:", "DESCRIPTION", "LYRICS", "UNSYNCEDLYRICS", "LYRICS:X", "LYRICS:",
                 "MUSICBRAINZ_TRACKID", "REPLAYGAIN_TRACK_GAIN", "CUSTOM"})
text_value = st.one_of(
    st.sampled_from(["", "7", "07", "7/12", "3/3", "0", " 12 ", "A1", "2001-02-03", "2001/2/3", "1970s",
                     "a=b", "line one\nline two", "ünïcødé ☃", "x" * 70, "03 of 12", "1/", "/12", "３",
                     "nul\x00here", "\x00"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
)
any_key = st.one_of(st.sampled_from(KEYS), st.from_regex(r"[A-Z][A-Z_ ]{0,8}", fullmatch=True))
pairs_strategy = st.lists(st.tuples(any_key, text_value), max_size=25)


def carried(id3: ID3) -> set[str]:
    """Every string a reader finds in the tag."""
    out = set()
    for frame in id3.values():
        if frame.FrameID == "UFID":
            out.add(frame.data.decode("utf-8"))
        elif frame.FrameID == "USLT":
            out.add(frame.text)
        elif frame.FrameID in tags.ID3_TIMESTAMPS:
            out.update(s.text.replace(" ", "T") for s in frame.text)
        elif frame.FrameID in ("TRCK", "TPOS"):
            out.update([frame.text[0], *frame.text[0].split("/")])
        else:
            out.update(frame.text)
    return out


@settings(max_examples=150)
@given(pairs_strategy)
@example([("COMMENT", "a"), ("COMMENT:", "b"), ("DESCRIPTION", "c"), ("LYRICS", "d"), ("LYRICS:", "e"),
          ("UNSYNCEDLYRICS", "f"), ("TRACKNUMBER", "07"), ("TOTALTRACKS", "3/3"), ("ARTIST", ""),
          ("MUSICBRAINZ_TRACKID", "é"), ("DATE", "1970s"), ("LABEL", "x"), ("ORGANIZATION", "y")])
def test_no_value_is_lost(pairs):
    made = frames(pairs)  # unique HashKeys
    with tempfile.TemporaryDirectory() as tmp:
        back = written(tmp, pairs)
    assert sorted(back.keys()) == sorted(made)  # every frame written, none merged or skipped
    found = carried(back)
    for key, value in pairs:
        value = value.replace("\x00", tags.ID3_NUL_STANDIN)  # ID3 cannot hold a NUL in a value
        if key in ("DATE", "ORIGINALDATE"):
            value = tags.id3_timestamp(value) or value
        if key in tags.PAIR_KEYS and value not in found:
            # a number TRCK/TPOS says: its number and total, in ASCII digits, are there
            parsed = tags.parse_number(value)
            assert parsed and all(p in found for p in parsed if p), (key, value, found)
            continue
        assert value in found, (key, value, found)
