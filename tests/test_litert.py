"""The LiteRT models of an export (`va2att.serving.litert`): written beside the SavedModel, the same outputs as
the SavedModel on random and real faces, loadable with the interpreter alone, and picked by `runtime`."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, TINY_MODEL
from test_folded_inference import random_faces, real_faces, trained_like_weights  # noqa: F401  (fixtures)

from va2att.cli import export as export_cli
from va2att.config import ModelConfig
from va2att.model.network import build_model
from va2att.serving import export, litert, loading
from va2att.serving.signature import SERVING_DEFAULT

ATOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(Keras model with trained-like batch norms, a run folder whose export holds every LiteRT variant)."""
    keras.utils.set_random_seed(5)
    # Width 16: its larger kernels have the 1,024 weights or more that dynamic-range quantisation converts.
    model = build_model(ModelConfig(**dict(TINY_MODEL, width=16)))
    trained_like_weights(model)
    run = tmp_path_factory.mktemp("run")
    path = export.export_saved_model(model, run / "export" / "va2att", litert=("float16", "int8"))
    return model, run, path


def test_the_export_writes_model_tflite_and_the_variants_asked_for(exported, tmp_path):
    model, _, path = exported
    files = {variant: litert.model_file(path, variant) for variant in litert.VARIANTS}
    assert files["float32"].name == "model.tflite"  # the name TF Serving's --prefer_tflite_model reads
    assert all(f.is_file() for f in files.values())
    # Weights stored as float16, as int8 (dynamic range: the large ones), or not at all in float32's.
    types = {variant: {d["dtype"] for d in litert.interpreter(f, 1).get_tensor_details()} for variant, f in files.items()}
    assert np.float16 in types["float16"] and np.int8 in types["int8"]
    assert not {np.float16, np.int8} & types["float32"]
    assert json.loads((path / export.METADATA_FILE).read_text())["litert"] == {
        variant: f.name for variant, f in files.items()}
    assert not [p for p in path.iterdir() if p.name.startswith(".")]  # no temporary left
    # By default only the float32 model; none when asked for none.
    default = export.export_saved_model(model, tmp_path / "default")
    assert sorted(p.name for p in default.glob("*.tflite")) == ["model.tflite"]
    assert not list(export.export_saved_model(model, tmp_path / "none", litert=()).glob("*.tflite"))
    with pytest.raises(ValueError, match="Unknown LiteRT"):
        export.export_saved_model(model, tmp_path / "bad", litert=("int4",))


def test_float32_litert_equals_the_savedmodel_on_random_and_real_faces(exported, random_faces, real_faces):  # noqa: F811
    _, _, path = exported
    serve = tf.saved_model.load(str(path)).signatures[SERVING_DEFAULT]
    model = litert.LiteRTModel(litert.model_file(path), threads=1)
    for images in (random_faces, real_faces):
        expected = {k: v.numpy() for k, v in serve(image=tf.constant(images)).items()}
        got = model(images)
        assert set(got) == set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, atol=ATOL, err_msg=name)
        assert np.ptp(expected["valence"]) > 1e-3  # outputs that vary, so the comparison means something
    one = model(random_faces[:1])  # another batch size: another interpreter
    np.testing.assert_allclose(one["valence"], model(random_faces)["valence"][:1], atol=ATOL)


def test_batches_run_in_chunks_each_size_by_its_own_interpreter(exported, random_faces, monkeypatch):  # noqa: F811
    _, _, path = exported
    made = []
    real = litert.interpreter
    monkeypatch.setattr(litert, "interpreter", lambda *a, **k: made.append(1) or real(*a, **k))
    model = litert.LiteRTModel(litert.model_file(path), threads=1, interpreters=2)
    calls = []
    faces = np.concatenate([random_faces] * 3)  # 18 faces
    alone = np.concatenate([model(faces[i : i + 1])["valence"] for i in range(len(faces))])
    assert litert.chunk_sizes(0) == [] and litert.chunk_sizes(3) == [3] and litert.chunk_sizes(4) == [4]
    assert litert.chunk_sizes(18) == [4, 4, 4, 4, 2] and sum(litert.chunk_sizes(257)) == 257
    runner = model._runner
    monkeypatch.setattr(model, "_runner", lambda size: calls.append(size) or runner(size))
    for n in (2, 5, 18):
        calls.clear()
        got = model(faces[:n])
        assert calls == litert.chunk_sizes(n)
        assert {k: v.shape[0] for k, v in got.items()} == dict.fromkeys(got, n)
        np.testing.assert_allclose(got["valence"], alone[:n], atol=ATOL)  # each row as that face alone
    # Chunk sizes 1, 2, 4 with room for two interpreters: 1 on the first, 2 on a new one; after that a size
    # not kept re-plans the least recently used of the two instead of loading the model again.
    assert len(made) == 2 and list(model._runners) == [4, 2]
    empty = model(faces[:0])
    assert {k: v.shape for k, v in empty.items()} == {k: (0, *v.shape[1:]) for k, v in got.items()}


def test_quantised_variants_stay_close_to_float32(exported, real_faces):  # noqa: F811
    _, _, path = exported
    reference = litert.LiteRTModel(litert.model_file(path))(real_faces)
    for variant, tolerance in (("float16", 0.02), ("int8", 0.2)):
        got = litert.LiteRTModel(litert.model_file(path, variant))(real_faces)
        for name in reference:
            np.testing.assert_allclose(got[name], reference[name], atol=tolerance, err_msg=f"{variant} {name}")


