"""playbooks/rotate.yml and the ebs_snapshot_rotate module against a local moto server.

Snapshots are dated in the past by patching the in-process moto server's clock; the
playbook runs as a real ansible-playbook subprocess and the result is read back with boto3.
"""
from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

from music_devkit import moto_fixes
import pytest

from music_devkit.rotate_world import (
    backend,
    bulk_snapshots,
    changed_count,
    clock,
    expected_survivors,
    hours_from,
    indexed_moto_tags,
    playbook,
    snapshot_at,
    tag_list,
    tagged,
    task_results,
)

pytestmark = pytest.mark.slow

UTC = timezone.utc
ROTATE = "playbooks/rotate.yml"
PRUNE = "Prune the snapshots of each lineage"
MUSIC = {"Project": "music"}


@pytest.fixture(autouse=True)
def _moto_like_ec2():
    # Real EC2's answers where moto 5.2 differs (blank volumes' SnapshotId, ...).
    moto_fixes.apply()
    with indexed_moto_tags():
        yield


def new_volume(ec2) -> str:
    return ec2.create_volume(AvailabilityZone="eu-west-1a", Size=1, Encrypted=True)["VolumeId"]


def daily_2024(hour: int) -> list[datetime]:
    return [datetime(2024, 1, 1, hour, tzinfo=UTC) + timedelta(days=i) for i in range(366)]


# The 20 days the default policy keeps out of a year of daily snapshots (2024):
# the last 7 days (which hold the last 3), the Sundays ending ISO weeks 51 and 50,
# and the last day of each month January..November.
KEPT_DAYS_2024 = ({date(2024, 12, d) for d in range(25, 32)}
                  | {date(2024, 12, 22), date(2024, 12, 15)}
                  | {date(2024, m + 1, 1) - timedelta(days=1) for m in range(1, 12)})


@pytest.fixture
def year_of_compiles(aws):
    """Two lineages with a year of daily snapshots and every kind the module must not delete."""
    ec2 = aws.client("ec2")
    vol = new_volume(ec2)
    world = {"aws": aws, "ec2": ec2, "sources": {}, "builds": {}}
    for lineage, hour in (("sources", 2), ("builds", 4)):
        for moment in daily_2024(hour):
            sid = snapshot_at(ec2, vol, moment, {**MUSIC, "Lineage": lineage, "Name": "music-" + lineage})
            world[lineage][sid] = moment

    # Outside the selection: another project's builds, and a music snapshot with no lineage.
    world["foreign"] = snapshot_at(ec2, vol, datetime(2024, 2, 10, tzinfo=UTC), {"Project": "other", "Lineage": "builds"})
    world["no_lineage"] = snapshot_at(ec2, vol, datetime(2024, 2, 11, tzinfo=UTC), MUSIC)

    # An AMI of this account built from a builds snapshot (moto makes the AMI's own snapshot).
    image_id = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    with clock(datetime(2024, 3, 15, 12, tzinfo=UTC)):
        ami = ec2.create_image(InstanceId=instance, Name="music-builds-image")["ImageId"]
    ami_snap = ec2.describe_images(ImageIds=[ami])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    ec2.create_tags(Resources=[ami_snap], Tags=tag_list({**MUSIC, "Lineage": "builds"}))
    world["ami"] = ami_snap

    be = backend()
    # Managed by Data Lifecycle Manager (which sets aws:dlm:* tags; users cannot).
    world["dlm"] = snapshot_at(ec2, vol, datetime(2024, 4, 20, 12, tzinfo=UTC), {**MUSIC, "Lineage": "builds"})
    be.create_tags([world["dlm"]], {"aws:dlm:lifecycle-policy-id": "policy-0123456789abcdef0"})
    # Still being copied.
    world["pending"] = snapshot_at(ec2, vol, datetime(2024, 5, 5, 12, tzinfo=UTC), {**MUSIC, "Lineage": "builds"})
    be.snapshots[world["pending"]].status = "pending"
    # Taken into use by an AMI this account does not own (found only when the delete is refused).
    world["in_use"] = snapshot_at(ec2, vol, datetime(2024, 6, 6, 12, tzinfo=UTC), {**MUSIC, "Lineage": "builds"})
    someone_elses = next(a for a in be.amis.values() if a.owner_id != be.account_id)
    be.snapshots[world["in_use"]].from_ami = someone_elses.id
    return world


