"""Run a job template's playbook the way AWX runs a job, without an AWX server.

AWX (24.6, the release the pinned awx.awx collection belongs to) runs a job with
ansible-runner on a private data folder it prepares (awx/main/tasks/jobs.py, RunJob):

- ``project/``: a copy of the project checkout (without .git, symlinks kept), and beside it
  ``requirements_collections/``, what the project sync installed from
  ``collections/requirements.yml``;
- ``inventory/hosts``: an executable Python script printing the inventory as AWX stores it
  (Inventory.get_script_data with host and AWX variables): the inventory variables as the
  vars of ``all``, every group with its hosts, children and vars, every host's vars plus
  ``remote_tower_id`` / ``remote_host_enabled``...;
- ``env/extravars``: the template's extra vars, the survey defaults AWX's own validation
  accepts, and AWX's ``awx_*``/``tower_*`` variables;
- ``env/cmdline``: ``-u root``, ``--check`` for a check job, ``--diff``, ``-l LIMIT``;
- ``env/settings``: the template's ``job_timeout``; ``suppress_ansible_output``;
- the environment: AWX's ``ANSIBLE_*`` settings (``ANSIBLE_INVENTORY_UNPARSED_FAILED=True``
  among them), ``JOB_ID``, ``INVENTORY_ID``, ``AWX_PRIVATE_DATA_DIR``, the collection and role
  paths AWX computes from the project's ansible.cfg, and the credential's variables (the
  "Amazon Web Services" type sets ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and, with
  a token, ``AWS_SECURITY_TOKEN`` and ``AWS_SESSION_TOKEN``).

The inventory is what an inventory update of the SCM source ``inventory/aws_ec2.yml`` would
store: ``ansible-inventory --list --export -i project/inventory/aws_ec2.yml --playbook-dir
project/inventory`` run with the source's variables as environment (RunInventoryUpdate), then
imported as AWX's inventory_import does (``all`` vars become the inventory's variables).

Differences from AWX, on purpose: no container (``process_isolation`` off, as NOTES.md says
runner works here), so paths AWX gives inside the container (``/runner/...``) are the folder's
real paths, and ``PATH`` starts with the project's virtualenv (the execution environment's
Python, ansible-core and boto3 in AWX). Reading a job: ``Job.status`` is runner's
(``successful``, ``failed``, ``timeout``...; AWX shows a timeout as failed, "Job terminated
due to timeout"); ``Job.events`` are the events AWX stores and shows in the job's output.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
AWX_VERSION = "24.6.1"
# awx/settings/defaults.py: every ANSIBLE_* setting is passed to the job's environment.
AWX_ANSIBLE_SETTINGS = {
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
    "ANSIBLE_FORCE_COLOR": "True",
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
}
# awx/main/constants.py STANDARD_INVENTORY_UPDATE_ENV
INVENTORY_UPDATE_ENV = {
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
    "ANSIBLE_INVENTORY_EXPORT": "True",
    "ANSIBLE_VERBOSE_TO_STDERR": "True",
    "ANSIBLE_HOST_PATTERN_MISMATCH": "error",
}
# settings.INV_ENV_VARIABLE_BLOCKED: source vars AWX never turns into environment variables.
INV_ENV_VARIABLE_BLOCKED = ("HOME", "USER", "_", "TERM", "PATH")
JOB_VARIABLE_PREFIXES = ("awx", "tower")


# --- the project and its collections ---------------------------------------------------------

def project_files(root: Path = ROOT) -> list[str]:
    """What a clone of the repository holds: tracked files and new files git does not ignore
    (so uncommitted work is what the test runs)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, check=True).stdout
    return sorted({p for p in out.decode().split("\0") if p})


def copy_project(dest: Path, root: Path = ROOT) -> Path:
    """project/: the checkout as AWX copies it (shutil.copytree(..., symlinks=True), no .git)."""
    for rel in project_files(root):
        src = root / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    return dest


