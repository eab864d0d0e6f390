"""Fault injection against the build program, run directly as the README documents
(`music-build --sources ... --builds ...`) by the build user: the hostile user of issue 13.

Each test gives music-build a small library (2 albums of 3 one-second tracks) and three
profiles (Opus with playlists, MP3 with FAT32 names and cover copies, FLAC), then does what a
careless or unlucky user does: fills the builds filesystem, takes permissions away, unmounts
the library's disk, kills the build, feeds it names that are not UTF-8 or folders that
overlap. It asserts what the user would notice: files still there with the same bytes,
outputs that decode (flac -t, opusinfo, lame --decode), a report.json that parses as strict
UTF-8 JSON, errors of one line without a traceback, and a next build that finishes the job.

Tests run as root; music-build runs as the `music` build user (runuser), so permissions apply.
Every test builds in its own folder (a built tree cannot be copied: tup's index names sources
and outputs by absolute path), removes its mounts and ends what it started. The moments of
the kills are random: a failure names its seed, DATA_SAFETY_SEED=<seed> repeats them.
MUSIC_BUILD_PROGRAM=<path> runs the tests against another music-build (the installed one).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from music_devkit.library import make_library, synth_flac, tag_track
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The program in this tree (another, e.g. the installed /usr/local/bin/music-build, with
# MUSIC_BUILD_PROGRAM=...).
MUSIC_BUILD = Path(os.environ.get("MUSIC_BUILD_PROGRAM", ROOT / "roles/worker/files/music-build/music-build"))
USER = "music"
PROFILES = {
    # names: posix (the sources' names, as every profile had before `names`): the ':' and
    # non-UTF-8 names these tests keep safe stay in the tree (tests/e2e/test_subsets_and_names.py
    # has the default, exfat)
    "phone": {"codec": "opus", "bitrate": 64, "playlists": True, "names": "posix"},
    "car": {"codec": "mp3", "fat32_names": True, "extra_files": ["cover.jpg"]},
    "flac": {"codec": "flac"},
}
AUDIO = (".opus", ".mp3", ".flac")
TRACKS = 6  # 2 albums of 3
# Per profile, what a complete build of the library holds: 6 tracks, and the covers (car) or
# the albums' playlists (phone).
COMPLETE = {"phone": {".opus": 6, ".m3u8": 2}, "car": {".mp3": 6, ".jpg": 2}, "flac": {".flac": 6}}
ONE_MORE = {"phone": {".opus": 7, ".m3u8": 2}, "car": {".mp3": 7, ".jpg": 2}, "flac": {".flac": 7}}  # a track added
SEED = int(os.environ.get("DATA_SAFETY_SEED", random.randrange(1 << 30)))


# --- the world: the build user, a library, a folder per test -----------------------------------

@pytest.fixture(scope="module")
def build_user():
    """The `music` system user, created as the worker role would when it is missing; tup
    (FUSE) usable by it, as the role makes /dev/fuse."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["groupadd", "--system", "-f", USER], check=True)
        made = subprocess.run(["useradd", "--system", "--gid", USER, "--home-dir", "/var/lib/music",
                               "--create-home", "--shell", "/usr/sbin/nologin", "--comment", "Music library builds",
                               USER], capture_output=True, text=True)
        if made.returncode != 0:
            pwd.getpwnam(USER)  # made meanwhile by a parallel test (the playbook); else this fails
    if stat.S_IMODE(os.stat("/dev/fuse").st_mode) & 0o006 != 0o006:
        os.chmod("/dev/fuse", 0o666)
    return USER


@pytest.fixture(scope="module")
def library(world_readable_tmp, build_user):
    """The library every test copies (with `cp -a`: sizes and mtimes kept)."""
    path = world_readable_tmp / f"datasafety-lib-{uuid.uuid4().hex[:8]}"
    made = make_library(str(path), albums=2, tracks=3, seconds=1)
    assert len(made) == TRACKS
    yield path
    shutil.rmtree(path, ignore_errors=True)


class World:
    """One test's folder: its library copy, builds folders, mounts; cleaned up after."""

    def __init__(self, base: Path, library: Path):
        self.base = base
        self.library = library
        self.mounts: list[Path] = []

    def sources(self, name: str = "src") -> Path:
        src = self.base / name
        subprocess.run(["cp", "-a", "--", str(self.library), str(src)], check=True)
        return src

    def builds(self, name: str = "builds", profiles: dict | None = None, at: Path | None = None) -> Path:
        """A builds folder as the worker role prepares it: owned by the build user, a
        tup.config per profile rendered by the profile module."""
        builds = at or self.base / name
        builds.mkdir(mode=0o755, exist_ok=True)
        for p, settings in (profiles or PROFILES).items():
            folder = builds / ".music" / "tup" / p
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "tup.config").write_text(render_tup_config(p, settings))
        chown_tree(builds, USER)
        return builds

    def mount_tmpfs(self, path: Path, size: str, owner: str | None = None) -> Path:
        path.mkdir(mode=0o755, exist_ok=True)
        opts = f"size={size},mode=0755"
        if owner:
            pw = pwd.getpwnam(owner)
            opts += f",uid={pw.pw_uid},gid={pw.pw_gid}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "datasafety", str(path)], check=True)
        self.mounts.append(path)
        return path

    def bind(self, source: Path, path: Path) -> Path:
        path.mkdir(mode=0o755, exist_ok=True)
        subprocess.run(["mount", "--bind", str(source), str(path)], check=True)
        self.mounts.append(path)
        return path

    def umount(self, path: Path) -> None:
        detach_fuse_under(path)
        subprocess.run(["umount", str(path)], check=True)
        self.mounts.remove(path)

    def cleanup(self) -> None:
        for pid in processes_under(self.base):
            send(pid, signal.SIGCONT)
            send(pid, signal.SIGKILL)
        detach_fuse_under(self.base)
        for path in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def world(world_readable_tmp, library):
    base = world_readable_tmp / f"datasafety-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o755)
    w = World(base, library)
    yield w
    w.cleanup()


