"""Data safety through the compile playbook, as a user meets it: overlapping folders refused
before anything is written; a library in a private folder refused for the build user and
built as its owner (whose account is left as it is) under a restrictive umask, then served;
a builds folder of another user not taken over; the mass-removal guard with its one-off
confirmation and its --check listing."""
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from compile_helpers import recap, report, run_playbook
from music_devkit.library import make_library
from test_serve import Instance

pytestmark = pytest.mark.slow


def checksums(tree: Path) -> dict[str, str]:
    return {str(p.relative_to(tree)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("*")) if p.is_file()}


def compile_play(src: Path, out: Path, *extra: str, check: bool = False) -> subprocess.CompletedProcess:
    return run_playbook("compile.yml", "-e", f"music_sources_dir={src}", "-e", f"music_builds_dir={out}",
                        "-e", "music_build_profiles=phone", *extra, check=check)


def under_umask(mask: int, run, *args):
    """`run(*args)` with the playbook (and all it starts) under umask `mask`."""
    old = os.umask(mask)
    try:
        return run(*args)
    finally:
        os.umask(old)


@pytest.fixture
def base(world_readable_tmp):
    path = world_readable_tmp / f"safety-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def owner():
    """An existing account, as a library's owner would have: no home folder, a login shell."""
    name = f"mo{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/bash", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", name], check=False)


def test_overlapping_folders_are_refused_both_ways_and_the_library_is_untouched(base):
    src = base / "library"
    make_library(str(src), albums=1, tracks=2, seconds=1)
    before = checksums(src)
    inside = compile_play(src, src / "out")
    assert inside.returncode != 0 and recap(inside.stdout)["failed"] == 1
    assert f"worker_sources_dir {src} and worker_builds_dir {src / 'out'}" in inside.stdout
    around = compile_play(src, base)  # the builds folder holds the library
    assert around.returncode != 0 and "overlap" in around.stdout
    link = base / "link-to-library"
    link.symlink_to(src)
    same = compile_play(src, link)
    assert same.returncode != 0 and "are the same folder" in same.stdout
    bind = base / "bind"
    bind.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(bind)], check=True)
    try:
        through_bind = compile_play(src, bind / "out")
    finally:
        subprocess.run(["umount", str(bind)], check=True)
    assert through_bind.returncode != 0 and "the builds folder is inside the sources folder" in through_bind.stdout
    assert checksums(src) == before and not (src / "out").exists() and not (base / ".music").exists()


def test_a_private_library_is_built_as_its_owner_and_served_whatever_the_umask(base, owner):
    home = base / "home"
    home.mkdir(mode=0o700)
    src = home / "Music"
    make_library(str(src), albums=1, tracks=2, seconds=1)
    subprocess.run(["chown", "-R", owner, str(home)], check=True)
    inst = Instance(base)
    try:
        out = inst.builds
        shutil.rmtree(out)
        refused = compile_play(src, out)
        assert refused.returncode != 0
        assert f"cannot read worker_sources_dir {src}" in refused.stdout and "music_build_user" in refused.stdout
        account = pwd.getpwnam(owner)

        # Built as the owner, under a restrictive umask: the account is left as it is, the
        # outputs are the owner's and readable by the rsync daemon's user.
        built = under_umask(0o077, compile_play, src, out, "-e", f"music_build_user={owner}")
        assert built.returncode == 0, built.stdout[-3000:]
        assert pwd.getpwnam(owner) == account and not Path(account.pw_dir).exists()
        outputs = list((out / "phone").rglob("*"))
        assert outputs and all(p.stat().st_uid == account.pw_uid for p in outputs)
        assert all((p.stat().st_mode & 0o777) == (0o755 if p.is_dir() else 0o644) for p in outputs)
        assert (out / "report.json").stat().st_mode & 0o777 == 0o644
        inst.play()
        listing = inst.rsync("-r", inst.url("phone") + "/")
        assert listing.returncode == 0, listing.stderr
        assert sum(1 for line in listing.stdout.splitlines() if line.endswith(".opus")) == 2

        # The owner's builds folder is not taken over by the default build user.
        readable = base / "open"
        make_library(str(readable), albums=1, tracks=1, seconds=1)
        taken = compile_play(readable, out)
        assert taken.returncode != 0 and f"belongs to {owner}" in taken.stdout
        assert all(p.stat().st_uid == account.pw_uid for p in outputs)
    finally:
        inst.cleanup()


def test_most_of_a_profile_gone_removes_nothing_until_confirmed_once(base):
    src, out = base / "library", base / "out"
    make_library(str(src), albums=2, tracks=2, seconds=1)
    assert compile_play(src, out).returncode == 0
    built = checksums(out / "phone")
    for track in sorted(src.rglob("*.flac"))[:3]:
        track.unlink()

    checked = compile_play(src, out, check=True)
    assert checked.returncode == 0
    # The three tracks and the playlist of the album left with none.
    assert "phone: would remove 4" in checked.stdout and "REFUSED" in checked.stdout

    refused = compile_play(src, out)
    assert refused.returncode != 0 and "removed nothing" in refused.stdout
    assert "music_allow_mass_removal=true" in refused.stdout
    # Every output is still there; the tracks are byte for byte the same (an album's playlist
    # follows its sources).
    after = checksums(out / "phone")
    assert after.keys() == built.keys()
    assert {k: v for k, v in after.items() if k.endswith(".opus")} == {k: v for k, v in built.items() if k.endswith(".opus")}

    confirmed = compile_play(src, out, "-e", "music_allow_mass_removal=true")
    assert confirmed.returncode == 0, confirmed.stdout[-3000:]
    assert report(out)["profiles"]["phone"]["removed"] == 3
    assert len(list((out / "phone").rglob("*.opus"))) == 1
