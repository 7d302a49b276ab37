"""Hostile requests against an exported SavedModel, loaded in a separate process without va2att.

Every bad input must give a clean error (or a per-image error for `serving_bytes`) and leave the
process alive: a kernel check failure would abort it (exit 134), which a subprocess makes visible.
"""

import json
import os
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest
from conftest import TINY_MODEL

from va2att.config import ModelConfig
from va2att.model.network import build_model
from va2att.serving import export
from va2att.serving.encoded_images import MAX_PIXELS

# Run in the child: each case prints one JSON line {"case", "ok", ...}; "start" lines show where it died.
CHILD = textwrap.dedent("""
    import json, pickle, sys
    sys.modules["va2att"] = None  # the export must serve without the package
    import numpy as np, tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    cases = pickle.load(open(sys.argv[2], "rb"))
    for name, signature, key, value in cases:
        print(json.dumps({"start": name}), flush=True)
        try:
            out = loaded.signatures[signature](**{key: tf.constant(value)})
            result = {"ok": True, "outputs": {k: (v.numpy().astype(str) if v.dtype == tf.string else v.numpy()).tolist()
                                              for k, v in out.items()},
                      "shapes": {k: v.shape.as_list() for k, v in out.items()}}
        except tf.errors.InvalidArgumentError as e:
            result = {"ok": False, "error": " ".join(e.message.split())[:2000]}
        print(json.dumps({"case": name, **result}, allow_nan=True), flush=True)
""")


def png(face):
    return cv2.imencode(".png", face)[1].tobytes()


def huge_png(face, side=20000):
    """A small PNG whose header declares side x side pixels (decoding it would take gigabytes)."""
    data = bytearray(png(face))
    data[16:24] = side.to_bytes(4, "big") * 2
    return bytes(data)


def gif(face):
    """A two-frame grayscale GIF (lossless: a 256-gray palette) whose first frame is `face`."""
    import io

    from PIL import Image  # a dependency of matplotlib

    frames = [Image.fromarray(face), Image.fromarray(255 - face)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def huge_gif(face, side=20000):
    data = bytearray(gif(face))
    data[6:10] = side.to_bytes(2, "little") * 2
    return bytes(data)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Run every case in one child process; return ({case: result}, the child's exit status, stderr)."""
    keras.utils.set_random_seed(0)
    base = tmp_path_factory.mktemp("served")
    path = export.export_saved_model(build_model(ModelConfig(**TINY_MODEL)), base / "va2att")
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (56, 56), dtype=np.uint8)
    crop = face[4:52, 4:52].astype(np.float32)[None, ..., None]
    nan, inf = crop.copy(), crop.copy()
    nan[0, 5, 5, 0], inf[0, 7, 7, 0] = np.nan, np.inf
    cases = [
        ("good", "serving_default", "image", crop),
        ("batch0", "serving_default", "image", np.zeros((0, 48, 48, 1), np.float32)),
        ("nan", "serving_default", "image", nan),
        ("inf", "serving_default", "image", inf),
        ("bytes_mixed", "serving_bytes", "image_bytes", np.array([
            png(face), huge_png(face), b"not an image", b"", huge_gif(face),
            gif(face), cv2.imencode(".bmp", face)[1].tobytes(),
            cv2.imencode(".jpg", face)[1].tobytes()], dtype=object)),
        ("bytes_batch0", "serving_bytes", "image_bytes", np.array([], dtype=object)),
        ("bytes_corrupt_body", "serving_bytes", "image_bytes", np.array([png(face)[:60]], dtype=object)),
        ("bytes_scalar", "serving_bytes", "image_bytes", np.array(png(face), dtype=object)),
    ]
    for shape in ([48, 48, 1], [1, 48, 48], [48, 48], [], [5], [1, 1, 48, 48, 1], [2, 47, 47, 1], [2, 48, 48, 3]):
        cases.append((f"shape{shape}", "serving_default", "image", np.zeros(shape, np.float32)))
    import pickle

    (base / "cases.pkl").write_bytes(pickle.dumps(cases))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(base / "cases.pkl")], capture_output=True,
                          text=True, cwd=base, env=env, timeout=300, check=False)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = {line["case"]: line for line in lines if "case" in line}
    started = [line["start"] for line in lines if "start" in line]
    return results, proc, started, {name: value for name, _, _, value in cases}


def test_the_serving_process_survives_every_bad_input(served):
    results, proc, started, cases = served
    assert proc.returncode == 0, f"the serving process died (exit {proc.returncode}) in case {started[-1:]}: " \
                                 f"{proc.stderr[-2000:]}"
    assert set(results) == set(cases)


@pytest.mark.parametrize("shape", [[48, 48, 1], [1, 48, 48], [48, 48], [], [5], [1, 1, 48, 48, 1], [2, 47, 47, 1],
                                   [2, 48, 48, 3]])
def test_wrong_shapes_are_a_clean_error_naming_the_expected_shape(served, shape):
    result = served[0][f"shape{shape}"]
    assert not result["ok"]
    assert "expected shape [?,48,48,1]" in result["error"]


@pytest.mark.parametrize("case", ["nan", "inf"])
def test_non_finite_pixels_are_refused(served, case):
    result = served[0][case]
    assert not result["ok"] and "pixels must be finite" in result["error"]


def test_an_empty_batch_answers_empty_outputs(served):
    results = served[0]
    assert results["batch0"]["ok"]
    assert results["batch0"]["shapes"] == {"valence": [0, 1], "arousal": [0, 1], "expression": [0, 8]}
    assert results["bytes_batch0"]["ok"]
    assert results["bytes_batch0"]["shapes"] == {"valence": [0, 1], "arousal": [0, 1], "expression": [0, 8], "error": [0]}


def test_bytes_errors_are_per_image_and_oversized_images_are_never_decoded(served):
    results = served[0]
    out = results["bytes_mixed"]["outputs"]
    errors = out["error"]
    assert errors[0] == "" and errors[5:] == ["", "", ""]  # PNG, GIF (first frame), BMP, JPEG are decoded
    assert "20000x20000 pixels" in errors[1] and str(MAX_PIXELS) in errors[1]  # never decoded (its CRC is broken too)
    assert "20000x20000 pixels" in errors[4]
    assert errors[2] == errors[3] == "not a JPEG, PNG, GIF or BMP image"
    valence = np.array(out["valence"], dtype=float)[:, 0]
    assert np.isnan(valence[[1, 2, 3, 4]]).all() and np.isfinite(valence[[0, 5, 6, 7]]).all()
    good = np.array(results["good"]["outputs"]["valence"])[0, 0]
    np.testing.assert_allclose(valence[[0, 5, 6]], good, atol=1e-4)  # lossless formats give the same face


def test_a_corrupt_image_body_or_a_wrong_rank_fails_the_request_cleanly(served):
    results = served[0]
    assert not results["bytes_corrupt_body"]["ok"]
    assert not results["bytes_scalar"]["ok"] and "expected shape [?]" in results["bytes_scalar"]["error"]
