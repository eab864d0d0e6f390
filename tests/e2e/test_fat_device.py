"""A car profile copied onto a real FAT32 filesystem with the README's rsync command.

The kernel here has no vfat module, so the FAT32 filesystem is an image made by mtools'
`mformat -F` and mounted through FUSE by fusefat (`-o rw+` is its read-write mode); what it
wrote is then read back by a second FAT implementation, mtools (`mcopy`). The library holds
what collides on FAT32: a box set whose discs `CD 1: Spring` and `CD 1? Spring` become one
folder, albums `Artist/Live` and `artist/live` (one folder on FAT, playlists `Live.m3u8` and
`live.m3u8`), an album with its own `Album.m3u8` copied as an extra file, a TITLE with a
newline and a track whose name starts with '#'. fusefat refuses names that are not ASCII
(EPERM), so this library is ASCII; the names' rules are the same (tests/unit/musicbuild).

The copy is the README's command line, read from the README: every track and playlist is on
the device with the bytes the build made, every playlist entry names its own track there
(its title read back by mutagen and ffprobe), a second run copies nothing (and would copy
every file of an odd second without --modify-window=1), --delete removes what the profile
no longer has and nothing outside the profile's folder, and --size-only misses a re-tag of
the same size, as the README says.

fusefat falls short of a kernel's vfat in two ways the test makes up for, no more: it has no
chmod (rsync's complaints of it are the only errors accepted), and a rename gives the file
the current time (the time rsync set is given back to the files rsync copied).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from music_devkit.library import make_image, synth_flac, tag_track
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = ROOT / "roles/worker/files/music-build/music-build"
CAR = {"codec": "mp3", "fat32_names": True, "playlists": True, "extra_files": ["cover.jpg", "*.m3u8"]}
LIBRARY = {  # album folder -> [(file, TITLE)], in track order
    "Box/CD 1: Spring": [("01 Song.flac", "Song"), ("02 Rain.flac", "Rain\nfalling")],
    "Box/CD 1? Spring": [("01 Song.flac", "Thaw"), ("02 Rain.flac", "Bloom")],
    "Artist/Live": [("01 Opener.flac", "Opener"), ("#2 Encore.flac", "Encore")],
    "artist/live": [("01 Closer.flac", "Closer")],
    "Mixes/Album": [("01 Mix.flac", "Mix")],
}
USER_M3U8 = "#EXTM3U\n01 Mix.flac\n"  # the album's own playlist, copied by extra_files
# What the build makes of it (collisions resolved as the README says).
PLAYLISTS = {
    "Box/CD 1_ Spring/CD 1_ Spring.m3u8": ["Box/CD 1_ Spring/01 Song.mp3", "Box/CD 1_ Spring/02 Rain.mp3"],
    "Box/CD 1_ Spring/CD 1_ Spring (2).m3u8": ["Box/CD 1_ Spring/01 Song (2).mp3",
                                               "Box/CD 1_ Spring/02 Rain (2).mp3"],
    "Artist/Live/Live.m3u8": ["Artist/Live/01 Opener.mp3", "Artist/Live/#2 Encore.mp3"],
    "Artist/Live/live (2).m3u8": ["Artist/Live/01 Closer.mp3"],
    "Mixes/Album/Album (2).m3u8": ["Mixes/Album/01 Mix.mp3"],
}
README_SOURCE, README_DEVICE = "OUT/car/", "/media/usbstick/Music/"
# fusefat gives a file the current time when it renames it (seen on disk with mtools), which
# the kernel's vfat does not: the modification time rsync gives its temporary file is lost
# when the file is renamed into place. After each copy the test gives the files rsync copied
# the time rsync had set (FAT keeps it to 2 seconds, as it would have).
# fusefat has no chmod (ENOSYS): rsync, which sets a new file's permissions even without -p,
# says so for each new file and folder. The kernel's vfat takes such a chmod without an
# error (fat_setattr: "We don't return -EPERM here"), so a real device shows none of these.
FUSEFAT_NO_CHMOD = re.compile(r'rsync: \[(generator|receiver)\] failed to set permissions on ".*": '
                              r"Function not implemented \(38\)$")
ITEM = re.compile(r"^(\*deleting|[<>ch.][fdLDS][^ ]{9}) ")


def readme_command() -> list[str]:
    """The README's command for copying a profile from the builds folder to a FAT device."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines()
             if line.startswith("rsync ") and README_SOURCE in line and README_DEVICE in line]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


