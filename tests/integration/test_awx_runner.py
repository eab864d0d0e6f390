"""Every AWX job template and both workflows, run the way AWX runs a job, against moto.

Each job is what AWX 24.6 would do on launch (devkit/music_devkit/awx_jobs.py): the inventory
source inventory/aws_ec2.yml is updated first (update_on_launch: ansible-inventory --list
--export against moto, imported as AWX stores it), then ansible-runner runs the template's
playbook in a fresh private data folder: the project checkout, an executable inventory
script, the extra vars AWX writes (template extra vars, survey defaults or answers, awx_*
variables), the credential's AWS_* variables and AWX's own environment
(ANSIBLE_INVENTORY_UNPARSED_FAILED=True). Status and events are read from runner's artifacts.

What the test adds, as a user would at launch: the AMI moto offers (music_ami_owner/name), no
NAT gateway, and the control plane only -- music_aws_host_plays=false with the job limit
localhost (moto's instances cannot be logged into; localhost is added to the AWX inventory by
hand, as tests/integration's controller inventory does on the command line). AWS_ENDPOINT_URL
points the jobs at moto (AWX's AWX_TASK_ENV setting would carry it). No job is given a region
(AWX's AWS credential sets none, and this process's AWS_* variables are kept from the jobs):
every AWS call of the playbooks and roles carries music_aws_region. The compile template with
its host plays runs on the AWS harness in tests/aws_e2e/test_aws_e2e.py (its second compile).
"""
from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from music_devkit import aws as h
from music_devkit import awx_jobs as awx
from music_devkit import moto_fixes

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("moto_aws_pipeline")]

TEST_VARS = {
    "music_aws_host_plays": False,
    "music_ami_owner": "137112412989",
    "music_ami_name": "al2023-ami-2023*-arm64",
    "music_nat_gateway": False,
}
CREDENTIAL = awx.credential_env("testing", "testing", "testing")  # no region, as AWX's
REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")


class Awx:
    """The AWX objects playbooks/awx.yml renders, launched against moto."""

    def __init__(self, moto, rendered: dict, base) -> None:
        self.moto = moto
        self.rendered = rendered
        self.base = base
        self.templates = {}
        for t in rendered["job_templates"]:
            t = dict(t)
            t["extra_vars"] = {**rendered["common_extra_vars"], **t["extra_vars"]}
            t["timeout"] = int(t["timeout_minutes"]) * 60
            t["name"] = f"{rendered['names']['project']} {t['name']}"   # its name in AWX
            self.templates[t["name"]] = t
        self.inventory = awx.Inventory(name=rendered["names"]["inventory"])
        self.inventory.add_host("localhost", {"ansible_connection": "local",
                                              "ansible_python_interpreter": "{{ ansible_playbook_python }}"})
        self.jobs: list[awx.Job] = []
        # The project sync: one checkout and its collections, copied into every job's folder.
        self.synced = base / "projects" / "music"
        awx.copy_project(self.synced / "project")
        awx.install_requirements_collections(self.synced / "requirements_collections")
        self.source_hosts: set[str] = set()
        self.updates = 0

    def _folder(self, kind: str) -> "os.PathLike":
        pdd = self.base / f"awx_{len(self.jobs) + self.updates + 1}_{kind}"
        shutil.copytree(self.synced, pdd, symlinks=True)
        return pdd

    def update_inventory(self) -> dict:
        self.updates += 1
        data = awx.inventory_update(self._folder("inventory_update"), "inventory/aws_ec2.yml",
                                    self.rendered["inventory_source_vars"], CREDENTIAL,
                                    {"AWS_ENDPOINT_URL": self.moto.url})
        awx.import_inventory(self.inventory, data, self.source_hosts)
        self.source_hosts = set(self.inventory.source_hosts)
        return data

    def launch(self, name: str, *, answers=None, workflow=None, extra_vars=None, limit="localhost",
               extra_env=None, **kw) -> awx.Job:
        template = self.templates[name]
        self.update_inventory()
        moto_fixes.apply()
        job = awx.run_job(self._folder("job"), template, self.inventory, CREDENTIAL,
                          job_id=len(self.jobs) + 1, answers=answers, workflow=workflow, limit=limit,
                          extra_vars={**TEST_VARS, **(extra_vars or {})},
                          extra_env={"AWS_ENDPOINT_URL": self.moto.url, **(extra_env or {})}, **kw)
        self.jobs.append(job)
        return job

    def workflow(self, name: str, *, approve=True, answers=None) -> awx.WorkflowRun:
        spec = next(w for w in self.rendered["workflows"] if w["name"] == name)
        variables = dict(answers or awx.survey_defaults(spec.get("survey")))
        info = {"name": f"{self.rendered['names']['project']} {name}", "launch_type": "manual"}
        return awx.run_workflow(info["name"], self.rendered["workflow_nodes"][name],
                                lambda jt: self.launch(jt, workflow=info, extra_vars=variables),
                                approve=approve, notify_on_error=self.rendered["notify_on_error"] or ["(none)"])


