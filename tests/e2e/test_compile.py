"""End to end: the local compile playbook on a generated library, checked with a real tag reader."""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import mutagen
import pytest
from mutagen.flac import FLAC
from mutagen.id3 import ID3
from mutagen.mp3 import MP3, BitrateMode
from mutagen.ogg import OggPage
from mutagen.oggopus import OggOpus
from PIL import Image

from compile_helpers import BAD, ODD_NAMES, add_odd_and_bad_files, encoder_runs, journal, recap, report, run_playbook, scratch
from musicbuild.names import exfat_path, is_exfat_safe, is_fat32_safe
from music_devkit.library import make_library

pytestmark = pytest.mark.slow
PROFILES = ("flac", "phone", "car")
# What an ID3v2.4 reader should find for each Vorbis comment of the sources (an independent table).
ID3_EXPECTED = {
    "TITLE": "TIT2", "ARTIST": "TPE1", "ALBUM": "TALB", "ALBUMARTIST": "TPE2", "DATE": "TDRC",
    "ORIGINALDATE": "TDOR", "GENRE": "TCON", "LABEL": "TPUB", "ISRC": "TSRC", "COMMENT": "COMM::eng",
    "MUSICBRAINZ_TRACKID": "UFID:http://musicbrainz.org",
    "MUSICBRAINZ_ALBUMID": "TXXX:MusicBrainz Album Id", "MUSICBRAINZ_ARTISTID": "TXXX:MusicBrainz Artist Id",
    "MUSICBRAINZ_ALBUMARTISTID": "TXXX:MusicBrainz Album Artist Id",
    "MUSICBRAINZ_RELEASEGROUPID": "TXXX:MusicBrainz Release Group Id",
    "MUSICBRAINZ_RELEASETRACKID": "TXXX:MusicBrainz Release Track Id",
    "RELEASECOUNTRY": "TXXX:MusicBrainz Album Release Country", "ARTISTS": "TXXX:ARTISTS",
    "REPLAYGAIN_TRACK_GAIN": "TXXX:REPLAYGAIN_TRACK_GAIN", "REPLAYGAIN_TRACK_PEAK": "TXXX:REPLAYGAIN_TRACK_PEAK",
    "REPLAYGAIN_ALBUM_GAIN": "TXXX:REPLAYGAIN_ALBUM_GAIN", "REPLAYGAIN_ALBUM_PEAK": "TXXX:REPLAYGAIN_ALBUM_PEAK",
}


@pytest.fixture(scope="module")
def compiled(world_readable_tmp):
    """One library with odd names, bad files and extra files, compiled by the playbook.

    The first build's report and journal are kept here: test_second_run_... builds again and
    replaces the files, whatever order the tests run in."""
    base = scratch(world_readable_tmp, "compile")
    src, builds = base / "src", base / "builds"
    make_library(str(src), albums=3, tracks=3, seconds=4)
    album1 = next(src.glob("Aurora Lines/*"))
    (album1 / "album.cue").write_text('FILE "01 Track 1.flac" WAVE\n')
    (album1 / "rip.log").write_text("ripped\n")
    add_odd_and_bad_files(src)
    first = run_playbook("compile.yml", "-e", f"music_sources_dir={src}", "-e", f"music_builds_dir={builds}")
    wrote = (builds / "report.json").is_file()  # if not, the tests that read it say so
    return {"src": src, "builds": builds, "first": first,
            "first_report": report(builds) if wrote else None, "first_journal": journal(builds) if wrote else None}


def good_sources(src: Path) -> list[str]:
    return sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.suffix.lower() == ".flac"
                  and str(p.relative_to(src)) not in BAD)


def source_tags(path: Path) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    for key, value in FLAC(path).tags:
        tags.setdefault(key.upper(), []).append(value)
    return tags


def output_for(builds: Path, profile: str, rel: str) -> Path:
    # names are made safe for the device (car: fat32; flac and phone: exfat, the default); find
    # the output through the build's own record of it.
    dests = json.loads((builds / ".music" / "scan-cache.json").read_text())["dests"][profile]
    return builds / profile / dests[rel][1]


def opus_audio_kbps(path: Path) -> float:
    """Average bitrate of the audio packets only (cover art in the tags left out)."""
    pages = []
    with open(path, "rb") as fh:
        while True:
            try:
                pages.append(OggPage(fh))
            except Exception:
                break
    packets = OggPage.to_packets(pages)
    return sum(len(p) for p in packets[2:]) * 8 / OggOpus(path).info.length / 1000


def test_first_run_builds_every_good_track_and_fails_naming_the_bad_ones(compiled):
    run = compiled["first"]
    assert run.returncode != 0, "a run with failed tracks must fail the play"
    out = run.stdout
    assert "3 track(s) failed on localhost" in out
    for source, reason in BAD.items():
        assert f"{source}: " in out and reason in out
    for profile in PROFILES:
        assert re.search(rf"{profile}: \d+ encoded, 0 retagged, 0 unchanged, 0 removed, 3 failed", out)


