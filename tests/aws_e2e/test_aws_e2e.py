"""The AWS playbooks end to end with their host plays: moto for the API, a podman container
for every instance, a loop-mounted image for every EBS volume (devkit/music_devkit/aws_hosts.py).

One world for the module, in order: site.yml on a small library (an rsync client pulls every
profile); a sync with nothing new; a second compile with nothing changed, run as AWX runs the `compile` job template,
and a serve that keeps the server on its volume; then a new album with a corrupt track: a
worker killed in the middle of its build, and the compile after it, which resumes and fails the
corrupt track alone; last, a server that cannot serve, kept when it was already serving and
terminated when this run launched it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import mutagen
import pytest

from music_devkit import aws
from music_devkit import awx_jobs as awx
from music_devkit.aws_hosts import parse_run
from music_devkit.library import make_library

SOURCES_BUCKET = "music-sources-123456789012"  # moto's account
ROOT_TMP = Path(__file__).resolve().parents[2] / ".tmp" / "aws-e2e"  # runs kept for reading

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


def test_site_runs_through_with_host_plays(harness, site, library, tmp_path):
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
    # An rsync client pulls every profile: each holds every track of the library, under the
    # tags of its source, and decodes.
    want = sorted(_tags(p) for p in library.rglob("*.flac"))
    for profile in PROFILES:
        pulled = tmp_path / profile
        proc = subprocess.run(["rsync", "-rt", f"rsync://{ip}/{profile}/", f"{pulled}/"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        audio = sorted(p for p in pulled.rglob("*") if p.suffix in (".flac", ".opus", ".mp3"))
        assert sorted(_tags(p) for p in audio) == want, profile
        decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(audio[0]), "-f", "null", "-"],
                                 capture_output=True, text=True)
        assert decoded.returncode == 0 and decoded.stderr == "", (audio[0], decoded.stderr)


def _tags(path) -> tuple[str, ...]:
    audio = mutagen.File(path, easy=True)
    tags = [(audio.get(key) or [""])[0] for key in ("artist", "album", "title", "tracknumber")]
    tags[3] = str(int(tags[3].split("/")[0] or 0))  # "3/12" and "03" are both track 3
    return tuple(tags)


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


def _extra_vars(args: list[str]) -> dict:
    """The harness's -e arguments as the extra vars a user would give at launch."""
    out: dict = {}
    for flag, value in zip(args[::2], args[1::2]):
        assert flag == "-e"
        if value.startswith("{"):
            out.update(json.loads(value))
        else:
            key, _, val = value.partition("=")
            out[key] = val
    return out


def _compile_job(harness, base):
    """The `compile` job template run as AWX runs it (devkit/music_devkit/awx_jobs.py): a
    project sync, an inventory update of inventory/aws_ec2.yml into an executable inventory
    script, the template's extra vars and survey defaults, AWX's environment and credential (no
    region: every AWS call carries music_aws_region), ansible-runner with AWX's callback."""
    rendered = awx.render_awx(base / "awx.json")
    template = dict(next(t for t in rendered["job_templates"] if t["name"] == "compile"))
    template["name"] = f"{rendered['names']['project']} compile"
    template["extra_vars"] = {**rendered["common_extra_vars"], **template["extra_vars"]}
    template["timeout"] = int(template["timeout_minutes"]) * 60
    henv = harness.env()
    keep = ("AWS_ENDPOINT_URL", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "ANSIBLE_CONNECTION_PLUGINS",
            "ANSIBLE_PIPELINING", "MUSIC_E2E_PREFIX", "MUSIC_E2E_HOST_ENV")
    task_env = {k: henv[k] for k in keep if k in henv}  # the harness's connection and hosts
    credential = awx.credential_env("testing", "testing", "testing")
    synced = base / "projects" / "music"
    awx.copy_project(synced / "project")
    awx.install_requirements_collections(synced / "requirements_collections")
    update = base / "update"
    shutil.copytree(synced, update, symlinks=True)
    inventory = awx.import_inventory(awx.Inventory(), awx.inventory_update(
        update, "inventory/aws_ec2.yml", rendered["inventory_source_vars"], credential,
        {"AWS_ENDPOINT_URL": henv["AWS_ENDPOINT_URL"]}))
    job_dir = base / "job"
    shutil.copytree(synced, job_dir, symlinks=True)
    return awx.run_job(job_dir, template, inventory, credential, extra_vars=_extra_vars(harness.extra_vars()),
                       extra_env=task_env)