def chown_tree(path: Path, user: str) -> None:
    for top, dirs, files in os.walk(path):
        for name in [top] + [os.path.join(top, f) for f in dirs + files]:
            shutil.chown(name, user, user)


# --- running the build -------------------------------------------------------------------------

class Run:
    def __init__(self, rc: int, out: bytes, err: bytes):
        self.rc = rc
        self.stdout = out.decode("utf-8", "replace")
        self.stderr = err.decode("utf-8", "replace")
        # Whatever happens, never a traceback.
        assert "Traceback" not in self.stdout + self.stderr, self.stdout[-3000:] + self.stderr

    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"exit {self.rc}\nstderr: {self.stderr[-3000:]}\nstdout: {self.stdout[-3000:]}"


def command(src: Path, builds: Path, *extra: str, umask: str | None = None) -> list[str]:
    cmd = [str(MUSIC_BUILD), "--sources", str(src), "--builds", str(builds), "--jobs", "2", *extra]
    if umask:
        cmd = ["sh", "-c", f'umask {umask}; exec "$0" "$@"', *cmd]
    return ["runuser", "-u", USER, "--", *cmd]


def music_build(src: Path, builds: Path, *extra: str, umask: str | None = None) -> Run:
    return finish(subprocess.Popen(command(src, builds, *extra, umask=umask), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE))


def build_ok(src: Path, builds: Path, *extra: str) -> dict:
    run = music_build(src, builds, *extra)
    assert run.rc == 0, run
    return report(builds)


