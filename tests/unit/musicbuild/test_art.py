"""Cover art on its own (art.py): which picture a track gets, with its true type; corrupt
pictures falling through with a note, the same at every art_max_size; the pixel bound, checked
from the header without Pillow; art_max_size 0 embedding the checked picture's own bytes; the
prepared-art cache; and the art identity the scan puts in the index (it changes exactly when
the picture an output gets can change).

Sources are real FLACs (sox, flac) with pictures written by mutagen; pictures are made by
Pillow, and the "bomb" is a real 13000x13000 PNG (169 megapixels that compress to 0.7 MB).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from mutagen.flac import FLAC, Picture
from PIL import Image

from musicbuild import art, scan
from music_devkit.library import make_image, synth_flac

FRONT, BACK, MEDIA, ICON = 3, 4, 6, 1
BOMB_SIDE = 13000


# --- the corpus ----------------------------------------------------------------------------------

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int = BOMB_SIDE, truncated: bool = False) -> bytes:
    """A valid palette PNG of side x side pixels (one byte each once decoded), all black; or
    with `truncated`, its header and the first bytes of its pixel data only."""
    comp = zlib.compressobj(1)
    row = b"\0" * (1 + side)
    rows = side if not truncated else 64
    idat = b"".join(comp.compress(row) for _ in range(rows)) + (comp.flush(zlib.Z_SYNC_FLUSH) if truncated
                                                               else comp.flush())
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 3, 0, 0, 0))
           + _chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255])) + _chunk(b"IDAT", idat))
    return png if truncated else png + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return png_bomb()


@pytest.fixture(scope="module")
def base_flac(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "base.flac"
    synth_flac(str(path), 0.2, 1)
    return path


def picture(data: bytes, ptype: int, mime: str = "image/jpeg", desc: str = "") -> Picture:
    pic = Picture()
    pic.type, pic.mime, pic.desc, pic.data = ptype, mime, desc, data
    pic.width = pic.height = 1  # whatever a tagger wrote: art.py reads the picture's own header
    return pic


def flac_with(folder: Path, name: str, base: Path, *pictures: Picture) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    shutil.copyfile(base, path)
    audio = FLAC(path)
    for pic in pictures:
        audio.add_picture(pic)
    audio.save()
    return path


JPEG_FRONT = make_image(200, 1)
JPEG_BACK = make_image(180, 2)
PNG_COVER = make_image(160, 3, "PNG")
JPEG_COVER = make_image(220, 4)
GARBAGE = b"this is not a picture, whatever its mime type says\n" * 20
TRUNCATED_JPEG = make_image(600, 5)[:9000]
HEAD_ONLY_JPEG = make_image(600, 8)[:300]  # its header (600x600) and nothing of its pixels
TRUNCATED_PNG = make_image(600, 9, "PNG")[:-30]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- headers ----------------------------------------------------------------------------------------

def _encoded(mode: str, fmt: str, **save) -> bytes:
    img = Image.new(mode, (123, 77))
    if mode == "P":
        img.putpalette([i % 256 for i in range(3 * 40)])
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


@pytest.mark.parametrize("mode, fmt, save, depth, colors", [
    ("RGB", "JPEG", {}, 24, 0),
    ("RGB", "JPEG", {"progressive": True}, 24, 0),
    ("L", "JPEG", {}, 8, 0),
    ("CMYK", "JPEG", {}, 32, 0),
    ("RGB", "PNG", {}, 24, 0),
    ("RGBA", "PNG", {}, 32, 0),
    ("P", "PNG", {}, 8, 40),
    ("I;16", "PNG", {}, 16, 0),
    ("1", "PNG", {}, 1, 0),
])
def test_headers_read_by_hand_agree_with_pillow(mode, fmt, save, depth, colors):
    data = _encoded(mode, fmt, **save)
    hdr = art.read_header(data)
    img = Image.open(io.BytesIO(data))
    assert (hdr.fmt, hdr.width, hdr.height) == (img.format, *img.size) == (fmt, 123, 77)
    assert (hdr.mime, hdr.depth, hdr.colors) == (f"image/{fmt.lower()}", depth, colors)


def test_other_formats_header_from_pillow_without_decoding():
    hdr = art.read_header(_encoded("RGB", "WEBP"))
    assert (hdr.fmt, hdr.mime, hdr.width, hdr.height) == ("WEBP", "image/webp", 123, 77)
    assert art.read_header(GARBAGE) is None and art.read_header(b"") is None
    # A header too large for Pillow even to open (over twice its own bomb limit): over the bound.
    bmp = bytearray(_encoded("RGB", "BMP"))
    bmp[18:26] = struct.pack("<ii", 20000, 10000)
    assert art.read_header(bytes(bmp)).huge and art.examine(bytes(bmp)) == art.BIG
    with pytest.raises(art.ArtError, match="^over the 67-megapixel bound for decoding$"):
        art.prepare_art(bytes(bmp), 0)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_or_none_never_an_exception(data):
    assert art.read_header(data) is None or art.read_header(data).width > 0


@given(st.integers(min_value=0, max_value=700), st.sampled_from([JPEG_FRONT, PNG_COVER]))
def test_a_cut_picture_has_its_whole_header_or_none(cut, data):
    hdr = art.read_header(data[:cut])
    assert hdr is None or (hdr.width, hdr.height) == Image.open(io.BytesIO(data)).size


def test_the_bomb_header_is_read_without_pillow(bomb, monkeypatch):
    monkeypatch.setattr(Image, "open", _refuse)
    hdr = art.read_header(bomb)
    assert (hdr.fmt, hdr.width, hdr.height, hdr.depth, hdr.colors) == ("PNG", BOMB_SIDE, BOMB_SIDE, 8, 2)
    assert art.examine(bomb) == art.BIG


def _refuse(*args, **kwargs):
    raise AssertionError("a picture was opened by Pillow")


# --- the order ----------------------------------------------------------------------------------------

def test_cover_files_best_first_in_any_case():
    names = ["back.jpg", "cover.gif", "albumart.jpeg", "front.webp", "Folder.JPG", "cover.png", "COVER.jpg",
             "01 a.flac"]
    assert art.find_cover_files(names) == ["COVER.jpg", "cover.png", "Folder.JPG", "front.webp", "albumart.jpeg"]
    assert art.find_cover_file(names) == "COVER.jpg" and art.find_cover_file(["a.log"]) is None


def test_candidates_front_then_files_then_others_icons_last():
    embedded = [{"type": t, "n": i} for i, t in enumerate([BACK, ICON, FRONT, MEDIA, FRONT])]
    order = [(kind, item["n"] if kind == "embedded" else item) for kind, item in art.ordered(embedded, ["c", "f"])]
    assert order == [("embedded", 2), ("embedded", 4), ("file", "c"), ("file", "f"), ("embedded", 0),
                     ("embedded", 3), ("embedded", 1)]


def test_front_cover_then_cover_file_then_back_cover_with_true_types(tmp_path, base_flac):
    cover = tmp_path / "a" / "cover.png"
    both = flac_with(tmp_path / "a", "1.flac", base_flac, picture(JPEG_BACK, BACK), picture(JPEG_FRONT, FRONT))
    cover.write_bytes(PNG_COVER)
    chosen = art.load_art(str(both), str(cover), 0)
    assert (sha(chosen.data), chosen.type, chosen.mime) == (sha(JPEG_FRONT), FRONT, "image/jpeg")
    # The issue's album: a scanned back cover embedded, cover.png beside it: cover.png, as front.
    back_only = flac_with(tmp_path / "a", "2.flac", base_flac, picture(JPEG_BACK, BACK, "image/png", "Scan"))
    chosen = art.load_art(str(back_only), str(cover), 0)
    assert (sha(chosen.data), chosen.type, chosen.mime, chosen.desc) == (sha(PNG_COVER), FRONT, "image/png", "Cover")
    # Nothing else: the back cover, written as a back cover (FLAC and Ogg use flac_picture()),
    # with its own description (embedded as it is).
    notes: list[str] = []
    chosen = art.load_art(str(back_only), None, 0, notes=notes)
    pic = chosen.flac_picture()
    assert (sha(pic.data), pic.type, pic.mime, pic.desc) == (sha(JPEG_BACK), BACK, "image/jpeg", "Scan")
    assert (pic.width, pic.height, pic.depth) == (180, 180, 24) and notes == []
    assert art.load_art(str(flac_with(tmp_path / "b", "3.flac", base_flac)), None, 0) is None


@pytest.mark.parametrize("front, why", [(GARBAGE, "not a picture in a format that can be read"),
                                        (TRUNCATED_JPEG, "cannot be decoded (image file is truncated")])
def test_a_corrupt_front_cover_falls_through_to_the_cover_file_with_a_note(tmp_path, base_flac, front, why):
    path = flac_with(tmp_path, "1.flac", base_flac, picture(front, FRONT), picture(JPEG_BACK, BACK))
    cover = tmp_path / "folder.jpg"
    cover.write_bytes(JPEG_COVER)
    notes: list[str] = []
    chosen = art.load_art(str(path), str(cover), 300, notes=notes)
    assert (sha(chosen.data), chosen.type) == (sha(JPEG_COVER), FRONT)
    assert len(notes) == 1 and notes[0].startswith(f"cover art: left out the embedded front cover: {why}")
    assert notes[0].endswith("; used folder.jpg instead") and "\n" not in notes[0]
    # The cover file corrupt too: the back cover, two notes.
    cover.write_bytes(JPEG_COVER[: len(JPEG_COVER) // 3])
    notes = []
    chosen = art.load_art(str(path), str(cover), 300, notes=notes)
    assert (sha(chosen.data), chosen.type) == (sha(JPEG_BACK), BACK) and len(notes) == 2
    assert notes[1].startswith("cover art: left out folder.jpg: cannot be decoded")
    assert notes[1].endswith("; used the embedded back cover instead")
    # Nothing usable at all: no picture, and the notes say so.
    only = flac_with(tmp_path / "c", "1.flac", base_flac, picture(GARBAGE, FRONT))
    notes = []
    assert art.load_art(str(only), str(tmp_path / "gone.jpg"), 300, notes=notes) is None
    assert notes == ["cover art: left out the embedded front cover: not a picture in a format that can be read",
                     "cover art: left out gone.jpg: cannot be read (No such file or directory); no picture embedded"]


@pytest.mark.parametrize("truncated", [False, True])
def test_a_bomb_is_refused_from_its_header_at_every_size_without_pillow(tmp_path, base_flac, monkeypatch, bomb,
                                                                        truncated):
    data = png_bomb(truncated=True) if truncated else bomb
    path = flac_with(tmp_path, "1.flac", base_flac, picture(data, FRONT, "image/jpeg"))
    monkeypatch.setattr(Image, "open", _refuse)
    monkeypatch.setattr(Image.Image, "load", _refuse)
    for size in (0, 500):
        notes: list[str] = []
        assert art.load_art(str(path), None, size, str(tmp_path / "cache"), notes) is None
        assert notes == ["cover art: left out the embedded front cover: 13000x13000 pixels, over the 67-megapixel "
                         "bound for decoding; no picture embedded"], size
    assert art.examine(data) == art.BIG


@pytest.mark.parametrize("bad, why", [
    (TRUNCATED_JPEG, "cannot be decoded (image file is truncated"),
    (HEAD_ONLY_JPEG, "cannot be decoded (Truncated File Read)"),
    (TRUNCATED_PNG, "cannot be decoded (image file is truncated"),
])
@pytest.mark.parametrize("where", ["embedded", "file"])
def test_a_truncated_picture_falls_through_with_a_note_at_size_0_as_at_500(tmp_path, base_flac, bad, why, where):
    """Its header is read, so it could be embedded unread: it is checked like any other, and
    every profile gets the next candidate (the scan's examine says the same)."""
    assert art.read_header(bad) is not None and art.examine(bad) == art.BROKEN
    good = make_image(240, 10, "PNG")
    if where == "embedded":  # a truncated front cover, a good cover file
        path = flac_with(tmp_path, "1.flac", base_flac, picture(bad, FRONT))
        (tmp_path / "cover.png").write_bytes(good)
        label, used = "the embedded front cover", "cover.png"
    else:  # a truncated cover file, a good back cover
        path = flac_with(tmp_path, "1.flac", base_flac, picture(good, BACK))
        (tmp_path / "cover.png").write_bytes(bad)
        label, used = "cover.png", "the embedded back cover"
    chosen = {}
    for size in (0, 500):
        notes: list[str] = []
        got = art.load_art(str(path), str(tmp_path / "cover.png"), size, str(tmp_path / "cache"), notes)
        chosen[size] = (sha(got.data), got.type, got.mime, got.width)
        assert len(notes) == 1 and notes[0].startswith(f"cover art: left out {label}: {why}"), notes
        assert notes[0].endswith(f"; used {used} instead"), notes
    assert chosen[0] == chosen[500] == (sha(good), FRONT if where == "embedded" else BACK, "image/png", 240)


def test_size_zero_checks_a_picture_once_and_embeds_its_own_bytes(tmp_path, base_flac, monkeypatch):
    """A valid JPEG within the bound, 9000 pixels wide (no limit at size 0): decoded once to check
    it, at its smallest draft scale, for the album's two tracks; its bytes embedded unchanged."""
    wide = Image.new("RGB", (9000, 40), (10, 200, 30))
    buf = io.BytesIO()
    wide.save(buf, "JPEG", quality=80)
    data = buf.getvalue()
    tracks = [flac_with(tmp_path, f"{n}.flac", base_flac, picture(data, FRONT)) for n in (1, 2)]
    decoded = []
    real = art._decode
    monkeypatch.setattr(art, "_decode", lambda *a: (lambda im: decoded.append((a[2], im.size)) or im)(real(*a)))
    for path in tracks:
        chosen = art.load_art(str(path), None, 0, str(tmp_path / "cache"))
        assert (chosen.data, chosen.mime, chosen.width, chosen.height) == (data, "image/jpeg", 9000, 40)
    assert decoded == [(None, (1125, 5))]  # once, to check it, at 1/8 scale
    assert list((tmp_path / "cache").glob("*.img")) == []  # kept as it is: not copied into the cache


def test_an_embedded_picture_kept_as_it_is_keeps_its_description(tmp_path, base_flac):
    """Two tracks with the same front cover bytes, described "red" and "blue": each keeps its
    own (the cache is shared). A picture scaled or converted, or a cover file, is "Cover"."""
    red = flac_with(tmp_path / "r", "1.flac", base_flac, picture(JPEG_FRONT, FRONT, desc="red"))
    blue = flac_with(tmp_path / "b", "1.flac", base_flac, picture(JPEG_FRONT, FRONT, desc="blue"))
    cache = str(tmp_path / "cache")
    for size in (0, 500):
        assert [art.load_art(str(p), None, size, cache).desc for p in (red, blue)] == ["red", "blue"]
    scaled = art.load_art(str(red), None, 100, cache)
    assert (scaled.desc, scaled.width, scaled.mime) == ("Cover", 100, "image/jpeg")
    webp = flac_with(tmp_path / "w", "1.flac", base_flac, picture(_encoded("RGB", "WEBP"), FRONT, "image/webp", "w"))
    assert art.load_art(str(webp), None, 0, cache).desc == "Cover"
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "cover.jpg").write_bytes(JPEG_COVER)
    none = flac_with(tmp_path / "n", "1.flac", base_flac)
    assert art.load_art(str(none), str(tmp_path / "n" / "cover.jpg"), 0, cache).desc == "Cover"


