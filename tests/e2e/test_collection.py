"""The collection as an Ansible user gets it: `ansible-galaxy collection build`, then `install`
of the tarball into an empty folder, then a three-line playbook with the FQCN worker role.

Nothing of the checkout is used after the build: no ansible.cfg, no group_vars, no roles path.
The dependencies (amazon.aws, ...) come from the vendored collections, offline.
"""
from __future__ import annotations

import fcntl
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from mutagen.flac import FLAC
from mutagen.mp3 import MP3
from mutagen.oggopus import OggOpus

from compile_helpers import recap, report, scratch
from music_devkit.library import make_library

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
VENDORED = ROOT / "collections" / "ansible_collections"
PLAYBOOK = """\
- hosts: localhost
  roles:
    - music.profiles.worker
"""
# (output suffix, mutagen class, command that decodes the whole file and fails on an error)
DECODERS = {
    "flac": (".flac", FLAC, ["flac", "--test", "--silent"]),
    "phone": (".opus", OggOpus, ["opusdec", "--quiet"]),
    "car": (".mp3", MP3, ["lame", "--decode", "--quiet"]),
}


def version() -> str:
    return re.search(r"^version:\s*(\S+)", (ROOT / "galaxy.yml").read_text(), re.M).group(1)


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The built tarball, installed into an empty collections folder; an environment using it."""
    base = tmp_path_factory.mktemp("collection")
    # Only the dependencies beside the install, not this checkout's own link music/profiles.
    deps = base / "deps" / "ansible_collections"
    deps.mkdir(parents=True)
    for namespace in ("amazon", "community", "ansible"):
        (deps / namespace).symlink_to(VENDORED / namespace)
    target = base / "installed"
    target.mkdir()
    (base / "ansible.cfg").write_text("[defaults]\n")  # a user's empty config, not the project's
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(base / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH=f"{target}:{deps.parent}", PATH=f"{BIN}:{env['PATH']}")

    run([BIN / "ansible-galaxy", "collection", "build", "--output-path", base, ROOT], base, env)
    tarball = base / f"music-profiles-{version()}.tar.gz"
    # --force: .venv's path file puts this checkout's collections/ on sys.path, where
    # ansible-galaxy would otherwise find music.profiles "already installed".
    run([BIN / "ansible-galaxy", "collection", "install", "--offline", "--force", "-p", target, tarball], base, env)
    return {"base": base, "env": env, "tarball": tarball, "path": target / "ansible_collections/music/profiles"}


def test_tarball_holds_the_collection_and_nothing_else(installed):
    with tarfile.open(installed["tarball"]) as tar:
        names = set(tar.getnames())
    for needed in ("MANIFEST.json", "LICENSE", "CHANGELOG.md", "README.md", "meta/runtime.yml",
                   "plugins/modules/tup_profile.py", "plugins/modules/ebs_snapshot_rotate.py",
                   "plugins/module_utils/music_profile.py", "roles/worker/tasks/main.yml",
                   "roles/worker/defaults/main.yml", "roles/server/tasks/main.yml"):
        assert needed in names, needed
    top = {name.split("/")[0] for name in names}
    assert top <= {"MANIFEST.json", "FILES.json", "LICENSE", "CHANGELOG.md", "README.md", "meta", "plugins", "roles"}, top
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".egg-info"))]


def test_ansible_doc_shows_the_installed_module(installed):
    proc = run([BIN / "ansible-doc", "music.profiles.tup_profile"], installed["base"], installed["env"])
    assert str(installed["path"] / "plugins/modules/tup_profile.py") in proc.stdout
    assert "Validate a music device profile" in proc.stdout or "tup variant" in proc.stdout
    assert "music.profiles.tup_profile:" in proc.stdout  # the examples use the FQCN


def test_three_line_playbook_compiles_a_library_with_the_installed_role(installed, world_readable_tmp):
    base = scratch(world_readable_tmp, "collection")
    src, builds = base / "src", base / "builds"
    made = make_library(str(src), albums=1, tracks=2, seconds=1)
    (installed["base"] / "compile.yml").write_text(PLAYBOOK)
    cmd = [BIN / "ansible-playbook", "-vv", "compile.yml",
           "-e", f"worker_sources_dir={src}", "-e", f"worker_builds_dir={builds}"]
    # The other end-to-end tests install the same program, user and packages: take turns.
    lock_path = ROOT / ".tmp" / "local-playbook.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([str(c) for c in cmd], cwd=installed["base"], env=installed["env"],
                              capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert recap(proc.stdout)["failed"] == 0

    # Every task came from the installed collection, none from this checkout.
    task_paths = re.findall(r"^task path: (\S+?):\d+$", proc.stdout, re.M)
    role_tasks = [p for p in task_paths if "/roles/worker/" in p]
    assert role_tasks and all(p.startswith(str(installed["path"])) for p in role_tasks), role_tasks[:5]

    # The installed program knows the collection's version (from MANIFEST.json: a built
    # collection carries no galaxy.yml).
    version = re.search(r"^version:\s*(\S+)", (ROOT / "galaxy.yml").read_text(), re.M).group(1)
    shown = subprocess.run(["/usr/local/bin/music-build", "--version"], capture_output=True, text=True)
    assert shown.stdout.split()[:2] == ["music-build", version], shown.stdout + shown.stderr

    # The role's own default profiles (no group_vars here), each output there and decodable.
    assert set(report(builds)["profiles"]) == {"flac", "phone", "car"}
    for profile, (suffix, reader, decode) in DECODERS.items():
        outputs = sorted((builds / profile).rglob(f"*{suffix}"))
        assert len(outputs) == len(made), (profile, outputs)
        for path in outputs:
            assert reader(path).info.length > 0.5, path
            subprocess.run([*decode, str(path), *([] if profile == "flac" else [os.devnull])], check=True,
                           capture_output=True, timeout=120)
