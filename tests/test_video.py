"""Video as its users need it: track ids, times, causal smoothing, summaries, streamed outputs in flat memory, Ctrl-C.

The videos are generated here with OpenCV (tests/face_video.py): scikit-image's astronaut and camera
man moving in opposite directions, so that they swap sides. The detector is the real MTCNN and the
network a tiny untrained one, except in the memory test, which needs a long video and replaces both
with stand-ins that cost nothing (what it measures is what predict holds, not what the network does).
"""

import csv
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import face_video
import numpy as np
import pytest
from conftest import TINY_MODEL

from va2att.cli import predict as cli
from va2att.evaluation.smoothing import CausalMean
from va2att.faces.detection import Detection, box_iou
from va2att.prediction.predictor import Predictor
from va2att.prediction.video import read_video


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from va2att.config import ModelConfig
    from va2att.model.network import build_model

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_model(ModelConfig(**TINY_MODEL)).save(path)
    return path


@pytest.fixture(scope="module")
def predictor(model_file):
    return Predictor(model_file)


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """24 frames at 8 fps: the two faces start on opposite sides and swap (true boxes per frame)."""
    path = tmp_path_factory.mktemp("video") / "crossing.avi"
    return path, face_video.write_video(path, 24, fps=8.0)


def _which(face_box, true_boxes) -> int:
    """0 for the astronaut, 1 for the camera man: the true box the face overlaps."""
    return int(np.argmax([box_iou(face_box, box) for box in true_boxes]))


# === Tracks and times ===


def test_track_ids_stay_with_their_faces_while_they_cross(predictor, crossing):
    path, truth = crossing
    results = list(predictor.iter_video(path))
    assert [r.frame for r in results] == list(range(24))
    tracks = {}  # person -> the track ids they were given
    for r in results:
        assert len(r.faces) == 2 and r.lost_tracks == [], r.frame
        for face in r.faces:
            person = _which(face.box, truth[r.frame])
            assert box_iou(face.box, truth[r.frame][person]) > 0.5
            tracks.setdefault(person, set()).add(face.track)
    assert tracks == {0: {1}, 1: {2}}  # one id each, in every frame
    left_first = [min(r.faces, key=lambda f: f.box[0]).track for r in (results[0], results[-1])]
    assert left_first == [1, 2]  # numbered left to right they would have swapped


def test_times_increase_and_match_the_container(tmp_path):
    path = tmp_path / "seven.avi"
    face_video.write_video(path, 20, fps=7.0)  # a rate no default would give
    capture = cv2.VideoCapture(str(path))
    container = []
    while capture.grab():
        container.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    capture.release()
    assert container == pytest.approx([i / 7 for i in range(20)])
    frames = list(read_video(path, 3))
    assert [f.frame for f in frames] == list(range(0, 20, 3))
    assert [f.time for f in frames] == pytest.approx([container[i] for i in range(0, 20, 3)])
    assert all(a.time < b.time for a, b in itertools.pairwise(frames))
    # --every-seconds 0.5: the first frame at or after 0, 0.5, 1.0, ... s; --start 1.2: from the first frame after it.
    assert [f.frame for f in read_video(path, every_seconds=0.5)] == [0, 4, 7, 11, 14, 18]
    assert [f.frame for f in read_video(path, 3, start=1.2)] == [9, 12, 15, 18]
    assert [f.frame for f in read_video(path, every_seconds=0.5, start=1.2)] == [11, 14, 18]


class FakeCapture:
    """Stands in for cv2.VideoCapture where the container's times are given (None: the container gives none)."""

    def __init__(self, times):
        self.times, self.index = times, -1

    def get(self, prop):
        assert prop == cv2.CAP_PROP_POS_MSEC
        value = self.times[self.index]
        return -1.0 if value is None else value * 1000


def test_the_containers_presentation_time_is_used_and_one_frame_interval_where_it_has_none():
    from va2att.prediction.video import _Clock

    capture = FakeCapture([0.0, 0.1, 0.35, None, 0.35, 0.9])  # a variable rate, a frame without a time, one repeated
    clock = _Clock(capture, fps=10.0)
    found = []
    for index in range(6):
        capture.index = index
        found.append(clock.time(index))
    assert found == pytest.approx([0.0, 0.1, 0.35, 0.45, 0.55, 0.9])  # never back, never the same
    none = FakeCapture([None] * 3)
    clock = _Clock(none, fps=4.0)
    assert [clock.time(none.__setattr__("index", i) or i) for i in range(3)] == [0.0, 0.25, 0.5]  # index / fps