# Peak memory as /proc/self/status's VmHWM: it belongs to the process image, so it starts
# afresh at exec (getrusage's ru_maxrss does not: it carries the forking pytest worker's peak).
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])"
MEASURE = """
import json, sys
from musicbuild import art
notes = []
results = [art.load_art(sys.argv[1], sys.argv[2], size, None, notes) for size in (500, 0)]
print(json.dumps({"sizes": [[a.width, a.height, a.mime, a.type] for a in results], "notes": notes,
                  "kib": %s}))
""" % PEAK
DECODE = """
import io, sys, warnings
from PIL import Image
warnings.simplefilter("ignore")
Image.open(io.BytesIO(open(sys.argv[1], "rb").read())).load()
print(%s)
""" % PEAK


def test_a_bomb_is_refused_and_memory_stays_small(tmp_path, base_flac, bomb):
    """The bomb (valid, 13000x13000) as the embedded front cover, cover.jpg beside it: with a
    size limit as with 0, the cover file is used (scaled, or as it is) and the bomb noted.
    Peak memory of the process doing both stays far below what decoding the bomb once costs."""
    path = flac_with(tmp_path, "1.flac", base_flac, picture(bomb, FRONT, "image/png"))
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(make_image(800, 6))
    (tmp_path / "bomb.png").write_bytes(bomb)
    run = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(cover)], capture_output=True, text=True,
                         check=True)
    out = json.loads(run.stdout)
    assert out["sizes"] == [[500, 500, "image/jpeg", FRONT], [800, 800, "image/jpeg", FRONT]]
    assert out["notes"] == ["cover art: left out the embedded front cover: 13000x13000 pixels, over the "
                            "67-megapixel bound for decoding; used cover.jpg instead"] * 2
    decoded = subprocess.run([sys.executable, "-c", DECODE, str(tmp_path / "bomb.png")], capture_output=True,
                             text=True, check=True)
    # Decoding the bomb once costs its 169 MB; choosing around it costs the interpreter's own.
    assert int(decoded.stdout) > 150_000 > 110_000 > out["kib"], (decoded.stdout, out["kib"])


