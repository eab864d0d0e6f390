"""Every valid FLAC compiles into every codec, with the right channels (issue 14, parts 1-2).

A library made here (sox, flac, metaflac, mutagen) of what collections hold besides CD rips:
streamed FLACs (STREAMINFO's total samples and MD5 both 0, "unknown" in the FLAC spec), an
ID3v2 tag in front of `fLaC` (with and without an MD5; two stacked, the second an ID3v2.4 tag
with its footer), an APEv2 and an ID3v1 tag appended after the audio as old taggers write
them (flac itself refuses both), 8, 16, 24 and 32-bit samples, 22.05 to
384 kHz, mono to 7.1 (a 5.1 whose front left and right are silent: a downmix that drops
channels is silence), and two album images (one FLAC with its CUE sheet as a CUESHEET block,
one as a CUESHEET tag). It is compiled by the build program, run directly as the build user,
into seven profiles: FLAC with playlists; Opus 128 kb/s; MP3 CBR 320; Vorbis quality 5, ABR
500 and ABR 45 kb/s; Opus with `channels: 2`.

Per source and profile: the output is there and decodes (ffmpeg, or flac -t for 32-bit FLAC,
which ffmpeg 5.1 does not decode), with the source's length, the channels the profile gives
it (FLAC, Opus and Vorbis keep the layout, as ffprobe names it, each channel at its level;
MP3 and `channels: 2` get a downmix in which every channel but the LFE is heard) and the rate
the codec can carry; report.json has no failure and a note exactly where something was
adapted; the streamed FLAC's playlist line has its length; a second build encodes nothing,
even after the tags appended to an MD5-less source are re-tagged.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
import uuid
from pathlib import Path

import mutagen
import pytest
from mutagen.id3 import ID3, TIT2

from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = Path(os.environ.get("MUSIC_BUILD_PROGRAM", ROOT / "roles/worker/files/music-build/music-build"))
USER = "music"
PROFILES = {
    "lossless": {"codec": "flac", "playlists": True},
    "phone": {"codec": "opus", "bitrate": 128},
    "car": {"codec": "mp3", "bitrate": 320},
    "ogg": {"codec": "vorbis"},
    "ogg500": {"codec": "vorbis", "bitrate": 500},
    "ogg45": {"codec": "vorbis", "bitrate": 45},
    "stereo": {"codec": "opus", "bitrate": 96, "channels": 2},
}
EXT = {"flac": ".flac", "opus": ".opus", "mp3": ".mp3", "vorbis": ".ogg"}
SILENT = -80.0  # dB: RMS below this is silence

# The library: name -> (rate, channels, bits, seconds, how it is made). Lengths differ by 0.1 s
# or more, so an output carrying another track's audio shows.
TRACKS = {
    "Variety/01 Plain.flac": (44100, 2, 16, 1.0, "plain"),
    "Variety/02 Streamed.flac": (44100, 2, 16, 2.6, "streamed"),
    "Variety/03 ID3 streamed.flac": (48000, 2, 24, 1.2, "id3 streamed"),
    "Variety/04 ID3 no MD5.flac": (44100, 2, 16, 1.3, "id3 no-md5"),
    "Variety/05 Mono 8-bit.flac": (22050, 1, 8, 1.4, "plain"),
    "Variety/06 Hires 192k.flac": (192000, 2, 24, 1.5, "plain"),
    "Variety/07 Hires 384k 32-bit.flac": (384000, 2, 32, 0.9, "streamed"),
    "Variety/08 Three.flac": (44100, 3, 16, 1.1, "plain"),
    "Variety/09 Surround.flac": (48000, 6, 24, 1.6, "surround"),
    "Variety/10 Eight.flac": (48000, 8, 16, 1.7, "streamed"),
    "Variety/11 Two ID3v2, footer.flac": (44100, 2, 16, 0.6, "front double"),
    "Variety/12 APE, ID3v1 after.flac": (48000, 2, 24, 0.8, "tail ape id3v1 no-md5"),
    "Album Image/Live (cuesheet block).flac": (44100, 2, 16, 3.0, "cue block"),
    "Album Image/Live (cuesheet tag).flac": (44100, 2, 16, 3.2, "cue tag"),
}
# The 5.1 source: FL and FR silent, FC -10 dB, LFE -20 dB, BL -14 dB, BR -18 dB (peaks).
SURROUND_GAINS = [0.0, 0.0, 0.316, 0.1, 0.2, 0.126]
CUE = """FILE "Live.wav" WAVE
  TRACK 01 AUDIO
    TITLE "Opening"
    INDEX 01 00:00:00
  TRACK 02 AUDIO
    TITLE "Encore"
    INDEX 01 00:01:00
