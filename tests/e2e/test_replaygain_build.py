"""`replaygain: compute` end to end (issue 15 item 6): the build program run directly (as
test_cover_art does) on a generated library, with the real loudgain behind a wrapper on PATH
that only logs the files it is given, so the test sees every scan.

Library: album A (two tracks without ReplayGain, of distinct loudness), album B (a track with
its own track and album ReplayGain), album C (one track with its own track pair only, one
without any), album D (a 32-bit FLAC, which loudgain's ffmpeg 5.1 reads as silence unless
given it decoded), album E (a tone and a track of digital silence: loudgain measures no
loudness in it, so the album gets nothing computed and a note names the file).
Profiles: `keep` (Vorbis, replaygain unset), `car` (MP3, compute), `phone` (Opus, compute).

Read back by mutagen AND ffprobe; the computed values checked against a second meter (ffmpeg's
ebur128 filter: gain = -18 LUFS - integrated loudness, the album's over its tracks
concatenated); Opus as R128 gains. Four builds: the first; one with nothing changed (no scan,
nothing made); one where a track's audio changed (its album scanned again whole: that track
re-encoded, its album mate re-tagged, in the keep profile only the changed track re-encoded);
one with keep switched to compute (re-tags only the tracks it gives values or a note to, no
encode, no scan: the cache serves). The sources' bytes and modification times never change.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from mutagen.flac import FLAC
from mutagen.id3 import ID3
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis

from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = Path(os.environ.get("MUSIC_BUILD_PROGRAM", ROOT / "roles/worker/files/music-build/music-build"))
PROFILES = {
    "keep": {"codec": "vorbis"},
    "car": {"codec": "mp3", "replaygain": "compute"},
    "phone": {"codec": "opus", "replaygain": "compute"},
}
EXT = {"keep": ".ogg", "car": ".mp3", "phone": ".opus"}
OWN_B = {"REPLAYGAIN_TRACK_GAIN": "-3.21 dB", "REPLAYGAIN_TRACK_PEAK": "0.500000",
         "REPLAYGAIN_ALBUM_GAIN": "-4.32 dB", "REPLAYGAIN_ALBUM_PEAK": "0.600000"}
OWN_C = {"REPLAYGAIN_TRACK_GAIN": "+1.50 dB", "REPLAYGAIN_TRACK_PEAK": "0.250000"}
KEYS = ("REPLAYGAIN_TRACK_GAIN", "REPLAYGAIN_TRACK_PEAK", "REPLAYGAIN_ALBUM_GAIN", "REPLAYGAIN_ALBUM_PEAK")


def sox(path: Path, seconds: float, *effect: str, bits: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 32:  # sox writes no 32-bit FLAC: a WAV, then flac
        wav = path.with_suffix(".wav")
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "32", "-e", "signed-integer", str(wav),
                        "synth", str(seconds), *effect], check=True)
        subprocess.run(["flac", "-s", "-f", "-o", str(path), str(wav)], check=True, capture_output=True)
        wav.unlink()
    else:
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", str(bits), str(path), "synth", str(seconds),
                        *effect], check=True)


def tag(path: Path, title: str, album: str, **extra: str) -> None:
    audio = FLAC(path)
    audio["TITLE"], audio["ARTIST"], audio["ALBUM"] = title, "Tester", album
    for k, v in extra.items():
        audio[k] = v
    audio.save()


def make_library(src: Path) -> None:
    sox(src / "A/01 Quiet.flac", 2.0, "sine", "440", "vol", "0.1")
    tag(src / "A/01 Quiet.flac", "Quiet", "A")
    sox(src / "A/02 Loud.flac", 2.2, "pinknoise", "vol", "0.6")
    tag(src / "A/02 Loud.flac", "Loud", "A")
    sox(src / "B/01 Own.flac", 1.5, "sine", "300", "vol", "0.4")
    tag(src / "B/01 Own.flac", "Own", "B", **OWN_B)
    sox(src / "C/01 Track only.flac", 1.5, "sine", "500", "vol", "0.2")
    tag(src / "C/01 Track only.flac", "Track only", "C", **OWN_C)
    sox(src / "C/02 None.flac", 1.7, "sine", "700", "vol", "0.5")
    tag(src / "C/02 None.flac", "None", "C")
    sox(src / "D/01 Thirty-two.flac", 1.6, "sine", "600", "vol", "0.3", bits=32)
    tag(src / "D/01 Thirty-two.flac", "Thirty-two", "D")
    sox(src / "E/01 Tone.flac", 1.4, "sine", "800", "vol", "0.3")
    tag(src / "E/01 Tone.flac", "Tone", "E")
    sox(src / "E/02 Silence.flac", 1.3, "sine", "800", "vol", "0")
    tag(src / "E/02 Silence.flac", "Silence", "E")


def states(src: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(src)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(src.rglob("*")) if p.is_file()}


def loudness(*paths: Path) -> float:
    """Integrated loudness (LUFS) by ffmpeg's ebur128 filter, of the files played one after another
    (a 32-bit FLAC, which ffmpeg 5.1 cannot decode, given to it decoded by flac)."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        for i, p in enumerate(paths):
            if FLAC(p).info.bits_per_sample > 24:
                wav = os.path.join(tmp, f"{i}.wav")
                subprocess.run(["flac", "-s", "-d", "-o", wav, str(p)], check=True)
                p = wav
            inputs += ["-i", str(p)]
        chain = "".join(f"[{i}:a]" for i in range(len(paths))) + f"concat=n={len(paths)}:v=0:a=1,ebur128"
        run = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", *inputs, "-filter_complex", chain,
                              "-f", "null", "-"], capture_output=True, text=True, check=True)
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", run.stderr)[-1])


