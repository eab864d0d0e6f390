"""compile.yml with music_build_profiles (the AWX compile survey's "profiles to build")."""
from __future__ import annotations

import pytest

from compile_helpers import encoder_runs, files_under, recap, report, run_playbook, scratch
from music_devkit.library import make_library

pytestmark = pytest.mark.slow


def test_only_the_chosen_profiles_are_built_and_the_others_stay(world_readable_tmp):
    base = scratch(world_readable_tmp, "build-profiles")
    src, builds = base / "src", base / "builds"
    make_library(str(src), albums=1, tracks=2, seconds=1)
    common = ("-e", f"music_sources_dir={src}", "-e", f"music_builds_dir={builds}")

    run = run_playbook("compile.yml", *common, "-e", '{"music_build_profiles": ["phone"]}')
    assert run.returncode == 0, run.stdout[-3000:]
    assert set(report(builds)["profiles"]) == {"phone"}
    assert encoder_runs(builds, "phone") == 2 and encoder_runs(builds) == 2
    assert not (builds / "car").exists() and not (builds / "flac").exists()
    phone_before = files_under(builds / "phone")

    # A comma-separated string (the command line's -e name=value form) works too.
    run = run_playbook("compile.yml", *common, "-e", "music_build_profiles=car,flac")
    assert run.returncode == 0, run.stdout[-3000:]
    assert set(report(builds)["profiles"]) == {"car", "flac"}
    assert encoder_runs(builds, "car") == 2 and encoder_runs(builds, "flac") == 2
    assert encoder_runs(builds, "phone") == 0
    after = files_under(builds / "phone")
    assert {k: (v.st_ino, v.st_mtime_ns) for k, v in after.items()} == \
        {k: (v.st_ino, v.st_mtime_ns) for k, v in phone_before.items()}, "phone's outputs were touched"

    # Every profile again: phone's variant comes back and nothing is re-encoded.
    run = run_playbook("compile.yml", *common)
    assert run.returncode == 0, run.stdout[-3000:]
    assert set(report(builds)["profiles"]) == {"flac", "phone", "car"}
    assert encoder_runs(builds) == 0


def test_unknown_profile_name_is_refused_before_anything_runs(world_readable_tmp):
    base = scratch(world_readable_tmp, "build-profiles-bad")
    run = run_playbook("compile.yml", "-e", f"music_sources_dir={base}", "-e", f"music_builds_dir={base}/out",
                       "-e", "music_build_profiles=phone,tablet")
    assert run.returncode != 0
    assert "music_build_profiles names tablet" in run.stdout
    assert recap(run.stdout)["failed"] == 1 and not (base / "out").exists()