def start(src: Path, builds: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(command(src, builds, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def program_pid(runner: subprocess.Popen) -> int:
    """music-build's own pid: runuser's child."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{runner.pid}/task/{runner.pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.005)
    raise AssertionError("music-build did not start")


def send(pid: int, signum: int) -> bool:
    """Signal music-build; False when it had finished already."""
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False


def finish(runner: subprocess.Popen, timeout: float = 120) -> Run:
    try:
        out, err = runner.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stuck = processes_under(Path(runner.args[runner.args.index("--builds") + 1]).parent)
        raise AssertionError(f"music-build did not end within {timeout} s: {stuck}") from None
    return Run(runner.returncode, out, err)


def report(builds: Path) -> dict:
    """report.json as a strict reader takes it: UTF-8 (no stray bytes), then JSON."""
    return json.loads((builds / "report.json").read_bytes().decode("utf-8"))


def record(builds: Path, profile: str) -> dict[str, str]:
    text = (builds / ".music/outputs" / f"{profile}.json").read_bytes().decode("utf-8", "surrogateescape")
    return json.loads(text)["outputs"]


# --- what a user looks at ----------------------------------------------------------------------

def files(tree: Path) -> dict[bytes, str]:
    """Every file under `tree` (names as bytes, so that any name works) -> sha256."""
    out = {}
    root = os.fsencode(tree)
    for top, dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(top, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def audio_files(tree: Path) -> list[bytes]:
    return sorted(rel for rel in files(tree) if rel.decode("utf-8", "surrogateescape").endswith(AUDIO))


def decodes(path: bytes | str | Path) -> bool:
    """Whether an output decodes to the end with its codec's own tool."""
    path = os.fsencode(path)
    if path.endswith(b".flac"):
        cmd = [b"flac", b"--test", b"--silent", path]
    elif path.endswith(b".opus"):
        cmd = [b"opusinfo", path]
    elif path.endswith(b".mp3"):
        cmd = [b"lame", b"--quiet", b"--decode", path, b"/dev/null"]
    else:
        raise AssertionError(f"no decoder for {path!r}")
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def assert_complete(builds: Path, tracks: int = TRACKS, check: dict | None = None) -> dict:
    """The state after a build that finished the job: report exact and clean, every output
    there and decoding, the record naming exactly the outputs, no temporary files left."""
    rep = report(builds)
    for p in PROFILES:
        r = rep["profiles"][p]
        assert r["failed"] == [], (p, r["failed"])
        assert r["encoded"] + r["retagged"] + r["moved"] + r["unchanged"] == tracks, (p, r)
        assert r["foreign"]["count"] == 0, (p, r["foreign"])
        tree = builds / p
        made = files(tree)
        counts: dict[str, int] = {}
        for rel in made:
            ext = os.path.splitext(rel.decode("utf-8", "surrogateescape"))[1]
            counts[ext] = counts.get(ext, 0) + 1
        assert counts == (check or COMPLETE)[p], (p, counts)
        for rel in made:
            if rel.decode("utf-8", "surrogateescape").endswith(AUDIO):
                assert decodes(os.path.join(os.fsencode(tree), rel)), (p, rel)
        assert {os.fsencode(k) for k in record(builds, p)} == set(made), p
    assert os.listdir(builds / ".music/tmp") == []
    assert [n for n in os.listdir(builds) if n.endswith(".tmp")] == []  # report.json is written whole
    return rep


def processes_under(base: Path) -> dict[int, str]:
    """Processes of this test's builds (pid -> what it is): tup and its commands work under
    the builds folder, the encode service names its state folder, the encoders their input
    or output."""
    key = os.fsencode(base)
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd".encode())
        except OSError:
            continue
        if key in cmdline or cwd.startswith(key):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                wchan = Path(f"/proc/{pid}/wchan").read_text()
            except OSError:
                state = wchan = "?"
            shown = cmdline.replace(b"\0", b" ")[:200]
            found[int(pid)] = f"{shown!r} in {cwd!r}, state {state} ({wchan})"
    return found


def mounts_under(base: Path) -> list[str]:
    text = Path("/proc/mounts").read_text(errors="replace")
    want = str(base).replace(" ", "\\040")
    return [line for line in text.splitlines() if line.split()[1].startswith(want + "/")]


def detach_fuse_under(base: Path) -> None:
    """Detach FUSE mounts (a tup's) under `base`: a failed test may leave one."""
    for line in mounts_under(base):
        if line.split()[2].startswith("fuse"):
            subprocess.run(["fusermount3", "-u", "-z", line.split()[1].replace("\\040", " ")], capture_output=True)


def assert_nothing_left(base: Path, within: float = 8.0) -> float:
    """Within `within` seconds no process of the build remains and tup's FUSE mount is gone;
    returns how long that took."""
    t0 = time.monotonic()
    while True:
        left = processes_under(base)
        fuse = [m for m in mounts_under(base) if m.split()[2].startswith("fuse")]
        if not left and not fuse:
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            raise AssertionError(f"left running {within:.0f} s after: {left}; mounted: {fuse}")
        time.sleep(0.1)


def album_dirs(src: Path) -> list[Path]:
    return sorted({p.parent for p in src.rglob("*.flac")})


def add_track(folder: Path, name: str, seed: int, seconds: float = 1) -> Path:
    path = folder / name
    synth_flac(str(path), seconds, seed)
    tag_track(str(path), {"TITLE": name, "ARTIST": "Added Later", "TRACKNUMBER": "9"})
    return path


# --- full disk ---------------------------------------------------------------------------------

def test_full_disk_fills_then_grows(world):
    """A builds filesystem that fills: every stage (scan, tup's database, encoders, copies)
    says 'disk full' with the filesystem, in one line or in the report, and never leaves the
    build stuck: once the filesystem is grown, the next build completes every track."""
    src = world.sources()
    before = files(src)
    mnt = world.mount_tmpfs(world.base / "small", "64k", owner=USER)
    builds = world.builds(at=mnt)
    full = f"disk full: no space left on the filesystem at {mnt}"
    outcomes = []
    for size in ("64k", "160k", "240k", "280k", "320k", "400k", "600k", "1200k"):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)
        run = music_build(src, builds)
        # The encoders' own lines (tup passes them on) name the full filesystem too.
        for line in run.stdout.splitlines():
            if line.startswith("music-encode: "):
                assert full in line or line.endswith("No space left on device"), (size, line)
        if run.rc == 0:
            failed = [f for r in report(builds)["profiles"].values() for f in r["failed"]]
            for f in failed:
                assert full in f["reason"] and f["retry"] is True, (size, f)
            outcomes.append((size, f"{len(failed)} failed"))
        else:
            assert run.rc == 1, (size, run)
            errors = run.errors()
            assert errors[-1].startswith(f"music-build: error: {full}"), (size, run)
            assert all("disk full" in line for line in errors), (size, run)
            outcomes.append((size, "refused"))
        assert [n for n in os.listdir(builds) if n.endswith(".tmp")] == [], size  # no partial report
    assert outcomes[0] == ("64k", "refused"), outcomes  # the scan could not write its index
    subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
    build_ok(src, builds)
    assert_complete(builds)
    again = build_ok(src, builds)
    assert all(r["encoded"] == 0 and r["failed"] == [] for r in again["profiles"].values()), again
    assert files(src) == before


# --- permissions -------------------------------------------------------------------------------

def test_unreadable_sources_keep_their_outputs(world):
    """chmod 000 on a folder, on a track the last build read and on a new track: each is a
    failure naming its path and 'Permission denied' (to be retried), and no output is
    removed or changed; once readable again, the next build catches up."""
    src, builds = world.sources(), world.builds()
    build_ok(src, builds)
    made = {p: files(builds / p) for p in PROFILES}
    album_a, album_b = album_dirs(src)
    old_track = sorted(album_b.glob("*.flac"))[1]
    new_track = add_track(album_b, "05 New.flac", 7)
    for path in (album_a, old_track, new_track):
        path.chmod(0)
    run = music_build(src, builds)
    assert run.rc == 0, run  # failures go to the report (the play fails on them)
    rep = report(builds)
    for p in PROFILES:
        r = rep["profiles"][p]
        assert files(builds / p) == made[p], p
        assert r["removed"] == 0, r
        failed = {f["source"]: f for f in r["failed"]}
        for path, suffix in ((album_a, "/"), (old_track, ""), (new_track, "")):
            f = failed[str(path.relative_to(src)) + suffix]
            assert "Permission denied" in f["reason"] and f["retry"] is True, f
        assert len(failed) == 3, failed
    src.chmod(0)  # the whole library
    run = music_build(src, builds)
    assert run.rc == 1 and run.errors() == [
        f"music-build: error: sources directory {src} is not readable by this user"], run
    assert {p: files(builds / p) for p in PROFILES} == made
    src.chmod(0o755)
    for path in (album_a, old_track, new_track):
        path.chmod(0o755 if path.is_dir() else 0o644)
    rep = build_ok(src, builds)
    assert all(r["encoded"] == 1 for r in rep["profiles"].values()), rep
    assert_complete(builds, tracks=TRACKS + 1, check=ONE_MORE)


def test_unwritable_builds_folder_is_one_line(world):
    """A builds folder the build user cannot write (or read), and its --dry-run: one line
    naming the path and the cause."""
    src = world.sources()
    builds = world.builds()
    chown_tree(builds, "root")
    run = music_build(src, builds)
    assert run.rc == 1 and run.errors() == [f"music-build: error: {builds}/.music/lock: Permission denied"], run
    shutil.rmtree(builds / ".music")
    run = music_build(src, builds)
    assert run.rc == 1 and run.errors() == [f"music-build: error: {builds}/.music: Permission denied"], run
    world.builds()  # configured again, then closed to the build user
    chown_tree(builds, "root")
    (builds / ".music").chmod(0o700)
    for extra in ((), ("--dry-run",)):
        run = music_build(src, builds, *extra)
        assert run.rc == 1, run
        assert run.errors() == [f"music-build: error: {builds}/.music/tup: Permission denied"], run
    assert sorted(os.listdir(builds)) == [".music"]


def test_wrong_folders_and_two_builds_at_once_are_one_line(world):
    """A sources folder that is missing or a file, and a second build of the same builds
    folder while one runs: one line each; the running build is not disturbed."""
    src, builds = world.sources(), world.builds()
    missing, a_file = world.base / "missing", next(src.rglob("*.flac"))
    for wrong, says in ((missing, f"sources directory {missing} does not exist"),
                        (a_file, f"sources {a_file} is not a directory")):
        run = music_build(wrong, builds)
        assert run.rc == 1 and run.errors() == [f"music-build: error: {says}"], run
    run = music_build(src, builds, "--removal-share", "nan")
    assert run.rc == 2 and "is not a share between 0 and 1" in run.stderr, run
    runner = start(src, builds)
    program_pid(runner)
    runner.stdout.readline()  # it holds the lock
    run = music_build(src, builds)
    assert run.rc == 1 and run.errors() == [f"music-build: error: another build of {builds} is running"], run
    assert finish(runner).rc == 0
    assert_complete(builds)


def test_umask_077_still_serves(world):
    """Under umask 077 the served trees are still readable by others (folders 0755, files
    0644, report.json 0644): another user lists and reads them with rsync."""
    src, builds = world.sources(), world.builds()
    run = music_build(src, builds, umask="077")
    assert run.rc == 0, run
    assert stat.S_IMODE((builds / "report.json").stat().st_mode) == 0o644
    for p in PROFILES:
        for top, dirs, names in os.walk(builds / p):
            assert stat.S_IMODE(os.stat(top).st_mode) == 0o755, top
            for name in names:
                assert stat.S_IMODE(os.stat(os.path.join(top, name)).st_mode) == 0o644, (top, name)
    dest = world.base / "copy"
    dest.mkdir()
    shutil.chown(dest, "nobody")
    listing = subprocess.run(["runuser", "-u", "nobody", "--", "rsync", "-r", "--list-only", f"{builds}/phone/"],
                             capture_output=True, text=True)
    assert listing.returncode == 0 and listing.stdout.count(".opus") == TRACKS, listing
    copy = subprocess.run(["runuser", "-u", "nobody", "--", "rsync", "-r", f"{builds}/", f"{dest}/",
                           "--exclude", ".music"], capture_output=True, text=True)
    assert copy.returncode == 0, copy.stderr
    assert files(dest / "phone") == files(builds / "phone")
    assert_complete(builds)


# --- folders that overlap ----------------------------------------------------------------------

def test_overlapping_folders_are_refused_before_anything_is_written(world):
    """Sources and builds that are one folder or inside each other, directly, through a
    symlink or through a bind mount, both ways: refused in one line naming both, and not a
    byte changed or added anywhere (the library's checksums before and after)."""
    src = world.sources()
    artist = sorted(p for p in src.iterdir())[0]
    other = world.builds("other")  # the case: the library inside a builds folder
    subprocess.run(["cp", "-a", "--", str(world.library), str(other / "flac")], check=True)
    (world.base / "link").symlink_to(src)
    bound = world.bind(src, world.base / "bound")
    before = files(world.base)
    listing = sorted(os.walk(world.base))
    inside_src = "overlap: the builds folder is inside the sources folder"
    inside_out = "overlap: the sources folder is inside the builds folder"
    cases = [
        (src, src / "out", inside_src),
        (src, src, "are the same folder"),
        (artist, src, inside_out),
        (other / "flac", other, inside_out),
        (src, world.base / "link" / "out", inside_src),
        (world.base / "link", src / "out", inside_src),
        (src, bound / "out", inside_src),
        (bound, src / "out", inside_src),
        (bound / artist.name, src, inside_out),
        (src, bound, "are the same folder"),
    ]
    for sources, builds, problem in cases:
        for extra in ((), ("--dry-run",)):
            run = music_build(sources, builds, *extra)
            assert run.rc == 1, (sources, builds, run)
            assert run.errors() == [f"music-build: error: sources {sources} and builds {builds} {problem}; "
                                    "nothing was written. Choose folders apart from each other"], run
    assert files(world.base) == before
    assert sorted(os.walk(world.base)) == listing
    # Folders side by side (a builds folder not made yet beside the library) are fine.
    run = music_build(src, world.base / "new" / "builds", "--dry-run")
    assert run.rc == 0, run


# --- the user's own files, outputs deleted by hand -----------------------------------------------

def test_foreign_files_kept_and_deleted_outputs_rebuilt(world):
    """Files the build did not make are left alone and reported as foreign (readably, for a
    name that is not UTF-8); outputs deleted by hand are made again and counted; a build
    made before records existed gets its record from its state and loses nothing."""
    src, builds = world.sources(), world.builds()
    build_ok(src, builds)
    phone, car, flac_tree = builds / "phone", builds / "car", builds / "flac"
    (phone / ".stfolder").mkdir()
    (phone / ".stfolder/syncthing").write_bytes(b"marker")
    (phone / ".nomedia").write_bytes(b"")
    (phone / "Audiobooks").mkdir()
    (phone / "Audiobooks/My Book.m4b").write_bytes(os.urandom(5000))
    with open(os.path.join(os.fsencode(phone), b"notes \xfe.txt"), "wb") as fh:
        fh.write(b"mine")
    (car / ".nomedia").write_bytes(b"")
    foreign = {p: {rel: sha for rel, sha in files(builds / p).items() if not rel.endswith(
        (b".opus", b".mp3", b".flac", b".m3u8", b"cover.jpg"))} for p in PROFILES}
    assert len(foreign["phone"]) == 4 and len(foreign["car"]) == 1
    deleted = [sorted(phone.rglob("*.opus"))[0], sorted(car.rglob("cover.jpg"))[0],
               sorted(flac_tree.rglob("*.flac"))[1]]
    for path in deleted:
        path.unlink()
    gone = sorted(src.rglob("*.flac"))[-1]  # one source removed: 1 of 8 outputs, no guard
    gone.unlink()
    rep = build_ok(src, builds)
    for path in deleted:
        assert path.exists() and (path.suffix == ".jpg" or decodes(path)), path
    for p in PROFILES:
        r = rep["profiles"][p]
        assert {rel: sha for rel, sha in files(builds / p).items() if rel in foreign[p]} == foreign[p], p
        assert r["foreign"]["count"] == len(foreign[p]), r
        assert r["restored"] == 1 and r["removed"] == 1 and r["failed"] == [], r
        assert r["encoded"] == (0 if p == "car" else 1), r
    assert sorted(rep["profiles"]["phone"]["foreign"]["first"]) == [
        ".nomedia", ".stfolder/syncthing", "Audiobooks/My Book.m4b", "notes \\xfe.txt"]
    assert all(len(audio_files(builds / p)) == TRACKS - 1 for p in PROFILES)
    # A build made before the record existed: seeded from the scan cache, nothing mistaken.
    before = {p: files(builds / p) for p in PROFILES}
    shutil.rmtree(builds / ".music/outputs")
    rep = build_ok(src, builds)
    for p in PROFILES:
        assert files(builds / p) == before[p]
        r = rep["profiles"][p]
        assert (r["foreign"]["count"], r["removed"], r["encoded"]) == (len(foreign[p]), 0, 0), r


# --- the library's disk unmounted, most of it gone -------------------------------------------------

def test_a_library_at_the_root_of_its_own_volume_ignores_lost_and_found(world):
    """A library that is a whole ext4 volume (a USB disk, the EBS sources volume) has root's
    0700 lost+found at its root: that is the filesystem's, not an unreadable album."""
    image = world.base / "disk.img"
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    disk = world.base / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(disk)], check=True)
    world.mounts.append(disk)
    assert stat.S_IMODE((disk / "lost+found").stat().st_mode) == 0o700
    subprocess.run(["cp", "-a", "--", f"{world.library}/.", str(disk)], check=True)
    disk.chmod(0o755)
    builds = world.builds()
    run = music_build(disk, builds)
    assert run.rc == 0 and "lost+found" not in run.stdout + run.stderr, run
    assert_complete(builds)


