"""AWX as code (awx/config.yml, playbooks/awx.yml), checked without an AWX server.

The surveys are rendered by playbooks/awx.yml itself (-e music_awx_render_to=FILE), then
checked against the rules AWX's API applies to a survey spec (awx/api/views
JobTemplateSurveySpec._validate_spec_data) and against the playbooks they feed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AWX_COLLECTION = ROOT / "collections/ansible_collections/awx/awx"
COLLECTION = "music.profiles"  # this repository (galaxy.yml); playbooks name its roles by FQCN
REQUIRED_TEMPLATES = {"provision", "sources", "compile", "serve", "rotate", "status", "teardown"}
# AWX's SURVEY_TYPE_MAPPING: the Python type a question's default must have.
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str,
                "multiselect": str, "integer": int, "float": (float, int)}


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def config():
    return _yaml(ROOT / "awx/config.yml")


@pytest.fixture(scope="module")
def group_vars() -> dict:
    merged: dict = {}
    for path in sorted((ROOT / "group_vars/all").glob("*.yml")):
        merged.update(_yaml(path) or {})
    return merged


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """What playbooks/awx.yml would send to AWX, rendered by the playbook itself."""
    out = tmp_path_factory.mktemp("awx") / "awx.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.pop("AWS_REGION", None)
    bindir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bindir / "ansible-playbook"), "playbooks/awx.yml", "-e", f"music_awx_render_to={out}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def _templates(rendered):
    return {t["name"]: t for t in rendered["job_templates"]}


def _surveys(rendered):
    return [(t["name"], t["playbook"], t["survey"]) for t in rendered["job_templates"] if "survey" in t]


# --- job templates -------------------------------------------------------------------------

def test_one_job_template_per_pipeline_playbook(config):
    names = [t["name"] for t in config["music_awx_job_templates"]]
    assert len(names) == len(set(names))
    assert REQUIRED_TEMPLATES <= set(names)


def test_every_job_template_names_an_existing_playbook(config):
    for template in config["music_awx_job_templates"]:
        path = ROOT / template["playbook"]
        assert path.is_file(), f"{template['name']}: {template['playbook']} does not exist"
        assert template["playbook"].startswith("playbooks/"), "AWX lists playbooks relative to the project root"
        plays = _yaml(path)
        assert isinstance(plays, list) and plays, f"{template['playbook']} is not a playbook"


def test_aws_templates_run_in_aws_mode(rendered):
    templates = _templates(rendered)
    for name in ("compile", "serve"):
        assert templates[name]["extra_vars"]["music_target"] == "aws"


def test_rotate_is_scheduled_daily(rendered):
    schedule = _templates(rendered)["rotate"]["schedule"]
    assert "FREQ=DAILY" in schedule["rrule"] and schedule["rrule"].startswith("DTSTART:")
    assert [t["name"] for t in rendered["job_templates"] if "schedule" in t] == ["rotate"]


def test_every_extra_var_is_declared_in_group_vars(rendered, group_vars):
    keys = set(rendered["common_extra_vars"])
    for template in rendered["job_templates"]:
        keys |= set(template["extra_vars"])
    assert keys <= set(group_vars), keys - set(group_vars)


# --- surveys: AWX's own rules -------------------------------------------------------------

def test_surveys_ask_for_profiles_worker_type_spot_time_limit_and_retention(rendered):
    variables = {q["variable"] for _, _, s in _surveys(rendered) for q in s["spec"]}
    assert {"music_build_profiles", "music_worker_instance_type", "music_worker_spot",
            "music_worker_time_limit_minutes", "music_rotate_keep_daily"} <= variables


def test_surveys_are_valid_awx_specs(rendered):
    assert _surveys(rendered)
    for name, _, survey in _surveys(rendered):
        assert isinstance(survey["name"], str) and isinstance(survey["description"], str), name
        assert isinstance(survey["spec"], list) and survey["spec"], name
        seen = set()
        for q in survey["spec"]:
            where = f"{name}: {q.get('variable')}"
            for field in ("type", "question_name", "variable"):
                assert isinstance(q.get(field), str) and q[field], where
            assert isinstance(q.get("required"), bool), where
            assert re.fullmatch(r"[a-z_][a-z0-9_]*", q["variable"]), where
            assert q["variable"] not in seen, f"{where} asked twice"
            seen.add(q["variable"])
            assert q["type"] in SURVEY_TYPES, where
            if q.get("default", "") != "":
                assert isinstance(q["default"], SURVEY_TYPES[q["type"]]), f"{where}: default {q['default']!r}"
                assert not isinstance(q["default"], bool), where
            for key in ("min", "max"):
                if key in q:
                    assert isinstance(q[key], int) and not isinstance(q[key], bool), where


def test_survey_defaults_inside_choices_and_bounds(rendered):
    for name, _, survey in _surveys(rendered):
        for q in survey["spec"]:
            where = f"{name}: {q['variable']}"
            if q["type"] in ("multiplechoice", "multiselect"):
                choices = q["choices"]
                assert isinstance(choices, list) and choices, where
                assert all(isinstance(c, str) and c for c in choices), where
                assert len(choices) == len(set(choices)), where
                defaults = q["default"].splitlines()
                assert defaults, f"{where}: no default"
                assert set(defaults) <= set(choices), f"{where}: {defaults} not in {choices}"
                if q["type"] == "multiplechoice":
                    assert len(defaults) == 1, where
            if q["type"] in ("integer", "float"):
                assert q["min"] <= q["default"] <= q["max"], where
            if q["type"] in ("text", "textarea"):
                assert q.get("min", 0) <= len(q.get("default", "")) <= q.get("max", 1024), where


def test_survey_defaults_follow_group_vars(rendered, group_vars):
    """Launching with the defaults changes nothing relative to a command-line run."""
    for _, _, survey in _surveys(rendered):
        for q in survey["spec"]:
            declared = group_vars.get(q["variable"])
            if q["variable"] == "music_build_profiles":
                assert declared == [] and q["choices"] == list(group_vars["music_profiles"])
                assert q["default"].splitlines() == list(group_vars["music_profiles"])
            elif isinstance(declared, bool):
                assert q["default"] == str(declared).lower()
            elif isinstance(declared, int):
                assert q["default"] == declared
            elif declared is not None and "{{" not in str(declared):
                assert q["default"] == declared


# --- surveys: the playbooks use what they ask ---------------------------------------------

def _code_lines(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def _roles_in(text: str) -> set[str]:
    """This collection's roles a play or task file names (music.profiles.worker -> worker)."""
    names = set(re.findall(r"^\s*-?\s*role:\s*([\w.]+)", text, re.M))
    names |= set(re.findall(r"(?:include|import)_role:\s*\n\s+name:\s*([\w.]+)", text))
    names = {n.removeprefix(COLLECTION + ".") for n in names}
    return {n for n in names if "." not in n and (ROOT / "roles" / n).is_dir()}


