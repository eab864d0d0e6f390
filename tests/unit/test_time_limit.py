"""A watched host's time limit, extended while its step progresses (issue 16, item 4).

The decision (module_utils/time_limit.py) as pure functions, and step_watch's re-arm as a
sequence of systemctl / systemd-run calls against a stand-in module (the failure paths real
systemd does not show on demand). tests/integration/test_time_limit_extension.py runs it
against real systemd.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.music.profiles.plugins.module_utils.time_limit import (
    advanced,
    duration,
    exec_argv,
    on_boot_value,
    parse_show,
    parse_timespan,
    plan_extension,
    progress_mark,
    timer_state,
)
from ansible_collections.music.profiles.plugins.modules import step_watch

# What systemd 252 (Debian 12) printed for the user data's timer, armed in a container.
SHOW = """LoadState=loaded
ActiveState=active
NextElapseUSecMonotonic=19min 19.505713s
TimersMonotonic={ OnBootUSec=3min ; next_elapse=19min 19.505713s }
"""
EXEC = ("ExecStart={ path=/usr/bin/systemctl ; argv[]=/usr/bin/systemctl poweroff ; ignore_errors=no ; "
        "start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }")


@pytest.mark.parametrize("text, seconds", [
    ("19min 19.505713s", 1159.505713), ("3min", 180), ("4h", 14400), ("1d 2h 3min 4s", 93784),
    ("500ms", 0.5), ("20us", 20e-6), ("1w", 604800), ("1month", 2629800), ("1y", 31557600),
    ("0", 0), ("infinity", None), ("", None), (None, None), ("3 min", None), ("n/a", None),
])
def test_parse_timespan(text, seconds):
    if seconds is None:
        assert parse_timespan(text) is None
    else:
        assert parse_timespan(text) == pytest.approx(seconds)


def test_timer_state_reads_the_time_left_and_the_boot_base():
    state = timer_state(parse_show(SHOW), now=980.538915)
    assert state["active"]
    assert state["elapses_in"] == pytest.approx(1159.505713 - 980.538915)
    # In a container OnBootSec counts from systemd's start (UserspaceTimestampMonotonic there: 979.505713).
    assert state["boot_base"] == pytest.approx(979.505713)
    # A timer re-armed with seconds keeps its base.
    rearmed = "LoadState=loaded\nActiveState=active\nNextElapseUSecMonotonic=36min 54.005713s\n" \
              "TimersMonotonic={ OnBootUSec=20min 34.500000s ; next_elapse=36min 54.005713s }\n"
    assert timer_state(parse_show(rearmed), now=1000)["boot_base"] == pytest.approx(979.505713)


def test_no_timer_or_another_form_is_not_one_to_extend():
    missing = timer_state(parse_show("LoadState=not-found\nActiveState=inactive\nNextElapseUSecMonotonic=infinity\n"), 5)
    assert missing == {"active": False, "elapses_in": None, "boot_base": None}
    assert timer_state({}, 5)["active"] is False  # systemctl failed (no systemd as PID 1)
    elapsed = "LoadState=loaded\nActiveState=active\nNextElapseUSecMonotonic=infinity\nTimersMonotonic=\n"
    assert timer_state(parse_show(elapsed), 5)["elapses_in"] is None
    on_active = ("LoadState=loaded\nActiveState=active\nNextElapseUSecMonotonic=21min 33.323088s\n"
                 "TimersMonotonic={ OnActiveUSec=5min ; next_elapse=21min 33.323088s }\n")
    state = timer_state(parse_show(on_active), 1000)
    assert state["elapses_in"] == pytest.approx(293.323088) and state["boot_base"] is None


def test_on_boot_value_is_counted_from_the_timer_s_base():
    assert on_boot_value(979.505713, 1000.0, 240) == pytest.approx(260.494, abs=1e-3)
    assert on_boot_value(0, 5000.25, 3600) == pytest.approx(8600.25)


def test_exec_argv():
    assert exec_argv(parse_show(EXEC)["ExecStart"]) == ["/usr/bin/systemctl", "poweroff"]
    assert exec_argv("") is None and exec_argv(None) is None
    assert exec_argv("{ path=/bin/sh ; argv[]=sh -c true ; }") is None  # not an absolute path
    two = "{ path=/a ; argv[]=/a ; } { path=/b ; argv[]=/b ; }"
    assert exec_argv(two) is None


def test_progress_marks_leave_out_the_time():
    build = {"phase": "building", "done": 120, "total": 480, "elapsed": 100, "eta": 300,
             "line": "120 of 480 outputs (25%); 1m40s elapsed, about 5m00s left"}
    later_same = dict(build, elapsed=115, eta=280, line="120 of 480 outputs (25%); 1m55s elapsed, about 4m40s left")
    assert progress_mark(build) == progress_mark(later_same)  # stuck: only the clock moved
    assert progress_mark(dict(build, done=121)) != progress_mark(build)
    scanning = {"phase": "scanning", "elapsed": 5, "line": "scanning the sources (0m05s elapsed)"}
    assert progress_mark(scanning) == progress_mark(dict(scanning, elapsed=20, line="scanning (0m20s elapsed)"))
    assert progress_mark({"line": "step 3 of 9"}) != progress_mark({"line": "step 4 of 9"})
    assert progress_mark({}) is None and progress_mark(None) is None and progress_mark({"elapsed": 3}) is None
    assert not advanced(None, progress_mark(build))  # the first round has nothing to compare with
    assert not advanced(progress_mark(build), None)
    assert advanced(progress_mark(build), progress_mark(dict(build, done=121)))


def test_plan_extension():
    hour = 3600
    assert plan_extension(1800, hour, True) == hour
    assert plan_extension(1800, hour, False) is None  # no progress: the limit stands
    assert plan_extension(None, hour, True) is None  # no timer
    assert plan_extension(4 * hour, hour, True) is None  # far away still
    assert plan_extension(hour - 60, hour, True) is None  # would gain a minute only: not every round
    assert plan_extension(0.9 * hour - 1, hour, True) == hour
    assert plan_extension(-20, hour, True) == hour  # due (a timer may elapse up to its accuracy late)
    assert plan_extension(30, 0, True) is None  # off


@given(elapses_in=st.floats(-600, 10 * 86400), extend=st.integers(0, 86400), progressed=st.booleans())
def test_plan_extension_only_ever_moves_the_limit_later_and_never_past_extend(elapses_in, extend, progressed):
    new = plan_extension(elapses_in, extend, progressed)
    if new is not None:
        assert progressed and extend > 0
        assert elapses_in < new == extend


def test_duration():
    assert duration(240) == "4m00s" and duration(3600) == "1h00m" and duration(-3) == "0m00s"


# --- step_watch's re-arm, against a stand-in module ------------------------------------------

class Failed(Exception):
    pass


class FakeModule:
    """Answers systemctl / systemd-run as systemd 252 did for the user data's timer."""

    def __init__(self, show=SHOW, check_mode=False, run_fails=0, stop_fails=False, bins=True):
        self.show, self.check_mode, self.run_fails, self.stop_fails, self.bins = show, check_mode, run_fails, stop_fails, bins
        self.calls, self.warnings = [], []

    def get_bin_path(self, name):
        return "/usr/bin/" + name if self.bins else None

    def warn(self, text):
        self.warnings.append(text)

    def fail_json(self, **kwargs):
        raise Failed(kwargs["msg"])

    def run_command(self, args, **_kwargs):
        self.calls.append(args)
        if args[1] == "show":
            return 0, EXEC if args[2].endswith(".service") else self.show, ""
        if args[1] == "stop":
            return (1, "", "Access denied") if self.stop_fails else (0, "", "")
        if args[0].endswith("systemd-run"):
            if self.run_fails:
                self.run_fails -= 1
                return 1, "", "Unit music-time-limit.timer was already loaded"
            return 0, "", ""
        raise AssertionError(args)


