"""music-encode's digests of existing profiles, pinned: a change to them re-encodes libraries.

music-encode re-encodes an output when the digest of its audio fingerprint, codec and codec
settings differs from the one its state recorded, and re-tags it when the tags digest differs.
A full library takes days of CPU, so an upgrade must leave both digests of every existing
profile as they are. The values below were recorded by the build before the codec table
(encode.py's settings {"compression_level", "bitrate", "quality"}, None when absent); a
setting added to the table later changes them only where a profile sets it (or, with an
`encoder_default`, sets it to something else than that).

The one deliberate exception: a tag writer's revision (tags.WRITER_REVISIONS) re-tags that
format's outputs once, never re-encoding them. MP3's ID3 mapping is at revision 2 (issue 14:
comments, lyrics, track numbers, MusicBrainz ids and empty values were lost or merged).
"""
import json

import pytest

from musicbuild import encode
from musicbuild.profile import render_tup_config

AUDIO = {"md5": "9e107d9d372bb6826bd81d3542a419d6", "rate": 44100, "channels": 2, "bits": 16, "samples": 441000}
TAGS = {"tags": [["TITLE", "One"], ["ARTIST", "A"]], "art": None}

PINNED = [
    # group_vars/all/profiles.yml: flac, phone, car
    ({"codec": "flac", "compression_level": 8}, "9775b2ef62767d93d99eaa3a39920e88e6d5bc53",
     "631fd0a859b2901efe77e7fa23f81bd830e3014e"),
    ({"codec": "opus", "bitrate": 96, "art_max_size": 500}, "0e7e1af4e25632723428e360b00d70f031998132",
     "fc2b5c359f721b2b506f36ea19576a34eaafc3d6"),
    ({"codec": "mp3", "quality": 2, "art_max_size": 500}, "3be37c47fd1c479e59aad60a7dfc3abe6158b952",
     "b5b8ded575693481b9a0e748e3557b58a47026e4"),
    # each codec's defaults, and the other mode of mp3 and vorbis
    ({"codec": "opus"}, "5b585489d5fffb77c0ab9efd0920d60eaf56b7dd", "e1898565ac035fdeb94172b2eb3c4b85b121ed00"),
    ({"codec": "mp3", "bitrate": 320}, "dbfefa09b919d5ca88fc6893e31051fc70b00581",
     "cee49ee8c3f54f5ec7a94fbe863e98b1daab6c91"),
    ({"codec": "vorbis"}, "143e6cc8c169b38aa1aed1161cd86ff43c0c668a", "b39de22ce89fd9ffb4b4e1aa8ba5e8a1220eff86"),
    ({"codec": "vorbis", "bitrate": 192, "art": False}, "204355b30b5c43db0eb6570d2cf0ff4e31e51c2c",
     "f4147a0f1b6327c9797ef77c39d4a2543806ce11"),
]


def tup_rule_options(config: str) -> list[str]:
    """music-encode's options as Tupdefault.lua writes them from a tup.config."""
    values = dict(line[len("CONFIG_"):].split("=", 1) for line in config.splitlines() if line.startswith("CONFIG_"))
    options = ["--profile", values["PROFILE"], "--codec", values["CODEC"]]
    for setting in filter(None, values["SETTINGS"].split(",")):
        options += ["--" + setting.replace("_", "-"), values[setting.upper()]]
    return options + ["--art", values["ART"], "--art-max-size", values["ART_MAX_SIZE"]]


@pytest.mark.parametrize("profile, audio_key, tags_key", PINNED)
def test_an_existing_output_is_neither_reencoded_nor_retagged(tmp_path, profile, audio_key, tags_key):
    music = tmp_path / "builds" / ".music"
    index = tmp_path / "index" / "dir"
    index.mkdir(parents=True)
    music.mkdir(parents=True)
    dest = tmp_path / "builds" / "p" / "x.out"
    dest.parent.mkdir()
    dest.write_bytes(b"made by an earlier build")
    (index / "k.audio").write_text(json.dumps(AUDIO))
    (index / "k.tags").write_text(json.dumps(TAGS))
    (index / "k.p.track").write_text(json.dumps({"source": "x.flac", "src": str(tmp_path / "x.flac"),
                                                 "dest": str(dest), "cover": None, "music": str(music)}))
    state = music / "state" / "p" / "dir" / "k.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"audio_key": audio_key, "tags_key": tags_key, "dest": str(dest), "source": "x.flac"}))

    argv = ["track", *tup_rule_options(render_tup_config("p", profile)), "--audio", str(index / "k.audio"),
            "--tags", str(index / "k.tags"), "--track", str(index / "k.p.track"), "--receipt", str(index / "k.p.done")]
    assert encode.main(argv) == 0
    events = [json.loads(line)["event"] for line in (music / "journal.jsonl").read_text().splitlines()]
    assert json.loads(state.read_text())["audio_key"] == audio_key
    if profile["codec"] == "mp3":  # ID3 writer revision 2: re-tagged once, never re-encoded
        assert events == ["retagged"]
        assert encode.main(argv) == 0
        events = [json.loads(line)["event"] for line in (music / "journal.jsonl").read_text().splitlines()]
        assert events == ["retagged", "unchanged"]
        return
    assert events == ["unchanged"], "the digest of an existing profile changed: every such output would be redone"
    assert dest.read_bytes() == b"made by an earlier build"
