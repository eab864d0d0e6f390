"""Install the build program on a host from the archive the worker role ships.

The role's `music.profiles.build_program` lookup packs this folder into one zip archive whose
name and `_version.py` carry a hash of its content (the stamp). On the host,

    python3 -I music-build-<stamp>.pyz install --into /usr/local/lib/music-build --bin /usr/local/bin

unpacks it into `<into>/<stamp>/`, precompiles it (music-encode runs as a user who cannot
write bytecode), marks it complete with `<stamp>.stamp`, then points `<into>/current` at it
and the launchers in `--bin` at `current`, each by an atomic rename. Older copies are
removed. So the role knows whether a host is current from a single file,
`<into>/current/<stamp>.stamp`, and a half-finished install is never `current`.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import sys
import threading
import zipfile

LAUNCHERS = ("music-build", "music-encode", "music-ssm-profiles")
ON_PATH = ("music-build", "music-encode")
STAMP_RE = re.compile(r"[0-9a-f]{16}")
VERSION_RE = re.compile(r"^version:\s*['\"]?([^'\"\s#]+)", re.M)


def version() -> str:
    """The project's one version: stamped into an installed copy, else read from galaxy.yml."""
    try:
        from ._version import VERSION

        return VERSION
    except ImportError:
        pass
    here = os.path.dirname(os.path.realpath(__file__))
    galaxy = os.path.join(here, *[os.pardir] * 5, "galaxy.yml")  # roles/worker/files/music-build/musicbuild
    return read_galaxy_version(galaxy) or "0+unknown"


def read_galaxy_version(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            match = VERSION_RE.search(fh.read())
    except OSError:
        return None
    return match.group(1) if match else None


def stamp() -> str | None:
    try:
        from ._version import STAMP

        return STAMP
    except ImportError:
        return None


def _replace_link(target: str, link: str) -> None:
    tmp = f"{link}.new.{os.getpid()}.{threading.get_ident()}"  # concurrent installers each use their own
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def install(archive: str, into: str, bindir: str | None) -> dict:
    with zipfile.ZipFile(archive) as zf:
        meta = zf.read("musicbuild/_version.py").decode("utf-8")
        found = re.search(r'STAMP = "([0-9a-f]+)"', meta)
        if not found:
            raise ValueError(f"{archive}: no stamp in musicbuild/_version.py")
        key = found.group(1)
        os.makedirs(into, mode=0o755, exist_ok=True)
        final = os.path.join(into, key)
        work = f"{final}.new.{os.getpid()}"  # concurrent installs of one stamp each use their own
        shutil.rmtree(work, ignore_errors=True)
        for info in zf.infolist():
            if info.filename == "__main__.py":
                continue
            path = os.path.join(work, info.filename)
            if info.is_dir():
                os.makedirs(path, mode=0o755, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            with zf.open(info) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(path, 0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
    for top, dirs, _ in os.walk(work):
        for d in dirs:
            os.chmod(os.path.join(top, d), 0o755)
    os.chmod(work, 0o755)
    if not compileall.compile_dir(work, quiet=1):
        raise RuntimeError(f"{work}: the program does not compile")
    with open(os.path.join(work, f"{key}.stamp"), "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    _settle(work, final, key)
    current = os.path.join(into, "current")
    _replace_link(key, current)
    if bindir:
        for name in ON_PATH:
            _replace_link(os.path.join(current, name), os.path.join(bindir, name))
    removed = []
    for name in sorted(os.listdir(into)):
        if name != key and (STAMP_RE.fullmatch(name) or _abandoned(name)):
            shutil.rmtree(os.path.join(into, name), ignore_errors=True)
            removed.append(name)
    return {"stamp": key, "path": final, "removed": removed}


def _settle(work: str, final: str, key: str) -> None:
    """Move the complete copy `work` to `final`, unless another install of the same stamp got
    there first (its copy is as good: a folder only ever becomes `final` complete)."""
    stamp = os.path.join(final, f"{key}.stamp")
    if not os.path.exists(stamp) and os.path.isdir(final):
        shutil.rmtree(final, ignore_errors=True)  # left by an older installer without a stamp
    try:
        os.rename(work, final)
    except OSError:
        if not os.path.exists(stamp):
            raise
        shutil.rmtree(work, ignore_errors=True)  # another install of the same stamp finished first


def _abandoned(name: str) -> bool:
    """A work folder (`<stamp>.new.<pid>`) whose installer is no longer running."""
    found = re.fullmatch(r"[0-9a-f]{16}\.new\.(\d+)", name)
    return bool(found) and not os.path.exists(f"/proc/{found.group(1)}")


def main(argv=None, archive: str | None = None) -> int:
    """`archive` is the zip this runs from (sys.argv[0] when run as `python3 x.pyz`)."""
    parser = argparse.ArgumentParser(prog="music-build.pyz", description="Install the build program on this host.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="unpack, precompile and make current")
    p.add_argument("--into", required=True, help="install folder (one subfolder per stamp, `current` links the live one)")
    p.add_argument("--bin", help="folder for links to music-build and music-encode (e.g. /usr/local/bin)")
    p.add_argument("--remove-archive", action="store_true", help="delete the archive once installed")
    args = parser.parse_args(argv)
    archive = archive or sys.argv[0]
    try:
        result = install(archive, args.into, args.bin)
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile) as exc:
        print(f"music-build install: error: {exc}", file=sys.stderr)
        return 1
    if args.remove_archive:
        os.unlink(archive)
    json.dump(result, sys.stdout)
    print()
    return 0