"""


# --- the library -------------------------------------------------------------------------------

def tones(channels: int, seed: int) -> list[str]:
    """A tone per channel; the LFE's (the 4th of 6 to 8 channels) low, as LFE channels are."""
    out = []
    for c in range(channels):
        out += ["sine", "60" if channels >= 6 and c == 3 else f"{220 + 37 * seed + 55 * c}"]
    return out


def raw_audio(rate: int, channels: int, bits: int, seconds: float, seed: int) -> bytes:
    return subprocess.run(["sox", "-R", "-n", "-r", str(rate), "-c", str(channels), "-b", str(bits), "-e", "signed",
                           "-t", "raw", "-", "synth", str(seconds), *tones(channels, seed), "gain", "-9"],
                          check=True, capture_output=True).stdout


def encode_raw(raw: bytes, path: Path, rate: int, channels: int, bits: int, streamed: bool) -> None:
    """flac from raw samples; `streamed`: to a pipe, as streaming tools do (STREAMINFO's total
    samples and MD5 stay 0)."""
    argv = ["flac", "--silent", "--force-raw-format", "--endian=little", "--sign=signed", f"--channels={channels}",
            f"--bps={bits}", f"--sample-rate={rate}", "--channel-map=none"]
    if streamed:
        with open(path, "wb") as out:
            subprocess.run(argv + ["-o", "-", "-"], input=raw, stdout=out, stderr=subprocess.DEVNULL, check=True)
    else:
        subprocess.run(argv + ["-f", "-o", str(path), "-"], input=raw, check=True)