def _image_text(harness, snapshot_id: str, path: str) -> str:
    """A file of a snapshot, read from its image (debugfs, nothing mounted)."""
    img = harness.hosts.snapshot_image(snapshot_id)
    proc = subprocess.run(["debugfs", "-R", f'cat "{path}"', str(img)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout, proc.stderr
    return proc.stdout


def test_a_sync_with_nothing_new_takes_no_snapshot(harness, site):
    ec2 = _ec2(harness)
    before = aws.project_snapshots(ec2, lineage="sources")
    run = harness.playbook("sources.yml")
    assert run.rc == 0, aws.summary(run)
    assert "The sync changed nothing: no new sources snapshot" in run.stdout
    assert aws.project_snapshots(ec2, lineage="sources") == before
    assert _running(harness, "volmgr") == []


def test_second_compile_with_nothing_changed_as_an_awx_job(harness, site, tmp_path):
    """The second compile runs as AWX's `compile` job: its worker is reached through the
    inventory AWX gives the job, the build's progress shows in the job's events, and with
    nothing changed it takes no new snapshot."""
    ec2 = _ec2(harness)
    before = aws.project_snapshots(ec2, lineage="builds")
    job = _compile_job(harness, tmp_path)
    assert job.status == "successful", job.summary() + "\n" + "\n".join(harness.hosts.log)
    assert not job.failed_tasks(), job.summary()
    assert _running(harness, "worker") == []
    # The worker's tasks ran on the worker (host events), and the build reported its progress.
    hosts = {e["event_data"].get("host") for e in job.of_type("runner_on_ok")}
    assert any(h and h.startswith("i-") for h in hosts), hosts
    # Nothing changed: no new builds snapshot (so the server keeps its volume), no worker left.
    assert aws.project_snapshots(ec2, lineage="builds") == before
    assert "The build changed no output: no new builds snapshot" in job.stdout, job.stdout[-3000:]
    assert harness.hosts.running() == [s["InstanceId"] for s in _running(harness, "server")]
    # ...so serving again keeps the server on the volume it has: nothing swapped, nothing new.
    server = _running(harness, "server")[0]
    volumes = _server_volumes(harness, server["InstanceId"])
    run = harness.playbook("serve.yml", "-e", "music_target=aws")
    assert run.rc == 0, aws.summary(run)
    assert run.changed == 0, aws.summary(run)
    assert _running(harness, "server")[0]["InstanceId"] == server["InstanceId"]
    assert _server_volumes(harness, server["InstanceId"]) == volumes
    assert len(_rsync(harness, harness.hosts.container_ip(server["InstanceId"]))) >= len(PROFILES)


def _server_volumes(harness, instance_id: str) -> list[str]:
    found = _ec2(harness).describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])
    return sorted(v["VolumeId"] for v in found["Volumes"])


@pytest.fixture(scope="module")
def grown(harness, site, tmp_path_factory):
    """A new album and a corrupt track in the bucket, synced onto a new sources snapshot."""
    root = tmp_path_factory.mktemp("more")
    make_library(str(root), albums=1, tracks=6, seconds=120.0)
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


def _checkpoints(harness) -> list[dict]:
    return aws.project_snapshots(_ec2(harness), lineage="builds-checkpoint")


