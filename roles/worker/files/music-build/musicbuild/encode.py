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
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from . import profile as music_profile
from . import tags
from .art import load_art
from .source import SourceError
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


def run_pipeline(src: str, codec: str, settings: dict, out: str, notes: list[str] | None = None) -> None:
    """flac decode | encoder. A source is called bad only when decoding it alone fails; any
    other failure is a TransientError with the failing program's own words. What had to be
    adapted for this source (a setting the codec cannot honour for it) is added to `notes`."""
    if not os.path.exists(src):
        raise TransientError("the source file is gone (moved or deleted during the build)")
    argv = encoder_command(codec, settings, out)
    decoder = subprocess.Popen(["flac", "--decode", "--stdout", "--silent", "--", src],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    encoder = subprocess.Popen(argv, stdin=decoder.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    decoder.stdout.close()
    enc_err = encoder.communicate()[1]
    dec_err = decoder.stderr.read()
    decoder.wait()
    if decoder.returncode == 0 and encoder.returncode == 0:
        return
    full = disk_full(out)
    if full:
        raise TransientError(full)
    if encoder.returncode != 0:
        raise TransientError(f"{codec} encoder ({argv[0]}) {_ended(encoder.returncode)}: "
                             + _last_line(enc_err, "no message"))
    if decoder.returncode > 0 and os.path.exists(src):
        alone = subprocess.run(["flac", "--test", "--silent", "--", src], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        if alone.returncode != 0 and os.path.exists(src):
            raise SourceError("FLAC decode failed (truncated or damaged audio): "
                                   + _last_line(alone.stderr or dec_err, "decoder exited with %d" % decoder.returncode))
    if not os.path.exists(src):
        raise TransientError("the source file is gone (moved or deleted during the build)")
    raise TransientError(f"flac decoder {_ended(decoder.returncode)}: " + _last_line(dec_err, "no message"))


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
    settings = {name: getattr(args, name) for name in music_profile.SETTING_NAMES}
    music = spec["music"]
    key = os.path.basename(args.track)[: -len(f".{profile}.track")]
    folder = os.path.basename(os.path.dirname(os.path.normpath(os.path.join(args.cwd, args.track))))
    state_path = os.path.join(music, "state", profile, folder, key + ".json")
    audio_key = _digest(audio, codec, music_profile.digest_settings(codec, settings))
    tags_key = _digest(tag_info, codec, args.art, args.art_max_size)
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
            tags.write_tags(tmp, codec, tag_info["tags"], art)
            publish(tmp, dest)
            event = "encoded"
        elif state.get("tags_key") != tags_key:
            shutil.copyfile(dest, tmp)
            tags.write_tags(tmp, codec, tag_info["tags"], art)
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
    notes = audio_notes + art_notes if event in ("encoded", "retagged") else None
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
    t.add_argument("--art", choices=["y", "n"], default="y")
    t.add_argument("--art-max-size", type=int, default=0)
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
