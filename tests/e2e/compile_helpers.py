"""Helpers for the end-to-end compile tests: run the playbooks, read the build's journal."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ODD_NAMES = [
    "Loud.FLAC",
    "-leading dash.flac",
    "it's \"quoted\".flac",
    "$HOME 100% #1 & more; `echo hi`.flac",
    "ünïcødé 日本語.flac",
    "a:b?c*d<e>f|g.flac",
    "Same.flac",
    "same.flac",
    "L" * 120 + ".flac",
]
BAD = {
    "Odd Names/01 truncated.flac": "truncated or damaged audio",
    "Odd Names/02 empty.flac": "empty file (0 bytes)",
    "Odd Names/03 text.flac": "not a FLAC file",
}


def scratch(base: Path, name: str) -> Path:
    path = base / f"{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o755)
    return path


def add_odd_and_bad_files(src: Path) -> None:
    """Names that break naive shell quoting or FAT32, and three unusable 'FLAC' files."""
    good = next(src.rglob("*.flac"))
    odd = src / "Odd Names"
    odd.mkdir()
    for name in ODD_NAMES:
        shutil.copyfile(good, odd / name)
    data = good.read_bytes()
    (odd / "01 truncated.flac").write_bytes(data[: len(data) // 2])
    (odd / "02 empty.flac").write_bytes(b"")
    (odd / "03 text.flac").write_text("this is a text file, not audio\n")


def run_playbook(playbook: str, *extra: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run a playbook against this machine. Runs from parallel test workers take turns: they
    install the same packages, user and program."""
    lock_path = ROOT / ".tmp" / "local-playbook.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_playbook(playbook, *extra, check=check)


def _run_playbook(playbook: str, *extra: str, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1", PATH=f"{ROOT / '.venv/bin'}:{os.environ['PATH']}")
    cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(ROOT / "inventory/local.yml"),
           str(ROOT / "playbooks" / playbook), *extra]
    if check:
        cmd += ["--check", "--diff"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def recap(output: str) -> dict[str, int]:
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def journal(builds: Path) -> list[dict]:
    path = builds / ".music" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def encoder_runs(builds: Path, profile: str | None = None) -> int:
    return sum(1 for e in journal(builds) if e["event"] == "encoder" and profile in (None, e["profile"]))


def report(builds: Path) -> dict:
    return json.loads((builds / "report.json").read_text())


def music_build(sources: Path, builds: Path, jobs: int = 2, only: str = "", **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run the installed build program as the build user, as the role does."""
    cmd = ["runuser", "-u", "music", "--", "/usr/local/bin/music-build", "--sources", str(sources),
           "--builds", str(builds), "--jobs", str(jobs), "--only", only]
    if popen:
        return subprocess.Popen(cmd, **popen)
    return subprocess.run(cmd, capture_output=True, text=True)


def files_under(tree: Path) -> dict[str, os.stat_result]:
    return {str(p.relative_to(tree)): p.stat() for p in sorted(tree.rglob("*")) if p.is_file()}
