"""How one output is made: called by the tup rules, one process per track and profile.

`music-encode track` decides between re-encoding (the audio fingerprint or the codec
settings changed) and re-tagging only (tags or cover art changed), from a small state
record kept beside the build. Every output is written to a temporary file on the same
filesystem and renamed into place, so readers never see a partial file.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave

from . import profile as music_profile
from . import tags
from . import limits as player_limits
from . import replaygain
from . import formats
from .art import load_art
from .source import SourceError, read_streaminfo, start_decoder
from .fsutil import describe, display, mount_point, oserror_in, write_json

def journal(music_dir: str, **event) -> None:
    """Append one event to the running build's journal (one short line, O_APPEND)."""
    line = json.dumps(event, ensure_ascii=False) + "\n"
    fd = os.open(os.path.join(music_dir, "journal.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def encoder_command(codec: str, settings: dict, out: str) -> list[str]:
    """The encoder's command line for `codec` with `settings` (setting name -> value or None),
    from the codec table."""
    return music_profile.encoder_command({**settings, "codec": codec}, out)


class TransientError(RuntimeError):
    """A failure that is not the source's fault (an encoder's exit, a signal, a full disk, a
    vanished file): reported with its cause and retried on the next build."""


def _ended(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with {rc}"


def disk_full(path: str) -> str | None:
    """'disk full ...' naming the filesystem when the one holding `path` has (almost) no room."""
    folder = os.path.dirname(path) or "."
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < 256 * 1024:
        return f"disk full: no space left on the filesystem at {mount_point(folder)}"
    return None


# ------------------------------------------------------------------ what a source needs for a codec

# Rates a source is resampled to, when it must be: the highest of its family (44.1 or 48 kHz)
# the encoder takes.
RATES_441 = (352800, 176400, 88200, 44100, 22050, 11025)
RATES_48 = (384000, 192000, 96000, 48000, 32000, 24000, 16000, 8000)


class AudioPlan:
    """How one source is given to one codec's encoder: the plain `flac -d | encoder` pipe, or
    with a converter (ffmpeg) between them that downmixes, resamples or changes the sample
    size; the encoder's settings as adapted; and the notes saying what was adapted."""

    def __init__(self, codec: str, settings: dict, channels: int, rate: int, bits: int):
        self.codec, self.settings = codec, dict(settings)
        self.channels, self.rate, self.bits = channels, rate, bits
        self.convert = False
        self.stream_input = False  # the encoder's WAV input has no length (it reads to the end)
        self.notes: list[str] = []
        self.dither = False  # bits reduced for the profile's max_bit_depth (limits.py)
        self.source_channels = channels

    def converter(self) -> list[str] | None:
        """ffmpeg's command line (WAV in, WAV out), or None for the plain pipe."""
        if not self.convert:
            return None
        lossless = self.codec == "flac"
        pcm = ("pcm_u8" if self.bits <= 8 else "pcm_s16le" if self.bits <= 16 else "pcm_s24le" if self.bits <= 24
               else "pcm_s32le") if lossless else "pcm_s24le"
        # The input's channel layout is the WAV's channel mask (FLAC's layout); -ac downmixes
        # with ffmpeg's matrix for it (every channel but the LFE, levels normalised: no clipping).
        # Bits reduced for the profile's max_bit_depth: resampled, downmixed and dithered in one
        # filter (limits.dither_filter); -ac and -ar then have nothing left to do.
        dither = (["-af", player_limits.dither_filter(self.rate, self.bits,
                                               self.channels if self.channels != self.source_channels else None)]
                  if self.dither else [])
        return ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-f", "wav", "-i", "-", *dither,
                "-ac", str(self.channels), "-ar", str(self.rate), "-c:a", pcm,
                "-flags", "+bitexact", "-fflags", "+bitexact", "-f", "wav", "-"]

    def encoder(self, out: str) -> list[str]:
        argv = music_profile.encoder_command({**self.settings, "codec": self.codec}, out)
        if self.stream_input:
            argv[1:1] = music_profile.CODEC_TABLE[self.codec].get("stream_args", ())
        return argv


def _channels(n: int) -> str:
    return f"{n} channel" + ("" if n == 1 else "s")


def resample_rate(rate: int, highest: int) -> int:
    """The rate a source of `rate` Hz is resampled to for an encoder that takes at most
    `highest`: the highest of the source's family (44.1 or 48 kHz) it takes."""
    family = RATES_441 if rate % 11025 == 0 else RATES_48
    return next((r for r in family if r <= highest), family[-1])


def plan_audio(codec: str, settings: dict, stream, accepts=None) -> AudioPlan:
    """What `codec` with `settings` (setting name -> value or None, and `channels`) needs for
    a source of `stream` (rate, channels, bits, length_known), from the codec table's "input"
    and settings' "limits": pure, but for the encoder's own limits where the table says they
    are asked of it (`accepts(codec, setting, value, channels, rate)`, by default
    encoder_accepts: the encoder itself)."""
    entry = music_profile.CODEC_TABLE[codec]
    takes = entry["input"]
    plan = AudioPlan(codec, {k: v for k, v in settings.items() if k in entry["settings"]},
                     stream.channels, stream.rate, stream.bits)
    # channels: the profile's `channels`, else what the codec carries
    wanted = settings.get("channels")
    if wanted is not None and stream.channels > wanted:
        plan.channels = wanted
        why = f"the profile's channels: {wanted}"
    elif stream.channels > takes["channels"]:
        plan.channels = takes["channels"]
        why = f"{codec} carries at most {takes['channels']}"
    for name, value in plan.settings.items():
        limits = entry["settings"][name].get("limits", {})
        low, high = limits.get("per_channel", (None, None))
        if value is not None and low is not None and plan.channels > 2 and value < low * plan.channels:
            plan.channels = 2
            why = f"{codec} at {value} kb/s has under {low} kb/s per channel, too little for surround"
    if plan.channels < stream.channels:
        plan.notes.append(f"downmixed {stream.channels} channels to {plan.channels} ({why})")
    # the profile's max_sample_rate and max_bit_depth (limits.py), then the codec's own limits
    player_limits.apply(plan, settings, stream)
    # sample rate: what the codec takes, and what its settings work at
    highest, reason = takes["rate"], f"{codec} encodes at most {takes['rate']} Hz"
    for name, value in plan.settings.items():
        limit = entry["settings"][name].get("limits", {}).get("max_rate")
        if value is not None and limit is not None and (highest is None or limit < highest):
            highest, reason = limit, f"the {codec} {name} setting works up to {limit} Hz"
    if highest is not None and plan.rate > highest:
        before, plan.rate = plan.rate, resample_rate(plan.rate, highest)
        plan.notes.append(f"resampled {before} Hz to {plan.rate} Hz ({reason})")
    if plan.bits > takes["bits"]:
        plan.bits = takes["bits"]  # lossy encoders: 24 bits are more than they keep
    plan.convert = (plan.channels, plan.rate, plan.bits) != (stream.channels, stream.rate, stream.bits)
    plan.stream_input = plan.convert or not stream.length_known
    # settings the encoder cannot honour for this output
    for name, value in list(plan.settings.items()):
        limits = entry["settings"][name].get("limits", {})
        low, high = limits.get("per_channel", (None, None))
        if value is not None and high is not None and value > high * plan.channels:
            plan.settings[name] = high * plan.channels
            plan.notes.append(f"{name} {value} kb/s is more than {codec} takes for {_channels(plan.channels)} "
                              f"({high} kb/s per channel): used {plan.settings[name]}")
        per_sample = limits.get("bits_per_sample")  # a ceiling that depends on the rate (AAC)
        if value is not None and per_sample and value * 1000 > per_sample * plan.channels * plan.rate:
            plan.settings[name] = per_sample * plan.channels * plan.rate // 1000
            plan.notes.append(f"{name} {value} kb/s is more than {codec} holds for {_channels(plan.channels)} at "
                              f"{plan.rate} Hz ({per_sample} bits a sample and channel): used {plan.settings[name]}")
        if value is not None and limits.get("probe"):
            check = accepts or encoder_accepts
            if not check(codec, name, value, plan.channels, plan.rate):
                _adapt_probed(plan, name, value, check)
    return plan


def _adapt_probed(plan: AudioPlan, name: str, value: int, check) -> None:
    """A setting the encoder refuses for this output's channels and rate: the nearest value
    it takes, else the codec's default mode (its other settings' defaults)."""
    def ok(v: int) -> bool:
        return check(plan.codec, name, v, plan.channels, plan.rate)

    span = accepted_span(ok, value)
    where = f"{_channels(plan.channels)} at {plan.rate} Hz"
    if span is None:
        entry = music_profile.CODEC_TABLE[plan.codec]
        del plan.settings[name]
        others = {f: spec["default"] for f, spec in entry["settings"].items()
                  if f != name and spec["default"] is not None and f not in plan.settings}
        plan.settings.update(others)
        instead = ", ".join(f"{f} {v}" for f, v in others.items()) or "its defaults"
        plan.notes.append(f"{plan.codec} {name} {value} is not possible for {where}: used {instead} instead")
        return
    lo, hi = span
    plan.settings[name] = lo if value < lo else hi
    plan.notes.append(f"{plan.codec} {name} {value} is out of what the encoder takes for {where} "
                      f"({lo}-{hi}): used {plan.settings[name]}")


def accepted_span(ok, value: int, lowest: int = 1, highest: int = 4096) -> tuple[int, int] | None:
    """The range of values that `ok` accepts, for an `ok` that accepts one range of values
    (as an encoder's limits are), at least a quarter of its lowest value wide: one value in
    it is found on a grid of values 25% apart (or `value` itself), its edges by bisection;
    some sixty calls at most. None when no value from `lowest` to `highest` is accepted."""
    probe, v = [value], lowest
    while v <= highest:
        probe.append(v)
        v = max(v + 1, v * 5 // 4)
    inside = next((v for v in probe if lowest <= v <= highest and ok(v)), None)
    if inside is None:
        return None

    def edge(good: int, bad: int) -> int:  # the last accepted value from `good` towards `bad`
        while abs(bad - good) > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if ok(mid) else (good, mid)
        return good

    return edge(inside, lowest - 1), edge(inside, highest + 1)


def _probe_wav(channels: int, rate: int, frames: int = 64) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(2 * channels * frames))
    return buf.getvalue()


def encoder_accepts(codec: str, name: str, value, channels: int, rate: int) -> bool:
    """Whether the codec's encoder sets itself up with `name` = `value` for audio of
    `channels` and `rate` (it is given a few silent samples, its output is thrown away)."""
    argv = music_profile.encoder_command({"codec": codec, name: value}, os.devnull)
    try:
        done = subprocess.run(argv, input=_probe_wav(channels, rate), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def run_pipeline(src: str, codec: str, settings: dict, out: str, notes: list[str] | None = None) -> None:
    """flac decode [| ffmpeg] | encoder: the converter only when the source needs one for the
    codec (plan_audio). A source is called bad only when decoding it alone fails; any other
    failure is a TransientError with the failing program's own words. What had to be adapted
    for this source (a downmix, a setting the codec cannot honour for it) is added to `notes`."""
    if not os.path.exists(src):
        raise TransientError("the source file is gone (moved or deleted during the build)")
    other = formats.kind_of(src) is not None  # not a FLAC: decoded by ffmpeg (formats.py)
    try:
        stream = formats.probe(src) if other else read_streaminfo(src)
    except FileNotFoundError:
        raise TransientError("the source file is gone (moved or deleted during the build)") from None
    plan = plan_audio(codec, settings, stream)
    plan.notes[:0] = formats.source_notes(stream, codec)  # a lossy source transcoded
    argv = plan.encoder(out)
    convert = plan.converter()
    # The upstream programs' messages go to files: a damaged source can make the decoder say
    # more than a pipe holds, which would stop it while the encoder waits for its audio.
    with tempfile.TemporaryFile() as dec_log, tempfile.TemporaryFile() as conv_log:
        # the FLAC stream alone: past ID3v2 tags in front, short of tags appended after it
        decoder = (formats.start_decoder(src, stream, stdout=subprocess.PIPE, stderr=dec_log) if other else
                   start_decoder(src, stream, ["--decode", "--stdout", "--silent"], stdout=subprocess.PIPE,
                                 stderr=dec_log))
        feed, converter = decoder.stdout, None
        if convert:
            converter = subprocess.Popen(convert, stdin=feed, stdout=subprocess.PIPE, stderr=conv_log)
            feed.close()
            feed = converter.stdout
        encoder = subprocess.Popen(argv, stdin=feed, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        feed.close()
        enc_err = encoder.communicate()[1]
        if converter:
            converter.wait()
        decoder.wait()
        dec_log.seek(0)
        dec_err = dec_log.read()
        conv_log.seek(0)
        conv_err = conv_log.read()
    if decoder.returncode == 0 and encoder.returncode == 0 and (converter is None or converter.returncode == 0):
        if notes is not None:
            notes += plan.notes + made_notes(plan, out)
        return
    full = disk_full(out)
    if full:
        raise TransientError(full)
    if other and decoder.returncode > 0 and os.path.exists(src):
        # (before the encoder's failure: ffmpeg stopping at a damaged frame can leave the
        # encoder without even a WAV header)
        formats.check_decodes(src, stream)  # a SourceError when it does not decode by itself
    if encoder.returncode != 0:
        raise TransientError(f"{codec} encoder ({argv[0]}) {_ended(encoder.returncode)}: "
                             + _last_line(enc_err, "no message"))
    if not other and decoder.returncode > 0 and os.path.exists(src):
        alone = start_decoder(src, stream, ["--test", "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        alone_err = alone.communicate()[1]
        if alone.returncode != 0 and os.path.exists(src):
            raise SourceError("FLAC decode failed (truncated or damaged audio): "
                              + _last_line(alone_err or dec_err, "decoder exited with %d" % decoder.returncode))
    if not os.path.exists(src):
        raise TransientError("the source file is gone (moved or deleted during the build)")
    if converter is not None and converter.returncode != 0:
        raise TransientError(f"converter ({convert[0]}) {_ended(converter.returncode)}: "
                             + _last_line(conv_err, "no message"))
    raise TransientError(f"{'ffmpeg' if other else 'flac'} decoder {_ended(decoder.returncode)}: "
                         + _last_line(dec_err, "no message"))


# Every MP3 bitrate (kb/s): MPEG-1 Layer III, then those only MPEG-2 and 2.5 have.
MP3_BITRATES = music_profile.MP3_CBR_BITRATES + (8, 16, 24, 144)


def made_notes(plan: AudioPlan, out: str) -> list[str]:
    """What the encoder adapted by itself, read back from its output: an MP3 bitrate that
    does not exist at the rate lame encodes at (MPEG-2 has at most 160 kb/s, MPEG-2.5 64)."""
    wanted = plan.settings.get("bitrate")
    if plan.codec != "mp3" or not wanted:
        return []
    from mutagen.mp3 import MP3

    try:
        info = MP3(out).info
    except Exception:  # a reader's failure is no reason to fail a track that was made
        return []
    used = min(MP3_BITRATES, key=lambda b: abs(b * 1000 - info.bitrate))
    if used == wanted:
        return []
    return [f"bitrate {wanted} kb/s does not exist for MP3 at {info.sample_rate} Hz: lame used {used} kb/s"]


def failure_reason(exc: Exception, tmp: str) -> tuple[str, bool]:
    """(reason, retry) for an exception that failed one output."""
    if isinstance(exc, SourceError):
        return str(exc), False
    if isinstance(exc, TransientError):
        return str(exc), True
    oserr = oserror_in(exc)
    if oserr is not None:
        return describe(oserr, None if oserr.filename else tmp), True
    return f"{type(exc).__name__}: {exc}", True


def _last_line(data: bytes, default: str) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else default


def _digest(*parts) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True).encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def _read_json(path: str):
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        return json.load(fh)


def _write_json(path: str, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, data)


def publish(tmp: str, dest: str) -> None:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


def cmd_track(args, inputs) -> tuple[int, str | None]:
    spec = inputs(args.track)
    audio = inputs(args.audio)
    tag_info = inputs(args.tags)
    profile, codec = args.profile, args.codec
    settings = {name: getattr(args, name) for name in music_profile.SETTING_NAMES + music_profile.AUDIO_FIELDS}
    music = spec["music"]
    key = os.path.basename(args.track)[: -len(f".{profile}.track")]
    folder = os.path.basename(os.path.dirname(os.path.normpath(os.path.join(args.cwd, args.track))))
    state_path = os.path.join(music, "state", profile, folder, key + ".json")
    # a limit (max_sample_rate, max_bit_depth) enters as what it makes of this source, if anything
    audio_key = _digest(audio, codec, music_profile.digest_settings(codec, player_limits.digest_view(settings, audio)))
    revision = tags.WRITER_REVISIONS.get(music_profile.CODEC_TABLE[codec]["tags"])
    # ReplayGain computed for a profile with replaygain: compute (replaygain.py): tags added to
    # the source's, or a note; in the tags digest only when there (a re-tag, never a re-encode).
    computed = spec.get("replaygain")
    tag_pairs = replaygain.merge(tag_info["tags"], computed)
    tags_key = _digest(tag_info, codec, args.art, args.art_max_size, *([revision] if revision else []),
                       *([computed] if computed else []),
                       *(["id3v2.3"] if args.id3 == "2.3" else []))  # id3: "2.3" re-tags (v2.4 keeps its key)
    try:
        state = _read_json(state_path)
    except (OSError, ValueError):
        state = {}
    dest = spec["dest"]
    tmpdir = os.path.join(music, "tmp")
    tmp = os.path.join(tmpdir, f"{profile}.{key}.{os.getpid()}{os.path.splitext(dest)[1]}")
    try:
        os.makedirs(tmpdir, exist_ok=True)
        art = None
        art_notes: list[str] = []
        if args.art == "y":
            art = load_art(spec["src"], spec.get("cover"), args.art_max_size, os.path.join(music, "art"),
                           notes=art_notes)
        old_dest = state.get("dest")
        if (state.get("audio_key") == audio_key and old_dest and old_dest != dest
                and state.get("src", spec["src"]) == spec["src"]
                and os.path.isfile(old_dest) and not os.path.lexists(dest)):
            # Only its name changed (a naming setting, a renamed source folder): a move, not an encode.
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(old_dest, dest)
            moved = True
        else:
            moved = False
        reencode = state.get("audio_key") != audio_key or (old_dest != dest and not moved) or not os.path.exists(dest)
        if reencode and state.get("bad_audio_key") == audio_key:
            # The same audio failed to decode last time: report it again without re-running.
            raise SourceError(state["bad_reason"])
        audio_notes = state.get("audio_notes", [])
        if reencode:
            journal(music, profile=profile, event="encoder", source=spec["source"])
            audio_notes = []
            run_pipeline(spec["src"], codec, settings, tmp, audio_notes)
            tags.write_tags(tmp, codec, tag_pairs, art, id3=args.id3)
            publish(tmp, dest)
            event = "encoded"
        elif state.get("tags_key") != tags_key:
            shutil.copyfile(dest, tmp)
            tags.write_tags(tmp, codec, tag_pairs, art, id3=args.id3)
            publish(tmp, dest)
            event = "retagged"
        else:
            event = "moved" if moved else "unchanged"
        record = {"audio_key": audio_key, "tags_key": tags_key, "dest": dest,
                  "source": spec["source"], "src": spec["src"]}
        if audio_notes:
            record["audio_notes"] = audio_notes
        _write_json(state_path, record)
    except Exception as exc:  # one track fails alone; the reason goes to the report
        reason, retry = failure_reason(exc, tmp)
        _discard(tmp)
        if not retry:  # only a source that fails to decode by itself is remembered as bad
            state.update(bad_audio_key=audio_key, bad_reason=reason)
            try:
                _write_json(state_path, state)
            except OSError:
                pass
        _fail(music, profile, spec["source"], reason, retry)
        return 1, None
    rg_notes = [computed["note"]] if computed and computed.get("note") else []
    notes = audio_notes + art_notes + rg_notes if event in ("encoded", "retagged") else None
    if not _journal_made(music, profile, spec["source"], event, dest, notes):
        return 1, None
    return 0, f"{event} {time.time():.0f}\n"


def _journal_made(music: str, profile: str, source: str, event: str, dest: str,
                  notes: list[str] | None = None) -> bool:
    """The journal's line for an output made: the build records its outputs from it (and, for
    an output written, its notes: what had to be adapted, replacing the last ones). When it
    cannot be written (a full disk), the command fails, so that tup runs it again next time
    (then finding the output made) rather than the output going unrecorded."""
    extra = {} if notes is None else {"notes": notes}
    try:
        journal(music, profile=profile, event=event, source=source, dest=dest, **extra)
        return True
    except OSError as exc:
        _fail(music, profile, source, f"made, but not recorded in the journal: {describe(exc)}", True)
        return False


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _fail(music: str, profile: str, source: str, reason: str, retry: bool) -> None:
    try:
        journal(music, profile=profile, event="failed", source=source, reason=reason, retry=retry)
    except OSError:  # a full disk can refuse the journal's line too: stderr still says it
        pass
    print(f"music-encode: {profile}: {display(source)}: {reason}", file=sys.stderr)


def cmd_copy(args, inputs) -> tuple[int, str | None]:
    spec = inputs(args.copy)
    music = spec["music"]
    tmpdir = os.path.join(music, "tmp")
    tmp = os.path.join(tmpdir, f"{args.profile}.copy.{os.getpid()}")
    try:
        os.makedirs(tmpdir, exist_ok=True)
        shutil.copyfile(spec["src"], tmp)
        if spec.get("id3"):  # a copied MP3 in a profile of id3: "2.3" (formats.py)
            formats.retag_copy(tmp, spec["id3"])
        publish(tmp, spec["dest"])
    except OSError as exc:
        _discard(tmp)
        reason = ("the source file is gone (moved or deleted during the build)" if exc.errno == errno.ENOENT
                  and not os.path.exists(spec["src"]) else describe(exc))
        _fail(music, args.profile, spec["source"], f"copy failed: {reason}", True)
        return 1, None
    if not _journal_made(music, args.profile, spec["source"], "copied", spec["dest"]):
        return 1, None
    return 0, "copied\n"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="music-encode", description="Make one output of a music build (run by tup).")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("track", help="encode or re-tag one track for one profile")
    t.add_argument("--profile", required=True)
    t.add_argument("--codec", required=True, choices=music_profile.CODECS)
    # One option per setting of the codec table (--bitrate, --compression-level, ...), as the
    # tup rules pass them (CONFIG_SETTINGS).
    for name, kind in music_profile.SETTING_TYPES.items():
        t.add_argument("--" + name.replace("_", "-"), dest=name, type=music_profile.TYPES[kind])
    # Common fields that change the audio (AUDIO_FIELDS), passed only when the profile sets them.
    t.add_argument("--channels", type=int, choices=range(music_profile.CHANNELS_RANGE[0],
                                                         music_profile.CHANNELS_RANGE[1] + 1))
    t.add_argument("--max-sample-rate", type=int, choices=music_profile.SAMPLE_RATES)
    t.add_argument("--max-bit-depth", type=int, choices=music_profile.BIT_DEPTHS)
    t.add_argument("--art", choices=["y", "n"], default="y")
    t.add_argument("--art-max-size", type=int, default=0)
    t.add_argument("--id3", choices=music_profile.ID3_VERSIONS)  # passed only for id3: "2.3"
    t.add_argument("--audio", required=True)
    t.add_argument("--tags", required=True)
    t.add_argument("--track", required=True)
    t.add_argument("--receipt", required=True)
    c = sub.add_parser("copy", help="copy one extra file into a profile")
    c.add_argument("--profile", required=True)
    c.add_argument("--copy", required=True)
    c.add_argument("--receipt", required=True)
    return parser


def execute(argv: list[str], cwd: str, inputs: dict[str, bytes] | None = None) -> tuple[int, str | None, str]:
    """Run one command; returns its exit code, the receipt's text (None on failure) and the
    receipt's path.

    `inputs` maps the index files named by --audio/--tags/--track/--copy (as written on the
    command line) to their bytes, as the encode service receives them from its client;
    without them the files are read from disk, relative to `cwd`.
    """
    args = parser().parse_args(argv)
    args.cwd = cwd

    def load(path):
        if inputs is not None and path in inputs:
            return json.loads(inputs[path].decode("utf-8", "surrogateescape"))
        return _read_json(os.path.join(cwd, path))

    code, receipt = {"track": cmd_track, "copy": cmd_copy}[args.command](args, load)
    return code, receipt, args.receipt


def main(argv=None) -> int:
    code, receipt, receipt_path = execute(sys.argv[1:] if argv is None else argv, os.getcwd())
    if receipt is not None:
        from .wire import write_receipt

        code = write_receipt(receipt_path, receipt.encode("utf-8"))
    return code
