"""Issue 15, items 2 and 5: a subset per profile, names for devices, ID3v2.3 for the car.

One library (a Jazz album with a name no exFAT or FAT takes, an album whose GENRE has two
values, a Rock album, an audiobook folder, a folder ending in a dot with non-ASCII names, two
albums that differ only in case) built by music-build into:

- car: MP3 with `fat32_names: true` (the alias of `names: fat32`), `ascii_names`, playlists,
  only GENRE Jazz (`include: {tags: ...}`), first with ID3v2.4 (the default), then `id3: "2.3"`;
- phone: Opus with playlists and without the audiobooks (`exclude: {paths: [Audiobooks/**]}`),
  first with `names: posix` (the names every phone output had before issue 15), then with
  nothing set: the default `exfat`.

Checked as a user sees it: which tracks each profile holds and its playlists list; the names
change of the phone is a move (nothing encoded, `moved` in the report) and its tree copies
onto a real exFAT filesystem (mkfs.exfat, mounted through exfat-fuse on a loop device) name
for name and byte for byte, where the tree of the posix names cannot be copied; the switch to
ID3v2.3 re-tags the car's tracks (nothing encoded) and its tree, copied onto a real FAT32
filesystem through fusefat and read back by mtools, carries v2.3 tags as mutagen and ffprobe
read them there; a changed subset encodes only the tracks it adds and removes those it leaves
out, though they are most of the profile, without the mass-removal guard holding them back.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from music_devkit.library import synth_flac, tag_track
from musicbuild.profile import render_tup_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MUSIC_BUILD = ROOT / "roles/worker/files/music-build/music-build"
LIBRARY = {  # album folder -> [(file, GENRE values)]
    "Jazz/Kind of Blue: Live?": [("01 So What.flac", ["Jazz"]), ("02 Blue.flac", ["jazz"])],
    "Rock/Mixed": [("01 Cool.flac", ["Rock", "Jazz"])],
    "Rock/Loud": [("01 Loud.flac", ["Rock"]), ("02 Louder.flac", ["Rock"])],
    "Audiobooks/Book": [("01 Chapter.flac", ["Audiobook"])],
    "Björk/Début.": [("01 Human.flac", ["Pop"])],
    "Band/Live": [("01 Opener.flac", ["Rock"])],
    "band/live": [("01 Closer.flac", ["Rock"])],
}
CAR = {"codec": "mp3", "quality": 9, "fat32_names": True, "ascii_names": True, "playlists": True,
       "include": {"tags": {"GENRE": ["Jazz"]}}}
PHONE = {"codec": "opus", "bitrate": 32, "playlists": True, "exclude": {"paths": ["Audiobooks/**"]}}


def make_sources(src: Path) -> None:
    for a, (album, tracks) in enumerate(sorted(LIBRARY.items())):
        (src / album).mkdir(parents=True)
        for t, (name, genres) in enumerate(tracks):
            synth_flac(str(src / "new.flac"), 0.5, a * 7 + t)
            os.replace(src / "new.flac", src / album / name)
            tag_track(str(src / album / name), {"TITLE": name[3:-5], "ARTIST": ["Miles", "Band"], "GENRE": genres,
                                                "DATE": "1959-08-17", "TRACKNUMBER": str(t + 1)})


def configure(builds: Path, profiles: dict) -> None:
    for name, profile in profiles.items():
        folder = builds / ".music/tup" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tup.config").write_text(render_tup_config(name, profile))


def build(src: Path, builds: Path, profiles: dict) -> dict:
    configure(builds, profiles)
    run = subprocess.run([str(MUSIC_BUILD), "--sources", str(src), "--builds", str(builds), "--jobs", "2"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((builds / "report.json").read_text())["profiles"]
    assert all(r["failed"] == [] and "withheld" not in r for r in report.values()), report
    return report


def tree(path: Path) -> dict[str, bytes]:
    out = {}
    for top, _, names in os.walk(path):
        for name in names:
            out[os.path.relpath(os.path.join(top, name), path)] = Path(top, name).read_bytes()
    return out


def copy_tree(files: dict[str, bytes], device: Path) -> list[str]:
    """Each file written onto the device (no chmod: fusefat has none); the names refused."""
    refused = []
    for rel, data in sorted(files.items()):
        try:
            (device / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(device / rel, "wb") as fh:
                fh.write(data)
        except OSError:
            refused.append(rel)
    return refused


def playlist_entries(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [os.path.normpath(os.path.join(path.parent.name, line)) for line in lines[1:] if not line.startswith("#")]


class Mounted:
    """A filesystem image mounted through FUSE by a process of this test's own, unmounted and
    ended in cleanup (exfat-fuse on a loop device it needs as root; fusefat on the image)."""

    def __init__(self, base: Path, kind: str):
        self.kind, self.image, self.mnt = kind, base / f"{kind}.img", base / f"{kind}-mnt"
        self.proc = self.loop = None
        with open(self.image, "wb") as fh:
            fh.truncate(64 << 20)
        if kind == "exfat":
            subprocess.run(["mkfs.exfat", str(self.image)], check=True, capture_output=True)
        else:
            subprocess.run(["mformat", "-i", str(self.image), "-F", "::"], check=True, capture_output=True)
        self.mnt.mkdir()

    def mount(self) -> Path:
        if self.kind == "exfat":
            loop = subprocess.run(["losetup", "-f", "--show", str(self.image)], capture_output=True, text=True)
            if loop.returncode != 0:
                pytest.skip(f"no loop device for exfat-fuse: {loop.stderr.strip()}")
            self.loop = loop.stdout.strip()
            argv = ["mount.exfat-fuse", "-d", self.loop, str(self.mnt)]
        else:
            argv = ["fusefat", "-f", "-o", "rw+", str(self.image), str(self.mnt)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mnt):
            assert self.proc.poll() is None and time.monotonic() < deadline, f"{argv[0]} did not mount"
            time.sleep(0.02)
        return self.mnt

    def clear(self) -> None:
        for entry in os.listdir(self.mnt):
            shutil.rmtree(self.mnt / entry)

    def umount(self) -> None:
        if self.proc is not None:
            if os.path.ismount(self.mnt):
                subprocess.run(["fusermount", "-u", str(self.mnt)], capture_output=True)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], capture_output=True)
            self.loop = None


@pytest.fixture
def world(world_readable_tmp):
    for tool in ("mkfs.exfat", "mount.exfat-fuse", "fusefat", "mformat", "mdir", "losetup", "ffprobe"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool}")
    if os.geteuid() != 0:
        pytest.skip("exfat-fuse mounts a loop device, which needs root")
    base = world_readable_tmp / f"subsets-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    devices = []
    yield base, lambda kind: devices.append(Mounted(base, kind)) or devices[-1]
    for device in devices:
        device.umount()
    shutil.rmtree(base, ignore_errors=True)


def test_subsets_names_and_id3v23_on_real_devices(world):
    base, device = world
    src, builds = base / "src", base / "builds"
    make_sources(src)

    # 1. phone with the names it had before issue 15; car with ID3v2.4
    first = build(src, builds, {"car": CAR, "phone": {**PHONE, "names": "posix"}})
    car, phone = builds / "car", builds / "phone"
    assert sorted(tree(car)) == [
        "Jazz/Kind of Blue_ Live_/01 So What.mp3", "Jazz/Kind of Blue_ Live_/02 Blue.mp3",
        "Jazz/Kind of Blue_ Live_/Kind of Blue_ Live_.m3u8", "Rock/Mixed/01 Cool.mp3", "Rock/Mixed/Mixed.m3u8"]
    assert first["car"]["encoded"] == 3
    posix_tree = tree(phone)
    assert not any(p.startswith("Audiobooks") for p in posix_tree)
    assert "Jazz/Kind of Blue: Live?/01 So What.opus" in posix_tree and "Björk/Début./01 Human.opus" in posix_tree
    assert first["phone"]["encoded"] == 8
    # every playlist lists the profile's tracks only
    assert playlist_entries(car / "Rock/Mixed/Mixed.m3u8") == ["Mixed/01 Cool.mp3"]
    assert ID3(car / "Rock/Mixed/01 Cool.mp3").version == (2, 4, 0)

    exfat = device("exfat")
    mnt = exfat.mount()
    refused = copy_tree(posix_tree, mnt)
    assert "Jazz/Kind of Blue: Live?/01 So What.opus" in refused  # why the default is exfat
    exfat.clear()

    # 2. the phone's default names (exfat): a move, not an encode; the car re-tagged as ID3v2.3
    second = build(src, builds, {"car": {**CAR, "id3": "2.3"}, "phone": PHONE})
    assert (second["phone"]["encoded"], second["phone"]["retagged"]) == (0, 0)
    # So What and Blue (':' and '?'), Human ('Début.'), Closer ('band/live' is 'Band/Live' there)
    assert second["phone"]["moved"] == 4 and second["phone"]["removed"] == 0
    assert (second["car"]["encoded"], second["car"]["retagged"]) == (0, 3)
    exfat_tree = tree(phone)
    assert sorted(p for p in exfat_tree if p.endswith(".opus")) == [
        "Band/Live/01 Closer.opus", "Band/Live/01 Opener.opus", "Björk/Début/01 Human.opus",
        "Jazz/Kind of Blue_ Live_/01 So What.opus", "Jazz/Kind of Blue_ Live_/02 Blue.opus",
        "Rock/Loud/01 Loud.opus", "Rock/Loud/02 Louder.opus", "Rock/Mixed/01 Cool.opus"]
    moved_audio = {p: d for p, d in posix_tree.items() if p.endswith(".opus")}
    assert sorted(moved_audio.values()) == sorted(d for p, d in exfat_tree.items() if p.endswith(".opus"))
    assert copy_tree(exfat_tree, mnt) == []
    assert tree(mnt) == exfat_tree and sorted(os.listdir(mnt / "Band")) == ["Live"]  # case-folded into one
    assert playlist_entries(mnt / "Band/Live/live (2).m3u8") == ["Live/01 Closer.opus"]
    exfat.umount()
    check = subprocess.run(["fsck.exfat", "-n", str(exfat.image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    fat = device("fat32")
    fat_mnt = fat.mount()
    car_tree = tree(car)
    assert copy_tree(car_tree, fat_mnt) == [] and tree(fat_mnt) == car_tree
    on_device = fat_mnt / "Jazz/Kind of Blue_ Live_/01 So What.mp3"
    assert on_device.read_bytes()[:4] == b"ID3\x03" and ID3(on_device).version == (2, 3, 0)
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json",
                                       str(on_device)], capture_output=True, text=True, check=True).stdout)
    seen = {k.lower(): v for k, v in probe["format"]["tags"].items()}
    assert (seen["artist"], seen["genre"], seen["date"]) == ("Miles/Band", "Jazz", "1959-08-17")
    fat.umount()
    listing = subprocess.run(["mdir", "-/", "-b", "-i", str(fat.image), "::/"], check=True, capture_output=True,
                             text=True).stdout
    assert "::/Jazz/Kind of Blue_ Live_/01 So What.mp3" in listing

    # 3. the car's subset changes to Rock: 2 of its 3 tracks go (no guard: their sources are there)
    rock = {"car": {**CAR, "id3": "2.3", "include": {"paths": ["Rock/**"]}}, "phone": PHONE}
    configure(builds, rock)
    dry = subprocess.run([str(MUSIC_BUILD), "--sources", str(src), "--builds", str(builds), "--dry-run"],
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr  # --check says the same: removals, and no refusal
    plan = json.loads(dry.stdout)["profiles"]["car"]
    assert plan["would_remove"]["count"] == 3 and plan["withheld"] is None  # two tracks and a playlist
    third = build(src, builds, rock)
    assert (third["car"]["removed"], third["car"]["encoded"], third["car"]["unchanged"]) == (2, 2, 1)
    assert third["car"]["outside_subset"] == 6 and third["phone"]["outside_subset"] == 1
    assert sorted(tree(car)) == ["Rock/Loud/01 Loud.mp3", "Rock/Loud/02 Louder.mp3", "Rock/Loud/Loud.m3u8",
                                 "Rock/Mixed/01 Cool.mp3", "Rock/Mixed/Mixed.m3u8"]
    assert (third["phone"]["encoded"], third["phone"]["moved"], third["phone"]["removed"]) == (0, 0, 0)