def test_worker_killed_mid_build_is_terminated_and_the_next_compile_resumes(harness, grown):
    """A compile taking checkpoints (every 3 s here) loses its worker mid-build, after a
    checkpoint that holds outputs: the play fails saying so, snapshots nothing and leaves no
    worker; the next compile resumes from that checkpoint and builds only what is missing."""
    ec2 = _ec2(harness)
    builds_before = aws.project_snapshots(ec2, lineage="builds")
    # One encoder at a time: a build long enough to be caught between a checkpoint and its end.
    proc = harness.playbook("compile.yml", "-e", "music_target=aws", "-e", "music_checkpoint_minutes=0.05",
                            "-e", "worker_progress_interval=2", "-e", "worker_jobs=1", background=True)
    # The playbook's output is read all along (a full pipe would stop it).
    output: dict = {}
    reader = threading.Thread(target=lambda: output.update(zip(("out", "err"), proc.communicate())))
    reader.start()
    killed = checkpoint = outputs_seen = None
    count = (f"find /srv/music/builds/flac /srv/music/builds/phone /srv/music/builds/car -path '*{grown}*' "
             "-type f -name '*.*' | wc -l")
    deadline = time.monotonic() + 600
    while killed is None and reader.is_alive() and time.monotonic() < deadline:
        for worker in _running(harness, "worker"):
            wid = worker["InstanceId"]
            if harness.hosts.exec(wid, "pgrep", "-f", "music-build --sources", check=False).returncode != 0:
                continue
            if outputs_seen is None:
                made = harness.hosts.exec(wid, "sh", "-c", count, check=False).stdout.strip()
                if made.isdigit() and int(made) >= 1:
                    outputs_seen = time.time()
                continue
            later = [c for c in _checkpoints(harness) if c["StartTime"].timestamp() > outputs_seen]
            if later:
                # What a spot reclaim or the time limit does: the instance goes, volumes and all.
                ec2.terminate_instances(InstanceIds=[wid])
                killed, checkpoint = wid, later[-1]["SnapshotId"]
        time.sleep(0.3)
    reader.join(timeout=600)
    run = parse_run(proc.returncode, output.get("out", ""), output.get("err", ""))
    (ROOT_TMP / "compile-killed.out").write_text(run.stdout + "\n--- stderr ---\n" + run.stderr)
    assert killed, "no checkpoint with outputs while the build ran: " + aws.summary(run)
    assert run.rc != 0
    msg = run.failure_messages()
    assert f"The compile on {killed} did not finish cleanly" in msg and "stopped answering" in msg, msg
    assert "No snapshot was taken" in msg and "or checkpoint" in msg
    assert checkpoint in [c["SnapshotId"] for c in _checkpoints(harness)]  # kept for the next run
    assert aws.project_snapshots(ec2, lineage="builds") == builds_before
    assert _running(harness, "worker") == [] and killed not in harness.hosts.running()

    # The next compile starts from the checkpoint and builds what is missing; the corrupt
    # track fails alone: its good outputs are snapshotted, the worker terminated, and the
    # checkpoints go once that snapshot has completed.
    run = harness.playbook("compile.yml", "-e", "music_target=aws")
    assert run.rc != 0
    assert checkpoint in run.stdout, "the compile did not start from the checkpoint " + checkpoint
    assert _checkpoints(harness) == []
    msg = run.failure_messages()
    assert "99 Broken.flac" in msg and "did not finish cleanly" in msg, msg
    assert "snapshotted with the outputs that were built" in msg, msg
    assert _running(harness, "worker") == []
    builds = aws.project_snapshots(ec2, lineage="builds")
    assert len(builds) == len(builds_before) + 1
    built = _image_files(harness, builds[-1]["SnapshotId"], f"/phone/{grown}")
    assert len([n for n in built if n.endswith(".opus")]) == 6, built
    assert not any("Broken" in n for n in built), built
    # Only what the checkpoint did not hold was encoded (6 tracks into 3 profiles at most).
    report = _image_text(harness, builds[-1]["SnapshotId"], "/report.json")
    encoded = sum(p["encoded"] for p in json.loads(report)["profiles"].values())
    assert 0 < encoded < 6 * len(PROFILES), report[:2000]


def test_a_server_that_cannot_serve_ends_clean(harness, site):
    """A failure on the server (here a port rsync cannot use) ends in the final controller step:
    a server that was already serving is kept, serving what it had; a server this run launched
    is terminated. Either way the play fails saying what went wrong."""
    ec2 = _ec2(harness)
    server = _running(harness, "server")[0]["InstanceId"]
    run = harness.playbook("serve.yml", "-e", "music_target=aws", "-e", "server_port=70000")
    assert run.rc != 0
    msg = run.failure_messages()
    assert f"Serving on {server} did not finish" in msg and "server_port" in msg, msg
    assert "already running before this run and was kept" in msg, msg
    assert [i["InstanceId"] for i in _running(harness, "server")] == [server]
    assert len(_rsync(harness, harness.hosts.container_ip(server))) >= len(PROFILES)

    ec2.terminate_instances(InstanceIds=[server])
    run = harness.playbook("serve.yml", "-e", "music_target=aws", "-e", "server_port=70000")
    assert run.rc != 0
    msg = run.failure_messages()
    assert "Serving on i-" in msg and "The server this run launched was terminated" in msg, msg
    assert _running(harness, "server") == []
    assert harness.hosts.running() == []