def test_litert_info_line_follows_tensorflow_log_level(exported):
    """LiteRT prints an INFO line on a process's first call: kept off where TensorFlow's INFO logs are off
    (as the command-line tools set them), printed where they are on (so this test can tell)."""
    _, _, path = exported
    script = textwrap.dedent(f"""
        import numpy as np
        from va2att.serving.litert import LiteRTModel
        model = LiteRTModel({str(litert.model_file(path))!r}, threads=1)
        print(model(np.zeros((5, 48, 48, 1), np.float32))["valence"].shape)
        """)
    stderr = {}
    for level in ("0", "2"):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": level, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0 and proc.stdout.split() == ["(5,", "1)"], proc.stderr[-2000:]
        stderr[level] = proc.stderr
    assert "XNNPACK delegate" in stderr["0"]
    assert "XNNPACK delegate" not in stderr["2"]


def test_the_litert_model_runs_with_the_interpreter_alone(exported, random_faces, tmp_path):  # noqa: F811
    """Neither va2att nor TensorFlow: what an app on a phone or a plain CPU has."""
    _, _, path = exported
    np.save(tmp_path / "faces.npy", random_faces)
    script = textwrap.dedent(f"""
        import json, sys
        sys.path[:] = [p for p in sys.path if p not in ("", {str(REPO)!r}) and not p.startswith({str(REPO / 'tests')!r})]
        sys.modules["va2att"] = None  # any import of the package fails from here on
        sys.modules["tensorflow"] = None  # and so does TensorFlow
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path={str(litert.model_file(path))!r}, num_threads=1)
        run = interpreter.get_signature_runner("serving_default")
        out = run(image=np.load({str(tmp_path / 'faces.npy')!r}))
        print(json.dumps({{k: v.tolist() for k, v in out.items()}}))
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = tf.saved_model.load(str(path)).signatures[SERVING_DEFAULT](image=tf.constant(random_faces))
    assert set(served) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(np.array(served[name]), value.numpy(), atol=ATOL)


def test_load_inference_model_takes_a_tflite_file_or_picks_the_litert_model(exported, random_faces):  # noqa: F811
    _, run, path = exported
    expected = loading.load_inference_model(path, runtime="savedmodel")(random_faces)
    for source, runtime in ((run, "litert"), (run / "export" / "va2att", "litert"), (path, "litert"),
                            (litert.model_file(path), "auto"), (litert.model_file(path), "savedmodel")):
        inference = loading.load_inference_model(source, batch_size=4, runtime=runtime)  # 6 faces: 2 batches
        assert inference.kind == "litert" and inference.source == litert.model_file(path)
        assert inference.outputs == ("valence", "arousal", "expression") and inference.num_classes == 8
        got = inference(random_faces)
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, atol=ATOL)
        assert inference(random_faces[:0])["expression"].shape == (0, 8)
        with pytest.raises(ValueError, match="0 to 255"):
            inference(np.full((1, 48, 48, 1), 300, np.float32))
    auto = loading.load_inference_model(run, runtime="auto", batch_size=13)
    assert auto.kind == ("saved_model" if loading.gpu_visible() else "litert")  # on a CPU, the LiteRT model alone
    calls = []
    if auto.kind == "litert":
        auto.litert_model._runner = lambda size, run=auto.litert_model._runner: calls.append(size) or run(size)
    many = np.concatenate([random_faces] * 3)[:15]  # a batch of 13, then one of 2
    got = auto(many)
    for name, value in loading.load_inference_model(path, runtime="savedmodel")(many).items():
        np.testing.assert_allclose(got[name], value, atol=ATOL)
    assert calls == ([] if loading.gpu_visible() else [4, 4, 4, 1, 2])  # each batch in chunks of at most 4
    with pytest.raises(ValueError, match="runtime"):
        loading.resolve_model_path(run, runtime="tflite")


def test_auto_runs_the_savedmodel_when_the_litert_model_is_damaged(exported, random_faces, tmp_path):  # noqa: F811
    import shutil

    _, _, path = exported
    version = tmp_path / "1"
    shutil.copytree(path, version)
    model_file = litert.model_file(version)
    model_file.write_bytes(model_file.read_bytes()[:1000])  # cut short
    if loading.gpu_visible():
        pytest.skip("with a GPU, auto runs the SavedModel alone anyway")
    with pytest.warns(UserWarning, match="--litert float32"):
        inference = loading.load_inference_model(version)
    assert inference.kind == "saved_model"
    expected = loading.load_inference_model(path, runtime="savedmodel")(random_faces)
    np.testing.assert_allclose(inference(random_faces)["valence"], expected["valence"], atol=1e-6)
    with pytest.raises(ValueError):  # asked for by name, it is an error
        loading.load_inference_model(version, runtime="litert")
    assert export_cli.main([str(version), "--litert", "float32"]) == 0  # the hint's command writes it again
    assert loading.load_inference_model(version).kind == "litert"


def test_an_older_export_without_litert_and_the_export_command(exported, tmp_path, capsys):
    model, _, _ = exported
    root = tmp_path / "va2att"
    old = export.export_saved_model(model, root, litert=())  # as exports were before LiteRT
    assert loading.load_inference_model(root).kind == "saved_model"  # auto falls back to the SavedModel
    with pytest.raises(FileNotFoundError, match="va2att.cli.export"):
        loading.load_inference_model(root, runtime="litert")
    assert export_cli.main([str(root), "--litert", "int8"]) == 0
    assert capsys.readouterr().out.split() == [str(litert.model_file(old)), str(litert.model_file(old, "int8"))]
    assert loading.load_inference_model(root, runtime="litert").kind == "litert"
    assert export_cli.main([str(root), "--litert", "float16"]) == 0  # model.tflite is there: only the new file
    assert capsys.readouterr().out.split() == [str(litert.model_file(old, "float16"))]
    assert export_cli.main([str(tmp_path / "nothing")]) == 2
    assert "No model at" in capsys.readouterr().err
