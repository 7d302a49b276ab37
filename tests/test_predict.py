"""Prediction on real photos: detection, alignment, flip-averaged network outputs, CLI outputs.

The photos are the two portraits that ship with scikit-image (astronaut: colour, camera:
grayscale), each with one face whose box is given by hand below. The network is a tiny
untrained model, so only ranges and consistency are checked, not the values themselves.
"""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from private_mounts import needs_private_mounts
from skimage import data

from va2att.cli import predict as cli
from va2att.config import EXPRESSION_NAMES, ModelConfig
from va2att.faces.detection import box_iou
from va2att.faces.images import from_array, read_image
from va2att.prediction.predictor import FaceResult, Frame, ImageResult, Predictor

ASTRONAUT_FACE = (180.0, 60.0, 85.0, 115.0)  # x, y, w, h: hairline to chin, ear to ear
CAMERA_FACE = (195.0, 115.0, 60.0, 85.0)
TINY = ModelConfig(width=8, level_dim=16, gru_units=8, dimensional_units=16, categorical_units=16)


@pytest.fixture(scope="session")
def tiny_model():
    from va2att.model.network import build_model

    return build_model(TINY)


@pytest.fixture(scope="session")
def model_file(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_model.save(path)
    return path


@pytest.fixture(scope="session")
def predictor(model_file):
    return Predictor(model_file)


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """astronaut.png (RGB), camera.png (8-bit gray), blank.png, corrupt.jpg, empty.png, text.jpg."""
    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "camera.png"), data.camera())
    cv2.imwrite(str(folder / "blank.png"), np.full((240, 320, 3), 200, np.uint8))
    good_jpeg = cv2.imencode(".jpg", data.astronaut())[1].tobytes()
    (folder / "corrupt.jpg").write_bytes(good_jpeg[:300])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image\n")
    return folder


def check_face(face: FaceResult, true_box, num_classes=8):
    assert box_iou(face.box, true_box) > 0.3, face.box
    assert -1.0 <= face.valence <= 1.0 and -1.0 <= face.arousal <= 1.0
    assert len(face.landmarks) == 5
    x, y, w, h = face.box
    for px, py in face.landmarks:
        assert x - 0.1 * w <= px <= x + 1.1 * w and y - 0.1 * h <= py <= y + 1.1 * h
    assert face.confidence >= 0.9
    assert list(face.probabilities) == list(EXPRESSION_NAMES[:num_classes])
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert face.expression == EXPRESSION_NAMES[face.expression_index]
    assert face.probabilities[face.expression] == max(face.probabilities.values())


# === Predictor API ===


def test_one_face_in_each_photo(predictor, photos):
    (astronaut,) = predictor.predict(photos / "astronaut.png")
    check_face(astronaut, ASTRONAUT_FACE)
    (camera,) = predictor.predict(str(photos / "camera.png"))
    check_face(camera, CAMERA_FACE)
    assert predictor.predict(photos / "blank.png") == []


def test_path_image_and_array_agree(predictor, photos):
    by_path = predictor.predict(photos / "astronaut.png")
    by_image = predictor.predict(read_image(photos / "astronaut.png"))
    by_array = predictor.predict(data.astronaut())  # numpy arrays are taken as RGB
    by_bgr = predictor.predict(from_array(cv2.imread(str(photos / "astronaut.png")), order="bgr"))
    for other in (by_image, by_array, by_bgr):
        assert len(other) == 1
        assert other[0].box == by_path[0].box
        assert other[0].valence == pytest.approx(by_path[0].valence, abs=1e-5)


def test_flip_averaging_matches_the_network(predictor, photos):
    image = read_image(photos / "astronaut.png")
    (detection,) = predictor.detect(image)
    crop = predictor.align(image, detection)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    batch = np.stack([crop, crop[:, ::-1]]).astype(np.float32)[..., None]
    raw = predictor.model(batch)
    (face,) = predictor.predict(image)
    assert face.valence == pytest.approx(float(raw["valence"].mean()), abs=1e-5)
    assert face.arousal == pytest.approx(float(raw["arousal"].mean()), abs=1e-5)
    expected = raw["expression"].mean(axis=0)
    assert [face.probabilities[n] for n in EXPRESSION_NAMES] == pytest.approx(expected.tolist(), abs=1e-5)


