"""The volmgr's sync keeps a progress file (files and bytes synced, the time left) that the
role's watch prints (music.profiles.step_watch); against moto's S3 and a real directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROG = Path(__file__).resolve().parents[2] / "roles/volmgr/files/music-s3-sync"


def test_the_sync_writes_files_and_bytes_synced(moto_server, tmp_path):
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="progress", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    files = {f"Artist/Album/{n:02d} Track.flac": os.urandom(100_000 + n) for n in range(1, 13)}
    for key, body in files.items():
        s3.put_object(Bucket="progress", Key=key, Body=body)
    dest, progress = tmp_path / "sources", tmp_path / "run" / "progress.json"
    dest.mkdir()

    def sync(*extra):
        return subprocess.run([sys.executable, str(PROG), "--bucket", "progress", "--dest", str(dest), *extra],
                              env=moto_server.env(), capture_output=True, text=True, timeout=120)

    done = sync("--progress", str(progress))
    assert done.returncode == 0, done.stderr
    state = json.loads(progress.read_text())
    size = sum(len(b) for b in files.values())
    assert (state["phase"], state["files_done"], state["files_total"]) == ("done", 12, 12)
    assert state["bytes_done"] == state["bytes_total"] == size
    assert state["line"].startswith(f"12 of 12 files, {size / 1e6:.1f} MB downloaded, 0 deleted, 0 unchanged in ")

    again = sync("--progress", str(progress))
    assert again.returncode == 0, again.stderr
    assert json.loads(progress.read_text())["line"].startswith("0 of 0 files, 0.0 MB downloaded, 0 deleted, 12 unchanged")

    # --check (the play's --check) writes nothing, progress included.
    progress.unlink()
    assert sync("--check", "--progress", str(progress)).returncode == 0
    assert not progress.exists()


def test_the_progress_line_while_syncing():
    """The line a watch round prints half-way: files and bytes of the total, elapsed, time left."""
    import importlib.machinery
    import importlib.util
    import time

    loader = importlib.machinery.SourceFileLoader("music_s3_sync", str(PROG))
    spec = importlib.util.spec_from_loader("music_s3_sync", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    p = mod.Progress(None, "s3://b/")
    p.started = time.time() - 30
    p.update(phase="syncing", files_total=40, bytes_total=400_000_000)
    p.update(files_done=10, bytes_done=100_000_000)
    assert p.line() == "10 of 40 files, 100.0 MB of 400.0 MB (25%); 0m30s elapsed, about 1m30s left"