def playbook_sources(playbook: Path, seen: set[Path] | None = None) -> set[Path]:
    """The playbook, the playbooks and task files it imports, and every file of its roles."""
    seen = set() if seen is None else seen
    if playbook in seen or not playbook.is_file():
        return seen
    seen.add(playbook)
    text = playbook.read_text()
    for ref in re.findall(r"(?:import_playbook|import_tasks|include_tasks):\s*([\w./-]+\.ya?ml)", text):
        playbook_sources((playbook.parent / ref).resolve(), seen)
    for role in _roles_in(text):
        for path in (ROOT / "roles" / role).rglob("*"):
            if path.is_file() and path.suffix in (".yml", ".yaml", ".j2") and path not in seen:
                seen.add(path)
                for nested in _roles_in(path.read_text()):
                    if nested != role:
                        playbook_sources(ROOT / "roles" / nested / "tasks" / "main.yml", seen)
    return seen


def declared_variables(group_vars: dict) -> set[str]:
    names = set(group_vars)
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in (_yaml(spec).get("argument_specs") or {}).values():
            names |= set((entry or {}).get("options") or {})
    return names


def test_every_survey_variable_is_used_by_its_playbook(rendered):
    for name, playbook, survey in _surveys(rendered):
        sources = playbook_sources((ROOT / playbook).resolve())
        text = "\n".join(_code_lines(p) for p in sources)
        for q in survey["spec"]:
            assert re.search(rf"\b{q['variable']}\b", text), (
                f"{name}: survey variable {q['variable']} is not used by {playbook} or its roles")