def install_requirements_collections(dest: Path, root: Path = ROOT) -> Path:
    """requirements_collections/: the collections the project sync installs from
    collections/requirements.yml (here the copies scripts/setup.sh unpacked, linked)."""
    reqs = yaml.safe_load((root / "collections/requirements.yml").read_text())["collections"]
    for req in reqs:
        namespace, name = req["name"].split(".")
        src = root / "collections/ansible_collections" / namespace / name
        if not src.is_dir():
            raise FileNotFoundError(f"{req['name']} is not unpacked in collections/ (run make setup)")
        target = dest / "ansible_collections" / namespace / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(src)
    return dest


def _ansible_cfg_defaults(project: Path, keys: list[str]) -> dict[str, str]:
    """awx.main.utils.ansible.read_ansible_config: [defaults] keys of the project's ansible.cfg."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read([project / "ansible.cfg"])
    if "defaults" not in parser:
        return {}
    return {k: parser["defaults"][k] for k in keys if k in parser["defaults"]}


def path_env(pdd: Path, project: Path) -> dict[str, str]:
    """The role and collection paths RunJob.build_env computes (AWX 24.6)."""
    path_vars = (
        ("ANSIBLE_COLLECTIONS_PATHS", "collections_paths", "requirements_collections",
         "~/.ansible/collections:/usr/share/ansible/collections"),
        ("ANSIBLE_ROLES_PATH", "roles_path", "requirements_roles",
         "~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles"),
        ("ANSIBLE_COLLECTIONS_PATH", "collections_path", "requirements_collections",
         "~/.ansible/collections:/usr/share/ansible/collections"),
    )
    config = _ansible_cfg_defaults(project, [p[1] for p in path_vars])
    env = {}
    for key, setting, folder, default in path_vars:
        paths = default.split(":")
        if setting in config:
            for path in config[setting].split(":"):
                if path not in paths:
                    paths = [config[setting]] + paths
        env[key] = os.pathsep.join([str(pdd / folder)] + paths)
    return env


def credential_env(access_key: str, secret_key: str, token: str = "") -> dict[str, str]:
    """What AWX's "Amazon Web Services" credential type injects."""
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    if token:
        env["AWS_SECURITY_TOKEN"] = token
        env["AWS_SESSION_TOKEN"] = token
    return env


def _base_path() -> str:
    return os.pathsep.join([str(ROOT / ".venv/bin"), os.environ.get("PATH", "/usr/bin:/bin")])


# --- inventory: update (sync) and the job's script ---------------------------------------------

@dataclass
class Inventory:
    """An AWX inventory as its database holds it."""
    name: str = "music"
    pk: int = 1
    variables: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)   # name -> {"hosts": [], "children": [], "vars": {}}
    hosts: dict = field(default_factory=dict)    # name -> vars
    enabled: dict = field(default_factory=dict)  # name -> bool

    def add_host(self, name: str, variables: dict, groups: tuple[str, ...] = ()) -> None:
        """A host added by hand in AWX (Inventories > Hosts > Add)."""
        self.hosts[name] = dict(variables)
        self.enabled[name] = True
        for group in groups:
            self.groups.setdefault(group, {"hosts": [], "children": [], "vars": {}})["hosts"].append(name)

    def script_data(self) -> dict:
        """Inventory.get_script_data(hostvars=True, towervars=True)."""
        data: dict = {}
        all_group = data.setdefault("all", {})
        if self.variables:
            all_group["vars"] = dict(self.variables)
        hostnames = sorted(h for h in self.hosts if self.enabled.get(h, True))
        grouped = {h for g in self.groups.values() for h in g["hosts"] if h in hostnames}
        all_group["hosts"] = [h for h in hostnames if h not in grouped]
        names = []
        for name, group in self.groups.items():
            info: dict = {}
            hosts = [h for h in group["hosts"] if h in hostnames]
            if hosts:
                info["hosts"] = hosts
            if group["children"]:
                info["children"] = list(group["children"])
            if group["vars"]:
                info["vars"] = dict(group["vars"])
            if info:
                data[name] = info
            names.append(name)
        if names:
            all_group["children"] = names
        hostvars = data.setdefault("_meta", {}).setdefault("hostvars", {})
        for pk, host in enumerate(hostnames, start=1):
            hostvars[host] = dict(self.hosts[host])
            for prefix in ("host", "tower"):
                hostvars[host][f"remote_{prefix}_enabled"] = "true"
                hostvars[host][f"remote_{prefix}_id"] = pk
        return data


