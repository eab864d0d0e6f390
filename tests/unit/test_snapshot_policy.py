"""The retention policy of ebs_snapshot_rotate, as a pure function.

A reference implementation written the obvious way (group, sort, take) checks the
one-pass implementation; hypothesis checks the promises the module makes.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ansible_collections.music.profiles.plugins.module_utils.snapshot_policy import (
    BUCKET_RULES,
    Policy,
    PolicyError,
    Snapshot,
    keep_reasons,
    parse_duration,
    plan,
)

UTC = timezone.utc
EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


# --- reference implementation -------------------------------------------------------------

def reference_bucket(rule, t):
    return {
        "hourly": t.strftime("%Y-%m-%d %H"),
        "daily": t.date().isoformat(),
        "weekly": "%d-W%02d" % t.isocalendar()[:2],
        "monthly": t.strftime("%Y-%m"),
        "yearly": str(t.year),
    }[rule]


def reference_rule(rule, snaps, n, now=NOW, within=None):
    """The ids one rule keeps, computed by grouping everything first."""
    if rule == "last":
        return {sid for sid, _ in sorted(snaps, key=lambda s: (s[1], s[0]), reverse=True)[:n]}
    if rule == "within":
        return {sid for sid, t in snaps if t > now - within} if within else set()
    groups = {}
    for sid, t in snaps:
        groups.setdefault(reference_bucket(rule, t), []).append((t, sid))
    # Buckets ordered by their newest snapshot; ISO week keys sort like time, but be explicit.
    newest = sorted((max(members) for members in groups.values()), reverse=True)
    return {sid for _t, sid in newest[:n]}


def reference_keep(snaps, policy, now=NOW):
    keep = reference_rule("last", snaps, policy.last)
    for rule in BUCKET_RULES:
        keep |= reference_rule(rule, snaps, policy.count(rule))
    keep |= reference_rule("within", snaps, 0, now, policy.within)
    return keep


# --- strategies ---------------------------------------------------------------------------

# Minutes over ~500 days: collisions within hours, days, weeks and months are common.
moments = st.integers(min_value=0, max_value=60 * 24 * 500).map(lambda m: EPOCH + timedelta(minutes=m))


@st.composite
def lineage_snapshots(draw, min_size=0, max_size=60):
    times = draw(st.lists(moments, min_size=min_size, max_size=max_size))
    return [("snap-%05d" % i, t) for i, t in enumerate(times)]


counts = st.integers(min_value=0, max_value=8)


@st.composite
def policies(draw):
    within = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=24 * 600).map(lambda h: timedelta(hours=h))))
    values = dict(keep_last=draw(counts), keep_hourly=draw(counts), keep_daily=draw(counts),
                  keep_weekly=draw(counts), keep_monthly=draw(counts), keep_yearly=draw(counts))
    assume(within is not None or any(values.values()))
    return Policy(keep_within=within, **values)


@st.composite
def account(draw):
    """Snapshots of two lineages plus the kinds the planner must protect."""
    n = draw(st.integers(min_value=0, max_value=50))
    snaps = []
    ami = set()
    for i in range(n):
        sid = "snap-%05d" % i
        tags = {"Project": "music"}
        lineage = draw(st.sampled_from(["sources", "builds", "builds", None]))
        if lineage is not None:
            tags["Lineage"] = lineage
        if draw(st.integers(0, 9)) == 0:
            tags["aws:dlm:lifecycle-policy-id"] = "policy-1"
        state = draw(st.sampled_from(["completed"] * 8 + ["pending", "error"]))
        if draw(st.integers(0, 9)) == 0:
            ami.add(sid)
        snaps.append(Snapshot(sid, draw(moments), state, tags))
    return snaps, ami


def completed_rule_members(snaps, lineage):
    return [(s.snapshot_id, s.start_time) for s in snaps
            if s.tags.get("Lineage") == lineage and s.state == "completed"
            and not any(k.startswith("aws:dlm:") for k in s.tags)]


# --- properties ---------------------------------------------------------------------------

@given(lineage_snapshots(), policies())
def test_keep_set_is_the_union_of_the_rules(snaps, policy):
    got = keep_reasons(snaps, policy, NOW)
    assert set(got) == reference_keep(snaps, policy)
    # Every reason given is a rule that, on its own, keeps the snapshot.
    for sid, reasons in got.items():
        for rule in reasons:
            alone = reference_rule(rule, snaps, policy.count(rule) if rule != "within" else 0, NOW, policy.within)
            assert sid in alone, (sid, rule)


@given(lineage_snapshots(), policies())
def test_each_bucket_rule_keeps_one_per_bucket_up_to_n(snaps, policy):
    got = keep_reasons(snaps, policy, NOW)
    for rule in BUCKET_RULES:
        kept = [sid for sid, reasons in got.items() if rule in reasons]
        buckets = {reference_bucket(rule, t) for _, t in snaps}
        assert len(kept) == min(policy.count(rule), len(buckets))
        times = dict(snaps)
        assert len({reference_bucket(rule, times[sid]) for sid in kept}) == len(kept)


@given(account(), policies())
def test_newest_completed_of_each_lineage_is_never_deleted(acct, policy):
    snaps, ami = acct
    result = plan(snaps, policy, NOW, ami_snapshot_ids=ami)
    doomed = set(result.delete)
    for lineage in ("sources", "builds"):
        members = [s for s in snaps if s.tags.get("Lineage") == lineage and s.state == "completed"]
        if members:
            newest = max(members, key=lambda s: (s.start_time, s.snapshot_id))
            assert newest.snapshot_id not in doomed


@given(account(), policies())
def test_protected_snapshots_are_never_deleted_and_every_snapshot_is_decided(acct, policy):
    snaps, ami = acct
    result = plan(snaps, policy, NOW, ami_snapshot_ids=ami)
    doomed = set(result.delete)
    assert len(doomed) == len(result.delete)
    assert doomed.isdisjoint(result.kept)
    assert doomed | set(result.kept) == {s.snapshot_id for s in snaps}
    for s in snaps:
        if (s.state != "completed" or s.snapshot_id in ami or "Lineage" not in s.tags
                or any(k.startswith("aws:dlm:") for k in s.tags)):
            assert s.snapshot_id not in doomed, s
    # What is deleted is exactly what no rule keeps, among the snapshots the rules apply to.
    for lineage in ("sources", "builds"):
        members = completed_rule_members(snaps, lineage)
        keep = reference_keep(members, policy)
        for sid, _t in members:
            if sid not in keep and sid not in ami and sid != max(members, key=lambda m: (m[1], m[0]))[0]:
                assert sid in doomed


@given(account(), policies())
def test_applying_the_policy_to_its_own_result_deletes_nothing_more(acct, policy):
    snaps, ami = acct
    first = plan(snaps, policy, NOW, ami_snapshot_ids=ami)
    doomed = set(first.delete)
    survivors = [s for s in snaps if s.snapshot_id not in doomed]
    second = plan(survivors, policy, NOW, ami_snapshot_ids=ami)
    assert second.delete == []


@given(account(), policies(), st.sampled_from(["last", "hourly", "daily", "weekly", "monthly", "yearly", "within"]),
       st.integers(min_value=1, max_value=10))
def test_raising_any_n_never_deletes_more(acct, policy, rule, extra):
    snaps, ami = acct
    before = set(plan(snaps, policy, NOW, ami_snapshot_ids=ami).delete)
    if rule == "within":
        longer = (policy.within or timedelta(0)) + timedelta(hours=extra)
        raised = policy.replace(keep_within=longer)
    else:
        raised = policy.replace(**{"keep_" + rule: policy.count(rule) + extra})
    after = set(plan(snaps, raised, NOW, ami_snapshot_ids=ami).delete)
    assert after <= before


@settings(max_examples=25)
@given(st.lists(moments, min_size=1, max_size=30, unique=True), policies())
def test_naive_times_are_taken_as_utc(times, policy):
    aware = [("snap-%05d" % i, t) for i, t in enumerate(times)]
    naive = [(sid, t.replace(tzinfo=None)) for sid, t in aware]
    assert keep_reasons(aware, policy, NOW) == keep_reasons(naive, policy, NOW)


# --- worked examples ----------------------------------------------------------------------

def year_of_daily_compiles():
    start = date(2024, 1, 1)
    return [("snap-%03d" % i, datetime.combine(start + timedelta(days=i), datetime.min.time(), UTC)
             + timedelta(hours=2)) for i in range(366)]


def test_a_year_of_daily_snapshots_with_the_default_policy_keeps_twenty():
    snaps = year_of_daily_compiles()
    policy = Policy(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=12)
    kept = keep_reasons(snaps, policy, NOW)
    days = {dict(snaps)[sid].date() for sid in kept}
    expected = {date(2024, 12, d) for d in range(25, 32)}          # daily (last 3 inside)
    expected |= {date(2024, 12, 22), date(2024, 12, 15)}            # ISO weeks 51 and 50 (Sundays)
    expected |= {date(2024, m + 1, 1) - timedelta(days=1) for m in range(1, 12)}  # month ends Jan..Nov
    assert days == expected
    assert len(kept) == 20
    by_date = {dict(snaps)[sid].date(): reasons for sid, reasons in kept.items()}
    assert by_date[date(2024, 12, 31)] == ["last", "daily", "weekly", "monthly"]
    assert by_date[date(2024, 12, 29)] == ["last", "daily", "weekly"]  # Sunday of ISO week 52
    assert by_date[date(2024, 12, 28)] == ["daily"]
    assert by_date[date(2024, 11, 30)] == ["monthly"]


def test_several_snapshots_a_day_keep_the_newest_of_each_day():
    snaps = [("a", datetime(2024, 3, 1, 1, tzinfo=UTC)), ("b", datetime(2024, 3, 1, 23, tzinfo=UTC)),
             ("c", datetime(2024, 3, 2, 5, tzinfo=UTC)), ("d", datetime(2024, 3, 2, 4, tzinfo=UTC))]
    assert keep_reasons(snaps, Policy(keep_daily=2), NOW) == {"c": ["daily"], "b": ["daily"]}


def test_days_without_snapshots_do_not_use_up_the_count():
    snaps = [("jan", datetime(2024, 1, 10, tzinfo=UTC)), ("mar", datetime(2024, 3, 10, tzinfo=UTC)),
             ("may", datetime(2024, 5, 10, tzinfo=UTC))]
    assert set(keep_reasons(snaps, Policy(keep_daily=3), NOW)) == {"jan", "mar", "may"}


def test_days_are_utc_days():
    # 23:30 at UTC-5 on 1 March is 04:30 UTC on 2 March: same UTC day as the other one.
    est = timezone(timedelta(hours=-5))
    snaps = [("late", datetime(2024, 3, 1, 23, 30, tzinfo=est)), ("utc", datetime(2024, 3, 2, 3, 0, tzinfo=UTC))]
    assert keep_reasons(snaps, Policy(keep_daily=2), NOW) == {"late": ["daily"]}


def test_weeks_are_iso_weeks():
    # Sunday 2024-12-29 ends ISO week 52; Monday 2024-12-30 starts ISO week 1 of 2025.
    snaps = [("sun", datetime(2024, 12, 29, tzinfo=UTC)), ("mon", datetime(2024, 12, 30, tzinfo=UTC)),
             ("tue", datetime(2024, 12, 31, tzinfo=UTC))]
    assert set(keep_reasons(snaps, Policy(keep_weekly=2), NOW)) == {"sun", "tue"}


def test_keep_within_keeps_everything_newer_than_now_minus_the_duration():
    snaps = [("h%d" % h, NOW - timedelta(hours=h)) for h in (1, 20, 35, 37, 100)]
    assert set(keep_reasons(snaps, Policy(keep_within="36h"), NOW)) == {"h1", "h20", "h35"}


def test_plan_reasons_and_protections():
    t = datetime(2024, 5, 1, tzinfo=UTC)
    snaps = [
        Snapshot("new-pending", t + timedelta(days=3), "pending", {"Lineage": "builds"}),
        Snapshot("newest", t + timedelta(days=2), "completed", {"Lineage": "builds"}),
        Snapshot("old", t, "completed", {"Lineage": "builds"}),
        Snapshot("older-ami", t - timedelta(days=1), "completed", {"Lineage": "builds"}),
        Snapshot("dlm", t - timedelta(days=2), "completed", {"Lineage": "builds", "aws:dlm:lifecycle-policy-id": "p"}),
        Snapshot("stray", t - timedelta(days=3), "completed", {"Project": "music"}),
        Snapshot("oldest", t - timedelta(days=4), "completed", {"Lineage": "builds"}),
    ]
    result = plan(snaps, Policy(keep_within="1h"), NOW, ami_snapshot_ids={"older-ami"})
    assert result.delete == ["oldest", "old"]
    reasons = {k["snapshot_id"]: k["reasons"] for k in result.kept_list()}
    assert reasons == {
        "new-pending": ["not-completed"],
        "newest": ["newest"],
        "older-ami": ["ami"],
        "dlm": ["dlm-managed"],
        "stray": ["no-group-tag"],
    }
    summary = result.summary()["builds"]
    assert summary["total"] == 6 and summary["deleted"] == 2 and summary["kept"] == 4
    assert summary["newest"] == "new-pending"


@pytest.mark.parametrize("text,expected", [
    ("36h", timedelta(hours=36)), ("14d", timedelta(days=14)), ("2w", timedelta(weeks=2)),
    ("1m", timedelta(days=31)), ("1y", timedelta(days=365)), ("1d12h", timedelta(hours=36)),
    (" 7D ", timedelta(days=7)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "36", "h", "1.5d", "3 days", "-1d", "0d", "1x"])
def test_parse_duration_rejects_nonsense_naming_the_option(text):
    with pytest.raises(PolicyError, match="keep_within"):
        parse_duration(text)


def test_a_policy_that_keeps_nothing_is_refused():
    with pytest.raises(PolicyError, match="keeps nothing"):
        Policy()
    with pytest.raises(PolicyError, match="keeps nothing"):
        Policy(keep_last=0, keep_daily=0, keep_within="")


@pytest.mark.parametrize("option", ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"])
def test_negative_counts_are_refused_naming_the_option(option):
    with pytest.raises(PolicyError, match=option):
        Policy(keep_last=1, **{option: -1}) if option != "keep_last" else Policy(keep_last=-1, keep_daily=1)


def test_plan_after_the_deletes_counts_only_what_went_and_keeps_what_was_refused():
    # What ebs_snapshot_rotate does with the API's answers: "old" is deleted, "in-use" is
    # refused (kept, reason in-use), "vanished" was already gone (left out of the lineage).
    t = datetime(2024, 5, 1, tzinfo=UTC)
    snaps = [Snapshot(sid, t - timedelta(days=age), "completed", {"Lineage": "builds"})
             for age, sid in enumerate(["newest", "old", "in-use", "vanished"])]
    result = plan(snaps, Policy(keep_last=1), NOW)
    assert result.delete == ["vanished", "in-use", "old"]
    result.keep_instead("in-use", "in-use")
    result.record_deletes(["old"], {"vanished"})
    assert result.delete == ["old"]
    reasons = {k["snapshot_id"]: k["reasons"] for k in result.kept_list()}
    assert reasons == {"newest": ["newest", "last"], "in-use": ["in-use"]}
    assert result.kept["in-use"]["lineage"] == "builds"
    summary = result.summary()["builds"]
    assert (summary["total"], summary["kept"], summary["deleted"]) == (3, 2, 1)
    assert summary["newest"] == "newest"
    assert summary["oldest_kept_time"] == (t - timedelta(days=2)).isoformat()


def test_plan_diff_shows_each_lineage_before_and_after():
    t = datetime(2024, 5, 1, 2, tzinfo=UTC)
    snaps = [
        Snapshot("b-new", t, "completed", {"Lineage": "builds"}),
        Snapshot("b-old", t - timedelta(days=1), "completed", {"Lineage": "builds"}),
        Snapshot("s-only", t, "completed", {"Lineage": "sources"}),
        Snapshot("stray", t, "completed", {}),
    ]
    diffs = plan(snaps, Policy(keep_last=1), NOW).diff()
    assert diffs == [
        {
            "before_header": "lineage builds (2 snapshots)",
            "after_header": "lineage builds (1 snapshots)",
            "before": "2024-05-01T02:00:00Z b-new\n2024-04-30T02:00:00Z b-old\n",
            "after": "2024-05-01T02:00:00Z b-new\n",
        },
        {
            "before_header": "lineage sources (1 snapshots)",
            "after_header": "lineage sources (1 snapshots)",
            "before": "2024-05-01T02:00:00Z s-only\n",
            "after": "2024-05-01T02:00:00Z s-only\n",
        },
    ]


def test_a_snapshot_listed_twice_is_an_error():
    s = Snapshot("snap-1", NOW, "completed", {"Lineage": "x"})
    with pytest.raises(PolicyError, match="snap-1"):
        plan([s, s], Policy(keep_last=1), NOW)