def test_every_survey_variable_is_declared(rendered, group_vars):
    declared = declared_variables(group_vars)
    for name, _, survey in _surveys(rendered):
        for q in survey["spec"]:
            assert q["variable"] in declared, (
                f"{name}: {q['variable']} is declared in neither group_vars/all nor a role's argument_specs")


def test_the_used_by_check_reads_role_code_and_misses_absent_names():
    """The used-by check is not vacuous: it finds role code and misses absent names."""
    text = "\n".join(_code_lines(p) for p in playbook_sources(ROOT / "playbooks/rotate.yml"))
    assert "music_rotate_keep_daily" in text and "music_no_such_variable" not in text
    compile_sources = {p.relative_to(ROOT).as_posix() for p in playbook_sources(ROOT / "playbooks/compile.yml")}
    assert "roles/worker/tasks/main.yml" in compile_sources
    assert "playbooks/aws/compile_launch.yml" in compile_sources


# --- playbooks/awx.yml against the awx.awx collection ---------------------------------------

def _module_options(module: str) -> set[str]:
    source = (AWX_COLLECTION / "plugins/modules" / f"{module}.py").read_text()
    doc = yaml.safe_load(re.search(r"DOCUMENTATION = r?'''(.*?)'''", source, re.S).group(1))
    names = set()
    for option, spec in doc["options"].items():
        names.add(option)
        names |= set(spec.get("aliases") or [])
    return names


@pytest.mark.skipif(not AWX_COLLECTION.is_dir(), reason="awx.awx not unpacked (make setup)")
def test_awx_tasks_use_real_module_options():
    plays = _yaml(ROOT / "playbooks/awx.yml")
    auth = {"controller_host", "controller_oauthtoken", "validate_certs"}
    defaults = plays[0]["module_defaults"]["group/awx.awx.controller"]
    assert set(defaults) == auth
    used = []
    for task in plays[0]["tasks"]:
        modules = [k for k in task if k.startswith("awx.awx.")]
        if not modules:
            continue
        module = modules[0].split(".")[-1]
        used.append(module)
        unknown = set(task[modules[0]]) - _module_options(module)
        assert not unknown, f"{task['name']}: awx.awx.{module} has no option {unknown}"
    assert {"project", "inventory", "inventory_source", "credential", "job_template", "schedule"} <= set(used)


def test_no_secret_in_the_repository_config():
    text = (ROOT / "awx/config.yml").read_text() + (ROOT / "playbooks/awx.yml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    plays = _yaml(ROOT / "playbooks/awx.yml")
    for task in plays[0]["tasks"]:
        if "awx.awx.credential" in task:
            assert task.get("no_log") is True
            assert "lookup" not in json.dumps(task["awx.awx.credential"]), "secrets come from awx/config.yml's env lookups"
    config = _yaml(ROOT / "awx/config.yml")
    for key in ("music_awx_aws_access_key", "music_awx_aws_secret_key", "music_awx_aws_session_token"):
        assert "lookup('ansible.builtin.env'" in config[key]


def test_inventory_source_is_the_aws_ec2_file(rendered):
    task = next(t for t in _yaml(ROOT / "playbooks/awx.yml")[0]["tasks"] if "awx.awx.inventory_source" in t)
    params = task["awx.awx.inventory_source"]
    assert params["source"] == "scm" and (ROOT / params["source_path"]).is_file()
    assert _yaml(ROOT / params["source_path"])["plugin"] == "amazon.aws.aws_ec2"
    # aws_ec2.yml reads these from the environment; AWX passes an scm source's vars as such.
    inventory_text = (ROOT / params["source_path"]).read_text()
    for var in rendered["inventory_source_vars"]:
        assert f"'{var}'" in inventory_text


def test_playbooks_name_this_collections_roles_by_fqcn():
    """AWX resolves the roles through collections/ansible_collections/music/profiles (the root)."""
    link = ROOT / "collections/ansible_collections/music/profiles"
    assert link.is_symlink() and link.resolve() == ROOT
    for playbook in sorted((ROOT / "playbooks").rglob("*.yml")):
        text = _code_lines(playbook)
        bare = set(re.findall(r"^\s*-\s*role:\s*(\w+)\s*$", text, re.M))
        bare |= set(re.findall(r"(?:include|import)_role:\s*\n\s+name:\s*(\w+)\s*$", text, re.M))
        assert not bare, f"{playbook.relative_to(ROOT)}: roles named without {COLLECTION}: {sorted(bare)}"