def test_other_formats_become_jpeg_and_fitting_pictures_stay_as_they_are(tmp_path, base_flac):
    webp = _encoded("RGB", "WEBP")
    cover = tmp_path / "cover.webp"
    cover.write_bytes(webp)
    path = flac_with(tmp_path, "1.flac", base_flac)
    for size in (0, 500):
        chosen = art.load_art(str(path), str(cover), size)
        assert (chosen.mime, chosen.width, chosen.height) == ("image/jpeg", 123, 77)
        assert Image.open(io.BytesIO(chosen.data)).format == "JPEG"
    fits = art.prepare_art(PNG_COVER, 500)
    assert fits.data == PNG_COVER and fits.mime == "image/png"
    scaled = art.prepare_art(PNG_COVER, 100, BACK)
    assert (scaled.mime, scaled.width, scaled.height, scaled.type) == ("image/jpeg", 100, 100, BACK)
    assert Image.open(io.BytesIO(scaled.data)).size == (100, 100)


def test_the_cache_keys_on_picture_size_and_type_and_keeps_failures(tmp_path, base_flac, monkeypatch):
    cache = tmp_path / "cache"
    big = make_image(900, 7)
    as_front = flac_with(tmp_path / "a", "1.flac", base_flac, picture(big, FRONT))
    as_back = flac_with(tmp_path / "b", "1.flac", base_flac, picture(big, BACK))
    first = art.load_art(str(as_front), None, 300, str(cache))
    second = art.load_art(str(as_back), None, 300, str(cache))
    assert (first.type, second.type, second.desc) == (FRONT, BACK, "Back cover") and first.data == second.data
    assert len(list(cache.glob("*.img"))) == 2
    again = art.load_art(str(as_back), None, 300, str(cache))
    assert (again.type, again.data, again.width) == (BACK, second.data, 300)
    # A picture that does not decode is tried once per build, and noted for every track.
    broken = flac_with(tmp_path / "c", "1.flac", base_flac, picture(TRUNCATED_JPEG, FRONT))
    calls = []
    real = art._decode
    monkeypatch.setattr(art, "_decode", lambda *a: calls.append(1) or real(*a))
    for _ in range(2):
        notes: list[str] = []
        assert art.load_art(str(broken), None, 300, str(cache), notes) is None and len(notes) == 1
    assert len(calls) == 1