# --- the world ---------------------------------------------------------------------------------

class FatDevice:
    """A FAT32 image mounted read-write through fusefat (run in the foreground, so its process
    is this test's own); unmounted and its process ended in cleanup."""

    def __init__(self, image: Path, mnt: Path):
        self.image, self.mnt, self.proc = image, mnt, None
        with open(image, "wb") as fh:
            fh.truncate(64 << 20)  # FAT32 needs 65525 clusters: 64 MiB of 512-byte clusters
        subprocess.run(["mformat", "-i", str(image), "-F", "::"], check=True, capture_output=True)
        mnt.mkdir()

    def mount(self) -> Path:
        self.proc = subprocess.Popen(["fusefat", "-f", "-o", "rw+", str(self.image), str(self.mnt)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mnt):
            assert self.proc.poll() is None and time.monotonic() < deadline, "fusefat did not mount"
            time.sleep(0.02)
        return self.mnt

    def umount(self) -> None:
        if self.proc is None:
            return
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount", "-u", str(self.mnt)], check=True)
        try:
            self.proc.wait(timeout=10)  # its writes are in the image once it has ended
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        if self.proc is not None and os.path.ismount(self.mnt):
            subprocess.run(["fusermount", "-uz", str(self.mnt)], capture_output=True)
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def world(world_readable_tmp):
    base = world_readable_tmp / f"fatdevice-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    device = FatDevice(base / "car.img", base / "mnt")
    yield base, device
    device.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def make_sources(src: Path) -> None:
    for a, (album, tracks) in enumerate(sorted(LIBRARY.items())):
        folder = src / album
        folder.mkdir(parents=True)
        for t, (name, title) in enumerate(tracks):
            synth_flac(str(src / "new.flac"), 1, a * 7 + t)  # sox globs its file names ('?' matches ':')
            os.replace(src / "new.flac", folder / name)
            tag_track(str(folder / name), {"TITLE": title, "ARTIST": "Band", "ALBUM": album.split("/")[1],
                                           "TRACKNUMBER": str(t + 1)})
    (src / "Mixes/Album/Album.m3u8").write_text(USER_M3U8)
    (src / "Mixes/Album/cover.jpg").write_bytes(make_image(64, 1))


def build(src: Path, builds: Path) -> dict:
    folder = builds / ".music/tup/car"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tup.config").write_text(render_tup_config("car", CAR))
    run = subprocess.run([str(MUSIC_BUILD), "--sources", str(src), "--builds", str(builds), "--jobs", "2"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((builds / "report.json").read_text())["profiles"]["car"]
    assert report["failed"] == [], report
    return report


def on(cmd: list[str], tree: Path, device_folder: Path) -> list[str]:
    """The README's command line for this tree and device folder."""
    return [str(tree) + "/" if a == README_SOURCE else str(device_folder) + "/" if a == README_DEVICE else a
            for a in cmd]


def rsync(cmd: list[str], tree: Path, device_folder: Path, *extra: str) -> list[str]:
    """Run an rsync command line from the README on this tree and device folder: the
    itemized changes it printed. Only fusefat's missing chmod may be complained of; the
    times fusefat's rename dropped are given back (see FUSEFAT_NO_CHMOD and above)."""
    run = subprocess.run([*on(cmd, tree, device_folder), *extra], capture_output=True, text=True, timeout=120)
    errors = [line for line in run.stderr.splitlines() if line.strip() and not FUSEFAT_NO_CHMOD.match(line)]
    if run.returncode == 23 and errors and errors[-1].startswith("rsync error: some files/attrs were not transferred"):
        errors.pop()  # the summary of the lines above
    else:
        assert run.returncode == 0, run.stderr
    assert errors == [], run.stderr
    items = [line for line in run.stdout.splitlines() if ITEM.match(line)]
    if "--dry-run" not in extra:
        for line in items:
            if line.startswith(">f"):
                name = line.split(" ", 1)[1]
                mtime = (tree / name).stat().st_mtime
                os.utime(device_folder / name, (mtime, mtime))
    return items


def not_folders(items: list[str]) -> list[str]:
    """Itemized changes less a folder's time (a file written in it changes that)."""
    return [i for i in items if not i.startswith(".d..t......")]


# --- what a user looks at ----------------------------------------------------------------------

def files(tree: Path) -> dict[str, str]:
    """Every file under `tree` -> sha256 of its bytes."""
    out = {}
    for top, _, names in os.walk(tree):
        for name in names:
            path = os.path.join(top, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, tree)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def exact_file(path: Path) -> bool:
    """`path` is there with exactly this spelling (FAT itself finds any case)."""
    return path.parent.is_dir() and path.name in os.listdir(path.parent)


def playlist(path: Path) -> list[tuple[str, str]]:
    """(EXTINF label, path line) of each entry; every other line must be the header."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0] == "#EXTM3U" and lines[-1] == "", lines
    body = lines[1:-1]
    assert all(i.startswith("#EXTINF:") for i in body[0::2]) and not any(p.startswith("#") for p in body[1::2]), body
    return [(info.split(",", 1)[1], p) for info, p in zip(body[0::2], body[1::2])]


def titles(path: Path) -> tuple[str, str]:
    """The track's TITLE as mutagen and as ffprobe read it."""
    by_ffprobe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format_tags=title", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout)["format"]["tags"]["title"]
    return str(ID3(path)["TIT2"]), by_ffprobe


def check_device(tree: Path, device: Path, source_of: dict[str, str]) -> None:
    """The device's copy is the profile's tree, and every playlist entry is its own track."""
    assert files(device) == files(tree)
    listed = []
    for rel, tracks in PLAYLISTS.items():
        if rel not in source_of:
            continue
        entries = playlist(device / rel)
        resolved = [os.path.normpath(os.path.join(os.path.dirname(rel), p.removeprefix("./"))) for _, p in entries]
        assert resolved == [t for t in tracks if t in source_of], (rel, entries)
        for (label, _), track in zip(entries, resolved):
            assert exact_file(device / track), track
            mutagen_title, ffprobe_title = titles(device / track)
            assert mutagen_title == ffprobe_title
            assert label == "Band - " + mutagen_title.replace("\n", " "), (label, mutagen_title)
            assert source_of[track].startswith(source_of[rel].rsplit("/", 1)[0] + "/")  # the album's own
            subprocess.run(["ffmpeg", "-v", "error", "-i", str(device / track), "-f", "null", "-"], check=True)
        listed += resolved
    assert sorted(listed) == sorted(t for t in source_of if t.endswith(".mp3"))  # each track in one playlist


def record(builds: Path) -> dict[str, str]:
    return json.loads((builds / ".music/outputs/car.json").read_text())["outputs"]


# --- the test ----------------------------------------------------------------------------------

def past_the_window(tree: Path) -> None:
    """Wait until a rebuild is later than the window the copy allows (FAT's even seconds and
    --modify-window=1) after the newest file of the profile, as rebuilds are in use."""
    newest = max(p.stat().st_mtime for p in tree.rglob("*") if p.is_file())
    while time.time() < newest + 3:
        time.sleep(newest + 3 - time.time())


def test_a_car_profile_copied_to_fat32_with_the_readme_command(world):
    base, fat = world
    command = readme_command()
    assert command[:2] == ["rsync", "-rt"] and "--modify-window=1" in command and "--delete" in command
    src, builds = base / "src", base / "builds"
    make_sources(src)
    build(src, builds)
    tree = builds / "car"
    source_of = record(builds)
    assert set(PLAYLISTS) <= set(source_of) and len([d for d in source_of if d.endswith(".mp3")]) == 8
    assert (tree / "Mixes/Album/Album.m3u8").read_text() == USER_M3U8  # the library's own, not written over
    # A file with an odd second (FAT keeps even ones) and part of a second: the window's case.
    odd = tree / "Artist/Live/01 Opener.mp3"
    stamp = (int(time.time()) - 100) | 1
    os.utime(odd, (stamp + 0.5, stamp + 0.5))

    mnt = fat.mount()
    (mnt / "Podcasts").mkdir()
    (mnt / "Podcasts/episode.mp3").write_bytes(b"not the profile's")
    device = mnt / "Music"
    first = rsync(command, tree, device)
    assert len([i for i in first if i.startswith(">f")]) == len(files(tree)) == 8 + 5 + 2
    check_device(tree, device, source_of)

    # Nothing changed: nothing copied.
    assert rsync(command, tree, device) == []
    stats = subprocess.run([*on(command, tree, device), "--stats", "--dry-run"],
                           capture_output=True, text=True, check=True).stdout
    assert "Number of regular files transferred: 0" in stats
    no_window = [a for a in command if a != "--modify-window=1"]
    # FAT keeps times to 2 seconds: without the window, every file of an odd second is again.
    odd_ones = {name for name in files(tree) if int((tree / name).stat().st_mtime) % 2}
    assert "Artist/Live/01 Opener.mp3" in odd_ones
    assert all((device / n).stat().st_mtime == int((tree / n).stat().st_mtime) & ~1 for n in files(tree))
    again = rsync(no_window, tree, device, "--dry-run")
    assert {i.split(" ", 1)[1] for i in again if i.startswith(">f")} == odd_ones

    # An album removed and a title re-tagged to one of the same length; built again, later than
    # two seconds after the copy: FAT keeps even seconds and the command allows one more, so a
    # file rewritten at the same size within that is the same to rsync (to any mtime-based copy).
    past_the_window(tree)
    shutil.rmtree(src / "artist/live")
    retagged, retagged_list = "Box/CD 1_ Spring/01 Song.mp3", "Box/CD 1_ Spring/CD 1_ Spring.m3u8"
    before = (tree / retagged).read_bytes()
    tag_track(str(src / "Box/CD 1: Spring/01 Song.flac"), {"TITLE": "Sung"})
    report = build(src, builds)
    assert report["retagged"] == 1 and report["encoded"] == 0 and report["removed"] == 1, report
    after = (tree / retagged).read_bytes()
    assert len(after) == len(before) and after != before  # the case --size-only misses
    source_of = record(builds)
    assert "Artist/Live/01 Closer.mp3" not in source_of and "Artist/Live/live (2).m3u8" not in source_of

    (device / "my notes.txt").write_text("put in the profile's folder by hand\n")
    size_only = [*command, "--size-only"]
    planned = rsync(size_only, tree, device, "--dry-run")
    assert "*deleting   Artist/Live/01 Closer.mp3" in planned and not [i for i in planned if i.startswith(">f")]
    changes = rsync(command, tree, device)
    assert sorted(not_folders(changes)) == sorted(
        [f">f..t...... {retagged}", f">f..t...... {retagged_list}",  # its title, in the album's playlist
         "*deleting   Artist/Live/live (2).m3u8", "*deleting   Artist/Live/01 Closer.mp3",
         "*deleting   my notes.txt"])  # within the destination folder: anything the profile lacks
    check_device(tree, device, source_of)
    assert titles(device / retagged) == ("Sung", "Sung")
    assert (mnt / "Podcasts/episode.mp3").read_bytes() == b"not the profile's"  # outside: untouched
    assert rsync(command, tree, device) == []

    # Once run, --size-only gives the old file the new time: later copies miss the re-tag too,
    # until --checksum compares the bytes.
    past_the_window(tree)
    tag_track(str(src / "Box/CD 1: Spring/01 Song.flac"), {"TITLE": "Sang"})
    build(src, builds)
    assert len((tree / retagged).read_bytes()) == len(after)
    assert sorted(not_folders(rsync(size_only, tree, device))) == [f".f..t...... {retagged}",
                                                                   f".f..t...... {retagged_list}"]
    assert rsync(command, tree, device) == []
    assert titles(device / retagged) == ("Sung", "Sung")
    assert sorted(not_folders(rsync(command, tree, device, "--checksum"))) == [f">fc........ {retagged}",
                                                                               f">fc........ {retagged_list}"]
    assert titles(device / retagged) == ("Sang", "Sang")
    check_device(tree, device, source_of)

    # What fusefat wrote, read by another FAT implementation: the same files, the same bytes.
    fat.umount()
    out = base / "mtools-copy"
    subprocess.run(["mcopy", "-s", "-n", "-i", str(fat.image), "::/Music", str(out)], check=True,
                   env=dict(os.environ, LC_ALL="C.UTF-8"), capture_output=True)
    assert files(out) == files(tree)
    listing = subprocess.run(["mdir", "-/", "-b", "-i", str(fat.image), "::/"], check=True, capture_output=True,
                             text=True, env=dict(os.environ, LC_ALL="C.UTF-8")).stdout
    assert "::/Podcasts/episode.mp3" in listing.splitlines()