def test_a_photo_has_no_time_or_track_and_a_lost_face_is_a_row_of_its_own(predictor, model_file, tmp_path, capsys):
    path = tmp_path / "gap.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (480, 300))
    people = face_video.heads(56)
    for index in range(8):
        frame, _ = face_video.frame_at(index, (300, 480), people, 32)
        writer.write(np.full_like(frame, 120) if index == 4 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(face_video.frame_at(0, (300, 480), people, 32)[0], cv2.COLOR_RGB2BGR))
    status = cli.main([str(path), str(photo), "--model", str(model_file), "--every", "1", "--csv", str(tmp_path / "r.csv")])
    assert status == 0, capsys.readouterr().err
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    video = [r for r in rows if r["source"] == str(path)]
    assert [(r["frame"], r["track"]) for r in video] == [(str(i), str(t)) for i in range(8) for t in (1, 2)]
    assert [float(r["time"]) for r in video[::2]] == pytest.approx([i / 5 for i in range(8)])
    lost = [r for r in video if r["frame"] == "4"]
    assert [(r["face"], r["x"], r["valence"], r["note"]) for r in lost] == [("", "", "", "face not found")] * 2
    still = [r for r in rows if r["source"] == str(photo)]
    assert [(r["frame"], r["time"], r["track"], r["face"]) for r in still] == [("", "", "", "1"), ("", "", "", "2")]


# === Smoothing ===


def test_causal_mean_uses_only_the_past_seconds_and_restarts_after_a_gap():
    mean = CausalMean(1.0)
    times = [0.0, 0.4, 0.8, 1.2, 1.6, 5.0, 5.5]
    values = [0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 20.0]
    out = [float(mean.update(t, v)) for t, v in zip(times, values)]
    assert out == pytest.approx([0.0, 0.5, 1.0, 2.0, 3.0, 10.0, 15.0])  # (t-1, t]; nothing older after the gap
    changed = CausalMean(1.0)
    after = [float(changed.update(t, v if t < 1.2 else -v)) for t, v in zip(times, values)]
    assert after[:3] == out[:3] and after[3] != out[3]  # a change at 1.2 s leaves every earlier answer as it was
    with pytest.raises(ValueError, match="go back"):
        mean.update(5.0, 1.0)


def test_smoothing_is_causal_from_the_video_to_the_rows(predictor, tmp_path):
    """Two videos that agree up to frame 12 and then show another face in the upper track: every row before
    frame 12 is the same, raw and smoothed; from frame 12 on the upper track's smoothed values differ."""
    same, changed = tmp_path / "same.avi", tmp_path / "changed.avi"
    face_video.write_video(same, 20, fps=8.0)
    face_video.write_video(changed, 20, fps=8.0, swap_from=12)
    runs = [list(predictor.iter_video(path, smooth=1.0)) for path in (same, changed)]
    for a, b in zip(*runs):
        pairs = list(zip(sorted(a.faces, key=lambda f: f.track), sorted(b.faces, key=lambda f: f.track)))
        assert len(pairs) == 2 and [fa.track for fa, _ in pairs] == [fb.track for _, fb in pairs] == [1, 2]
        upper_a, upper_b = pairs[0]
        if a.frame < 12:
            for fa, fb in pairs:
                assert (fa.scores, fa.smoothed_scores, fa.smoothed_probabilities) == \
                       (fb.scores, fb.smoothed_scores, fb.smoothed_probabilities), a.frame
        else:
            assert upper_a.scores != upper_b.scores  # another face: other raw values ...
            assert upper_a.smoothed_scores != upper_b.smoothed_scores  # ... and other smoothed ones from then on
    # The smoothed value is the mean of the raw values of the track's last second (8 frames at 8 fps).
    upper = [min(r.faces, key=lambda f: f.box[1]) for r in runs[0]]
    for k in (0, 5, 15):
        window = [f.scores["valence"] for f in upper[max(0, k - 7):k + 1]]
        assert upper[k].smoothed_scores["valence"] == pytest.approx(np.mean(window), abs=1e-9)
        assert sum(upper[k].smoothed_probabilities.values()) == pytest.approx(1.0, abs=1e-5)


# === Summary, timeline, JSON ===