def test_unmounted_library_removes_nothing(world):
    """The library on a disk that is sometimes unmounted: the empty mount point removes
    nothing (exit 3, how to confirm), --dry-run says the same; mounted again, the build
    carries on without re-encoding; confirmed with --allow-mass-removal, it removes."""
    usb = world.mount_tmpfs(world.base / "usb", "16m")
    subprocess.run(["cp", "-a", "--", f"{world.library}/.", str(usb)], check=True)
    builds = world.builds()
    build_ok(usb, builds)
    made = {p: files(builds / p) for p in PROFILES}
    outputs = sum(len(record(builds, p)) for p in PROFILES)
    world.umount(usb)
    plan = music_build(usb, builds, "--dry-run")
    assert plan.rc == 3 and json.loads(plan.stdout)["empty_sources"] is True, plan
    run = music_build(usb, builds)
    assert run.rc == 3, run
    assert run.errors() == [
        f"music-build: refused: the sources folder {usb} is empty, but earlier builds made {outputs} outputs from it: "
        "nothing was changed (an unmounted disk or a failed sync?); to remove them, confirm for this run only: "
        "-e music_allow_mass_removal=true (music-build --allow-mass-removal)"], run
    assert {p: files(builds / p) for p in PROFILES} == made
    world.mount_tmpfs(usb, "16m")
    subprocess.run(["cp", "-a", "--", f"{world.library}/.", str(usb)], check=True)
    rep = build_ok(usb, builds)
    assert all(r["encoded"] == 0 and r["removed"] == 0 for r in rep["profiles"].values()), rep
    assert {p: files(builds / p) for p in PROFILES} == made
    world.umount(usb)
    rep = build_ok(usb, builds, "--allow-mass-removal")
    for p in PROFILES:
        assert rep["profiles"][p]["removed"] == TRACKS, rep
        assert files(builds / p) == {}, p


