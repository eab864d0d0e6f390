# -*- coding: utf-8 -*-
"""Grandfather-father-son retention for EBS snapshot lineages, as pure logic.

No Ansible and no boto3 here: the `ebs_snapshot_rotate` module lists snapshots
and deletes them; this file only decides. Unit-tested directly with pytest and
hypothesis (tests/unit/test_snapshot_policy.py).

Semantics (the same as restic's `forget` for the bucket rules):

* ``keep_last: N`` keeps the N newest snapshots.
* ``keep_hourly/daily/weekly/monthly/yearly: N``: among the UTC hours / days /
  ISO weeks / calendar months / calendar years that hold at least one of the
  lineage's completed snapshots, take the N most recent and keep the newest
  snapshot of each.
* ``keep_within: D`` keeps every snapshot that started after ``now - D``.
* The keep set is the union of the rules; each rule is computed on its own.

On top of the policy some snapshots are never deleted (``plan``): the newest
completed snapshot of each lineage, snapshots that are not ``completed``,
snapshots an AMI of the account references, snapshots managed by Data
Lifecycle Manager (tag keys starting with ``aws:dlm:``) and snapshots without
the grouping tag.
"""
from __future__ import annotations

import re
from datetime import timedelta, timezone

# The bucket rules, in the order their reasons are reported.
BUCKET_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")
RULES = ("last",) + BUCKET_RULES + ("within",)

# Reasons a snapshot is kept whatever the policy says.
REASON_NEWEST = "newest"
REASON_NOT_COMPLETED = "not-completed"
REASON_AMI = "ami"
REASON_DLM = "dlm-managed"
REASON_NO_GROUP = "no-group-tag"
REASON_IN_USE = "in-use"

DLM_TAG_PREFIX = "aws:dlm:"

_DURATION_UNITS = {
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "m": timedelta(days=31),
    "y": timedelta(days=365),
}
_DURATION_PART = re.compile(r"(\d+)([hdwmy])")


class PolicyError(ValueError):
    """A retention policy or its input is invalid; the message names the option."""


def parse_duration(text):
    """Parse ``36h``, ``14d``, ``2w``, ``6m`` (31 days), ``1y`` (365 days) or sums like ``1d12h``."""
    if not isinstance(text, str):
        raise PolicyError("keep_within must be a string like '36h' or '14d', got %r" % (text,))
    compact = text.strip().lower()
    if not compact or _DURATION_PART.sub("", compact):
        raise PolicyError(
            "keep_within %r is not a duration: use a number followed by h, d, w, m (31 days) "
            "or y (365 days), e.g. '36h', '14d', '1d12h'" % (text,)
        )
    total = timedelta(0)
    for number, unit in _DURATION_PART.findall(compact):
        total += int(number) * _DURATION_UNITS[unit]
    if total <= timedelta(0):
        raise PolicyError("keep_within %r must be longer than zero" % (text,))
    return total


class Policy:
    """How many snapshots of one lineage to keep, per rule."""

    __slots__ = ("last", "hourly", "daily", "weekly", "monthly", "yearly", "within")

    def __init__(self, keep_last=0, keep_hourly=0, keep_daily=0, keep_weekly=0,
                 keep_monthly=0, keep_yearly=0, keep_within=None):
        counts = dict(last=keep_last, hourly=keep_hourly, daily=keep_daily, weekly=keep_weekly,
                      monthly=keep_monthly, yearly=keep_yearly)
        for rule, value in counts.items():
            if value is None:
                value = 0
            if isinstance(value, bool) or not isinstance(value, int):
                raise PolicyError("keep_%s must be an integer, got %r" % (rule, value))
            if value < 0:
                raise PolicyError("keep_%s must not be negative, got %d" % (rule, value))
            setattr(self, rule, value)
        if keep_within is None or keep_within == "":
            self.within = None
        elif isinstance(keep_within, timedelta):
            if keep_within <= timedelta(0):
                raise PolicyError("keep_within must be longer than zero")
            self.within = keep_within
        else:
            self.within = parse_duration(keep_within)
        if not any(getattr(self, rule) for rule in ("last",) + BUCKET_RULES) and self.within is None:
            raise PolicyError(
                "the retention policy keeps nothing: set at least one of keep_last, keep_hourly, "
                "keep_daily, keep_weekly, keep_monthly, keep_yearly or keep_within"
            )

    def count(self, rule):
        return getattr(self, rule)

    def replace(self, **changes):
        values = dict(keep_last=self.last, keep_hourly=self.hourly, keep_daily=self.daily,
                      keep_weekly=self.weekly, keep_monthly=self.monthly, keep_yearly=self.yearly,
                      keep_within=self.within)
        values.update(changes)
        return Policy(**values)

    def __repr__(self):
        parts = ["keep_%s=%d" % (rule, getattr(self, rule)) for rule in ("last",) + BUCKET_RULES
                 if getattr(self, rule)]
        if self.within is not None:
            parts.append("keep_within=%s" % (self.within,))
        return "Policy(%s)" % ", ".join(parts)


