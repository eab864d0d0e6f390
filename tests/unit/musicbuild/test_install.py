"""The build program as one unit: packed by the role's lookup, installed by its own installer,
current or not by one stamp; the profile model is one file shared with the tup_profile module."""
from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest

import musicbuild
from ansible_collections.music.profiles.plugins.lookup import build_program
from ansible_collections.music.profiles.plugins.module_utils import music_profile
from musicbuild import install, profile

PROJECT = Path(musicbuild.__file__).resolve().parents[1]


def _install(archive: str, into: Path, bindir: Path | None = None) -> subprocess.CompletedProcess:
    cmd = ["/usr/bin/python3", "-I", archive, "install", "--into", str(into)]
    if bindir:
        cmd += ["--bin", str(bindir)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_the_profile_model_is_one_file_for_the_module_and_the_package(tmp_path):
    assert filecmp.cmp(profile.__file__, music_profile.__file__, shallow=False)
    packed = build_program.pack(str(PROJECT), str(tmp_path))
    with zipfile.ZipFile(packed["path"]) as zf:
        assert zf.read("musicbuild/profile.py") == Path(music_profile.__file__).read_bytes()


def test_packing_the_same_program_twice_gives_the_same_bytes_and_stamp(tmp_path):
    one = build_program.pack(str(PROJECT), str(tmp_path / "a"))
    two = build_program.pack(str(PROJECT), str(tmp_path / "b"))
    assert one["stamp"] == two["stamp"] and len(one["stamp"]) == 16
    assert Path(one["path"]).read_bytes() == Path(two["path"]).read_bytes()
    assert one["version"] == musicbuild.__version__ != "0+unknown"


def test_a_changed_file_changes_the_stamp(tmp_path):
    copy = tmp_path / "program"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    before = build_program.pack(str(copy), str(tmp_path / "a"))["stamp"]
    with open(copy / "musicbuild" / "names.py", "a") as fh:
        fh.write("\n# changed\n")
    assert build_program.pack(str(copy), str(tmp_path / "b"))["stamp"] != before


def test_the_archive_holds_the_package_and_launchers_only(tmp_path):
    packed = build_program.pack(str(PROJECT), str(tmp_path))
    with zipfile.ZipFile(packed["path"]) as zf:
        names = zf.namelist()
    assert {"__main__.py", "music-build", "music-encode", "music-ssm-profiles", "musicbuild/__init__.py",
            "musicbuild/Tupdefault.lua", "musicbuild/_version.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "egg-info" in n]


def test_install_makes_a_precompiled_current_copy_with_launchers_on_the_path(tmp_path):
    packed = build_program.pack(str(PROJECT), str(tmp_path))
    into, bindir = tmp_path / "lib", tmp_path / "bin"
    bindir.mkdir()
    run = _install(packed["path"], into, bindir)
    assert run.returncode == 0, run.stderr
    current = into / "current"
    assert os.readlink(current) == packed["stamp"]
    assert (current / f"{packed['stamp']}.stamp").is_file()
    assert list((current / "musicbuild" / "__pycache__").glob("wire.*.pyc"))
    for name in ("music-build", "music-encode"):
        assert os.path.realpath(bindir / name) == str((into / packed["stamp"] / name).resolve())
    version = subprocess.run([str(bindir / "music-build"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0, version.stderr
    assert version.stdout.split() == ["music-build", packed["version"], packed["stamp"]]
    usage = subprocess.run([str(bindir / "music-encode")], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: music-encode" in usage.stderr


def test_a_new_program_replaces_the_old_one_and_leaves_no_second_copy(tmp_path):
    copy = tmp_path / "program"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    old = build_program.pack(str(copy), str(tmp_path / "a"))
    into = tmp_path / "lib"
    assert _install(old["path"], into).returncode == 0
    (copy / "musicbuild" / "names.py").write_text((copy / "musicbuild" / "names.py").read_text() + "\n# v2\n")
    new = build_program.pack(str(copy), str(tmp_path / "b"))
    assert _install(new["path"], into).returncode == 0
    assert sorted(os.listdir(into)) == sorted(["current", new["stamp"]])
    assert "# v2" in (into / "current" / "musicbuild" / "names.py").read_text()


def test_concurrent_installs_of_one_program_end_with_one_complete_copy(tmp_path):
    # Several rounds of eight racing installers: the race for `current` and for the stamp's
    # folder only shows now and then (it failed CI once, with four installers).
    packed = build_program.pack(str(PROJECT), str(tmp_path))
    for round_ in range(3):
        into = tmp_path / f"lib{round_}"
        runs: list = []
        threads = [threading.Thread(target=lambda: runs.append(_install(packed["path"], into))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.returncode for r in runs] == [0] * 8, [r.stderr for r in runs]
        assert sorted(os.listdir(into)) == sorted(["current", packed["stamp"]])
        assert (into / "current" / f"{packed['stamp']}.stamp").is_file()


def test_a_damaged_archive_is_refused_in_one_line_and_changes_nothing(tmp_path):
    packed = build_program.pack(str(PROJECT), str(tmp_path))
    into = tmp_path / "lib"
    assert _install(packed["path"], into).returncode == 0
    damaged = tmp_path / "damaged.pyz"
    data = Path(packed["path"]).read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    run = _install(str(damaged), into)
    assert run.returncode != 0
    assert os.readlink(into / "current") == packed["stamp"]


def test_a_source_checkout_reads_the_version_from_galaxy_yml(tmp_path):
    galaxy = tmp_path / "galaxy.yml"
    galaxy.write_text("namespace: music\nname: profiles\nversion: 2.3.4  # the one version\n")
    assert install.read_galaxy_version(str(galaxy)) == "2.3.4"
    assert install.read_galaxy_version(str(tmp_path / "missing.yml")) is None


@pytest.mark.parametrize("launcher", ["music-build", "music-encode", "music-ssm-profiles"])
def test_launchers_find_the_package_beside_them_without_path_setup(launcher):
    first = (PROJECT / launcher).read_text().splitlines()[0]
    assert first.startswith("#!/usr/bin/python3 -s") and "I" not in first.split()[-1]
    assert os.access(PROJECT / launcher, os.X_OK)