def test_the_report_counts_each_profiles_tracks_and_names_each_failure_and_its_reason(compiled):
    """report.json of the first build: every good track encoded in every profile, each bad one
    failed with its reason, absolute output paths, UTC times, and every command tup ran
    counted as run by the encode service."""
    rep = compiled["first_report"]
    assert rep is not None, "the first build wrote no report.json"
    n = len(good_sources(compiled["src"]))
    assert set(rep) == {"profiles", "started", "finished", "encode_service_commands"}
    # Every command tup ran (one final journal event each) went through the encode service.
    commands = [e for e in compiled["first_journal"] if e["event"] != "encoder"]
    assert rep["encode_service_commands"] == len(commands) >= n * len(PROFILES)
    assert rep["started"] <= rep["finished"] and rep["started"].endswith("+00:00")
    assert set(rep["profiles"]) == set(PROFILES)
    for name, prof in rep["profiles"].items():
        assert prof["path"] == str(compiled["builds"] / name) and os.path.isabs(prof["path"])
        assert (prof["encoded"], prof["retagged"], prof["unchanged"], prof["removed"]) == (n, 0, 0, 0)
        assert {f["source"]: f["reason"] for f in prof["failed"]}.keys() == BAD.keys()
        for failure in prof["failed"]:
            assert BAD[failure["source"]] in failure["reason"]


def test_flac_and_phone_trees_mirror_the_sources_without_the_unusable_files(compiled):
    src, builds = compiled["src"], compiled["builds"]
    good = good_sources(src)
    for profile, ext in (("flac", ".flac"), ("phone", ".opus")):
        produced = sorted(str(p.relative_to(builds / profile)) for p in (builds / profile).rglob(f"*{ext}"))
        # one output per usable source, at the source's name as exFAT (the default names) takes
        # it: ':' and '?' as '_', and Same/same numbered, since exFAT finds a name in any case
        outputs = [str(output_for(builds, profile, g).relative_to(builds / profile)) for g in good]
        assert produced == sorted(outputs)
        assert len({p.casefold() for p in produced}) == len(produced) and all(map(is_exfat_safe, produced))
        for g, out in zip(good, outputs):
            wanted = exfat_path(os.path.splitext(g)[0] + ext)
            assert out == wanted or re.fullmatch(re.escape(os.path.splitext(wanted)[0]) + r" \(\d\)" + ext, out), out
    odd = builds / "phone" / "Odd Names"
    for name in ODD_NAMES:
        assert (odd / exfat_path(os.path.splitext(name)[0] + ".opus")).is_file() or name == "same.flac", name
    assert not list((builds / "phone").rglob("*truncated*")) and not list((builds / "phone").rglob("*empty*"))


def test_flac_is_lossless_opus_keeps_near_its_bitrate_and_mp3_is_gapless_lame_vbr(compiled):
    src, builds = compiled["src"], compiled["builds"]
    for rel in good_sources(src):
        source = FLAC(src / rel)
        flac = FLAC(output_for(builds, "flac", rel))
        assert flac.info.total_samples == source.info.total_samples
        assert flac.info.md5_signature == source.info.md5_signature  # lossless
        opus_path = output_for(builds, "phone", rel)
        opus = OggOpus(opus_path)
        assert abs(opus.info.length - source.info.length) < 0.03
        kbps = opus_audio_kbps(opus_path)
        # Opus VBR spends more on tones and less on noise around the target; 96 asked.
        assert 48 < kbps < 144, f"{rel}: phone Opus at {kbps:.0f} kb/s, profile asks 96"
        mp3 = MP3(output_for(builds, "car", rel))
        assert mp3.info.bitrate_mode == BitrateMode.VBR and mp3.info.encoder_info.startswith("LAME")
        assert 32000 <= mp3.info.bitrate <= 320000
        # Gapless: the LAME header's delay and padding give back the exact length.
        assert abs(mp3.info.length - source.info.length) < 0.005


def test_every_profile_carries_the_source_tags_in_its_own_format(compiled):
    src, builds = compiled["src"], compiled["builds"]
    checked = 0
    for rel in good_sources(src):
        expected = source_tags(src / rel)
        flac_tags = source_tags(output_for(builds, "flac", rel))
        assert flac_tags == expected, rel
        opus = {k.upper(): v for k, v in OggOpus(output_for(builds, "phone", rel)).tags.items()}
        opus.pop("METADATA_BLOCK_PICTURE", None)
        for key, values in expected.items():
            if key.startswith("REPLAYGAIN_"):
                assert key not in opus
            else:
                assert opus[key] == values, (rel, key)
        if "REPLAYGAIN_TRACK_GAIN" in expected:
            gain = float(expected["REPLAYGAIN_TRACK_GAIN"][0].split()[0])
            assert opus["R128_TRACK_GAIN"] == [str(round((gain - 5) * 256))]
        id3 = ID3(output_for(builds, "car", rel))
        assert id3.version[:2] == (2, 4)
        for key, values in expected.items():
            if key in ("TRACKNUMBER", "TRACKTOTAL", "DISCNUMBER", "DISCTOTAL"):
                continue
            frame = id3[ID3_EXPECTED[key]]
            got = [frame.data.decode()] if key == "MUSICBRAINZ_TRACKID" else [str(t) for t in frame.text]
            assert got == values, (rel, key)
        if "TRACKNUMBER" in expected:
            assert id3["TRCK"].text == [f"{expected['TRACKNUMBER'][0]}/{expected['TRACKTOTAL'][0]}"]
            assert id3["TPOS"].text == [f"{expected['DISCNUMBER'][0]}/{expected['DISCTOTAL'][0]}"]
        checked += 1
    assert checked == len(good_sources(src))


