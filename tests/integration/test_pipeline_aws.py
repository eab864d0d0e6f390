"""The AWS pipeline's control plane against moto: sources, compile, serve, status, teardown.

What runs: every localhost play of sources.yml, compile.yml (music_target=aws), serve.yml
(music_target=aws), status.yml and teardown.yml, with the real roles (aws_host, snapshot,
aws_status, aws_teardown) and the aws_ec2 inventory.
What does not run here: the host plays (mount, S3 sync, build, rsync) -- moto instances
cannot be logged into; molecule covers those roles on podman hosts. The S3 mirror program the
volmgr runs is exercised below against moto's S3 with real files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from music_devkit import aws as h

# Both modules reset the shared moto server at their start: keep them on one xdist worker
# (pytest -n N --dist loadgroup); without xdist they run one after the other anyway.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("moto_aws_pipeline")]

AWS = ["-e", "music_target=aws"]


def _worker_count(ec2):
    return len(h.project_instances(ec2, states=("pending", "running")))


@pytest.fixture(scope="module")
def pipeline(moto_server):
    """Run the pipeline step by step once, recording what each step left behind."""
    moto_server.reset()
    ec2 = moto_server.client("ec2")
    rec = {"moto": moto_server}

    prov = h.playbook(moto_server, "provision.yml", "-e", "music_nat_gateway=false")
    assert prov.rc == 0, h.summary(prov)

    # Check mode launches nothing.
    rec["sources_check"] = h.playbook(moto_server, "sources.yml", check=True)
    rec["sources_check_instances"] = h.project_instances(ec2)

    # Compile before any sources snapshot: refused, nothing launched.
    rec["compile_early"] = h.playbook(moto_server, "compile.yml", *AWS)
    rec["compile_early_instances"] = h.project_instances(ec2)
    # A checkpoint interval that is not a number: refused before anything is looked up or launched.
    rec["compile_bad_checkpoint"] = h.playbook(moto_server, "compile.yml", *AWS, "-e", "music_checkpoint_minutes=soon")
    rec["compile_bad_checkpoint_instances"] = h.project_instances(ec2)

    rec["sources"] = h.playbook(moto_server, "sources.yml")
    rec["after_sources"] = {
        "instances": h.project_instances(ec2),
        "volumes": h.project_volumes(ec2),
        "snapshots": h.project_snapshots(ec2, lineage="sources"),
    }

    # A worker is still running: the cap (music_max_workers: 1) refuses a second one.
    image = ec2.describe_images(Owners=["137112412989"])["Images"][0]["ImageId"]
    stuck = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=[{
        "ResourceType": "instance",
        "Tags": [{"Key": "Project", "Value": "music"}, {"Key": "Role", "Value": "worker"},
                 {"Key": "Name", "Value": "music-worker-earlier"}]}])["Instances"][0]["InstanceId"]
    rec["stuck"] = stuck
    rec["compile_capped"] = h.playbook(moto_server, "compile.yml", *AWS, "-e", "music_worker_replace_stale=false")
    rec["capped_workers"] = [i["InstanceId"] for i in h.project_instances(ec2)
                             if h.tags(i).get("Role") == "worker"]
    ec2.terminate_instances(InstanceIds=[stuck])

    rec["compile1"] = h.playbook(moto_server, "compile.yml", *AWS)
    rec["builds1"] = h.project_snapshots(ec2, lineage="builds")
    rec["after_compile1_instances"] = h.project_instances(ec2)

    rec["serve1"] = h.playbook(moto_server, "serve.yml", *AWS)
    rec["after_serve1"] = {"instances": h.project_instances(ec2), "volumes": h.project_volumes(ec2)}
    rec["serve2"] = h.playbook(moto_server, "serve.yml", *AWS)

    rec["compile2"] = h.playbook(moto_server, "compile.yml", *AWS)
    rec["builds2"] = h.project_snapshots(ec2, lineage="builds")
    rec["serve3"] = h.playbook(moto_server, "serve.yml", *AWS)
    rec["after_serve3"] = {"instances": h.project_instances(ec2), "volumes": h.project_volumes(ec2)}

    rec["status"] = h.playbook(moto_server, "status.yml")

    rec["teardown"] = h.playbook(moto_server, "teardown.yml")
    rec["after_teardown"] = {
        "instances": h.project_instances(ec2),
        "volumes": h.project_volumes(ec2),
        "snapshots": h.project_snapshots(ec2),
    }
    rec["teardown_all"] = h.playbook(moto_server, "teardown.yml", "-e", "music_teardown_volumes=true",
                                     "-e", "music_teardown_snapshots=true")
    rec["after_teardown_all"] = {"volumes": h.project_volumes(ec2), "snapshots": h.project_snapshots(ec2)}
    return rec


def test_compile_needs_a_sources_snapshot(pipeline):
    run = pipeline["compile_early"]
    assert run.rc != 0
    assert "Lineage=sources" in run.failure_messages() and "sources.yml" in run.failure_messages()
    assert pipeline["compile_early_instances"] == []


def test_a_bad_checkpoint_interval_is_refused_naming_it(pipeline):
    run = pipeline["compile_bad_checkpoint"]
    assert run.rc != 0
    assert "music_checkpoint_minutes must be a number of minutes" in run.failure_messages(), h.summary(run)
    assert pipeline["compile_bad_checkpoint_instances"] == []


def test_check_mode_launches_nothing(pipeline):
    run = pipeline["sources_check"]
    assert run.rc == 0, h.summary(run)
    assert run.changed == 0
    assert pipeline["sources_check_instances"] == []


def test_sources_snapshots_and_terminates_the_volmgr(pipeline):
    run = pipeline["sources"]
    assert run.rc == 0, h.summary(run)
    after = pipeline["after_sources"]
    snaps = after["snapshots"]
    assert len(snaps) == 1
    tags = h.tags(snaps[0])
    assert tags["Project"] == "music" and tags["Lineage"] == "sources"
    assert snaps[0]["Encrypted"] and snaps[0]["VolumeSize"] == 400
    assert after["instances"] == [], "volmgr still running"
    assert after["volumes"] == [], "the sources volume outlived the volmgr"
    volmgr = run.fact("music_aws_volmgr")
    assert volmgr["volumes"]["sources"]["snapshot_id"] == ""  # first run: blank volume
    assert volmgr["volumes"]["sources"]["path"].startswith("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol")


def test_worker_cap_refuses_the_extra_worker(pipeline):
    run = pipeline["compile_capped"]
    assert run.rc != 0
    msg = run.failure_messages()
    assert "Refusing to launch another worker" in msg and pipeline["stuck"] in msg
    assert "music_max_workers" in msg
    assert pipeline["capped_workers"] == [pipeline["stuck"]]


def test_compile_launches_from_snapshots_and_cleans_up(pipeline):
    run = pipeline["compile1"]
    assert run.rc == 0, h.summary(run)
    sources = pipeline["after_sources"]["snapshots"][0]["SnapshotId"]
    worker = run.fact("music_aws_worker")
    assert worker["volumes"]["sources"]["snapshot_id"] == sources
    assert worker["volumes"]["builds"]["snapshot_id"] == ""
    assert worker["name"].startswith("music-worker-")
    builds = pipeline["builds1"]
    assert len(builds) == 1 and h.tags(builds[0])["Lineage"] == "builds"
    assert builds[0]["VolumeId"] == worker["volumes"]["builds"]["id"]
    assert pipeline["after_compile1_instances"] == [], "worker still running after compile"
    # The second compile starts from the first one's builds.
    worker2 = pipeline["compile2"].fact("music_aws_worker")
    assert pipeline["compile2"].rc == 0, h.summary(pipeline["compile2"])
    assert worker2["volumes"]["builds"]["snapshot_id"] == builds[0]["SnapshotId"]
    assert len(pipeline["builds2"]) == 2


def test_the_worker_runs_from_its_launch_template_with_imdsv2_and_its_time_limit_tag(pipeline):
    ec2 = pipeline["moto"].client("ec2")
    worker = pipeline["compile1"].fact("music_aws_worker")
    inst = ec2.describe_instances(InstanceIds=[worker["id"]])["Reservations"][0]["Instances"][0]
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    tags = h.tags(inst)
    assert tags["Project"] == "music" and tags["Role"] == "worker" and tags["TimeLimitMinutes"] == "240"
    assert tags["aws:ec2launchtemplate:id"].startswith("lt-")


def test_serve_keeps_one_server_and_swaps_to_the_newest_build(pipeline):
    assert pipeline["serve1"].rc == 0, h.summary(pipeline["serve1"])
    first = pipeline["after_serve1"]
    servers = [i for i in first["instances"] if h.tags(i)["Role"] == "server"]
    assert len(servers) == 1
    vols = [v for v in first["volumes"] if h.tags(v).get("Lineage") == "builds"]
    assert len(vols) == 1
    assert vols[0]["Encrypted"] and vols[0]["State"] == "in-use"
    assert vols[0]["Attachments"][0]["InstanceId"] == servers[0]["InstanceId"]
    assert h.tags(vols[0])["SourceSnapshot"] == pipeline["builds1"][0]["SnapshotId"]

    again = pipeline["serve2"]
    assert again.rc == 0 and again.changed == 0, h.summary(again)

    assert pipeline["serve3"].rc == 0, h.summary(pipeline["serve3"])
    third = pipeline["after_serve3"]
    assert [i["InstanceId"] for i in third["instances"]] == [servers[0]["InstanceId"]]
    vols3 = [v for v in third["volumes"] if h.tags(v).get("Lineage") == "builds"]
    assert len(vols3) == 1, "the old builds volume was not retired"
    assert h.tags(vols3[0])["SourceSnapshot"] == pipeline["builds2"][-1]["SnapshotId"]
    assert vols3[0]["Attachments"][0]["InstanceId"] == servers[0]["InstanceId"]


def test_status_reports_hosts_storage_and_cost(pipeline):
    run = pipeline["status"]
    assert run.rc == 0, h.summary(run)
    status = run.fact("aws_status_report")
    assert [i["role"] for i in status["instances"]] == ["server"]
    server = status["instances"][0]
    assert server["type"] == "t4g.small" and server["state"] == "running"
    assert float(server["hourly_usd"]) == pytest.approx(0.0184)
    assert float(status["hourly_usd"]) == pytest.approx(0.0184)  # no NAT gateway in this run
    assert server["minutes_left"] is None  # the server has no time limit
    lineages = sorted(s["lineage"] for s in status["snapshots"])
    assert lineages == ["builds", "builds", "sources"]
    assert int(status["snapshot_gib"]) == 400 + 450 + 450
    builds_vol = [v for v in status["volumes"] if v["lineage"] == "builds"]
    assert len(builds_vol) == 1 and int(builds_vol[0]["size_gib"]) == 450
    assert float(builds_vol[0]["monthly_usd"]) == pytest.approx(450 * 0.088)
    shown = "\n".join(str(r.get("msg")) for r in run.task_results("Show the status"))
    assert "per hour" in shown and "/month" in shown


def test_teardown_keeps_volumes_and_snapshots_unless_asked(pipeline):
    assert pipeline["teardown"].rc == 0, h.summary(pipeline["teardown"])
    after = pipeline["after_teardown"]
    assert after["instances"] == []
    assert len(after["snapshots"]) == 3
    assert [h.tags(v)["Lineage"] for v in after["volumes"]] == ["builds"]
    assert pipeline["teardown_all"].rc == 0, h.summary(pipeline["teardown_all"])
    assert pipeline["after_teardown_all"] == {"volumes": [], "snapshots": []}


# --- the volmgr's S3 mirror program, against moto's S3 and a real directory -------------


def _sync(moto, dest, *args):
    prog = h.ROOT / "roles/volmgr/files/music-s3-sync"
    proc = subprocess.run([sys.executable, str(prog), "--bucket", "library", "--dest", str(dest), *args],
                          env=moto.env(), capture_output=True, text=True, timeout=300)
    return proc


@pytest.fixture
def library(moto_server, world_readable_tmp):
    s3 = moto_server.client("s3")
    try:
        s3.create_bucket(Bucket="library", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for obj in s3.list_objects_v2(Bucket="library").get("Contents", []):
        s3.delete_object(Bucket="library", Key=obj["Key"])
    files = {f"Artist/Album {n}/{t:02d} Track.flac": os.urandom(1000 + 37 * t) for n in (1, 2) for t in range(1, 4)}
    files["Artist/Album 1/cover.jpg"] = b"\xff\xd8jpeg"
    for key, body in files.items():
        s3.put_object(Bucket="library", Key=key, Body=body)
    dest = world_readable_tmp / f"sync-{os.getpid()}"
    if dest.exists():
        subprocess.run(["rm", "-rf", str(dest)], check=True)
    dest.mkdir()
    yield s3, files, dest
    subprocess.run(["rm", "-rf", str(dest)], check=True)


def _tree(dest):
    out = {}
    for root, _dirs, names in os.walk(dest):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, dest)
            if not rel.startswith(".music-s3-sync"):
                out[rel] = open(path, "rb").read()
    return out


def test_s3_sync_resumes_without_duplicates_or_losses(moto_server, library):
    s3, files, dest = library
    # An interrupted run: two objects landed, a third was half-written when the host died.
    first = _sync(moto_server, dest, "--max-objects", "2", "--delete")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["downloaded"] == 2
    partial = dest / ".music-s3-sync" / "partial"
    (partial / "leftover").write_bytes(b"half a file")
    assert len(_tree(dest)) == 2

    resumed = _sync(moto_server, dest, "--delete")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["downloaded"] == len(files) - 2 and report["skipped"] == 2
    assert _tree(dest) == files
    assert os.listdir(partial) == []

    again = json.loads(_sync(moto_server, dest, "--delete").stdout)
    assert again["downloaded"] == 0 and again["deleted"] == 0 and again["skipped"] == len(files)

    # One object replaced, one removed from the bucket: only those change locally.
    s3.put_object(Bucket="library", Key="Artist/Album 2/01 Track.flac", Body=b"new take")
    s3.delete_object(Bucket="library", Key="Artist/Album 1/cover.jpg")
    changed = json.loads(_sync(moto_server, dest, "--delete").stdout)
    assert changed["downloaded"] == 1 and changed["deleted"] == 1
    expected = dict(files)
    expected["Artist/Album 2/01 Track.flac"] = b"new take"
    del expected["Artist/Album 1/cover.jpg"]
    assert _tree(dest) == expected


def test_s3_sync_refuses_keys_escaping_the_volume(moto_server, library):
    s3, _files, dest = library
    s3.put_object(Bucket="library", Key="Artist/../../etc/evil", Body=b"x")
    proc = _sync(moto_server, dest)
    assert proc.returncode == 1
    assert "Artist/../../etc/evil" in proc.stderr
    assert _tree(dest) == {}


def test_s3_sync_refuses_to_empty_the_volume_from_a_wrong_prefix(moto_server, library):
    """A wrong prefix lists nothing: the sync would delete the whole volume, so it changes
    nothing and says how to confirm; confirmed, it mirrors."""
    _s3, files, dest = library
    assert _sync(moto_server, dest, "--delete").returncode == 0
    before = _tree(dest)
    wrong = _sync(moto_server, dest, "--delete", "--prefix", "Artits/")
    assert wrong.returncode == 3, wrong.stderr
    assert "would delete 7 of the 7 files" in wrong.stderr and "music_allow_mass_removal=true" in wrong.stderr
    assert "Traceback" not in wrong.stderr and json.loads(wrong.stdout)["would_delete"] == len(files)
    assert _tree(dest) == before == files
    # Fewer than half gone is an ordinary sync.
    for key in sorted(files)[:3]:
        _s3.delete_object(Bucket="library", Key=key)
    few = _sync(moto_server, dest, "--delete")
    assert few.returncode == 0, few.stderr
    assert json.loads(few.stdout)["deleted"] == 3 and len(_tree(dest)) == len(files) - 3
    confirmed = _sync(moto_server, dest, "--delete", "--prefix", "Artits/", "--allow-mass-delete")
    assert confirmed.returncode == 0, confirmed.stderr
    assert json.loads(confirmed.stdout)["deleted"] == len(files) - 3 and _tree(dest) == {}
