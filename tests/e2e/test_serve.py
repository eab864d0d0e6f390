"""End-to-end: playbooks/serve.yml runs the server role on this machine and a real rsync
client talks to the real rsync daemon it starts.

Every test instance gets its own free loopback port, service name and files (config,
secrets, pid, lock, log, control script) under the world-readable scratch directory, so
tests run in parallel and never touch a daemon of this machine. A finaliser stops the
daemon through the pid in its pid file.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "serve.yml"
PROFILES = ("flac", "phone", "car")
# Files of the fake builds directory: the compile step is tested elsewhere.
FILES = {
    "flac": {
        "Artist/Album (2001)/01 - First track.flac": b"fLaC" + bytes(range(256)) * 40,
        "Artist/Album (2001)/cover.jpg": b"\xff\xd8\xff" + b"jpeg" * 100,
        "Ärtist/Ünïcode & $pecial; 'name'.flac": b"fLaC unicode" * 50,
    },
    "phone": {
        "Artist/Album (2001)/01 - First track.opus": b"OggS" + b"opus" * 300,
        "Artist/Album (2001)/Album (2001).m3u8": b"#EXTM3U\n01 - First track.opus\n",
    },
    "car": {
        "Artist/Album (2001)/01 - First track.mp3": b"ID3" + b"mp3!" * 300,
    },
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def tree(path: Path) -> dict[str, bytes]:
    """Every regular file under path, relative name -> content."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def recap(output: str) -> dict[str, int]:
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, f"no PLAY RECAP in the output:\n{output}"
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


