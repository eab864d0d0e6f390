"""tup's part of a build: the rules in its tree and one run over the chosen variants.

The rules (Tupdefault.lua, beside this file) give tup one `music-encode` command per track
and profile; tup runs exactly the commands whose index files or settings changed.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time

from .fsutil import atomic_write, describe, fuse_unmount
from .scan import write_if_changed

HERE = os.path.dirname(os.path.abspath(__file__))
PIDFILE = "tup.pid"  # in .music: the process group of the running tup
# What tup (its SQLite database) says when the filesystem holding its tree is full.
DISK_FULL_SIGNS = ("database or disk is full", "No space left on device")


class TupError(Exception):
    """tup could not be set up or run (not a track's failure): one line, with its own words."""


def mount_dir(tup_root: str) -> str:
    """Where tup mounts its FUSE filesystem while it runs commands."""
    return os.path.join(tup_root, ".tup", "mnt")


def tup_full(tup_root: str) -> OSError:
    """The error of a tup database that could not be written: the disk is full."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(tup_root, ".tup", "db"))


def init_tup(tup_root: str) -> None:
    """`tup init` unless a database is there. An init that failed half-way (a full disk)
    leaves an empty database that every later tup run fails on: it is made again."""
    dot = os.path.join(tup_root, ".tup")
    try:
        if os.path.getsize(os.path.join(dot, "db")) > 0:
            return
    except FileNotFoundError:
        pass
    if os.path.lexists(dot):
        fuse_unmount(mount_dir(tup_root))
        shutil.rmtree(dot)
    proc = subprocess.run(["tup", "init"], cwd=tup_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace")
    if proc.returncode != 0:
        shutil.rmtree(dot, ignore_errors=True)
        if any(sign in proc.stdout for sign in DISK_FULL_SIGNS):
            raise tup_full(tup_root)
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        raise TupError(f"tup init in {tup_root} failed (exit {proc.returncode}): "
                       + (" | ".join(lines[-3:]) or "no message"))


def install_rules(tup_root: str) -> None:
    write_if_changed(os.path.join(tup_root, "Tupdefault.lua"),
                     open(os.path.join(HERE, "Tupdefault.lua"), encoding="utf-8").read())
    # The top folder and the index folder hold no tracks; give them empty Tupfiles.
    for folder in (tup_root, os.path.join(tup_root, "index")):
        os.makedirs(folder, exist_ok=True)
        write_if_changed(os.path.join(folder, "Tupfile.lua"), "-- nothing to build here\n")


def run_tup(tup_root: str, jobs: int, log_path: str, targets: list[str], service_name: str | None,
            pidfile: str) -> tuple[int, OSError | None]:
    """tup over the chosen variants (all when `targets` is empty), in a process group of its
    own whose id is kept in `pidfile`: whatever ends this build (a signal, an error, SIGKILL
    seen by the encode service, the next build finding the file) ends tup and every command.

    Returns tup's exit code and, when tup could not write its database because the disk is
    full (tup may then even exit 0, having run nothing), that error: the build must not
    report tracks as made.

    A run of tup that set up a new variant and then could not commit it (a full disk) leaves
    the variant's empty folders behind, and every later tup refuses the variant ("must only
    contain a tup.config file"): those empty folders are removed and tup runs once more."""
    cleared: set[str] = set()
    while True:
        rc, full, stale = _run_tup_once(tup_root, jobs, log_path, targets, service_name, pidfile)
        # tup names one refused variant per run; each is cleared (of empty folders only) once.
        fresh = [v for v in stale if v not in cleared]
        if rc == 0 or full is not None or not fresh:
            return rc, full
        cleared.update(fresh)
        if not all([clear_empty_folders(os.path.join(tup_root, v)) for v in fresh]):
            return rc, full


STALE_VARIANT = "remove the tup.config from this variant: "


def clear_empty_folders(variant: str) -> bool:
    """Remove the empty folders in a variant folder, deepest first; True when only its
    tup.config is left (nothing else is ever removed)."""
    for root, dirs, _files in os.walk(variant, topdown=False):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, d))
    try:
        return os.listdir(variant) == ["tup.config"]
    except OSError:
        return False


def _run_tup_once(tup_root: str, jobs: int, log_path: str, targets: list[str], service_name: str | None,
                  pidfile: str) -> tuple[int, OSError | None, list[str]]:
    """tup over the chosen variants (all when `targets` is empty), in a process group of its
    own whose id is kept in `pidfile`: whatever ends this build (a signal, an error, SIGKILL
    seen by the encode service, the next build finding the file) ends tup and every command.

    Returns tup's exit code and, when tup could not write its database because the disk is
    full (tup may then even exit 0, having run nothing), that error: the build must not
    report tracks as made."""
    init_tup(tup_root)
    bindir = os.path.dirname(HERE)  # the launchers sit beside the package
    env = {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/"),
           "MUSIC_ENCODE_SERVICE": service_name or ""}
    full, stale = None, []
    log = open(log_path, "w", encoding="utf-8", buffering=1)  # line by line: a full disk shows at once
    try:
        proc = subprocess.Popen(["tup", "--keep-going", f"-j{jobs}", *targets], cwd=tup_root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        try:
            atomic_write(pidfile, f"{proc.pid}\n")
            for line in proc.stdout:
                if any(sign in line for sign in DISK_FULL_SIGNS):
                    full = tup_full(tup_root)
                if STALE_VARIANT in line:
                    name = line.split(STALE_VARIANT, 1)[1].strip()
                    if name and os.sep not in name and name not in (".", ".."):
                        stale.append(name)
                log = _log(log, line, log_path)
                with contextlib.suppress(OSError):
                    sys.stdout.write(line)
                    sys.stdout.flush()
            return proc.wait(), full, stale
        finally:
            if proc.poll() is None:
                end_group(proc.pid)
                proc.wait()
                fuse_unmount(mount_dir(tup_root))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pidfile)
    finally:
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()


def _log(log, line: str, path: str):
    """Write `line` to the build log; a log that cannot be written (a full disk) is given up,
    with one line saying so, while tup's output is still read to its end."""
    if log is None:
        return None
    try:
        log.write(line)
        return log
    except OSError as exc:
        print(f"music-build: {path} is incomplete: {describe(exc, path)}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            log.close()
        return None


def end_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM to a process group, then SIGKILL to what is left after `grace` seconds."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)


def _group_members(pgid: int):
    """(pid, state) of each process in the group, from /proc."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                yield pid, fields[0]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg; a group of zombies only is over.
    return any(state != b"Z" for _, state in _group_members(pgid))


def clear_leftovers(tup_root: str, pidfile: str) -> int | None:
    """End what a killed earlier build left running (tup and its commands), when `pidfile`
    names a process group still led by that build's tup. Returns the group ended, if any."""
    try:
        with open(pidfile, encoding="ascii") as fh:
            pgid = int(fh.read().strip())
    except (OSError, ValueError):
        fuse_unmount(mount_dir(tup_root))
        return None
    ended = None
    if _group_alive(pgid) and _group_cwd_is(pgid, tup_root):
        end_group(pgid)
        ended = pgid
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    fuse_unmount(mount_dir(tup_root))  # a tup killed outright leaves its mount behind
    return ended


def _group_cwd_is(pgid: int, tup_root: str) -> bool:
    """Whether some member of the group works under the tup tree (its commands do)."""
    root = os.path.realpath(tup_root)
    for pid, _ in _group_members(pgid):
        with contextlib.suppress(OSError):
            if os.path.realpath(f"/proc/{pid}/cwd").startswith(root):
                return True
    return False
