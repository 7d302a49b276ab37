"""SavedModel export (TF Serving layout, signatures, portability) and inference loading."""

import json
import os
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, TINY_MODEL

from va2att.config import ModelConfig
from va2att.model.network import build_model
from va2att.serving import export, loading

RNN_MODULE = "keras.src.backend.tensorflow.rnn"


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model(ModelConfig(**TINY_MODEL))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1)).astype("float32")


@pytest.fixture(scope="module")
def expected(model, images):
    return model.predict(images, verbose=0)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """A run folder: best.keras and export/va2att/4 (after a stray version 3, the temporary of a killed export and a
    non-version)."""
    run = tmp_path_factory.mktemp("run")
    root = run / "export" / "va2att"
    (root / "3").mkdir(parents=True)  # an older version: the next export becomes 4
    (root / ".4-deadbeef.tmp").mkdir()  # what an export killed by SIGTERM leaves: not a version, removed
    (root / "notes").mkdir()
    path = export.export_saved_model(model, root)
    model.save(run / "best.keras")
    return run, path


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported[1]))


def test_export_writes_the_next_version_atomically(exported):
    run, path = exported
    root = run / "export" / "va2att"
    assert path == root / "4"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assert export.list_versions(root) == [3, 4]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no temporary left, old or new
    meta = json.loads((path / export.METADATA_FILE).read_text())
    assert meta["num_classes"] == 8 and meta["tensorflow_version"] == tf.__version__
    assert meta["outputs"]["expression"] == [None, 8] and meta["outputs"]["valence"] == [None, 1]


def test_export_refuses_to_overwrite_a_version(model, exported):
    run, _ = exported
    with pytest.raises(FileExistsError):
        export.export_saved_model(model, run / "export" / "va2att", version=4)
    with pytest.raises(ValueError):
        export.export_saved_model(model, run / "export" / "va2att", version=-1)


def test_serving_default_signature_matches_the_keras_model(loaded, images, expected):
    assert set(loaded.signatures) == {"serving_default", "serving_bytes", "serving_whole_batch"}
    fn = loaded.signatures["serving_default"]
    spec = fn.structured_input_signature[1]
    assert list(spec) == ["image"]
    assert spec["image"].shape.as_list() == [None, 48, 48, 1] and spec["image"].dtype == tf.float32
    out = fn(image=tf.constant(images))
    assert set(out) == {"valence", "arousal", "expression"}
    for name in expected:
        assert out[name].dtype == tf.float32
        np.testing.assert_allclose(out[name].numpy(), expected[name], atol=1e-5)


def test_serving_bytes_signature_decodes_aligned_faces(loaded):
    faces = np.random.default_rng(1).integers(0, 256, (3, 56, 56)).astype(np.uint8)
    encoded = [cv2.imencode(".png", f)[1].tobytes() for f in faces]
    encoded.append(cv2.imencode(".png", faces[0, 4:52, 4:52])[1].tobytes())  # an already-cropped 48x48 face
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    crops = np.concatenate([faces[:, 4:52, 4:52], faces[:1, 4:52, 4:52]]).astype("float32")[..., None]
    expected = loaded.signatures["serving_default"](image=tf.constant(crops))  # checked against Keras above
    for name in expected:
        np.testing.assert_allclose(out[name].numpy(), expected[name].numpy(), atol=1e-4)


def test_export_contains_no_cudnn_only_op(exported):
    _, path = exported
    ops = export.saved_model_op_types(path)
    assert {"Conv2D", "MatMul", "DecodeImage"} <= ops  # the lister sees graph and function library
    assert export.cudnn_only_ops(path) == set()


