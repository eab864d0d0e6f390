#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the music.profiles collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a long step detached on the host and watch it in short rounds, saying how far it has got."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: step_watch
short_description: Run a long step detached and watch it in short rounds, reporting its progress
description:
  - Runs a long step (a sync, a build) on the host without holding the connection, one short
    round per call. The first round (O(argv)) starts the command detached (in a session of
    its own, outliving the call) and waits for it at most O(wait) seconds; each later round
    (O(job), the RV(job) the first returned) waits again at most O(wait) seconds. A round
    returns as soon as the step has finished, with its exit status and output.
  - While the step runs, each round reports its progress as one line in RV(msg), read from a
    file the step writes (O(progress_file)) or printed by a command (O(progress_command)).
  - Meant to run as a loop of rounds (C(loop) over a range, C(loop_control.break_when) on
    RV(finished), C(loop_control.label) showing RV(msg)) - no command outlasts a connection
    that ends long commands (the C(amazon.aws.aws_ssm) connection's
    C(ansible_aws_ssm_timeout)), each round is one line of the play's own output (one job
    event in AWX) with no callback plugin involved, and a step that ends within the first
    round costs one module run, as a blocking command would.
  - A step running longer than O(timeout) is sent SIGTERM (its whole process group), then
    SIGKILL after O(kill_grace) seconds, and reported RV(timed_out).
  - The step's own success is not judged here (the caller does, from RV(exit_status)); this module
    fails only when it cannot start or find the step (or, see O(time_limit_extend), when re-arming
    the host's time limit left it without one).
  - With O(time_limit_extend), a host's time limit - the transient systemd timer O(time_limit_unit)
    that powers it off, armed at boot by the launch template's user data - is pushed later while
    the step makes progress; see O(time_limit_extend).
version_added: "1.1.0"
options:
  argv:
    description:
      - The command to start detached (first round). Mutually exclusive with O(job).
    type: list
    elements: str
  job:
    description:
      - The step to watch (later rounds) - the RV(job) folder the first round returned.
    type: path
  job_root:
    description: Where each step's folder (its output, exit status and process id) is kept.
    type: path
    default: ~/.music-steps
  wait:
    description:
      - At most this many seconds in this round. Keep it well under the connection's per-command
        limit (C(ansible_aws_ssm_timeout), 60 s by default).
    type: int
    default: 15
  timeout:
    description: The longest the step may run (seconds), from its start; then it is ended.
    type: int
    default: 86400
  kill_grace:
    description: Seconds between SIGTERM and SIGKILL when the step is ended for its time.
    type: int
    default: 60
  name:
    description: What the step is called at the start of RV(msg) (for example C(build) or C(sync)).
    type: str
    default: step
  progress_file:
    description:
      - A JSON file the step keeps up to date; its C(line) key is the progress line. Read
        while the step runs and once more when it has finished.
      - A missing or unreadable file is no progress yet, not an error.
    type: path
  progress_command:
    description:
      - A command (argument list) that prints the step's progress as one JSON object with a
        C(line) key. Run only while the step runs, with the environment variable
        C(MUSIC_STEP_STARTED) set to when it started (epoch seconds).
    type: list
    elements: str
  output_limit:
    description: Return at most the last this many characters of the step's stdout and of its stderr.
    type: int
    default: 100000
  cleanup:
    description: Remove the step's folder once it has finished and its result was returned.
    type: bool
    default: true
  time_limit_extend:
    description:
      - Minutes; V(0) (the default) leaves the time limit alone.
      - In a round where the step still runs, has made progress since the previous round, and
        the timer O(time_limit_unit) would elapse within this many minutes, the timer is
        re-armed to elapse this many minutes from now (when that gains at least a tenth of
        them, so a host is not re-armed every round). A step whose progress stands still gets
        no more time and meets its limit.
      - Progress is the progress object (O(progress_file), O(progress_command)) differing from
        the previous round's, leaving out the keys that only count time (C(line), C(elapsed),
        C(eta), C(started)); an object with nothing else is compared by its C(line). A step
        without progress is never extended. The last round's progress is kept in the step's
        folder.
      - The timer is re-armed as the user data arms it (C(systemd-run --unit=UNIT --on-boot=...),
        the same command; boot-relative, so a C(daemon-reload) does not move it), by stopping it
        and starting it again (systemd cannot change a transient timer in place). Only a timer
        armed with C(--on-boot) is re-armed. When arming it later fails, its old time is armed
        again (a warning); when that fails too, the round fails - the host has no limit then.
      - With no such active timer on the host (a local run, a machine without systemd) nothing
        happens, and no error.
    type: int
    default: 0
  time_limit_unit:
    description: The name of the time limit's timer and service (C(systemd-run --unit)), without a suffix.
    type: str
    default: music-time-limit