def import_inventory(inventory: Inventory, data: dict, source_hosts: set[str] | None = None) -> Inventory:
    """inventory_import with overwrite and overwrite_vars (awx/main/utils/mem_inventory.py
    dict_to_mem_data, then the overwrite of what came from the source). Groups the source no
    longer has are not kept here either: with no instance running, the source has no group
    `aws`, so its group_vars (the connection) are not in the inventory a job gets."""
    data = json.loads(json.dumps(data))
    meta = data.pop("_meta", {})
    # overwrite: hosts and groups the source no longer has go; hand-added ones stay.
    for host in list(source_hosts or ()):
        inventory.hosts.pop(host, None)
        inventory.enabled.pop(host, None)
        for group in inventory.groups.values():
            if host in group["hosts"]:
                group["hosts"].remove(host)
    new_hosts: set[str] = set()
    for name, value in data.items():
        if not isinstance(value, dict):
            continue
        hosts = value.get("hosts", [])
        hosts = list(hosts) if isinstance(hosts, (list, dict)) else []
        if name == "all":
            # inventory_import._update_inventory merges the source's "all" vars into the
            # inventory's variables (AWX 24.6, ansible/awx#11623), even with overwrite_vars.
            inventory.variables.update(value.get("vars") or {})
            for host in hosts:
                inventory.hosts.setdefault(host, {})
                new_hosts.add(host)
            continue
        if name == "ungrouped":
            for host in hosts:
                inventory.hosts.setdefault(host, {})
                new_hosts.add(host)
            continue
        group = inventory.groups.setdefault(name, {"hosts": [], "children": [], "vars": {}})
        group["vars"] = dict(value.get("vars") or {})
        for host in hosts:
            inventory.hosts.setdefault(host, {})
            new_hosts.add(host)
            if host not in group["hosts"]:
                group["hosts"].append(host)
        for child in value.get("children", []) or []:
            if child != "ungrouped" and child not in group["children"]:
                group["children"].append(child)
                inventory.groups.setdefault(child, {"hosts": [], "children": [], "vars": {}})
    for host in new_hosts:
        inventory.hosts[host] = dict((meta.get("hostvars") or {}).get(host, {}))
        inventory.enabled[host] = True   # scm sources have no enabled_var
    inventory.source_hosts = new_hosts  # type: ignore[attr-defined]
    return inventory


def inventory_update(pdd: Path, source_path: str, source_vars: dict, credential: dict[str, str],
                     extra_env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    """RunInventoryUpdate for an SCM source: ansible-inventory --list --export, as AWX runs it.

    pdd holds project/ and requirements_collections/ (the update's own private data folder).
    """
    project = pdd / "project"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "AWS_"))}
    env.update(AWX_ANSIBLE_SETTINGS)
    env.update(AWX_PRIVATE_DATA_DIR=str(pdd), INVENTORY_SOURCE_ID="1", INVENTORY_UPDATE_ID="1",
               PATH=_base_path())
    env.update(INVENTORY_UPDATE_ENV)
    for key, value in source_vars.items():
        if key not in env and key not in INV_ENV_VARIABLE_BLOCKED:
            env[key] = str(value)
    # RunInventoryUpdate: only the plural setting is read for an scm source.
    config = _ansible_cfg_defaults(project, ["collections_paths"])
    paths = "~/.ansible/collections:/usr/share/ansible/collections".split(":")
    if "collections_paths" in config:
        paths = [config["collections_paths"]] + paths
    paths = [str(pdd / "requirements_collections")] + paths + ["/usr/share/automation-controller/collections"]
    env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(paths)
    env.update(credential)
    env.update(extra_env or {})
    out = pdd / "artifacts" / "inventory_update" / "output.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    source = project / source_path
    cmd = ["ansible-inventory", "--list", "--export", "-i", str(source), "--output", str(out),
           "--playbook-dir", str(source.parent)]
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"inventory update of {source_path} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(out.read_text())


