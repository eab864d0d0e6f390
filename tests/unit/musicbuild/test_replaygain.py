"""ReplayGain computed (musicbuild/replaygain.py): loudgain's table read robustly, which pairs a
source lacks and what a track gets, the album cache keyed by audio fingerprints, and the real
loudgain measuring copies: the sources' bytes and modification times never change, a file it
cannot read (or reads as no loudness) is named, the scanner missing is a note and not kept."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from musicbuild import replaygain as rg
from musicbuild.profile import ProfileError, normalize_profile, parse_tup_config, render_tup_config

# loudgain 0.6.8 -q -O -a -s s, as printed for two files
TABLE = (
    "File\tLoudness\tRange\tTrue_Peak\tTrue_Peak_dBTP\tReference\tWill_clip\tClip_prevent\tGain\tNew_Peak\tNew_Peak_dBTP\n"
    "0001.flac\t-11.14 LUFS\t0.00 dB\t0.300296\t-10.45 dBTP\t-18.00 LUFS\tN\tN\t-6.86 dB\t0.136265\t-17.31 dBTP\n"
    "0002.flac\t-16.63 LUFS\t0.00 dB\t0.440300\t-7.13 dBTP\t-18.00 LUFS\tN\tN\t-1.37 dB\t0.376231\t-8.49 dBTP\n"
    "Album\t-11.96 LUFS\t0.00 dB\t0.440300\t-7.13 dBTP\t-18.00 LUFS\tN\tN\t-6.04 dB\t0.219557\t-13.17 dBTP\n"
)


# --- loudgain's table ---------------------------------------------------------------------------

def test_parse_output_reads_loudness_and_true_peak_by_column_name():
    assert rg.parse_output(TABLE, ["0001.flac", "0002.flac"]) == {
        "tracks": [(-6.86, 0.300296), (-1.37, 0.4403)], "album": (-6.04, 0.4403)}
    # columns found by the header, whatever their order; blank lines and warnings around ignored
    lines = [line.split("\t") for line in TABLE.splitlines()]
    swapped = "\n".join("\t".join([r[0], r[8], r[3]] + r[1:3]) for r in lines)
    assert rg.parse_output("[!] some warning\n\n" + swapped + "\n\n", ["0001.flac", "0002.flac"])["album"] == (-6.04, 0.4403)


@pytest.mark.parametrize("text, names, says", [
    ("", ["0001.flac"], "no result table"),
    (TABLE.replace("\tLoudness\t", "\tLoud\t"), ["0001.flac", "0002.flac"], "no Loudness"),
    (TABLE, ["0002.flac", "0001.flac"], "not ['0002.flac'"),                    # order
    (TABLE, ["0001.flac"], "not ['0001.flac']"),                                 # one row too many
    ("\n".join(TABLE.splitlines()[:-1]), ["0001.flac", "0002.flac"], "and Album"),  # no album row
    (TABLE.replace("-11.14 LUFS", "-inf LUFS"), ["0001.flac", "0002.flac"],
     "0001.flac: no loudness measured"),
    (TABLE.replace("-16.63 LUFS", "n/a"), ["0001.flac", "0002.flac"], "no loudness and peak"),
    (TABLE.replace("0.440300\t-7.13", "-nan\t-7.13", 1), ["0001.flac", "0002.flac"], "no loudness and peak"),
])
def test_parse_output_refuses_what_it_cannot_trust(text, names, says):
    with pytest.raises(rg.ScannerError, match=says.replace("[", r"\[")):
        rg.parse_output(text, names)


# --- what a track lacks and gets ----------------------------------------------------------------

@pytest.mark.parametrize("pairs, missing", [
    ([], ["track", "album"]),
    ([("replaygain_track_gain", "-3.00 dB"), ("REPLAYGAIN_TRACK_PEAK", "0.5")], ["album"]),   # any case
    ([("REPLAYGAIN_ALBUM_GAIN", "+1.2 dB")], ["track"]),
    ([("REPLAYGAIN_TRACK_GAIN", ""), ("REPLAYGAIN_ALBUM_GAIN", "loud")], ["track", "album"]),  # no number
    ([("REPLAYGAIN_TRACK_GAIN", "-1 dB"), ("REPLAYGAIN_ALBUM_GAIN", "-2 dB")], []),
    ([("R128_TRACK_GAIN", "-2816")], ["album"]),                                    # an Opus source's own
])
def test_missing_parts(pairs, missing):
    assert rg.missing_parts(pairs) == missing


def test_a_track_gets_the_pairs_it_lacks_in_loudgains_notation():
    measured = {"tracks": [(-6.86, 0.300296), (1.5, 0.0401)], "album": (-6.04, 0.4403)}
    assert rg.track_additions([], measured, 1) == [
        ["REPLAYGAIN_TRACK_GAIN", "1.50 dB"], ["REPLAYGAIN_TRACK_PEAK", "0.040100"],
        ["REPLAYGAIN_ALBUM_GAIN", "-6.04 dB"], ["REPLAYGAIN_ALBUM_PEAK", "0.440300"]]
    own_track = [("REPLAYGAIN_TRACK_GAIN", "-3.00 dB"), ("REPLAYGAIN_TRACK_PEAK", "0.5")]
    assert rg.track_additions(own_track, measured, 0) == [["REPLAYGAIN_ALBUM_GAIN", "-6.04 dB"],
                                                          ["REPLAYGAIN_ALBUM_PEAK", "0.440300"]]
    assert rg.merge(own_track, {"tags": [["REPLAYGAIN_ALBUM_GAIN", "-6.04 dB"]]}) == \
        own_track + [["REPLAYGAIN_ALBUM_GAIN", "-6.04 dB"]]
    assert rg.merge(own_track, {"note": "x"}) == own_track and rg.merge(own_track, None) == own_track


def test_album_id_is_the_tracks_fingerprints_in_order():
    a, b = {"md5": "1" * 32, "samples": 10}, {"md5": "2" * 32, "samples": 10}
    assert rg.album_id([a, b]) == rg.album_id([dict(a), dict(b)])
    assert rg.album_id([a, b]) != rg.album_id([b, a])
    assert rg.album_id([a, b]) != rg.album_id([a, {**b, "samples": 11}])


# --- the profile field --------------------------------------------------------------------------

def test_the_replaygain_field():
    assert normalize_profile("p", {"codec": "opus"})["replaygain"] == "keep"
    assert normalize_profile("p", {"codec": "mp3", "replaygain": "compute"})["replaygain"] == "compute"
    with pytest.raises(ProfileError, match=r"profile 'p', field 'replaygain': expected keep or compute, got 'yes'"):
        normalize_profile("p", {"codec": "mp3", "replaygain": "yes"})
    # a profile that keeps renders as before the field existed; compute round-trips
    assert "REPLAYGAIN" not in render_tup_config("p", {"codec": "flac"})
    text = render_tup_config("p", {"codec": "flac", "replaygain": "compute"})
    assert "CONFIG_REPLAYGAIN=compute\n" in text and parse_tup_config(text)[1]["replaygain"] == "compute"


# --- compute(): which albums, the cache, the notes ----------------------------------------------

def folder(rel, *names, stale=False):
    return SimpleNamespace(rel=rel, good=list(names), stale=stale)


def entry(md5, *tags):
    return {"audio": {"md5": md5, "bits": 16}, "tags": list(tags), "length": 1.0}


COMPUTE = {"car": {"replaygain": "compute"}, "flac": {"replaygain": "keep"}}


class FakeMeter:
    def __init__(self):
        self.calls = []

    def __call__(self, paths, workdir, seconds, decode=()):
        self.calls.append([os.path.basename(p) for p in paths])
        return {"tracks": [(-1.0 - i, 0.5) for i in range(len(paths))], "album": (-2.0, 0.9)}


def cached(music):
    return rg.load_cache(str(music / rg.CACHE_NAME))


def test_compute_measures_only_albums_that_lack_something_and_only_once(tmp_path):
    sources = {"A/1.flac": entry("a1"), "A/2.flac": entry("a2", ("REPLAYGAIN_TRACK_GAIN", "-9 dB")),
               "B/1.flac": entry("b1", ("REPLAYGAIN_TRACK_GAIN", "-3 dB"), ("REPLAYGAIN_ALBUM_GAIN", "-4 dB"))}
    folders = [folder("A", "1.flac", "2.flac"), folder("B", "1.flac")]
    meter, music = FakeMeter(), tmp_path
    out = rg.compute(folders, sources, COMPUTE, "/src", str(music), measure_fn=meter)
    assert meter.calls == [["1.flac", "2.flac"]]                       # B has its own
    assert out == {"A/1.flac": {"tags": rg.gain_tags(-1.0, 0.5, "track") + rg.gain_tags(-2.0, 0.9, "album")},
                   "A/2.flac": {"tags": rg.gain_tags(-2.0, 0.9, "album")}}  # its own track pair kept
    # nothing changed: nothing measured, the same result
    assert rg.compute(folders, sources, COMPUTE, "/src", str(music), measure_fn=meter) == out
    assert len(meter.calls) == 1
    # one track's audio changed: its album measured again, whole
    sources["A/2.flac"] = entry("a2-new", ("REPLAYGAIN_TRACK_GAIN", "-9 dB"))
    rg.compute(folders, sources, COMPUTE, "/src", str(music), measure_fn=meter)
    assert meter.calls[1:] == [["1.flac", "2.flac"]] and len(cached(music)) == 1  # the old one dropped


def test_compute_costs_nothing_without_a_profile_that_computes(tmp_path):
    rg.save_cache(str(tmp_path / rg.CACHE_NAME), {"x": {}})
    meter = FakeMeter()
    assert rg.compute([folder("A", "1.flac")], {"A/1.flac": entry("a")}, {"flac": {"replaygain": "keep"}},
                      "/src", str(tmp_path), measure_fn=meter) == {}
    assert meter.calls == [] and cached(tmp_path) == {"x": {}}  # kept for when a profile computes again


def test_measurements_are_saved_while_measuring(tmp_path, monkeypatch):
    """An interrupted first scan keeps what it measured: the cache is written as albums finish."""
    monkeypatch.setattr(rg, "SAVE_EVERY", -1)
    seen = []

    def meter(paths, workdir, seconds, decode=()):
        seen.append(paths)
        if len(seen) == 3:
            raise KeyboardInterrupt  # the build stopped while the third album was measured
        return {"tracks": [(-1.0, 0.5)], "album": (-1.0, 0.5)}

    folders = [folder(f"A{i}", "1.flac") for i in range(3)]
    with pytest.raises(KeyboardInterrupt):
        rg.compute(folders, {f"A{i}/1.flac": entry(f"a{i}") for i in range(3)}, COMPUTE, "/src", str(tmp_path),
                   jobs=1, measure_fn=meter)
    assert len(seen) == 3 and len(cached(tmp_path)) == 2


def test_compute_skips_stale_folders_and_notes_failures(tmp_path):
    sources = {"A/1.flac": entry("a1"), "A/2.flac": entry("a2"), "S/1.flac": entry("s1"),
               "B/1.flac": entry("b1"), "B/2.flac": entry("b2", ("REPLAYGAIN_TRACK_GAIN", "-1 dB"),
                                                          ("REPLAYGAIN_ALBUM_GAIN", "-1 dB"))}

    def meter(paths, workdir, seconds, decode=()):
        if "/src/A/1.flac" in paths:
            return {"failed": {1: "Could not find audio stream"}}
        raise rg.ScannerError("loudgain is not installed (the Debian package loudgain)")

    out = rg.compute([folder("A", "1.flac", "2.flac"), folder("S", "1.flac", stale=True),
                      folder("B", "1.flac", "2.flac")], sources, COMPUTE, "/src", str(tmp_path), measure_fn=meter)
    assert out == {
        "A/1.flac": {"note": "ReplayGain not computed: loudgain could not measure 2.flac of its album"},
        "A/2.flac": {"note": "ReplayGain not computed: loudgain could not measure this file: Could not find audio stream"},
        "B/1.flac": {"note": "ReplayGain not computed: loudgain is not installed (the Debian package loudgain)"},
    }  # B/2.flac has its own; the stale folder is left as the last build saw it
    assert list(cached(tmp_path).values()) == [{"failed": {"1": "Could not find audio stream"}}]  # not the missing scanner


# --- the real loudgain, on copies -----------------------------------------------------------------

def sox(path: Path, *effect, bits=16):
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", str(bits), str(path), "synth", "1", *effect],
                   check=True)


def state(paths):
    return [(hashlib.sha256(Path(p).read_bytes()).hexdigest(), os.stat(p).st_mtime_ns) for p in paths]


def test_measure_runs_loudgain_on_copies_and_never_touches_the_sources(tmp_path):
    a, b = tmp_path / "-a 1.flac", tmp_path / "b\nnew line.flac"   # names loudgain never sees
    sox(a, "sine", "440", "vol", "0.1")
    sox(b, "sine", "440", "vol", "0.4")
    os.chmod(a, 0o444)
    before = state([a, b])
    got = rg.measure([str(a), str(b)], str(tmp_path / "work"), 2.0)
    assert state([a, b]) == before and os.listdir(tmp_path / "work") == []
    (ga, pa), (gb, pb) = got["tracks"]
    assert round(gb - ga, 1) == -12.0 and 0.39 < pb < 0.42 and 0.09 < pa < 0.11   # 4x the amplitude: 12 dB
    assert got["album"][1] == pb and gb < got["album"][0] < ga


def test_measure_names_the_file_it_cannot_read_and_leaves_it_alone(tmp_path):
    good, text, silent = tmp_path / "good.flac", tmp_path / "text.flac", tmp_path / "silent.flac"
    sox(good, "sine", "440", "vol", "0.3")
    text.write_text("not audio\n")
    sox(silent, "sine", "440", "vol", "0")
    before = state([good, text, silent])
    got = rg.measure([str(good), str(text), str(silent)], str(tmp_path / "work"), 2.0)
    assert got == {"failed": {1: "Could not find audio stream",
                              2: "no loudness measured (silent, or audio loudgain's decoder cannot read)"}}
    assert state([good, text, silent]) == before and os.listdir(tmp_path / "work") == []


def test_measure_gives_32_bit_flac_decoded(tmp_path):
    wav, flac = tmp_path / "t.wav", tmp_path / "t.flac"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "32", "-e", "signed-integer", str(wav), "synth", "1",
                    "sine", "440", "vol", "0.3"], check=True)
    subprocess.run(["flac", "-s", "-o", str(flac), str(wav)], check=True, capture_output=True)
    assert "failed" in rg.measure([str(flac)], str(tmp_path / "w"))   # ffmpeg 5.1 hears silence
    (gain, peak), = rg.measure([str(flac)], str(tmp_path / "w"), decode={0})["tracks"]
    assert 0.29 < peak < 0.31 and -8 < gain < -6


def test_measure_without_loudgain_says_so(tmp_path, monkeypatch):
    a = tmp_path / "a.flac"
    sox(a, "sine", "440")
    monkeypatch.setattr(rg, "LOUDGAIN", "loudgain-not-installed-here")
    with pytest.raises(rg.ScannerError, match="loudgain is not installed"):
        rg.measure([str(a)], str(tmp_path / "w"))


def test_an_unexpected_error_is_a_note_and_tried_again_next_build(tmp_path):
    def meter(paths, workdir, seconds, decode=()):
        raise FileNotFoundError(2, "No such file or directory", paths[0])

    out = rg.compute([folder("A", "1.flac")], {"A/1.flac": entry("a1")}, COMPUTE, "/src", str(tmp_path),
                     measure_fn=meter)
    assert out == {"A/1.flac": {"note": "ReplayGain not computed: FileNotFoundError: [Errno 2] No such file or "
                                        "directory: '/src/A/1.flac'"}}
    assert cached(tmp_path) == {}


def test_opus_is_measured_against_the_replaygain_reference(tmp_path):
    """loudgain's own Gain column for Opus is against -23 LUFS; the tags say -18 LUFS."""
    flac, opus = tmp_path / "a.flac", tmp_path / "a.opus"
    sox(flac, "sine", "440", "vol", "0.3")
    subprocess.run(["opusenc", "--quiet", str(flac), str(opus)], check=True)
    (g_flac, _), = rg.measure([str(flac)], str(tmp_path / "w"))["tracks"]
    (g_opus, _), = rg.measure([str(opus)], str(tmp_path / "w"))["tracks"]
    assert abs(g_opus - g_flac) < 0.2
