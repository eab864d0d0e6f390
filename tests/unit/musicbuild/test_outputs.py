"""The pure parts of data safety, directly: which outputs a build removes and when the guard
holds them back, what a file-system error says, how odd names are shown, which folders
overlap. The end-to-end side is tests/e2e/test_data_safety.py."""
from __future__ import annotations

import errno
import json
import os

import pytest
from hypothesis import given, strategies as st

from musicbuild import build, fsutil
from musicbuild.outputs import plan_pruning, prune
from musicbuild.scan import ScanResult


def result(seen=(), protected=()) -> ScanResult:
    r = ScanResult()
    r.seen.update(seen)
    r.protected.update(protected)
    return r


RECORD = {f"A/{n}.opus": f"A/{n}.flac" for n in range(4)}


def test_only_recorded_outputs_no_source_accounts_for_are_planned_for_removal():
    expected = {"A/0.opus", "A/1.opus", "A/2.opus"}
    plan = plan_pruning(dict(RECORD), expected, result(seen={"A/0.flac", "A/1.flac", "A/2.flac"}), 0.5, False)
    assert plan.remove == ["A/3.opus"] and plan.gone == 1 and plan.withheld is None


def test_more_than_the_share_gone_is_withheld_and_saying_how_many():
    plan = plan_pruning(dict(RECORD), {"A/0.opus"}, result(seen={"A/0.flac"}), 0.5, False)
    assert plan.gone == 3 and plan.withheld.startswith("3 of its 4 outputs would be removed")
    assert plan_pruning(dict(RECORD), {"A/0.opus"}, result(seen={"A/0.flac"}), 0.5, True).withheld is None
    # Exactly half is not more than half.
    assert plan_pruning(dict(RECORD), {"A/0.opus", "A/1.opus"}, result(), 0.5, False).withheld is None


def test_sources_still_there_or_unreadable_do_not_count_as_gone():
    # Every output renamed by a profile change: the sources are all there.
    moved = plan_pruning(dict(RECORD), set(), result(seen=set(RECORD.values())), 0.5, False)
    assert len(moved.remove) == 4 and moved.gone == 0 and moved.withheld is None
    # A folder that could not be read keeps its outputs: nothing planned at all.
    unreadable = plan_pruning(dict(RECORD), set(), result(protected={"A/"}), 0.5, False)
    assert unreadable.remove == [] and unreadable.withheld is None


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=60),
       st.floats(min_value=0.0, max_value=1.0))
def test_the_guard_trips_exactly_above_the_share(total, gone, share):
    gone = min(gone, total)
    record = {f"{n}.opus": f"{n}.flac" for n in range(total)}
    seen = {f"{n}.flac" for n in range(gone, total)}
    expected = {f"{n}.opus" for n in range(gone, total)}
    plan = plan_pruning(record, expected, result(seen=seen), share, False)
    assert plan.gone == gone
    assert (plan.withheld is not None) == (gone > share * total)


def test_prune_removes_recorded_files_and_their_emptied_folders_only(tmp_path):
    tree = tmp_path / "phone"
    (tree / "A").mkdir(parents=True)
    (tree / "B").mkdir()
    for rel in ("A/3.opus", "B/3.opus", "B/mine.txt"):
        (tree / rel).write_bytes(b"x")
    record = {"A/3.opus": "A/3.flac", "B/3.opus": "B/3.flac", "gone.opus": "gone.flac"}
    plan = plan_pruning(record, set(), result(), 1.0, False)
    assert prune(str(tree), plan, record) == 2
    assert record == {} and not (tree / "A").exists() and (tree / "B" / "mine.txt").read_bytes() == b"x"


def test_a_full_disk_names_the_filesystem_and_a_refused_rename_names_the_destination(tmp_path):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.opus"))
    said = fsutil.describe(full)
    assert said.startswith("disk full: no space left on the filesystem at /") and "x.opus" in said
    refused = OSError(errno.EACCES, os.strerror(errno.EACCES), "/b/.music/tmp/t.opus", None, "/b/phone/A/1.opus")
    assert fsutil.describe(refused) == "cannot put /b/phone/A/1.opus in place: Permission denied"
    assert fsutil.describe(FileNotFoundError(errno.ENOENT, "No such file or directory", "/s/1.flac")) == \
        "/s/1.flac: No such file or directory"


def test_names_that_are_not_utf8_read_plainly_and_keep_their_bytes():
    name = os.fsdecode(b"Caf\xe9/01 \xff.flac")
    assert fsutil.display(name) == "Caf\\xe9/01 \\xff.flac"
    fields = fsutil.exact(name)
    assert fields == {"source": "Caf\\xe9/01 \\xff.flac", "source_bytes_hex": b"Caf\xe9/01 \xff.flac".hex()}
    assert fsutil.exact("Ünïcödé/1.flac") == {"source": "Ünïcödé/1.flac"}
    json.dumps(fields, ensure_ascii=False).encode("utf-8")  # strict UTF-8: no lone surrogates


def test_folders_that_overlap_are_refused_naming_both(tmp_path):
    src = tmp_path / "library"
    (src / "A").mkdir(parents=True)
    (tmp_path / "link").symlink_to(src)
    for out, problem in [(src, "same folder"), (src / "out", "inside the sources"),
                         (tmp_path, "inside the builds"), (tmp_path / "link", "same folder"),
                         (tmp_path / "link" / "new" / "out", "inside the sources")]:
        with pytest.raises(build.BuildError, match=problem) as err:
            build.check_overlap(str(src), str(out))
        assert str(src) in str(err.value) and str(out) in str(err.value)
    build.check_overlap(str(src), str(tmp_path / "builds"))  # apart: no error
    build.check_overlap(str(src), str(tmp_path / "not-yet" / "builds"))
