"""A step slower than the connection's per-command limit (issue 16): its progress is printed
round by round, and nothing retries it.

amazon.aws.aws_ssm ends any command that outlasts `ansible_aws_ssm_timeout` and then retries
it (`ansible_aws_ssm_retries`). One podman container of the project's test image stands in
for the host, reached through the harness's stand-in connection music_ssm_podman
(tests/aws_e2e/connection_plugins), which enforces that limit the same way, set to 5 s here:

1. a command longer than the limit fails with aws_ssm's own message, after the connection
   ran it again three times (the retries a long step must never meet);
2. a step of ~12 s (more than twice the limit), run through music.profiles.step_watch in
   rounds as the roles loop them (roles/*/tasks/watch.yml), finishes with exit 0: each round
   stays under the limit, the rounds print the step's progress as it advances, no command
   times out, and the step was started once.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LIMIT = 5
TIMEOUT_MESSAGE = "timeout on host"
# The step: notes each start in $1, then counts 1..6 in its progress file ($0), 2 s apart.
STEP = ('echo "started $$" >> "$1"; k=0; while [ $k -lt 6 ]; do k=$((k+1)); '
        'printf \'{"line": "%d of 6"}\' $k > "$0.tmp" && mv "$0.tmp" "$0"; sleep 2; done')
PROGRESS = "/tmp/slow-step.json"
STARTS = "/tmp/slow-step.starts"
CONTROL_STARTS = "/tmp/control.starts"

WATCH_PLAYBOOK = {
    "name": "A step slower than the connection limit, watched in rounds",
    "hosts": "all",
    "gather_facts": False,
    "tasks": [
        {
            "name": "Run the slow step detached, watched in short rounds",
            "music.profiles.step_watch": {
                "argv": "{{ omit if item > 0 else slow_argv }}",
                "job": "{{ slow_watch.job if item > 0 else omit }}",
                "name": "slow",
                "wait": 2,
                "timeout": 60,
                "progress_file": PROGRESS,
            },
            "vars": {"slow_argv": ["sh", "-c", STEP, PROGRESS, STARTS]},
            "loop": "{{ range(20) | list }}",
            "loop_control": {
                "label": "{{ slow_watch.msg | default('') }}",
                "break_when": "slow_watch.finished | default(true)",
            },
            "register": "slow_watch",
        },
        {
            "name": "The step finished well",
            "ansible.builtin.assert": {
                "that": [
                    "(slow_watch.results | last).finished",
                    "(slow_watch.results | last).exit_status == 0",
                ],
            },
        },
    ],
}

CONTROL_PLAYBOOK = {
    "name": "A command longer than the connection limit",
    "hosts": "all",
    "gather_facts": False,
    "tasks": [
        {
            "name": "Sleep past the limit",
            "ansible.builtin.command": {"argv": ["sh", "-c", f"echo started >> {CONTROL_STARTS}; exec sleep 9"]},
        },
    ],
}


class SsmHost:
    """One container of the project's test image, reached as an instance id through music_ssm_podman."""

    def __init__(self, base: Path) -> None:
        from music_devkit import aws_hosts

        self.aws_hosts = aws_hosts
        aws_hosts.ensure_podman()
        self.base = base
        self.prefix = f"music-slow-step-{os.getpid()}-"
        self.instance_id = f"i-0{uuid.uuid4().hex[:16]}"
        self.name = self.prefix + self.instance_id
        self.inventory = base / "hosts.yml"
        self.inventory.write_text(json.dumps({"all": {"hosts": {self.instance_id: {
            "ansible_connection": aws_hosts.CONNECTION,
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_aws_ssm_timeout": LIMIT,
        }}}}))
        # Labelled as the harness labels its hosts, so that a killed run's container is removed
        # by the harness's next start (remove_leftovers).
        aws_hosts.podman("run", "-d", "--name", self.name, "--label", f"{aws_hosts.LABEL}={os.getpid()}",
                         aws_hosts.BASE_IMAGE, "sleep", "infinity", timeout=120)

    def exec(self, *argv: str) -> str:
        return self.aws_hosts.podman("exec", self.name, *argv, timeout=60).stdout

    def playbook(self, name: str, play: dict, timeout: float = 90):
        path = self.base / f"{name}.yml"
        path.write_text(json.dumps([play]))
        env = self.aws_hosts.podman_env()
        env.update(
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_CONNECTION_PLUGINS=str(self.aws_hosts.CONNECTION_PLUGINS),
            ANSIBLE_PIPELINING="true",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_DEPRECATION_WARNINGS="false",
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_CALLBACK_RESULT_FORMAT="json",
            MUSIC_E2E_PREFIX=self.prefix,
            MUSIC_E2E_HOST_ENV="{}",
        )
        started = time.monotonic()
        proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(self.inventory), str(path)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        run = self.aws_hosts.parse_run(proc.returncode, proc.stdout, proc.stderr)
        return run, time.monotonic() - started

    def result(self, run, task: str) -> dict:
        for play in run.plays:
            for entry in play["tasks"]:
                if entry["task"]["name"] == task:
                    return entry["hosts"][self.instance_id]
        raise AssertionError(f"no result of {task!r}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")

    def remove(self) -> None:
        self.aws_hosts.podman("rm", "-f", "-t", "0", self.name, check=False)


