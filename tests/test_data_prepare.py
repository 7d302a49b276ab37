"""va2att.data.preparation on a tiny synthetic set: labels kept, bad rows counted, resumable runs."""

import csv
import json
import os
import shutil
import signal
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest

from va2att.cli import prepare as prepare_cli
from va2att.data import preparation as prep
from va2att.data.affectnet import IMAGES_DIR, LISTS_DIR
from va2att.data.synthetic import affectnet as synthetic

TRAIN, VAL, SHARD = 24, 10, 8


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("raw") / "affectnet", train=TRAIN, val=VAL, seed=3, workers=1)


@pytest.fixture(scope="module")
def reference(root, tmp_path_factory):
    """An uninterrupted run through the process pool."""
    out = tmp_path_factory.mktemp("prepared") / "ref"
    report = prep.prepare(root, out, workers=2, shard_size=SHARD, progress=False)
    return out, report


def _records(out, split):
    import tensorflow as tf

    from va2att.data.records import feature_spec

    files = sorted(str(p) for p in out.glob(f"{split}-*.tfrecord"))
    recs = []
    for raw in tf.data.TFRecordDataset(files):
        p = tf.io.parse_single_example(raw, feature_spec())
        recs.append({k: (v.numpy().decode() if v.dtype == tf.string and k != "image" else v.numpy()) for k, v in p.items()})
    return recs


def _valid_csv_rows(root, split):
    with open(root / LISTS_DIR / f"{split}.csv") as f:
        rows = list(csv.reader(f))[1:]
    ok = []
    for r in rows:
        try:
            code, v, a = int(r[6]), float(r[7]), float(r[8])
        except ValueError:
            continue
        if 0 <= code <= 8 and abs(v) <= 1 and abs(a) <= 1 and "_dirt/" not in r[0]:  # dirt files are broken
            ok.append((r[0], code, v, a))
    return ok


def test_round_trip_keeps_labels_and_counts_reasons(root, reference):
    out, report = reference
    assert prep.is_prepared(out)
    assert report == json.loads((out / "report.json").read_text())
    for split, n in (("training", TRAIN), ("validation", VAL)):
        s = report["splits"][split]
        recs = _records(out, split)
        # The code-8 ("None") dirt row is kept, with its code, apart from the n usable faces.
        assert s["written"] == len(recs) == n + 1 and s["none_faces"] == 1
        expected = {r[0]: r[1:] for r in _valid_csv_rows(root, split)}
        got = {r["path"]: (int(r["expression"]), float(r["valence"]), float(r["arousal"])) for r in recs}
        assert set(got) == set(expected)
        for path, (code, v, a) in expected.items():
            assert got[path][0] == code and np.isclose(got[path][1], v, atol=1e-6) and np.isclose(got[path][2], a, atol=1e-6)
        assert all(len(r["image"]) == 56 * 56 for r in recs)
        # Every dirt row is counted under the reason synthetic.DIRT declares for it.
        assert s["skipped"] == dict(Counter(r for r in synthetic.DIRT.values() if r))
        # Gray, RGBA and 16-bit images are kept; bad landmark strings fall back to the face box.
        assert s["fallbacks"] == {"landmarks_non_numeric": 1, "landmarks_wrong_length": 1}
        assert s["methods"] == {"box": 2, "landmarks": n - 1}
        assert sum(s["per_expression"].values()) == n + 1 and s["per_expression"]["8"] == 1
        assert s["shards"] == sorted(p.name for p in out.glob(f"{split}-*.tfrecord"))
    assert report["written"] == TRAIN + VAL + 2
    assert report["skipped"]["missing"] == 2


# `python -m va2att.data.prepare ARGS` in a process of its own that sends itself `SIGNAL` right after its second
# shard is written: the wrapper, not the product, decides when.
_SIGNAL_AFTER_TWO_SHARDS = textwrap.dedent("""
    import os, signal, sys
    from va2att.cli import prepare as prepare_cli
    from va2att.data import preparation
    write_shard, written = preparation._write_shard, []
    def write_then_signal(*args):
        write_shard(*args)
        written.append(args[2])
        if len(written) == 2:
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    preparation._write_shard = write_then_signal
    sys.exit(prepare_cli.main(sys.argv[2:]))
""")


