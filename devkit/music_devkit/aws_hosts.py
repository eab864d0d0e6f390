"""The AWS playbooks end to end, host plays included, without AWS.

moto answers the AWS API (in this process, so that its EC2 backend can be followed), and
every instance moto "launches" is stood in for by a podman container (systemd as PID 1, the
project's Debian image with the packages the host roles install), reached through the test
connection `music_ssm_podman` (tests/aws_e2e/connection_plugins), which enforces the same
per-command limit as amazon.aws.aws_ssm. Every EBS data volume is a sparse image file on
this machine, attached to a loop device while the volume is attached to an instance, and
linked in the container as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<hex> (what
udev makes on a Nitro host). A snapshot is a copy of the volume's image taken when the
CreateSnapshot call is made; a volume made from a snapshot starts as a copy of that copy.

    with Harness() as h:               # podman network, moto on its gateway, no host yet
        h.upload_library(path)         # the sources bucket, as a user fills it
        run = h.playbook("site.yml")   # ansible-playbook -i inventory/aws_ec2.yml ...
        h.rsync_list(server_ip)        # what a device would see

What moto calls are followed: RunInstances (a container is started; its data volumes are
attached), TerminateInstances (the container is killed first, as EC2 stops the host before
it releases the volumes), AttachVolume, DetachVolume, DeleteVolume, CreateSnapshot,
DeleteSnapshot. Root volumes have no image. Everything lives under .cache/aws-e2e/<pid>;
stop() removes the containers, loop devices, images and the network (and a later start()
removes what a killed run left behind).

Stand-ins, each documented in docs/aws.md: the host's credentials and endpoint come from
AWS_* variables (the container's command environment, sudo's env_keep and systemd's
DefaultEnvironment) instead of the instance profile; the host's boto3 is the controller's
(Debian's 1.26 cannot be pointed at moto); the image carries the host roles' packages
(fetched once per machine) and no cloud-init, so the launch template's user data does not run.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from . import aws as aws_runs
from . import moto_fixes
from .moto import REGION, MotoServer, free_port

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "aws-e2e"
PODMAN_DIR = ROOT / ".cache" / "podman"
BASE_IMAGE = os.environ.get("MUSIC_TEST_IMAGE", "localhost/music-test-debian:bookworm")
HOST_IMAGE = "localhost/music-e2e-host"
CONNECTION = "music_ssm_podman"
CONNECTION_PLUGINS = ROOT / "tests" / "aws_e2e" / "connection_plugins"
LABEL = "music-e2e-run"
# Root devices of the images moto offers; volumes attached there get no image.
ROOT_DEVICES = {"/dev/xvda", "/dev/sda1", "/dev/sda"}
# What the host roles install (worker, volmgr, volume, server), plus what the launch
# template's user data ensures on a real host (curl, sudo: the aws_ssm connection's needs).
HOST_PACKAGES = [
    "sudo", "curl", "python3", "python3-boto3", "util-linux", "e2fsprogs", "rsync",
    "tup", "fuse3", "flac", "lame", "opus-tools", "vorbis-tools", "ffmpeg", "python3-mutagen",
    "python3-pil", "procps", "mtools", "dosfstools",
]
# The controller's boto3, which honours AWS_ENDPOINT_URL, replaces Debian's on the hosts.
BOTO3_PACKAGES = ["boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3"]
SITE_PACKAGES = ROOT / ".venv" / "lib" / "python3.11" / "site-packages"


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(PODMAN_DIR / "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = str(PODMAN_DIR / "storage.conf")
    return env


def podman(*args: str, check: bool = True, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                          timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])}... failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc


def ensure_podman() -> None:
    """scripts/podman.sh: packages, project-local configuration, the Debian base image."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "podman.sh")], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/podman.sh failed: {proc.stdout[-800:]} {proc.stderr[-800:]}")


