"""README.md's "Add a profile setting", followed on a scratch copy of the repository.

The copy gets an Opus `complexity` (0-10, default 10, `opusenc --comp N`) the way the guide
says: its entry in the codec table, its row in the table's test, then the one command that
regenerates the reference. Nothing else is edited. Then, with the copy's own code (its
launchers, or Python started in its folders, never this checkout's): the table's tests pass,
profiles are checked and rendered with the setting, tup runs the copy's rules, and the copy's
music-encode makes a real Opus file with `opusenc --comp`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mutagen
import pytest
from mutagen.oggopus import OggOpus

from music_devkit.library import synth_flac, tag_track

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TABLE = "plugins/module_utils/music_profile.py"
TABLE_TEST = "tests/unit/test_codecs.py"
PROGRAM = "roles/worker/files/music-build"

# Step 1 of the guide: the setting in its codec's "settings" of the codec table.
ENTRY = '''            "complexity": {
                "type": "int", "range": (0, 10), "default": 10, "encoder_default": 10,
                "args": ("--comp", "{}"), "doc": "(higher: slower to encode, slightly better audio)",
            },
'''
# Step 3: its row in the table's test.
ROW = '''    ("opus", "complexity", (0, 10), 10, ("--comp", "{}")),\n'''

CHECKS = r'''
import json, os
from musicbuild import profile as mp
out = {"module": os.path.realpath(mp.__file__),
       "default": mp.normalize_profile("phone", {"codec": "opus"}).get("complexity"),
       "accepted": [mp.normalize_profile("phone", {"codec": "opus", "complexity": v})["complexity"] for v in (0, 10)],
       "refused": {}}
for codec, value in (("opus", 11), ("opus", -1), ("mp3", 5)):
    try:
        mp.normalize_profile("phone", {"codec": codec, "complexity": value})
    except mp.ProfileError as exc:
        out["refused"][f"{codec} {value}"] = [exc.profile, exc.field, str(exc)]
out["config"] = mp.render_tup_config("phone", {"codec": "opus", "bitrate": 96, "complexity": 3, "art": False})
print(json.dumps(out))
'''


def git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=scratch", "-c", "user.email=scratch@example.invalid", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def scratch_copy(dest: Path) -> None:
    """The repository's tracked files as they are in this working tree, committed in a new repository."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in names.decode().split("\0"):
        src = ROOT / name
        if not name or not (src.exists() or src.is_symlink()):
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "scratch copy")


def insert_after(path: Path, anchor: str, text: str) -> None:
    body = path.read_text(encoding="utf-8")
    assert body.count(anchor) == 1, f"{path}: the anchor {anchor!r} is not there once"
    path.write_text(body.replace(anchor, anchor + text), encoding="utf-8")


def add_opus_setting(path: Path, entry: str) -> None:
    """`entry` after the last setting of opus's "settings" in the codec table."""
    table = path.read_text(encoding="utf-8")
    settings = table.index('"settings": {', table.index('    "opus": {'))
    end = table.index("\n        },\n", settings) + 1  # the line closing the settings (8 spaces)
    path.write_text(table[:end] + entry + table[end:], encoding="utf-8")


def wrapper(folder: Path, name: str, target: str, log: Path) -> None:
    """`name` on the PATH: logs its arguments, then runs `target`."""
    path = folder / name
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {target} "$@"\n')
    path.chmod(0o755)


