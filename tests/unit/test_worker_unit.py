"""The music-build.service unit the worker role installs, rendered as the template module does."""
import shlex

import jinja2
import pytest
from ansible.plugins.filter.core import FilterModule


def render(repo_root, **overrides):
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(FilterModule().filters())  # Ansible's own quote, bool, ...
    source = (repo_root / "roles/worker/templates/music-build.service.j2").read_text()
    values = dict(ansible_managed="managed", worker_sources_dir="/srv/music/my sources",
                  worker_builds_dir="/srv/music/builds", worker_user="music", worker_group="music",
                  worker_jobs_effective=2, worker_build_only=[], worker_allow_mass_removal=False,
                  worker_removal_share=0.5)
    values.update(overrides)
    return env.from_string(source).render(**values)


def directives(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize("only, allow, tail", [
    ([], False, "--jobs 2 --removal-share=0.5"),
    (["phone", "car"], False, "--jobs 2 --only phone,car --removal-share=0.5"),
    ([], "yes", "--jobs 2 --allow-mass-removal"),
])
def test_exec_start_is_one_line_and_the_service_keys_survive(repo_root, only, allow, tail):
    unit = directives(render(repo_root, worker_build_only=only, worker_allow_mass_removal=allow))
    assert unit["ExecStart"] == ("/usr/local/bin/music-build --sources '/srv/music/my sources' "
                                 f"--builds /srv/music/builds {tail}")
    assert shlex.split(unit["ExecStart"])[2] == "/srv/music/my sources"
    assert unit["Type"] == "oneshot" and unit["User"] == "music" and unit["Nice"] == "10"
    assert unit["ReadWritePaths"] == "/srv/music/builds"
    assert unit["UMask"] == "0022"  # served outputs stay readable whatever the caller's umask
