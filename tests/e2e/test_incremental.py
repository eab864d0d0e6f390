"""Incremental builds, measured by counting encoder runs in the build's journal.

The compile playbook installs the build program once per module; every test then gets its
own copy of the library with a fresh first build (see `lib`), so the tests are independent
of each other and of their order. Builds after the playbook's call the installed
music-build as the build user, exactly as the worker role does.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mutagen
import pytest
from mutagen.flac import FLAC

from compile_helpers import encoder_runs, files_under, journal, report, run_playbook, music_build, scratch
from musicbuild import names
from musicbuild.profile import render_tup_config
from music_devkit.library import make_library, synth_flac

pytestmark = pytest.mark.slow
PROFILES = ("flac", "phone", "car")


def copy_tree(src: Path, dest: Path) -> None:
    """Copy with owners, modes and nanosecond mtimes (the scanner compares sizes and mtimes)."""
    subprocess.run(["cp", "-a", "--", str(src), str(dest)], check=True)


def make_builder_dir(path: Path) -> None:
    path.mkdir(mode=0o755)
    shutil.chown(path, "music", "music")


@pytest.fixture(scope="module")
def installed(world_readable_tmp):
    """The compile playbook, run once on a small library: it installs the build program and
    the build user, prepares the builds folder (one tup.config per profile) and runs the
    first build. Tests copy its sources and profile configs."""
    base = scratch(world_readable_tmp, "incremental")
    src, builds = base / "src", base / "builds"
    make_library(str(src), albums=2, tracks=3, seconds=3)
    run = run_playbook("compile.yml", "-e", f"music_sources_dir={src}", "-e", f"music_builds_dir={builds}")
    assert run.returncode == 0, run.stdout[-3000:]
    return {"src": src, "configs": sorted((builds / ".music/tup").glob("*/tup.config"))}


@pytest.fixture
def lib(installed, world_readable_tmp):
    """This test's own copy of the library, with its first build done: every track encoded
    once in every profile and nothing else, whatever other tests did or in what order.

    Built, not copied from a built tree: tup notices changed files by their ctime, which no
    copy keeps, and its index names sources and outputs by absolute path; a copied build
    would re-run every command on its next build.
    """
    base = scratch(world_readable_tmp, "incremental-test")
    src, builds = base / "src", base / "builds"
    copy_tree(installed["src"], src)
    # The builds folder as the worker role prepares it (roles/worker/tasks/profiles.yml).
    for folder in (builds, builds / ".music", builds / ".music/tup"):
        make_builder_dir(folder)
    for config in installed["configs"]:
        make_builder_dir(builds / ".music/tup" / config.parent.name)
        copy_tree(config, builds / ".music/tup" / config.parent.name / "tup.config")
    written = int(time.time())
    first = music_build(src, builds)
    assert first.returncode == 0, first.stderr + first.stdout[-2000:]
    tracks = sorted(src.rglob("*.flac"))
    assert encoder_runs(builds) == len(tracks) * len(installed["configs"])
    # tup sees a change by a file's ctime in whole seconds: what a test writes must land in a
    # later second than the configs written here (file times trail time.time() by a tick).
    while time.time() < written + 1.01:
        time.sleep(written + 1.01 - time.time())
    return {"src": src, "builds": builds, "tracks": tracks}


def build(lib, only: str = "") -> dict:
    run = music_build(lib["src"], lib["builds"], only=only)
    assert run.returncode == 0, run.stderr + run.stdout[-2000:]
    return report(lib["builds"])


def output(lib, profile: str, rel: Path, ext: str | None = None) -> Path:
    """Where source `rel` lands in flac or phone of group_vars' profiles: they have the default
    names, exfat (the library's 'Album 1: Songs of Spring' is 'Album 1_ Songs of Spring')."""
    return lib["builds"] / profile / names.desired_dest(str(rel), ext, names.Naming("exfat"))


def snapshot(builds: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for profile in PROFILES:
        for rel, st in files_under(builds / profile).items():
            out[f"{profile}/{rel}"] = (st.st_ino, st.st_mtime_ns)
    return out


def changed_outputs(before: dict, after: dict) -> set[str]:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """Freeze a process tree until no new process appears in it, then kill all of it."""
    frozen: set[int] = set()
    for _ in range(50):
        tree = ({pid} | descendants(pid)) - frozen
        if not tree:
            break
        for p in tree:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        frozen |= tree
    for p in frozen:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    for p in frozen - {pid}:
        while time.monotonic() < deadline:
            try:
                if "zombie" in Path(f"/proc/{p}/status").read_text(errors="replace"):
                    break
            except OSError:
                break
            time.sleep(0.02)


def write_as_builder(path: Path, text: str) -> None:
    path.write_text(text)
    shutil.chown(path, "music", "music")


def test_a_rebuild_with_no_change_runs_no_encoder_and_touches_no_output(lib):
    before = snapshot(lib["builds"])
    rep = build(lib)
    assert encoder_runs(lib["builds"]) == 0
    assert changed_outputs(before, snapshot(lib["builds"])) == set()
    for prof in rep["profiles"].values():
        assert (prof["encoded"], prof["retagged"], prof["unchanged"]) == (0, 0, len(lib["tracks"]))


def test_an_audio_edit_reencodes_that_track_only_in_each_profile(lib):
    track = lib["tracks"][1]
    tags = FLAC(track).tags
    before = snapshot(lib["builds"])
    synth_flac(str(track), 3, 99)  # new audio, same name
    audio = FLAC(track)
    for key, value in tags:
        audio.tags.append((key, value))
    audio.save()
    rep = build(lib)
    for profile in PROFILES:
        assert encoder_runs(lib["builds"], profile) == 1
        assert rep["profiles"][profile]["encoded"] == 1
    changed = changed_outputs(before, snapshot(lib["builds"]))
    stem = track.stem
    assert {c.rsplit("/", 1)[-1].rsplit(".", 1)[0] for c in changed} == {stem}
    assert len(changed) == 3


def test_a_tag_edit_retags_every_profile_without_reencoding(lib):
    track = lib["tracks"][2]
    subprocess.run(["metaflac", "--remove-tag=TITLE", "--set-tag=TITLE=Renamed Song", str(track)], check=True)
    rep = build(lib)
    assert encoder_runs(lib["builds"]) == 0
    retagged = {e["profile"] for e in journal(lib["builds"]) if e["event"] == "retagged"}
    assert retagged == set(PROFILES)
    for profile in PROFILES:
        assert rep["profiles"][profile]["retagged"] == 1 and rep["profiles"][profile]["encoded"] == 0
    rel = track.relative_to(lib["src"])
    assert FLAC(output(lib, "flac", rel))["TITLE"] == ["Renamed Song"]
    assert mutagen.File(output(lib, "phone", rel, "opus"))["TITLE"] == ["Renamed Song"]
    car = next((lib["builds"] / "car").rglob(track.stem + ".mp3"))
    assert mutagen.File(car)["TIT2"].text == ["Renamed Song"]


def test_building_only_chosen_profiles_leaves_the_others_for_the_next_full_build(lib):
    track = lib["tracks"][2]
    subprocess.run(["metaflac", "--remove-tag=GENRE", "--set-tag=GENRE=Later", str(track)], check=True)
    rep = build(lib, only="phone")
    assert set(rep["profiles"]) == {"phone"} and rep["profiles"]["phone"]["retagged"] == 1
    rel = track.relative_to(lib["src"])
    assert FLAC(output(lib, "flac", rel))["GENRE"] != ["Later"]
    rep = build(lib)
    assert rep["profiles"]["phone"]["retagged"] == 0
    assert rep["profiles"]["flac"]["retagged"] == rep["profiles"]["car"]["retagged"] == 1
    assert FLAC(output(lib, "flac", rel))["GENRE"] == ["Later"]
    assert encoder_runs(lib["builds"]) == 0


def test_a_profile_setting_change_reencodes_that_profile_only(lib):
    phone = lib["builds"] / "phone"
    sizes_before = sum(st.st_size for st in files_under(phone).values())
    config = lib["builds"] / ".music/tup/phone/tup.config"
    write_as_builder(config, render_tup_config("phone", {"codec": "opus", "bitrate": 32, "art_max_size": 500,
                                                         "playlists": True}))
    rep = build(lib)
    assert encoder_runs(lib["builds"], "phone") == len(lib["tracks"])
    assert encoder_runs(lib["builds"], "car") == encoder_runs(lib["builds"], "flac") == 0
    assert rep["profiles"]["phone"]["encoded"] == len(lib["tracks"])
    assert sum(st.st_size for st in files_under(phone).values()) < sizes_before


def test_deleting_a_source_removes_its_outputs_and_playlist_entries(lib):
    track = lib["tracks"][0]
    rel = track.relative_to(lib["src"])
    cache = json.loads((lib["builds"] / ".music/scan-cache.json").read_text())
    car = lib["builds"] / "car" / cache["dests"]["car"][str(rel)][1]
    assert car.is_file()
    track.unlink()
    rep = build(lib)
    assert encoder_runs(lib["builds"]) == 0
    assert output(lib, "flac", rel).parent.is_dir() and not output(lib, "flac", rel).exists()
    assert not output(lib, "phone", rel, "opus").exists()
    assert not car.exists()
    for profile in PROFILES:
        assert rep["profiles"][profile]["removed"] == 1
    playlist = next(output(lib, "phone", rel).parent.glob("*.m3u8"))
    entries = [ln for ln in playlist.read_text().splitlines() if not ln.startswith("#")]
    assert len(entries) == 2 and track.stem + ".opus" not in entries


def test_a_killed_build_publishes_no_partial_file_and_the_next_build_encodes_only_the_rest(lib):
    # A new profile gives the build real work; kill it once a few tracks are out.
    album = lib["src"] / "Long Player" / "Side A"
    album.mkdir(parents=True)
    for i in range(10):
        synth_flac(str(album / f"{i + 1:02d} Part.flac"), 20, i)
    for p in lib["src"].rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    variant = lib["builds"] / ".music/tup/ogg"
    variant.mkdir()
    shutil.chown(variant, "music", "music")
    write_as_builder(variant / "tup.config", render_tup_config("ogg", {"codec": "vorbis", "quality": 4}))
    total = len(list(lib["src"].rglob("*.flac")))

    proc = music_build(lib["src"], lib["builds"], jobs=2, start_new_session=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            done = [e for e in journal(lib["builds"]) if e["event"] == "encoded" and e["profile"] == "ogg"] \
                if (lib["builds"] / ".music/journal.jsonl").exists() else []
            if len(done) >= 3 or proc.poll() is not None:
                break
            time.sleep(0.02)
    finally:
        # Like a crash: the whole process tree goes at once (tup runs each job in a process
        # group of its own, so killing the build's group alone would leave jobs running).
        kill_tree(proc.pid)
        proc.wait()
    published = files_under(lib["builds"] / "ogg")
    assert 0 < len(published) < total, "the build should have been stopped half-way"
    for rel in published:  # whatever users can see is complete
        assert abs(mutagen.File(lib["builds"] / "ogg" / rel).info.length - (20 if "Part" in rel else 3)) < 0.05

    rep = build(lib)
    # Only what was not published is encoded again (a track killed between publishing and
    # recording it, one per job at most, is redone).
    missing = total - len(published)
    assert missing <= encoder_runs(lib["builds"], "ogg") <= missing + 2
    assert rep["profiles"]["ogg"]["encoded"] == encoder_runs(lib["builds"], "ogg")
    assert len([f for f in files_under(lib["builds"] / "ogg") if f.endswith(".ogg")]) == total
    assert not list((lib["builds"] / ".music/tmp").iterdir())


def test_a_profile_config_rewritten_within_the_second_of_the_last_build_is_still_seen(lib):
    """tup sees a changed file by its ctime in whole seconds: a config the build read in one
    second and rewritten within it looks unchanged to tup unless the build touches it later."""
    first = lib["tracks"][0].relative_to(lib["src"])
    variant = lib["builds"] / ".music/tup/van"
    make_builder_dir(variant)
    config = variant / "tup.config"

    def van(id3: str) -> str:
        return render_tup_config("van", {"codec": "mp3", "quality": 9, "id3": id3,
                                         "include": {"paths": [str(first)]}})

    write_as_builder(config, van("2.4"))
    assert build(lib, only="van")["profiles"]["van"]["encoded"] == 1
    out = next((lib["builds"] / "van").rglob("*.mp3"))
    for attempt in range(8):
        # Start a second, rewrite the config, build (a re-tag of one track), rewrite it again.
        time.sleep(1.02 - time.time() % 1)
        write_as_builder(config, van("2.3" if attempt % 2 == 0 else "2.4"))
        second = os.stat(config).st_ctime_ns // 10**9
        assert build(lib, only="van")["profiles"]["van"]["retagged"] == 1
        wanted = "2.4" if attempt % 2 == 0 else "2.3"
        write_as_builder(config, van(wanted))
        if os.stat(config).st_ctime_ns // 10**9 == second:
            break
    else:
        pytest.skip("each build took over a second: the same-second rewrite was not reached")
    rep = build(lib, only="van")
    assert rep["profiles"]["van"]["retagged"] == 1, rep["profiles"]["van"]
    assert mutagen.id3.ID3(out).version[:2] == (2, int(wanted[-1]))


def test_a_new_profile_left_half_set_up_by_a_failed_tup_run_is_set_up_again(lib):
    """A tup run that set up a new variant and could not commit it (a full disk) leaves empty
    folders in the variant, which tup then refuses: the build removes those empty folders,
    and nothing else."""
    variant = lib["builds"] / ".music/tup/late"
    for folder in (variant, variant / "index", variant / "index/Old Album"):
        make_builder_dir(folder)
    write_as_builder(variant / "tup.config", render_tup_config("late", {"codec": "opus", "bitrate": 24}))
    rep = build(lib, only="late")
    assert rep["profiles"]["late"]["encoded"] == len(lib["tracks"])
    # Not empty: not the build's to remove; tup's refusal is the build's one-line error.
    other = lib["builds"] / ".music/tup/later"
    for folder in (other, other / "notes"):
        make_builder_dir(folder)
    write_as_builder(other / "notes/mine.txt", "kept\n")
    write_as_builder(other / "tup.config", render_tup_config("later", {"codec": "opus", "bitrate": 24}))
    run = music_build(lib["src"], lib["builds"], only="later")
    assert run.returncode == 1
    assert "variant: later" in run.stderr.strip().splitlines()[-1]
    assert (other / "notes/mine.txt").read_text() == "kept\n"
