"""The tup_profile module, run in-process with real arguments."""
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.music.profiles.plugins.modules import tup_profile


@pytest.fixture(scope="module")
def module():
    return tup_profile


def run(module, capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


PHONE = {"codec": "opus", "bitrate": 96, "art_max_size": 500}


def test_writes_then_reports_unchanged(module, capsys, tmp_path):
    dest = tmp_path / "phone" / "tup.config"
    first = run(module, capsys, name="phone", profile=PHONE, dest=str(dest))
    assert first["changed"] is True
    assert dest.read_text() == first["config"]
    assert "CONFIG_BITRATE=96" in first["config"]
    again = run(module, capsys, name="phone", profile=PHONE, dest=str(dest))
    assert again["changed"] is False
    changed = run(module, capsys, name="phone", profile=dict(PHONE, bitrate=64), dest=str(dest))
    assert changed["changed"] is True and "CONFIG_BITRATE=64" in dest.read_text()


def test_check_mode_and_diff_write_nothing(module, capsys, tmp_path):
    dest = tmp_path / "tup.config"
    result = run(module, capsys, name="car", profile={"codec": "mp3"}, dest=str(dest),
                 _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True
    assert not dest.exists()
    assert result["diff"]["before"] == "" and "CONFIG_CODEC=mp3" in result["diff"]["after"]


def test_without_dest_only_renders(module, capsys):
    result = run(module, capsys, name="car", profile={"codec": "mp3", "fat32_names": True})
    assert result["changed"] is False
    assert result["profile"]["fat32_names"] is True and "CONFIG_NAMES=fat32" in result["config"]


def test_config_input_is_revalidated(module, capsys, tmp_path):
    good = run(module, capsys, name="car", profile={"codec": "mp3"})["config"]
    again = run(module, capsys, name="car", config=good, dest=str(tmp_path / "tup.config"))
    assert again["changed"] is True and again["config"] == good
    bad = run(module, capsys, name="car", config=good.replace("CONFIG_QUALITY=2", "CONFIG_QUALITY=12"))
    assert bad["failed"] is True and bad["msg"].startswith("profile 'car', field 'quality'")


def test_invalid_profile_fails_naming_profile_and_field(module, capsys, tmp_path):
    dest = tmp_path / "tup.config"
    result = run(module, capsys, name="phone", profile={"codec": "opus", "bitrate": 1000}, dest=str(dest))
    assert result["failed"] is True
    assert result["msg"] == "profile 'phone', field 'bitrate': 1000 is out of range (6-510)"
    assert not dest.exists()
