"""The AWS playbooks end to end with their host plays: moto for the API, a podman container
for every instance, a loop-mounted image for every EBS volume (devkit/music_devkit/aws_hosts.py).

One world for the module, in order: site.yml on a small library, a second compile with
nothing changed, then a new album with a corrupt track: a worker killed in the middle of its
build, and the compile after it, which resumes and fails the corrupt track alone.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from music_devkit import aws
from music_devkit.aws_hosts import parse_run
from music_devkit.library import make_library

SOURCES_BUCKET = "music-sources-123456789012"  # moto's account

pytestmark = pytest.mark.slow

ALBUMS, TRACKS = 2, 2
PROFILES = ("flac", "phone", "car")


def _ec2(harness):
    return harness.moto.client("ec2")


def _running(harness, role: str) -> list[dict]:
    return [i for i in aws.project_instances(_ec2(harness), states=("pending", "running", "stopping", "stopped"))
            if aws.tags(i).get("Role") == role]


def _rsync(harness, server_ip: str, module: str = "") -> list[str]:
    proc = subprocess.run(["rsync", "--recursive", "--list-only", f"rsync://{server_ip}/{module}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.fixture(scope="module")
def library(tmp_path_factory, harness):
    root = tmp_path_factory.mktemp("library")
    make_library(str(root), albums=ALBUMS, tracks=TRACKS, seconds=1.0)
    assert harness.upload_library(root, SOURCES_BUCKET) >= ALBUMS * TRACKS
    return root


@pytest.fixture(scope="module")
def site(harness, library):
    run = harness.playbook("site.yml")
    assert run.rc == 0, aws.summary(run) + "\n" + "\n".join(harness.hosts.log)
    return run


def test_site_runs_through_with_host_plays(harness, site):
    ec2 = _ec2(harness)
    assert len(aws.project_snapshots(ec2, lineage="sources")) == 1
    assert len(aws.project_snapshots(ec2, lineage="builds")) == 1
    # The volmgr and the worker are gone (their containers with them); the server serves.
    assert _running(harness, "volmgr") == [] and _running(harness, "worker") == []
    servers = _running(harness, "server")
    assert len(servers) == 1
    assert harness.hosts.running() == [servers[0]["InstanceId"]]
    ip = harness.hosts.container_ip(servers[0]["InstanceId"])
    modules = {line.split()[0] for line in _rsync(harness, ip) if line.strip()}
    assert set(PROFILES) <= modules, modules
    for profile in PROFILES:
        audio = [line for line in _rsync(harness, ip, profile + "/")
                 if line.rsplit(".", 1)[-1] in ("flac", "opus", "mp3")]
        assert len(audio) == ALBUMS * TRACKS, (profile, audio)


def test_launched_hosts_get_the_ssm_agent_and_curl_from_user_data(harness, site):
    """What cloud-init would run (it does not run in the containers): checked as a script."""
    import base64

    import yaml

    ec2 = _ec2(harness)
    for role in ("volmgr", "worker", "server"):
        version = ec2.describe_launch_template_versions(
            LaunchTemplateName=f"music-{role}", Versions=["$Latest"])["LaunchTemplateVersions"][0]
        text = base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()
        assert text.startswith("#cloud-config\n")
        config = yaml.safe_load(text)
        assert {"python3", "curl"} <= set(config["packages"])
        script = config["runcmd"][0][-1]
        assert "amazon-ssm-agent" in script and "command -v curl" in script and "poweroff" in script
        assert "amazon-ssm-eu-west-1/latest/debian_${arch}/amazon-ssm-agent.deb" in script
        check = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr


def _image_files(harness, snapshot_id: str, folder: str) -> list[str]:
    """Names in a folder of a builds snapshot, read from its image (debugfs, nothing mounted)."""
    img = harness.hosts.snapshot_image(snapshot_id)
    proc = subprocess.run(["debugfs", "-R", f'ls -p "{folder}"', str(img)], capture_output=True, text=True)
    names = []
    for line in proc.stdout.splitlines():
        # /inode/mode/uid/gid/name/size/
        parts = line.strip().strip("/").split("/")
        if len(parts) >= 6 and parts[4] not in (".", ".."):
            names.append(parts[4])
    return names


def test_second_compile_with_nothing_changed(harness, site):
    ec2 = _ec2(harness)
    before = aws.project_snapshots(ec2, lineage="builds")
    run = harness.playbook("compile.yml", "-e", "music_target=aws")
    assert run.rc == 0, aws.summary(run)
    assert _running(harness, "worker") == []
    # Nothing changed: no new builds snapshot (so the server keeps its volume), no worker left.
    assert aws.project_snapshots(ec2, lineage="builds") == before
    assert "The build changed no output: no new builds snapshot" in run.stdout
    assert harness.hosts.running() == [s["InstanceId"] for s in _running(harness, "server")]


@pytest.fixture(scope="module")
def grown(harness, site, tmp_path_factory):
    """A new album and a corrupt track in the bucket, synced onto a new sources snapshot."""
    root = tmp_path_factory.mktemp("more")
    make_library(str(root), albums=1, tracks=6, seconds=20.0)
    album = next(p for p in root.rglob("*.flac")).parent
    new_album = "Late Additions"
    s3 = harness.moto.client("s3")
    for path in sorted(album.iterdir()):
        s3.upload_file(str(path), SOURCES_BUCKET, f"{new_album}/{path.name}")
    s3.put_object(Bucket=SOURCES_BUCKET, Key=f"{new_album}/99 Broken.flac", Body=b"fLaC" + b"\0" * 4096)
    run = harness.playbook("sources.yml")
    assert run.rc == 0, aws.summary(run)
    assert len(aws.project_snapshots(_ec2(harness), lineage="sources")) == 2
    return new_album


def test_worker_killed_mid_build_is_terminated_and_the_next_compile_resumes(harness, grown):
    ec2 = _ec2(harness)
    builds_before = aws.project_snapshots(ec2, lineage="builds")
    proc = harness.playbook("compile.yml", "-e", "music_target=aws", background=True)
    killed = None
    deadline = time.monotonic() + 600
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        for worker in _running(harness, "worker"):
            found = harness.hosts.exec(worker["InstanceId"], "pgrep", "-f", "music-build --sources", check=False)
            if found.returncode == 0:
                # What a spot reclaim or the time limit does: the instance goes, volumes and all.
                ec2.terminate_instances(InstanceIds=[worker["InstanceId"]])
                killed = worker["InstanceId"]
        time.sleep(0.3)
    out, err = proc.communicate(timeout=600)
    run = parse_run(proc.returncode, out, err)
    assert killed, "the build never started: " + aws.summary(run)
    assert run.rc != 0
    msg = run.failure_messages()
    assert f"The compile on {killed} did not finish cleanly" in msg and "stopped answering" in msg, msg
    assert "No snapshot was taken" in msg
    assert aws.project_snapshots(ec2, lineage="builds") == builds_before
    assert _running(harness, "worker") == [] and killed not in harness.hosts.running()

    # The next compile starts from the last good builds snapshot and builds what is missing;
    # the corrupt track fails alone: its good outputs are snapshotted, the worker terminated.
    run = harness.playbook("compile.yml", "-e", "music_target=aws")
    assert run.rc != 0
    msg = run.failure_messages()
    assert "99 Broken.flac" in msg and "did not finish cleanly" in msg, msg
    assert "snapshotted with the outputs that were built" in msg, msg
    assert _running(harness, "worker") == []
    builds = aws.project_snapshots(ec2, lineage="builds")
    assert len(builds) == len(builds_before) + 1
    built = _image_files(harness, builds[-1]["SnapshotId"], f"/phone/{grown}")
    assert len([n for n in built if n.endswith(".opus")]) == 6, built
    assert not any("Broken" in n for n in built), built