# --- the scan's side: the art identity in the index ----------------------------------------------

def _id(embedded, covers):
    return art.art_identity(embedded, covers)


def test_identity_keeps_the_earlier_format_for_the_common_cases():
    """An upgrade must not re-tag a library: a good front cover and a lone cover file keep
    the identity the index held before."""
    front = {"sha1": "f", "type": FRONT, "status": art.GOOD}
    cover = {"name": "cover.jpg", "sig": [10, 20], "status": art.GOOD}
    assert _id([front], []) == _id([front], [cover]) == {"embedded": "f"}
    assert _id([], [cover]) == {"file": "cover.jpg", "sig": [10, 20]}
    assert _id([], []) is None
    # What an earlier scan recorded (a digest; one [size, mtime]) keeps meaning what it meant.
    assert _id("f", [10, 20]) == {"embedded": "f"} and _id(None, [10, 20]) is None


def test_identity_lists_the_candidates_up_to_the_first_good_one():
    back = {"sha1": "b", "type": BACK, "status": art.GOOD}
    bad_front = {"sha1": "f", "type": FRONT, "status": art.BROKEN}
    cover = {"name": "cover.jpg", "sig": [10, 20], "status": art.GOOD}
    bad_cover = {"name": "cover.jpg", "sig": [10, 21], "status": art.BAD}
    assert _id([back], []) == {"embedded": "b", "type": BACK}
    assert _id([back], [cover]) == {"file": "cover.jpg", "sig": [10, 20]}
    garbage_front = dict(bad_front, status=art.BAD)
    assert _id([back, garbage_front], [cover]) == {"chain": [{"embedded": "f"}, {"file": "cover.jpg",
                                                                                   "sig": [10, 20]}]}
    assert _id([back, garbage_front], [bad_cover]) == {"chain": [{"embedded": "f"},
                                                                 {"file": "cover.jpg", "sig": [10, 21]},
                                                                 {"embedded": "b", "type": BACK}]}
    # A broken picture, or one over the bound, was embedded as it is at art_max_size 0 before the
    # check rule 2: the list says so (its tracks are re-tagged once), alone or with others.
    rule = {"check": art.CHECK_RULE}
    assert _id([back, bad_front], [cover]) == {"chain": [{"embedded": "f"}, {"file": "cover.jpg", "sig": [10, 20]}],
                                               **rule}
    assert _id([bad_front], []) == {"chain": [{"embedded": "f"}], **rule}
    assert _id([back], [dict(cover, status=art.BIG)]) == {"chain": [{"file": "cover.jpg", "sig": [10, 20]},
                                                                   {"embedded": "b", "type": BACK}], **rule}


