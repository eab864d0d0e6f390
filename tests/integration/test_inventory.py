"""inventory/aws_ec2.yml against moto: only this project's live hosts, grouped by Role."""
from __future__ import annotations

import json
import subprocess

import pytest

from music_devkit import aws as h


def _launch(ec2, image, **tags):
    res = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t4g.small",
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    return res["Instances"][0]["InstanceId"]


# Own project names, so that no moto reset is needed and other tests' instances do not show.
PROJECT = "invtest"
OTHER = "invother"


@pytest.fixture(scope="module")
def fleet(moto_server):
    aws = moto_server
    ec2 = aws.client("ec2")
    image = ec2.describe_images(Owners=["137112412989"])["Images"][0]["ImageId"]
    ids = {
        "volmgr": _launch(ec2, image, Project=PROJECT, Role="volmgr", Name="volmgr", SsmBucket="invtest-ssm-x"),
        "worker": _launch(ec2, image, Project=PROJECT, Role="worker", Name="worker-1", SsmBucket="invtest-ssm-x"),
        "server": _launch(ec2, image, Project=PROJECT, Role="server", Name="server", SsmBucket="invtest-ssm-x"),
        "gone": _launch(ec2, image, Project=PROJECT, Role="worker", Name="worker-0"),
        "other": _launch(ec2, image, Project=OTHER, Role="worker", Name="other-worker"),
        "untagged": _launch(ec2, image, Name="someone-elses"),
    }
    ec2.terminate_instances(InstanceIds=[ids["gone"]])
    yield aws, ids
    ec2.terminate_instances(InstanceIds=[i for k, i in ids.items() if k != "gone"])


def _inventory(aws, repo_root, *args, env=None):
    run_env = aws.env()
    run_env["MUSIC_PROJECT"] = PROJECT
    run_env.update(env or {})
    proc = subprocess.run([str(repo_root / ".venv/bin/ansible-inventory"), "-i", "inventory/aws_ec2.yml", *args],
                          cwd=repo_root, env=run_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_graph_groups_project_hosts_by_role(fleet, repo_root):
    aws, ids = fleet
    graph = _inventory(aws, repo_root, "--graph")
    lines = [line.strip(" |-") for line in graph.splitlines()]
    groups = {}
    current = None
    for line in lines:
        if line.startswith("@"):
            current = line[1:].rstrip(":")
            groups.setdefault(current, [])
        elif line and current:
            groups[current].append(line)
    assert groups["volmgr"] == [ids["volmgr"]]
    assert groups["worker"] == [ids["worker"]]
    assert groups["server"] == [ids["server"]]
    everything = graph
    for absent in ("gone", "other", "untagged"):
        assert ids[absent] not in everything, f"{absent} instance listed:\n{graph}"


def _plain(value):
    """ansible-inventory marks templated strings as {"__ansible_unsafe": text}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_hosts_are_reached_through_session_manager(fleet, repo_root):
    aws, ids = fleet
    inv = json.loads(_inventory(aws, repo_root, "--list"))
    hv = _plain(inv["_meta"]["hostvars"][ids["worker"]])
    # The group aws gives every EC2 host the connection music_aws_connection names
    # (group_vars/aws.yml), Session Manager by default; the launched hosts join the same group.
    assert "aws" in inv and ids["worker"] in inv["aws"]["hosts"]
    assert hv["ansible_connection"] == "{{ music_aws_connection }}"
    assert hv["music_aws_connection"] == "amazon.aws.aws_ssm"
    assert hv["ansible_aws_ssm_bucket_name"] == "invtest-ssm-x"
    assert hv["ansible_aws_ssm_region"] == "eu-west-1"
    assert hv["ansible_become"] is True
    assert hv["music_aws_role"] == "worker"


def test_project_is_chosen_by_environment(fleet, repo_root):
    aws, ids = fleet
    graph = _inventory(aws, repo_root, "--graph", env={"MUSIC_PROJECT": OTHER})
    assert ids["other"] in graph
    assert ids["worker"] not in graph and ids["server"] not in graph