def host_image() -> str:
    """The base image plus the host roles' packages; built once per recipe (a few minutes)."""
    recipe = json.dumps([BASE_IMAGE, HOST_PACKAGES, BOTO3_PACKAGES])
    tag = f"{HOST_IMAGE}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    links = " && ".join(f"ln -sfn /opt/test-host-site-packages/{p} /opt/test-boto3/{p}" for p in BOTO3_PACKAGES)
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
        f"apt-get install -y -qq --no-install-recommends {' '.join(HOST_PACKAGES)} >/dev/null; "
        "rm -f /var/cache/apt/archives/*.deb; mkdir -p /opt/test-boto3 /etc/systemd/system.conf.d; "
        f"{links}; "
        "echo /opt/test-boto3 > /usr/local/lib/python3.11/dist-packages/music-e2e-boto3.pth || "
        "{ mkdir -p /usr/local/lib/python3.11/dist-packages && "
        "echo /opt/test-boto3 > /usr/local/lib/python3.11/dist-packages/music-e2e-boto3.pth; }"
    )
    name = f"music-e2e-build-{os.getpid()}"
    podman("rm", "-f", name, check=False)
    try:
        podman("run", "--name", name, BASE_IMAGE, "/bin/sh", "-c", script, timeout=1800)
        podman("commit", "--quiet", "--change", 'CMD ["/sbin/init"]', name, tag, timeout=600)
    finally:
        podman("rm", "-f", name, check=False)
    return tag


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> None:
    """Containers, loop devices, images and networks of earlier runs whose process is gone."""
    proc = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}} {{.Labels}}", check=False)
    for line in proc.stdout.splitlines():
        name = line.split()[0]
        owner = podman("inspect", "--format", f"{{{{index .Config.Labels \"{LABEL}\"}}}}", name, check=False).stdout.strip()
        if owner.isdigit() and not _pid_alive(int(owner)):
            podman("rm", "-f", "-t", "0", name, check=False)
    if not CACHE.is_dir():
        return
    for run_dir in CACHE.iterdir():
        if not run_dir.name.isdigit() or _pid_alive(int(run_dir.name)):
            continue
        for img in run_dir.rglob("*.img"):
            for dev in run("losetup", "--noheadings", "--output", "NAME", "--associated", str(img), check=False).stdout.split():
                run("losetup", "--detach", dev, check=False)
        podman("network", "rm", "-f", f"music-e2e-{run_dir.name}", check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


class Hosts:
    """The instances and volumes moto knows, made real. Called from moto's request threads."""

    def __init__(self, run_dir: Path, network: str, image: str, env: dict[str, str]) -> None:
        self.dir = run_dir
        self.network = network
        self.image = image
        self.env = env
        self.prefix = f"music-e2e-{os.getpid()}-"
        self.lock = threading.RLock()
        self.containers: dict[str, str] = {}        # instance id -> container name
        self.loops: dict[str, tuple[str, str]] = {}  # volume id -> (instance id, /dev/loopN)
        self.log: list[str] = []                   # what happened, for test messages
        (self.dir / "volumes").mkdir(parents=True, exist_ok=True)
        (self.dir / "snapshots").mkdir(parents=True, exist_ok=True)
        keys = " ".join(sorted(env))
        (self.dir / "systemd-env.conf").write_text(
            "[Manager]\nDefaultEnvironment=" + " ".join(f'"{k}={v}"' for k, v in sorted(env.items())) + "\n")
        sudoers = self.dir / "sudoers"
        sudoers.write_text(f'Defaults env_keep += "{keys}"\n')
        sudoers.chmod(0o440)

    # -- files ----------------------------------------------------------------------------
    def volume_image(self, volume_id: str) -> Path:
        return self.dir / "volumes" / f"{volume_id}.img"

    def snapshot_image(self, snapshot_id: str) -> Path:
        return self.dir / "snapshots" / f"{snapshot_id}.img"

    def container(self, instance_id: str) -> str:
        return self.prefix + instance_id

    def container_ip(self, instance_id: str) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return podman("inspect", "--format", fmt, self.container(instance_id)).stdout.strip()

    def running(self) -> list[str]:
        with self.lock:
            return sorted(self.containers)

    def exec(self, instance_id: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return podman("exec", self.container(instance_id), *argv, check=check)

    # -- moto hooks ---------------------------------------------------------------------------
    def launched(self, instance) -> None:
        with self.lock:
            name = self.container(instance.id)
            podman(
                "run", "-d", "--name", name, "--hostname", instance.id.replace("i-", "ip-")[:60],
                "--label", f"{LABEL}={os.getpid()}", "--privileged", "--systemd=always",
                "--network", self.network,
                "-v", f"{SITE_PACKAGES}:/opt/test-host-site-packages:ro",
                "-v", f"{self.dir / 'systemd-env.conf'}:/etc/systemd/system.conf.d/music-e2e.conf:ro",
                "-v", f"{self.dir / 'sudoers'}:/etc/sudoers.d/music-e2e:ro",
                self.image, "/sbin/init")
            self.containers[instance.id] = name
            self.log.append(f"launched {instance.id}")
            for device, mapping in list(instance.block_device_mapping.items()):
                self.attached(mapping.volume_id, instance, device)

    def attached(self, volume_id: str, instance, device: str) -> None:
        with self.lock:
            if instance.id not in self.containers or device in ROOT_DEVICES | {instance.root_device_name}:
                return
            volume = instance.ec2_backend.get_volume(volume_id)
            img = self.volume_image(volume_id)
            if not img.exists():
                snap = self.snapshot_image(volume.snapshot_id) if volume.snapshot_id else None
                if snap is not None and snap.exists():
                    run("cp", "--sparse=always", str(snap), str(img))
                else:
                    img.touch()
            if img.stat().st_size < int(volume.size) * 2**30:
                os.truncate(img, int(volume.size) * 2**30)
            dev = run("losetup", "--find", "--show", str(img)).stdout.strip()
            rdev = os.stat(dev).st_rdev
            link = f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
            uuid = run("blkid", "--match-tag", "UUID", "--output", "value", str(img), check=False).stdout.strip()
            script = (f"[ -b {dev} ] || mknod {dev} b {os.major(rdev)} {os.minor(rdev)}; "
                      f"mkdir -p /dev/disk/by-id /dev/disk/by-uuid; ln -sfn {dev} {link}")
            if uuid:
                script += f"; ln -sfn {dev} /dev/disk/by-uuid/{uuid}"
            self.exec(instance.id, "/bin/sh", "-c", script)
            self.loops[volume_id] = (instance.id, dev)
            self.log.append(f"attached {volume_id} to {instance.id} as {dev}")

    def detached(self, volume_id: str) -> None:
        with self.lock:
            found = self.loops.pop(volume_id, None)
            if found is None:
                return
            instance_id, dev = found
            if instance_id in self.containers:
                link = f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
                self.exec(instance_id, "/bin/sh", "-c",
                          f"rm -f {link}; for l in /dev/disk/by-uuid/*; do [ \"$(readlink $l)\" = {dev} ] && rm -f $l; done; true",
                          check=False)
            run("losetup", "--detach", dev, check=False)
            self.log.append(f"detached {volume_id} ({dev})")

    def terminating(self, instance_id: str) -> None:
        with self.lock:
            name = self.containers.pop(instance_id, None)
            if name:
                podman("rm", "-f", "-t", "0", name, check=False)
                self.log.append(f"terminated {instance_id}")

    def deleted_volume(self, volume_id: str) -> None:
        with self.lock:
            self.detached(volume_id)
            self.volume_image(volume_id).unlink(missing_ok=True)

    def snapshotted(self, volume_id: str, snapshot_id: str) -> None:
        with self.lock:
            img = self.volume_image(volume_id)
            if img.exists():
                run("cp", "--sparse=always", str(img), str(self.snapshot_image(snapshot_id)))
                self.log.append(f"snapshot {snapshot_id} of {volume_id}")

    def deleted_snapshot(self, snapshot_id: str) -> None:
        self.snapshot_image(snapshot_id).unlink(missing_ok=True)

    def stop(self) -> None:
        with self.lock:
            for instance_id in list(self.containers):
                self.terminating(instance_id)
            for volume_id in list(self.loops):
                self.detached(volume_id)
            for img in self.dir.rglob("*.img"):
                for dev in run("losetup", "--noheadings", "--output", "NAME", "--associated", str(img),
                               check=False).stdout.split():
                    run("losetup", "--detach", dev, check=False)


_hosts: Hosts | None = None
_patched = False


def _patch_moto() -> None:
    """Follow moto's EC2 backend: each hook runs after (or, for termination, before) moto's own."""
    global _patched
    if _patched:
        return
    from moto.ec2.models.elastic_block_store import EBSBackend
    from moto.ec2.models.instances import InstanceBackend

    run_instances = InstanceBackend.run_instances
    terminate_instances = InstanceBackend.terminate_instances
    attach_volume = EBSBackend.attach_volume
    detach_volume = EBSBackend.detach_volume
    delete_volume = EBSBackend.delete_volume
    create_snapshot = EBSBackend.create_snapshot
    delete_snapshot = EBSBackend.delete_snapshot

    def p_run_instances(self, *args, **kwargs):
        reservation = run_instances(self, *args, **kwargs)
        if _hosts is not None:
            for instance in reservation.instances:
                _hosts.launched(instance)
        return reservation

    def p_terminate_instances(self, instance_ids):
        if _hosts is not None:
            for instance_id in instance_ids:
                _hosts.terminating(instance_id)
        return terminate_instances(self, instance_ids)

    def p_attach_volume(self, volume_id, instance_id, device_path, delete_on_termination=False):
        attachment = attach_volume(self, volume_id, instance_id, device_path, delete_on_termination)
        if _hosts is not None and attachment is not None:
            _hosts.attached(volume_id, self.get_instance(instance_id), device_path)
        return attachment

    def p_detach_volume(self, volume_id, instance_id, device_path):
        if _hosts is not None:
            _hosts.detached(volume_id)
        return detach_volume(self, volume_id, instance_id, device_path)

    def p_delete_volume(self, volume_id):
        volume = delete_volume(self, volume_id)
        if _hosts is not None:
            _hosts.deleted_volume(volume_id)
        return volume

    def p_create_snapshot(self, volume_id, *args, **kwargs):
        snapshot = create_snapshot(self, volume_id, *args, **kwargs)
        if _hosts is not None:
            _hosts.snapshotted(volume_id, snapshot.id)
        return snapshot

    def p_delete_snapshot(self, snapshot_id):
        snapshot = delete_snapshot(self, snapshot_id)
        if _hosts is not None:
            _hosts.deleted_snapshot(snapshot_id)
        return snapshot

    # Bucket policies: moto ignores a Bool condition, so the provisioned TLS-only deny
    # (Bool aws:SecureTransport false) refuses every request. The harness speaks plain HTTP on
    # its private test network in place of AWS's TLS endpoints: requests are evaluated as the
    # TLS requests they stand for, i.e. without the statements that apply to plain HTTP only.
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def _plain_http_only(statement: dict) -> bool:
        cond = statement.get("Condition") or {}
        value = (cond.get("Bool") or {}).get("aws:SecureTransport")
        return list(cond) == ["Bool"] and str(value).lower() == "false"

    def p_get_permission(self, action, resource):
        if self.policy is None:
            return PermissionResult.NEUTRAL
        doc = json.loads(self.policy.decode())
        statements = doc.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        doc["Statement"] = [st for st in statements if not _plain_http_only(st)]
        if not doc["Statement"]:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps(doc)).is_action_permitted(action, resource)

    FakeBucket.get_permission = p_get_permission
    InstanceBackend.run_instances = p_run_instances
    InstanceBackend.terminate_instances = p_terminate_instances
    EBSBackend.attach_volume = p_attach_volume
    EBSBackend.detach_volume = p_detach_volume
    EBSBackend.delete_volume = p_delete_volume
    EBSBackend.create_snapshot = p_create_snapshot
    EBSBackend.delete_snapshot = p_delete_snapshot
    _patched = True


class GatewayMoto(MotoServer):
    """moto on the test network's gateway: the controller and the containers reach it, nothing else."""

    def __init__(self, address: str) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://{address}:{self.port}"
        self._server = ThreadedMotoServer(ip_address=address, port=self.port, verbose=False)


class Harness:
    """One isolated AWS world: a podman network, moto on its gateway, hosts as containers."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.dir = CACHE / str(self.pid)
        self.network = f"music-e2e-{self.pid}"
        self.anchor = f"music-e2e-{self.pid}-gateway"
        self.moto: GatewayMoto | None = None
        self.hosts: Hosts | None = None
        self.gateway = ""

    def start(self) -> "Harness":
        global _hosts
        ensure_podman()
        remove_leftovers()
        image = host_image()
        self.dir.mkdir(parents=True, exist_ok=True)
        podman("network", "rm", "-f", self.network, check=False)
        podman("network", "create", "--label", f"{LABEL}={self.pid}", self.network)
        # The network's bridge (and so its gateway address) exists once a container uses it.
        podman("run", "-d", "--rm", "--name", self.anchor, "--label", f"{LABEL}={self.pid}",
               "--network", self.network, BASE_IMAGE, "sleep", "infinity")
        info = json.loads(podman("network", "inspect", self.network).stdout)[0]
        self.gateway = info["subnets"][0]["gateway"]
        moto_fixes.apply()
        _patch_moto()
        self.moto = GatewayMoto(self.gateway).start()
        for _ in range(100):
            try:
                self.moto.reset()
                break
            except OSError:
                time.sleep(0.1)
        host_env = {
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        self.hosts = Hosts(self.dir, self.network, image, host_env)
        _hosts = self.hosts
        return self

    def stop(self) -> None:
        global _hosts
        try:
            if self.hosts is not None:
                self.hosts.stop()
        finally:
            _hosts = None
            if self.moto is not None:
                self.moto.stop()
            podman("rm", "-f", "-t", "0", self.anchor, check=False)
            podman("network", "rm", "-f", self.network, check=False)
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Harness":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the controller's side ------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = self.moto.env() if self.moto else dict(os.environ)
        env.update(podman_env())
        env.update(
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_CONNECTION_PLUGINS=str(CONNECTION_PLUGINS),
            ANSIBLE_PIPELINING="true",
            MUSIC_E2E_PREFIX=self.hosts.prefix if self.hosts else "",
            MUSIC_E2E_HOST_ENV=json.dumps(self.hosts.env if self.hosts else {}),
            ANSIBLE_DEPRECATION_WARNINGS="false",
            ANSIBLE_NOCOLOR="1",
        )
        return env

    def extra_vars(self) -> list[str]:
        return [
            *aws_runs.MOTO_IMAGE,
            "-e", f"music_aws_connection={CONNECTION}",
            "-e", "music_sources_volume_size=1",
            "-e", "music_builds_volume_size=1",
            "-e", json.dumps({"music_rsync_allowed_cidrs": [f"{self.gateway}/32"]}),
        ]

    def playbook(self, name: str, *args: str, json_output: bool = True, timeout: float = 1200,
                 env: dict | None = None, background: bool = False):
        """ansible-playbook -i inventory/aws_ec2.yml playbooks/<name>, hosts as containers."""
        cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", aws_runs.INVENTORY, f"playbooks/{name}",
               *self.extra_vars(), *args]
        run_env = self.env()
        if json_output:
            run_env.update(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
        run_env.update(env or {})
        if background:
            return subprocess.Popen(cmd, cwd=ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        proc = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=timeout)
        # The last run of each playbook stays for reading after a failure (task timings too).
        keep = ROOT / ".tmp" / "aws-e2e"
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"{name}.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        return parse_run(proc.returncode, proc.stdout, proc.stderr)

    def upload_library(self, library: Path, bucket: str) -> int:
        s3 = self.moto.client("s3")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        count = 0
        for path in sorted(library.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), bucket, str(path.relative_to(library)))
                count += 1
        return count


def parse_run(rc: int, stdout: str, stderr: str) -> aws_runs.Run:
    result = aws_runs.Run(rc, stdout, stderr)
    start = stdout.find("{")
    if start >= 0:
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(stdout[start:])
            result.stats = doc.get("stats", {})
            result.plays = doc.get("plays", [])
    return result