def test_cover_art_is_embedded_full_size_in_flac_and_scaled_to_500px_for_phone_and_car(compiled):
    src, builds = compiled["src"], compiled["builds"]
    for rel in good_sources(src):
        if rel.startswith("Odd Names"):
            continue  # copies of one source track
        source_art = FLAC(src / rel).pictures
        folder_cover = (src / rel).parent / "cover.jpg"
        original = Image.open(io.BytesIO(source_art[0].data) if source_art else folder_cover)
        flac_pic = FLAC(output_for(builds, "flac", rel)).pictures
        assert len(flac_pic) == 1 and Image.open(io.BytesIO(flac_pic[0].data)).size == original.size
        car = ID3(output_for(builds, "car", rel)).getall("APIC")
        assert len(car) == 1 and max(Image.open(io.BytesIO(car[0].data)).size) == 500
        phone = mutagen.File(output_for(builds, "phone", rel))
        assert phone.tags["METADATA_BLOCK_PICTURE"], rel
        from mutagen.flac import Picture
        import base64
        pic = Picture(base64.b64decode(phone.tags["METADATA_BLOCK_PICTURE"][0]))
        assert max(Image.open(io.BytesIO(pic.data)).size) == 500


def test_flac_gets_the_albums_extra_files_and_phone_and_car_get_ordered_playlists(compiled):
    src, builds = compiled["src"], compiled["builds"]
    album1 = next((builds / "flac").glob("Aurora Lines/*"))
    assert {p.name for p in album1.iterdir() if p.suffix != ".flac"} == {"cover.jpg", "album.cue", "rip.log"}
    assert (album1 / "album.cue").read_bytes() == next(src.glob("Aurora Lines/*/album.cue")).read_bytes()
    assert not list((builds / "phone").rglob("cover.jpg")) and not list((builds / "flac").rglob("*.m3u8"))
    for profile in ("phone", "car"):
        playlists = list((builds / profile).rglob("*.m3u8"))
        assert len(playlists) == 4  # three albums and the odd-names folder
        for playlist in playlists:
            lines = playlist.read_text(encoding="utf-8").splitlines()
            assert lines[0] == "#EXTM3U"
            entries = [ln for ln in lines if not ln.startswith("#")]
            assert entries and all((playlist.parent / e).is_file() for e in entries)
            if "Album" in playlist.name:
                assert entries == sorted(entries)  # track order


def test_car_names_are_fat32_safe_and_distinct(compiled):
    car = compiled["builds"] / "car"
    paths = [str(p.relative_to(car)) for p in car.rglob("*") if p.is_file()]
    assert all(is_fat32_safe(p) for p in paths), [p for p in paths if not is_fat32_safe(p)]
    assert len({p.casefold() for p in paths}) == len(paths)
    names = {p.split("/")[-1] for p in paths if p.startswith("Odd Names/")}
    assert {"Same.mp3", "same (2).mp3", "a_b_c_d_e_f_g.mp3", "Loud.mp3", "-leading dash.mp3"} <= names
    assert "L" * 60 + ".mp3" in names


def test_second_run_changes_nothing_and_runs_no_encoder(compiled):
    src, builds = compiled["src"], compiled["builds"]
    run = run_playbook("compile.yml", "-e", f"music_sources_dir={src}", "-e", f"music_builds_dir={builds}",
                       "-e", "worker_fail_on_track_errors=false")
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap(run.stdout)["changed"] == 0
    assert encoder_runs(builds) == 0
    assert all(e["event"] == "failed" for e in journal(builds) if e["source"] in BAD)
    for prof in report(builds)["profiles"].values():
        assert prof["encoded"] == 0 and prof["unchanged"] == len(good_sources(src)) and len(prof["failed"]) == 3


def test_check_mode_shows_the_profile_diff_and_changes_nothing(compiled):
    src, builds = compiled["src"], compiled["builds"]
    before = (builds / "report.json").stat().st_mtime_ns
    run = run_playbook("compile.yml", "-e", f"music_sources_dir={src}", "-e", f"music_builds_dir={builds}",
                       "-e", json.dumps({"music_profiles": {"phone": {"codec": "opus", "bitrate": 64}}}), check=True)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "-CONFIG_BITRATE=96" in run.stdout and "+CONFIG_BITRATE=64" in run.stdout  # --diff
    assert "CONFIG_BITRATE=96" in (builds / ".music/tup/phone/tup.config").read_text()
    assert (builds / "report.json").stat().st_mtime_ns == before