def unset_md5(path: Path) -> None:
    """Zero STREAMINFO's MD5 (the FLAC spec's "unknown"), by a byte edit."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0
    data[8 + 18:8 + 34] = bytes(16)
    path.write_bytes(bytes(data))


def id3v2(version: int, flags: int, title: bytes) -> bytes:
    """An ID3v2 tag with a TIT2 frame (sizes under 128: syncsafe as they are); with the
    footer flag (0x10, ID3v2.4), its footer after it."""
    body = b"TIT2" + len(title).to_bytes(4, "big") + b"\x00\x00" + title + bytes(5)
    tag = b"ID3" + bytes([version, 0, flags]) + len(body).to_bytes(4, "big") + body
    return tag + (b"3DI" + tag[3:10] if flags & 0x10 else b"")


def id3v1(title: str) -> bytes:
    return b"TAG" + title.encode().ljust(30, b"\x00")[:30] + bytes(94) + b"\xff"


def apev2(title: str) -> bytes:
    """An APEv2 tag with its header and footer, one item (Title)."""
    item = len(title.encode()).to_bytes(4, "little") + bytes(4) + b"Title\x00" + title.encode()

    def part(flags: int) -> bytes:
        return (b"APETAGEX" + (2000).to_bytes(4, "little") + (len(item) + 32).to_bytes(4, "little")
                + (1).to_bytes(4, "little") + flags.to_bytes(4, "little") + bytes(8))
    return part(0xA0000000) + item + part(0x80000000)


def appended(how: str, title: str) -> bytes:
    return (apev2(title) if "ape" in how else b"") + (id3v1(title) if "id3v1" in how else b"")


def make_track(path: Path, rate: int, channels: int, bits: int, seconds: float, how: str, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "surround":
        remix = [f"{i + 1}v{g}" for i, g in enumerate(SURROUND_GAINS)]
        subprocess.run(["sox", "-R", "-n", "-r", str(rate), "-b", str(bits), "-c", "6", str(path), "synth",
                        str(seconds), *["sine", "300"] * 3, "sine", "60", *["sine", "300"] * 2, "remix", *remix],
                       check=True)
    else:
        raw = raw_audio(rate, channels, bits, seconds, seed)
        encode_raw(raw, path, rate, channels, bits, streamed="streamed" in how)
    if how.endswith("no-md5"):
        unset_md5(path)
    if how == "cue block":
        cue = path.with_suffix(".cue")
        cue.write_text(CUE)
        subprocess.run(["metaflac", f"--import-cuesheet-from={cue}", str(path)], check=True)
        cue.unlink()
    tags = mutagen.File(str(path))
    tags["TITLE"] = path.stem
    tags["ARTIST"] = "Variety"
    if how == "cue tag":
        tags["CUESHEET"] = CUE
    if "streamed" not in how:
        tags.save()
    else:  # mutagen would keep the tags but the point is the stream as its tool left it: only a title
        subprocess.run(["metaflac", "--dont-use-padding", f"--set-tag=TITLE={path.stem}", "--set-tag=ARTIST=Variety",
                        str(path)], check=True)
    if how.startswith("id3"):
        tag = ID3()
        tag.add(TIT2(encoding=3, text=["an ID3 title, which FLAC readers skip"]))
        tag.save(str(path), v2_version=3)
        assert path.read_bytes()[:3] == b"ID3"
    if how.startswith("front"):  # as flac and mutagen do not skip them
        front = id3v2(4, 0x10, b"with a footer")
        path.write_bytes((id3v2(3, 0, b"first") + front if "double" in how else front) + path.read_bytes())
    if how.startswith("tail"):
        with open(path, "ab") as fh:
            fh.write(appended(how, "an old tagger's title"))


def make_library(root: Path) -> None:
    for seed, (rel, (rate, channels, bits, seconds, how)) in enumerate(TRACKS.items()):
        make_track(root / rel, rate, channels, bits, seconds, how, seed)
    info = subprocess.run(["metaflac", "--show-total-samples", "--show-md5sum",
                           str(root / "Variety/02 Streamed.flac")], capture_output=True, text=True, check=True)
    assert info.stdout == "0\n" + "0" * 32 + "\n", "not a streamed FLAC"
    assert subprocess.run(["metaflac", "--export-cuesheet-to=-", str(root / "Album Image/Live (cuesheet block).flac")],
                          capture_output=True, check=True).stdout


# --- the build ---------------------------------------------------------------------------------

def build_user() -> str:
    """The `music` system user, as the worker role makes it; tup (FUSE) usable by it."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["groupadd", "--system", "-f", USER], check=True)
        made = subprocess.run(["useradd", "--system", "--gid", USER, "--home-dir", "/var/lib/music",
                               "--create-home", "--shell", "/usr/sbin/nologin", USER], capture_output=True, text=True)
        if made.returncode != 0:
            pwd.getpwnam(USER)  # made meanwhile by a parallel test; else this fails
    if stat.S_IMODE(os.stat("/dev/fuse").st_mode) & 0o006 != 0o006:
        os.chmod("/dev/fuse", 0o666)
    return USER


def music_build(src: Path, builds: Path) -> dict:
    run = subprocess.run(["runuser", "-u", USER, "--", str(MUSIC_BUILD), "--sources", str(src), "--builds",
                          str(builds), "--jobs", "2"], capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert "Traceback" not in out and run.returncode == 0, f"music-build exit {run.returncode}:\n{out[-4000:]}"
    return json.loads((builds / "report.json").read_text(encoding="utf-8"))


def fuse_mounts_under(base: Path) -> list[str]:
    want = str(base) + "/"
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(want)]


class Built:
    def __init__(self, src: Path, builds: Path, report: dict, seconds: float):
        self.src, self.builds, self.report, self.seconds = src, builds, report, seconds
        # profile -> {source: output path}, as the build recorded it
        self.outputs = {}
        for p in PROFILES:
            record = json.loads((builds / ".music/outputs" / f"{p}.json").read_text())["outputs"]
            self.outputs[p] = {s: builds / p / out for out, s in record.items() if out.endswith(EXT[PROFILES[p]["codec"]])}