def ffprobe_tags(path: Path) -> dict[str, str]:
    run = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags:stream_tags", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)
    data = json.loads(run.stdout)
    out = {k.upper(): v for k, v in data.get("format", {}).get("tags", {}).items()}
    for stream in data.get("streams", []):
        out.update({k.upper(): v for k, v in stream.get("tags", {}).items()})
    return out


def mutagen_tags(path: Path) -> dict[str, str]:
    if path.suffix == ".mp3":
        return {f.desc.upper(): str(f.text[0]) for f in ID3(path).getall("TXXX")}
    audio = OggOpus(path) if path.suffix == ".opus" else OggVorbis(path)
    seen = {k.upper(): v for k, v in audio.tags.items()} if audio.tags else {}
    assert all(len(v) == 1 for k, v in seen.items() if "GAIN" in k or "PEAK" in k), seen  # one value each
    return {k: v[0] for k, v in seen.items()}


def gains(path: Path, probe: bool = True) -> dict[str, str]:
    """The output's gain tags as mutagen reads them, checked to be what ffprobe reads (the
    first build's outputs; later ones by mutagen alone, to keep the test short)."""
    seen = mutagen_tags(path)
    wanted = ("R128_TRACK_GAIN", "R128_ALBUM_GAIN") if path.suffix == ".opus" else KEYS
    got = {k: seen[k] for k in wanted if k in seen}
    if probe:
        probed = ffprobe_tags(path)
        assert got == {k: probed[k] for k in wanted if k in probed}, (path, seen, probed)
    if path.suffix == ".opus":
        assert not any(k.startswith("REPLAYGAIN_") for k in seen), seen
    return got


def db(value: str) -> float:
    return float(value.split()[0])


