"""The AWX execution environment definition and the dependency files it is built from.

`ansible-builder create` validates execution-environment.yml against its schema (version 3)
and writes the build context (no image is built, no registry is reached).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ee():
    return yaml.safe_load((ROOT / "execution-environment.yml").read_text())


def test_the_ee_is_schema_3_and_takes_its_dependencies_from_the_projects_files(ee):
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert deps["galaxy"] == "collections/requirements.yml"
    assert deps["python"] == "requirements.txt"
    assert deps["system"] == "bindep.txt"
    for key in ("galaxy", "python", "system"):
        assert (ROOT / deps[key]).is_file()


def test_ansible_core_matches_requirements(ee):
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert ee["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"


def test_ansible_builder_creates_the_build_context(tmp_path):
    ctx = tmp_path / "context"
    proc = subprocess.run(
        [str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", str(ctx),
         "--output-filename", "Containerfile"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = ctx / "_build"
    assert yaml.safe_load((build / "requirements.yml").read_text()) == \
        yaml.safe_load((ROOT / "collections/requirements.yml").read_text())
    assert (build / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    assert (build / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()
    containerfile = (ctx / "Containerfile").read_text()
    assert "session-manager-plugin" in containerfile
    assert "ansible-galaxy collection install" in containerfile


def test_collections_pinned_and_matching_what_setup_unpacks():
    """requirements.yml pins exact versions, the ones scripts/setup.sh takes from the wheel."""
    reqs = yaml.safe_load((ROOT / "collections/requirements.yml").read_text())["collections"]
    setup = (ROOT / "scripts/setup.sh").read_text()
    unpacked = setup.split('COLLECTIONS="', 1)[1].split('"', 1)[0].split()
    assert sorted(r["name"] for r in reqs) == sorted(c.replace("/", ".") for c in unpacked)
    for req in reqs:
        assert str(req["version"]).count(".") == 2 and not str(req["version"])[0] in "<>=~^"
        manifest = ROOT / "collections/ansible_collections" / req["name"].replace(".", "/") / "MANIFEST.json"
        if manifest.is_file():
            assert json.loads(manifest.read_text())["collection_info"]["version"] == req["version"], req["name"]


def test_bindep_resolves_on_debian_and_rpm():
    from bindep.depends import Depends

    depends = Depends((ROOT / "bindep.txt").read_text())
    dpkg = {rule[0] for rule in depends.active_rules(["platform:dpkg", "default"])}
    rpm = {rule[0] for rule in depends.active_rules(["platform:rpm", "default"])}
    assert {"openssh-client", "rsync", "git"} <= dpkg
    assert {"openssh-clients", "rsync", "git"} <= rpm