def test_mass_removal_guard(world):
    """Renaming every folder is a move, not a removal; one source gone is removed; more than
    half of a profile's outputs gone removes nothing (exit 3, the same list as --dry-run)
    until confirmed for one run."""
    src, builds = world.sources(), world.builds()
    build_ok(src, builds)
    for artist in sorted(src.iterdir()):
        artist.rename(artist.with_name(artist.name + " (remastered)"))
    plan = music_build(src, builds, "--dry-run")
    assert plan.rc == 0, plan
    assert all(p["withheld"] is None for p in json.loads(plan.stdout)["profiles"].values()), plan.stdout
    rep = build_ok(src, builds)
    assert all(r["removed"] == TRACKS for r in rep["profiles"].values()), rep
    assert_complete(builds)
    album_a, album_b = album_dirs(src)
    sorted(album_a.glob("*.flac"))[0].unlink()  # fewer than half: removed
    rep = build_ok(src, builds)
    assert all(r["removed"] == 1 for r in rep["profiles"].values()), rep
    kept = {p: {rel: sha for rel, sha in files(builds / p).items() if rel.endswith((b".opus", b".mp3", b".flac"))}
            for p in PROFILES}
    shutil.rmtree(album_a)  # then most of it: held back
    sorted(album_b.glob("*.flac"))[0].unlink()
    state = files(builds)
    plan = music_build(src, builds, "--dry-run")
    assert plan.rc == 3, plan
    assert files(builds) == state  # a dry run writes nothing
    would = json.loads(plan.stdout)["profiles"]
    run = music_build(src, builds)
    assert run.rc == 3, run
    [refusal] = run.errors()
    assert refusal.startswith("music-build: refused: profile car: nothing removed: "), run
    assert refusal.endswith("to remove them, confirm for this run only: -e music_allow_mass_removal=true "
                            "(music-build --allow-mass-removal)"), run
    rep = report(builds)
    for p in PROFILES:
        withheld = rep["profiles"][p]["withheld"]
        assert withheld["reason"] == would[p]["withheld"], (withheld, would[p])
        assert (withheld["count"], withheld["first"]) == (would[p]["would_remove"]["count"],
                                                         would[p]["would_remove"]["first"]), (withheld, would[p])
        assert withheld["count"] >= 3 and rep["profiles"][p]["removed"] == 0
        now = files(builds / p)
        assert {rel: now.get(rel) for rel in kept[p]} == kept[p], p
    rep = build_ok(src, builds, "--allow-mass-removal")
    assert all(r["removed"] == 3 and "withheld" not in r for r in rep["profiles"].values()), rep
    assert all(len(audio_files(builds / p)) == 2 for p in PROFILES)


