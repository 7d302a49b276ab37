"""va2att.util.fileio: atomic writes of files and folders, never-overwrite mode, removal of stale temporaries."""

import pytest

from va2att.util import fileio


def test_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "report.json"
    fileio.write_json(target, {"a": 1})
    assert fileio.read_json(target) == {"a": 1}
    with pytest.raises(RuntimeError), fileio.atomic_path(target) as tmp:
        tmp.write_text("half")
        assert tmp.parent == target.parent and tmp.name.startswith(".report-") and ".tmp" in tmp.name
        raise RuntimeError("killed")
    assert fileio.read_json(target) == {"a": 1} and sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_atomic_folder_is_never_overwritten_when_asked(tmp_path):
    final = tmp_path / "7"
    with fileio.atomic_path(final, overwrite=False) as tmp:
        tmp.mkdir()
        (tmp / "saved_model.pb").write_text("one")
    with pytest.raises(FileExistsError, match="not overwriting"), fileio.atomic_path(final, overwrite=False) as tmp:
        tmp.mkdir()
        (tmp / "saved_model.pb").write_text("two")
    assert (final / "saved_model.pb").read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["7"]
    with fileio.atomic_path(final) as tmp:  # the default replaces a folder
        tmp.mkdir()
    assert not any(final.iterdir())


def test_remove_temporaries_removes_only_what_atomic_writers_leave(tmp_path):
    (tmp_path / ".shard-abc12345.tmp.tfrecord").write_text("half")
    (tmp_path / ".3-abc12345.tmp").mkdir()
    (tmp_path / "shard.tfrecord").write_text("whole")
    (tmp_path / ".progress").mkdir()
    fileio.remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".progress", "shard.tfrecord"]
