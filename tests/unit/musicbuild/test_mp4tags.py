"""AAC outputs (issue 15, item 4): MP4 atoms for every Vorbis comment (mp4tags.mp4_atoms, pure),
the cover as covr, and gapless playback data; then a real encode (flac | ffmpeg's aac) tagged
by the writer the codec table names, read back by mutagen and by ffprobe/ffmpeg, and decoded:
the audio is the source's length, no sample more or less, and starts where the source does.
"""
from __future__ import annotations

import array
import io
import json
import subprocess
from pathlib import Path

import pytest
from mutagen.mp4 import MP4, MP4Cover, MP4FreeForm

from musicbuild import encode, mp4tags, tags
from musicbuild.art import Art
from musicbuild.profile import CODEC_TABLE, normalize_profile

FF = mp4tags.FREEFORM


def free(*values: str) -> list[MP4FreeForm]:
    return [MP4FreeForm(v.encode("utf-8")) for v in values]


def test_the_standard_atoms():
    atoms = mp4tags.mp4_atoms([
        ("TITLE", "Tïtle ☃"), ("ARTIST", "A"), ("ARTIST", ""), ("ARTIST", "B"), ("ALBUM", "Al"),
        ("ALBUMARTIST", "AA"), ("ALBUM ARTIST", "AA"), ("ALBUM ARTIST", "AB"), ("DATE", "2001-02-03"),
        ("GENRE", "Jazz"), ("GENRE", "Bop"), ("COMPOSER", "C"), ("COMMENT", "first"), ("COMMENT", "second\nline"),
        ("LYRICS", "la la"), ("UNSYNCEDLYRICS", "la la"), ("UNSYNCEDLYRICS", "other words"),
        ("GROUPING", "G"), ("COPYRIGHT", "(c)"), ("ENCODEDBY", "E"), ("TITLESORT", "Title"), ("ARTISTSORT", "A, The"),
        ("ALBUMSORT", "Al"), ("ALBUMARTISTSORT", "AA"), ("COMPOSERSORT", "C"), ("COMPILATION", "1"), ("BPM", "120"),
    ])
    assert atoms == {
        "©nam": ["Tïtle ☃"], "©ART": ["A", "", "B"], "©alb": ["Al"], "aART": ["AA", "AB"], "©day": ["2001-02-03"],
        "©gen": ["Jazz", "Bop"], "©wrt": ["C"], "©cmt": ["first", "second\nline"], "©lyr": ["la la", "other words"],
        "©grp": ["G"], "cprt": ["(c)"], "©too": ["E"], "sonm": ["Title"], "soar": ["A, The"], "soal": ["Al"],
        "soaa": ["AA"], "soco": ["C"], "cpil": True, "tmpo": [120],
    }


def test_numbers_as_trkn_and_disk_and_what_they_cannot_say():
    assert mp4tags.mp4_atoms([("TRACKNUMBER", "07"), ("TOTALTRACKS", "3/3"), ("DISCNUMBER", "1"), ("DISCTOTAL", "2")]) \
        == {"trkn": [(7, 3)], "disk": [(1, 2)], FF + "TOTALTRACKS": free("3/3")}
    assert mp4tags.mp4_atoms([("TRACKNUMBER", "2/12"), ("TRACKTOTAL", "13")]) == \
        {"trkn": [(2, 12)], FF + "TRACKTOTAL": free("13")}
    assert mp4tags.mp4_atoms([("TRACKNUMBER", "03 of 12")]) == {"trkn": [(3, 12)]}
    assert mp4tags.mp4_atoms([("TRACKNUMBER", "A1"), ("TRACKTOTAL", "9")]) == \
        {FF + "TRACKNUMBER": free("A1"), FF + "TRACKTOTAL": free("9")}
    assert mp4tags.mp4_atoms([("TRACKNUMBER", "70000")]) == {FF + "TRACKNUMBER": free("70000")}  # over 16 bits
    assert mp4tags.mp4_atoms([("DISCTOTAL", "2")]) == {FF + "DISCTOTAL": free("2")}
    assert mp4tags.mp4_atoms([("COMPILATION", "0")]) == {"cpil": False}
    assert mp4tags.mp4_atoms([("COMPILATION", "yes"), ("BPM", "fast")]) == \
        {FF + "COMPILATION": free("yes"), FF + "BPM": free("fast")}