def test_a_killed_run_resumes_to_identical_records(root, reference, tmp_path, spawn):
    ref_out, ref_report = reference
    out = tmp_path / "prepared"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    args = [root, out, "--workers", "1", "--shard-size", SHARD, "--quiet"]  # in another process, another hash seed
    proc = spawn([sys.executable, "-c", _SIGNAL_AFTER_TWO_SHARDS, "SIGKILL", *args], env=env)
    assert proc.wait(timeout=300) == -signal.SIGKILL
    assert not prep.is_prepared(out)
    done = sorted(p.name for p in (out / prep.PROGRESS_DIR).glob("*.json"))
    assert len(done) == 2
    # What a kill leaves behind: a temporary file (named as this and earlier versions name them), and a
    # shard renamed but not yet marked done.
    (out / ".training-00001-k1ll3d00.tmp.tfrecord").write_bytes(b"half")
    (out / ".training-00001.tfrecord.tmp-999").write_bytes(b"half")
    (out / "validation-00000.tfrecord").write_bytes(b"garbage, not marked done")
    report = prep.prepare(root, out, workers=1, shard_size=SHARD, progress=False)
    assert prep.is_prepared(out)
    assert not list(out.glob(".*.tmp*"))
    for name in (n for s in ref_report["splits"].values() for n in s["shards"]):
        assert (out / name).read_bytes() == (ref_out / name).read_bytes(), name
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "root")}
    assert strip(report) == strip(ref_report)
    # A finished folder is left as it is.
    again = prep.prepare(root, out, workers=1, shard_size=SHARD, progress=False)
    assert strip(again) == strip(report)


def test_other_settings_are_refused_unless_overwritten(root, reference, tmp_path):
    out = tmp_path / "p"
    shutil.copytree(reference[0], out)
    with pytest.raises(prep.PrepareError, match="other settings"):
        prep.prepare(root, out, workers=1, shard_size=SHARD, classes=7, progress=False)
    report = prep.prepare(root, out, workers=1, shard_size=SHARD, classes=7, progress=False, overwrite=True)
    assert "7" not in report["splits"]["training"]["per_expression"]
    assert report["splits"]["training"]["skipped"]["expression_excluded"] > 3


def test_split_without_usable_faces_is_an_error(root, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(root, raw)
    for p in (raw / IMAGES_DIR).glob("valid*"):
        shutil.rmtree(p)
    with pytest.raises(prep.PrepareError, match="validation"):
        prep.prepare(raw, tmp_path / "out", workers=1, shard_size=SHARD, progress=False)


def test_cli(root, tmp_path, capsys):
    assert prepare_cli.main([str(root), str(tmp_path / "o"), "--workers", "1", "--quiet", "--shard-size", "16"]) == 0
    assert prep.is_prepared(tmp_path / "o")
    assert "training" in capsys.readouterr().out
    assert prepare_cli.main([str(tmp_path / "nothing"), str(tmp_path / "o2"), "--quiet"]) == 2


def test_ctrl_c_stops_preparation_in_one_line_and_the_same_command_resumes(root, reference, tmp_path, spawn):
    import subprocess

    out = tmp_path / "prepared"
    args = [root, out, "--workers", "1", "--shard-size", SHARD, "--quiet"]
    proc = spawn([sys.executable, "-c", _SIGNAL_AFTER_TWO_SHARDS, "SIGINT", *args], stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "Interrupted" in err and "the same command resumes" in err and err.strip().count("\n") == 0
    assert len(list((out / prep.PROGRESS_DIR).glob("*.json"))) == 2
    assert prepare_cli.main([str(a) for a in args]) == 0 and prep.is_prepared(out)


def test_a_damaged_shard_marker_makes_its_shard_prepared_again(root, reference, tmp_path):
    ref_out, ref_report = reference
    out = tmp_path / "prepared"
    shutil.copytree(ref_out, out)
    marker = out / prep.PROGRESS_DIR / "training-00001.tfrecord.json"
    marker.write_text('{"written": ')  # cut short
    (out / "report.json").unlink()
    report = prep.prepare(root, out, workers=1, shard_size=SHARD, progress=False)
    assert json.loads(marker.read_text())["written"] > 0
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "root")}
    assert strip(report) == strip(ref_report)
