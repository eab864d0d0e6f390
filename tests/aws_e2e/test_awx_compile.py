"""The AWX compile job with its host plays, on the AWS end-to-end harness.

The harness (devkit/music_devkit/aws_hosts.py) stands in for AWS: moto for the API, a podman
container for every instance, a loop image for every volume. provision.yml and sources.yml run
as on the command line; then the `music compile` job template runs as AWX runs it
(devkit/music_devkit/awx_jobs.py): an inventory update of inventory/aws_ec2.yml, an
executable inventory script, the template's extra vars and survey defaults, AWX's environment,
ansible-runner with AWX's output callback. The worker it launches is reached through the
inventory AWX gives the job; progress comes from tasks, so it shows in the job's events.

It takes several minutes (three playbooks with their hosts; 15 min on a loaded 2-core
machine), more than the budget of the AWX tests in `make test`: run it with MUSIC_AWX_E2E=1
(as root, like the rest of tests/aws_e2e). It failed while the hosts a job launched had no
connection in an AWX inventory (roles/aws_host now gives them music_aws_connection).
"""
from __future__ import annotations

import json
import os

import pytest

from music_devkit import aws
from music_devkit import awx_jobs as awx
from music_devkit.library import make_library

SOURCES_BUCKET = "music-sources-123456789012"  # moto's account

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MUSIC_AWX_E2E") != "1",
                       reason="several minutes: run with MUSIC_AWX_E2E=1 (docs/awx.md, Tests)"),
]


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


def test_the_compile_job_runs_its_host_plays_as_awx_runs_it(harness, tmp_path_factory):
    library = tmp_path_factory.mktemp("library")
    make_library(str(library), albums=1, tracks=2, seconds=1.0)
    assert harness.upload_library(library, SOURCES_BUCKET) >= 2
    for name in ("provision.yml", "sources.yml"):
        run = harness.playbook(name)
        assert run.rc == 0, f"{name}: " + aws.summary(run)

    base = tmp_path_factory.mktemp("awx")
    rendered = awx.render_awx(base / "awx.json")
    template = dict(next(t for t in rendered["job_templates"] if t["name"] == "compile"))
    template["name"] = f"{rendered['names']['project']} compile"
    template["extra_vars"] = {**rendered["common_extra_vars"], **template["extra_vars"]}
    template["timeout"] = int(template["timeout_minutes"]) * 60

    henv = harness.env()
    keep = ("AWS_ENDPOINT_URL", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "ANSIBLE_CONNECTION_PLUGINS",
            "ANSIBLE_PIPELINING", "MUSIC_E2E_PREFIX", "MUSIC_E2E_HOST_ENV")
    # The harness's own settings (its connection plugin, the hosts' environment); no region, as
    # AWX's AWS credential gives none: every AWS call carries music_aws_region.
    task_env = {k: henv[k] for k in keep if k in henv}
    credential = awx.credential_env("testing", "testing", "testing")

    synced = base / "projects" / "music"
    awx.copy_project(synced / "project")
    awx.install_requirements_collections(synced / "requirements_collections")
    import shutil

    update = base / "update"
    shutil.copytree(synced, update, symlinks=True)
    inventory = awx.import_inventory(awx.Inventory(), awx.inventory_update(
        update, "inventory/aws_ec2.yml", rendered["inventory_source_vars"], credential,
        {"AWS_ENDPOINT_URL": henv["AWS_ENDPOINT_URL"]}))
    job_dir = base / "job"
    shutil.copytree(synced, job_dir, symlinks=True)
    job = awx.run_job(job_dir, template, inventory, credential, extra_vars=_extra_vars(harness.extra_vars()),
                      extra_env=task_env)
    assert job.status == "successful", job.summary() + "\n" + "\n".join(harness.hosts.log)
    assert not job.failed_tasks(), job.summary()
    ec2 = harness.moto.client("ec2")
    assert len(aws.project_snapshots(ec2, lineage="builds")) == 1
    assert [i for i in aws.project_instances(ec2) if aws.tags(i).get("Role") == "worker"] == []
    # The worker's tasks ran on the worker (host events), and the build reported its progress.
    hosts = {e["event_data"].get("host") for e in job.of_type("runner_on_ok")}
    assert any(h and h.startswith("i-") for h in hosts), hosts
    assert "built" in job.stdout.lower() or "progress" in job.stdout.lower(), job.stdout[-3000:]