def write_inventory_script(pdd: Path, inventory: Inventory) -> Path:
    """BaseTask.write_inventory_file: inventory/hosts, an executable script."""
    path = pdd / "inventory" / "hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(inventory.script_data()))
    path.chmod(0o700)
    return path


# --- surveys -----------------------------------------------------------------------------------

def survey_element_errors(question: dict, value) -> list[str]:
    """The checks AWX applies to one answer (SurveyJobTemplateMixin._survey_element_validation)."""
    kind, var = question["type"], question["variable"]
    errors = []
    if kind in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return [f"Value {value} for '{var}' expected to be a string."]
        if question.get("min") not in ("", None) and len(value) < int(question["min"]):
            errors.append(f"'{var}' value {value} is too small")
        if question.get("max") not in ("", None) and len(value) > int(question["max"]):
            errors.append(f"'{var}' value {value} is too large")
    elif kind == "integer":
        if type(value) is not int:
            return [f"Value {value} for '{var}' expected to be an integer."]
        if question.get("min") not in ("", None) and value < int(question["min"]):
            errors.append(f"'{var}' value {value} is too small")
        if question.get("max") not in ("", None) and value > int(question["max"]):
            errors.append(f"'{var}' value {value} is too large")
    elif kind == "float":
        if type(value) not in (float, int):
            return [f"Value {value} for '{var}' expected to be a numeric type."]
    elif kind in ("multiselect", "multiplechoice"):
        choices = question["choices"]
        if isinstance(choices, str):
            choices = [c for c in choices.splitlines() if c.strip()]
        if kind == "multiselect":
            if type(value) is not list:
                return [f"'{var}' value is expected to be a list."]
            errors += [f"Value {v} for '{var}' expected to be one of {choices}." for v in value if v not in choices]
        elif value not in choices:
            errors.append(f"Value {value} for '{var}' expected to be one of {choices}.")
    return errors


def survey_defaults(survey: dict | None) -> dict:
    """The defaults AWX puts into a job launched without answers (a schedule, a workflow node,
    the API): only those its own validation accepts (_update_unified_job_kwargs)."""
    out = {}
    for question in (survey or {}).get("spec", []):
        default = question.get("default")
        if default is not None and not survey_element_errors(question, default):
            out[question["variable"]] = default
    return out


def survey_answers(survey: dict | None) -> dict:
    """What the launch form sends when the user accepts every default (the UI turns a
    multiselect default, newline-separated, into the list of its lines)."""
    out = {}
    for question in (survey or {}).get("spec", []):
        default = question.get("default")
        if default is None:
            continue
        if question["type"] == "multiselect" and isinstance(default, str):
            default = [line for line in default.splitlines() if line.strip()]
        out[question["variable"]] = default
    return out


# --- a job ---------------------------------------------------------------------------------------

@dataclass
class Job:
    template: str
    status: str
    rc: int | None
    events: list[dict]
    private_data_dir: Path
    extra_vars: dict
    seconds: float = 0.0

    @property
    def explanation(self) -> str:
        """AWX's job_explanation for a runner status other than successful/failed."""
        return f"Job terminated due to {self.status}" if self.status in ("timeout", "error") else ""

    @property
    def awx_status(self) -> str:
        """The status AWX shows (a timeout is shown as failed, with the explanation)."""
        return "failed" if self.status == "timeout" else self.status

    @property
    def stdout(self) -> str:
        return "\n".join(e.get("stdout", "") for e in self.events if e.get("stdout"))

    def of_type(self, event: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == event]

    @property
    def stats(self) -> dict:
        found = self.of_type("playbook_on_stats")
        return found[-1].get("event_data", {}) if found else {}

    def task_names(self) -> list[str]:
        """Task names as AWX's job output shows them ("role : task" for a role's task)."""
        out = []
        for e in self.of_type("playbook_on_task_start"):
            data = e["event_data"]
            out.append(data.get("name") or data.get("task", ""))
        return out

    def failed_tasks(self) -> list[str]:
        """Tasks that failed on a host and were not rescued or ignored."""
        out = []
        for e in self.of_type("runner_on_failed") + self.of_type("runner_on_unreachable"):
            data = e.get("event_data", {})
            if data.get("ignore_errors") or e.get("event_data", {}).get("res", {}).get("_ansible_no_log"):
                continue
            out.append(f"{data.get('host')}: {data.get('task')}: {str(data.get('res', {}).get('msg', ''))[:300]}")
        return out

    def changed_on(self, host: str = "localhost") -> int:
        return int((self.stats.get("changed") or {}).get(host, 0))

    def summary(self) -> str:
        tail = self.stdout[-3000:]
        return f"{self.template}: status={self.status} rc={self.rc} failed={self.failed_tasks()[:5]}\n{tail}"