def test_a_naming_setting_moves_outputs_instead_of_reencoding_or_removing(world):
    """FAT32 names switched on for a profile whose names have ':' in them: every output is
    renamed in place (a move: the same bytes, no encoder), none counted as removed, and the
    mass-removal guard does not mistake the old names for lost sources."""
    src, builds = world.sources(), world.builds()
    build_ok(src, builds)
    before = sorted(sha for rel, sha in files(builds / "phone").items() if rel.endswith(b".opus"))
    assert any(b":" in rel for rel in files(builds / "phone"))
    config = builds / ".music" / "tup" / "phone" / "tup.config"
    config.write_text(render_tup_config("phone", {**PROFILES["phone"], "names": "fat32"}))
    plan = music_build(src, builds, "--dry-run")
    assert plan.rc == 0 and json.loads(plan.stdout)["profiles"]["phone"]["withheld"] is None, plan
    rep = build_ok(src, builds)
    phone = rep["profiles"]["phone"]
    assert (phone["encoded"], phone["moved"], phone["removed"]) == (0, TRACKS, 0), phone
    assert "withheld" not in phone
    after = files(builds / "phone")
    assert sorted(sha for rel, sha in after.items() if rel.endswith(b".opus")) == before
    assert not any(b":" in rel for rel in after)
    assert_complete(builds)
    # Nothing left to do: the next build moves nothing again.
    again = build_ok(src, builds)["profiles"]["phone"]
    assert (again["encoded"], again["moved"], again["removed"], again["unchanged"]) == (0, 0, 0, TRACKS)


# --- killed builds -----------------------------------------------------------------------------

def test_sigkill_at_random_moments(world):
    """SIGKILL of music-build at a random moment of a build (three times): within seconds
    nothing of it runs and tup's mount is gone; the next build finishes with an exact report
    and outputs that decode."""
    rng = random.Random(SEED)
    src = world.sources()
    reference = world.builds("reference")
    t0 = time.monotonic()
    build_ok(src, reference)
    runtime = time.monotonic() - t0
    for attempt in range(3):
        builds = world.builds(f"builds{attempt}")
        delay = rng.uniform(0.05, runtime)
        runner = start(src, builds)
        pid = program_pid(runner)
        time.sleep(delay)
        send(pid, signal.SIGKILL)
        runner.wait(timeout=60)
        try:
            took = assert_nothing_left(builds)
        except AssertionError as exc:
            raise AssertionError(f"seed {SEED}, killed after {delay:.2f} s: {exc}") from None
        runner.communicate(timeout=60)
        assert runner.returncode in (0, 137, -9), runner.returncode
        assert took < 8
        rep = build_ok(src, builds)
        assert_complete(builds)
        assert all(r["removed"] == 0 and r["restored"] == 0 for r in rep["profiles"].values()), rep


def test_killed_once_tup_ran_still_records_and_restores(world):
    """Killed after tup ran its commands but before the build recorded their outputs: the
    next build records them anyway, so one of them deleted by hand is made again."""
    src, builds = world.sources(), world.builds()
    build_ok(src, builds)
    album_b = album_dirs(src)[1]
    add_track(album_b, "05 New.flac", 11)
    runner = start(src, builds)
    pid = program_pid(runner)
    armed = False
    for line in runner.stdout:
        armed = armed or b"Executing Commands" in line
        if armed and b" 100% " in line:  # tup's last command is done
            send(pid, signal.SIGKILL)
            break
    runner.communicate(timeout=60)
    assert_nothing_left(builds)
    build_ok(src, builds)
    for p in PROFILES:
        assert any("05 New" in source for source in record(builds, p).values()), p
    made = sorted((builds / "phone").rglob("05 New.opus"))
    assert len(made) == 1
    made[0].unlink()
    rep = build_ok(src, builds)
    assert rep["profiles"]["phone"]["restored"] == 1 and decodes(made[0]), rep


