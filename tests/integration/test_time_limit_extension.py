"""Long first runs finish (issue 16, item 4): step_watch pushes a watched host's time limit
later while the step progresses, against real systemd.

One podman container with systemd as PID 1 stands in for an AWS host. Its time limit is
armed with the command line of the launch template's user data (rendered from
roles/aws_provision/templates/user_data.yml.j2, so this test follows the template), set to
elapse two minutes after the container started: nothing here waits that long, and the
re-armed timers elapse later still; the container is removed before any of them would power
it off. Rounds of music.profiles.step_watch run through Ansible's podman connection.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import jinja2
import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles/aws_provision/templates/user_data.yml.j2"
UNIT = "music-time-limit"
LIMIT_MINUTES = 2
# A step whose progress file counts up every second (the shape of music-s3-sync's progress),
# and one whose file only counts the time while its count stands still.
ADVANCING = ('i=0; while [ $i -lt 120 ]; do i=$((i+1)); '
             'printf \'{"phase": "syncing", "files_done": %d, "elapsed": %d, "line": "%d files; %ds elapsed"}\' '
             '$i $i $i $i > "$0.tmp" && mv "$0.tmp" "$0"; sleep 1; done')
STUCK = ('i=0; while [ $i -lt 120 ]; do i=$((i+1)); '
         'printf \'{"phase": "syncing", "files_done": 3, "elapsed": %d, "line": "3 files; %ds elapsed"}\' '
         '$i $i > "$0.tmp" && mv "$0.tmp" "$0"; sleep 1; done')


def user_data_time_limit_command(minutes: int) -> list[str]:
    """The bootcmd line that arms the time limit, as the launch template's user data has it."""
    text = jinja2.Template(TEMPLATE.read_text()).render(aws_provision_time_limit=minutes,
                                                        aws_provision_region="eu-west-1")
    commands = [c for c in yaml.safe_load(text)["bootcmd"] if UNIT in " ".join(map(str, c))]
    assert len(commands) == 1, commands
    return [str(a) for a in commands[0]]