def test_freeform_atoms_as_picard_writes_them():
    atoms = mp4tags.mp4_atoms([
        ("MUSICBRAINZ_TRACKID", "ünï-id"), ("MUSICBRAINZ_ALBUMID", "a"), ("MUSICBRAINZ_ARTISTID", "b"),
        ("MUSICBRAINZ_ARTISTID", "c"), ("MUSICBRAINZ_ALBUMARTISTID", "d"), ("MUSICBRAINZ_RELEASEGROUPID", "e"),
        ("MUSICBRAINZ_RELEASETRACKID", "f"), ("MUSICBRAINZ_WORKID", "g"), ("ACOUSTID_ID", "h"),
        ("RELEASETYPE", "album"), ("RELEASESTATUS", "official"), ("RELEASECOUNTRY", "GB"),
        ("REPLAYGAIN_TRACK_GAIN", "-6.50 dB"), ("REPLAYGAIN_TRACK_PEAK", "0.9"), ("REPLAYGAIN_ALBUM_GAIN", "-7.00 dB"),
        ("REPLAYGAIN_ALBUM_PEAK", "1.0"), ("ISRC", "X1"), ("ISRC", "X2"), ("DESCRIPTION", "notes"), ("EMPTY", ""),
        ("WEIRD KEY", "x=y"), ("LABEL", "L"),
    ])
    assert atoms == {
        FF + "MusicBrainz Track Id": free("ünï-id"), FF + "MusicBrainz Album Id": free("a"),
        FF + "MusicBrainz Artist Id": free("b", "c"), FF + "MusicBrainz Album Artist Id": free("d"),
        FF + "MusicBrainz Release Group Id": free("e"), FF + "MusicBrainz Release Track Id": free("f"),
        FF + "MusicBrainz Work Id": free("g"), FF + "Acoustid Id": free("h"),
        FF + "MusicBrainz Album Type": free("album"), FF + "MusicBrainz Album Status": free("official"),
        FF + "MusicBrainz Album Release Country": free("GB"),
        FF + "replaygain_track_gain": free("-6.50 dB"), FF + "replaygain_track_peak": free("0.9"),
        FF + "replaygain_album_gain": free("-7.00 dB"), FF + "replaygain_album_peak": free("1.0"),
        FF + "ISRC": free("X1", "X2"), FF + "DESCRIPTION": free("notes"), FF + "EMPTY": free(""),
        FF + "WEIRD KEY": free("x=y"), FF + "LABEL": free("L"),
    }


def test_itunsmpb_text():
    assert mp4tags.itunsmpb(1024, 902, 145530) == \
        " 00000000 00000400 00000386 000000000002387A" + " 00000000" * 8


def test_the_table_names_the_writer():
    assert CODEC_TABLE["aac"]["extension"] == "m4a" and tags.WRITERS[CODEC_TABLE["aac"]["tags"]] is tags.write_mp4
    assert normalize_profile("p", {"codec": "aac"})["bitrate"] == 256
    assert "bitrate" not in normalize_profile("p", {"codec": "aac", "quality": 10})


# --- a real AAC ----------------------------------------------------------------------------------

PAIRS = [
    ("TITLE", "Tïtle ☃"), ("ARTIST", "Artist A"), ("ARTIST", "Artist B"), ("ALBUM", "Album"),
    ("ALBUMARTIST", "Various"), ("DATE", "2001-02-03"), ("GENRE", "Jazz"), ("TRACKNUMBER", "7"),
    ("TRACKTOTAL", "12"), ("DISCNUMBER", "2"), ("DISCTOTAL", "3"), ("COMPILATION", "1"), ("COMPOSER", "Composer"),
    ("COMMENT", "a comment"), ("LYRICS", "la la la"), ("ARTISTSORT", "A, Artist"), ("ALBUMSORT", "Album, The"),
    ("MUSICBRAINZ_TRACKID", "0a1b2c3d-0000-4000-8000-000000000001"), ("MUSICBRAINZ_ALBUMID", "album-id"),
    ("REPLAYGAIN_TRACK_GAIN", "-6.50 dB"), ("CUSTOM", "custom value"), ("EMPTY", ""),
]
# What ffprobe (ffmpeg 5.1's mov demuxer) shows of them
FFPROBE = {
    "title": "Tïtle ☃", "artist": "Artist A", "album": "Album", "album_artist": "Various", "date": "2001-02-03",
    "genre": "Jazz", "track": "7/12", "disc": "2/3", "compilation": "1", "composer": "Composer",
    "comment": "a comment", "lyrics": "la la la", "sort_artist": "A, Artist", "sort_album": "Album, The",
    "MusicBrainz Track Id": "0a1b2c3d-0000-4000-8000-000000000001", "MusicBrainz Album Id": "album-id",
    "replaygain_track_gain": "-6.50 dB", "CUSTOM": "custom value",
}
RATE, SAMPLES, CLICK = 44100, 100_003, 30_000


def click_flac(path: Path, channels: int = 2) -> Path:
    """Silence with one full-scale click at sample CLICK, SAMPLES long (not a whole number
    of AAC frames, so the last frame is padded)."""
    frame = (20000).to_bytes(2, "little", signed=True) * channels
    raw = bytes(2 * channels * CLICK) + frame + bytes(2 * channels * (SAMPLES - CLICK - 1))
    subprocess.run(["flac", "--silent", "-f", "--force-raw-format", "--endian=little", "--sign=signed",
                    f"--channels={channels}", "--bps=16", f"--sample-rate={RATE}", "-o", str(path), "-"],
                   input=raw, check=True)
    return path


