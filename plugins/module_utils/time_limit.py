# -*- coding: utf-8 -*-
"""A watched host's time limit, extended while its long step makes progress: pure logic.

No Ansible here: the `step_watch` module runs systemctl and systemd-run; this file reads what
they print and decides. Unit-tested directly (tests/unit/test_time_limit.py).

The time limit is the transient systemd timer the launch template's user data arms at boot
(roles/aws_provision/templates/user_data.yml.j2):

    systemd-run --unit=music-time-limit --on-boot=240min /usr/bin/systemctl poweroff

systemd has no way to change a transient timer in place (`systemctl set-property` refuses
timer settings), so a timer is re-armed: stopped, then started again under the same name with
the same command and a later `--on-boot`. Boot-relative, as the user data arms it, and never
`--on-active`: systemd re-bases an OnActiveSec timer on every `daemon-reload`, which would
push the limit later each time, while an OnBootSec timer keeps its time. On a machine
`--on-boot` counts from boot (CLOCK_MONOTONIC's zero); in a container systemd counts it from
its own start. Either way the timer's own `TimersMonotonic` tells the base: its next elapse
minus its OnBootUSec.
"""
from __future__ import annotations

import json
import re

# What `systemctl show` prints for a time span (format_timespan): "19min 19.505713s", "4h", "infinity".
_SPAN_UNITS = {
    "y": 31557600.0, "month": 2629800.0, "w": 604800.0, "d": 86400.0, "h": 3600.0,
    "min": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6,
}
_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)(y|month|w|d|h|min|ms|us|s)")
# Keys of a progress object that only say how much time has gone by, not how far the step got.
TIME_KEYS = frozenset(("line", "elapsed", "eta", "started"))
# Re-arm only when that gains at least this share of the extension: a watched host is re-armed
# about ten times per extension, not every round of the watch.
MIN_GAIN_SHARE = 0.1


def parse_timespan(text):
    """Seconds in a span as `systemctl show` prints it; None for "infinity", "" or anything else."""
    text = (text or "").strip()
    if text in ("0", "0s"):
        return 0.0
    parts = text.split()
    if not parts:
        return None
    total = 0.0
    for part in parts:
        match = _SPAN_PART.fullmatch(part)
        if not match:
            return None
        total += float(match.group(1)) * _SPAN_UNITS[match.group(2)]
    return total


def parse_show(text):
    """`systemctl show -p ...` output as a dict (a value may hold "=")."""
    result = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result


def timer_state(show, now):
    """What `systemctl show UNIT.timer -p LoadState -p ActiveState -p NextElapseUSecMonotonic -p
    TimersMonotonic` says, at `now` (CLOCK_MONOTONIC seconds, as systemd counts):

    - ``active``: the timer exists and waits to elapse;
    - ``elapses_in``: seconds from `now` to its next elapse (None when unknown);
    - ``boot_base``: the monotonic time its OnBootSec counts from (None when it is not armed
      with OnBootSec, the only form re-armed here).
    """
    active = show.get("LoadState") == "loaded" and show.get("ActiveState") == "active"
    state = {"active": active, "elapses_in": None, "boot_base": None}
    if not active:
        return state
    elapse = parse_timespan(show.get("NextElapseUSecMonotonic"))
    if elapse is None or elapse <= 0:
        return state
    state["elapses_in"] = elapse - now
    # "{ OnBootUSec=3min ; next_elapse=19min 19.505713s }", one such group per setting.
    groups = re.findall(r"\{([^}]*)\}", show.get("TimersMonotonic", ""))
    if len(groups) == 1:
        fields = parse_show(groups[0].replace(";", "\n"))
        on_boot = parse_timespan(fields.get("OnBootUSec"))
        next_elapse = parse_timespan(fields.get("next_elapse"))
        if on_boot is not None and next_elapse is not None:
            state["boot_base"] = next_elapse - on_boot
    return state


def exec_argv(exec_start):
    """The command of a unit's ExecStart as `systemctl show -p ExecStart` prints it
    ("{ path=/usr/bin/systemctl ; argv[]=/usr/bin/systemctl poweroff ; ... }"); None when it
    is not one plain command (the caller then uses its default)."""
    groups = re.findall(r"\{([^}]*)\}", exec_start or "")
    if len(groups) != 1:
        return None
    match = re.search(r"(?:^|;)\s*argv\[\]=([^;]*)", groups[0])
    if not match:
        return None
    argv = match.group(1).split()
    return argv if argv and argv[0].startswith("/") and not any('"' in a or "'" in a for a in argv) else None


def progress_mark(progress):
    """What of a progress object shows how far the step got: the object without the keys that
    only count time (TIME_KEYS - a line's "1m40s elapsed" changes every round, even for a stuck
    step), as a string to compare between rounds; its line when it has nothing else; None when
    there is no progress at all."""
    if not isinstance(progress, dict) or not progress:
        return None
    rest = {k: v for k, v in progress.items() if k not in TIME_KEYS}
    if rest:
        return json.dumps(rest, sort_keys=True, default=str)
    line = progress.get("line")
    return "line: %s" % line if line else None


def advanced(previous_mark, mark):
    """The step made progress since the last round: both rounds had progress, and it differs."""
    return previous_mark is not None and mark is not None and previous_mark != mark


def plan_extension(elapses_in, extend, progressed):
    """Seconds from now the time limit should elapse at, or None to leave it as it is.

    Only while the step progresses (a stuck step still meets its limit), only for a timer
    that elapses within `extend` seconds, and only when re-arming gains at least
    MIN_GAIN_SHARE of `extend` (so not every round). The new elapse is `extend` from now.
    """
    if extend <= 0 or not progressed or elapses_in is None:
        return None
    if elapses_in >= extend or extend - elapses_in < MIN_GAIN_SHARE * extend:
        return None
    return extend


def on_boot_value(boot_base, now, elapses_in):
    """The `--on-boot` seconds (from the timer's base) that make it elapse `elapses_in` from `now`."""
    return round(now + elapses_in - boot_base, 3)


def duration(seconds):
    """Like the progress lines: "4m05s", "1h00m"."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "%dh%02dm" % (hours, minutes) if hours else "%dm%02ds" % (minutes, secs)
