"""Generate README.md's profile reference from the codec table (plugins/module_utils/music_profile.py).

    .venv/bin/python -m music_devkit.profile_docs           # rewrite the reference in README.md
    .venv/bin/python -m music_devkit.profile_docs --check   # exit 1 when it is not current; change nothing

The reference sits between these two lines of README.md:

    <!-- BEGIN PROFILE REFERENCE (generated from the codec table: python -m music_devkit.profile_docs) -->
    <!-- END PROFILE REFERENCE -->

Both work on the repository that holds the current directory (else the one this file is
in): the table is loaded from that repository's music_profile.py by its path, so a second
checkout or a scratch copy documents its own table, whichever checkout .venv's devkit is.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = Path("plugins/module_utils/music_profile.py")
BEGIN = "<!-- BEGIN PROFILE REFERENCE (generated from the codec table: python -m music_devkit.profile_docs) -->"
END = "<!-- END PROFILE REFERENCE -->"


def load_table(root: Path | None = None):
    """The music_profile module of the repository at `root` (this one), loaded from its file."""
    path = (root or ROOT) / TABLE
    spec = importlib.util.spec_from_file_location("music_profile_for_docs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _values(spec: dict) -> str:
    if spec.get("choices"):
        return "one of " + ", ".join(str(c) for c in spec["choices"])
    lo, hi = spec["range"]
    return f"{lo}-{hi}" if lo >= 0 else f"{lo}..{hi}"


def _args(spec: dict) -> str:
    return " ".join(a.format("N") for a in spec["args"])


def _command(mp, entry: dict) -> str:
    parts = ["[settings]" if p == mp.SETTINGS else "OUT" if p == mp.OUT else p for p in entry["command"]]
    return " ".join(parts)


def render(mp) -> str:
    """The reference, markers included."""
    lines = [BEGIN, "", "| codec | files | encoder (decoded audio on stdin) | output |", "|---|---|---|---|"]
    for codec, entry in mp.CODEC_TABLE.items():
        lines.append("| " + " | ".join(_cell(c) for c in (
            f"`{codec}`", f"`.{entry['extension']}`", f"`{_command(mp, entry)}`", entry["description"])) + " |")
    lines += ["", "| field | codecs | values | default | encoder |", "|---|---|---|---|---|",
              "| `codec` | all | " + ", ".join(f"`{c}`" for c in mp.CODEC_TABLE) + " | required |  |"]
    for codec, entry in mp.CODEC_TABLE.items():
        groups = entry.get("exclusive", ())
        for name, spec in entry["settings"].items():
            others = [o for g in groups if name in g for o in g if o != name]
            values = f"{_values(spec)} {spec['doc']}"
            default = "-" if spec["default"] is None else str(spec["default"])
            if others:
                values += "; either this or " + " or ".join(f"`{o}`" for o in others)
                if spec["default"] is not None:
                    default += " (without " + " or ".join(f"`{o}`" for o in others) + ")"
            lines.append("| " + " | ".join(_cell(c) for c in (
                f"`{name}`", codec, values, default, f"`{_args(spec)}`")) + " |")
    for name, (values, default) in mp.COMMON_FIELDS_DOC.items():
        lines.append("| " + " | ".join(_cell(c) for c in (f"`{name}`", "all", values, default, "")) + " |")
    lines += ["", END]
    return "\n".join(lines)


def updated_readme(text: str, mp) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    return head + render(mp) + rest.split(END, 1)[1]


def repository(start: Path | None = None) -> Path:
    """The repository holding `start` (the current directory), else ROOT."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / TABLE).is_file() and (folder / "README.md").is_file():
            return folder
    return ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the reference is not current")
    args = parser.parse_args(argv)
    root = repository()
    readme = root / "README.md"
    old = readme.read_text(encoding="utf-8")
    new = updated_readme(old, load_table(root))
    if new == old:
        return 0
    if args.check:
        print("README.md: the profile reference differs from the codec table in "
              f"{TABLE} (run .venv/bin/python -m music_devkit.profile_docs)", file=sys.stderr)
        return 1
    readme.write_text(new, encoding="utf-8")
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