def test_summary_timeline_and_json_of_a_video(model_file, crossing, tmp_path, capsys):
    path, _ = crossing
    out = tmp_path / "out"
    status = cli.main([str(path), "--model", str(model_file), "--every", "2", "--smooth", "0.5", "--csv",
                       str(out / "r.csv"), "--json", str(out / "r.json"), "--summary", str(out / "s.json"),
                       "--timeline", str(out / "t.png")])
    assert status == 0, capsys.readouterr().err
    with open(out / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"valence_smoothed", "arousal_smoothed", "p_Happy_smoothed"} <= set(rows[0])
    document = json.loads((out / "r.json").read_text())  # one valid document
    assert document["smooth_seconds"] == 0.5 and document["summary"]["faces"] == len(rows) == 24
    assert [r["frame"] for r in document["results"]] == list(range(0, 24, 2))
    assert document["results"][3]["faces"][0]["smoothed"]["valence"] is not None
    (video,) = json.loads((out / "s.json").read_text())["videos"]
    assert video["source"] == str(path) and video["frames_analysed"] == 12
    for track in video["tracks"]:
        mine = [r for r in rows if r["track"] == str(track["track"])]
        valence = np.array([float(r["valence"]) for r in mine])
        assert track["frames_seen"] == len(mine) == 12 and track["frames_not_found"] == 0
        assert (track["first_time"], track["last_time"]) == (0.0, pytest.approx(22 / 8))
        assert track["valence"]["mean"] == pytest.approx(valence.mean(), abs=2e-4)
        assert track["valence"]["median"] == pytest.approx(np.median(valence), abs=1e-3)
        shares = {name: np.mean([r["expression"] == name for r in mine]) for name in track["expressions"]}
        assert track["expressions"] == pytest.approx(shares, abs=1e-4)
    picture = cv2.imread(str(out / "t.png"))
    assert picture is not None and picture.shape[0] > 400 and picture.std() > 10


def test_histogram_median_and_the_timeline_keep_a_fixed_size():
    from va2att.prediction import timeline
    from va2att.prediction.summary import MEDIAN_STEP, _Dimension

    values = np.random.default_rng(0).uniform(-1, 1, 1001)
    dimension = _Dimension()
    for v in values:
        dimension.add(float(v))
    assert dimension.to_dict(len(values))["median"] == pytest.approx(np.median(values), abs=MEDIAN_STEP)
    series = timeline._Series()
    for i in range(3 * timeline.MAX_POINTS):
        series.append((i / 10, *[math.sin(i / 500)] * 4, 1))
    kept = series.view()
    assert timeline.MAX_POINTS // 2 <= len(kept) <= timeline.MAX_POINTS and series.points.shape[0] == timeline.MAX_POINTS
    assert kept[0, 0] == 0.0 and kept[-1, 0] > 0.99 * (3 * timeline.MAX_POINTS - 1) / 10  # the whole video, coarser


# === Long videos: streamed, flat memory ===


class StillFace:
    """A detector that costs nothing: one fixed face, with plausible five points."""

    min_face_size = 20

    def detect(self, image):
        x, y, w, h = 8.0, 8.0, 48.0, 48.0
        points = np.array([[x + 0.3 * w, y + 0.4 * h], [x + 0.7 * w, y + 0.4 * h], [x + 0.5 * w, y + 0.6 * h],
                           [x + 0.35 * w, y + 0.8 * h], [x + 0.65 * w, y + 0.8 * h]])
        return [Detection((x, y, w, h), points, 0.99)]


class MeanPixel:
    """A model that costs nothing: valence and arousal from the mean pixel, uniform expressions."""

    outputs = ("valence", "arousal", "expression")
    num_classes = 8

    def __call__(self, images):
        v = images.mean(axis=(1, 2, 3))[:, None] / 255.0
        return {"valence": v, "arousal": -v, "expression": np.full((len(images), 8), 0.125)}


def _plain_video(path, frames: int):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 64))
    for i in range(frames):
        writer.write(np.full((64, 64, 3), 40 + i % 150, np.uint8))
    writer.release()


def _stand_ins(monkeypatch):
    import va2att.prediction.predictor as predictor_module
    import va2att.serving.loading

    monkeypatch.setattr(predictor_module, "load_inference_model", lambda path, runtime: MeanPixel())
    monkeypatch.setattr(predictor_module, "FaceDetector", lambda **kwargs: StillFace())
    monkeypatch.setattr(va2att.serving.loading, "resolve_model_path", Path)  # "any" passes the early check


