"""File-system helpers: atomic writes, names shown readably, one-line errors.

Atomic writes are the one way the build writes a file that others read. The content goes to a temporary file in the same folder, which is then renamed over the
target: a reader (tup, rsync, the next build, a user) sees the old file or the new one,
never a partial one, whatever happens in between.
"""
from __future__ import annotations

import errno
import json
import os


def atomic_write(path: str, content, mode: int = 0o644) -> os.stat_result:
    """Write `content` (str or bytes) to `path` atomically; returns the new file's stat."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), mode)
            st = os.fstat(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = path  # a full disk is often only noticed when the file is closed
        raise
    return st


def write_json(path: str, data, **dump_options) -> None:
    """`data` as JSON in `path`, atomically (names that are not UTF-8 kept as surrogates)."""
    options = {"ensure_ascii": False, **dump_options}
    atomic_write(path, json.dumps(data, **options) + ("\n" if options.get("indent") else ""))


def display(path: str) -> str:
    """`path` as readable text: names that are not valid UTF-8 show their odd bytes as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def exact(path: str) -> dict:
    """A report's fields for a path: `display` text, plus the exact bytes (hex) when the name
    is not valid UTF-8, so that two such names can never be confused."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
        return {"source": path}
    except UnicodeDecodeError:
        return {"source": display(path), "source_bytes_hex": raw.hex()}


def mount_point(path: str) -> str:
    """The mount point of the filesystem that holds `path` (or would hold it)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def describe(exc: OSError, path: str | None = None) -> str:
    """One line for a file-system error: the path, the cause, and for a full disk the
    filesystem that is full."""
    raw = path or exc.filename
    if path is None and exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.filename2 is not None:
        raw = exc.filename2  # a copy (shutil names source and destination): the destination is full
    raw = os.fsdecode(raw) if raw is not None else None
    where = display(raw) if raw is not None else None
    if exc.errno == errno.ENOSPC:
        if raw is None:
            return "disk full: no space left on device"
        return f"disk full: no space left on the filesystem at {display(mount_point(raw))} (writing {where})"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded" + (f" writing {where}" if where else "")
    cause = exc.strerror or str(exc)
    if path is None and exc.filename2 is not None and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        # A rename or copy refused: the destination's folder is what the user must look at.
        return f"cannot put {display(os.fsdecode(exc.filename2))} in place: {cause}"
    return f"{where}: {cause}" if where else cause


def oserror_in(exc: BaseException | None) -> OSError | None:
    """The OSError behind `exc` (libraries such as mutagen wrap them), if any."""
    for _ in range(5):
        if exc is None or isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _mounted(path: str) -> bool:
    """Whether something is mounted at `path` (also a FUSE mount whose daemon is dead, which
    os.path.ismount cannot tell: stat fails on it)."""
    want = os.path.realpath(os.path.dirname(path))
    want = os.path.join(want, os.path.basename(path))
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 1 and _unescape_mount(fields[1]) == want:
                    return True
    except OSError:
        pass
    return False


def _unescape_mount(field: str) -> str:
    # /proc/self/mounts writes space, tab, newline and backslash as octal escapes.
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def fuse_unmount(path: str) -> bool:
    """Detach the FUSE filesystem mounted at `path`, if any (a killed tup leaves its mount
    behind, which keeps the builds volume busy). Returns whether one was detached."""
    if not _mounted(path):
        return False
    import subprocess

    for tool in ("fusermount3", "/usr/bin/fusermount3", "fusermount", "/bin/fusermount"):
        try:
            if subprocess.run([tool, "-u", "-z", path], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return True
        except OSError:
            continue
    return False
