"""The Markdown table written beside each bench/results/<date>.json."""
from __future__ import annotations

import json
import sys


def _s(x, digits=2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _load(step: dict) -> str:
    return f"{step['other_load_cores']:.2f}"


def _others(total: dict) -> str:
    """Other load over several runs, weighted by their wall time."""
    runs = total.get("runs", [])
    wall = sum(x["wall_s"] for x in runs)
    return f"{sum(x['other_load_cores'] * x['wall_s'] for x in runs) / wall:.2f}" if wall else ""


def _table(title: str, *columns: str) -> list[str]:
    """A section heading and the head of its table."""
    return ["", f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Benchmark {r['date']}",
        "",
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}; {m['tup']}; "
        f"{m['flac']}; {m['opusenc']}; {m['lame']}; moto {m['moto']}."
        + (f" Build program of commit {r['revision']['commit'][:10]}"
           + (" with uncommitted changes." if r['revision']['program_uncommitted_changes'] else ".")
           if r.get("revision") else ""),
        f"Load average before {r['loadavg_before']}, after {r['loadavg_after']}; whole run "
        f"{r['total']['wall_s'] / 60:.1f} min. \"Other load\" is the CPU the rest of the machine used "
        "during a step, in cores (from /proc/stat, minus this run's own CPU): figures with other load "
        "above ~0.2 were taken on a shared, busy machine.",
        *_table("Targets", "target", "measured", "met"),
    ]
    for t in r["targets"]:
        value = t["value"] if not isinstance(t["value"], dict) else ", ".join(f"{k} {v}" for k, v in t["value"].items())
        lines.append(f"| {t['target']} | {value} | {'yes' if t['met'] else 'no: ' + t['why']} |")

    t = r.get("throughput")
    if t:
        lines += _table(f"Throughput: {t['tracks']} tracks, {t['audio_s'] / 60:.0f} min of audio, profiles "
                        f"{', '.join(t['profiles'])}, {t['jobs']} jobs",
                        "run", "wall s", "CPU s", "audio-s per wall-s", "other load (cores)")
        audio = t["audio_s"] * len(t["profiles"])
        for label, key in (("bare encoders, 1 process", "bare_single"),
                           (f"bare encoders, {t['jobs']} processes", "bare_parallel"),
                           ("music-build (tup), first build", "build_first"),
                           ("music-build, no change", "build_nochange")):
            step = t[key]
            lines.append(f"| {label} | {_s(step['wall_s'])} | {_s(step['cpu_s'])} | "
                         f"{audio / step['wall_s']:.1f} | {_load(step)} |")
        b = t.get("beets", {})
        if "convert_first" in b:
            lines += [
                f"| beets {b['version']} import -A (library set-up) | "
                f"{_s(b['import']['wall_s'])} | {_s(b['import']['cpu_s'])} | | {_load(b['import'])} |",
                f"| beets convert, first run (all profiles) | {_s(b['convert_first']['wall_s'])} | "
                f"{_s(b['convert_first']['cpu_s'])} | {audio / b['convert_first']['wall_s']:.1f} | "
                f"{_others(b['convert_first'])} |",
                f"| beets convert, no change | {_s(b['convert_nochange']['wall_s'])} | "
                f"{_s(b['convert_nochange']['cpu_s'])} | | {_others(b['convert_nochange'])} |",
            ]
        lines += [
            "",
            f"- Parallel efficiency (build throughput / ({t['jobs']} x bare one-process rate)): "
            f"**{t['parallel_efficiency']}**; the bare encoders alone reach {t['bare_parallel_efficiency']} "
            f"with {t['jobs']} processes; encoder CPU / build CPU {t['cpu_efficiency']}.",
            f"- Bare one-process rate {t['bare_single_rate_x']}x realtime (wall), "
            f"{t['bare_single_rate_cpu_x']}x per CPU-second.",
        ]
        if "convert_first" in b:
            lines.append(f"- beets convert wall / music-build wall: first run **{b['ratio_first']}** "
                         f"({b['ratio_first_with_import']} counting beets' import), no-change re-run "
                         f"**{b['ratio_nochange']}** (above 1: music-build is faster). In CPU time, which the other load does "
                         f"not distort: first run {b.get('cpu_ratio_first')}, no-change re-run {b.get('cpu_ratio_nochange')}.")
        elif b:
            lines.append(f"- beets: {b.get('skipped')}")
    s = r.get("scale")
    if s:
        lines += _table(f"Scale: {s['tracks']} tracks ({s['track_s']:g} s each; one 12-track album of "
                        f"{s['album_track_s']:g} s tracks), profile(s) {', '.join(s['profiles'])}, {s['jobs']} jobs",
                        "build", "music-build wall s", "tup s", "CPU s", "encoder runs", "retagged", "other load (cores)")
        for label, key in (("first build", "build_first"), ("no change", "nochange"),
                           ("no change, again", "nochange_again"), ("one track's audio changed", "one_track"),
                           ("tag-only edit of the 12-track album", "album_tags"),
                           ("the same album re-encoded", "album_reencode"),
                           (f"profile setting changed {s['profile_change'].get('change')}", "profile_change")):
            step = s[key]
            enc = sum(step["encoder_runs"].values())
            ret = sum(p["retagged"] for p in step["report"].values())
            lines.append(f"| {label} | {_s(step['wall_s'])} | {_s(step['tup_s'], 3)} | {_s(step['cpu_s'])} | "
                         f"{enc} | {ret} | {_load(step)} |")
        lines += [
            "",
            f"- Per-output overhead beyond the bare encoder on the first build: "
            f"**{s['overhead_per_output_s'] * 1000:.0f} ms** of core time "
            f"({s['overhead_per_output_cpu_s'] * 1000:.0f} ms of CPU); bare encoder per short track "
            f"{s['bare_short_per_track_s'] * 1000:.0f} ms; bare encoders on the whole library "
            f"{s['bare_library_estimate_s']:.0f} s wall, {s.get('bare_library_estimate_cpu_s', 0):.0f} s CPU "
            f"(one process, estimated from a sample); the first build took "
            f"{s['build_core_s_per_output'] * 1000:.0f} ms of core time per output.",
            f"- Tag-only album edit / album re-encode: tup time **{s['album_ratio_tup']}**, music-build wall "
            f"{s['album_ratio_wall']}, beyond the no-change rebuild {s['album_ratio_marginal_wall']}; in CPU time "
            f"{s.get('album_ratio_cpu')} (beyond the no-change rebuild {s.get('album_ratio_marginal_cpu')}); the bare "
            f"encoders take {s['bare_album']['wall_s']:.1f} s for that album.",
        ]
    c = r.get("control")
    if c:
        lines += _table("Control plane against moto (requests counted at the server)",
                        "run", "wall s", "CPU s", "changed / deleted", "AWS API requests") + [
            f"| provision.yml, first run | {_s(c['provision_first']['wall_s'])} | {_s(c['provision_first']['cpu_s'])} | "
            f"{c['provision_first']['changed']} | {c['provision_first']['api_requests']} |",
            f"| provision.yml, re-run | {_s(c['provision_again']['wall_s'])} | {_s(c['provision_again']['cpu_s'])} | "
            f"{c['provision_again']['changed']} | {c['provision_again']['api_requests']} |",
            f"| rotate.yml, {c['snapshots']}-snapshot lineage | {_s(c['rotate_first']['wall_s'])} | "
            f"{_s(c['rotate_first']['cpu_s'])} | {c['rotate_first']['deleted']} | {c['rotate_first']['api_requests']} |",
            f"| rotate.yml, re-run ({c['kept']} left) | {_s(c['rotate_again']['wall_s'])} | "
            f"{_s(c['rotate_again']['cpu_s'])} | {c['rotate_again']['deleted']} | {c['rotate_again']['api_requests']} |",
            "",
            f"- Rotation kept {c['kept']} snapshots, exactly what the policy names: {c['kept_as_policy_says']}. "
            f"Requests by action: {c['rotate_first']['api_by_action']}; the module's own count: "
            f"{c['rotate_first']['module_api_calls']}.",
        ]
    if r.get("note"):
        lines += ["", "## Closing note", "", r["note"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(json.load(open(sys.argv[1]))), end="")