def cover() -> Art:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, "JPEG")
    return Art(buf.getvalue(), "image/jpeg", 40, 30)


def decoded_left(path: Path) -> array.array:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-map_channel", "0.0.0",
                          "-f", "s16le", "-"], check=True, capture_output=True).stdout
    return array.array("h", raw)


@pytest.mark.slow
def test_a_real_aac(tmp_path):
    src = click_flac(tmp_path / "src.flac")
    out = tmp_path / "out.m4a"
    notes: list[str] = []
    encode.run_pipeline(str(src), "aac", {"bitrate": 192}, str(out), notes)
    art = cover()
    tags.write_tags(str(out), "aac", PAIRS, art)
    assert notes == []
    # mutagen: every atom as mp4_atoms says, the cover's bytes, iTunSMPB
    audio = MP4(out)
    expected = mp4tags.mp4_atoms(PAIRS)
    assert {k: v for k, v in audio.tags.items() if k not in ("covr", FF + "iTunSMPB")} == expected
    (picture,) = audio.tags["covr"]
    assert bytes(picture) == art.data and picture.imageformat == MP4Cover.FORMAT_JPEG
    priming, padding, samples = mp4tags.gapless_info(str(out))
    assert (priming, samples) == (1024, SAMPLES) and (priming + samples + padding) % 1024 == 0
    assert bytes(audio.tags[FF + "iTunSMPB"][0]).decode() == mp4tags.itunsmpb(priming, padding, samples)
    # ffprobe: the tags, the audio's length from the edit list, the cover as an attached picture
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(out)],
                                      check=True, capture_output=True).stdout)
    shown = probe["format"]["tags"]
    assert {k: shown.get(k) for k in FFPROBE} == FFPROBE
    (a,) = [s for s in probe["streams"] if s["codec_type"] == "audio"]
    assert (a["codec_name"], a["profile"], int(a["sample_rate"]), a["channels"]) == ("aac", "LC", RATE, 2)
    assert a["duration_ts"] == SAMPLES  # the edit list: the source's samples exactly
    (v,) = [s for s in probe["streams"] if s["codec_type"] == "video"]
    assert v["disposition"]["attached_pic"] == 1
    pic = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-map", "0:v", "-c", "copy", "-f", "image2", "-"],
                         check=True, capture_output=True).stdout
    assert pic == art.data
    # decoded: ffmpeg skips the priming (the edit list) and gives the padding (a whole frame);
    # the click is where it is in the source, so the next track follows without a gap
    left = decoded_left(out)
    assert len(left) == samples + padding
    peak = max(range(len(left)), key=lambda i: abs(left[i]))
    assert abs(peak - CLICK) <= 2 and all(abs(x) < 200 for x in left[samples:])
    # re-tagging keeps the gapless data (computed from the file again) and the audio
    tags.write_tags(str(out), "aac", [("TITLE", "again")], None)
    again = MP4(out)
    assert again.tags["©nam"] == ["again"] and "covr" not in again.tags
    assert bytes(again.tags[FF + "iTunSMPB"][0]).decode() == mp4tags.itunsmpb(priming, padding, samples)
    assert decoded_left(out) == left


@pytest.mark.slow
@pytest.mark.parametrize("channels, settings", [(1, {"quality": 10}), (6, {"bitrate": 320})])
def test_mono_and_surround_and_vbr(tmp_path, channels, settings):
    src = click_flac(tmp_path / "src.flac", channels)
    out = tmp_path / "out.m4a"
    encode.run_pipeline(str(src), "aac", settings, str(out))
    tags.write_tags(str(out), "aac", [("TITLE", "t")], None)
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
                                      check=True, capture_output=True).stdout)["streams"][0]
    assert (probe["channels"], probe["duration_ts"]) == (channels, SAMPLES)
    assert mp4tags.gapless_info(str(out))[2] == SAMPLES


def test_a_bitrate_above_what_aac_holds_is_lowered_with_a_note():
    from musicbuild.source import StreamInfo

    def plan(rate, channels, bitrate):
        return encode.plan_audio("aac", {"bitrate": bitrate}, StreamInfo(rate, channels, 16, 1000, bytes(16), 4096,
                                                                         4096, 0, 8192))

    low = plan(22050, 1, 256)  # 6 bits a sample: 132.3 kb/s for mono at 22.05 kHz
    assert low.settings == {"bitrate": 132}
    assert low.notes == ["bitrate 256 kb/s is more than aac holds for 1 channel at 22050 Hz (6 bits a sample and "
                         "channel): used 132"]
    assert plan(44100, 2, 512).settings == {"bitrate": 512} and plan(44100, 2, 512).notes == []
    assert plan(8000, 2, 512).settings == {"bitrate": 96}
