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
# "grown_mb" is how much the process's peak memory rose during the case.
CHILD = textwrap.dedent("""
    import json, pickle, resource, sys
    sys.modules["va2att"] = None  # the export must serve without the package
    import numpy as np, tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    cases = pickle.load(open(sys.argv[2], "rb"))
    for name, signature, key, value in cases:
        print(json.dumps({"start": name}), flush=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            out = loaded.signatures[signature](**{key: tf.constant(value)})
            result = {"ok": True, "outputs": {k: (v.numpy().astype(str) if v.dtype == tf.string else v.numpy()).tolist()
                                              for k, v in out.items()},
                      "shapes": {k: v.shape.as_list() for k, v in out.items()}}
        except tf.errors.InvalidArgumentError as e:
            result = {"ok": False, "error": " ".join(e.message.split())[:2000]}
        result["grown_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
        print(json.dumps({"case": name, **result}, allow_nan=True), flush=True)
""")


def png(face):
    return cv2.imencode(".png", face)[1].tobytes()


def huge_png(face, side=20000):
    """A small PNG whose header declares side x side pixels (decoding it would take gigabytes)."""
    data = bytearray(png(face))
    data[16:24] = side.to_bytes(4, "big") * 2
    return bytes(data)


def gif(*frames):
    """A grayscale GIF (lossless: a 256-gray palette) of these frames; by default a face and its negative."""
    import io

    from PIL import Image  # a dependency of matplotlib

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def gif_parts(data):
    """(header with logical screen and global colour table, the blocks of the frames, trailer) of a GIF."""
    packed = data[10]
    start = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    return data[:start], data[start:-1], data[-1:]


def huge_gif(face, side=20000):
    data = bytearray(gif(face, 255 - face))
    data[6:10] = side.to_bytes(2, "little") * 2
    return bytes(data)


def gif_frame_larger_than_its_screen(face, side=8000, offset=0):
    """A small GIF whose 16x16 logical screen hides a first frame of side x side pixels at (offset, offset)."""
    head, blocks, trailer = gif_parts(gif(face))
    head = bytearray(head)
    head[6:10] = (16).to_bytes(2, "little") * 2
    frame = bytearray(blocks)
    at = frame.index(b",")  # the image descriptor: left, top, width, height
    frame[at + 1:at + 9] = offset.to_bytes(2, "little") * 2 + side.to_bytes(2, "little") * 2
    return bytes(head) + bytes(frame) + trailer


def animated_gif(side=2048, frames=48):
    """`frames` frames of side x side pixels (about 4 MB each once decoded) in a few KB."""
    head, blocks, trailer = gif_parts(gif(np.full((side, side), 90, np.uint8)))
    return head + blocks * frames + trailer


def cmyk_jpeg(face):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.stack([face] * 3, axis=-1)).convert("CMYK").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def jpeg(face):
    return cv2.imencode(".jpg", face)[1].tobytes()


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
    bytes_cases = {
        "bytes_mixed": [png(face), huge_png(face), b"not an image", b"", huge_gif(face), gif(face, 255 - face),
                        cv2.imencode(".bmp", face)[1].tobytes(), jpeg(face)],
        "bytes_gif_frames": [png(face), gif_frame_larger_than_its_screen(face),
                             gif_frame_larger_than_its_screen(face, side=20000),
                             gif_frame_larger_than_its_screen(face, side=1, offset=60000),
                             gif_parts(gif(face))[0] + b";", gif(face)[:-40], png(face)],
        "bytes_undecodable": [png(face), cmyk_jpeg(face), jpeg(face)[:3], jpeg(face)[:100], png(face)[:60],
                              jpeg(face)[:-200], png(face)],
        "bytes_batch0": [],
        "bytes_corrupt_body": [png(face)[:60]],
        "bytes_warm_up": [gif(face, 255 - face)],
        "bytes_animated": [animated_gif()],
    }
    cases = [
        ("good", "serving_default", "image", crop),
        ("batch0", "serving_default", "image", np.zeros((0, 48, 48, 1), np.float32)),
        ("nan", "serving_default", "image", nan),
        ("inf", "serving_default", "image", inf),
        *((name, "serving_bytes", "image_bytes", np.array(value, dtype=object)) for name, value in bytes_cases.items()),
        ("bytes_scalar", "serving_bytes", "image_bytes", np.array(png(face), dtype=object)),
    ]
    for value in (3.4e38, -3.4e38, 1e30, -1e30, 256.0, -1.0):
        huge = crop.copy()
        huge[0, 9, 9, 0] = value
        cases.append((f"pixel{value:g}", "serving_default", "image", huge))
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


def test_a_gif_frame_is_checked_at_its_own_size_not_its_screens(served):
    out = served[0]["bytes_gif_frames"]["outputs"]
    errors = out["error"]
    assert errors[0] == errors[-1] == ""  # the good images of the request are answered
    assert "8000x8000 pixels" in errors[1] and str(MAX_PIXELS) in errors[1]  # behind a 16x16 screen
    assert "20000x20000 pixels" in errors[2]
    assert "60001x60001 pixels" in errors[3]  # a 1x1 frame placed far outside its screen
    assert errors[4] == errors[5] == "a GIF whose first frame is missing or cut short"
    valence = np.array(out["valence"], dtype=float)[:, 0]
    assert np.isnan(valence[1:-1]).all() and np.isfinite(valence[[0, -1]]).all()


def test_only_the_first_frame_of_an_animated_gif_is_decoded(served):
    results = served[0]
    assert results["bytes_warm_up"]["outputs"]["error"] == [""]
    animated = results["bytes_animated"]
    assert animated["outputs"]["error"] == [""]
    # 48 frames of 2048 x 2048 take 192 MB as giflib reads them (one byte a pixel); the first frame alone,
    # decoded to RGB and converted, stays far below that.
    assert animated["grown_mb"] < 120, animated["grown_mb"]


def test_an_image_that_cannot_be_decoded_costs_only_itself(served):
    out = served[0]["bytes_undecodable"]["outputs"]
    errors = out["error"]
    assert errors[0] == errors[-1] == ""  # the good images of the request are answered
    assert errors[1] == ""  # a CMYK JPEG is decoded (through RGB)
    corrupt = "the image data is corrupt or cut short: it cannot be decoded"
    assert errors[2:5] == [corrupt] * 3  # a JPEG cut inside its header (3 and 100 bytes), a PNG cut in its body
    valence = np.array(out["valence"], dtype=float)[:, 0]
    assert np.isfinite(valence[[0, 1, -1]]).all() and np.isnan(valence[2:6]).all()
    assert errors[5] == corrupt  # a JPEG without its last 200 bytes: never decoded with rows made up
    assert served[0]["bytes_corrupt_body"]["outputs"]["error"] == [corrupt]


@pytest.mark.parametrize("value", ["3.4e+38", "-3.4e+38", "1e+30", "-1e+30", "256", "-1"])
def test_pixels_outside_0_to_255_are_refused(served, value):
    result = served[0][f"pixel{value}"]
    assert not result["ok"] and "pixels must be from 0 to 255" in result["error"]


def test_a_wrong_rank_of_image_bytes_fails_the_request_cleanly(served):
    result = served[0]["bytes_scalar"]
    assert not result["ok"] and "expected shape [?]" in result["error"]