def as_utc(moment):
    """A timezone-aware UTC datetime; naive datetimes are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _bucket(rule, moment):
    if rule == "hourly":
        return (moment.year, moment.month, moment.day, moment.hour)
    if rule == "daily":
        return (moment.year, moment.month, moment.day)
    if rule == "weekly":
        iso = moment.isocalendar()
        return (iso[0], iso[1])
    if rule == "monthly":
        return (moment.year, moment.month)
    if rule == "yearly":
        return (moment.year,)
    raise PolicyError("unknown rule %r" % (rule,))


def newest_first(snapshots):
    """``(snapshot_id, start_time)`` pairs sorted newest first; ties broken by id, deterministic."""
    return sorted(((sid, as_utc(start)) for sid, start in snapshots),
                  key=lambda item: (item[1], item[0]), reverse=True)


def keep_reasons(snapshots, policy, now):
    """Apply ``policy`` to one lineage.

    ``snapshots`` is an iterable of ``(snapshot_id, start_time)`` of the lineage's
    completed snapshots. Returns ``{snapshot_id: [rule, ...]}`` for every snapshot
    a rule keeps (rules in RULES order); snapshots not in the result are not
    kept by the policy. One pass per rule over the sorted list: O(n log n).
    """
    ordered = newest_first(snapshots)
    reasons = {}

    def keep(sid, rule):
        reasons.setdefault(sid, []).append(rule)

    for sid, _start in ordered[:policy.last]:
        keep(sid, "last")
    for rule in BUCKET_RULES:
        wanted = policy.count(rule)
        if not wanted:
            continue
        last_bucket = None
        taken = 0
        for sid, start in ordered:
            bucket = _bucket(rule, start)
            if bucket != last_bucket:
                last_bucket = bucket
                keep(sid, rule)
                taken += 1
                if taken >= wanted:
                    break
    if policy.within is not None:
        cutoff = as_utc(now) - policy.within
        for sid, start in ordered:
            if start <= cutoff:
                break
            keep(sid, "within")
    return reasons


class Snapshot:
    """What the planner needs to know about one snapshot."""

    __slots__ = ("snapshot_id", "start_time", "state", "tags")

    def __init__(self, snapshot_id, start_time, state="completed", tags=None):
        self.snapshot_id = snapshot_id
        self.start_time = as_utc(start_time)
        self.state = state
        self.tags = dict(tags or {})

    def __repr__(self):
        return "Snapshot(%r, %s, %r)" % (self.snapshot_id, self.start_time.isoformat(), self.state)


class Plan:
    """The decision for a set of snapshots: which to delete, which to keep and why."""

    def __init__(self):
        self.delete = []        # snapshot ids, oldest first
        self.kept = {}          # snapshot_id -> {"snapshot_id", "lineage", "reasons"}
        self.lineages = {}      # lineage -> list of Snapshot, newest first
        self.lineage_of = {}    # snapshot_id -> lineage (None without the group tag)

    def kept_list(self):
        return sorted(self.kept.values(), key=lambda k: (str(k["lineage"]), k["snapshot_id"]))

    def summary(self):
        """Per lineage: counts before and after, and the newest and oldest snapshot kept."""
        result = {}
        deleting = set(self.delete)
        for lineage, snaps in self.lineages.items():
            kept = [s for s in snaps if s.snapshot_id not in deleting]
            result[lineage] = {
                "total": len(snaps),
                "kept": len(kept),
                "deleted": len(snaps) - len(kept),
                "newest": kept[0].snapshot_id if kept else None,
                "newest_time": kept[0].start_time.isoformat() if kept else None,
                "oldest_kept_time": kept[-1].start_time.isoformat() if kept else None,
            }
        return result

    def keep_instead(self, snapshot_id, reason):
        """A planned delete the API refused (``in-use``): the snapshot stays, for that reason only.

        ``delete`` is left as it is; ``record_deletes`` replaces it with what was deleted.
        """
        self.kept[snapshot_id] = {
            "snapshot_id": snapshot_id, "lineage": self.lineage_of.get(snapshot_id), "reasons": [reason],
        }

    def record_deletes(self, deleted, vanished=()):
        """After the deletes: ``deleted`` (oldest first) is what went; ``vanished`` were gone already.

        Vanished snapshots leave the lineages, so the summary and the diff count neither them
        nor deletes that did not happen.
        """
        self.delete = deleted
        gone = set(vanished)
        for lineage, members in self.lineages.items():
            self.lineages[lineage] = [s for s in members if s.snapshot_id not in gone]

    def diff(self):
        """Ansible diffs, one per lineage: its snapshots (time and id, newest first) before and after."""
        diffs = []
        gone = set(self.delete)
        for lineage in sorted(self.lineages):
            snaps = self.lineages[lineage]
            before = ["%s %s" % (s.start_time.strftime("%Y-%m-%dT%H:%M:%SZ"), s.snapshot_id) for s in snaps]
            after = [line for line, s in zip(before, snaps) if s.snapshot_id not in gone]
            diffs.append({
                "before_header": "lineage %s (%d snapshots)" % (lineage, len(before)),
                "after_header": "lineage %s (%d snapshots)" % (lineage, len(after)),
                "before": "\n".join(before) + "\n",
                "after": "\n".join(after) + ("\n" if after else ""),
            })
        return diffs


def is_dlm_managed(tags):
    return any(key.startswith(DLM_TAG_PREFIX) for key in tags)


def plan(snapshots, policy, now, group_by="Lineage", ami_snapshot_ids=()):
    """Decide, for every snapshot given, whether it is deleted or kept.

    ``snapshots``: Snapshot objects already restricted to the tag selection.
    Every snapshot ends up in exactly one of ``Plan.delete`` and ``Plan.kept``.
    """
    if not group_by:
        raise PolicyError("group_by must name a tag")
    ami_snapshot_ids = frozenset(ami_snapshot_ids)
    result = Plan()
    seen = set()
    protected = {}

    def protect(sid, reason):
        protected.setdefault(sid, [])
        if reason not in protected[sid]:
            protected[sid].append(reason)

    ruled = {}  # lineage -> [(id, start)] of snapshots the policy applies to
    for snap in snapshots:
        sid = snap.snapshot_id
        if sid in seen:
            raise PolicyError("snapshot %s is listed twice" % sid)
        seen.add(sid)
        lineage = snap.tags.get(group_by)
        result.lineage_of[sid] = lineage
        if lineage is None:
            protect(sid, REASON_NO_GROUP)
            continue
        result.lineages.setdefault(lineage, []).append(snap)
        if is_dlm_managed(snap.tags):
            protect(sid, REASON_DLM)
            continue
        if snap.state != "completed":
            protect(sid, REASON_NOT_COMPLETED)
        if sid in ami_snapshot_ids:
            protect(sid, REASON_AMI)
        if snap.state == "completed":
            ruled.setdefault(lineage, []).append((sid, snap.start_time))

    for lineage, snaps in result.lineages.items():
        snaps.sort(key=lambda s: (s.start_time, s.snapshot_id), reverse=True)
        members = ruled.get(lineage, [])
        reasons = keep_reasons(members, policy, now)
        if members:
            newest = newest_first(members)[0][0]
            reasons.setdefault(newest, []).insert(0, REASON_NEWEST)
        for snap in snaps:
            sid = snap.snapshot_id
            why = protected.get(sid, []) + reasons.get(sid, [])
            if why:
                result.kept[sid] = {"snapshot_id": sid, "lineage": lineage, "reasons": why}
        # Oldest first: an interrupted run leaves the newer snapshots.
        result.delete.extend(s.snapshot_id for s in reversed(snaps) if s.snapshot_id not in result.kept)

    for sid, why in protected.items():
        if result.lineage_of.get(sid) is None:
            result.kept[sid] = {"snapshot_id": sid, "lineage": None, "reasons": list(why)}
    return result