def test_predict_many_batches_and_reports(model_file, predictor, photos):
    items = [photos / "astronaut.png", photos / "blank.png", photos / "corrupt.jpg", photos / "camera.png",
             Frame("clip.avi", frame=20, image=data.astronaut()), Frame("clip.avi", frame=30, error="bad frame")]
    small = Predictor(model_file, detector=predictor.detector, batch_size=1)
    for results in (predictor.predict_many(items), small.predict_many(items)):
        assert [type(r) for r in results] == [ImageResult] * 6
        assert [len(r.faces) for r in results] == [1, 0, 0, 1, 1, 0]
        assert results[1].note and results[1].error is None
        assert results[2].error and "corrupt.jpg" in results[2].error
        assert results[4].source == "clip.avi" and results[4].frame == 20
        assert results[5].error == "bad frame"
        check_face(results[0].faces[0], ASTRONAUT_FACE)
        check_face(results[3].faces[0], CAMERA_FACE)
        check_face(results[4].faces[0], ASTRONAUT_FACE)
    one_by_one = predictor.predict(photos / "camera.png")[0]
    assert results[3].faces[0].valence == pytest.approx(one_by_one.valence, abs=1e-5)
    json.dumps([r.to_dict() for r in results])  # JSON-ready


def test_an_export_gives_the_same_faces_run_by_either_runtime(tiny_model, predictor, photos, tmp_path):
    from va2att.serving.export import export_saved_model
    from va2att.serving.loading import gpu_visible

    export_root = tmp_path / "run" / "export" / "va2att"
    export_saved_model(tiny_model, export_root)
    (keras_face,) = predictor.predict(photos / "astronaut.png")
    for runtime, kind in (("auto", "saved_model" if gpu_visible() else "litert"),
                          ("savedmodel", "saved_model"), ("litert", "litert")):
        from_export = Predictor(tmp_path / "run", detector=predictor.detector, runtime=runtime)  # a run folder
        assert from_export.model.kind == kind
        (exported,) = from_export.predict(photos / "astronaut.png")
        assert exported.box == keras_face.box
        assert exported.valence == pytest.approx(keras_face.valence, abs=1e-4)
        assert exported.arousal == pytest.approx(keras_face.arousal, abs=1e-4)
        assert exported.probabilities == pytest.approx(keras_face.probabilities, abs=1e-4)


class ValenceArousalOnly:
    """Stands in for an `InferenceModel` of a V+A-only head: valence = mean pixel / 255, arousal = -valence."""

    outputs = ("valence", "arousal")
    num_classes = None

    def __call__(self, images):
        v = images.mean(axis=(1, 2, 3))[:, None] / 255.0
        return {"valence": v, "arousal": -v}