@pytest.fixture
def at_980(monkeypatch):
    """The module's clock: 980.54 s of CLOCK_MONOTONIC, the timer elapses in about 179 s."""
    monkeypatch.setattr(step_watch.time, "monotonic", lambda: 980.538915)


def rounds(module, job, *progress, extend=4, unit="music-time-limit"):
    job.mkdir(exist_ok=True)
    return [step_watch.watch_time_limit(module, str(job), p, extend, unit) for p in progress]


def test_progress_re_arms_the_timer_with_the_same_command_and_unit(tmp_path, at_980):
    module = FakeModule()
    (first, note1, re1), (second, note2, re2) = rounds(module, tmp_path, {"done": 1}, {"done": 2}, unit="music-time-limit.timer")
    assert (first["found"], first["progressed"], first["extended"], re1, note1) == (True, False, False, False, "")
    assert first["elapses_in"] == 178
    assert (second["progressed"], second["extended"], second["elapses_in"], re2) == (True, True, 240, True)
    assert note2 == "; time limit extended: powers off in 4m00s unless extended again"
    stop, run = module.calls[-2:]
    assert stop == ["/usr/bin/systemctl", "stop", "music-time-limit.timer"]
    # 980.54 + 240 - 979.51 from the timer's own base: 241.033 s after its boot.
    assert run == ["/usr/bin/systemd-run", "--quiet", "--unit=music-time-limit", "--on-boot=241.033s",
                   "/usr/bin/systemctl", "poweroff"]
    assert json.loads((tmp_path / step_watch.MARK).read_text()) == {"mark": progress_mark({"done": 2})}


