"""The file layer on local paths (gs:// is covered against the GCS emulator)."""

import os

import pytest

from squeezetime_jax import files


def test_local_paths_are_absolute_and_urls_untouched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert files.absolute("runs/a") == os.path.join(str(tmp_path), "runs", "a")
    assert files.absolute("gs://bucket/runs/a") == "gs://bucket/runs/a"
    assert files.join("gs://bucket/runs", "a", "config.json") == (
        "gs://bucket/runs/a/config.json"
    )
    assert files.is_url("gs://b/x") and not files.is_url("gs:/b/x")


def test_write_read_list_and_atomic_replace(tmp_path):
    target = tmp_path / "deep" / "dir" / "config.json"
    files.write_json(target, {"a": 1})
    assert files.read_json(target) == {"a": 1}
    files.write_json(target, {"a": 2})
    assert files.read_json(target) == {"a": 2}
    assert files.listdir(target.parent) == ["config.json"]  # no temporary left behind
    assert files.listdir(tmp_path / "missing") == []
    assert files.isdir(tmp_path / "deep") and files.isfile(target)
    with files.open_file(tmp_path / "new" / "log.txt", "a") as f:
        f.write("line\n")
    assert files.read_text(tmp_path / "new" / "log.txt") == "line\n"
    assert sorted(files.walk_files(tmp_path)) == sorted(
        [str(target), str(tmp_path / "new" / "log.txt")]
    )
    files.remove_tree(tmp_path / "deep")
    assert not files.exists(tmp_path / "deep")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        files.read_json(tmp_path / "nothing.json")
