#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the music.profiles collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Watch a long step started with async and poll 0 for a while, and say how far it has got."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: step_watch
short_description: Watch a detached long step for a short while and report its progress
description:
  - One round of watching a long step (a sync, a build) that a task started detached with
    C(async) and C(poll=0). It waits at most O(wait) seconds, returns as soon as the step
    has finished, and reports the step's progress as one line in RV(msg), read from a file the
    step writes (O(progress_file)) or printed by a command (O(progress_command)).
  - Meant to run in a loop of rounds (C(loop) over a range, C(loop_control.break_when) on
    RV(finished), C(loop_control.label) showing RV(msg)) - each round is one short command on
    the host, so a connection that ends long commands (the C(amazon.aws.aws_ssm) connection's
    C(ansible_aws_ssm_timeout)) never sees one, and each round is one line of the play's own
    output (one job event in AWX), with no callback plugin involved.
  - When the step has finished, returns its result (RV(rc), RV(stdout), RV(stderr)) and
    removes the async job's results file; a step that the async time limit ended is
    RV(timed_out).
  - The step's own success is not judged here (the caller does, from RV(rc)); this module
    fails only when it cannot read the job.
version_added: "1.1.0"
options:
  results_file:
    description:
      - The async job's results file on the host, as the starting task registered it
        (C(results_file) of an C(async)/C(poll=0) task's result).
    type: path
    required: true
  wait:
    description:
      - At most this many seconds in this round. Keep it well under the connection's per-command
        limit (C(ansible_aws_ssm_timeout), 60 s by default).
    type: int
    default: 15
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
  cleanup:
    description: Remove the async results file once the step has finished.
    type: bool
    default: true
notes:
  - Supports check mode (it only reads); the step itself decides what check mode means.
author:
  - music.profiles contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Start the sync detached
  ansible.builtin.command:
    argv: [/usr/local/bin/music-s3-sync, --bucket, music-sources, --dest, /srv/music/sources,
           --progress, /srv/music/sources/.music-s3-sync/progress.json]
  async: 14400
  poll: 0
  changed_when: false
  register: sync_job

- name: Watch the sync (a progress line every 15 s)
  music.profiles.step_watch:
    results_file: "{{ sync_job.results_file }}"
    name: sync
    wait: 15
    progress_file: /srv/music/sources/.music-s3-sync/progress.json
  loop: "{{ range((14400 / 15) | round(0, 'ceil') | int + 2) | list }}"
  loop_control:
    label: "{{ sync_watch.msg | default('') }}"
    break_when: sync_watch.finished | default(true)
  register: sync_watch

- name: Fail when the sync failed
  ansible.builtin.fail:
    msg: "{{ (sync_watch.results | last).stderr }}"
  when: (sync_watch.results | last).rc | default(1) != 0
"""

RETURN = r"""
finished:
  description: Whether the step has ended (or the async time limit ended it).
  returned: always
  type: bool
timed_out:
  description: The async time limit ended the step before it finished.
  returned: always
  type: bool
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
rc:
  description: The step's exit status, once it has finished (null when it was ended by the time limit).
  returned: when finished
  type: int
stdout:
  description: The step's standard output, once it has finished.
  returned: when finished
  type: str
stderr:
  description: The step's standard error, once it has finished.
  returned: when finished
  type: str
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

POLL = 0.2
# The async wrapper writes the results file right after it forks; give it this long to appear.
GRACE = 10


def read_job(path):
    """The job's results as the async wrapper left them: None while the file is not there."""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {"started": True, "finished": False}  # being rewritten: still running
    if "started" not in data:
        data["finished"] = True  # the module's own result
    return data


def read_progress(module, path, command, started):
    if path:
        try:
            with open(path) as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            results_file=dict(type="path", required=True),
            wait=dict(type="int", default=15),
            name=dict(type="str", default="step"),
            progress_file=dict(type="path"),
            progress_command=dict(type="list", elements="str"),
            cleanup=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("progress_file", "progress_command")],
        supports_check_mode=True,
    )
    p = module.params
    if p["wait"] < 0:
        module.fail_json(msg="wait must be 0 or more seconds (got %d)" % p["wait"])
    path = p["results_file"]
    begin = time.time()
    deadline = begin + p["wait"]
    job = read_job(path)
    while job is None or not job.get("finished"):
        if job is None and time.time() - begin >= GRACE:
            module.fail_json(msg="%s: its async job file %s is gone (the host restarted, or the job was cleaned "
                                 "up?)" % (p["name"], path), finished=True, timed_out=False)
        if time.time() >= deadline and job is not None:
            break
        time.sleep(POLL)
        job = read_job(path)
    try:
        started = os.stat(path).st_mtime if not job.get("finished") else None
    except OSError:
        started = None
    result = dict(changed=False, finished=bool(job.get("finished")), timed_out=False)
    if not result["finished"]:
        # While it runs, the results file is the one the wrapper wrote when the step started.
        started = started or begin
        result["elapsed"] = int(time.time() - started)
        progress = read_progress(module, p["progress_file"], p["progress_command"], started)
        line = progress.get("line") or "running, %ds elapsed" % result["elapsed"]
        result.update(progress=progress, msg="%s: %s" % (p["name"], line))
        module.exit_json(**result)

    timed_out = job.get("msg") == "Timeout exceeded" and "rc" not in job
    progress = read_progress(module, p["progress_file"], None, 0)
    result.update(timed_out=timed_out, progress=progress, rc=job.get("rc"), stdout=job.get("stdout", ""),
                  stderr=job.get("stderr", ""), elapsed=int(_delta(job.get("delta"))))
    if timed_out:
        result["msg"] = "%s: ended by its time limit before it finished" % p["name"]
    else:
        result["msg"] = "%s: finished (exit %s)%s" % (p["name"], job.get("rc"),
                                                      (": " + progress["line"]) if progress.get("line") else "")
    if p["cleanup"]:
        try:
            os.unlink(path)
        except OSError:
            pass
    module.exit_json(**result)


def _delta(text):
    """Seconds of the command module's "H:MM:SS.ffffff" delta (0 when absent)."""
    try:
        h, m, s = str(text).split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return 0


if __name__ == "__main__":
    main()
