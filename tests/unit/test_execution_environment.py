"""The AWX execution environment: execution-environment.yml and the files it is built from.

It pins what it installs (ansible-core once, the session-manager plugin by version, the
collections and boto3 at the versions `make setup` installs) and carries only what the jobs
use. `ansible-builder create` validates the definition against its schema (version 3) and
writes the build context; the base image is on a registry unreachable here, so no image is
built (docs/awx.md says how).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What the jobs run: every playbook but playbooks/awx.yml (which configures AWX from outside),
# the roles and plugins they use, the inventory and the group variables (the connection).
JOB_CONTENT = ["playbooks", "roles", "plugins", "inventory/aws_ec2.yml", "group_vars"]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


@pytest.fixture(scope="module")
def ee():
    return yaml.safe_load((ROOT / "execution-environment.yml").read_text())


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    ctx = tmp_path_factory.mktemp("ee") / "context"
    proc = subprocess.run(
        [str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", str(ctx),
         "--output-filename", "Containerfile"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ctx


def collections_used_by_jobs() -> set[str]:
    known = {c["name"] for c in yaml.safe_load((ROOT / "collections/requirements.yml").read_text())["collections"]}
    used = set()
    for entry in JOB_CONTENT:
        path = ROOT / entry
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            if file.name == "awx.yml" or file.suffix not in (".yml", ".yaml", ".py", ".j2"):
                continue
            for namespace, name in re.findall(r"\b([a-z_]+)\.([a-z_]+)\.[a-z_]+", file.read_text()):
                if f"{namespace}.{name}" in known:
                    used.add(f"{namespace}.{name}")
    return used


def test_the_ee_is_schema_3_and_its_files_exist(ee):
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert deps["galaxy"] == "awx/ee/requirements.yml"
    assert deps["python"] == "awx/ee/requirements.txt"
    assert deps["system"] == "bindep.txt"
    for key in ("galaxy", "python", "system"):
        assert (ROOT / deps[key]).is_file()


def test_ansible_core_is_installed_once_at_the_version_make_setup_installs(ee, context):
    pins = _pins(ROOT / "requirements.txt")
    assert ee["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"
    assert "ansible-core" not in _pins(ROOT / ee["dependencies"]["python"])
    containerfile = (context / "Containerfile").read_text()
    installs = re.findall(r"ansible-core==[\d.]+", containerfile + (context / "_build/requirements.txt").read_text())
    assert installs == [f"ansible-core=={pins['ansible-core']}"], installs


def test_python_packages_pinned_as_make_setup_installs_them(ee):
    ee_pins = _pins(ROOT / ee["dependencies"]["python"])
    setup_pins = _pins(ROOT / "requirements.txt")
    assert ee_pins and set(ee_pins) == set(setup_pins) - {"ansible-core"}
    for name, version in ee_pins.items():
        assert setup_pins[name] == version, name


def test_the_ee_carries_exactly_the_collections_the_jobs_use(ee):
    reqs = yaml.safe_load((ROOT / ee["dependencies"]["galaxy"]).read_text())["collections"]
    names = [r["name"] for r in reqs]
    used = collections_used_by_jobs()
    assert {"amazon.aws", "community.aws"} <= used, used  # the scan finds what it must
    assert sorted(names) == sorted(used), f"unused: {set(names) - used}, missing: {used - set(names)}"
    setup = {r["name"]: r["version"] for r in
             yaml.safe_load((ROOT / "collections/requirements.yml").read_text())["collections"]}
    for req in reqs:
        assert req["version"] == setup[req["name"]], req["name"]


def test_the_session_manager_plugin_is_pinned_and_checked(ee, context):
    steps = "\n".join(ee["additional_build_steps"]["append_final"])
    version = re.search(r"ARG SESSION_MANAGER_PLUGIN_VERSION=(\d+\.\d+\.\d+\.\d+)$", steps, re.M)
    assert version, steps
    assert "latest" not in steps
    assert "plugin/${SESSION_MANAGER_PLUGIN_VERSION}/linux_${ARCH}/session-manager-plugin.rpm" in steps
    assert 'test "$(session-manager-plugin --version)" = "${SESSION_MANAGER_PLUGIN_VERSION}"' in steps
    containerfile = (context / "Containerfile").read_text()
    assert f"ARG SESSION_MANAGER_PLUGIN_VERSION={version.group(1)}" in containerfile


def test_ansible_builder_writes_the_build_context_from_the_ees_files(ee, context):
    build = context / "_build"
    assert yaml.safe_load((build / "requirements.yml").read_text()) == \
        yaml.safe_load((ROOT / ee["dependencies"]["galaxy"]).read_text())
    assert (build / "requirements.txt").read_text() == (ROOT / ee["dependencies"]["python"]).read_text()
    assert (build / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile
    assert f'ARG EE_BASE_IMAGE="{ee["images"]["base_image"]["name"]}"' in containerfile


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
    assert dpkg == {"openssh-client"} and rpm == {"openssh-clients"}


def test_the_tools_that_run_and_check_the_jobs_are_pinned():
    """ansible-runner (what AWX runs jobs with), ansible-builder, ansible-navigator."""
    dev = _pins(ROOT / "requirements-dev.txt")
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["dependencies"]["ansible_runner"]["package_pip"] == f"ansible-runner=={dev['ansible-runner']}"
    assert {"ansible-builder", "ansible-navigator"} <= set(dev)


# --- ansible-navigator.yml --------------------------------------------------------------------

def _navigator(tmp_path, config: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, ANSIBLE_NAVIGATOR_CONFIG=str(config), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               PATH=f"{BIN}:{os.environ['PATH']}", HOME=str(tmp_path))
    return subprocess.run([str(BIN / "ansible-navigator"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_navigator_runs_the_playbooks_in_the_projects_ee(ee):
    nav = yaml.safe_load((ROOT / "ansible-navigator.yml").read_text())["ansible-navigator"]
    env = nav["execution-environment"]
    assert env["enabled"] is True and env["image"] in ee["options"]["tags"]
    assert env["pull"]["policy"] == "never", "the image is built locally, not pulled"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"} <= set(env["environment-variables"]["pass"])


def test_navigator_accepts_the_settings_and_runs_a_playbook(tmp_path):
    """The image cannot be built here: --ee false runs the same settings with the .venv."""
    out = tmp_path / "awx.json"
    proc = _navigator(tmp_path, ROOT / "ansible-navigator.yml", "run", "playbooks/awx.yml", "--ee", "false",
                      "--pae", "false", "--lf", str(tmp_path / "navigator.log"), "-e", f"music_awx_render_to={out}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "PLAY RECAP" in proc.stdout  # mode stdout, from the settings file
    assert json.loads(out.read_text())["job_templates"]
    # A misspelt setting is refused: the file above was really read and checked.
    bad = tmp_path / "ansible-navigator.yml"
    bad.write_text((ROOT / "ansible-navigator.yml").read_text().replace("container-engine:", "container-engin:"))
    # (navigator then logs to ./ansible-navigator.log, whatever --lf says: run it elsewhere)
    proc = _navigator(tmp_path, bad, "run", str(ROOT / "playbooks/awx.yml"), "--ee", "false", cwd=tmp_path)
    assert proc.returncode != 0 and "container-engin" in proc.stdout + proc.stderr
