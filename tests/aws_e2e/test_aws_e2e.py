"""The AWS playbooks end to end with their host plays: moto for the API, a podman container
for every instance, a loop-mounted image for every EBS volume (devkit/music_devkit/aws_hosts.py).

One world for the module, in order: site.yml on a small library, a second compile with
nothing changed, a corrupt track, a worker killed in the middle of its build.
"""
from __future__ import annotations

import subprocess

import pytest

from music_devkit import aws
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
