"""ID3v2.3 for `id3: "2.3"` MP3 profiles: the frames (pure) and a real MP3 read back by
mutagen and ffprobe as a v2.3 reader sees it."""
import json
import shutil
import subprocess

import pytest
from mutagen.id3 import ID3

from musicbuild import tags
from musicbuild.id3v23 import id3v23_frames, write_id3v23

PAIRS = [("TITLE", "Song"), ("ARTIST", "Miles"), ("ARTIST", "Coltrane"), ("ALBUM", "Kind of Blue"),
         ("GENRE", "Jazz"), ("GENRE", "Modal"), ("DATE", "1959-08-17"), ("DATE", "1997"),
         ("ORIGINALDATE", "1959-08"), ("MOOD", "calm"), ("DISCSUBTITLE", "Side A"),
         ("ARTISTSORT", "Davis, Miles"), ("TRACKNUMBER", "3"), ("TRACKTOTAL", "5"),
         ("COMMENT", "one"), ("COMMENT", "two"), ("MUSICBRAINZ_ALBUMID", "abc"), ("LYRICIST", ""),
         ("DATE", "1970s")]


def by_id(frames):
    return {f.HashKey: f for f in frames}


def test_v24_only_frames_become_v23_frames_or_txxx_without_losing_a_value():
    frames = by_id(id3v23_frames(PAIRS))
    assert str(frames["TYER"]) == "1959" and str(frames["TDAT"]) == "1708" and "TIME" not in frames
    assert "TDRC" not in frames and "TDOR" not in frames and "TMOO" not in frames and "TSST" not in frames
    assert frames["TXXX:DATE"].text == ["1997", "1970s"]       # what TYER/TDAT cannot say
    assert str(frames["TORY"]) == "1959" and frames["TXXX:ORIGINALDATE"].text == ["1959-08"]
    assert frames["TXXX:MOOD"].text == ["calm"] and frames["TXXX:DISCSUBTITLE"].text == ["Side A"]
    assert frames["TSOP"].text == ["Davis, Miles"]              # iTunes' sort frames are kept
    assert frames["TPE1"].text == ["Miles", "Coltrane"]         # joined by the writer
    assert by_id(id3v23_frames([("DATE", "2001-02-03T10:20")]))["TIME"].text == ["1020"]
    assert "TXXX:DATE" not in by_id(id3v23_frames([("DATE", "2001-02-03T10:20")]))


@pytest.fixture
def mp3(tmp_path):
    if not (shutil.which("lame") and shutil.which("sox") and shutil.which("ffprobe")):
        pytest.skip("needs lame, sox and ffprobe")
    wav, out = tmp_path / "t.wav", tmp_path / "t.mp3"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(wav), "synth", "0.3", "sine", "440"],
                   check=True)
    subprocess.run(["lame", "--quiet", str(wav), str(out)], check=True)
    return out


def test_a_v23_tag_as_mutagen_and_ffprobe_read_it(mp3):
    tags.write_tags(str(mp3), "mp3", PAIRS, None, id3="2.3")
    assert mp3.read_bytes()[:4] == b"ID3\x03"                   # the header says v2.3
    assert ID3(mp3).version == (2, 3, 0)
    assert mp3.read_bytes()[-128:-125] != b"TAG"                # no ID3v1
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json",
                                       str(mp3)], capture_output=True, text=True, check=True).stdout)
    seen = {k.lower(): v for k, v in probe["format"]["tags"].items()}
    assert seen["artist"] == "Miles/Coltrane" and seen["genre"] == "Jazz/Modal"
    assert seen["date"] == "1959-08-17"                         # TYER + TDAT, merged by ffmpeg
    assert seen["track"] == "3/5" and seen["comment"] == "one/two" and seen["mood"] == "calm"
    assert seen["musicbrainz album id"] == "abc"
    raw = ID3(mp3)
    assert raw["TPE1"].text == ["Miles/Coltrane"] and raw.getall("TXXX:DATE")[0].text == ["1997/1970s"]
    assert raw["TEXT"].text == [""]                             # an empty value kept
    # v2.4 stays the default writer
    tags.write_tags(str(mp3), "mp3", PAIRS, None)
    assert mp3.read_bytes()[:4] == b"ID3\x04" and ID3(mp3)["TPE1"].text == ["Miles", "Coltrane"]


def test_v23_text_is_utf16_not_utf8(mp3):
    write_id3v23(str(mp3), [("TITLE", "Ça va 東京")], None)
    frame = ID3(mp3)["TIT2"]
    assert frame.encoding == 1 and frame.text == ["Ça va 東京"]  # 1: UTF-16 with BOM (v2.3 has no UTF-8)
