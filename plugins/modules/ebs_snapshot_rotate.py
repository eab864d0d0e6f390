#!/usr/bin/python
# -*- coding: utf-8 -*-

# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: ebs_snapshot_rotate
short_description: Prune EBS snapshot lineages with a grandfather-father-son policy
description:
  - Lists the account's own EBS snapshots that carry all of O(tags), groups them into
    lineages by the value of the O(group_by) tag, and deletes those that no retention rule keeps.
  - The rules work as in borg prune / restic forget. For O(keep_daily=N), among the UTC days that
    hold at least one of the lineage's completed snapshots, the N most recent such days are taken
    and the newest snapshot of each is kept. O(keep_hourly), O(keep_weekly) (ISO weeks),
    O(keep_monthly) and O(keep_yearly) (calendar months and years) work the same way.
    O(keep_last=N) keeps the N newest; O(keep_within) keeps every snapshot newer than now minus
    the duration. The keep set is the union of the rules.
  - Never deleted, whatever the policy says - the newest completed snapshot of each lineage;
    snapshots whose state is not C(completed); snapshots referenced by a block device mapping of
    any AMI the account owns; snapshots managed by Data Lifecycle Manager (a tag key starting with
    C(aws:dlm:)); snapshots without the O(group_by) tag; snapshots outside the tag selection.
  - A delete refused with C(InvalidSnapshot.InUse) is skipped with a warning and the run goes on.
  - Deletes are retried with jittered backoff when the API throttles, oldest snapshot first, so an
    interrupted run leaves the newest snapshots and a rerun finishes the job.
  - In check mode nothing is deleted and RV(deleted) lists what would be. With C(--diff) each
    lineage is shown before and after.
options:
  tags:
    description:
      - Only snapshots carrying every one of these tags (key and value) are considered.
      - Must not be empty, so a mistake cannot select every snapshot of the account.
    type: dict
    required: true
  group_by:
    description:
      - Name of the tag whose value names the lineage. The policy is applied to each lineage
        separately. Snapshots without this tag are kept and reported.
    type: str
    default: Lineage
  keep_last:
    description: Keep the N newest completed snapshots of each lineage.
    type: int
    default: 0
  keep_hourly:
    description: Keep the newest snapshot of each of the N most recent UTC hours that hold one.
    type: int
    default: 0
  keep_daily:
    description: Keep the newest snapshot of each of the N most recent UTC days that hold one.
    type: int
    default: 0
  keep_weekly:
    description: Keep the newest snapshot of each of the N most recent ISO weeks that hold one.
    type: int
    default: 0
  keep_monthly:
    description: Keep the newest snapshot of each of the N most recent calendar months that hold one.
    type: int
    default: 0
  keep_yearly:
    description: Keep the newest snapshot of each of the N most recent calendar years that hold one.
    type: int
    default: 0
  keep_within:
    description:
      - Keep every snapshot that started less than this long ago.
      - A number followed by V(h), V(d), V(w), V(m) (31 days) or V(y) (365 days); parts add up,
        for example V(36h), V(14d), V(1d12h).
    type: str
notes:
  - A policy that keeps nothing (every C(keep_*) zero and no O(keep_within)) is refused.
  - Needs C(ec2:DescribeSnapshots), C(ec2:DescribeImages) and C(ec2:DeleteSnapshot); the last one
    can be limited by a condition on the snapshot tags (C(aws:ResourceTag/Project)).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - music.profiles contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Prune the sources and builds lineages of the music project
  ebs_snapshot_rotate:
    tags:
      Project: music
    group_by: Lineage
    keep_last: 3
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 12

- name: Keep everything from the last day and a half, then one a day for two weeks
  ebs_snapshot_rotate:
    tags:
      Project: music
      Lineage: builds
    keep_within: 36h
    keep_daily: 14
  check_mode: true
  register: rotation

- name: Show what would go
  ansible.builtin.debug:
    var: rotation.deleted
"""

RETURN = r"""
deleted:
  description: Snapshot ids deleted (in check mode, that would be deleted), oldest first.
  returned: always
  type: list
  elements: str
  sample: ["snap-0123456789abcdef0"]
