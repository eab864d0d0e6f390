"""The encode program on its own: tag mapping, art, sources it refuses, encode-or-retag."""
import io
import json
import re
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mutagen
import pytest
from hypothesis import given, strategies as st
from mutagen.flac import FLAC
from mutagen.id3 import ID3
from mutagen.mp3 import BitrateMode
from PIL import Image

from ansible_collections.music.profiles.plugins.lookup import build_program
from musicbuild import art as art_mod
from musicbuild import encode, service, source, tags, wire
from music_devkit.library import make_image, synth_flac, tag_track


@pytest.fixture
def flac_file(tmp_path):
    path = tmp_path / "src" / "01 One.flac"
    path.parent.mkdir()
    synth_flac(str(path), 1.0, 3)
    tag_track(str(path), {
        "TITLE": "One", "ARTIST": ["A", "B"], "ALBUM": "Al", "TRACKNUMBER": "1", "TRACKTOTAL": "9",
        "DISCNUMBER": "2", "DISCTOTAL": "3", "DATE": "2001-02-03", "MUSICBRAINZ_TRACKID": "abc-123",
        "MUSICBRAINZ_ALBUMID": "alb-1", "REPLAYGAIN_TRACK_GAIN": "-7.50 dB", "REPLAYGAIN_ALBUM_GAIN": "+1.00 dB",
        "COMMENT": "hi", "CUSTOMTHING": ["x", "y"],
    }, make_image(1000, 1, "PNG"))
    return path


def test_id3_mapping_carries_every_tag(flac_file):
    pairs = source.read_source(str(flac_file))["tags"]
    frames = {f.HashKey: f for f in tags.id3_frames(pairs)}
    assert frames["TIT2"].text == ["One"]
    assert frames["TPE1"].text == ["A", "B"]
    assert frames["TRCK"].text == ["1/9"] and frames["TPOS"].text == ["2/3"]
    assert str(frames["TDRC"].text[0]) == "2001-02-03"
    assert frames["UFID:http://musicbrainz.org"].data == b"abc-123"
    assert frames["TXXX:MusicBrainz Album Id"].text == ["alb-1"]
    assert frames["TXXX:REPLAYGAIN_TRACK_GAIN"].text == ["-7.50 dB"]
    assert frames["TXXX:CUSTOMTHING"].text == ["x", "y"]
    assert frames["COMM::eng"].text == ["hi"]


def test_opus_gets_r128_instead_of_replaygain(flac_file):
    pairs = source.read_source(str(flac_file))["tags"]
    out = dict(tags.vorbis_pairs_for("opus", pairs))
    assert "REPLAYGAIN_TRACK_GAIN" not in out
    assert out["R128_TRACK_GAIN"] == str(round((-7.5 - 5) * 256))
    assert out["R128_ALBUM_GAIN"] == str(round((1.0 - 5) * 256))
    assert dict(tags.vorbis_pairs_for("vorbis", pairs))["REPLAYGAIN_TRACK_GAIN"] == "-7.50 dB"


def test_art_is_scaled_to_the_profile_limit(flac_file):
    art = art_mod.load_art(str(flac_file), None, 300)
    img = Image.open(io.BytesIO(art.data))
    assert max(img.size) == 300 and art.mime == "image/jpeg"
    unscaled = art_mod.load_art(str(flac_file), None, 0)
    assert Image.open(io.BytesIO(unscaled.data)).size == (1000, 1000)


def test_folder_cover_used_when_nothing_is_embedded(tmp_path):
    path = tmp_path / "t.flac"
    synth_flac(str(path), 0.5, 1)
    cover = tmp_path / "Folder.JPG"
    cover.write_bytes(make_image(640, 2))
    assert art_mod.find_cover_file(["a.log", "Folder.JPG"]) == "Folder.JPG"
    art = art_mod.load_art(str(path), str(cover), 500)
    assert Image.open(io.BytesIO(art.data)).size == (500, 500)
    assert art_mod.load_art(str(path), None, 500) is None


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file (0 bytes)"),
    (b"hello, I am text\n", "not a FLAC file"),
])
def test_unusable_sources_say_why(tmp_path, content, reason):
    path = tmp_path / "bad.flac"
    path.write_bytes(content)
    with pytest.raises(source.SourceError, match=re.escape(reason)):
        source.read_source(str(path))


def test_fingerprint_ignores_tags_but_not_audio(flac_file, tmp_path):
    before = source.read_source(str(flac_file))["audio"]
    subprocess.run(["metaflac", "--set-tag=TITLE=Renamed", str(flac_file)], check=True)
    assert source.read_source(str(flac_file))["audio"] == before
    other = tmp_path / "other.flac"
    synth_flac(str(other), 1.0, 4)
    assert source.read_source(str(other))["audio"]["md5"] != before["md5"]