def _xla_functions(saved_model_dir) -> list[str]:
    """Names of the functions in a SavedModel that TensorFlow must compile with XLA."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    return [f.signature.name for g in proto.meta_graphs for f in g.graph_def.library.function
            if f.attr["_XlaMustCompile"].b]


def test_xla_signature_only_when_asked(model, exported, images, expected, tmp_path):
    _, default_path = exported
    assert _xla_functions(default_path) == []  # TF Serving runs the default export without XLA flags
    assert "serving_xla" not in json.loads((default_path / export.METADATA_FILE).read_text())["signatures"]
    path = export.export_saved_model(model, tmp_path / "va2att-xla", xla=True)
    assert _xla_functions(path)
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "serving_bytes", "serving_whole_batch", "serving_xla"}
    out = loaded.signatures["serving_xla"](image=tf.constant(images))
    for name in expected:
        np.testing.assert_allclose(out[name].numpy(), expected[name], atol=1e-4)
    assert loaded.signatures["serving_xla"](image=tf.zeros([0, 48, 48, 1]))["expression"].shape == (0, 8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite"):  # the input checks run before XLA
        loaded.signatures["serving_xla"](image=tf.fill([1, 48, 48, 1], float("nan")))
    meta = json.loads((path / export.METADATA_FILE).read_text())
    assert "xla_cpu_compilation_enabled" in meta["signatures"]["serving_xla"]["needs"]


def _gru_model():
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=8)(keras.layers.Rescaling(1 / 255)(image))
    x = keras.layers.Reshape((-1, 4 * 6))(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(4))(x)
    return keras.Model(image, {"valence": keras.layers.Dense(1, name="valence")(x)})


def test_export_on_a_gpu_machine_still_has_no_cudnn_op(tmp_path, monkeypatch):
    # Make Keras believe a GPU is present, as on the training machine: GRUs would trace CudnnRNNV3.
    monkeypatch.setattr(sys.modules[RNN_MODULE], "_is_gpu_available", lambda: True)
    model = _gru_model()
    # No LiteRT model: Keras's own GRU loop (TensorList ops) has no LiteRT builtin; va2att's networks
    # compute their GRU without it (tests/test_litert.py).
    path = export.export_saved_model(model, tmp_path / "portable", litert=())
    assert export.cudnn_only_ops(path) == set()
    assert model.layers[-2].forward_layer.use_cudnn == "auto"  # restored after the export
    # The same export without the guard does contain the cuDNN-only op, so the check above is meaningful.
    monkeypatch.setattr(export, "portable_recurrent_layers", lambda m: __import__("contextlib").nullcontext())
    assert "CudnnRNNV3" in export.cudnn_only_ops(export.export_saved_model(model, tmp_path / "gpu_only", litert=()))


def test_export_reloads_without_va2att(exported, images, expected, tmp_path):
    _, path = exported
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import json, sys
        sys.path[:] = [p for p in sys.path if p not in ("", {str(REPO)!r}) and not p.startswith({str(REPO / 'tests')!r})]
        sys.modules["va2att"] = None  # any import of the package fails from here on
        import numpy as np, tensorflow as tf
        try:
            import va2att  # noqa
            raise SystemExit("va2att is importable")
        except ImportError:
            pass
        loaded = tf.saved_model.load({str(path)!r})
        serve = loaded.signatures["serving_default"]
        # The folded export: weights are constants, no variable to restore; no op needs a cuDNN build.
        assert len(loaded.variables) == 0, loaded.variables
        graph = serve.graph.as_graph_def()
        ops = {{n.op for n in graph.node}} | {{n.op for f in graph.library.function for n in f.node_def}}
        assert "Conv2D" in ops and not [op for op in ops if op.lower().startswith("cudnn")], ops
        out = serve(image=tf.constant(np.load({str(tmp_path / 'images.npy')!r})))
        print(json.dumps({{k: v.numpy().tolist() for k, v in out.items()}}))
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=tmp_path,
                          env=dict(env, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(served) == set(expected)
    for name in expected:
        np.testing.assert_allclose(np.array(served[name]), expected[name], atol=1e-5)


def test_load_inference_model_from_every_kind_of_path(exported, images, expected):
    run, path = exported
    assert loading.resolve_model_path(run) == path  # newest export preferred over best.keras
    assert loading.resolve_model_path(run / "export" / "va2att") == path
    assert loading.resolve_model_path(path) == path
    for source, kind in ((run, "saved_model"), (run / "best.keras", "keras")):  # auto: tests/test_litert.py
        inference = loading.load_inference_model(source, batch_size=2, runtime="savedmodel")  # 5 images: 3 batches
        assert inference.kind == kind
        assert inference.outputs == ("valence", "arousal", "expression") and inference.num_classes == 8
        out = inference(images)
        for name in expected:
            assert out[name].shape == expected[name].shape and out[name].dtype == np.float32
            np.testing.assert_allclose(out[name], expected[name], atol=1e-5)
        assert inference(images[:0, ..., 0])["expression"].shape == (0, 8)
        with pytest.raises(ValueError, match="48, 48, 1"):
            inference(np.zeros((2, 56, 56, 1), np.float32))


def test_load_falls_back_to_best_keras_and_reports_missing_models(tmp_path, exported):
    run, _ = exported
    only_keras = tmp_path / "run"
    (only_keras / "export" / "va2att" / "1").mkdir(parents=True)  # an empty version folder is ignored
    (only_keras / "best.keras").symlink_to(run / "best.keras")
    assert loading.resolve_model_path(only_keras) == only_keras / "best.keras"
    with pytest.raises(FileNotFoundError, match="No model found"):
        loading.resolve_model_path(tmp_path / "run" / "export")
    with pytest.raises(FileNotFoundError):
        loading.load_inference_model(tmp_path / "nothing")
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=".keras"):
        loading.load_inference_model(tmp_path / "weights.h5")