@pytest.fixture(scope="module")
def built(world_readable_tmp):
    build_user()
    base = world_readable_tmp / f"variety-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o755)
    try:
        src = base / "src"
        make_library(src)
        builds = base / "builds"
        for p, settings in PROFILES.items():
            folder = builds / ".music" / "tup" / p
            folder.mkdir(parents=True)
            (folder / "tup.config").write_text(render_tup_config(p, settings))
        subprocess.run(["chown", "-R", f"{USER}:{USER}", str(builds)], check=True)
        subprocess.run(["chmod", "-R", "a+rX", str(src)], check=True)
        started = time.monotonic()
        report = music_build(src, builds)
        yield Built(src, builds, report, time.monotonic() - started)
    finally:
        subprocess.run(["umount", "-l", *fuse_mounts_under(base)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


# --- what a profile must make of a source --------------------------------------------------------

def expected_channels(profile: str, channels: int) -> int:
    settings = PROFILES[profile]
    if settings["codec"] == "mp3" or "channels" in settings:
        return min(2, channels)
    return channels


def expected_rate(profile: str, rate: int) -> int | None:
    """The output's sample rate as its header says (None: Opus, always 48 kHz inside)."""
    settings = PROFILES[profile]
    codec = settings["codec"]
    if codec == "opus":
        return None
    if codec == "mp3":
        return rate if rate <= 48000 else 48000  # lame resamples; an MP3 has at most 48 kHz
    if codec == "vorbis":
        if "bitrate" in settings and rate > 50000:
            return 44100 if rate % 11025 == 0 else 48000
        return rate if rate <= 200000 else 192000
    return rate


def expected_notes(profile: str, source: str) -> list[str]:
    """The notes the report must have for this output, as exact strings or patterns."""
    rate, channels, _, _, _ = TRACKS[source]
    settings = PROFILES[profile]
    notes = []
    out_channels = expected_channels(profile, channels)
    if out_channels < channels:
        why = "mp3 carries at most 2" if settings["codec"] == "mp3" else "the profile's channels: 2"
        notes.append(f"downmixed {channels} channels to {out_channels} ({why})")
    out_rate = expected_rate(profile, rate)
    if settings["codec"] == "vorbis" and out_rate != rate:
        why = "the vorbis bitrate setting works up to 50000 Hz" if "bitrate" in settings else \
            "vorbis encodes at most 200000 Hz"
        notes.append(f"resampled {rate} Hz to {out_rate} Hz ({why})")
    if profile == "car" and rate == 22050:
        notes.append("bitrate 320 kb/s does not exist for MP3 at 22050 Hz: lame used 160 kb/s")
    if profile == "ogg500" and (channels == 1 or rate == 22050):
        notes.append(re.compile(rf"vorbis bitrate 500 is out of what the encoder takes for 1 channel at {rate} Hz "
                                r"\(\d+-(\d+)\): used \1$"))
    if profile == "ogg45" and channels >= 3:
        notes.append(re.compile(rf"vorbis bitrate 45 is out of what the encoder takes for {channels} channels at "
                                rf"{rate} Hz \((\d+)-\d+\): used \1$"))
    return notes


def ffmpeg_levels(path: Path) -> tuple[list[float], float]:
    """Each channel's RMS level (dB) and the length (s), as ffmpeg decodes the whole file."""
    run = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-xerror", "-i", str(path), "-af",
                          "astats=measure_overall=Number_of_samples:measure_perchannel=RMS_level", "-f", "null",
                          "-"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    levels = [float(v) if v != "-inf" else -200.0 for v in re.findall(r"RMS level dB: (\S+)", run.stderr)]
    samples = [int(v) for v in re.findall(r"Number of samples: (\d+)", run.stderr)]
    rate = int(re.search(r"Audio: .*?, (\d+) Hz", run.stderr).group(1))
    return levels, samples[0] / rate


def ffprobe_layout(path: Path) -> str:
    run = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=channel_layout", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout)["streams"][0]["channel_layout"]


# --- the tests ---------------------------------------------------------------------------------

def test_every_source_compiles_into_every_profile(built):
    for p, r in built.report["profiles"].items():
        assert r["failed"] == [], (p, r["failed"])
        assert set(built.outputs[p]) == set(TRACKS), p


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_outputs_decode_with_their_length_channels_and_rate(built, profile):
    codec = PROFILES[profile]["codec"]
    for source, (rate, channels, bits, seconds, how) in TRACKS.items():
        out = built.outputs[profile][source]
        where = f"{profile}: {source} -> {out.name}"
        info = mutagen.File(str(out)).info
        assert info.channels == expected_channels(profile, channels), where
        if expected_rate(profile, rate) is not None:
            assert info.sample_rate == expected_rate(profile, rate), where
        assert abs(info.length - seconds) < 0.06, (where, info.length)
        if codec == "flac" and bits == 32:  # ffmpeg 5.1 does not decode 32-bit FLAC: the reference decoder
            assert subprocess.run(["flac", "--test", "--silent", str(out)], capture_output=True).returncode == 0, where
            assert info.bits_per_sample == 32, where
            continue
        levels, length = ffmpeg_levels(out)
        assert len(levels) == info.channels and abs(length - seconds) < 0.06, (where, levels, length)
        if how != "surround":  # each channel has its tone
            assert all(level > -40 for level in levels), (where, levels)
        if channels > 2:  # the source's layout, as ffprobe names it; else stereo
            layout, source_layout = ffprobe_layout(out), ffprobe_layout(built.src / source)
            if info.channels == 2:
                assert layout == "stereo", where
            elif codec == "flac":
                assert layout == source_layout, where
            else:  # Opus and Vorbis have one 5.1 and one 7.1 (surrounds at the back)
                assert layout == source_layout.replace("(side)", ""), (where, layout, source_layout)


def test_surround_keeps_its_layout_or_is_downmixed_without_dropping_channels(built):
    """The 5.1 source's front left and right are silent: kept, each channel is at its level in
    its place (FC, LFE, BL, BR as ffmpeg orders 5.1); downmixed, both channels carry the centre
    and surrounds (a downmix that took the first two channels would be silent)."""
    source = "Variety/09 Surround.flac"
    src_levels, _ = ffmpeg_levels(built.src / source)
    assert src_levels[:2] == [-200.0, -200.0] and all(level > -40 for level in src_levels[2:])
    for profile in PROFILES:
        levels, _ = ffmpeg_levels(built.outputs[profile][source])
        if len(levels) == 6:
            assert all(level < SILENT for level in levels[:2]), (profile, levels)
            assert all(abs(a - b) < 3 for a, b in zip(levels[2:], src_levels[2:])), (profile, levels, src_levels)
        else:
            assert len(levels) == 2 and all(level > -30 for level in levels), (profile, levels)


def test_the_report_notes_what_was_adapted_and_nothing_else(built):
    for profile in PROFILES:
        notes: dict[str, list[str]] = {}
        for entry in built.report["profiles"][profile].get("notes", []):
            notes.setdefault(entry["source"], []).append(entry["note"])
        for source in TRACKS:
            want, got = expected_notes(profile, source), notes.get(source, [])
            assert len(got) == len(want), (profile, source, got, want)
            for pattern, note in zip(want, got):
                assert (pattern.match(note) if isinstance(pattern, re.Pattern) else note == pattern), \
                    (profile, source, note, pattern)


def test_the_streamed_flac_has_its_length_in_the_playlist(built):
    playlist = (built.builds / "lossless" / "Variety" / "Variety.m3u8").read_text(encoding="utf-8")
    lengths = dict((title, int(secs)) for secs, title in re.findall(r"#EXTINF:(-?\d+),Variety - (.*)", playlist))
    for source, (_, _, _, seconds, _) in TRACKS.items():
        if source.startswith("Variety/"):
            assert lengths[Path(source).stem] == round(seconds), (source, lengths)


def test_album_images_compile_as_one_track(built):
    for profile in PROFILES:
        for source in ("Album Image/Live (cuesheet block).flac", "Album Image/Live (cuesheet tag).flac"):
            out = built.outputs[profile][source]
            assert abs(mutagen.File(str(out)).info.length - TRACKS[source][3]) < 0.06, (profile, source)
        made = [p for p in (built.builds / profile / "Album Image").iterdir() if p.suffix != ".m3u8"]
        assert len(made) == 2, (profile, made)


def test_a_second_build_encodes_nothing(built):
    for source, (_, _, _, _, how) in TRACKS.items():
        if how.startswith("tail"):  # an old tagger edits its tag after the audio: not the audio
            path = built.src / source
            old = appended(how, "an old tagger's title")
            data = path.read_bytes()
            assert data.endswith(old)
            path.write_bytes(data[:-len(old)] + appended(how, "edited again, and longer"))
    report = music_build(built.src, built.builds)
    for p, r in report["profiles"].items():
        assert r["failed"] == [] and r["encoded"] == 0 and r["retagged"] == 0, (p, r)
