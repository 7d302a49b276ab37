"""The export under faults: Ctrl-C, SIGTERM, a full disk, a read-only folder, a second exporter, foreign outputs.

Signals and storage faults happen to a real export in a child process: the child's own script (never the
product) sends the signal right after TensorFlow has written the SavedModel into its temporary folder,
the most exposed moment; full and read-only folders are tmpfs mounts in a private mount namespace.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest
from conftest import TINY_MODEL
from private_mounts import needs_private_mounts

from va2att.config import ModelConfig
from va2att.model.network import build_model
from va2att.serving import export

CHILD = textwrap.dedent("""
    import json, os, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, whatever the parent ignores
    from va2att.config import ModelConfig
    from va2att.model.network import build_model
    from va2att.serving import export

    fault, roots = sys.argv[1], sys.argv[2:]
    if fault in ("SIGINT", "SIGTERM"):
        import keras

        archive = type(keras.export.ExportArchive())  # the backend's class, which the export writes with
        write_out = archive.write_out

        def write_then_signal(self, *args, **kwargs):
            write_out(self, *args, **kwargs)
            os.kill(os.getpid(), getattr(signal, fault))

        archive.write_out = write_then_signal
    model = build_model(ModelConfig(**json.loads(os.environ["TINY_MODEL"])))
    for root in roots:
        try:
            print(json.dumps({"root": root, "version": str(export.export_saved_model(model, root))}), flush=True)
        except (export.ExportError, export.ExportInterrupted) as error:
            left = sorted(os.listdir(root)) if os.path.isdir(root) else None  # what the failed export left there
            print(json.dumps({"root": root, "error": type(error).__name__, "message": str(error), "left": left}),
                  flush=True)
""")


def run_child(fault, *roots, wrap=None):
    env = dict(os.environ, TINY_MODEL=json.dumps(TINY_MODEL), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-c", CHILD, fault, *map(str, roots)]
    if wrap:
        command = ["unshare", "-rm", "sh", "-c", wrap + ' && exec "$@"', "sh", *command]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    return proc, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def leftovers(root):
    """Hidden entries of an export root: temporaries of writers (the lock is on the folder itself, no file)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def complete_versions(root):
    return [v for v in export.list_versions(root) if (root / str(v) / "saved_model.pb").is_file()]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model(ModelConfig(**TINY_MODEL))


def test_ctrl_c_during_the_export_is_one_line_and_leaves_nothing(tmp_path):
    root = tmp_path / "va2att"
    (root / "1").mkdir(parents=True)
    proc, (line,) = run_child("SIGINT", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert line["error"] == "ExportInterrupted" and "\n" not in line["message"]
    assert line["message"] == f"The export to {root} was interrupted; no new version was written."
    assert export.list_versions(root) == [1] and leftovers(root) == []


def test_a_sigterm_during_the_export_leaves_a_temporary_that_the_next_export_removes(model, tmp_path):
    root = tmp_path / "va2att"
    proc, lines = run_child("SIGTERM", root)
    assert proc.returncode == -15 and lines == []  # killed: no handler, no clean-up
    assert len(leftovers(root)) == 1 and export.list_versions(root) == []  # the complete but unnamed version
    path = export.export_saved_model(model, root)
    assert path == root / "1" and leftovers(root) == [] and complete_versions(root) == [1]


@needs_private_mounts
def test_a_full_disk_or_a_read_only_folder_is_one_line_and_no_version(tmp_path):
    full, read_only = tmp_path / "full", tmp_path / "read-only"
    full.mkdir()
    read_only.mkdir()
    (read_only / "va2att").mkdir()
    mounts = (f"mount -t tmpfs -o size=256k tmpfs {full} && mkdir {full}/va2att && "
              f"mount -t tmpfs tmpfs {read_only}/va2att && mount -o remount,ro {read_only}/va2att")
    proc, lines = run_child("none", full / "va2att", read_only / "va2att", read_only / "va2att" / "sub",
                            wrap=mounts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    disk, folder, below = lines
    assert disk["error"] == "ExportError" and "the disk is full" in disk["message"]
    assert "no new version was written" in disk["message"] and "\n" not in disk["message"]
    assert disk["left"] == []  # neither a version nor a temporary
    for line in (folder, below):
        assert line["error"] == "ExportError" and "the file system is read-only" in line["message"]


def test_a_second_export_to_the_same_root_is_refused_while_one_runs(model, tmp_path):
    root = tmp_path / "va2att"
    with export._only_export(root), pytest.raises(export.ExportError, match="Another process is exporting to"):
        export.export_saved_model(model, root)  # while another holds the root, as a running export does
    assert export.list_versions(root) == []
    assert export.export_saved_model(model, root) == root / "1"


def test_the_version_that_holds_a_runs_best_model_is_found(model, tmp_path):
    root = tmp_path / "va2att"
    record = {"data": {"name": "demo"}, "training": {"best_epoch": 3, "best_mean_ccc": 0.5}, "created": "then"}
    export.export_saved_model(model, root, provenance=record)
    export.export_saved_model(model, root, provenance={**record, "training": {"best_epoch": 4}})
    assert export.find_version(root, {**record, "created": "now"}) == root / "1"
    assert export.find_version(root, {**record, "training": {"best_epoch": 4}}) == root / "2"
    assert export.find_version(root, {**record, "training": {"best_epoch": 5}}) is None


def test_a_model_with_outputs_that_are_not_served_outputs_is_refused(tmp_path):
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.GlobalAveragePooling2D()(image)
    other = keras.Model(image, {"valence": keras.layers.Dense(1)(x), "logits": keras.layers.Dense(2)(x)})
    with pytest.raises(ValueError, match="logits is not a served output"):
        export.export_saved_model(other, tmp_path / "va2att")
    wide = keras.Model(image, {"valence": keras.layers.Dense(2)(x)})
    with pytest.raises(ValueError, match=r"valence: expected \[None, 1\]"):
        export.export_saved_model(wide, tmp_path / "va2att")
    assert export.list_versions(tmp_path / "va2att") == []