class World:
    def __init__(self, base: Path):
        self.base, self.src, self.builds = base, base / "src", base / "builds"
        self.log = base / "loudgain.log"
        bin_dir = base / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "loudgain"
        # one line per run: the files it was given (the copies' plain names)
        wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{self.log}'\nexec /usr/bin/loudgain \"$@\"\n")
        wrapper.chmod(0o755)
        self.env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
        self.reports: list[dict] = []
        self.events: list[list[dict]] = []
        self.scans: list[list[str]] = []

    def configure(self, profiles: dict) -> None:
        for p, settings in profiles.items():
            folder = self.builds / ".music" / "tup" / p
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "tup.config").write_text(render_tup_config(p, settings))

    def build(self) -> dict:
        logged = len(self.log.read_text().splitlines()) if self.log.exists() else 0
        run = subprocess.run([str(MUSIC_BUILD), "--sources", str(self.src), "--builds", str(self.builds),
                              "--jobs", "2"], capture_output=True, text=True, env=self.env, timeout=120)
        out = run.stdout + run.stderr
        assert run.returncode == 0 and "Traceback" not in out, out[-3000:]
        report = json.loads((self.builds / "report.json").read_text(encoding="utf-8"))
        self.reports.append(report)
        journal = self.builds / ".music" / "journal.jsonl"  # each build's own
        self.events.append([json.loads(line) for line in journal.read_text().splitlines() if line.strip()])
        self.scans.append(self.log.read_text().splitlines()[logged:] if self.log.exists() else [])
        return report

    def made(self, build: int, event: str, profile: str) -> set[str]:
        return {e["source"] for e in self.events[build] if e["event"] == event and e.get("profile") == profile}

    def out(self, profile: str, rel: str) -> Path:
        return self.builds / profile / (rel[: -len(".flac")] + EXT[profile])

    def notes(self, build: int, profile: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for n in self.reports[build]["profiles"][profile]["notes"]:
            out.setdefault(n["source"], []).append(n["note"])
        return out


@pytest.fixture(scope="module")
def world(world_readable_tmp):
    base = world_readable_tmp / f"replaygain-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o755)
    try:
        w = World(base)
        make_library(w.src)
        w.sources_before = states(w.src)
        w.configure(PROFILES)
        w.build()                                       # 0: first
        w.outputs_1 = {p: {r: gains(w.out(p, r)) for r in w.sources_before} for p in PROFILES}
        w.build()                                       # 1: nothing changed
        loud = w.src / "A/02 Loud.flac"
        kept = FLAC(loud).tags
        sox(loud, 2.2, "pinknoise", "vol", "0.9")       # new audio, same tags
        audio = FLAC(loud)
        for k, v in kept:
            audio[k] = v
        audio.save()
        w.changed = states(w.src)
        w.build()                                       # 2: one track's audio changed
        w.outputs_3 = {p: {r: gains(w.out(p, r), probe=False) for r in w.sources_before} for p in PROFILES}
        w.configure({"keep": {"codec": "vorbis", "replaygain": "compute"}, "phone": {"codec": "opus"}})
        w.build()                                       # 3: keep -> compute, phone -> keep
        yield w
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def test_computed_values_are_replaygain_2_measured_again_by_ffmpeg(world):
    src, car, phone = world.src, world.outputs_3["car"], world.outputs_3["phone"]  # the sources as they are now
    a = [src / "A/01 Quiet.flac", src / "A/02 Loud.flac"]
    for rel, path in (("A/01 Quiet.flac", a[0]), ("A/02 Loud.flac", a[1]), ("C/02 None.flac", src / "C/02 None.flac"),
                      ("D/01 Thirty-two.flac", src / "D/01 Thirty-two.flac")):
        assert set(car[rel]) == set(KEYS), (rel, car[rel])
        assert abs(db(car[rel]["REPLAYGAIN_TRACK_GAIN"]) - (-18 - loudness(path))) < 0.15, (rel, car[rel])
        assert 0 < float(car[rel]["REPLAYGAIN_TRACK_PEAK"]) <= 1.05
        # Opus: the same gains as R128 (-23 LUFS, Q7.8), read by both readers
        for part in ("TRACK", "ALBUM"):
            want = round((db(car[rel][f"REPLAYGAIN_{part}_GAIN"]) - 5) * 256)
            assert int(phone[rel][f"R128_{part}_GAIN"]) == want, (rel, phone[rel])
    # an album's gain is its tracks' loudness together, the same on each of them
    assert car["A/01 Quiet.flac"]["REPLAYGAIN_ALBUM_GAIN"] == car["A/02 Loud.flac"]["REPLAYGAIN_ALBUM_GAIN"]
    assert abs(db(car["A/01 Quiet.flac"]["REPLAYGAIN_ALBUM_GAIN"]) - (-18 - loudness(*a))) < 0.2
    assert db(car["A/01 Quiet.flac"]["REPLAYGAIN_TRACK_GAIN"]) > db(car["A/02 Loud.flac"]["REPLAYGAIN_TRACK_GAIN"])
    assert car["A/02 Loud.flac"]["REPLAYGAIN_ALBUM_PEAK"] == max(car[r]["REPLAYGAIN_TRACK_PEAK"]
                                                                for r in ("A/01 Quiet.flac", "A/02 Loud.flac"))


def test_a_sources_own_replaygain_is_kept_and_what_it_lacks_is_filled(world):
    car, keep = world.outputs_1["car"], world.outputs_1["keep"]
    assert car["B/01 Own.flac"] == OWN_B and keep["B/01 Own.flac"] == OWN_B
    c1, c2 = car["C/01 Track only.flac"], car["C/02 None.flac"]
    assert {k: c1[k] for k in OWN_C} == OWN_C                   # its own track pair
    assert c1["REPLAYGAIN_ALBUM_GAIN"] == c2["REPLAYGAIN_ALBUM_GAIN"]  # the computed album pair
    assert abs(db(c1["REPLAYGAIN_ALBUM_GAIN"]) - (-18 - loudness(world.src / "C/01 Track only.flac",
                                                                 world.src / "C/02 None.flac"))) < 0.2
    # the profile that keeps gets no computed value
    assert keep["A/01 Quiet.flac"] == {} and keep["C/01 Track only.flac"] == OWN_C


def test_an_album_loudgain_cannot_measure_gets_a_note_naming_the_file(world):
    report = world.reports[0]
    for p in ("car", "phone"):
        assert report["profiles"][p]["failed"] == []
        notes = world.notes(0, p)
        assert any("02 Silence.flac" in n for n in notes["E/01 Tone.flac"]), notes
        assert notes["E/02 Silence.flac"] == ["ReplayGain not computed: loudgain could not measure this file: "
                                              "no loudness measured (silent, or audio loudgain's decoder cannot read)"]
        assert notes["E/01 Tone.flac"] == ["ReplayGain not computed: loudgain could not measure 02 Silence.flac "
                                           "of its album"]
        for rel in ("E/01 Tone.flac", "E/02 Silence.flac"):
            assert world.outputs_1[p][rel] == {}, (p, rel)          # nothing computed, output made
            assert world.out(p, rel).exists()
    assert not any("ReplayGain" in n for ns in world.notes(0, "keep").values() for n in ns)
    assert not report.get("failed"), report.get("failed")


def test_the_sources_are_never_touched(world):
    after_first_three = {k: v for k, v in states(world.src).items()}
    assert after_first_three == world.changed
    unchanged = {k: v for k, v in world.sources_before.items() if k != "A/02 Loud.flac"}
    assert {k: v for k, v in world.changed.items() if k != "A/02 Loud.flac"} == unchanged
    assert not list((world.builds / ".music" / "tmp").glob("replaygain.*"))  # its copies are gone


def test_each_album_is_scanned_once_and_again_only_when_its_audio_changes(world):
    first = world.scans[0]
    # A, C, D and E as albums (E's silent track then alone, to name it); B has its own values
    albums = [line for line in first if " -a " in f" {line} "]
    assert len(albums) == 4, first
    assert sorted(len(line.split()) - 5 for line in albums) == [1, 2, 2, 2]   # files given
    assert any(line.endswith(".wav") for line in albums)                       # the 32-bit one, decoded
    assert world.scans[1] == [], world.scans[1]                                # nothing changed
    assert world.events[1] == [] or all(e["event"] == "unchanged" for e in world.events[1]), world.events[1]
    assert len(world.scans[2]) == 1 and len(world.scans[2][0].split()) - 5 == 2  # album A again, whole
    assert world.scans[3] == []                                                  # the cache serves


def test_an_audio_change_rescans_its_album_and_retags_its_mate(world):
    for p in ("car", "phone"):
        assert world.made(2, "encoded", p) == {"A/02 Loud.flac"}, p
        assert world.made(2, "retagged", p) == {"A/01 Quiet.flac"}, p
        assert world.made(2, "encoder", p) == {"A/02 Loud.flac"}
    assert world.made(2, "encoded", "keep") == {"A/02 Loud.flac"}
    assert world.made(2, "retagged", "keep") == set()
    before, after = world.outputs_1["car"], world.outputs_3["car"]
    assert after["A/01 Quiet.flac"]["REPLAYGAIN_TRACK_GAIN"] == before["A/01 Quiet.flac"]["REPLAYGAIN_TRACK_GAIN"]
    assert db(after["A/01 Quiet.flac"]["REPLAYGAIN_ALBUM_GAIN"]) < db(before["A/01 Quiet.flac"]["REPLAYGAIN_ALBUM_GAIN"])
    assert db(after["A/02 Loud.flac"]["REPLAYGAIN_TRACK_GAIN"]) < db(before["A/02 Loud.flac"]["REPLAYGAIN_TRACK_GAIN"])


def test_switching_replaygain_retags_only_what_gains_or_loses_values(world):
    affected = {"A/01 Quiet.flac", "A/02 Loud.flac", "C/01 Track only.flac", "C/02 None.flac",
                "D/01 Thirty-two.flac", "E/01 Tone.flac", "E/02 Silence.flac"}  # all but B's, which has its own
    for p in ("keep", "phone"):
        assert world.made(3, "encoder", p) == set(), p
        assert world.made(3, "retagged", p) == affected, p
    assert world.made(3, "retagged", "car") == world.made(3, "encoder", "car") == set()
    car = world.outputs_3["car"]
    for rel in world.sources_before:
        assert gains(world.out("keep", rel), probe=False) == car[rel], rel
    # phone keeps again: only what the sources say, as R128
    assert {r: gains(world.out("phone", r), probe=False) for r in world.sources_before} == {
        r: ({"R128_TRACK_GAIN": str(round((-3.21 - 5) * 256)), "R128_ALBUM_GAIN": str(round((-4.32 - 5) * 256))}
            if r == "B/01 Own.flac" else {"R128_TRACK_GAIN": str(round((1.5 - 5) * 256))} if r == "C/01 Track only.flac"
            else {}) for r in world.sources_before}
    assert not any("ReplayGain" in n for ns in world.notes(3, "phone").values() for n in ns)
    assert world.notes(3, "keep")["E/01 Tone.flac"] == world.notes(0, "car")["E/01 Tone.flac"]