notes:
  - In check mode a first round starts nothing (set C(check_mode=false) on the task for a
    step that has a check mode of its own, such as a sync with C(--check)); later rounds only read,
    and the time limit is not extended (RV(time_limit.extended) stays false, RV(msg) says it would be).
author:
  - music.profiles contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Sync the bucket (started detached, watched in short rounds that print its progress)
  music.profiles.step_watch:
    argv: "{{ omit if item > 0 else ['/usr/local/bin/music-s3-sync', '--bucket', 'music-sources',
                                    '--dest', '/srv/music/sources', '--progress', '/run/sync.json'] }}"
    job: "{{ sync_watch.job if item > 0 else omit }}"
    name: sync
    wait: 15
    timeout: 14400
    progress_file: /run/sync.json
    time_limit_extend: 60  # while files keep arriving, the host's time limit stays an hour away
  loop: "{{ range((14400 / 15) | round(0, 'ceil') | int + 3) | list }}"
  loop_control:
    label: "{{ sync_watch.msg | default('') }}"
    break_when: sync_watch.finished | default(true)
  register: sync_watch

- name: Fail when the sync failed
  ansible.builtin.fail:
    msg: "{{ (sync_watch.results | last).stderr }}"
  when: (sync_watch.results | last).exit_status != 0
"""

RETURN = r"""
finished:
  description: Whether the step has ended (or was ended for its time).
  returned: always
  type: bool
timed_out:
  description: The step ran longer than O(timeout) and was ended.
  returned: always
  type: bool
job:
  description: The step's folder, to pass as O(job) to the next round.
  returned: always
  type: str
msg:
  description: One line - the step's name, then its progress line or how it ended.
  returned: always
  type: str
  sample: "build: 120 of 480 outputs (25%): car 40/160, flac 42/160, phone 38/160; 1m40s elapsed, about 5m00s left"
progress:
  description: The progress object the step wrote or the command printed (empty when none yet).
  returned: always
  type: dict
elapsed:
  description: Seconds since the step was started.
  returned: always
  type: int
exit_status:
  description:
    - The step's exit status, once it has finished (negative - ended by that signal; null - it could not start).
    - Not named C(rc), which would make Ansible fail the round itself; the caller judges it.
  returned: when finished
  type: int
stdout:
  description: The end of the step's standard output (O(output_limit)), once it has finished.
  returned: when finished
  type: str
stderr:
  description: The end of the step's standard error (O(output_limit)), once it has finished.
  returned: when finished
  type: str
time_limit:
  description: The host's time limit (O(time_limit_unit)) in this round; looked at only while the step runs and O(time_limit_extend) is set.
  returned: always
  type: dict
  contains:
    found:
      description: An active timer of that name, armed with C(--on-boot), is on the host.
      type: bool
    progressed:
      description: The step's progress differs from the previous round's.
      type: bool
    extended:
      description: The timer was re-armed to elapse O(time_limit_extend) minutes from now.
      type: bool
    elapses_in:
      description: Seconds until the timer elapses (after an extension, the new time); null when there is no timer.
      type: int
  sample: {"found": true, "progressed": true, "extended": true, "elapses_in": 3600}
"""

import json
import os
import shutil
import signal
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.music.profiles.plugins.module_utils.time_limit import (
    advanced, duration, exec_argv, on_boot_value, parse_show, plan_extension, progress_mark, timer_state)

POLL = 0.2  # the longest pause between looks at the step; the first looks come sooner


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.rename(tmp, path)


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def run_step(job, argv, timeout, grace):
    """In the detached process: run the step in a process group of its own, end it at its
    time (SIGTERM to the group, SIGKILL after `grace`), record how it ended."""
    started = time.time()
    result = {"started": started, "timeout": timeout, "timed_out": False, "rc": None}
    try:
        out = os.open(os.path.join(job, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(os.path.join(job, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - becomes the step
            try:
                os.setpgid(0, 0)
                os.dup2(out, 1)
                os.dup2(err, 2)
                os.execvp(argv[0], argv)
            except OSError as exc:
                os.write(2, ("cannot start %s: %s\n" % (argv[0], exc.strerror or exc)).encode())
                _write_json(os.path.join(job, "exec-failed.json"), {"error": str(exc)})
            os._exit(127)
        os.close(out)
        os.close(err)
        _write_json(os.path.join(job, "pid.json"), {"pid": pid, "started": started})
        status = _wait(pid, started + max(1, timeout))
        if status is None:
            result["timed_out"] = True
            _signal_group(pid, signal.SIGTERM)
            status = _wait(pid, time.time() + grace)
            if status is None:
                _signal_group(pid, signal.SIGKILL)
                status = os.waitpid(pid, 0)[1]
        if not os.path.exists(os.path.join(job, "exec-failed.json")):
            result["rc"] = os.waitstatus_to_exitcode(status)
        return result
    finally:
        result["ended"] = time.time()
        _write_json(os.path.join(job, "result.json"), result)


def _wait(pid, deadline):
    """The process's wait status, or None when it is still running at `deadline`."""
    pause = 0.01
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.time() >= deadline:
            return None
        time.sleep(min(pause, max(0.0, deadline - time.time())))
        pause = min(0.5, pause * 2)


