"""musicbuild/progress.py: how far a running build has got, read from tup's log and the index."""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles/worker/files/music-build"))
from musicbuild import progress  # noqa: E402

LOG = """[ tup ] [0.001s] Scanning filesystem...
 ~ 8% 11) [0.002s] car/index/2000_Album-1448158bb4
[ tup ] [0.031s] Executing Commands...
 ~ 5% 6) [0.095s] car/index/2000_Album-1448158bb4: car: 02_Track_2-04c741fe9d
 ~10% 5) [0.099s] flac/index/2000_Album-1448158bb4: flac: copy cover-dcd1348cbf
some output a command wrote
* ~15% 4) phone/index/2000_Album-1448158bb4: phone: 01_Track_1-507322897f
music-encode: phone: 01 Track 1.flac: FLAC decode failed
 *** tup messages ***
"""


def make_build(tmp_path: Path, log: str, when: float) -> Path:
    music = tmp_path / ".music"
    folder = music / "tup" / "index" / "2000_Album-1448158bb4"
    folder.mkdir(parents=True)
    for profile in ("car", "flac", "phone"):
        (music / "tup" / profile).mkdir()
        (music / "tup" / profile / "tup.config").write_text("")
    names = [f"{k}.{p}.track" for k in ("01_Track_1-507322897f", "02_Track_2-04c741fe9d") for p in ("car", "flac", "phone")]
    names += ["01_Track_1-507322897f.audio", "01_Track_1-507322897f.tags", "02_Track_2-04c741fe9d.audio",
              "02_Track_2-04c741fe9d.tags", "cover-dcd1348cbf.flac.copy"]
    for name in names:
        (folder / name).write_text("")
        os.utime(folder / name, (when, when))
    (music / "lock").write_text("")
    (music / "build.log").write_text(log)
    for name in ("lock", "build.log"):
        os.utime(music / name, (when, when))
    return tmp_path


def test_parse_log_counts_commands_per_profile_after_the_parse_phase():
    parsed = progress.parse_log(LOG.splitlines())
    assert parsed == {"executing": True, "total": 7, "done": {"car": 1, "flac": 1, "phone": 1}}


def test_snapshot_gives_each_profile_its_total_and_the_time_left(tmp_path):
    builds = make_build(tmp_path, LOG, when=1000.0)
    snap = progress.snapshot(str(builds), now=1030.0)
    assert snap["profiles"] == {"car": {"done": 1, "total": 2}, "flac": {"done": 1, "total": 3},
                                "phone": {"done": 1, "total": 1 + 1}}
    assert (snap["done"], snap["total"], snap["eta"]) == (3, 7, 40)
    assert snap["line"] == "3 of 7 outputs (42%): car 1/2, flac 1/3, phone 1/2; 0m30s elapsed, about 0m40s left"


def test_snapshot_without_matching_plan_gives_counts_done_only(tmp_path):
    builds = make_build(tmp_path, LOG.replace(" 6) [0.095s]", " 9) [0.095s]"), when=1000.0)
    snap = progress.snapshot(str(builds), now=1030.0)
    assert snap["total"] == 10
    assert snap["line"].startswith("3 of 10 outputs (30%): car 1, flac 1, phone 1; 0m30s elapsed, about 1m10s left")


def test_snapshot_before_the_build_took_its_lock_or_ran_tup(tmp_path):
    builds = make_build(tmp_path, LOG, when=1000.0)
    assert progress.snapshot(str(builds), now=1030.0, started=1020.0)["phase"] == "starting"
    os.utime(builds / ".music" / "lock", (1021.0, 1021.0))  # this build's lock, last build's log
    snap = progress.snapshot(str(builds), now=1030.0, started=1020.0)
    assert snap["phase"] == "scanning" and snap["line"].startswith("scanning the sources")
