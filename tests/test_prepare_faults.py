"""Preparation under dirt and storage faults: bad lines are counted, storage errors stop cleanly and resume."""

import errno
import shutil

import pytest

from va2att.cli import prepare as prepare_cli
from va2att.data import preparation as prep
from va2att.data.affectnet import IMAGES_DIR, LISTS_DIR
from va2att.data.synthetic import affectnet as synthetic

TRAIN, VAL, SHARD = 8, 4, 4


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("raw") / "affectnet", train=TRAIN, val=VAL, seed=3, workers=1)


@pytest.fixture(scope="module")
def reference(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "ref"
    return out, prep.prepare(root, out, workers=1, shard_size=SHARD, progress=False)


def strip(report):
    return {k: v for k, v in report.items() if k not in ("seconds", "root")}


@pytest.fixture
def dirty(root, tmp_path):
    """A copy of `root` whose training list has bad lines and files listed outside the images folder."""
    raw = tmp_path / "dirty"
    shutil.copytree(root, raw)
    csv_path = raw / LISTS_DIR / "training.csv"
    lines = csv_path.read_bytes().splitlines(keepends=True)
    good = lines[1].decode()
    path, rest = good.split(",", 1)
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(raw / IMAGES_DIR / path, outside)
    (raw / IMAGES_DIR / "link.jpg").symlink_to(outside)
    (raw / IMAGES_DIR / "loop.jpg").symlink_to("loop.jpg")  # a link to itself: resolving it never ends
    bad = [
        f'"{path},{rest}'.encode(),  # unbalanced quote
        f"caf\xe9/{path},{rest}".encode("latin-1"),  # a latin-1 byte in the path
        b"\x00\x9f\x92\x96\xff binary\n",  # binary junk
        f"../{path},{rest}".encode(),
        f"{raw / IMAGES_DIR / path},{rest}".encode(),  # absolute
        f"link.jpg,{rest}".encode(),  # a symbolic link leading out of the images folder
        f"loop.jpg,{rest}".encode(),  # a symbolic link loop
    ]
    csv_path.write_bytes(b"".join(lines[:3] + bad + lines[3:]))
    return raw


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_lines_are_skipped_and_counted_by_reason(dirty, reference, tmp_path, workers):
    report = prep.prepare(dirty, tmp_path / "out", workers=workers, shard_size=SHARD, progress=False)
    skipped = report["splits"]["training"]["skipped"]
    assert skipped["malformed_row"] == 1
    assert skipped["bad_encoding"] == 2
    assert skipped["outside_root"] == 3
    assert skipped["symlink_loop"] == 1  # one bad row costs that row, in a worker process too
    assert report["splits"]["training"]["written"] == reference[1]["splits"]["training"]["written"]
    assert report["splits"]["training"]["csv_rows"] == reference[1]["splits"]["training"]["csv_rows"] + 7


def test_links_are_followed_when_allowed(dirty, reference, tmp_path):
    linked = prep.prepare(dirty, tmp_path / "linked", workers=1, shard_size=SHARD, progress=False, allow_symlinks=True)
    skipped = linked["splits"]["training"]["skipped"]
    assert skipped["outside_root"] == 2  # the link is followed; `..` and absolute not
    assert "symlink_loop" not in skipped and skipped["unreadable"] == 1  # the loop cannot be read: that row only
    assert linked["splits"]["training"]["written"] == reference[1]["splits"]["training"]["written"] + 1


def test_a_binary_list_is_one_clear_error(root, tmp_path, capsys):
    raw = tmp_path / "binary"
    shutil.copytree(root, raw)
    (raw / LISTS_DIR / "validation.csv").write_bytes(bytes(range(128, 256)) * 50)
    assert prepare_cli.main([str(raw), str(tmp_path / "out"), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "validation.csv has no readable CSV row" in err


@pytest.mark.parametrize("fault", ["enospc", "tf_resource_exhausted", "erofs"])
def test_storage_errors_stop_with_one_line_and_the_next_run_resumes(root, reference, tmp_path, monkeypatch, fault):
    import tensorflow as tf

    errors = {"enospc": OSError(errno.ENOSPC, "No space left on device"),
              "tf_resource_exhausted": tf.errors.ResourceExhaustedError(None, None, "out of space writing a shard"),
              "erofs": OSError(errno.EROFS, "Read-only file system")}
    expected = {"enospc": "disk is full", "tf_resource_exhausted": "disk is full", "erofs": "read-only"}
    write, calls = prep._write_shard, []

    def failing(*args):
        calls.append(args)
        if len(calls) == 2:
            raise errors[fault]
        write(*args)

    monkeypatch.setattr(prep, "_write_shard", failing)
    out = tmp_path / "out"
    with pytest.raises(prep.PrepareStorageError, match=expected[fault]) as info:
        prep.prepare(root, out, workers=1, shard_size=SHARD, progress=False)
    assert "\n" not in str(info.value) and "resumes" in str(info.value)
    monkeypatch.setattr(prep, "_write_shard", write)
    report = prep.prepare(root, out, workers=1, shard_size=SHARD, progress=False)
    assert strip(report) == strip(reference[1])
    for name in (n for s in reference[1]["splits"].values() for n in s["shards"]):
        assert (out / name).read_bytes() == (reference[0] / name).read_bytes()


def test_a_finished_preparation_in_a_read_only_folder_is_used_as_it_is(root, reference, tmp_path, monkeypatch):
    out = tmp_path / "finished"
    shutil.copytree(reference[0], out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(prep, "folder_lock", read_only)  # any write would need the lock first
    monkeypatch.setattr(prep.fileio, "write_text", read_only)
    assert strip(prep.prepare(root, out, workers=1, shard_size=SHARD, progress=False)) == strip(reference[1])
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    with pytest.raises(prep.PrepareStorageError, match="read-only"):  # an unfinished one cannot be written
        prep.prepare(root, tmp_path / "new", workers=1, shard_size=SHARD, progress=False)
