"""Long steps run detached and print progress in the play's own output (issue 16, item 2).

The compile playbook runs through a connection that, like amazon.aws.aws_ssm, ends any
command longer than a per-command limit (connection_plugins/music_limited.py). A first build
that takes longer than that limit completes, with no command cut off, and prints progress
lines whose counts grow, per profile, with an estimate of the time left; the play's summary
is as before. A second run with nothing changed stays changed=0 and watches one round.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import time

import pytest

from compile_helpers import ROOT, report, run_playbook, scratch
from music_devkit.library import make_library

pytestmark = pytest.mark.slow
LIMIT = 15  # seconds a command may run: above every other step of compile.yml here
TRACKS = 48  # 30 s each: a first build of about 20-40 s on 2 cores
PROGRESS = re.compile(r"\(item=build: (\d+) of (\d+) outputs \(\d+%\): (.*?); (\d+m\d+s) elapsed, (about \S+ left|estimating the time left)\)")


def changed_tasks(output: str) -> list[str]:
    """The names of the tasks that reported changed."""
    blocks = re.split(r"^TASK \[", output, flags=re.M)[1:]
    return [block.split("]", 1)[0] for block in blocks if re.search(r"^changed: ", block, re.M)]


@pytest.fixture
def limited(monkeypatch, tmp_path):
    """The limited connection, and the file it notes every command it cut off in."""
    log = tmp_path / "cut-off.log"
    monkeypatch.setenv("ANSIBLE_CONNECTION_PLUGINS", str(ROOT / "tests/e2e/connection_plugins"))
    monkeypatch.setenv("MUSIC_LIMITED_LOG", str(log))
    return ["-e", "ansible_connection=music_limited", "-e", f"music_limited_seconds={LIMIT}"], log


def test_the_limited_connection_cuts_off_a_long_command(limited):
    """The stand-in is strict: a plain command longer than the limit fails the host."""
    args, log = limited
    env_args = [a.replace(f"={LIMIT}", "=2") for a in args]
    out = subprocess.run([str(ROOT / ".venv/bin/ansible"), "localhost", "-i", str(ROOT / "inventory/local.yml"),
                          *env_args, "-m", "ansible.builtin.command", "-a", "sleep 4"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert "per-command limit of 2 s" in out.stdout
    assert "exceeded" in log.read_text()


def step_watch(args: dict) -> dict:
    """One round of music.profiles.step_watch on this machine, its result."""
    import json

    out = subprocess.run([str(ROOT / ".venv/bin/ansible"), "localhost", "-i", str(ROOT / "inventory/local.yml"),
                          "-m", "music.profiles.step_watch", "-a", json.dumps(args), "-o"],
                         cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")))
    assert " => " in out.stdout, out.stdout + out.stderr
    return json.loads(out.stdout.split(" => ", 1)[1])


def test_a_step_over_its_time_is_ended_and_one_that_cannot_start_says_so(tmp_path):
    began = time.monotonic()
    first = step_watch({"argv": ["sh", "-c", "echo started; exec sleep 60"], "name": "slow", "wait": 1,
                        "timeout": 2, "kill_grace": 1, "job_root": str(tmp_path)})
    assert not first["finished"] and first["msg"].startswith("slow: running"), first
    ended = step_watch({"job": first["job"], "name": "slow", "wait": 10})
    assert time.monotonic() - began < 20
    assert ended["finished"] and ended["timed_out"] and ended["exit_status"] == -15, ended
    assert ended["stdout"] == "started\n" and ended["msg"] == "slow: ended after its time limit of 2 s", ended
    assert not os.path.exists(first["job"])  # cleaned up

    missing = step_watch({"argv": ["/nonexistent/program"], "name": "odd", "wait": 5, "job_root": str(tmp_path)})
    assert missing["finished"] and missing["exit_status"] is None and "cannot start /nonexistent/program" in missing["msg"], missing


def test_a_build_longer_than_the_connection_limit_prints_progress(limited, world_readable_tmp):
    args, log = limited
    base = scratch(world_readable_tmp, "progress")
    src, builds = base / "src", base / "builds"
    make_library(str(src), albums=4, tracks=TRACKS // 4, seconds=30)
    vars_ = ["-e", f"music_sources_dir={src}", "-e", f"music_builds_dir={builds}", "-e", "worker_progress_interval=2"]

    # Packages and the program installed first, without the limit: on a busy machine apt alone
    # can wait longer than it for another apt's lock (on AWS, music_aws_ssm_timeout allows it).
    setup = run_playbook("compile.yml", *vars_, "-e", "worker_build=false")
    assert setup.returncode == 0, setup.stdout[-3000:]

    first = run_playbook("compile.yml", *args, *vars_)
    out = first.stdout
    assert first.returncode == 0, out[-3000:]
    assert not log.exists(), log.read_text()  # no command was cut off (nor retried)
    built = report(builds)
    took = dt.datetime.fromisoformat(built["finished"]) - dt.datetime.fromisoformat(built["started"])
    assert took.total_seconds() > LIMIT, f"the build took {took}: too short to prove anything"

    lines = PROGRESS.findall(out)
    assert len(lines) >= 2, out[-3000:]
    done = [int(d) for d, *_ in lines]
    assert done == sorted(done) and done[-1] > done[0], lines
    assert len({total for _, total, *_ in lines}) == 1, lines  # tup's own total, from the first line on
    assert any(eta.startswith("about") for *_, eta in lines), lines
    # Each profile's count of its own total: a first build plans every track of every profile,
    # and the flac profile copies the albums' cover.jpg files too.
    per_profile = {p: int(t) for p, _, t in re.findall(r"(\w+) (\d+)/(\d+)", lines[-1][2])}
    copies = sum(1 for _ in src.rglob("cover.jpg"))
    assert per_profile == {"car": TRACKS, "flac": TRACKS + copies, "phone": TRACKS}, lines[-1]
    assert sum(per_profile.values()) == int(lines[-1][1])
    assert "item=build: finished (exit 0)" in out
    for profile in ("car", "flac", "phone"):  # the summary, as before
        assert f"'{profile}: {TRACKS} encoded, 0 retagged, 0 unchanged, 0 removed, 0 failed" in out

    # Nothing changed: one round. In a checkout others edit, the program may change between
    # two runs (a new program re-makes outputs): then the run after that is the one checked.
    for _attempt in range(3):
        program = os.readlink("/usr/local/lib/music-build/current")
        second = run_playbook("compile.yml", *args, *vars_)
        assert second.returncode == 0, second.stdout[-3000:]
        if os.readlink("/usr/local/lib/music-build/current") == program:
            break
    else:
        pytest.fail("the build program changed under every run (files edited meanwhile)")
    assert changed_tasks(second.stdout) == [], changed_tasks(second.stdout)
    rounds = re.findall(r"^ok: \[localhost\] => \(item=(build: .*)\)$", second.stdout, re.M)
    assert rounds == ["build: finished (exit 0)"], rounds
    assert not log.exists()


def test_progress_lines_are_job_events_under_awx_s_runner(tmp_path, monkeypatch):
    """ansible-runner (what AWX runs jobs with) replaces the output callback with its own: each
    watch round is still a job event of its own whose stdout is the progress line."""
    import json

    import ansible_runner

    progress = tmp_path / "progress.json"
    script = ("for i in 1 2 3 4; do printf '{\"line\": \"%s of 4 done\"}' $i > " + str(progress)
              + ".tmp && mv " + str(progress) + ".tmp " + str(progress) + "; sleep 1; done")
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "A slow step",
        "music.profiles.step_watch": {
            "argv": "{{ omit if item > 0 else ['sh', '-c', script] }}",
            "job": "{{ slow.job if item > 0 else omit }}",
            "name": "slow", "wait": 1, "progress_file": str(progress), "job_root": str(tmp_path / "steps")},
        "vars": {"script": script},
        "loop": "{{ range(20) | list }}",
        "loop_control": {"label": "{{ slow.msg | default('') }}", "break_when": "slow.finished | default(true)"},
        "register": "slow"}]}]
    data = tmp_path / "runner"
    (data / "project").mkdir(parents=True)
    (data / "project" / "play.yml").write_text(json.dumps(play))
    (data / "inventory").mkdir()
    (data / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={ROOT / '.venv/bin/python'}\n")
    env = {"ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false"}
    monkeypatch.setenv("PATH", f"{ROOT / '.venv/bin'}:{os.environ['PATH']}")  # its ansible-playbook
    run = ansible_runner.run(private_data_dir=str(data), playbook="play.yml", envvars=env, quiet=True)
    assert run.status == "successful", run.stdout.read()
    rounds = [e["stdout"] for e in run.events if e["event"] == "runner_item_on_ok"]
    assert len(rounds) >= 3, rounds
    assert any("(item=slow: " in r and " of 4 done)" in r for r in rounds), rounds
    assert "(item=slow: finished (exit 0): 4 of 4 done)" in rounds[-1], rounds