def test_ctrl_c_and_stop_signals_end_everything(world):
    """SIGINT (Ctrl-C), SIGTERM (a service stopped), SIGHUP (a closed terminal) during the
    build: one line, tup and every encoder ended at once, and the next build finishes the job."""
    rng = random.Random(SEED + 1)
    src = world.sources()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        builds = world.builds(f"builds-{signum.name}")
        runner = start(src, builds)
        pid = program_pid(runner)
        runner.stdout.readline()  # "scanning ...": the program is running, its handlers set
        time.sleep(rng.uniform(0.0, 0.8))
        send(pid, signum)
        run = finish(runner)
        if run.rc != 0:  # else it had finished
            assert run.rc == 1, run
            assert run.errors()[-1] == (f"music-build: error: interrupted by {signum.name}; tup and its commands "
                                        "were ended, the next build carries on where this one stopped"), run
        assert_nothing_left(builds, within=2.0)
        build_ok(src, builds)
        assert_complete(builds)


def test_next_build_ends_what_a_killed_build_left(world):
    """music-build and its encode service both killed (as an OOM killer or `kill -9` of
    everything but tup would): tup carries on alone; the next build ends it first (found by
    .music/tup.pid), says so, and its report is exact."""
    src, builds = world.sources(), world.builds()
    runner = start(src, builds, "--jobs", "1")
    pid = program_pid(runner)
    for line in runner.stdout:
        if b"Executing Commands" in line:
            break
    service = [other for other, what in processes_under(builds).items() if "musicbuild.service" in what]
    for victim in service + [pid]:
        send(victim, signal.SIGKILL)
    runner.wait(timeout=60)
    left = processes_under(builds)
    run = music_build(src, builds)
    assert run.rc == 0, run
    if any("tup" in what for what in left.values()):
        assert "music-build: ended what an interrupted earlier build left running" in run.stdout, (left, run)
    assert_nothing_left(builds)
    assert_complete(builds)
    runner.communicate(timeout=60)


# --- sources that change under the build -------------------------------------------------------

def test_vanished_sources_keep_outputs(world):
    """A track gone between the folder's listing and its reading, and one moved away while
    the build runs: failures naming the path and the cause, to be retried; its outputs stay;
    the next build, with the file back, catches up."""
    src, builds = world.sources(), world.builds()
    build_ok(src, builds)
    made = {p: files(builds / p) for p in PROFILES}
    album_b = album_dirs(src)[1]
    track = sorted(album_b.glob("*.flac"))[0]
    stash = world.base / "stash"
    stash.mkdir()
    # Listed, then gone when read: a name whose file is not there (a dangling symlink).
    track.rename(stash / track.name)
    track.symlink_to(stash / "nowhere.flac")
    run = music_build(src, builds)
    assert run.rc == 0, run
    rep = report(builds)
    for p in PROFILES:
        r = rep["profiles"][p]
        assert r["failed"] == [{"source": str(track.relative_to(src)), "retry": True,
                                "reason": "vanished while the sources were scanned: No such file or directory"}], r
        assert r["removed"] == 0 and files(builds / p) == made[p], r
    track.unlink()
    (stash / track.name).rename(track)
    rep = build_ok(src, builds)
    assert all(r["encoded"] == 0 and r["failed"] == [] for r in rep["profiles"].values()), rep
    # Moved away after the scan, before tup ran its command.
    new = add_track(album_b, "05 New.flac", 5)
    runner = start(src, builds)
    pidfile = builds / ".music/tup.pid"
    deadline = time.monotonic() + 30
    while not pidfile.exists() and runner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    group = int(pidfile.read_text())
    os.killpg(group, signal.SIGSTOP)
    new.rename(stash / new.name)
    # SIGCONT again after a moment: a tup process that was forking when the group was stopped
    # can be left with the stop but not the first SIGCONT (the kernel hands a new child the
    # group's signals of its fork, a pending SIGCONT does not cancel a pending SIGSTOP).
    for _ in range(3):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGCONT)
        time.sleep(0.1)
    run = finish(runner)
    assert run.rc == 0, run
    for p, r in report(builds)["profiles"].items():
        assert r["failed"] == [{"source": str(new.relative_to(src)), "retry": True,
                                "reason": "the source file is gone (moved or deleted during the build)"}], r
    (stash / new.name).rename(new)
    rep = build_ok(src, builds)
    assert all(r["encoded"] == 1 for r in rep["profiles"].values()), rep
    assert_complete(builds, tracks=TRACKS + 1, check=ONE_MORE)