kept:
  description: Every selected snapshot that stays, with the rules that keep it.
  returned: always
  type: list
  elements: dict
  contains:
    snapshot_id:
      description: The snapshot id.
      type: str
      sample: snap-0fedcba9876543210
    lineage:
      description: Value of the O(group_by) tag, null if the snapshot has none.
      type: str
      sample: builds
    reasons:
      description:
        - Why it stays. Policy rules are V(last), V(hourly), V(daily), V(weekly), V(monthly),
          V(yearly), V(within); protections are V(newest), V(not-completed), V(ami),
          V(dlm-managed), V(no-group-tag) and V(in-use) (a delete refused as in use).
      type: list
      elements: str
      sample: ["newest", "last", "daily", "weekly", "monthly"]
lineages:
  description: Per lineage, how many snapshots there were, were kept and deleted.
  returned: always
  type: dict
  sample:
    builds:
      total: 400
      kept: 24
      deleted: 376
      newest: snap-0fedcba9876543210
      newest_time: "2025-01-31T02:00:00+00:00"
      oldest_kept_time: "2024-02-29T02:00:00+00:00"
api_calls:
  description: API requests made, by operation (pages for the list calls).
  returned: always
  type: dict
  sample: {"describe_snapshots": 1, "describe_images": 1, "delete_snapshot": 376}
"""

from datetime import datetime
from datetime import timezone

try:
    import botocore
except ImportError:
    pass  # Handled by AnsibleAWSModule

from ansible_collections.music.profiles.plugins.module_utils.snapshot_policy import REASON_IN_USE
from ansible_collections.music.profiles.plugins.module_utils.snapshot_policy import PolicyError
from ansible_collections.music.profiles.plugins.module_utils.snapshot_policy import Policy
from ansible_collections.music.profiles.plugins.module_utils.snapshot_policy import Snapshot
from ansible_collections.music.profiles.plugins.module_utils.snapshot_policy import plan

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict

PAGE_SIZE = 1000


def _argument_spec():
    return dict(
        tags=dict(type="dict", required=True),
        group_by=dict(type="str", default="Lineage"),
        keep_last=dict(type="int", default=0),
        keep_hourly=dict(type="int", default=0),
        keep_daily=dict(type="int", default=0),
        keep_weekly=dict(type="int", default=0),
        keep_monthly=dict(type="int", default=0),
        keep_yearly=dict(type="int", default=0),
        keep_within=dict(type="str"),
    )


def _selection(module):
    """The tags that select the snapshots and the tag that names their lineage.

    The argument_spec cannot say "not empty": an empty selection would match every snapshot of
    the account, so it is refused here.
    """
    tags = module.params["tags"]
    if not tags:
        module.fail_json(msg="tags must name at least one tag: an empty selection would match every "
                             "snapshot of the account")
    if not module.params["group_by"]:
        module.fail_json(msg="group_by must name a tag")
    return tags, module.params["group_by"]


def _policy(module):
    """The retention policy the keep_* options describe; refused when invalid or when it keeps nothing."""
    params = module.params
    try:
        return Policy(
            keep_last=params["keep_last"], keep_hourly=params["keep_hourly"], keep_daily=params["keep_daily"],
            keep_weekly=params["keep_weekly"], keep_monthly=params["keep_monthly"],
            keep_yearly=params["keep_yearly"], keep_within=params["keep_within"],
        )
    except PolicyError as e:
        module.fail_json(msg=str(e))


@AWSRetry.jittered_backoff()
def _list_snapshots(client, tags, counter):
    paginator = client.get_paginator("describe_snapshots")
    filters = [{"Name": "tag:%s" % key, "Values": [str(value)]} for key, value in sorted(tags.items())]
    found = []
    counter["describe_snapshots"] = 0
    pages = paginator.paginate(OwnerIds=["self"], Filters=filters, PaginationConfig={"PageSize": PAGE_SIZE})
    for page in pages:
        counter["describe_snapshots"] += 1
        found.extend(page.get("Snapshots", []))
    return found


@AWSRetry.jittered_backoff()
def _ami_snapshot_ids(client, counter):
    paginator = client.get_paginator("describe_images")
    ids = set()
    counter["describe_images"] = 0
    pages = paginator.paginate(Owners=["self"], IncludeDeprecated=True, IncludeDisabled=True,
                               PaginationConfig={"PageSize": PAGE_SIZE})
    for page in pages:
        counter["describe_images"] += 1
        for image in page.get("Images", []):
            for mapping in image.get("BlockDeviceMappings", []):
                snapshot_id = mapping.get("Ebs", {}).get("SnapshotId")
                if snapshot_id:
                    ids.add(snapshot_id)
    return ids


def _as_snapshot(described):
    """A describe_snapshots entry as the planner's Snapshot."""
    return Snapshot(described["SnapshotId"], described["StartTime"], described.get("State", ""),
                    boto3_tag_list_to_ansible_dict(described.get("Tags", [])))


