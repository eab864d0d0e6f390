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



AWS_MODULE = re.compile(r"^(amazon\.aws|community\.aws)\.\w+$|^music\.profiles\.ebs_snapshot_rotate$")
REGION_OPTIONS = ("region", "aws_region", "ec2_region")


def _aws_calls(node, defaults=(), where=""):
    """(where, module, arguments, module_defaults in force) of every AWS module call under node."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _aws_calls(item, defaults, f"{where}[{i}]")
    elif isinstance(node, dict):
        if isinstance(node.get("module_defaults"), dict):
            defaults = (*defaults, node["module_defaults"])
        name = node.get("name", where) if isinstance(node.get("name"), str) else where
        for key, value in node.items():
            if isinstance(key, str) and AWS_MODULE.match(key):
                yield name, key, value if isinstance(value, dict) else {}, defaults
            elif isinstance(value, (list, dict)):
                yield from _aws_calls(value, defaults, name)


def test_every_aws_call_carries_the_region():
    """AWX's AWS credential sets no region: a call that leaves it to the environment fails in
    an AWX job ("You must specify a region"). Every AWS module call in the roles and playbooks
    passes one (a role's region variable, music_aws_region), never omitted."""
    files = sorted([*(ROOT / "roles").glob("*/tasks/*.yml"), *(ROOT / "roles").glob("*/handlers/*.yml"),
                    *(ROOT / "playbooks").rglob("*.yml")])
    missing, calls = [], 0
    for path in files:
        for where, module, args, defaults in _aws_calls(_yaml(path)):
            calls += 1
            given = [args[k] for k in REGION_OPTIONS if k in args]
            given += [d[g][k] for d in defaults for g in d if g in (module, "group/amazon.aws.aws", "group/aws")
                      and isinstance(d[g], dict) for k in REGION_OPTIONS if k in d[g]]
            if not given or any("omit" in str(v) or not str(v).strip() for v in given):
                missing.append(f"{path.relative_to(ROOT)}: {where} ({module})")
    assert calls > 50, calls
    assert not missing, "AWS calls without an explicit region:\n" + "\n".join(missing)

# --- timeouts, prompts, simultaneous runs, inventory updates ----------------------------------

def _task(module: str) -> dict:
    plays = _yaml(ROOT / "playbooks/awx.yml")
    return next(t for t in plays[0]["tasks"] if f"awx.awx.{module}" in t)[f"awx.awx.{module}"]


def test_every_template_has_a_timeout_that_fits_its_work(rendered, group_vars):
    templates = _templates(rendered)
    for name, template in templates.items():
        minutes = int(template["timeout_minutes"])
        assert 0 < minutes <= 24 * 60, f"{name}: timeout {minutes} min"
    wait = group_vars["music_aws_wait_minutes"]
    # The host's own time limit (enforced on the host) strikes before AWX ends the job, so the
    # playbook's final controller step still snapshots and terminates.
    assert int(templates["compile"]["timeout_minutes"]) > group_vars["music_worker_time_limit_minutes"] + wait
    assert int(templates["sources"]["timeout_minutes"]) > group_vars["music_volmgr_time_limit_minutes"] + wait
    assert int(templates["serve"]["timeout_minutes"]) > wait
    assert "timeout_minutes | int * 60" in _task("job_template")["timeout"]


def test_compile_asks_for_check_and_diff_and_nothing_runs_twice_at_once(rendered):
    templates = _templates(rendered)
    assert templates["compile"]["ask_job_type"] is True and templates["compile"]["ask_diff_mode"] is True
    assert [n for n, t in templates.items() if t.get("ask_job_type")] == ["compile"]
    task = _task("job_template")
    assert task["ask_job_type_on_launch"].startswith("{{ item.ask_job_type")
    assert task["ask_diff_mode_on_launch"].startswith("{{ item.ask_diff_mode")
    assert task["allow_simultaneous"] is False and _task("workflow_job_template")["allow_simultaneous"] is False


def test_the_inventory_source_updates_on_every_launch():
    task = _task("inventory_source")
    assert task["update_on_launch"] is True and task["update_cache_timeout"] == 0
    assert task["overwrite"] is True and task["overwrite_vars"] is True


# --- workflows ---------------------------------------------------------------------------------

def _nodes(rendered, name):
    return {n["identifier"]: n for n in rendered["workflow_nodes"][name]}


def _edges(node, kind="success_nodes"):
    return [c["identifier"] for c in node["related"][kind]]


def test_the_pipeline_workflow_runs_sources_compile_serve_then_status(rendered):
    nodes = _nodes(rendered, "pipeline")
    assert list(nodes) == ["sources", "compile", "serve", "status"]
    assert _edges(nodes["sources"]) == ["compile"] and _edges(nodes["compile"]) == ["serve"]
    assert _edges(nodes["serve"]) == ["status"] and _edges(nodes["status"]) == []
    prefix = rendered["names"]["project"]
    for ident, node in nodes.items():
        ujt = node["unified_job_template"]
        assert ujt == {"name": f"{prefix} {ident}", "type": "job_template", "organization": {"name": "Default"}}
        # No failure or always path: a failed node fails the workflow (and notifies).
        assert _edges(node, "failure_nodes") == [] and _edges(node, "always_nodes") == []


def test_every_workflow_node_names_a_job_template_or_an_approval(rendered):
    prefix = rendered["names"]["project"]
    names = {f"{prefix} {t['name']}" for t in rendered["job_templates"]}
    for workflow, nodes in rendered["workflow_nodes"].items():
        ids = [n["identifier"] for n in nodes]
        assert len(ids) == len(set(ids)), workflow
        for node in nodes:
            ujt = node["unified_job_template"]
            assert ujt["type"] in ("job_template", "workflow_approval"), workflow
            if ujt["type"] == "job_template":
                assert ujt["name"] in names, f"{workflow}: {ujt['name']} is not a job template"
            for kind in ("success_nodes", "failure_nodes", "always_nodes"):
                assert set(_edges(node, kind)) <= set(ids), f"{workflow}: {node['identifier']} links nowhere"


def test_teardown_runs_only_after_an_approval(rendered):
    nodes = _nodes(rendered, "teardown")
    assert list(nodes) == ["approve", "teardown"]
    approval = nodes["approve"]["unified_job_template"]
    assert approval["type"] == "workflow_approval" and approval["timeout"] == 1440 * 60
    assert _edges(nodes["approve"]) == ["teardown"] and _edges(nodes["approve"], "always_nodes") == []
    teardown = next(w for w in rendered["workflows"] if w["name"] == "teardown")
    template = _templates(rendered)["teardown"]
    assert teardown["survey"] == template["survey"], "the approver sees what the teardown will delete"
    assert all(q["default"] == "false" for q in teardown["survey"]["spec"])
    # The pipeline never tears down.
    assert all(n["unified_job_template"]["name"] != "music teardown" for n in rendered["workflow_nodes"]["pipeline"])


def test_the_pipeline_has_its_own_nightly_schedule_before_rotation(rendered):
    pipeline = next(w for w in rendered["workflows"] if w["name"] == "pipeline")
    schedule = pipeline["schedule"]
    assert schedule["enabled"] is True and "FREQ=DAILY" in schedule["rrule"]
    rotate = _templates(rendered)["rotate"]["schedule"]["rrule"]
    hour = lambda rrule: int(re.search(r"DTSTART:\d{8}T(\d\d)", rrule).group(1))  # noqa: E731
    assert hour(schedule["rrule"]) < hour(rotate)
    assert [w["name"] for w in rendered["workflows"] if "schedule" in w] == ["pipeline"]
    loop = _yaml(ROOT / "playbooks/awx.yml")[0]["tasks"]
    task = next(t for t in loop if "awx.awx.schedule" in t)
    assert "music_awx_rendered.workflows" in task["loop"] and "music_awx_rendered.job_templates" in task["loop"]


# --- the failure notification ------------------------------------------------------------------

# AWX 24.6's notification backends (awx/main/notifications/*_backend.py init_parameters): the
# API refuses a configuration missing one without a default.
NOTIFICATION_FIELDS = {
    "webhook": ({"url", "headers"}, {"url", "http_method", "disable_ssl_verification", "username", "password", "headers"}),
    "email": ({"host", "port", "username", "password", "use_tls", "use_ssl", "sender", "recipients"},
              {"host", "port", "username", "password", "use_tls", "use_ssl", "sender", "recipients", "timeout"}),
}


def _render(tmp_path, *extra) -> dict:
    from music_devkit.awx_jobs import render_awx

    return render_awx(tmp_path / "awx.json", *extra)


def test_no_notification_by_default(rendered, config):
    assert config["music_awx_notify_on_failure"] is False
    assert rendered["notification"] == {} and rendered["notify_on_error"] == []


NOTIFY = {
    "webhook": ["-e", "music_awx_notification_webhook_url=https://hooks.example.org/music"],
    "email": ["-e", "music_awx_notification_type=email", "-e", "music_awx_notification_email_host=smtp.example.org",
              "-e", "music_awx_notification_email_sender=awx@example.org",
              "-e", '{"music_awx_notification_email_recipients": ["me@example.org"]}'],
}


@pytest.fixture(scope="module")
def notifying(tmp_path_factory) -> dict:
    """The objects rendered with the notification on, one rendering per kind."""
    return {kind: _render(tmp_path_factory.mktemp(kind), "-e", "music_awx_notify_on_failure=true", *extra)
            for kind, extra in NOTIFY.items()}


@pytest.mark.parametrize("kind", sorted(NOTIFY))
def test_a_failure_notification_when_asked(notifying, kind):
    rendered = notifying[kind]
    note = rendered["notification"]
    assert note["notification_type"] == kind
    required, known = NOTIFICATION_FIELDS[kind]
    conf = note["notification_configuration"]
    assert required <= set(conf) <= known, set(conf) ^ known
    assert conf["password"] == "", "no secret in the rendered objects"
    assert rendered["notify_on_error"] == [note["name"]]
    # Attached to both workflows (every job_template only when scheduled: rotate).
    assert _task("workflow_job_template")["notification_templates_error"] == "{{ music_awx_rendered.notify_on_error }}"
    assert "item.schedule is defined" in _task("job_template")["notification_templates_error"]


def test_a_notification_without_its_address_is_refused_in_one_line(tmp_path):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               AWX_TOKEN="x", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/awx.yml", "-e", "awx_url=https://127.0.0.1:9",
         "-e", "music_awx_scm_url=https://git.example.org/x.git", "-e", "music_awx_notify_on_failure=true"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "music_awx_notification_webhook_url" in proc.stdout, proc.stdout[-2000:]


# --- the awx.awx modules' own argument validation ---------------------------------------------

class _Captured(Exception):
    pass


def _argument_spec(module: str) -> dict:
    """The argument_spec the module builds in main(), captured before it connects to AWX."""
    import importlib

    mod = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{module}")

    class Capture:
        def __init__(self, argument_spec, **kwargs):
            raise _Captured(argument_spec)

    original = mod.ControllerAPIModule
    mod.ControllerAPIModule = Capture
    try:
        mod.main()
    except _Captured as captured:
        return captured.args[0]
    finally:
        mod.ControllerAPIModule = original
    raise AssertionError(f"{module}: no argument_spec captured")


def _doc_spec(options: dict) -> dict:
    """An argument spec from DOCUMENTATION options (for suboptions the module checks itself)."""
    spec = {}
    for name, doc in options.items():
        entry = {k: doc[k] for k in ("type", "choices", "required", "elements", "aliases", "default") if k in doc}
        if "suboptions" in doc:
            entry["options"] = _doc_spec(doc["suboptions"])
        spec[name] = entry
    return spec


def _validate(spec: dict, params: dict):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    result = ArgumentSpecValidator(spec).validate(params)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


@pytest.mark.skipif(not AWX_COLLECTION.is_dir(), reason="awx.awx not unpacked (make setup)")
def test_the_workflows_pass_the_modules_validation(rendered):
    spec = _argument_spec("workflow_job_template")
    source = (AWX_COLLECTION / "plugins/modules/workflow_job_template.py").read_text()
    doc = yaml.safe_load(re.search(r"DOCUMENTATION = r?'''(.*?)'''", source, re.S).group(1))
    node_spec = _doc_spec(doc["options"]["workflow_nodes"]["suboptions"])
    for workflow in rendered["workflows"]:
        params = {"name": f"music {workflow['name']}", "description": workflow["description"],
                  "organization": "Default", "survey_enabled": "survey" in workflow,
                  "survey_spec": workflow.get("survey", {}), "allow_simultaneous": False,
                  "ask_variables_on_launch": False, "workflow_nodes": rendered["workflow_nodes"][workflow["name"]],
                  "destroy_current_nodes": False, "notification_templates_error": rendered["notify_on_error"],
                  "state": "present"}
        _validate(spec, params)
        for node in params["workflow_nodes"]:
            _validate(node_spec, node)


@pytest.mark.skipif(not AWX_COLLECTION.is_dir(), reason="awx.awx not unpacked (make setup)")
def test_job_templates_schedules_and_notification_pass_the_modules_validation(rendered, notifying):
    spec = _argument_spec("job_template")
    for t in rendered["job_templates"]:
        _validate(spec, {
            "name": f"music {t['name']}", "description": t["description"], "organization": "Default",
            "job_type": "run", "project": "music", "inventory": "music", "playbook": t["playbook"],
            "credentials": ["music aws"], "extra_vars": {**rendered["common_extra_vars"], **t["extra_vars"]},
            "survey_enabled": "survey" in t, "survey_spec": t.get("survey", {}), "ask_variables_on_launch": False,
            "ask_job_type_on_launch": bool(t.get("ask_job_type", False)),
            "ask_diff_mode_on_launch": bool(t.get("ask_diff_mode", False)),
            "timeout": int(t["timeout_minutes"]) * 60, "allow_simultaneous": False,
            "notification_templates_error": rendered["notify_on_error"] if "schedule" in t else [], "state": "present"})
    spec = _argument_spec("schedule")
    for item in rendered["workflows"] + rendered["job_templates"]:
        if "schedule" in item:
            _validate(spec, {"name": f"music {item['name']} {item['schedule']['name']}",
                             "description": item["schedule"]["description"], "organization": "Default",
                             "unified_job_template": f"music {item['name']}", "rrule": item["schedule"]["rrule"],
                             "enabled": item["schedule"].get("enabled", True), "state": "present"})
    spec = _argument_spec("notification_template")
    for rendered_with in notifying.values():
        note = rendered_with["notification"]
        _validate(spec, {**note, "organization": "Default", "description": "x", "state": "present"})
    with pytest.raises(AssertionError):
        _validate(spec, {**note, "notification_type": "carrier-pigeon"})
