"""Section `control`: provision.yml twice and the rotation of a BENCH_ROTATE_SNAPSHOTS-snapshot
lineage against a local moto server, with the AWS API requests counted at the server
(moto_count.py). The server, its fixes and the snapshot world are the tests' own, from
music_devkit."""
from __future__ import annotations

from datetime import datetime, timezone

from measure import Meter, say
from settings import SNAPSHOTS


def run() -> dict:
    # moto is loaded only when this section runs.
    from music_devkit import aws, moto_fixes
    from music_devkit import rotate_world as rw
    from music_devkit.moto import MotoServer

    import moto_count

    moto_count.install()
    moto_fixes.apply()
    server = MotoServer().start()
    res: dict = {}
    try:
        server.reset()
        for label in ("provision_first", "provision_again"):
            say(f"control: provision.yml ({label})")
            with moto_count.counting() as calls, Meter() as m:
                play = aws.playbook(server, "provision.yml")
            if play.rc != 0:
                raise RuntimeError(f"provision.yml failed: {aws.summary(play)}")
            res[label] = {**m.figures(), "changed": play.changed, "api_requests": calls["total"],
                          "api_by_action": calls["by_action"]}
            say(f"  {m.wall:.1f} s, changed={play.changed}, {calls['total']} API requests")

        server.reset()
        with rw.indexed_moto_tags():
            ec2 = server.client("ec2")
            vol = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=1, Encrypted=True)["VolumeId"]
            moments = rw.hours_from(datetime(2023, 6, 1, 0, 30, tzinfo=timezone.utc), SNAPSHOTS)
            say(f"control: {SNAPSHOTS} snapshots in one lineage (straight into moto's backend)")
            ids = rw.bulk_snapshots(vol, moments, {"Project": "music", "Lineage": "builds"})
            expected = rw.expected_survivors(dict(zip(ids, moments)))
            extra = {"music_rotate_lineages": ["builds"]}
            for label in ("rotate_first", "rotate_again"):
                say(f"control: rotate.yml ({label})")
                with moto_count.counting() as calls, Meter() as m:
                    proc = rw.playbook(server, "playbooks/rotate.yml", extra_vars=extra)
                result = rw.task_results(proc, "Prune the snapshots of each lineage")[0]
                res[label] = {**m.figures(), "deleted": len(result.get("deleted", [])),
                              "api_requests": calls["total"], "api_by_action": calls["by_action"],
                              "module_api_calls": result.get("api_calls")}
                say(f"  {m.wall:.1f} s, deleted {res[label]['deleted']}, {calls['total']} API requests")
            left = set(rw.tagged(ec2, {"Project": "music", "Lineage": "builds"}))
            res["snapshots"] = SNAPSHOTS
            res["kept"] = len(left)
            res["kept_as_policy_says"] = left == expected
    finally:
        server.stop()
    return res