def run_job(pdd: Path, template: dict, inventory: Inventory, credential: dict[str, str], *,
            job_id: int = 1, launch_type: str = "manual", answers: dict | None = None,
            job_type: str | None = None, diff_mode: bool | None = None, limit: str = "",
            extra_vars: dict | None = None, extra_env: dict | None = None,
            workflow: dict | None = None, timeout: int | None = None) -> Job:
    """One job of `template` (an entry of playbooks/awx.yml's rendered job_templates) run by
    ansible-runner in the private data folder pdd, which holds project/ and
    requirements_collections/ already (copy_project, install_requirements_collections).

    answers: the survey answers (None: launched without answers, as a schedule or a workflow
    node launches it, so only the defaults AWX accepts apply). extra_vars: runtime extra vars
    (a test's own settings go here, as a user's would at launch)."""
    import ansible_runner

    project = pdd / "project"
    (pdd / "env").mkdir(parents=True, exist_ok=True)
    (pdd / "cp").mkdir(mode=0o700, exist_ok=True)
    # Extra vars: JT extra vars -> survey defaults -> runtime (answers, extra vars) -> meta vars.
    variables = dict(template.get("extra_vars") or {})
    variables.update(survey_defaults(template.get("survey")) if template.get("survey_enabled", "survey" in template) else {})
    variables.update(answers or {})
    variables.update(extra_vars or {})
    for prefix in JOB_VARIABLE_PREFIXES:
        variables.update({
            f"{prefix}_job_id": job_id, f"{prefix}_job_launch_type": launch_type,
            f"{prefix}_inventory_id": inventory.pk, f"{prefix}_inventory_name": inventory.name,
            f"{prefix}_project_revision": "0" * 40, f"{prefix}_project_scm_branch": "main",
            f"{prefix}_job_template_id": template.get("id", 1), f"{prefix}_job_template_name": template["name"],
            f"{prefix}_execution_node": "localhost",
        })
        if workflow:
            variables.update({f"{prefix}_workflow_job_id": workflow.get("id", 1),
                              f"{prefix}_workflow_job_name": workflow["name"],
                              f"{prefix}_workflow_job_launch_type": workflow.get("launch_type", launch_type)})
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(variables))
    (pdd / "env" / "extravars").chmod(0o600)

    kind = job_type or template.get("job_type", "run")
    diff = template.get("diff_mode", False) if diff_mode is None else diff_mode
    args = []
    if kind == "check":
        args.append("--check")
    args += ["-u", "root"]
    if diff:
        args.append("--diff")
    if limit:
        args += ["-l", limit]
    (pdd / "env" / "cmdline").write_text(" ".join(_quote(a) for a in args))

    seconds = template.get("timeout", 0) if timeout is None else timeout
    (pdd / "env" / "settings").write_text(json.dumps({
        "job_timeout": int(seconds), "suppress_ansible_output": True, "suppress_output_file": True}))

    env = dict(AWX_ANSIBLE_SETTINGS)
    env.update(AWX_PRIVATE_DATA_DIR=str(pdd), JOB_ID=str(job_id), INVENTORY_ID=str(inventory.pk),
               PROJECT_REVISION="0" * 40, ANSIBLE_RETRY_FILES_ENABLED="False", MAX_EVENT_RES="700000",
               AWX_HOST="https://towerhost", ANSIBLE_SSH_CONTROL_PATH_DIR=str(pdd / "cp"), PATH=_base_path())
    env.update(path_env(pdd, project))
    env.update(credential)
    env.update(extra_env or {})
    script = write_inventory_script(pdd, inventory)

    # The controller's own environment reaches the job only through what AWX sets: drop the
    # test process's ANSIBLE_* and AWS_* (a container would not see them either).
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("ANSIBLE_", "AWS_"))}
    started = time.monotonic()
    try:
        result = ansible_runner.run(private_data_dir=str(pdd), ident=str(job_id), playbook=template["playbook"],
                                    inventory=str(script), envvars=env, suppress_env_files=True, quiet=True,
                                    process_isolation=False)
    finally:
        os.environ.update(saved)
    events = list(result.events)
    return Job(template["name"], result.status, result.rc, events, pdd, variables, time.monotonic() - started)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def render_awx(out: Path, *extra: str) -> dict:
    """playbooks/awx.yml -e music_awx_render_to=OUT: what it would send to AWX."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.pop("AWS_REGION", None)
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "playbooks/awx.yml",
                           "-e", f"music_awx_render_to={out}", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    return json.loads(out.read_text())


# --- workflows ------------------------------------------------------------------------------------

@dataclass
class WorkflowRun:
    """A workflow job as AWX's task manager runs it (awx/main/scheduler/dag_workflow.py)."""
    name: str
    status: str = "running"
    nodes: dict = field(default_factory=dict)      # identifier -> Job, or "approved"/"denied"
    not_run: list = field(default_factory=list)    # identifiers AWX marks do_not_run
    explanation: str = ""
    notified: list = field(default_factory=list)   # notification templates AWX sends on error