def _spec_files(tmp_path, src, codec="mp3"):
    builds = tmp_path / "builds"
    (builds / ".music").mkdir(parents=True, exist_ok=True)
    index = tmp_path / "index" / "dir"
    index.mkdir(parents=True, exist_ok=True)
    info = source.read_source(str(src))
    (index / "k.audio").write_text(json.dumps(info["audio"]))
    (index / "k.tags").write_text(json.dumps({"tags": info["tags"], "art": None}))
    dest = builds / "car" / "x.mp3"
    (index / "k.car.track").write_text(json.dumps({
        "source": "x.flac", "src": str(src), "dest": str(dest), "cover": None, "music": str(builds / ".music")}))
    return index, dest, builds


def _run_track(index, art="y"):
    return encode.main(["track", "--profile", "car", "--codec", "mp3", "--quality", "2", "--art", art,
                        "--art-max-size", "200", "--audio", str(index / "k.audio"), "--tags", str(index / "k.tags"),
                        "--track", str(index / "k.car.track"), "--receipt", str(index / "k.car.done")])


def _events(builds):
    return [json.loads(line)["event"] for line in (builds / ".music" / "journal.jsonl").read_text().splitlines()]


def test_track_encodes_then_retags_without_encoding(flac_file, tmp_path):
    index, dest, builds = _spec_files(tmp_path, flac_file)
    assert _run_track(index) == 0
    assert _events(builds) == ["encoder", "encoded"]
    mp3 = mutagen.File(dest)
    assert mp3.info.bitrate_mode == BitrateMode.VBR and ID3(dest)["TIT2"].text == ["One"]
    assert max(Image.open(io.BytesIO(ID3(dest).getall("APIC")[0].data)).size) == 200
    # Same inputs: nothing to do.
    assert _run_track(index) == 0 and _events(builds)[-1] == "unchanged"
    # New tags only: re-tagged in place of re-encoding.
    data = json.loads((index / "k.tags").read_text())
    data["tags"] = [[k, "Two" if k == "TITLE" else v] for k, v in data["tags"]]
    (index / "k.tags").write_text(json.dumps(data))
    assert _run_track(index) == 0
    assert _events(builds)[-1] == "retagged" and _events(builds).count("encoder") == 1
    assert ID3(dest)["TIT2"].text == ["Two"]
    # Art turned off is a tag change too.
    assert _run_track(index, art="n") == 0 and not ID3(dest).getall("APIC")
    assert _events(builds).count("encoder") == 1


