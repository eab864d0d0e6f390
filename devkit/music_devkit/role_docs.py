#!/usr/bin/env python3
"""Generate each role's README variable table from its meta/argument_specs.yml.

    python scripts/role_docs.py              # rewrite every role's table
    python scripts/role_docs.py worker       # only these roles
    python scripts/role_docs.py --check      # exit 1 and say what differs; change nothing

The table sits between these two lines of roles/<role>/README.md:

    <!-- BEGIN VARIABLES (generated from meta/argument_specs.yml) -->
    <!-- END VARIABLES -->

A README without them gets a "## Variables" section appended; a role without a README gets
one made from the spec's short_description and description. Besides the table, --check
reports what the spec must cover (tests/unit/test_role_docs.py runs the same checks):
every variable of defaults/main.yml has the role's name as prefix and is an option of the
spec, and a default the spec gives is the one defaults/main.yml has.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- BEGIN VARIABLES (generated from meta/argument_specs.yml) -->"
END = "<!-- END VARIABLES -->"
_MARKUP = re.compile(r"\b([CIBMOVURL])\(([^()]*)\)")
_FLOW_UNSAFE = re.compile(r"[,\[\]{}#&*!|>'\"%@`]|: | #|^[-?:]\s|^\s|\s$")


def _markup(text: str) -> str:
    """Ansible doc markup to Markdown: C(x), O(x), V(x), M(x) -> `x`; I(x) -> *x*; B(x) -> **x**."""
    def sub(m: re.Match) -> str:
        kind, body = m.groups()
        if kind == "I":
            return f"*{body}*"
        if kind == "B":
            return f"**{body}**"
        if kind in ("U", "L"):
            return body.split(",")[-1].strip() if kind == "L" else body
        return f"`{body}`"
    return _MARKUP.sub(sub, text)


def _description(option: dict) -> str:
    desc = option.get("description", "")
    if isinstance(desc, list):
        desc = " ".join(str(d) for d in desc)
    text = " ".join(_markup(str(desc)).split())
    if option.get("choices"):
        text += " One of " + ", ".join(f"`{flow(c)}`" for c in option["choices"]) + "."
    return text


def flow(value) -> str:
    """A default as short YAML flow text, quoted only when plain text would read differently."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        try:
            plain = value != "" and not _FLOW_UNSAFE.search(value) and yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default_cell(name: str, option: dict) -> str:
    if option.get("required"):
        return "required"
    if "default" not in option:
        return "-"
    text = flow(option["default"])
    return "`" + text + "`" if "`" not in text else text


def table(options: dict) -> list[str]:
    lines = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in (options or {}).items():
        option = option or {}
        kind = option.get("type", "str")
        lines.append("| " + " | ".join(_cell(c) for c in (
            f"`{name}`", kind, _default_cell(name, option), _description(option))) + " |")
    return lines


def load_spec(role: Path) -> dict:
    path = role / "meta" / "argument_specs.yml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data.get("argument_specs") or {}


def render(role: Path) -> str:
    """The text between the markers, markers included."""
    spec = load_spec(role)
    lines = [BEGIN]
    entries = sorted(spec, key=lambda e: (e != "main", e))
    main_options = ((spec.get("main") or {}).get("options") or {})
    for entry in entries:
        options = (spec[entry] or {}).get("options") or {}
        if len(entries) > 1 or entry != "main":
            lines += ["", f"Entry point `{entry}`" + (f" (`tasks_from: {entry}.yml`)" if entry != "main" else "")
                      + ": " + _markup(str((spec[entry] or {}).get("short_description", ""))).rstrip(". ") + ".", ""]
        if entry != "main":
            # Options documented identically under main are named, not repeated.
            shared = [n for n in options if n in main_options and main_options[n] == options[n]]
            options = {n: o for n, o in options.items() if n not in shared}
            if len(shared) == len(main_options) and shared:
                lines.append("Takes the variables of `main`" + (", and:" if options else "."))
            elif shared:
                lines.append("Takes these variables of `main`: " + ", ".join(f"`{n}`" for n in shared)
                             + (", and:" if options else "."))
            if shared and not options:
                continue
            if shared:
                lines.append("")
        lines += table(options) if options else ["No variables."]
    if len(entries) > 1:
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def updated_readme(role: Path, text: str | None) -> str:
    block = render(role)
    if text is None:
        spec = load_spec(role).get("main") or {}
        desc = spec.get("description") or []
        desc = [desc] if isinstance(desc, str) else desc
        parts = [f"# Role `{role.name}`", "", _markup(str(spec.get("short_description", ""))).rstrip(".") + "."]
        parts += ["", " ".join(_markup(str(d)) for d in desc)] if desc else []
        return "\n".join(parts + ["", "## Variables", "", block, ""])
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        return head + block + tail
    return text.rstrip("\n") + "\n\n## Variables\n\n" + block + "\n"


def problems(role: Path) -> list[str]:
    """What the spec lacks: prefixes, defaults missing from it, defaults that differ."""
    found = []
    defaults_file = role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.is_file() else {}
    spec = load_spec(role)
    if not spec:
        found.append(f"{role.name}: no meta/argument_specs.yml")
    options: dict = {}
    for entry in spec.values():
        options.update((entry or {}).get("options") or {})
    for name, value in defaults.items():
        if not name.startswith(role.name + "_"):
            found.append(f"{role.name}: default {name} lacks the prefix {role.name}_")
        if spec and name not in options:
            found.append(f"{role.name}: default {name} is not in meta/argument_specs.yml")
        elif spec and "default" in (options[name] or {}) and options[name]["default"] != value:
            found.append(f"{role.name}: {name} defaults to {flow(value)} in defaults/main.yml but to "
                         f"{flow((options[name] or {}).get('default'))} in meta/argument_specs.yml")
    return found


def roles(names: list[str]) -> list[Path]:
    base = ROOT / "roles"
    if names:
        return [base / n for n in names]
    return sorted(p for p in base.iterdir() if (p / "tasks").is_dir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roles", nargs="*", help="role names (default: every role)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when anything differs")
    args = parser.parse_args(argv)
    failed = False
    for role in roles(args.roles):
        for problem in problems(role):
            print(problem, file=sys.stderr)
            failed = True
        readme = role / "README.md"
        old = readme.read_text() if readme.is_file() else None
        new = updated_readme(role, old)
        if new == old:
            continue
        if args.check:
            print(f"{role.name}: README.md variable table differs from meta/argument_specs.yml "
                  f"(run python scripts/role_docs.py {role.name})", file=sys.stderr)
            failed = True
        else:
            readme.write_text(new)
            print(f"wrote {readme.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