def test_stuck_progress_or_no_timer_or_off_change_nothing(tmp_path, at_980):
    module = FakeModule()
    results = rounds(module, tmp_path, {"done": 1, "elapsed": 1}, {"done": 1, "elapsed": 16}, {"done": 1, "elapsed": 31})
    assert [r[0]["extended"] for r in results] == [False, False, False]
    assert all(call[1] == "show" for call in module.calls)
    for nothing in (FakeModule(show="LoadState=not-found\nActiveState=inactive\n"), FakeModule(bins=False)):
        result = rounds(nothing, tmp_path / "x", {"done": 1}, {"done": 2})[-1]
        assert result == ({"found": False, "progressed": True, "extended": False, "elapses_in": None}, "", False)
        assert all(call[1] == "show" for call in nothing.calls)
    off = FakeModule()
    assert rounds(off, tmp_path / "y", {"done": 1}, {"done": 2}, extend=0)[-1][0] == step_watch.NO_LIMIT
    assert off.calls == [] and not (tmp_path / "y" / step_watch.MARK).exists()


def test_check_mode_says_it_would_and_changes_nothing(tmp_path, at_980):
    (tmp_path / step_watch.MARK).write_text(json.dumps({"mark": progress_mark({"done": 1})}))
    module = FakeModule(check_mode=True)
    limit, note, rearmed = rounds(module, tmp_path, {"done": 2})[0]
    assert (limit["progressed"], limit["extended"], rearmed) == (True, False, True)
    assert note == "; time limit would be extended to 4m00s from now (check mode)"
    assert all(call[1] == "show" for call in module.calls)
    assert json.loads((tmp_path / step_watch.MARK).read_text()) == {"mark": progress_mark({"done": 1})}


def test_a_failed_re_arm_puts_the_old_time_back_and_a_lost_limit_fails(tmp_path, at_980):
    module = FakeModule(run_fails=1)
    limit, note, rearmed = rounds(module, tmp_path, {"done": 1}, {"done": 2})[-1]
    assert (limit["extended"], rearmed, note) == (False, False, "")
    assert module.calls[-1][3] == "--on-boot=180.000s"  # its old time, as the user data armed it
    assert "could not re-arm" in module.warnings[0]

    lost = FakeModule(run_fails=2)
    with pytest.raises(Failed, match="the host has no time limit now"):
        rounds(lost, tmp_path / "lost", {"done": 1}, {"done": 2})

    denied = FakeModule(stop_fails=True)
    assert rounds(denied, tmp_path / "denied", {"done": 1}, {"done": 2})[-1][0]["extended"] is False
    assert "cannot stop" in denied.warnings[0] and not any(c[0].endswith("systemd-run") for c in denied.calls)