def run_workflow(name: str, nodes: list[dict], launch, *, approve=True,
                 notify_on_error: list[str] | None = None) -> WorkflowRun:
    """Walk a rendered workflow (playbooks/awx.yml's workflow_nodes): a node runs when a
    parent's success/failure/always edge leads to it; launch(job_template_name) runs a job
    template node and returns its Job; approve decides approval nodes (bool, or a callable
    taking the node). The workflow fails when a failed node has no failure or always path;
    then its error notifications are sent."""
    by_id = {n["identifier"]: n for n in nodes}
    children = {n["identifier"]: {kind: [c["identifier"] for c in n["related"].get(kind, [])]
                                  for kind in ("success_nodes", "failure_nodes", "always_nodes")}
                for n in nodes}
    has_parent = {c for edges in children.values() for ids in edges.values() for c in ids}
    run = WorkflowRun(name)
    queue = [i for i in by_id if i not in has_parent]
    outcome: dict[str, str] = {}
    while queue:
        ident = queue.pop(0)
        if ident in outcome:
            continue
        node = by_id[ident]
        ujt = node["unified_job_template"]
        if ujt["type"] == "workflow_approval":
            ok = approve(node) if callable(approve) else bool(approve)
            run.nodes[ident] = "approved" if ok else "denied"
            outcome[ident] = "successful" if ok else "failed"
        else:
            job = launch(ujt["name"])
            run.nodes[ident] = job
            outcome[ident] = job.awx_status
        edges = children[ident]
        follow = edges["always_nodes"] + (edges["success_nodes"] if outcome[ident] == "successful" else edges["failure_nodes"])
        queue += [c for c in follow if c not in outcome]
    run.not_run = [i for i in by_id if i not in outcome]
    failed = [i for i, status in outcome.items()
              if status in ("failed", "canceled", "error")
              and not (children[i]["failure_nodes"] or children[i]["always_nodes"])]
    run.status = "failed" if failed else "successful"
    if failed:
        run.explanation = "No error handling path for workflow job node(s) [" + ",".join(
            f"({i},{outcome[i]})" for i in failed) + "]"
        run.notified = list(notify_on_error or [])
    return run
