"""The encode service: one process per build with the program and its libraries loaded,
forking a child for each `music-encode` that tup starts.

A `music-encode` process costs ~80 ms of start-up and imports (Python, mutagen, Pillow)
before ~4 ms of its own work; with hundreds of outputs per minute that is most of the time
a build spends outside the encoders. Each `music-encode` hands its command to this service
(see wire.py) and the forked child, which starts with everything loaded, does the work.
The service listens on an abstract Unix socket named after the build folder, accepts only
its own user, and exits when music-build ends or disappears. Without it every
`music-encode` does its own work, as before.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import traceback

from . import encode, wire
from .fsutil import fuse_unmount

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def service_name(music_dir: str) -> str:
    return "music-encode:" + hashlib.sha1(os.path.realpath(music_dir).encode("utf-8", "surrogateescape")).hexdigest()[:24]


def preload() -> None:
    """Import now what a command may need, so that no forked child pays for it."""
    import mutagen.oggopus  # noqa: F401
    import mutagen.oggvorbis  # noqa: F401
    try:
        import PIL.Image  # noqa: F401
        import PIL.JpegImagePlugin  # noqa: F401
        import PIL.PngImagePlugin  # noqa: F401
    except ImportError:
        pass
    encode.parser()


def handle(conn: socket.socket) -> None:
    """Run one command for a client (in a forked child) and answer it."""
    cwd, argv, inputs = wire.parse_request(wire.receive(conn))
    err = io.StringIO()
    receipt = None
    with contextlib.redirect_stderr(err):
        try:
            code, receipt, _ = encode.execute(argv, cwd, inputs)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception:  # a bug: the same traceback the command would print by itself
            traceback.print_exc()
            code = 1
    conn.sendall(wire.pack([b"%d" % code, (receipt or "").encode("utf-8"),
                            err.getvalue().encode("utf-8", "surrogateescape")]))


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def serve(name: str, pidfile: str | None = None) -> int:
    """Serve until SIGTERM or until the parent (music-build) is gone; on SIGTERM, print how
    many commands were handled. A parent gone without a SIGTERM was killed: then tup's process
    group (named in `pidfile`) and this service's own group (its children and their encoders)
    are ended, so a killed build leaves nothing running."""
    preload()
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(128)
    listener.settimeout(1.0)
    print("ready", flush=True)
    handled = 0

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while os.getppid() == parent:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.setblocking(True)
            if _peer_uid(conn) != os.geteuid():
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the parent's pipe to music-build
                try:
                    handle(conn)
                finally:
                    os._exit(0)
            conn.close()
            handled += 1
        end_orphaned_build(pidfile)
    finally:
        listener.close()
        with contextlib.suppress(ChildProcessError):
            while True:  # children still answering finish first (and their CPU time is counted)
                os.waitpid(-1, 0)
        print(f"handled {handled}", flush=True)
    return 0


def end_orphaned_build(pidfile: str | None) -> None:
    if pidfile:
        with contextlib.suppress(OSError, ValueError):
            with open(pidfile, encoding="ascii") as fh:
                os.killpg(int(fh.read().strip()), signal.SIGKILL)
        # tup killed outright leaves its FUSE mount (<music>/tup/.tup/mnt), which would keep
        # the builds volume busy until the next build.
        fuse_unmount(os.path.join(os.path.dirname(pidfile), "tup", ".tup", "mnt"))
    os.killpg(os.getpgrp(), signal.SIGKILL)  # this service was started in a group of its own


class Service:
    """The encode service of one build: started early (it loads while the sources are
    scanned), `name()` waits until it listens, `stop()` returns how many commands it ran."""

    def __init__(self, music_dir: str, pidfile: str | None = None):
        self._name = service_name(music_dir)
        argv = [sys.executable, "-m", "musicbuild.service", self._name] + ([pidfile] if pidfile else [])
        self._proc = subprocess.Popen(argv, cwd=HERE, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      start_new_session=True)
        self._ready: bool | None = None

    def name(self) -> str | None:
        """The name to export as MUSIC_ENCODE_SERVICE, or None if the service did not start."""
        if self._ready is None:
            self._ready = self._proc.stdout.readline() == b"ready\n"
            if not self._ready:
                self._proc.kill()
                self._proc.wait()
                print("music-build: the encode service did not start; every output is made by its own process",
                      file=sys.stderr)
        return self._name if self._ready else None

    def stop(self) -> int | None:
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            out = self._proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out = self._proc.communicate()[0]
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("handled "):
                return int(line.split()[1])
        return None


if __name__ == "__main__":
    sys.exit(serve(*sys.argv[1:3]))