class SystemdHost:
    """A Debian bookworm container running systemd, reached with the podman connection."""

    def __init__(self, base: Path) -> None:
        subprocess.run(["bash", str(ROOT / "scripts/podman.sh")], check=True, capture_output=True, timeout=1200)
        self.env = dict(os.environ,
                        CONTAINERS_CONF=str(ROOT / ".cache/podman/containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(ROOT / ".cache/podman/storage.conf"),
                        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
                        ANSIBLE_PIPELINING="1")
        image = os.environ.get("MUSIC_TEST_IMAGE", "localhost/music-test-debian:bookworm")
        self.name = f"music-time-limit-test-{uuid.uuid4().hex[:8]}"
        self.inventory = base / "hosts.yml"
        self.inventory.write_text(json.dumps({"all": {"hosts": {self.name: {
            "ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3"}}}}))
        self.podman("run", "-d", "--name", self.name, "--systemd=always", image, "/sbin/init")
        state = ""
        for _ in range(120):
            state = self.exec("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.25)
        assert state in ("running", "degraded"), f"systemd in {self.name} is {state!r}"

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, f"podman {args}: {proc.stderr}"
        return proc

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.podman("exec", self.name, *argv, check=check)

    def timer(self) -> dict[str, str]:
        """The timer as systemd shows it, and the container's CLOCK_MONOTONIC when asked."""
        out = self.exec("sh", "-c", f"systemctl show {UNIT}.timer -p LoadState -p ActiveState "
                                    "-p NextElapseUSecMonotonic -p TimersMonotonic; "
                                    f"systemctl show {UNIT}.service -p ExecStart; "
                                    "python3 -c 'import time; print(\"Now=%f\" % time.monotonic())'").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def elapses_in(self) -> float:
        from ansible_collections.music.profiles.plugins.module_utils.time_limit import parse_timespan

        shown = self.timer()
        return parse_timespan(shown["NextElapseUSecMonotonic"]) - float(shown["Now"])

    def next_elapse(self) -> str:
        return self.timer()["NextElapseUSecMonotonic"]

    def watch(self, *extra: str, **args) -> dict:
        """One round of music.profiles.step_watch on the container, its result."""
        proc = subprocess.run(
            [str(ROOT / ".venv/bin/ansible"), self.name, "-i", str(self.inventory),
             "-m", "music.profiles.step_watch", "-a", json.dumps(args), *extra],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120)
        try:
            return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"][self.name]
        except (ValueError, KeyError, IndexError):
            raise AssertionError(proc.stdout + proc.stderr) from None

    def remove(self) -> None:
        self.podman("rm", "-f", "-t", "0", self.name, check=False)


@pytest.fixture
def host(tmp_path):
    systemd_host = SystemdHost(tmp_path)
    yield systemd_host
    systemd_host.remove()


def test_the_time_limit_moves_later_only_while_the_step_progresses(host):
    began = time.monotonic()
    arm = user_data_time_limit_command(LIMIT_MINUTES)
    assert arm[:2] == ["systemd-run", f"--unit={UNIT}"] and f"--on-boot={LIMIT_MINUTES}min" in arm
    host.exec(*arm)
    armed = host.timer()
    assert armed["TimersMonotonic"].startswith(f"{{ OnBootUSec={LIMIT_MINUTES}min ;"), armed
    before = host.elapses_in()
    assert 60 < before <= LIMIT_MINUTES * 60, before

    # A step that progresses: the first round has nothing to compare with, the second extends
    # the limit (it elapses within 4 minutes, and re-arming gains well over a tenth of them).
    common = {"name": "sync", "wait": 1, "job_root": "/root/.music-steps", "time_limit_extend": 4}
    first = host.watch(argv=["sh", "-c", ADVANCING, "/tmp/advancing.json"], progress_file="/tmp/advancing.json",
                       **common)
    assert not first["finished"] and not first["time_limit"]["extended"] and not first["changed"], first
    assert first["time_limit"]["found"] and first["time_limit"]["elapses_in"] <= before
    second = host.watch(job=first["job"], progress_file="/tmp/advancing.json", **common)
    assert second["time_limit"] == {"found": True, "progressed": True, "extended": True, "elapses_in": 240}, second
    assert second["changed"] and second["msg"].endswith("; time limit extended: powers off in 4m00s unless extended again")
    extended = host.elapses_in()
    assert 230 < extended <= 240 and extended > before + 100, (before, extended)
    rearmed = host.timer()
    # The same unit and command, armed from boot as the user data does (a daemon-reload keeps it).
    assert rearmed["ActiveState"] == "active" and rearmed["TimersMonotonic"].startswith("{ OnBootUSec="), rearmed
    assert "argv[]=/usr/bin/systemctl poweroff ;" in rearmed["ExecStart"], rearmed
    host.exec("systemctl", "daemon-reload")
    assert host.next_elapse() == rearmed["NextElapseUSecMonotonic"]

    # Check mode: it says it would extend (progress, and 10 minutes is further), and changes nothing.
    checked = host.watch("--check", job=first["job"], progress_file="/tmp/advancing.json",
                         **dict(common, time_limit_extend=10))
    assert checked["time_limit"]["progressed"] and not checked["time_limit"]["extended"], checked
    assert checked["msg"].endswith("; time limit would be extended to 10m00s from now (check mode)"), checked
    assert host.next_elapse() == rearmed["NextElapseUSecMonotonic"]

    # A step whose count stands still (only its elapsed time moves) gets no more time, though
    # with progress a 10-minute extension would move the limit.
    stuck = [host.watch(argv=["sh", "-c", STUCK, "/tmp/stuck.json"], progress_file="/tmp/stuck.json",
                        **dict(common, time_limit_extend=10))]
    for _ in range(2):
        stuck.append(host.watch(job=stuck[0]["job"], progress_file="/tmp/stuck.json",
                                **dict(common, time_limit_extend=10)))
    assert stuck[-1]["progress"]["elapsed"] > stuck[0]["progress"]["elapsed"], stuck
    assert [r["time_limit"]["extended"] for r in stuck] == [False, False, False], stuck
    assert [r["time_limit"]["progressed"] for r in stuck] == [False, False, False], stuck
    assert not any(r["changed"] for r in stuck) and "time limit" not in stuck[-1]["msg"]
    assert host.next_elapse() == rearmed["NextElapseUSecMonotonic"]

    # A host without the timer: a progressing step's rounds leave it without one, and no error.
    host.exec("systemctl", "stop", f"{UNIT}.timer")
    assert host.timer()["LoadState"] == "not-found"
    none = host.watch(job=first["job"], progress_file="/tmp/advancing.json", **common)
    assert none["time_limit"] == {"found": False, "progressed": True, "extended": False, "elapses_in": None}, none
    assert not none["changed"] and not none["finished"] and "time limit" not in none["msg"], none
    assert host.timer()["LoadState"] == "not-found"
    assert host.exec("systemctl", "list-units", "--all", "--no-legend", f"{UNIT}*").stdout.strip() == ""
    assert time.monotonic() - began < LIMIT_MINUTES * 60 - 30  # nothing came near powering the container off
