"""The worker reads its profiles from SSM (AWS mode) with music-ssm-profiles, against moto."""
import json
import subprocess
import sys

from musicbuild.profile import parse_tup_config, render_tup_config

SCRIPT = "roles/worker/files/music-build/music-ssm-profiles"


def test_reads_every_profile_config_under_the_path(aws, repo_root):
    ssm = aws.client("ssm")
    configs = {
        "phone": render_tup_config("phone", {"codec": "opus", "bitrate": 96}),
        "car": render_tup_config("car", {"codec": "mp3", "fat32_names": True}),
    }
    for name, text in configs.items():
        ssm.put_parameter(Name=f"/music/profiles/{name}/config", Value=text, Type="String")
    ssm.put_parameter(Name="/music/profiles/car/notes", Value="ignored", Type="String")
    ssm.put_parameter(Name="/other/profiles/x/config", Value="ignored", Type="String")
    run = subprocess.run([sys.executable, SCRIPT, "/music/profiles", "eu-west-1"], cwd=repo_root,
                         env=aws.env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got == configs
    assert parse_tup_config(got["car"], "car")[1]["fat32_names"] is True


def test_no_profiles_is_an_error_naming_the_path(aws, repo_root):
    run = subprocess.run([sys.executable, SCRIPT, "/music/profiles", "eu-west-1"], cwd=repo_root,
                         env=aws.env(), capture_output=True, text=True)
    assert run.returncode == 1
    assert "no <name>/config parameters under /music/profiles" in run.stderr