def _signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except OSError:
        pass


def start(job_root, argv, timeout, grace):
    """Start the step in a session of its own that outlives this call (as Ansible's async
    wrapper daemonizes); returns its folder."""
    if not os.path.isdir(job_root):
        os.makedirs(job_root, mode=0o700)
    job = tempfile.mkdtemp(prefix="step-", dir=job_root)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs detached
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, 65536)
            os.chdir("/")
            run_step(job, argv, timeout, grace)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return job


def read_progress(module, path, command, started):
    if path:
        data = _read_json(path)
        return data if isinstance(data, dict) else {}
    if command:
        env = {"MUSIC_STEP_STARTED": "%d" % started}
        rc, out, _err = module.run_command(command, environ_update=env)
        if rc == 0:
            try:
                data = json.loads(out)
                return data if isinstance(data, dict) else {}
            except ValueError:
                return {}
    return {}


DEFAULT_LIMIT_COMMAND = ["/usr/bin/systemctl", "poweroff"]  # what the user data's timer runs
NO_LIMIT = {"found": False, "progressed": False, "extended": False, "elapses_in": None}  # not looked at
MARK = "progress-mark.json"  # in the step's folder: the last round's progress mark


def _systemctl_show(module, systemctl, unit, *props):
    args = [systemctl, "show", unit]
    for prop in props:
        args += ["-p", prop]
    rc, out, _err = module.run_command(args)
    return parse_show(out) if rc == 0 else {}


def watch_time_limit(module, job, progress, extend_minutes, unit):
    """Compare this round's progress with the last round's (kept in the step's folder) and,
    when the step progressed and the host's time limit is near, re-arm it later. Returns the
    RV(time_limit) dict, a note for the round's msg, and whether the timer was (in check
    mode: would be) re-armed."""
    limit = dict(NO_LIMIT)
    if extend_minutes <= 0:
        return limit, "", False
    mark = progress_mark(progress)
    previous = (_read_json(os.path.join(job, MARK)) or {}).get("mark")
    limit["progressed"] = advanced(previous, mark)
    if not module.check_mode and mark is not None:
        try:
            _write_json(os.path.join(job, MARK), {"mark": mark})
        except OSError as exc:
            module.warn("cannot keep the step's progress in %s: %s" % (job, exc))
    systemctl = module.get_bin_path("systemctl")
    systemd_run = module.get_bin_path("systemd-run")
    if not systemctl or not systemd_run:
        return limit, "", False  # no systemd here: no time limit to extend
    unit = unit[:-len(".timer")] if unit.endswith(".timer") else unit
    now = time.monotonic()  # CLOCK_MONOTONIC, as systemd's *Monotonic timestamps
    state = timer_state(_systemctl_show(module, systemctl, unit + ".timer", "LoadState", "ActiveState",
                                        "NextElapseUSecMonotonic", "TimersMonotonic"), now)
    if not state["active"] or state["elapses_in"] is None or state["boot_base"] is None:
        return limit, "", False  # no time limit of that form on this host (a local run)
    limit["found"] = True
    limit["elapses_in"] = int(state["elapses_in"])
    new = plan_extension(state["elapses_in"], extend_minutes * 60, limit["progressed"])
    if new is None:
        return limit, "", False
    if module.check_mode:
        return limit, "; time limit would be extended to %s from now (check mode)" % duration(new), True
    command = exec_argv(_systemctl_show(module, systemctl, unit + ".service", "ExecStart").get("ExecStart")) \
        or DEFAULT_LIMIT_COMMAND
    old_on_boot = on_boot_value(state["boot_base"], now, state["elapses_in"])
    new_on_boot = on_boot_value(state["boot_base"], now, new)

    def arm(on_boot):
        return module.run_command([systemd_run, "--quiet", "--unit=" + unit, "--on-boot=%.3fs" % on_boot] + command)

    rc, _out, err = module.run_command([systemctl, "stop", unit + ".timer"])
    if rc != 0:
        module.warn("time limit: cannot stop %s.timer to re-arm it (%s); it elapses as it was" % (unit, err.strip()))
        return limit, "", False
    rc, _out, err = arm(new_on_boot)
    if rc != 0:
        again, _out, err_again = arm(old_on_boot)
        if again != 0:
            module.fail_json(msg="time limit: %s.timer was stopped to re-arm it and could not be armed again "
                                 "(%s; %s): the host has no time limit now" % (unit, err.strip(), err_again.strip()),
                             time_limit=limit)
        module.warn("time limit: could not re-arm %s.timer later (%s); it elapses as it was" % (unit, err.strip()))
        return limit, "", False
    limit["extended"] = True
    limit["elapses_in"] = int(new)
    return limit, "; time limit extended: powers off in %s unless extended again" % duration(new), True