def test_a_year_of_daily_compiles_leaves_exactly_what_the_policy_names(year_of_compiles):
    world = year_of_compiles
    ec2 = world["ec2"]
    before = set(tagged(ec2, MUSIC)) | {world["foreign"]}

    # --check --diff: says what would go, deletes nothing, shows each lineage before and after.
    proc = playbook(world["aws"], ROTATE, "--check", "--diff", json_output=False)
    assert set(tagged(ec2, MUSIC)) | {world["foreign"]} == before
    assert "lineage sources (366 snapshots)" in proc.stdout
    assert "lineage sources (20 snapshots)" in proc.stdout
    assert "lineage builds (370 snapshots)" in proc.stdout
    assert "would delete 346" in proc.stdout  # sources; builds: 366 + 4 - 20 - 3 protected
    assert "would delete 347" in proc.stdout  # builds: the in-use one is only found by deleting
    assert "changed=1" in proc.stdout

    proc = playbook(world["aws"], ROTATE)
    results = {r["item"]: r for r in task_results(proc, PRUNE)}
    assert changed_count(proc) == 1

    # sources: the 20 days, nothing else.
    left = tagged(ec2, {**MUSIC, "Lineage": "sources"})
    assert {s["StartTime"].date() for s in left.values()} == KEPT_DAYS_2024
    assert len(left) == 20
    assert sorted(results["sources"]["deleted"]) == sorted(set(world["sources"]) - set(left))

    # builds: the same 20 days plus the four protected snapshots.
    left = tagged(ec2, {**MUSIC, "Lineage": "builds"})
    protected = {world["ami"], world["dlm"], world["pending"], world["in_use"]}
    assert protected <= set(left)
    assert {left[s]["StartTime"].date() for s in set(left) - protected} == KEPT_DAYS_2024
    assert len(left) == 24
    reasons = {k["snapshot_id"]: k["reasons"] for k in results["builds"]["kept"]}
    assert reasons[world["ami"]] == ["ami"]
    assert reasons[world["dlm"]] == ["dlm-managed"]
    assert reasons[world["pending"]] == ["not-completed"]
    assert reasons[world["in_use"]] == ["in-use"]
    newest = max(world["builds"], key=world["builds"].get)
    assert reasons[newest] == ["newest", "last", "daily", "weekly", "monthly"]
    # ansible-core shows module warnings on the console, not in the callback's result.
    assert "Snapshot %s is in use and was kept" % world["in_use"] in proc.stdout + proc.stderr
    assert results["builds"]["lineages"]["builds"]["deleted"] == 346

    # Outside the selection: untouched.
    assert world["foreign"] in tagged(ec2, {"Project": "other"})
    assert world["no_lineage"] in tagged(ec2, MUSIC)

    # Second run: nothing left to do.
    proc = playbook(world["aws"], ROTATE)
    assert changed_count(proc) == 0
    assert all(r["deleted"] == [] for r in task_results(proc, PRUNE))


def test_keep_within_and_group_by_through_the_module(aws, tmp_path):
    ec2 = aws.client("ec2")
    vol = new_volume(ec2)
    now = datetime.now(UTC)
    ages = {"h1": 1, "h20": 20, "h30": 30, "h50": 50, "h100": 100}
    ids = {name: snapshot_at(ec2, vol, now - timedelta(hours=h), {**MUSIC, "Tier": "a"}) for name, h in ages.items()}
    other_tier = snapshot_at(ec2, vol, now - timedelta(hours=200), {**MUSIC, "Tier": "b"})
    play = tmp_path / "within.yml"
    play.write_text(
        "- name: Rotate by tier\n"
        "  hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Keep the last 36 hours\n"
        "      music.profiles.ebs_snapshot_rotate:\n"
        "        tags: {Project: music}\n"
        "        group_by: Tier\n"
        "        keep_within: 36h\n"
    )
    proc = playbook(aws, str(play))
    result = task_results(proc, "Keep the last 36 hours")[0]
    left = tagged(ec2, MUSIC)
    assert set(left) == {ids["h1"], ids["h20"], ids["h30"], other_tier}
    assert sorted(result["deleted"]) == sorted([ids["h50"], ids["h100"]])
    reasons = {k["snapshot_id"]: k["reasons"] for k in result["kept"]}
    assert reasons[other_tier] == ["newest"]  # alone in lineage b, older than 36h
    assert reasons[ids["h1"]] == ["newest", "within"]