def test_results_come_while_the_video_is_still_being_read(monkeypatch, tmp_path):
    _stand_ins(monkeypatch)
    path = tmp_path / "clip.avi"
    _plain_video(path, 200)
    read = []

    def counted():
        for frame in read_video(path):
            read.append(frame.frame)
            yield frame

    predictor = Predictor("any", batch_size=8)
    seen = [(result.frame, len(read)) for result in predictor.iter_frames(counted(), smooth=1.0)]
    assert [frame for frame, _ in seen] == list(range(200))
    assert max(pulled - frame for frame, pulled in seen) <= 8  # never more than a batch ahead of the results


def test_memory_does_not_grow_with_the_length_of_the_video(monkeypatch, tmp_path, capsys):
    """predict with every output of a video (CSV, JSON, summary, timeline, smoothing) on 100 and 800 frames:
    the results alive at any time are at most a batch's, and the peak of Python's allocations is the same."""
    import weakref

    import va2att.prediction.predictor as predictor_module
    from va2att.prediction import timeline
    from va2att.prediction.results import ImageResult

    _stand_ins(monkeypatch)
    monkeypatch.setattr(timeline, "MAX_POINTS", 64)  # both videos reach the timeline's bound (4096 points a track)
    alive, most = [0], {}

    def gone():
        alive[0] -= 1

    class Counted(ImageResult):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            alive[0] += 1
            weakref.finalize(self, gone)
            most[frames] = max(most.get(frames, 0), alive[0])

    monkeypatch.setattr(predictor_module, "ImageResult", Counted)
    peaks = {}
    for frames in (100, 100, 800):  # the first run pays the one-time costs (imports, the figure's fonts)
        path = tmp_path / f"clip{frames}.avi"
        _plain_video(path, frames)
        out = tmp_path / f"out{frames}"
        tracemalloc.start()
        status = cli.main([str(path), "--model", "any", "--every", "1", "--batch-size", "16", "--smooth", "1",
                           "--csv", str(out / "r.csv"), "--json", str(out / "r.json"), "--summary", str(out / "s.json"),
                           "--timeline", str(out / "t.png")])
        peaks[frames] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert status == 0
        capsys.readouterr()
        with open(out / "r.csv", newline="") as f:
            assert sum(1 for _ in csv.DictReader(f)) == frames
    assert most == {100: 17, 800: 17}  # a batch of 16 waiting for the network, and the one being written
    # Holding the results (as predict did) costs about 3 kB a frame: 700 more frames would add 2 MB. What grows
    # is Python's free lists of small tuples and floats, which are bounded (a few hundred kB).
    assert peaks[800] < peaks[100] + 1_000_000, peaks


# === Ctrl-C ===


@pytest.mark.large
def test_ctrl_c_leaves_a_valid_csv_and_the_printed_command_continues_it(model_file, tmp_path, spawn):
    path = tmp_path / "long.avi"
    face_video.write_video(path, 160, fps=8.0, period=80)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "va2att.predict", str(path), "--model", str(model_file), "--every", "1",
               "--batch-size", "4", "--csv", str(tmp_path / "r.csv")]
    proc = spawn(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # until a few rows are in the file being written
        temporaries = list(tmp_path.glob(".r.csv-*.tmp"))
        if temporaries and temporaries[0].read_text().count("\n") > 12:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the analysis ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    with open(tmp_path / "r.csv", newline="") as f:
        first = list(csv.DictReader(f))
    frames = sorted({int(r["frame"]) for r in first})
    assert frames == list(range(len(frames))) and 6 <= len(frames) < 160  # whole frames, in order, from the start
    assert not list(tmp_path.glob(".*.tmp"))
    (line,) = [line for line in stderr.splitlines() if line.startswith("To continue")]
    rest = line.split(": ", 1)[1].split()
    assert "--start" in rest and rest[rest.index("--csv") + 1] != str(tmp_path / "r.csv")
    rest[:rest.index("va2att.predict") + 1] = [sys.executable, "-m", "va2att.predict"]
    subprocess.run(rest, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    with open(rest[rest.index("--csv") + 1], newline="") as f:
        second = sorted({int(r["frame"]) for r in csv.DictReader(f)})
    assert frames + second == list(range(160))  # the two parts together: every frame once