def _tail(path, limit):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit * 4))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return text[-limit:] if limit > 0 else ""


def main():
    module = AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str"),
            job=dict(type="path"),
            job_root=dict(type="path", default="~/.music-steps"),
            wait=dict(type="int", default=15),
            timeout=dict(type="int", default=86400),
            kill_grace=dict(type="int", default=60),
            name=dict(type="str", default="step"),
            progress_file=dict(type="path"),
            progress_command=dict(type="list", elements="str"),
            output_limit=dict(type="int", default=100000),
            cleanup=dict(type="bool", default=True),
            time_limit_extend=dict(type="int", default=0),
            time_limit_unit=dict(type="str", default="music-time-limit"),
        ),
        mutually_exclusive=[("argv", "job"), ("progress_file", "progress_command")],
        required_one_of=[("argv", "job")],
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]
    for option in ("wait", "timeout", "kill_grace", "output_limit", "time_limit_extend"):
        if p[option] < 0:
            module.fail_json(msg="%s: %s must be 0 or more (got %d)" % (name, option, p[option]))
    begin = time.time()
    if p["argv"] is not None:
        if not p["argv"]:
            module.fail_json(msg="%s: argv is empty" % name)
        if module.check_mode:
            module.exit_json(changed=False, finished=True, timed_out=False, job="", exit_status=None, stdout="", stderr="",
                             progress={}, elapsed=0, msg="%s: not started (check mode)" % name, time_limit=NO_LIMIT)
        try:
            job = start(p["job_root"], p["argv"], p["timeout"], p["kill_grace"])
        except OSError as exc:
            module.fail_json(msg="%s: cannot start it detached under %s: %s" % (name, p["job_root"], exc))
    else:
        job = p["job"]
        if not os.path.isdir(job):
            module.fail_json(msg="%s: its folder %s is gone (the host restarted, or another run removed it)"
                                 % (name, job), finished=True, timed_out=False, job=job, time_limit=NO_LIMIT)
    result_path = os.path.join(job, "result.json")
    deadline = begin + p["wait"]
    outcome = _read_json(result_path)
    pause = 0.01
    while outcome is None and time.time() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.time())))
        pause = min(POLL, pause * 2)
        outcome = _read_json(result_path)

    if outcome is None:
        info = _read_json(os.path.join(job, "pid.json")) or {}
        started = info.get("started") or os.stat(job).st_mtime
        elapsed = int(time.time() - started)
        progress = read_progress(module, p["progress_file"], p["progress_command"], started)
        line = progress.get("line") or "running, %ds elapsed" % elapsed
        limit, note, rearmed = watch_time_limit(module, job, progress, p["time_limit_extend"], p["time_limit_unit"])
        module.exit_json(changed=rearmed, finished=False, timed_out=False, job=job, progress=progress,
                         elapsed=elapsed, msg="%s: %s%s" % (name, line, note), time_limit=limit)

    progress = read_progress(module, p["progress_file"], None, 0)
    rc = outcome.get("rc")
    stdout = _tail(os.path.join(job, "stdout"), p["output_limit"])
    stderr = _tail(os.path.join(job, "stderr"), p["output_limit"])
    if outcome.get("timed_out"):
        msg = "%s: ended after its time limit of %s s" % (name, outcome.get("timeout"))
    elif rc is None:
        msg = "%s: could not start: %s" % (name, stderr.strip())
    else:
        msg = "%s: finished (exit %s)%s" % (name, rc, (": " + progress["line"]) if progress.get("line") else "")
    if p["cleanup"]:
        shutil.rmtree(job, ignore_errors=True)
    module.exit_json(changed=False, finished=True, timed_out=bool(outcome.get("timed_out")), job=job, exit_status=rc,
                     stdout=stdout, stderr=stderr, progress=progress, time_limit=NO_LIMIT,
                     elapsed=int(outcome.get("ended", time.time()) - outcome.get("started", begin)), msg=msg)


if __name__ == "__main__":
    main()