def test_model_without_expression_output(monkeypatch, predictor, photos, tmp_path, capsys):
    import va2att.prediction.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "load_inference_model", lambda path, runtime: ValenceArousalOnly())
    import va2att.serving.loading

    monkeypatch.setattr(va2att.serving.loading, "resolve_model_path", Path)  # "any" passes the CLI's early check
    (face,) = Predictor("any", detector=predictor.detector).predict(photos / "astronaut.png")
    assert face.expression is None and face.expression_index == -1 and face.probabilities == {}
    assert 0.0 < face.valence <= 1.0 and face.arousal == pytest.approx(-face.valence)
    status, stdout, _ = run_cli(capsys, photos / "astronaut.png", "--model", "any", "--csv", tmp_path / "r.csv",
                                "--annotate", tmp_path / "annotated")
    assert status == 0 and "astronaut.png" in stdout
    with open(tmp_path / "r.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["expression"] == "" and not any(k.startswith("p_") for k in row)
    assert (tmp_path / "annotated" / "astronaut_va.jpg").is_file()


def test_rgba_and_exif_rotated_inputs(predictor, tmp_path):
    rgba = np.dstack([data.astronaut(), np.full((512, 512), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    # Stored turned 90° anticlockwise; EXIF orientation 6 says "rotate 90° clockwise to display".
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(data.astronaut(), k=1).copy()).save(tmp_path / "exif.jpg", quality=95, exif=exif)
    sideways = Image.open(tmp_path / "exif.jpg")
    assert sideways.size == (512, 512) and sideways.getexif()[0x0112] == 6
    for name in ("rgba.png", "exif.jpg"):
        (face,) = predictor.predict(tmp_path / name)
        check_face(face, ASTRONAUT_FACE)
    (face,) = predictor.predict(rgba)  # RGBA array: alpha dropped
    check_face(face, ASTRONAUT_FACE)


def test_very_large_image_keeps_original_coordinates(predictor, tmp_path):
    side = 6000
    big = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (side, side), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (face,) = predictor.predict(tmp_path / "big.jpg")
    k = side / 512
    check_face(face, tuple(v * k for v in ASTRONAUT_FACE))
    assert face.box[2] > 500  # in original pixels, not detection pixels


# === Command line ===


def run_cli(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_folder_with_good_blank_and_corrupt_files(model_file, photos, tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, stderr = run_cli(
        capsys, photos, "--model", model_file, "--json", out / "r.json", "--csv", out / "r.csv",
        "--annotate", out / "annotated", "--plot", out / "va.png", "--batch-size", "2")
    assert status == 0
    for name in ("astronaut.png", "camera.png", "blank.png", "corrupt.jpg", "empty.png", "text.jpg"):
        assert name in stdout
    assert stdout.count("ERROR") == 3 and "no face found" in stdout
    assert "3 of 6 picture(s) read, 2 face(s), 1 without a face, 3 unreadable" in stderr

    document = json.loads((out / "r.json").read_text())
    assert document["summary"] == {"items": 6, "read": 3, "unreadable": 3, "without_face": 1, "faces": 2}
    assert document["expression_names"] == list(EXPRESSION_NAMES)
    by_name = {r["source"].rsplit("/", 1)[-1]: r for r in document["results"]}
    assert by_name["blank.png"]["faces"] == [] and by_name["blank.png"]["note"] == "no face found"
    assert by_name["empty.png"]["error"] and by_name["text.jpg"]["error"]
    face = by_name["astronaut.png"]["faces"][0]
    assert box_iou(face["box"], ASTRONAUT_FACE) > 0.3 and len(face["landmarks"]) == 5
    assert box_iou(by_name["camera.png"]["faces"][0]["box"], CAMERA_FACE) > 0.3

    with open(out / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6  # two faces + one faceless picture + three unreadable files
    face_rows = [r for r in rows if r["face"]]
    assert len(face_rows) == 2
    for r in face_rows:
        assert -1 <= float(r["valence"]) <= 1 and -1 <= float(r["arousal"]) <= 1
        assert r["expression"] in EXPRESSION_NAMES
        assert sum(float(r[f"p_{n}"]) for n in EXPRESSION_NAMES) == pytest.approx(1.0, abs=1e-3)
        assert r["landmark5_y"]
    assert [r["note"] for r in rows if not r["face"] and not r["error"]] == ["no face found"]
    assert len([r for r in rows if r["error"]]) == 3

    annotated = sorted(p.name for p in (out / "annotated").iterdir())
    assert annotated == ["astronaut_va.jpg", "blank_va.jpg", "camera_va.jpg"]
    drawn = cv2.imread(str(out / "annotated" / "astronaut_va.jpg"))
    assert drawn.shape == (512, 512, 3)
    original = cv2.imread(str(photos / "astronaut.png"))
    assert np.abs(drawn.astype(int) - original).max() > 100  # something was drawn
    assert (out / "va.png").stat().st_size > 1000


def test_cli_blank_image_is_not_an_error(model_file, photos, capsys):
    status, stdout, _ = run_cli(capsys, photos / "blank.png", "--model", model_file)
    assert status == 0 and "no face found" in stdout


def test_cli_exit_status_when_nothing_can_be_read(model_file, photos, tmp_path, capsys):
    status, stdout, _ = run_cli(capsys, photos / "corrupt.jpg", tmp_path / "missing.png", "--model", model_file)
    assert status == 1 and stdout.count("ERROR") == 2
    status, _, stderr = run_cli(capsys, tmp_path / "empty-folder-*.jpg", "--model", model_file)
    assert status == 1 and "no such file or pattern" in stderr  # said before any model is loaded


def test_cli_model_that_cannot_be_loaded(photos, tmp_path, capsys):
    status, _, stderr = run_cli(capsys, photos / "astronaut.png", "--model", tmp_path / "no-such-run")
    assert status == 2 and "cannot load the model" in stderr and "no-such-run" in stderr


def test_cli_video_gives_one_result_per_sampled_frame(model_file, tmp_path, capsys):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512))
    assert writer.isOpened()
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    blank = np.full_like(astronaut, 90)
    for i in range(23):
        writer.write(blank if i == 10 else astronaut)
    writer.release()
    status, _, _ = run_cli(capsys, path, "--model", model_file, "--every", "5", "--json", tmp_path / "v.json",
                                "--annotate", tmp_path / "frames")
    assert status == 0
    results = json.loads((tmp_path / "v.json").read_text())["results"]
    assert [r["frame"] for r in results] == [0, 5, 10, 15, 20]
    assert [r["time"] for r in results] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])  # 10 frames a second
    assert [len(r["faces"]) for r in results] == [1, 1, 0, 1, 1]
    assert [[f["track"] for f in r["faces"]] + r["lost_tracks"] for r in results] == [[1]] * 5  # missing at 10
    assert results[2]["note"] is None and results[2]["lost_tracks"] == [1]
    for r in results:
        for face in r["faces"]:
            assert box_iou(face["box"], ASTRONAUT_FACE) > 0.3
    assert len(list((tmp_path / "frames").glob("clip_f0000*_va.jpg"))) == 5


def test_paths_are_expanded_from_folders_and_globs(photos, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.JPG").write_bytes(b"x")
    (tmp_path / "sub" / "b.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [(k, p.name) for k, p in cli.expand_paths([tmp_path])] == [("image", "a.JPG"), ("video", "b.mp4")]
    assert [p.name for _, p in cli.expand_paths([str(photos / "*r*.png")])] == ["astronaut.png", "camera.png"]
    assert cli.expand_paths([tmp_path / "nothing.png"]) == [("missing", tmp_path / "nothing.png")]


def test_faces_are_numbered_left_to_right():
    from va2att.prediction.annotate import draw_faces, left_to_right

    right = FaceResult((300.0, 50.0, 80.0, 80.0), (), 0.99, {"valence": 0.5, "arousal": 0.1})
    left = FaceResult((20.0, 60.0, 80.0, 80.0), (), 0.95, {"valence": -0.5, "arousal": 0.2})
    assert left_to_right([right, left]) == [left, right]
    canvas = draw_faces(np.zeros((200, 400, 3), np.uint8), left_to_right([right, left]))
    assert canvas.any()
    result = ImageResult("p.jpg", faces=left_to_right([right, left]))
    rows = cli.format_table([result]).splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["1", "2"] and "-0.500" in rows[0]


# === Outputs: checked before the work, never losing finished results ===


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded although an output could not be written")


@pytest.mark.parametrize(("flags", "message"), [
    (["--csv", "{tmp}"], "--csv {tmp}: it is a folder; give a file name"),
    (["--json", "{tmp}/file.txt/r.json"], "file.txt is a file, not a folder"),
    (["--annotate", "{tmp}/file.txt"], "--annotate {tmp}/file.txt: it is a file; give a folder"),
    (["--plot", "{tmp}"], "--plot {tmp}: it is a folder"),
    (["--json", "{tmp}/r", "--csv", "{tmp}/r"], "--csv {tmp}/r: --json writes there too"),
    (["--json", "{photo}"], "it is one of the inputs"),
])
def test_output_paths_are_checked_before_any_picture_is_read(model_file, photos, tmp_path, capsys, monkeypatch,
                                                              flags, message):
    import va2att.prediction.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "Predictor", _no_model)
    (tmp_path / "file.txt").write_text("x")
    photo = tmp_path / "photo.png"
    photo.write_bytes((photos / "astronaut.png").read_bytes())
    flags = [f.format(tmp=tmp_path, photo=photo) for f in flags]
    status, stdout, stderr = run_cli(capsys, photo, "--model", model_file, *flags)
    assert status == 2 and stdout == "" and stderr.count("\n") == 1
    assert message.format(tmp=tmp_path) in stderr
    assert photo.read_bytes() == (photos / "astronaut.png").read_bytes()


@needs_private_mounts
def test_a_read_only_output_folder_is_refused_before_the_work(model_file, photos, tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "read-only"
    folder.mkdir()
    command = (f"mount -t tmpfs -o ro,size=64k tmpfs {folder} && exec {sys.executable} -m va2att.predict "
               f"{photos / 'astronaut.png'} --model {model_file} --json {folder}/r.json --csv {folder}/r.csv")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all("the file system is read-only" in line for line in lines)


class Sabotage:
    """Wraps a detector: at its `at`-th picture it runs `act()` first (break a folder, press Ctrl-C)."""

    def __init__(self, detector, at, act):
        self.detector, self.at, self.act, self.calls = detector, at, act, 0

    def detect(self, image):
        self.calls += 1
        if self.calls == self.at:
            self.act()
        return self.detector.detect(image)


def _sabotaged_detector(monkeypatch, predictor, at, act):
    import va2att.prediction.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "FaceDetector", lambda **kwargs: Sabotage(predictor.detector, at, act))


def test_results_are_kept_when_their_files_cannot_be_written_at_the_end(model_file, predictor, photos, tmp_path,
                                                                         capsys, monkeypatch):
    import shutil

    out = tmp_path / "out"

    def replace_the_folder_by_a_file():  # after the checks: every write into `out` fails from here on
        shutil.rmtree(out)
        out.write_text("not a folder any more")

    _sabotaged_detector(monkeypatch, predictor, 2, replace_the_folder_by_a_file)
    status, stdout, stderr = run_cli(capsys, photos / "astronaut.png", photos / "camera.png", "--model", model_file,
                                     "--json", out / "r.json", "--csv", out / "r.csv")
    assert status == 1 and "astronaut.png" in stdout and "camera.png" in stdout
    kept = {}
    for flag in ("--csv", "--json"):
        (line,) = [line for line in stderr.splitlines() if line.startswith(f"error: cannot write {flag}")]
        kept[flag] = Path(line.rsplit("the results are kept in ", 1)[1])
    document = json.loads(kept["--json"].read_text())
    assert [len(r["faces"]) for r in document["results"]] == [1, 1]
    with open(kept["--csv"], newline="") as f:
        assert [row["face"] for row in csv.DictReader(f)] == ["1", "1"]
    for path in kept.values():
        shutil.rmtree(path.parent)


def test_ctrl_c_during_the_analysis_keeps_what_was_finished(model_file, predictor, photos, tmp_path, capsys,
                                                            monkeypatch):
    def ctrl_c():
        raise KeyboardInterrupt

    _sabotaged_detector(monkeypatch, predictor, 2, ctrl_c)
    status, stdout, stderr = run_cli(capsys, photos / "astronaut.png", photos / "camera.png", "--model", model_file,
                                     "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv", "--batch-size", "1")
    assert status == 130 and "Interrupted" in stderr and "Traceback" not in stderr
    assert "astronaut.png" in stdout and "camera.png" not in stdout
    assert [r["source"] for r in json.loads((tmp_path / "r.json").read_text())["results"]] == \
        [str(photos / "astronaut.png")]
    with open(tmp_path / "r.csv", newline="") as f:
        assert [row["source"] for row in csv.DictReader(f)] == [str(photos / "astronaut.png")]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_truncated_video_is_reported_with_what_was_read(model_file, tmp_path, capsys):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for i in range(60):
        writer.write(np.full((64, 64, 3), 4 * i, np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    status, _, stderr = run_cli(capsys, path, "--model", model_file, "--every", "10", "--json", tmp_path / "v.json")
    results = json.loads((tmp_path / "v.json").read_text())["results"]
    read = [r["frame"] for r in results if r["error"] is None]
    assert read and read == list(range(0, 10 * len(read), 10)) and len(read) < 6
    (last,) = [r for r in results if r["error"]]
    assert "ends after" in last["error"] and "of the 60 frames" in last["error"] and "truncated" in last["error"]
    assert f"{len(read)} of {len(read) + 1} picture(s) read" in stderr and "1 unreadable" in stderr
    assert status == 0  # pictures were read; the damage is reported, not hidden


def test_a_model_with_other_output_names_is_refused(photos, tmp_path, capsys):
    import keras

    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.GlobalAveragePooling2D()(image)
    keras.Model(image, {"logits": keras.layers.Dense(2, name="logits")(x)}).save(tmp_path / "other.keras")
    status, stdout, stderr = run_cli(capsys, photos / "astronaut.png", "--model", tmp_path / "other.keras")
    assert status == 2 and stdout == "" and "none of the outputs va2att reads" in stderr and "['logits']" in stderr


def test_a_video_whose_frames_exceed_the_pixel_cap_is_refused_before_decoding(model_file, tmp_path, capsys,
                                                                             monkeypatch):
    from va2att.faces import images

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for _ in range(5):
        writer.write(np.full((64, 64, 3), 90, np.uint8))
    writer.release()
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 64 * 64 - 1)  # the cap photos have, at a size a test can write
    status, _, stderr = run_cli(capsys, path, "--model", model_file, "--json", tmp_path / "v.json")
    (result,) = json.loads((tmp_path / "v.json").read_text())["results"]
    assert result["error"] == f"{path}: frames of 64x64 pixels exceed the decode limit" and result["frame"] is None
    assert status == 1 and "0 of 1 picture(s) read" in stderr


def test_a_stream_whose_writes_fail_mid_way_moves_to_the_temporary_folder_with_every_row(tmp_path):
    import errno
    import shutil

    from va2att.prediction.result_files import StreamedText

    stream = StreamedText(tmp_path / "rows.csv", "--csv")
    lines = [f"row {i}\n" for i in range(6)]
    for line in lines[:3]:
        stream.write(line)
    calls = []

    class FullDisk:  # the file as it was, but the disk is full: every write fails
        def __init__(self, file):
            self.file = file

        def write(self, data):
            calls.append(data)
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):  # fileno, flush, close: the file's own
            return getattr(self.file, name)

    stream.stream = FullDisk(stream.stream)
    for line in lines[3:]:
        stream.write(line)
    assert len(calls) == 1  # after the first failure, the stream writes elsewhere
    assert not stream.finish()
    assert not (tmp_path / "rows.csv").exists() and not list(tmp_path.glob(".*.tmp"))
    assert stream.failure.startswith("error: cannot write --csv ") and "disk is full" in stream.failure
    kept = Path(stream.failure.rsplit("the results are kept in ", 1)[1])
    assert kept.read_text() == "".join(lines)  # the rows before the failure, the one that failed, and the rest
    shutil.rmtree(kept.parent)