@pytest.fixture(scope="module")
def world(moto_server, tmp_path_factory):
    """The administrator's sequence, recorded: workflow too early, provision, a check compile,
    the pipeline workflow, the scheduled rotate, the teardown workflow denied then approved."""
    moto_server.reset()
    base = tmp_path_factory.mktemp("awx")
    rendered = awx.render_awx(base / "awx.json")
    ec2 = moto_server.client("ec2")
    a = Awx(moto_server, rendered, base)
    rec = {"awx": a, "ec2": ec2}
    rec["early"] = a.workflow("pipeline")
    rec["provision"] = a.launch("music provision", answers=awx.survey_answers(a.templates["music provision"]["survey"]))
    rec["check"] = a.launch("music compile", job_type="check", diff_mode=True,
                            answers=awx.survey_answers(a.templates["music compile"]["survey"]))
    rec["check_instances"] = h.project_instances(ec2)
    rec["pipeline"] = a.workflow("pipeline")
    rec["after_pipeline"] = {"instances": h.project_instances(ec2), "sources": h.project_snapshots(ec2, lineage="sources"),
                             "builds": h.project_snapshots(ec2, lineage="builds")}
    rec["inventory_after_pipeline"] = a.update_inventory()
    rec["rotate"] = a.launch("music rotate", workflow=None, launch_type="scheduled")
    rec["teardown_denied"] = a.workflow("teardown", approve=False)
    rec["after_denied"] = h.project_instances(ec2)
    rec["teardown"] = a.workflow("teardown", approve=True)
    rec["after_teardown"] = h.project_instances(ec2)
    print("job seconds:", [(j.template, round(j.seconds, 1)) for j in a.jobs])
    return rec


def _job_env(job: awx.Job) -> dict:
    """The environment ansible-runner gave the job's ansible-playbook (artifacts/<ident>/command)."""
    commands = list((job.private_data_dir / "artifacts").glob("*/command"))
    assert len(commands) == 1, commands
    return json.loads(commands[0].read_text())["env"]


def _ok(job: awx.Job):
    assert job.status == "successful" and job.rc == 0, job.summary()
    assert job.stats and not (job.stats.get("failures") or {}), job.summary()
    assert not job.failed_tasks(), job.summary()


def test_every_job_template_ran_through_ansible_runner(world):
    ran = {job.template for job in world["awx"].jobs}
    assert ran == set(world["awx"].templates), f"not run: {set(world['awx'].templates) - ran}"


def test_provision_runs_with_the_surveys_answers(world):
    job = world["provision"]
    _ok(job)
    assert job.extra_vars["music_worker_instance_type"] == "c7g.4xlarge"
    assert job.extra_vars["music_worker_spot"] == "false"
    assert job.changed_on("localhost") > 0
    # The roles are this repository's, by FQCN, resolved from the project checkout.
    assert any(name.startswith("music.profiles.aws_provision : ") for name in job.task_names())


def test_a_workflow_launched_before_provision_fails_at_its_first_node_and_notifies(world):
    run = world["early"]
    assert run.status == "failed"
    assert list(run.nodes) == ["sources"] and run.nodes["sources"].awx_status == "failed"
    assert run.not_run == ["compile", "serve", "status"]
    assert run.notified, "a failed workflow sends its error notifications"
    # The job failed in a task of the playbook (not at inventory parsing) and says why.
    failed = run.nodes["sources"].failed_tasks()
    assert failed and "localhost" in failed[0], run.nodes["sources"].summary()


def test_compile_in_check_mode_launches_nothing(world):
    job = world["check"]
    _ok(job)
    cmdline = (job.private_data_dir / "env" / "cmdline").read_text().split()
    assert "--check" in cmdline and "--diff" in cmdline
    assert world["check_instances"] == []
    assert job.changed_on("localhost") == 0


