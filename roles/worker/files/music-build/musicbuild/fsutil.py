"""Atomic writes: the one way the build writes a file that others read.

The content goes to a temporary file in the same folder, which is then renamed over the
target: a reader (tup, rsync, the next build, a user) sees the old file or the new one,
never a partial one, whatever happens in between.
"""
from __future__ import annotations

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
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return st


def write_json(path: str, data, **dump_options) -> None:
    """`data` as JSON in `path`, atomically (names that are not UTF-8 kept as surrogates)."""
    options = {"ensure_ascii": False, **dump_options}
    atomic_write(path, json.dumps(data, **options) + ("\n" if options.get("indent") else ""))
