"""From the measured figures to the verdicts: the load-independent CPU ratios derived from
them, and each target with whether it was met and, if not, why in the run's own figures.
Computed from the results alone, so `run.py --report` can recompute them for a results file."""
from __future__ import annotations


def derived(results: dict) -> None:
    """Load-independent companions of the wall-time ratios: the same ratios in CPU time."""
    t = results.get("throughput")
    if t:
        b = t.get("beets", {})
        if "convert_first" in b:
            b["cpu_ratio_first"] = round(b["convert_first"]["cpu_s"] / t["build_first"]["cpu_s"], 3)
            b["cpu_ratio_nochange"] = round(b["convert_nochange"]["cpu_s"] / t["build_nochange"]["cpu_s"], 3)
    s = results.get("scale")
    if s:
        base, tag, enc = s["nochange"]["cpu_s"], s["album_tags"]["cpu_s"], s["album_reencode"]["cpu_s"]
        s["album_ratio_cpu"] = round(tag / enc, 4)
        s["album_ratio_marginal_cpu"] = round((tag - base) / (enc - base), 4) if enc > base else None


def beets_gap(t: dict) -> str:
    """Why the build is behind beets, in the run's own figures."""
    b = t["beets"]
    outputs = t["tracks"] * len(t["profiles"])
    extra = (t["build_first"]["cpu_s"] - b["convert_first"]["cpu_s"]) / outputs
    why = []
    if b["ratio_first"] <= 1 and extra > 0:
        why.append(f"first build: the build used {extra * 1000:.0f} ms more CPU per output than beets "
                   "(a music-encode process per output under tup, where beets converts in one process)")
    elif b["ratio_first"] <= 1:
        why.append(f"first build: less CPU than beets ({-extra * 1000:.0f} ms per output) but a longer wall "
                   "time (scheduling, the last outputs running alone)")
    if b["ratio_nochange"] <= 1:
        why.append("no-change re-run: slower than beets")
    return "; ".join(why)


def targets(results: dict) -> list[dict]:
    out = []
    t = results.get("throughput")
    if t:
        others = t["build_first"]["other_load_cores"]
        eff = t["parallel_efficiency"]
        out.append({"target": "parallel efficiency >= 0.9",
                    "value": {"wall": eff, "encoder_cpu_share": t["cpu_efficiency"]}, "met": eff >= 0.9,
                    "why": "" if eff >= 0.9 else (
                        f"the bare encoders' own efficiency with {t['jobs']} processes in this run was "
                        f"{t['bare_parallel_efficiency']}; the build spends {1 - t['cpu_efficiency']:.0%} of its CPU outside "
                        f"the encoders (music-encode start-up, tags, art, tup); other processes used {others} cores "
                        f"during the build")})
        b = t.get("beets", {})
        if "ratio_first" in b:
            met = b["ratio_first"] > 1 and b["ratio_nochange"] > 1
            out.append({"target": "faster than beets convert at equal settings (beets wall / build wall > 1)",
                        "value": {"first": b["ratio_first"], "no_change": b["ratio_nochange"],
                                  "first_cpu": b.get("cpu_ratio_first"), "no_change_cpu": b.get("cpu_ratio_nochange")},
                        "met": met, "why": "" if met else beets_gap(t)})
    s = results.get("scale")
    if s:
        tup = s["nochange"]["tup_s"]
        met = tup is not None and tup < 1 and s["tracks"] >= 10_000
        out.append({"target": "no-change rebuild of 10,000 tracks under 1 s of build-tool (tup) time",
                    "value": {"tup_s": tup, "music_build_wall_s": s["nochange"]["wall_s"], "tracks": s["tracks"]},
                    "met": met, "why": "" if met else (
                        f"not measured at 10,000: this run had BENCH_SCALE_TRACKS={s['tracks']}"
                        if s["tracks"] < 10_000 else "see the closing note")})
        r = s["album_ratio_tup"]
        met = r is not None and r < 0.05
        out.append({"target": "tag-only edit of a 12-track album under 5% of its re-encode (tup time)",
                    "value": {"tup_ratio": r, "wall_ratio": s["album_ratio_wall"],
                              "marginal_wall_ratio": s["album_ratio_marginal_wall"],
                              "cpu_ratio": s.get("album_ratio_cpu"),
                              "marginal_cpu_ratio": s.get("album_ratio_marginal_cpu")},
                    "met": met, "why": "" if met else "see the closing note"})
    return out
