"""Section `scale`: a large library (BENCH_SCALE_TRACKS) built from empty, then a no-change
rebuild (twice), one changed track, a tag-only edit of a 12-track album versus re-encoding
it, and one profile's bitrate raised; with the per-output overhead beyond the bare encoder."""
from __future__ import annotations

import shutil

from musicbuild.profile import CODEC_TABLE, render_tup_config

import library
from measure import Meter, say
from program import bare_encode, music_build, prepare_builds
from settings import ALBUM_SECONDS, JOBS, KEEP, SCALE_PROFILES, SCALE_SECONDS, SCALE_TRACKS, WORK


def run(profiles: dict) -> dict:
    work = WORK / "scale"
    shutil.rmtree(work, ignore_errors=True)
    src = work / "library"
    say(f"scale: generating {SCALE_TRACKS} tracks of {SCALE_SECONDS:g} s (album '{library.LONG_ALBUM}': "
        f"12 x {ALBUM_SECONDS:g} s)")
    with Meter() as gen:
        made = library.scale_library(src, SCALE_TRACKS, SCALE_SECONDS, ALBUM_SECONDS)
    long_album = [src / r for r in made if r.startswith(library.LONG_ALBUM + "/")]
    short = [src / r for r in made if not r.startswith(library.LONG_ALBUM + "/")]
    res: dict = {"tracks": len(made), "track_s": SCALE_SECONDS, "album_track_s": ALBUM_SECONDS,
                 "profiles": SCALE_PROFILES, "jobs": JOBS, "generate": gen.figures()}

    # Bare encoder time for the same tracks: a sample of the short ones, all of the long album.
    sample = short[:: max(1, len(short) // 100)][:100]
    say(f"scale: bare encoders on {len(sample)} short tracks and the long album, one process")
    bare_short = bare_encode(sample, profiles, SCALE_PROFILES, work / "bare", 1)
    bare_album = bare_encode(long_album, profiles, SCALE_PROFILES, work / "bare", 1)
    per_short = bare_short["wall_s"] / len(sample)
    bare_total = per_short * len(short) + bare_album["wall_s"]
    bare_cpu = bare_short["cpu_s"] / len(sample) * len(short) + bare_album["cpu_s"]
    res["bare_short_per_track_s"] = round(per_short / len(SCALE_PROFILES), 4)
    res["bare_short_sample"] = bare_short
    res["bare_album"] = bare_album
    res["bare_library_estimate_s"] = round(bare_total, 1)
    res["bare_library_estimate_cpu_s"] = round(bare_cpu, 1)

    builds = work / "builds"
    prepare_builds(builds, profiles, SCALE_PROFILES)
    say("scale: first build")
    first = res["build_first"] = music_build(src, builds, "scale-first")
    outputs = len(made) * len(SCALE_PROFILES)
    res["overhead_per_output_s"] = round((first["wall_s"] * JOBS - bare_total) / outputs, 4)
    res["overhead_per_output_cpu_s"] = round((first["cpu_s"] - bare_cpu) / outputs, 4)
    res["build_core_s_per_output"] = round(first["wall_s"] * JOBS / outputs, 4)

    say("scale: no-change rebuild")
    res["nochange"] = music_build(src, builds, "scale-nochange")
    res["nochange_again"] = music_build(src, builds, "scale-nochange-again")

    one = short[len(short) // 2]
    library.change_audio(src, str(one.relative_to(src)), SCALE_SECONDS, seed=7)
    say("scale: one track's audio changed")
    res["one_track"] = music_build(src, builds, "scale-one-track")

    for f in long_album:
        library.edit_tag(src, str(f.relative_to(src)), "COMMENT", "Edited by the benchmark")
    say("scale: tag-only edit of the 12-track album")
    res["album_tags"] = music_build(src, builds, "scale-album-tags")

    for i, f in enumerate(long_album):
        library.change_audio(src, str(f.relative_to(src)), ALBUM_SECONDS, seed=100 + i)
    say("scale: the same album re-encoded (new audio)")
    res["album_reencode"] = music_build(src, builds, "scale-album-reencode")

    base = res["nochange"]
    tag, enc = res["album_tags"], res["album_reencode"]
    res["album_ratio_tup"] = round(tag["tup_s"] / enc["tup_s"], 4) if enc["tup_s"] else None
    res["album_ratio_wall"] = round(tag["wall_s"] / enc["wall_s"], 4)
    marg_tag, marg_enc = tag["wall_s"] - base["wall_s"], enc["wall_s"] - base["wall_s"]
    res["album_ratio_marginal_wall"] = round(marg_tag / marg_enc, 4) if marg_enc > 0 else None

    name = SCALE_PROFILES[0]
    changed = dict(profiles[name])
    codec_settings = CODEC_TABLE[changed["codec"]]["settings"]
    if changed.get("bitrate"):
        changed["bitrate"] = int(changed["bitrate"]) + 32
    elif "quality" in codec_settings:
        changed["quality"] = (int(changed.get("quality", codec_settings["quality"]["default"])) + 2) % 10
    else:
        changed["compression_level"] = (int(changed.get("compression_level",
                                                        codec_settings["compression_level"]["default"])) + 3) % 9
    (builds / ".music" / "tup" / name / "tup.config").write_text(render_tup_config(name, changed))
    say(f"scale: profile {name} changed ({profiles[name]} -> {changed})")
    res["profile_change"] = music_build(src, builds, "scale-profile-change")
    res["profile_change"]["change"] = {name: {k: changed.get(k) for k in ("bitrate", "quality")}}
    res["disk_mb"] = round(sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 1e6, 1)
    if not KEEP:
        shutil.rmtree(work, ignore_errors=True)
    return res
