"""README.md's profile reference is generated from the codec table (music_devkit.profile_docs)."""
import shutil

from music_devkit import profile_docs


def test_readme_reference_is_current(repo_root):
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    assert profile_docs.BEGIN in text and profile_docs.END in text
    assert profile_docs.updated_readme(text, profile_docs.load_table(repo_root)) == text, \
        "README.md's profile reference is stale: run .venv/bin/python -m music_devkit.profile_docs"


def test_reference_has_a_row_per_codec_and_setting(repo_root):
    table = profile_docs.load_table(repo_root)
    rows = profile_docs.render(table).splitlines()
    for codec, entry in table.CODEC_TABLE.items():
        assert any(r.startswith(f"| `{codec}` | `.{entry['extension']}` |") for r in rows)
        for name, spec in entry["settings"].items():
            args = " ".join(a.format("N") for a in spec["args"])
            assert any(r.startswith(f"| `{name}` | {codec} | ") and r.endswith(f"| `{args}` |") for r in rows), (codec, name)
    for name in table.COMMON_FIELDS:
        assert any(r.startswith(f"| `{name}` | all | ") for r in rows)


def test_check_refuses_a_stale_reference_and_the_command_fixes_it(repo_root, tmp_path, monkeypatch, capsys):
    """On a copy whose table changed: --check fails, the command rewrites the reference from that copy's table."""
    table = tmp_path / profile_docs.TABLE
    table.parent.mkdir(parents=True)
    text = (repo_root / profile_docs.TABLE).read_text(encoding="utf-8")
    assert text.count('"range": (6, 510)') == 1
    table.write_text(text.replace('"range": (6, 510)', '"range": (6, 512)'), encoding="utf-8")
    readme = tmp_path / "README.md"
    shutil.copy(repo_root / "README.md", readme)
    monkeypatch.chdir(tmp_path)  # the repository of the current directory
    assert profile_docs.repository() == tmp_path
    assert profile_docs.main(["--check"]) == 1
    assert "profile reference differs" in capsys.readouterr().err
    assert profile_docs.main([]) == 0
    assert "| `bitrate` | opus | 6-512 kb/s" in readme.read_text(encoding="utf-8")
    assert profile_docs.main(["--check"]) == 0