def test_truncated_source_fails_alone_and_leaves_no_file(flac_file, tmp_path):
    truncated = tmp_path / "trunc.flac"
    truncated.write_bytes(flac_file.read_bytes()[: flac_file.stat().st_size // 2])
    index, dest, builds = _spec_files(tmp_path, truncated)
    assert _run_track(index) == 1
    assert not dest.exists() and not os.listdir(builds / ".music" / "tmp")
    events = [json.loads(l) for l in (builds / ".music" / "journal.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "failed" and "truncated or damaged" in events[-1]["reason"]
    # Unchanged bad audio is reported again without running the encoder again.
    assert _run_track(index) == 1
    assert [e["event"] for e in events].count("encoder") == 1
    assert _events(builds).count("encoder") == 1


@pytest.mark.parametrize("codec, settings, check", [
    ("flac", {"compression_level": 8}, lambda f: f.info.bits_per_sample == 16),
    ("opus", {"bitrate": 64}, lambda f: f.info.channels == 2),
    ("vorbis", {"quality": 3}, lambda f: f.info.sample_rate == 44100),
    ("mp3", {"bitrate": 320}, lambda f: abs(f.info.bitrate - 320000) < 2000 and f.info.bitrate_mode == BitrateMode.CBR),
    ("aac", {"bitrate": 128}, lambda f: f.info.codec == "mp4a.40.2" and "covr" in f.tags),
])
def test_every_codec_pipeline(flac_file, tmp_path, codec, settings, check):
    out = tmp_path / f"out.{codec}"
    full = {"compression_level": None, "bitrate": None, "quality": None, **settings}
    encode.run_pipeline(str(flac_file), codec, full, str(out))
    pairs = source.read_source(str(flac_file))["tags"]
    tags.write_tags(str(out), codec, pairs, art_mod.load_art(str(flac_file), None, 100))
    f = mutagen.File(out)
    assert check(f)
    assert abs(f.info.length - 1.0) < 0.05


def test_prepared_art_is_cached_by_picture_and_size(flac_file, tmp_path):
    cache = tmp_path / "art"
    first = art_mod.load_art(str(flac_file), None, 300, str(cache))
    assert len(list(cache.glob("*-300.img"))) == 1
    # A second track with the same picture gets the cached result, byte for byte.
    again = art_mod.load_art(str(flac_file), None, 300, str(cache))
    assert again.data == first.data and (again.width, again.height) == (300, 300)
    # Another size is prepared separately.
    other = art_mod.load_art(str(flac_file), None, 100, str(cache))
    assert max(Image.open(io.BytesIO(other.data)).size) == 100
    assert len(list(cache.glob("*.img"))) == 2


# --- the encode service: music-encode hands its command to a process with everything loaded ---

PROGRAM = Path(encode.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_bytecode_in_the_role(monkeypatch):
    """The service's interpreter inherits this; the role's files must stay as committed."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")


@pytest.fixture
def music_encode(tmp_path):
    """The real music-encode, installed as the worker role installs it: packed into one archive
    by the role's lookup, unpacked and precompiled by the archive's own installer."""
    packed = build_program.pack(str(PROGRAM), str(tmp_path))
    run = subprocess.run(["/usr/bin/python3", "-I", packed["path"], "install", "--into", str(tmp_path / "program")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return str(tmp_path / "program" / "current" / "music-encode")


def _encode_cli(music_encode, index, service, codec="mp3"):
    """The real music-encode command, as tup runs it: from the index folder, relative paths."""
    argv = [music_encode, "track", "--profile", "car", "--codec", codec, "--quality", "2", "--art", "y",
            "--art-max-size", "200", "--audio", "k.audio", "--tags", "k.tags", "--track", "k.car.track",
            "--receipt", "k.car.done"]
    return subprocess.run(argv, cwd=index, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "MUSIC_ENCODE_SERVICE": service or ""})


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_wire_messages_round_trip(fields):
    assert wire.unpack(wire.pack(fields)) == fields


def test_wire_refuses_truncated_and_foreign_requests():
    whole = wire.request("/idx", ["track", "--audio", "k.audio"], {"k.audio": b'{"md5": "x"}'})
    assert wire.parse_request(whole) == ("/idx", ["track", "--audio", "k.audio"], {"k.audio": b'{"md5": "x"}'})
    for bad in (whole[:-3], b"9:" + whole[2:], b"1:2" + whole[3:], b"junk"):
        with pytest.raises(ValueError):
            wire.parse_request(bad)


def test_service_makes_the_same_output_and_relays_failures(flac_file, tmp_path, music_encode):
    index, dest, builds = _spec_files(tmp_path, flac_file)
    svc = service.Service(str(builds / ".music"))
    try:
        name = svc.name()
        assert name
        done = _encode_cli(music_encode, index, name)
        assert done.returncode == 0, done.stderr
        assert (index / "k.car.done").read_text().startswith("encoded ")
        assert ID3(dest)["TIT2"].text == ["One"] and ID3(dest).getall("APIC")
        assert _events(builds) == ["encoder", "encoded"]
        # The command's own errors come back with its exit status and words.
        bad = _encode_cli(music_encode, index, name, codec="wav")
        assert bad.returncode == 2 and "invalid choice: 'wav'" in bad.stderr
        truncated = tmp_path / "trunc.flac"
        truncated.write_bytes(flac_file.read_bytes()[: flac_file.stat().st_size // 2])
        spec = json.loads((index / "k.car.track").read_text())
        (index / "k.car.track").write_text(json.dumps(spec | {"src": str(truncated), "dest": str(dest) + ".2"}))
        failed = _encode_cli(music_encode, index, name)
        assert failed.returncode == 1 and "truncated or damaged" in failed.stderr
        assert not Path(str(dest) + ".2").exists()
    finally:
        served = svc.stop()
    assert served == 3
    # Without its service (a stale name), music-encode does the work itself.
    (index / "k.car.track").write_text(json.dumps(spec))
    (index / "k.car.done").unlink()
    dest.unlink()
    shutil.rmtree(builds / ".music" / "state")
    alone = _encode_cli(music_encode, index, name)
    assert alone.returncode == 0, alone.stderr
    assert (index / "k.car.done").read_text().startswith("encoded ") and ID3(dest)["TIT2"].text == ["One"]


def test_service_ends_with_the_build_that_started_it(tmp_path):
    """A build killed outright leaves no service behind."""
    music = tmp_path / ".music"
    music.mkdir()
    parent = subprocess.run([sys.executable, "-c", (
        "import os, sys\n"
        "from musicbuild import service\n"
        "s = service.Service(sys.argv[1]); s.name(); print(s._proc.pid, flush=True); os._exit(9)"),
        str(music)], capture_output=True, text=True)
    assert parent.returncode == 9, parent.stderr
    pid = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text():
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