def test_encoder_that_refuses_is_retried(world):
    """An encoder that refuses audio that decodes fine (the real lame, run with an option it
    does not have, first on the build's PATH): the failure names the encoder and its words,
    is not cached as a bad source, is tried again next build, and succeeds once the encoder
    works. The other profiles make it. The track is a 5.1 one, which MP3 gets downmixed."""
    src, builds = world.sources(), world.builds()
    build_ok(src, builds)
    broken = world.base / "broken-encoder"
    broken.mkdir(mode=0o755)
    (broken / "lame").write_text(f"#!/bin/sh\nexec {shutil.which('lame')} --no-such-option \"$@\"\n")
    (broken / "lame").chmod(0o755)
    album_b = album_dirs(src)[1]
    six = album_b / "05 Surround.flac"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "6", "-b", "16", str(six), "synth", "1", "sine", "440"],
                   check=True)
    for attempt in range(2):
        cmd = command(src, builds)
        cmd[cmd.index("--") + 1:cmd.index("--") + 1] = ["env", f"PATH={broken}:{os.environ['PATH']}"]
        run = finish(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        assert run.rc == 0, run
        rep = report(builds)
        car = rep["profiles"]["car"]
        assert [(f["source"], f["retry"]) for f in car["failed"]] == [(str(six.relative_to(src)), True)], car
        assert car["failed"][0]["reason"] == f"mp3 encoder (lame) exited with 1: {shutil.which('lame')}: " \
                                            "unrecognized option --no-such-option", car
        assert rep["profiles"]["phone"]["failed"] == rep["profiles"]["flac"]["failed"] == []
        tried = [json.loads(line) for line in (builds / ".music/journal.jsonl").read_text().splitlines()]
        assert any(e["event"] == "encoder" and e["profile"] == "car" and e["source"].endswith("Surround.flac")
                   for e in tried), f"attempt {attempt}: not tried again"
    rep = build_ok(src, builds)
    assert rep["profiles"]["car"]["failed"] == [] and rep["profiles"]["car"]["encoded"] == 1, rep
    assert rep["profiles"]["car"]["notes"] == [{"source": str(six.relative_to(src)),
                                                "note": "downmixed 6 channels to 2 (mp3 carries at most 2)"}], rep
    assert_complete(builds, tracks=TRACKS + 1, check=ONE_MORE)


def test_an_unwritable_output_folder_fails_that_track_with_its_cause_and_is_retried(world):
    """A profile's album folder taken away from the build user: re-tagging its tracks fails
    with "Permission denied" naming the folder (retried, not cached as bad), the old outputs
    stay as they were, the other profiles are re-tagged; once the folder is given back, the
    next build re-tags them and reports nothing failed."""
    src, builds = world.sources(), world.builds()
    build_ok(src, builds)
    album = album_dirs(src)[0]
    track = sorted(album.glob("*.flac"))[0]
    tag_track(str(track), {"TITLE": "A new title"})
    phone_album = next(p.parent for p in (builds / "phone").rglob("*.opus") if p.parent.name == album.name)
    before = files(phone_album)
    phone_album.chmod(0o555)
    try:
        run = music_build(src, builds)
        assert run.rc == 0 and "Traceback" not in run.stderr, run
        rep = report(builds)
        # The track, and the album's playlist (its title changed), each say why.
        failures = rep["profiles"]["phone"]["failed"]
        assert {f["source"] for f in failures} == {str(track.relative_to(src))}, failures
        assert len(failures) == 2 and sum(f["reason"].startswith("playlist not written: ") for f in failures) == 1, \
            failures
        for failure in failures:
            assert failure["retry"] is True, failure
            assert "Permission denied" in failure["reason"] and str(phone_album) in failure["reason"], failure
        assert files(phone_album) == before
        assert rep["profiles"]["car"]["retagged"] == rep["profiles"]["flac"]["retagged"] == 1, rep
    finally:
        phone_album.chmod(0o755)
    rep = build_ok(src, builds)
    assert rep["profiles"]["phone"]["retagged"] == 1 and rep["profiles"]["phone"]["failed"] == [], rep
    assert_complete(builds)


# --- names that are not UTF-8 --------------------------------------------------------------------

def test_names_that_are_not_utf8(world):
    """A folder and a good track named in Latin-1, a corrupt track with a stray byte, in a
    library and a builds folder whose own paths are not UTF-8: the report is strict UTF-8
    JSON and names the bad one readably, with its exact bytes; the good one is built; the
    next build does not crash either."""
    src, builds = world.sources(os.fsdecode(b"library \xff")), world.builds(os.fsdecode(b"builds \xfe"))
    raw_src = os.fsencode(src)
    folder = os.path.join(raw_src, b"Caf\xe9 Sessions")
    os.mkdir(folder)
    good = sorted(src.rglob("*.flac"))[0]
    shutil.copyfile(good, os.path.join(folder, b"01 Caf\xe9.flac"))
    data = good.read_bytes()
    with open(os.path.join(folder, b"02 Bad \xff.flac"), "wb") as fh:
        fh.write(data[: len(data) // 2])
    bad_rel = b"Caf\xe9 Sessions/02 Bad \xff.flac"
    for attempt in range(2):
        run = music_build(src, builds)
        assert run.rc == 0, run
        rep = report(builds)
        for p in PROFILES:
            r = rep["profiles"][p]
            assert len(r["failed"]) == 1, r
            f = r["failed"][0]
            assert f["source"] == "Caf\\xe9 Sessions/02 Bad \\xff.flac", f
            assert bytes.fromhex(f["source_bytes_hex"]) == bad_rel, f
            assert f["retry"] is False and "damaged" in f["reason"], f
            assert len(audio_files(builds / p)) == TRACKS + 1, p
            assert r["path"] == os.fsencode(builds / p).decode("utf-8", "backslashreplace"), r
    made = os.path.join(os.fsencode(builds), b"phone", b"Caf\xe9 Sessions", b"01 Caf\xe9.opus")
    assert decodes(made)
    # flac has the default names, exfat: bytes that are no UTF-8 cannot be an exFAT name, each is '_'
    assert decodes(os.path.join(os.fsencode(builds), b"flac", b"Caf_ Sessions", b"01 Caf_.flac"))