class Instance:
    """One rsync daemon deployed by playbooks/serve.yml, with its own port and files."""

    def __init__(self, base: Path, install: bool = False):
        self.dir = base / f"serve-{uuid.uuid4().hex[:10]}"
        self.builds = self.dir / "builds"
        self.etc = self.dir / "etc"
        self.port = free_port()
        name = f"music-rsyncd-test-{self.dir.name[6:]}"
        self.config = self.etc / f"{name}.conf"
        self.secrets = self.etc / f"{name}.secrets"
        self.pid_file = self.etc / f"{name}.pid"
        self.ctl = self.etc / f"{name}-ctl"
        self.log = self.etc / f"{name}.log"
        self.base_vars = {
            "music_builds_dir": str(self.builds),
            "server_port": self.port,
            "server_service_name": name,
            "server_config_path": str(self.config),
            "server_secrets_path": str(self.secrets),
            "server_pid_file": str(self.pid_file),
            "server_lock_file": str(self.etc / f"{name}.lock"),
            "server_log_file": str(self.log),
            "server_ctl_path": str(self.ctl),
            "server_unit_path": str(self.etc / f"{name}.service"),
            # The package task is exercised by the shared instance and the idempotence test;
            # the others skip it to save a few seconds per run.
            "server_install_packages": install,
        }
        self.etc.mkdir(parents=True, mode=0o755)
        os.chmod(self.dir, 0o755)
        for profile, files in FILES.items():
            for rel, content in files.items():
                path = self.builds / profile / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        for path in [self.builds, *self.builds.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

    def play(self, *args: str, expect_rc: int | None = 0, **extra) -> tuple[str, dict[str, int]]:
        """Run serve.yml; returns its output and PLAY RECAP counts."""
        vars_file = self.dir / f"vars-{uuid.uuid4().hex[:6]}.json"
        vars_file.write_text(json.dumps({**self.base_vars, **extra}))
        vars_file.chmod(0o600)
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0")
        proc = subprocess.run(
            [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(ROOT / "inventory/local.yml"),
             str(PLAYBOOK), "-e", f"@{vars_file}", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
        vars_file.unlink()
        output = proc.stdout + proc.stderr
        if expect_rc is not None:
            assert proc.returncode == expect_rc, f"serve.yml exited {proc.returncode}:\n{output}"
        return output, (recap(output) if "PLAY RECAP" in output else {})

    def url(self, module: str = "", user: str = "", port: int | None = None) -> str:
        auth = f"{user}@" if user else ""
        return f"rsync://{auth}127.0.0.1:{port or self.port}/{module}"

    def rsync(self, *args: str, password: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "RSYNC_PASSWORD"}
        if password is not None:
            env["RSYNC_PASSWORD"] = password
        return subprocess.run(["rsync", "--contimeout=10", "--timeout=30", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)

    def modules(self, **kw) -> list[str]:
        proc = self.rsync(self.url(), **kw)
        assert proc.returncode == 0, proc.stderr
        return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]

    def fetch(self, module: str, dest: Path, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.rsync("-r", *args, self.url(module, kw.pop("user", "")) + "/", f"{dest}/", **kw)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not pid_alive(pid):
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def instance(world_readable_tmp):
    inst = Instance(world_readable_tmp)
    yield inst
    inst.cleanup()


@pytest.fixture(scope="module")
def served(world_readable_tmp):
    """One daemon deployed with the defaults, shared by the read-only tests."""
    inst = Instance(world_readable_tmp, install=True)
    try:
        output, counts = inst.play()
        inst.first_output, inst.first_counts = output, counts
        yield inst
    finally:
        inst.cleanup()


# --- serving ------------------------------------------------------------------------

def test_listing_shows_one_module_per_profile(served):
    assert served.first_counts["changed"] > 0
    assert served.modules() == list(PROFILES)
    assert served.pid() is not None
    assert port_open(served.port)


def test_download_of_each_profile_equals_its_files(served, tmp_path):
    for profile in PROFILES:
        dest = tmp_path / profile
        proc = served.fetch(profile, dest, "-t")
        assert proc.returncode == 0, proc.stderr
        assert tree(dest) == tree(served.builds / profile) == FILES[profile]


def test_printed_command_fetches_a_profile(served, tmp_path):
    match = re.search(r'(rsync -rtv rsync://[^\s"]+ \./[^\s"]+)', served.first_output)
    assert match, served.first_output
    command = shlex.split(match.group(1))
    assert command[2] == f"rsync://127.0.0.1:{served.port}/flac/"
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert tree(tmp_path / "flac") == FILES["flac"]


def test_upload_is_refused_and_writes_nothing(served, tmp_path):
    before = {p: tree(served.builds / p) for p in PROFILES}
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "intruder.flac").write_bytes(b"not yours")
    for profile in PROFILES:
        proc = served.rsync("-r", f"{upload}/", served.url(profile) + "/")
        assert proc.returncode != 0
        assert "read only" in proc.stderr, proc.stderr
        # An empty source with --delete would wipe the module if writes were allowed.
        empty = tmp_path / "empty"
        empty.mkdir(exist_ok=True)
        proc = served.rsync("-r", "--delete", f"{empty}/", served.url(profile) + "/")
        assert proc.returncode != 0
    assert {p: tree(served.builds / p) for p in PROFILES} == before
    assert not list(served.builds.rglob("intruder*"))


def test_connections_run_unprivileged_and_chrooted(served, tmp_path):
    root_only = served.builds / "flac" / "root-only.txt"
    root_only.write_bytes(b"only root reads this")
    root_only.chmod(0o600)
    escape = served.builds / "phone" / "escape"
    escape.symlink_to("/etc")
    try:
        proc = served.rsync(served.url("flac") + "/root-only.txt", str(tmp_path / "got.txt"))
        assert proc.returncode != 0
        assert "Permission denied" in proc.stderr, proc.stderr
        assert not (tmp_path / "got.txt").exists()
        # A link out of the module, followed by the server (-L), shows nothing of the host.
        proc = served.rsync("-rL", served.url("phone") + "/escape/", f"{tmp_path / 'etc'}/")
        assert proc.returncode != 0
        assert not (tmp_path / "etc" / "hostname").exists()
        assert not (tmp_path / "etc" / "passwd").exists()
    finally:
        root_only.unlink()
        escape.unlink()


# --- idempotence, check mode, restarts ------------------------------------------------

def test_second_run_changes_nothing_and_keeps_the_daemon(instance):
    instance.base_vars["server_install_packages"] = True
    instance.play()
    pid = instance.pid()
    config = instance.config.read_bytes()
    _, counts = instance.play()
    assert counts["changed"] == 0
    assert instance.pid() == pid
    assert instance.config.read_bytes() == config


def test_check_mode_shows_changes_but_installs_starts_and_restarts_nothing(instance):
    # On a machine where nothing is installed yet.
    output, counts = instance.play("--check", "--diff")
    assert counts["failed"] == 0
    assert counts["changed"] > 0, output
    assert not instance.config.exists() and not instance.ctl.exists()
    assert instance.pid() is None and not port_open(instance.port)

    # On a running server, with a new port and users.
    instance.play()
    pid, config, ctl = instance.pid(), instance.config.read_bytes(), instance.ctl.read_bytes()
    new_port = free_port()
    output, counts = instance.play("--check", "--diff", server_port=new_port,
                                   server_auth_users={"alice": "check-mode-secret"})
    assert counts["changed"] > 0
    assert f"+PORT={new_port}" in output  # --diff shows what would change
    assert "check-mode-secret" not in output
    assert instance.pid() == pid
    assert instance.config.read_bytes() == config and instance.ctl.read_bytes() == ctl
    assert not instance.secrets.exists()
    assert port_open(instance.port) and not port_open(new_port)
    assert instance.modules() == list(PROFILES)


def test_config_changes_apply_without_restart_and_port_change_restarts(instance):
    instance.play()
    pid = instance.pid()
    (instance.builds / "dab").mkdir(mode=0o755)
    profiles = {**{p: {"codec": "flac"} for p in PROFILES}, "dab": {"codec": "mp3"}}
    _, counts = instance.play(music_profiles=profiles)
    assert counts["changed"] == 1  # the config file only
    assert instance.pid() == pid
    assert instance.modules() == [*PROFILES, "dab"]

    old_port, new_port = instance.port, free_port()
    _, counts = instance.play(music_profiles=profiles, server_port=new_port)
    instance.port = new_port
    assert counts["changed"] > 0
    assert instance.pid() not in (None, pid)
    assert instance.modules() == [*PROFILES, "dab"]
    assert not port_open(old_port)

    _, counts = instance.play(music_profiles=profiles, server_port=new_port)
    assert counts["changed"] == 0


def test_a_dead_daemon_is_started_again(instance):
    instance.play()
    pid = instance.pid()
    os.kill(pid, signal.SIGKILL)  # leaves a stale pid file behind
    for _ in range(100):
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    assert instance.pid_file.exists() and instance.pid() is None
    _, counts = instance.play()
    assert counts["changed"] == 1
    assert instance.pid() not in (None, pid)
    assert instance.modules() == list(PROFILES)


# --- access control -------------------------------------------------------------------

def test_with_auth_users_only_the_right_password_downloads_and_it_never_leaks(instance, tmp_path):
    """The password stays out of the output (even with --diff -v) and in a root-only 0600
    secrets file; a wrong, absent or other user's password is refused; a second run changes
    nothing; with no users again the secrets file goes and anonymous downloads work."""
    password = "correct horse: battery staple"
    output, _ = instance.play("--diff", "-v", server_auth_users={"alice": password, "bob": "other"})
    assert password not in output
    mode = instance.secrets.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == 0

    wrong = instance.fetch("flac", tmp_path / "wrong", user="alice", password="wrong password")
    assert wrong.returncode != 0 and "auth failed" in wrong.stderr, wrong.stderr
    anonymous = instance.fetch("flac", tmp_path / "anon", password="")
    assert anonymous.returncode != 0
    other = instance.fetch("flac", tmp_path / "other", user="bob", password=password)
    assert other.returncode != 0
    assert not (tmp_path / "wrong").exists() or not tree(tmp_path / "wrong")
    right = instance.fetch("flac", tmp_path / "right", user="alice", password=password)
    assert right.returncode == 0, right.stderr
    assert tree(tmp_path / "right") == FILES["flac"]

    _, counts = instance.play(server_auth_users={"alice": password, "bob": "other"})
    assert counts["changed"] == 0

    # Authentication off again: the secrets file goes, anonymous downloads work.
    instance.play(server_auth_users={})
    assert not instance.secrets.exists()
    anonymous = instance.fetch("flac", tmp_path / "anon2")
    assert anonymous.returncode == 0, anonymous.stderr


def test_hosts_allow_refuses_other_addresses_and_serves_the_listed_one(instance, tmp_path):
    instance.play(server_hosts_allow=["127.0.0.2"])
    denied = instance.fetch("flac", tmp_path / "denied")
    assert denied.returncode != 0
    assert "access denied" in denied.stderr, denied.stderr
    assert not (tmp_path / "denied").exists() or not tree(tmp_path / "denied")
    allowed = instance.fetch("flac", tmp_path / "allowed", "--address=127.0.0.2")
    assert allowed.returncode == 0, allowed.stderr
    assert tree(tmp_path / "allowed") == FILES["flac"]


# --- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"music_profiles": {"flac": {}, "car/../etc": {}}}, ["server_profiles", "car/../etc"]),
        ({"server_port": 70000}, ["server_port", "70000"]),
        ({"server_hosts_allow": ["10.0.0.0/8, 0.0.0.0/0"]}, ["server_hosts_allow", "10.0.0.0/8, 0.0.0.0/0"]),
        ({"music_builds_dir": "relative/builds"}, ["server_builds_dir", "relative/builds"]),
        ({"server_auth_users": {"eve": "line\nbreak-secret"}}, ["server_auth_users", "eve"]),
        ({"server_auth_users": {"eve:admin": "pw-secret"}}, ["server_auth_users", "eve:admin"]),
        ({"server_service_mode": "upstart"}, ["server_service_mode", "upstart"]),
    ],
    ids=["profile-name", "port", "hosts-allow", "builds-dir", "password", "user-name", "mode"],
)
def test_bad_input_is_named_and_nothing_starts(instance, extra, expected):
    output, counts = instance.play(expect_rc=2, **extra)
    assert counts.get("failed") == 1
    for text in expected:
        assert text in output, output
    assert "break-secret" not in output and "pw-secret" not in output
    assert not instance.config.exists() and instance.pid() is None


# --- under systemd: a podman container with systemd as PID 1 ---------------------------

class SystemdHost:
    """A Debian bookworm container running systemd, reached with the podman connection."""

    def __init__(self, base: Path):
        subprocess.run(["bash", str(ROOT / "scripts/podman.sh")], check=True, capture_output=True,
                       timeout=1200)
        self.env = dict(os.environ,
                        CONTAINERS_CONF=str(ROOT / ".cache/podman/containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(ROOT / ".cache/podman/storage.conf"),
                        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        self.image = os.environ.get("MUSIC_TEST_IMAGE", "localhost/music-test-debian:bookworm")
        self.name = f"music-serve-test-{uuid.uuid4().hex[:8]}"
        self.dir = base / self.name
        self.dir.mkdir(mode=0o755)
        (self.dir / "inventory").mkdir()
        # group_vars beside the inventory, as with inventory/local.yml and aws_ec2.yml.
        (self.dir / "inventory" / "group_vars").symlink_to(ROOT / "group_vars")
        (self.dir / "inventory" / "hosts.yml").write_text(json.dumps({"all": {"children": {"server": {
            "hosts": {self.name: {"ansible_connection": "containers.podman.podman",
                                  "ansible_python_interpreter": "/usr/bin/python3"}}}}}}))
        self.podman("run", "-d", "--name", self.name, "--systemd=always", self.image, "/sbin/init")
        state = ""
        for _ in range(120):
            state = self.sh("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        assert state in ("running", "degraded"), f"systemd in {self.name} is {state!r}"
        builds = self.dir / "builds"
        for profile, files in FILES.items():
            for rel, content in files.items():
                path = builds / profile / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        self.sh("mkdir -p /srv/music")
        self.podman("cp", f"{builds}", f"{self.name}:/srv/music/builds")
        self.sh("chown -R root:root /srv/music && chmod -R a+rX,go-w /srv/music")

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=300, check=False)
        if check:
            assert proc.returncode == 0, f"podman {args}: {proc.stderr}"
        return proc

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.podman("exec", self.name, "sh", "-c", script, check=check)

    def main_pid(self) -> int:
        return int(self.sh("systemctl show -P MainPID music-rsyncd.service").stdout)

    def play(self, *args: str, **extra) -> dict[str, int]:
        vars_file = self.dir / f"vars-{uuid.uuid4().hex[:6]}.json"
        vars_file.write_text(json.dumps({"music_builds_dir": "/srv/music/builds", **extra}))
        proc = subprocess.run(
            [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(self.dir / "inventory/hosts.yml"),
             str(PLAYBOOK), "-e", f"@{vars_file}", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=900, check=False,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        match = re.search(rf"{self.name}\s*:\s*ok=\d+\s+changed=(\d+)", output)
        assert match, output
        return {"changed": int(match.group(1))}

    def cleanup(self) -> None:
        self.podman("rm", "-f", "-t", "0", self.name, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def systemd_host(world_readable_tmp):
    host = SystemdHost(world_readable_tmp)
    yield host
    host.cleanup()


def test_under_systemd_a_restarting_unit_serves_the_profiles(systemd_host):
    host = systemd_host
    # --check on a host where nothing is installed yet: reports changes, makes none.
    assert host.play("--check", "--diff")["changed"] > 0
    assert host.sh("test -e /etc/music-rsyncd.conf || test -e /etc/systemd/system/music-rsyncd.service",
                   check=False).returncode != 0
    assert "install ok installed" not in host.sh("dpkg-query -W -f='${Status}' rsync", check=False).stdout

    assert host.play()["changed"] > 0
    assert host.sh("systemctl is-enabled music-rsyncd.service").stdout.strip() == "enabled"
    assert host.sh("systemctl is-active music-rsyncd.service").stdout.strip() == "active"
    listing = host.sh("rsync rsync://127.0.0.1:8873/").stdout
    assert [line.split()[0] for line in listing.splitlines()] == list(PROFILES)
    for profile in PROFILES:
        host.sh(f"rsync -r rsync://127.0.0.1:8873/{profile}/ /tmp/dl-{profile}/ "
                f"&& diff -r /tmp/dl-{profile} /srv/music/builds/{profile}")
    upload = host.sh("rsync /etc/hostname rsync://127.0.0.1:8873/flac/", check=False)
    assert upload.returncode != 0 and "read only" in upload.stderr, upload.stderr
    assert host.sh("test -e /srv/music/builds/flac/hostname", check=False).returncode != 0

    pid = host.main_pid()
    assert host.play()["changed"] == 0
    assert host.main_pid() == pid

    # A module change applies without a restart; a port change restarts the unit.
    assert host.play(server_hosts_allow=["127.0.0.1"])["changed"] == 1
    assert host.main_pid() == pid
    assert host.play(server_hosts_allow=["127.0.0.1"], server_port=8874)["changed"] > 0
    new_pid = host.main_pid()
    assert new_pid not in (0, pid)
    host.sh("rsync rsync://127.0.0.1:8874/flac/")
    assert host.sh("rsync --contimeout=5 rsync://127.0.0.1:8873/", check=False).returncode != 0

    # Restart=on-failure: a killed daemon comes back (bounded wait).
    host.sh("systemctl kill -s KILL music-rsyncd.service")
    for _ in range(60):
        if host.main_pid() not in (0, new_pid):
            break
        time.sleep(0.5)
    assert host.main_pid() not in (0, new_pid)
    for _ in range(20):
        if host.sh("rsync rsync://127.0.0.1:8874/", check=False).returncode == 0:
            break
        time.sleep(0.5)
    assert host.sh("rsync rsync://127.0.0.1:8874/").stdout.split()[0] == "flac"
