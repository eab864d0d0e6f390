"""Run the AWS playbooks against the local moto server and read what they did.

The playbooks are run as a user would run them (ansible-playbook, the aws_ec2 inventory),
pointed at moto through the environment. Two settings stand in for what moto cannot offer:
- the image: moto has no Debian image, so the newest Amazon Linux arm64 image that moto
  ships is selected through the ordinary music_ami_owner / music_ami_name variables;
- hosts: moto instances cannot be logged into, so the host plays are skipped with
  music_aws_host_plays=false and --limit localhost (the control plane runs in full).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import moto_fixes

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = "inventory/aws_ec2.yml"
MOTO_IMAGE = [
    "-e", "music_ami_owner=137112412989",
    "-e", "music_ami_name=al2023-ami-2023*-arm64",
]
CONTROL_PLANE_ONLY = ["-e", "music_aws_host_plays=false", "--limit", "localhost"]
# With --limit, the implicit localhost is only matched when an inventory names it.
CONTROLLER_INVENTORY = """all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""


def controller_inventory() -> str:
    path = ROOT / ".tmp" / "controller-inventory.yml"
    path.parent.mkdir(exist_ok=True)
    if not path.exists() or path.read_text() != CONTROLLER_INVENTORY:
        path.write_text(CONTROLLER_INVENTORY)
    return str(path)


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    stats: dict = field(default_factory=dict)
    plays: list = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.stats.get("localhost", {}).get("changed", 0)

    @property
    def failed(self) -> int:
        return self.stats.get("localhost", {}).get("failures", 0)

    def task_results(self, name_part: str) -> list[dict]:
        """Results on localhost of every task whose name contains name_part."""
        out = []
        for play in self.plays:
            for task in play["tasks"]:
                if name_part in task["task"]["name"]:
                    res = task["hosts"].get("localhost")
                    if res is not None:
                        out.append(res)
        return out

    def fact(self, name: str):
        """Last value set_fact gave `name` on localhost."""
        value = None
        for play in self.plays:
            for task in play["tasks"]:
                res = task["hosts"].get("localhost", {})
                facts = res.get("ansible_facts", {})
                if name in facts:
                    value = facts[name]
                for item in res.get("results", []) or []:
                    if isinstance(item, dict) and name in item.get("ansible_facts", {}):
                        value = item["ansible_facts"][name]
        return value

    def failure_messages(self) -> str:
        msgs = []
        for play in self.plays:
            for task in play["tasks"]:
                for res in task["hosts"].values():
                    if res.get("failed"):
                        msgs.append(str(res.get("msg", "")))
                    for item in res.get("results", []) or []:
                        if isinstance(item, dict) and item.get("failed"):
                            msgs.append(str(item.get("msg", "")))
        return "\n".join(msgs)


def playbook(moto, name: str, *args: str, check: bool = False, control_plane_only: bool = True,
             env: dict | None = None) -> Run:
    """ansible-playbook -i inventory/aws_ec2.yml playbooks/<name> against moto; JSON output."""
    moto_fixes.apply()
    cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", INVENTORY, f"playbooks/{name}", *MOTO_IMAGE]
    if control_plane_only:
        cmd += ["-i", controller_inventory(), *CONTROL_PLANE_ONLY]
    cmd += list(args)
    if check:
        cmd += ["--check", "--diff"]
    run_env = moto.env()
    run_env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_NOCOLOR="1",
    )
    run_env.update(env or {})
    proc = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=900)
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    start = proc.stdout.find("{")
    if start >= 0:
        try:
            doc = json.loads(proc.stdout[start:])
            run.stats = doc.get("stats", {})
            run.plays = doc.get("plays", [])
        except json.JSONDecodeError:
            pass
    return run


def tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", []) or []}


def project_instances(ec2, project: str = "music", states=("pending", "running", "stopping", "stopped")):
    found = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:Project", "Values": [project]},
                 {"Name": "instance-state-name", "Values": list(states)}])
    for page in pages:
        for res in page["Reservations"]:
            found.extend(res["Instances"])
    return found


def project_snapshots(ec2, project: str = "music", lineage: str | None = None):
    filters = [{"Name": "tag:Project", "Values": [project]}]
    if lineage:
        filters.append({"Name": "tag:Lineage", "Values": [lineage]})
    snaps = []
    for page in ec2.get_paginator("describe_snapshots").paginate(Filters=filters):
        snaps.extend(page["Snapshots"])
    return sorted(snaps, key=lambda s: s["StartTime"])


def project_volumes(ec2, project: str = "music"):
    vols = []
    for page in ec2.get_paginator("describe_volumes").paginate(
            Filters=[{"Name": "tag:Project", "Values": [project]}]):
        vols.extend(page["Volumes"])
    return vols


def policy_doc(raw) -> dict:
    return json.loads(raw) if isinstance(raw, str) else raw


def summary(run: Run) -> str:
    """Short text for assertion messages."""
    tail = re.sub(r"\s+", " ", run.stderr[-1500:])
    return f"rc={run.rc} stats={run.stats} failures={run.failure_messages()[:2000]} stderr={tail}"


def env_without_aws() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