def _list_candidates(module, client, tags, calls):
    """The account's snapshots carrying every tag of the selection, and the ids of those its AMIs use."""
    try:
        listed = _list_snapshots(client, tags, calls)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Failed to list the account's snapshots tagged %s" % (tags,))
    try:
        ami_ids = _ami_snapshot_ids(client, calls)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Failed to list the account's AMIs to find the snapshots they use")
    return [_as_snapshot(s) for s in listed], ami_ids


def _decide(module, snapshots, policy, now, group_by, ami_ids):
    """The plan: which snapshots go (oldest first) and which stay, and why."""
    try:
        return plan(snapshots, policy, now, group_by=group_by, ami_snapshot_ids=ami_ids)
    except PolicyError as e:
        module.fail_json(msg=str(e))


def _delete_planned(module, client, result, calls):
    """Delete what the plan says, oldest first; returns the ids deleted and those already gone.

    Throttling is retried (the client's AWSRetry); a snapshot in use stays, with a warning and the
    reason in-use; one already gone is left out, with a warning; any other error stops the run,
    saying what was deleted before it.
    """
    deleted = []
    vanished = set()
    for snapshot_id in result.delete:
        calls["delete_snapshot"] += 1
        try:
            client.delete_snapshot(SnapshotId=snapshot_id, aws_retry=True)
        except is_boto3_error_code("InvalidSnapshot.InUse") as e:
            module.warn("Snapshot %s is in use and was kept: %s" % (snapshot_id, e.response["Error"].get("Message", "")))
            result.keep_instead(snapshot_id, REASON_IN_USE)
            continue
        except is_boto3_error_code("InvalidSnapshot.NotFound"):
            module.warn("Snapshot %s was already gone when it was to be deleted" % snapshot_id)
            vanished.add(snapshot_id)
            continue
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
            module.fail_json_aws(
                e, msg="Failed to delete snapshot %s of lineage %s (deleted %d before it)"
                % (snapshot_id, result.lineage_of.get(snapshot_id), len(deleted)),
                deleted=deleted,
            )
        deleted.append(snapshot_id)
    return deleted, vanished


def _outcome(result, deleted, calls, with_diff):
    """The module's return values (and, with --diff, each lineage before and after)."""
    outcome = dict(
        changed=bool(deleted),
        deleted=deleted,
        kept=result.kept_list(),
        lineages=result.summary(),
        api_calls=calls,
    )
    if with_diff:
        outcome["diff"] = result.diff()
    return outcome


def main():
    module = AnsibleAWSModule(
        argument_spec=_argument_spec(),
        supports_check_mode=True,
    )
    tags, group_by = _selection(module)
    policy = _policy(module)

    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    calls = {"describe_snapshots": 0, "describe_images": 0, "delete_snapshot": 0}
    now = datetime.now(timezone.utc)
    snapshots, ami_ids = _list_candidates(module, client, tags, calls)
    result = _decide(module, snapshots, policy, now, group_by, ami_ids)

    if module.check_mode:
        deleted = list(result.delete)
    else:
        deleted, vanished = _delete_planned(module, client, result, calls)
        result.record_deletes(deleted, vanished)

    module.exit_json(**_outcome(result, deleted, calls, module._diff))


if __name__ == "__main__":
    main()
