"""Helpers for the rotation tests: snapshots "in the past" on the in-process moto server.

moto stamps a snapshot's StartTime with `utcnow()` as imported by its EBS model at
creation; the session moto server runs in this process, so patching that name while
creating snapshots through the real API dates them. For the 10,000-snapshot lineage the
snapshots are put straight into moto's EC2 backend (the module still lists and deletes
them through the API).
"""
from __future__ import annotations

import contextlib
import json
import logging
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

import moto.ec2.models.elastic_block_store as moto_ebs
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

from .moto import REGION

ROOT = Path(__file__).resolve().parents[2]
UTC = timezone.utc


@contextlib.contextmanager
def clock(moment: datetime):
    """Make moto's EBS model believe it is `moment` (UTC)."""
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    with mock.patch.object(moto_ebs, "utcnow", return_value=naive):
        yield


def _indexed_get_tags(self):
    """moto's TaggedEC2Resource.get_tags, by dict lookup instead of a scan of every tag."""
    if not self.id:
        return []
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    return [{"resource_id": self.id, "key": key, "value": value, "resource_type": resource_type}
            for key, value in self.ec2_backend.tags.get(self.id, {}).items()]


@contextlib.contextmanager
def indexed_moto_tags():
    """Same answers, linear time: moto 5.2.5 scans all tags of the account for each resource's
    tags, which makes DescribeSnapshots with tag filters quadratic (4 s for 1,000 snapshots,
    tens of minutes for 10,000). Real EC2 filters server-side at scale."""
    with mock.patch.object(TaggedEC2Resource, "get_tags", _indexed_get_tags):
        yield


def backend():
    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION]


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def snapshot_at(ec2, volume_id: str, moment: datetime, tags: dict[str, str]) -> str:
    """CreateSnapshot through the API, dated `moment`."""
    with clock(moment):
        return ec2.create_snapshot(
            VolumeId=volume_id,
            Description="test snapshot %s" % moment.isoformat(),
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}],
        )["SnapshotId"]


def bulk_snapshots(volume_id: str, moments: list[datetime], tags: dict[str, str]) -> list[str]:
    """Many snapshots straight into moto's backend (an API call each would be ~100x slower)."""
    be = backend()
    ids = []
    for moment in moments:
        snap = be.create_snapshot(volume_id, "bulk test snapshot")
        snap.start_time = moment.astimezone(UTC).replace(tzinfo=None)
        ids.append(snap.id)
    be.create_tags(ids, tags)
    return ids


def tagged(ec2, tags: dict[str, str]) -> dict[str, dict]:
    """The account's snapshots carrying all `tags`, by id."""
    filters = [{"Name": "tag:%s" % k, "Values": [v]} for k, v in tags.items()]
    found = {}
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=filters):
        for snap in page["Snapshots"]:
            found[snap["SnapshotId"]] = snap
    return found


def playbook(aws, path: str, *args: str, extra_vars: dict | None = None, json_output: bool = True,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run a real ansible-playbook against the moto server from the repository root."""
    env = aws.env()
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    cmd = [str(ROOT / ".venv/bin/ansible-playbook"), path, *args]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, failures(proc) or proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc


def failures(proc: subprocess.CompletedProcess) -> str:
    """The messages of failed tasks in json callback output ("" if it is not json)."""
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return ""
    found = []
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get("localhost", {})
            for item in result.get("results", [result]):
                if item.get("failed"):
                    found.append("%s: %s" % (task["task"]["name"], item.get("msg")))
    return "\n".join(found) + proc.stderr[-2000:]


def task_results(proc: subprocess.CompletedProcess, task_name: str) -> list[dict]:
    """Per-item results of the task named `task_name` (json callback output)."""
    report = json.loads(proc.stdout)
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == task_name:
                result = task["hosts"]["localhost"]
                return result.get("results", [result])
    raise AssertionError("task %r not in the output" % task_name)


def changed_count(proc: subprocess.CompletedProcess) -> int:
    return json.loads(proc.stdout)["stats"]["localhost"]["changed"]


# An independent statement of the default policy (last 3, daily 7, weekly 4, monthly 12),
# grouping everything first, to compute what must survive a lineage.
def expected_survivors(moments: dict[str, datetime], last=3, daily=7, weekly=4, monthly=12) -> set[str]:
    ordered = sorted(moments, key=lambda sid: (moments[sid], sid), reverse=True)
    keep = set(ordered[:last])
    for n, key in ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
                   (monthly, lambda t: (t.year, t.month))):
        newest_per_bucket = {}
        for sid in ordered:  # newest first: the first one seen in a bucket is its newest
            newest_per_bucket.setdefault(key(moments[sid]), sid)
        buckets = sorted(newest_per_bucket.values(), key=lambda sid: moments[sid], reverse=True)
        keep |= set(buckets[:n])
    return keep


def hours_from(start: datetime, count: int) -> list[datetime]:
    return [start + timedelta(hours=i) for i in range(count)]


# The in-process moto server logs every request; 10,000 deletes would flood the report.
logging.getLogger("werkzeug").setLevel(logging.WARNING)