def test_the_pipeline_workflow_runs_every_node_to_the_end(world):
    run = world["pipeline"]
    assert run.status == "successful", {k: v if isinstance(v, str) else v.summary() for k, v in run.nodes.items()}
    assert list(run.nodes) == ["sources", "compile", "serve", "status"] and run.not_run == []
    for job in run.nodes.values():
        _ok(job)
        assert job.extra_vars["awx_workflow_job_name"] == "music pipeline"
    after = world["after_pipeline"]
    assert len(after["sources"]) == 1 and len(after["builds"]) == 1
    # Only the server is left running; the aws_ec2 source finds it in the groups aws and server.
    assert [h.tags(i)["Role"] for i in after["instances"]] == ["server"]
    server = after["instances"][0]["InstanceId"]
    inventory = world["inventory_after_pipeline"]
    assert server in inventory["server"]["hosts"] and server in inventory["aws"]["hosts"]
    assert inventory["aws"]["vars"]["ansible_connection"] == "{{ music_aws_connection }}"
    # The status job reports what AWX's job output shows.
    status = run.nodes["status"].stdout
    assert "Project music in eu-west-1" in status


def test_the_compile_job_got_what_awx_gives_a_job(world):
    job = world["pipeline"].nodes["compile"]
    pdd = job.private_data_dir
    script = pdd / "inventory" / "hosts"
    assert script.stat().st_mode & stat.S_IXUSR and script.read_text().startswith("#! /usr/bin/env python3")
    extravars = (pdd / "env" / "extravars").read_text()
    for key in ("awx_job_id", "tower_job_template_name", "music_target", "music_aws_region", "music_project"):
        assert key in extravars
    settings = json.loads((pdd / "env" / "settings").read_text())
    assert settings["job_timeout"] == int(world["awx"].templates["music compile"]["timeout_minutes"]) * 60
    # The survey's multiselect default is not a list, so AWX leaves it out of a workflow
    # node's job: the playbook's own default (every profile) applies.
    assert "music_build_profiles" not in job.extra_vars
    assert (pdd / "artifacts" / "1").exists() or any((pdd / "artifacts").iterdir())


def test_rotate_runs_as_its_schedule_launches_it(world):
    job = world["rotate"]
    _ok(job)
    assert job.extra_vars["awx_job_launch_type"] == "scheduled"
    # Launched without answers: every survey default AWX accepts is an extra var.
    for question in world["awx"].templates["music rotate"]["survey"]["spec"]:
        assert job.extra_vars[question["variable"]] == question["default"]


def test_teardown_waits_for_its_approval(world):
    denied = world["teardown_denied"]
    assert denied.status == "failed" and denied.nodes == {"approve": "denied"} and denied.not_run == ["teardown"]
    assert [h.tags(i)["Role"] for i in world["after_denied"]] == ["server"]
    run = world["teardown"]
    assert run.status == "successful"
    _ok(run.nodes["teardown"])
    assert world["after_teardown"] == []


def test_a_job_past_its_timeout_is_ended_and_shown_failed(world):
    a = world["awx"]
    job = a.launch("music status", timeout=3)
    # The status play takes longer than 3 s: runner ends it, AWX shows it failed.
    assert job.status == "timeout" and job.awx_status == "failed"
    assert job.explanation == "Job terminated due to timeout"


def test_without_the_script_inventory_plugin_every_job_fails_to_parse(world):
    """What AWX jobs did before ansible.cfg enabled ansible.builtin.script."""
    a = world["awx"]
    job = a.launch("music status", extra_env={
        "ANSIBLE_INVENTORY_ENABLED": "amazon.aws.aws_ec2,ansible.builtin.yaml,ansible.builtin.ini"})
    assert job.status == "failed"
    assert "No inventory was parsed" in job.stdout


def test_jobs_need_no_region_setting(world, monkeypatch, tmp_path):
    """AWX's AWS credential sets no region and no job is given one: every AWS call carries
    music_aws_region. This machine's own region (set here, as a shell may have it) and AWS
    config file must not reach the job, as they would not reach a job in AWX's container."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    no_config = tmp_path / "aws_config"
    no_config.write_text("")
    job = world["awx"].launch("music provision", job_type="check", extra_env={"AWS_CONFIG_FILE": str(no_config)})
    env = _job_env(job)
    assert [k for k in REGION_VARIABLES if k in env] == [], {k: v for k, v in env.items() if k.startswith("AWS_")}
    _ok(job)
    # It got as far as the calls that failed without a region (the account lookup, IAM).
    names = job.task_names()
    assert "music.profiles.aws_provision : Find the AWS account" in names, names
    assert "music.profiles.aws_provision : Create one IAM role and instance profile per host kind" in names, names
    # Nor did any job of the recorded sequence get a region from its environment.
    for ran in world["awx"].jobs:
        assert [k for k in REGION_VARIABLES if k in _job_env(ran)] == [], ran.template