def test_adding_opus_complexity_by_the_guide(tmp_path):
    copy = tmp_path / "repo"
    scratch_copy(copy)
    readme_here = (ROOT / "README.md").read_bytes()

    # The guide: the table entry, the table's test, the one command.
    table = copy / TABLE
    add_opus_setting(table, ENTRY)
    insert_after(copy / TABLE_TEST, '    ("opus", "bitrate", (6, 510), 128, ("--bitrate", "{}")),\n', ROW)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    regen = subprocess.run([sys.executable, "-m", "music_devkit.profile_docs"], cwd=copy, env=env,
                           capture_output=True, text=True)
    assert regen.returncode == 0, regen.stderr
    assert f"wrote {copy / 'README.md'}" in regen.stdout
    assert "| `complexity` | opus | 0-10 (higher: slower to encode, slightly better audio) | 10 | `--comp N` |" \
        in (copy / "README.md").read_text(encoding="utf-8")
    assert (ROOT / "README.md").read_bytes() == readme_here, "the command wrote this checkout's README"

    # The copy's table test (and the digest pins: complexity 10 is opusenc's own default), run
    # with the copy's package: Python started in the copy's program folder imports it from there.
    program = copy / PROGRAM
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-v",
                            str(copy / TABLE_TEST), str(copy / "tests/unit/musicbuild/test_digest.py")],
                           cwd=program, env=env, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "complexity" in tests.stdout and " failed" not in tests.stdout

    # Validation and tup.config, with the copy's code.
    run = subprocess.run([sys.executable, "-c", CHECKS], cwd=program, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    checked = json.loads(run.stdout)
    assert checked["module"] == str(table.resolve())
    assert checked["default"] == 10 and checked["accepted"] == [0, 10]
    for case, words in (("opus 11", "11 is out of range (0-10)"), ("opus -1", "-1 is out of range (0-10)"),
                        ("mp3 5", "does not apply to codec mp3")):
        profile, field, message = checked["refused"][case]
        assert (profile, field) == ("phone", "complexity")
        assert message.startswith("profile 'phone', field 'complexity': ") and words in message
    config = checked["config"]
    assert "CONFIG_COMPLEXITY=3\n" in config and "CONFIG_SETTINGS=bitrate,complexity\n" in config

    # tup runs the copy's rules on one track; the copy's music-encode encodes it.
    tup_root = tmp_path / "tup"
    index = tup_root / "index" / "album"
    index.mkdir(parents=True)
    (tup_root / "phone").mkdir()
    (tup_root / "phone" / "tup.config").write_text(config)
    shutil.copy(program / "musicbuild" / "Tupdefault.lua", tup_root / "Tupdefault.lua")
    for folder in (tup_root, tup_root / "index"):
        (folder / "Tupfile.lua").write_text("-- nothing to build here\n")
    src = tmp_path / "src" / "01 One.flac"
    src.parent.mkdir()
    synth_flac(str(src), 1.0, 7)
    tag_track(str(src), {"TITLE": "One", "ARTIST": "A"})
    music = tmp_path / "builds" / ".music"
    music.mkdir(parents=True)
    dest = tmp_path / "builds" / "phone" / "01 One.opus"
    fingerprint = mutagen.File(src).info
    (index / "k.audio").write_text(json.dumps({"md5": f"{fingerprint.md5_signature:032x}", "samples": fingerprint.total_samples}))
    (index / "k.tags").write_text(json.dumps({"tags": [["TITLE", "One"], ["ARTIST", "A"]], "art": None}))
    (index / "k.phone.track").write_text(json.dumps({"source": "01 One.flac", "src": str(src), "dest": str(dest),
                                                     "cover": None, "music": str(music)}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper(bin_dir, "music-encode", str(program / "music-encode"), tmp_path / "music-encode.log")
    wrapper(bin_dir, "opusenc", shutil.which("opusenc"), tmp_path / "opusenc.log")
    subprocess.run(["tup", "init"], cwd=tup_root, check=True, capture_output=True)
    built = subprocess.run(["tup"], cwd=tup_root, capture_output=True, text=True,
                           env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)})
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]

    command = (tmp_path / "music-encode.log").read_text().split()
    assert command[:7] == ["track", "--profile", "phone", "--codec", "opus", "--bitrate", "96"]
    assert command[7:9] == ["--complexity", "3"]
    encoder = (tmp_path / "opusenc.log").read_text().split()
    assert encoder[:6] == ["--quiet", "--bitrate", "96", "--comp", "3", "-"]
    assert (tup_root / "phone" / "index" / "album" / "k.phone.done").read_text().startswith("encoded ")
    opus = OggOpus(dest)
    assert opus.info.channels == 2 and abs(opus.info.length - 1.0) < 0.05 and opus.tags["TITLE"] == ["One"]
    assert subprocess.run(["opusinfo", str(dest)], capture_output=True).returncode == 0

    # Only the table, its test and the README changed in the copy.
    status = git(copy, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(status) == sorted(f" M {p}" for p in (TABLE, TABLE_TEST, "README.md")), status