def test_only_the_pictures_that_can_matter_are_examined(monkeypatch):
    looked = []
    monkeypatch.setattr(art, "examine", lambda data: looked.append(data) or (art.BAD if data == b"x" else art.GOOD))
    art._EXAMINED.clear()
    pics = [picture(b"back", BACK), picture(b"x", FRONT), picture(b"front", FRONT), picture(b"front2", FRONT),
            picture(b"icon", ICON), picture(b"media", MEDIA)]
    out = art.embedded_pictures(pics)
    assert [p["status"] for p in out] == [art.GOOD, art.BAD, art.GOOD, None, None, None]
    assert out[0] == {"sha1": hashlib.sha1(b"back").hexdigest(), "type": BACK, "status": art.GOOD}
    assert looked == [b"x", b"front", b"back"]
    art.embedded_pictures(pics)  # the album's next track: examined already
    assert len(looked) == 3
    art._EXAMINED.clear()


def _identities(sources: Path, old: dict) -> tuple[dict, dict]:
    result = scan.ScanResult()
    folders, entries = scan.survey(str(sources), old, result)
    assert result.failed == []
    return {rel: art.art_identity(e["embedded_art"], e.get("cover")) for rel, e in entries.items()}, entries


def test_the_identity_changes_exactly_when_the_picture_can_change(tmp_path, base_flac, monkeypatch):
    """The scan's side, as write_index puts it into each track's .tags: adding or changing
    cover.jpg changes the tracks that would use it, not those with a good front cover."""
    album = tmp_path / "src" / "Album"
    flac_with(album, "1 front.flac", base_flac, picture(JPEG_FRONT, FRONT), picture(JPEG_BACK, BACK))
    flac_with(album, "2 back.flac", base_flac, picture(JPEG_BACK, BACK))
    flac_with(album, "3 corrupt.flac", base_flac, picture(GARBAGE, FRONT))
    first, entries = _identities(tmp_path / "src", {})
    assert first["Album/1 front.flac"] == {"embedded": hashlib.sha1(JPEG_FRONT).hexdigest()}
    assert first["Album/2 back.flac"] == {"embedded": hashlib.sha1(JPEG_BACK).hexdigest(), "type": BACK}
    assert first["Album/3 corrupt.flac"] == {"embedded": hashlib.sha1(GARBAGE).hexdigest()}

    (album / "cover.jpg").write_bytes(JPEG_COVER)
    second, entries = _identities(tmp_path / "src", entries)
    sig = list(entries["Album/2 back.flac"]["cover"][0]["sig"])
    assert second["Album/1 front.flac"] == first["Album/1 front.flac"]
    assert second["Album/2 back.flac"] == {"file": "cover.jpg", "sig": sig}
    assert second["Album/3 corrupt.flac"] == {"chain": [first["Album/3 corrupt.flac"], {"file": "cover.jpg",
                                                                                         "sig": sig}]}
    # Nothing changed: nothing is read or examined again.
    monkeypatch.setattr(art, "examine", _refuse)
    third, entries = _identities(tmp_path / "src", entries)
    assert third == second
    monkeypatch.undo()

    (album / "cover.jpg").write_bytes(PNG_COVER)
    os.utime(album / "cover.jpg", ns=(1, 1))
    fourth, entries = _identities(tmp_path / "src", entries)
    assert fourth["Album/1 front.flac"] == first["Album/1 front.flac"]
    assert fourth["Album/2 back.flac"] != second["Album/2 back.flac"]
    assert fourth["Album/3 corrupt.flac"] != second["Album/3 corrupt.flac"]