@pytest.mark.parametrize("extra_vars,message", [
    ({"music_rotate_keep_last": 0, "music_rotate_keep_daily": 0, "music_rotate_keep_weekly": 0,
      "music_rotate_keep_monthly": 0}, "keeps nothing"),
    ({"music_rotate_keep_within": "fortnight"}, "keep_within 'fortnight' is not a duration"),
    ({"music_rotate_keep_daily": -1}, "keep_daily must not be negative"),
    ({"music_rotate_lineages": []}, "music_rotate_lineages"),
])
def test_bad_policy_is_refused_with_a_clear_error_and_nothing_is_deleted(aws, extra_vars, message):
    ec2 = aws.client("ec2")
    vol = new_volume(ec2)
    for day in range(5):
        snapshot_at(ec2, vol, datetime(2024, 1, 1 + day, tzinfo=UTC), {**MUSIC, "Lineage": "builds"})
    proc = playbook(aws, ROTATE, extra_vars=extra_vars, json_output=False, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout
    assert len(tagged(ec2, {**MUSIC, "Lineage": "builds"})) == 5


def test_empty_tag_selection_is_refused(aws, tmp_path):
    play = tmp_path / "empty.yml"
    play.write_text(
        "- name: Rotate everything\n"
        "  hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Select nothing\n"
        "      music.profiles.ebs_snapshot_rotate:\n"
        "        tags: {}\n"
        "        keep_last: 1\n"
    )
    proc = playbook(aws, str(play), json_output=False, check=False)
    assert proc.returncode != 0
    assert "tags must name at least one tag" in proc.stdout


def test_ten_thousand_snapshots_in_one_lineage(aws, capsys):
    ec2 = aws.client("ec2")
    vol = new_volume(ec2)
    moments = hours_from(datetime(2023, 6, 1, 0, 30, tzinfo=UTC), 10_000)
    ids = bulk_snapshots(vol, moments, {**MUSIC, "Lineage": "builds"})
    expected = expected_survivors(dict(zip(ids, moments)))
    extra = {"music_rotate_lineages": ["builds"]}

    started = time.monotonic()
    proc = playbook(aws, ROTATE, "--check", extra_vars=extra)
    check_seconds = time.monotonic() - started
    planned = task_results(proc, PRUNE)[0]
    assert len(tagged(ec2, {**MUSIC, "Lineage": "builds"})) == 10_000
    assert set(planned["deleted"]) == set(ids) - expected

    started = time.monotonic()
    proc = playbook(aws, ROTATE, extra_vars=extra)
    run_seconds = time.monotonic() - started
    result = task_results(proc, PRUNE)[0]
    assert set(tagged(ec2, {**MUSIC, "Lineage": "builds"})) == expected
    assert result["api_calls"]["delete_snapshot"] == 10_000 - len(expected)

    proc = playbook(aws, ROTATE, extra_vars=extra)
    assert changed_count(proc) == 0

    with capsys.disabled():
        print("\n10,000 snapshots: kept %d; check run %.1f s, real run %.1f s, api calls %s"
              % (len(expected), check_seconds, run_seconds, result["api_calls"]))


# --- roles/snapshot: the consistent, tagged snapshot that starts each lineage entry ---------

SNAPSHOT_PLAY = """\
- name: Snapshot a volume
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Take the snapshot
      ansible.builtin.include_role:
        name: music.profiles.snapshot
    - name: Show the result
      ansible.builtin.debug:
        var: snapshot_result
"""


def snapshot_role(aws, tmp_path, *args, check=True, json_output=True, **variables):
    play = tmp_path / "snapshot.yml"
    play.write_text(SNAPSHOT_PLAY)
    return playbook(aws, str(play), *args, extra_vars=variables, check=check, json_output=json_output)


def test_snapshot_role_tags_a_detached_volume_and_rotate_picks_it_up(aws, tmp_path):
    ec2 = aws.client("ec2")
    vol = new_volume(ec2)
    proc = snapshot_role(aws, tmp_path, snapshot_volume_id=vol, snapshot_lineage="builds",
                         snapshot_project="music", snapshot_extra_tags={"Owner": "me", "Lineage": "spoof"})
    result = task_results(proc, "Show the result")[0]["snapshot_result"]
    snaps = tagged(ec2, {**MUSIC, "Lineage": "builds"})
    assert list(snaps) == [result["snapshot_id"]]
    tags = {t["Key"]: t["Value"] for t in snaps[result["snapshot_id"]]["Tags"]}
    created = datetime.strptime(tags.pop("CreatedAt"), "%Y-%m-%dT%H:%M:%SZ")
    assert tags == {"Project": "music", "Lineage": "builds", "Name": "music-builds", "Owner": "me"}
    assert result["created_at"] == created.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert snaps[result["snapshot_id"]]["VolumeId"] == vol
    assert snaps[result["snapshot_id"]]["State"] == "completed"

    # A second snapshot of the lineage, then rotation with keep_last 1 leaves only the newest.
    with clock(datetime.now(UTC) + timedelta(minutes=5)):
        proc = snapshot_role(aws, tmp_path, snapshot_volume_id=vol, snapshot_lineage="builds")
    newer = task_results(proc, "Show the result")[0]["snapshot_result"]["snapshot_id"]
    playbook(aws, ROTATE, extra_vars={"music_rotate_lineages": ["builds"], "music_rotate_keep_last": 1,
                                      "music_rotate_keep_daily": 0, "music_rotate_keep_weekly": 0,
                                      "music_rotate_keep_monthly": 0})
    assert list(tagged(ec2, {**MUSIC, "Lineage": "builds"})) == [newer]


def test_snapshot_role_refuses_an_attached_volume_unless_told_it_is_consistent(aws, tmp_path):
    ec2 = aws.client("ec2")
    vol = new_volume(ec2)
    image_id = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1,
                                 Placement={"AvailabilityZone": "eu-west-1a"})["Instances"][0]["InstanceId"]
    ec2.attach_volume(VolumeId=vol, InstanceId=instance, Device="/dev/sdf")

    proc = snapshot_role(aws, tmp_path, json_output=False, check=False,
                         snapshot_volume_id=vol, snapshot_lineage="sources")
    assert proc.returncode != 0
    assert "volume %s is in-use (attached to %s)" % (vol, instance) in proc.stdout
    assert tagged(ec2, {"Lineage": "sources"}) == {}

    proc = snapshot_role(aws, tmp_path, snapshot_volume_id=vol, snapshot_lineage="sources", snapshot_consistent=True)
    assert len(tagged(ec2, {**MUSIC, "Lineage": "sources"})) == 1


def test_snapshot_role_check_mode_and_bad_input(aws, tmp_path):
    ec2 = aws.client("ec2")
    vol = new_volume(ec2)
    proc = snapshot_role(aws, tmp_path, "--check", snapshot_volume_id=vol, snapshot_lineage="builds")
    assert task_results(proc, "Show the result")[0]["snapshot_result"]["snapshot_id"] == ""
    assert tagged(ec2, MUSIC) == {}

    proc = snapshot_role(aws, tmp_path, json_output=False, check=False, snapshot_volume_id=vol, snapshot_lineage="music")
    assert proc.returncode != 0
    assert "snapshot_lineage" in proc.stdout and "sources, builds" in proc.stdout

    proc = snapshot_role(aws, tmp_path, json_output=False, check=False, snapshot_volume_id="vol-0123456789abcdef0",
                         snapshot_lineage="builds")
    assert proc.returncode != 0
    assert "volume vol-0123456789abcdef0 (snapshot_volume_id) was not found" in proc.stdout
    assert tagged(ec2, MUSIC) == {}