@pytest.fixture
def ssm_host(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the stand-in hosts are podman containers run as root")
    host = None
    try:
        host = SsmHost(tmp_path)
        yield host
    finally:
        if host is not None:
            host.remove()


def test_a_step_slower_than_the_connection_limit_prints_progress_and_is_not_retried(ssm_host):
    # 1. The limit is enforced: a 9 s command is killed at 5 s, run again by the connection's
    #    retries (aws_ssm's default 3, after pauses of 0, 1 and 3 s: the first command of a
    #    connection retries as many times whatever ansible_aws_ssm_retries says, as the
    #    count is read before the options), then fails with aws_ssm's message.
    control, took = ssm_host.playbook("control", CONTROL_PLAYBOOK)
    failed = ssm_host.result(control, "Sleep past the limit")
    assert control.rc != 0, control.stdout[-3000:]
    assert TIMEOUT_MESSAGE in failed["msg"] and "EXEC command" in failed["msg"], failed
    assert failed.get("unreachable"), failed
    assert ssm_host.exec("cat", CONTROL_STARTS).splitlines() == ["started"] * 4
    assert 4 * LIMIT + 4 <= took < 4 * LIMIT + 15, took

    # 2. The slow step, watched in rounds: it gets through.
    watched, took = ssm_host.playbook("watch", WATCH_PLAYBOOK)
    output = watched.stdout + watched.stderr
    assert watched.rc == 0, output[-4000:]
    assert TIMEOUT_MESSAGE not in output, output[-4000:]
    assert watched.stats[ssm_host.instance_id]["failures"] == 0
    assert watched.stats[ssm_host.instance_id]["unreachable"] == 0
    rounds = ssm_host.result(watched, "Run the slow step detached, watched in short rounds")["results"]
    last = rounds[-1]
    assert last["finished"] and last["exit_status"] == 0 and not last["timed_out"], last
    assert last["msg"] == "slow: finished (exit 0): 6 of 6", last
    assert last["elapsed"] >= 2 * LIMIT, last  # the step itself outlasted the limit twice over
    assert not any(r["finished"] for r in rounds[:-1]), [r["msg"] for r in rounds]
    assert len(rounds) >= 4, [r["msg"] for r in rounds]
    # Each round printed how far the step had got, and that advanced.
    lines = [r["msg"] for r in rounds[:-1]]
    assert all(m.startswith("slow: ") and m.endswith(" of 6") for m in lines), lines
    counts = [int(m.split()[1]) for m in lines]
    assert counts == sorted(counts) and len(set(counts)) >= 3, lines
    assert ssm_host.result(watched, "The step finished well").get("failed") is not True
    # Started once: no retry of a killed round started it again.
    assert ssm_host.exec("cat", STARTS).count("started") == 1
    assert took < 40, took