def test_an_entry_from_an_earlier_scan_is_read_again_once(tmp_path, base_flac):
    album = tmp_path / "src"
    path = flac_with(album, "1.flac", base_flac, picture(JPEG_BACK, BACK))
    st = path.stat()
    _, entries = _identities(album, {})
    legacy = dict(entries["1.flac"], embedded_art=hashlib.sha1(JPEG_BACK).hexdigest(), cover=None)
    ids, entries = _identities(album, {"1.flac": legacy})
    assert ids["1.flac"] == {"embedded": hashlib.sha1(JPEG_BACK).hexdigest(), "type": BACK}
    assert entries["1.flac"]["sig"] == [st.st_size, st.st_mtime_ns]


def _id3v2(body: bytes, footer: bool) -> bytes:
    """An ID3v2.4 tag holding `body` as its frames' bytes (a footer after it when asked)."""
    size = len(body)
    syncsafe = bytes((size >> s) & 0x7F for s in (21, 14, 7, 0))
    flags = 0x10 if footer else 0
    return b"ID3\x04\x00" + bytes([flags]) + syncsafe + body + (b"3DI\x04\x00" + bytes([flags]) + syncsafe if footer else b"")


def test_the_embedded_cover_is_found_behind_stacked_id3v2_tags(base_flac, tmp_path):
    """Two ID3v2 tags in front of fLaC, the second with a footer (mutagen alone finds no
    FLAC there): the track still gets its own embedded front cover, not the folder's file."""
    src = tmp_path / "prefixed.flac"
    shutil.copy(base_flac, src)
    front = make_image(120, 7)
    pic = Picture()
    pic.type, pic.mime, pic.data = 3, "image/jpeg", front
    audio = FLAC(str(src))
    audio.add_picture(pic)
    audio.save()
    src.write_bytes(_id3v2(b"\0" * 20, False) + _id3v2(b"\0" * 30, True) + src.read_bytes())
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(make_image(80, 9))
    notes: list = []
    got = art.load_art(str(src), str(cover), 0, notes=notes)
    assert got is not None and got.data == front and got.type == 3, notes
