"""Every role: meta/argument_specs.yml covers its defaults, and its README table is generated.

Fix a failure with `python scripts/role_docs.py <role>` after editing the spec (the table is
rewritten from it); a default missing from the spec or without the role prefix needs an edit.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from music_devkit import role_docs

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())


def test_the_role_checks_find_the_projects_roles():
    """The parametrised checks below are not vacuous: the role list holds the real roles."""
    assert {"worker", "server", "volume", "snapshot"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_spec_covers_the_defaults_with_the_role_prefix(role):
    assert (ROOT / "roles" / role / "meta/argument_specs.yml").is_file(), f"{role} has no meta/argument_specs.yml"
    assert role_docs.problems(ROOT / "roles" / role) == []


@pytest.mark.parametrize("role", ROLES)
def test_readme_table_is_generated_from_the_spec(role):
    readme = ROOT / "roles" / role / "README.md"
    assert readme.is_file(), f"roles/{role}/README.md is missing (python scripts/role_docs.py {role} makes one)"
    text = readme.read_text()
    assert role_docs.BEGIN in text and role_docs.END in text
    assert role_docs.updated_readme(ROOT / "roles" / role, text) == text, (
        f"roles/{role}/README.md differs from its meta/argument_specs.yml: run python scripts/role_docs.py {role}")


def test_spec_is_what_ansible_reads():
    """argument_specs.yml entry points have options Ansible can validate (types it knows)."""
    known = {"str", "int", "float", "bool", "list", "dict", "path", "raw", "jsonarg", "json", "bytes", "bits"}
    for role in ROLES:
        spec = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
        assert set(spec) == {"argument_specs"}, role
        for entry, body in spec["argument_specs"].items():
            assert body.get("short_description"), f"{role}:{entry} lacks short_description"
            for name, option in (body.get("options") or {}).items():
                assert name.startswith(role + "_"), f"{role}: option {name} lacks the role prefix"
                assert (option or {}).get("type", "str") in known, f"{role}: {name}"
                assert (option or {}).get("description"), f"{role}: {name} has no description"


# --- the generator itself, on a made-up role ------------------------------------------------

def _role(tmp_path: Path, defaults: dict, options: dict, readme: str | None) -> Path:
    role = tmp_path / "demo"
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "tasks").mkdir()
    (role / "defaults/main.yml").write_text(yaml.safe_dump(defaults))
    (role / "meta/argument_specs.yml").write_text(yaml.safe_dump(
        {"argument_specs": {"main": {"short_description": "A demo role.", "options": options}}}))
    if readme is not None:
        (role / "README.md").write_text(readme)
    return role


def test_readme_table_lists_type_default_and_description_and_check_fails_until_it_is_written(tmp_path):
    role = _role(tmp_path, {"demo_dir": "/srv", "demo_mode": "0644", "demo_list": ["a", "b"], "demo_fs": "ext4"}, {
        "demo_dir": {"type": "path", "default": "/srv", "description": "Where C(it) goes | there."},
        "demo_mode": {"type": "str", "default": "0644", "description": ["Mode,", "as a string."]},
        "demo_list": {"type": "list", "elements": "str", "default": ["a", "b"], "description": "Items."},
        "demo_id": {"type": "str", "required": True, "description": "I(Required)."},
        "demo_fs": {"type": "str", "default": "ext4", "choices": ["ext4", "xfs"], "description": "FS."},
    }, f"# demo\n\nintro\n\n## Variables\n\n{role_docs.BEGIN}\nold\n{role_docs.END}\n\nafter\n")
    text = role_docs.updated_readme(role, (role / "README.md").read_text())
    assert text.startswith("# demo\n\nintro\n\n## Variables\n\n" + role_docs.BEGIN + "\n")
    assert text.endswith(role_docs.END + "\n\nafter\n")
    assert "| `demo_dir` | path | `/srv` | Where `it` goes \\| there. |" in text
    assert '| `demo_mode` | str | `"0644"` | Mode, as a string. |' in text
    assert "| `demo_list` | list | `[a, b]` | Items. |" in text
    assert "| `demo_id` | str | required | *Required*. |" in text
    assert "| `demo_fs` | str | `ext4` | FS. One of `ext4`, `xfs`. |" in text
    assert role_docs.problems(role) == []
    assert role_docs.main(["--check", str(role)]) == 1  # README not rewritten yet
    (role / "README.md").write_text(text)
    assert role_docs.main(["--check", str(role)]) == 0


def test_a_missing_readme_is_created_and_one_without_markers_gets_the_table_appended(tmp_path):
    role = _role(tmp_path, {"demo_x": 1}, {"demo_x": {"type": "int", "default": 1, "description": "X."}}, None)
    made = role_docs.updated_readme(role, None)
    assert made.startswith("# Role `demo`\n\nA demo role.\n") and "| `demo_x` | int | `1` | X. |" in made
    appended = role_docs.updated_readme(role, "# demo\n")
    assert appended.startswith("# demo\n\n## Variables\n\n" + role_docs.BEGIN)


def test_problems_name_unprefixed_undeclared_and_mismatched_defaults(tmp_path):
    role = _role(tmp_path, {"demo_a": 1, "other_b": 2, "demo_c": "x"}, {
        "demo_a": {"type": "int", "default": 2, "description": "A."},
        "other_b": {"type": "int", "default": 2, "description": "B."},
    }, None)
    found = "\n".join(role_docs.problems(role))
    assert "other_b lacks the prefix demo_" in found
    assert "demo_c is not in meta/argument_specs.yml" in found
    assert "demo_a defaults to 1 in defaults/main.yml but to 2" in found


@pytest.mark.parametrize("value, text", [
    ("", '""'), ("plain", "plain"), ("0666", '"0666"'), ("yes", '"yes"'), ("a: b", '"a: b"'),
    ("{{ x }}", '"{{ x }}"'), (True, "true"), (None, "null"), (3, "3"),
    (["a", "1"], '[a, "1"]'), ({"k": [1]}, "{k: [1]}"), ("/dev/sdf", "/dev/sdf"),
])
def test_values_render_as_yaml_flow_that_reads_back_the_same(value, text):
    assert role_docs.flow(value) == text
    assert yaml.safe_load(text) == value


def test_entry_points_name_the_shared_variables(tmp_path):
    role = _role(tmp_path, {"demo_a": 1, "demo_b": 2}, {
        "demo_a": {"type": "int", "default": 1, "description": "A."},
        "demo_b": {"type": "int", "default": 2, "description": "B."},
    }, None)
    spec = yaml.safe_load((role / "meta/argument_specs.yml").read_text())
    spec["argument_specs"]["stop"] = {"short_description": "Stop it.", "options": {
        "demo_a": {"type": "int", "default": 1, "description": "A."},
        "demo_c": {"type": "str", "default": "x", "description": "C."}}}
    (role / "meta/argument_specs.yml").write_text(yaml.safe_dump(spec))
    block = role_docs.render(role)
    assert "Entry point `main`: A demo role." in block
    assert "Entry point `stop` (`tasks_from: stop.yml`): Stop it." in block
    assert "Takes these variables of `main`: `demo_a`, and:" in block
    assert block.count("| `demo_a` |") == 1 and "| `demo_c` | str | `x` | C. |" in block
