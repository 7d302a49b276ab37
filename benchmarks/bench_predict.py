"""Throughput of the prediction path on this machine, and the face detector's recall on real photos.

    python benchmarks/bench_predict.py [--seconds 5] [--json bench_predict.json]
    python benchmarks/bench_predict.py --quick      # 0.2 s per row, small peak: checks the script runs

Speed rows (frames or faces per second; higher is better), each for the detector settings in
`DETECTORS` side by side:
  - detect+align: `FaceDetector.detect` (MTCNN) and `align_detection` on a 512×512 photo with one
    face (scikit-image's astronaut), one picture at a time;
  - model batch 1 / batch 256: `InferenceModel` calls on 48×48 crops with the default-size network
    (`build_model(ModelConfig())`, untrained weights, loaded from a `.keras` file as `Predictor`
    does). `Predictor` feeds each face together with its mirror image, so its network cost per face
    is that of two crops;
  - predict end-to-end: `Predictor.predict` on the astronaut photo read from a file;
  - frame 640x480, photo mode: `Predictor.predict` on the one-face 640×480 frame of
    tests/face_photos.py, frames/s (the target: >= 30);
  - frame 640x480, video mode: `Predictor.predict_many` on a 30-frame clip of that frame drifting
    4 pixels right and 2 down per frame, passed as `Frame`s of one video (whole-frame detection
    once every `detect_every` frames, tracking in between), frames/s (the target: >= 60);
  - group photo: `Predictor.predict` on the 1280×800 photo of eight faces, faces/s;
  - export rows: `Predictor` on a SavedModel export of the same network (with its LiteRT model, as a
    run folder gives it), run by each runtime (`--runtime savedmodel`, `litert`, and `auto`, its
    default): one face with its mirror (the network call of a one-face photo), the 640×480 frame in
    photo mode and the clip in video mode, default detector. The targets are read from the `auto` rows,
    the path a user gets.
Recall table: for each detector setting, faces found / faces expected on every photo of
`face_photos.recall_photos()` (a detection finds a face when their boxes overlap by IoU >= 0.3),
plus the detections that match no face. "whole picture" is MTCNN with its own settings on the
picture reduced to 1024 pixels (prediction's detector before the reduced copy), "eager" the same
run through the mtcnn package's own uncompiled networks.
Each row runs for about `--seconds` after one warm-up call. The report also holds the machine
(`system`: CPU, cores, TF threads, oneDNN, GPU, load average) and its float32 matmul peak
(`matmul_peak`), from benchmarks/common.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The photos with known face boxes are test fixtures (tests/face_photos.py); the benchmark measures on the same ones.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import common  # benchmarks/common.py: puts the repository on sys.path; machine facts, matmul peak
import numpy as np


def _timed(fn, seconds: float, faces_per_call: int) -> dict:
    fn()  # warm-up: graph tracing, MTCNN construction
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return {
        "calls": calls,
        "faces": calls * faces_per_call,
        "seconds": round(elapsed, 3),
        "ms_per_call": round(1000 * elapsed / calls, 2),
        "faces_per_s": round(calls * faces_per_call / elapsed, 1),
    }


PHOTO_TARGET_FPS = 30  # Predictor.predict on a 640x480 one-face photo
VIDEO_TARGET_FPS = 60  # Predictor.predict_many on the frames of a video
CLIP_FRAMES = 30
# name: (FaceDetector keyword arguments, Predictor detect_every); the first is prediction's default.
DETECTORS = {
    "default (smallest face 32, step 0.5)": ({"smallest_face": 32, "scale_factor": 0.5}, None),
    "whole picture (MTCNN settings)": ({}, 1),
    "whole picture, eager (before)": ({"compiled": False}, 1),
    "smallest face 40, step 0.5": ({"smallest_face": 40, "scale_factor": 0.5}, None),
    "smallest face 32, step 0.6": ({"smallest_face": 32, "scale_factor": 0.6}, None),
    "smallest face 48, step 0.5": ({"smallest_face": 48, "scale_factor": 0.5}, None),
}
QUICK_DETECTORS = ("default (smallest face 32, step 0.5)", "whole picture (MTCNN settings)")
EXPORT_RUNTIMES = ("savedmodel", "litert")  # Predictor on an export: each runtime, then "auto" (its default)
SPEED_DETECTORS = ("default (smallest face 32, step 0.5)", "whole picture (MTCNN settings)",
                   "whole picture, eager (before)")


def recall_table(detectors: dict) -> dict:
    """{setting: {photo: {"found", "expected", "extra"}}} over face_photos.recall_photos()."""
    import face_photos

    from va2att.faces.images import from_array

    photos = face_photos.recall_photos()
    table = {}
    for name, detector in detectors.items():
        table[name] = {}
        for photo in photos:
            found = detector.detect(from_array(photo.pixels, order="rgb"))
            hit, extra = face_photos.match(photo.faces, [d.box for d in found])
            table[name][photo.name] = {"found": hit, "expected": len(photo.faces), "extra": extra}
    return table


def _detection_rows(names, detectors, photo, seconds: float) -> dict:
    """detect+align on the astronaut photo, one row per speed detector."""
    from va2att.faces.align import align_detection

    rows = {}
    for name in (n for n in names if n in SPEED_DETECTORS):
        detector = detectors[name]

        def detect_align(detector=detector):
            found = detector.detect(photo)
            assert len(found) == 1, f"expected one face in the astronaut photo, found {len(found)}"
            align_detection(photo, found[0])

        key = "detect+align (512x512, 1 face)" if name == names[0] else f"detect+align (512x512, 1 face), {name}"
        rows[key] = _timed(detect_align, seconds, 1)
    return rows


def _model_and_predictor_rows(names, detectors, seconds: float) -> tuple[dict, int]:
    """The network at batch 1 and 256, and the Predictor on a photo file, a frame, a clip and the group photo,
    with the default-size network; (rows, its parameter count)."""
    import cv2
    import face_photos
    from skimage import data

    from va2att.config import INPUT_SIZE, ModelConfig
    from va2att.model.network import build_model
    from va2att.prediction.predictor import Frame, Predictor
    from va2att.serving.loading import load_inference_model

    frame, group = face_photos.frame_640x480(), face_photos.group_photo()
    clip = [Frame("clip", frame=i, image=p.pixels) for i, p in enumerate(face_photos.moving_clip(CLIP_FRAMES))]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(ModelConfig())
        model.save(Path(tmp) / "default.keras")
        inference = load_inference_model(Path(tmp) / "default.keras")
        rng = np.random.default_rng(0)
        for batch in (1, 256):
            images = rng.uniform(0, 255, (batch, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)
            rows[f"model batch {batch}"] = _timed(lambda images=images: inference(images), seconds, batch)

        image_path = Path(tmp) / "astronaut.png"
        cv2.imwrite(str(image_path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        for name in (n for n in names if n in SPEED_DETECTORS):
            detect_every = DETECTORS[name][1]
            options = {} if detect_every is None else {"detect_every": detect_every}
            predictor = Predictor(Path(tmp) / "default.keras", detector=detectors[name], **options)
            suffix = f", {name}"
            rows["predict end-to-end (file, 1 face)" + suffix] = _timed(lambda p=predictor: p.predict(image_path),
                                                                         seconds, 1)
            rows["frame 640x480, photo mode" + suffix] = _timed(lambda p=predictor: p.predict(frame.pixels), seconds, 1)
            if predictor.detect_every > 1:
                rows[f"frame 640x480, video mode (detect every {predictor.detect_every})" + suffix] = _timed(
                    lambda p=predictor: p.predict_many(clip), seconds, len(clip))
            faces = len(predictor.predict(group.pixels))
            rows[f"group photo ({faces} of {len(group.faces)} faces found)" + suffix] = _timed(
                lambda p=predictor: p.predict(group.pixels), seconds, faces)
        rows.update(_export_rows(model, Path(tmp), detectors[names[0]], frame, clip, seconds))
    return rows, int(model.count_params())


def _export_rows(model, folder: Path, detector, frame, clip, seconds: float) -> dict:
    """Predictor on an export of the model (what a run folder gives it), run by each runtime, default detector:
    a face with its mirror (the network call of one face), the 640x480 frame in photo and in video mode."""
    from va2att.prediction.predictor import Predictor
    from va2att.serving.export import export_saved_model
    from va2att.serving.loading import gpu_visible

    version = export_saved_model(model, folder / "export", litert=("float32",))
    rng = np.random.default_rng(0)
    pair = rng.uniform(0, 255, (2, 48, 48, 1)).astype(np.float32)
    rows = {}
    for runtime in (*EXPORT_RUNTIMES, "auto"):
        predictor = Predictor(version, detector=detector, runtime=runtime)
        name = f"export, {runtime}" + (" (SavedModel alone: a GPU)" if runtime == "auto" and gpu_visible() else "")
        rows[f"model batch 2 (a face and its mirror), {name}"] = _timed(lambda p=predictor: p.model(pair), seconds, 1)
        rows[f"frame 640x480, photo mode, {name}"] = _timed(lambda p=predictor: p.predict(frame.pixels), seconds, 1)
        rows[f"frame 640x480, video mode (detect every {predictor.detect_every}), {name}"] = _timed(
            lambda p=predictor: p.predict_many(clip), seconds, len(clip))
    return rows


def _targets(rows: dict, recall: dict, default_detector: str) -> dict:
    frame_rows = {k: r for k, r in rows.items() if k.startswith("frame 640x480") and "export, auto" in k}
    video_mode = next(r["faces_per_s"] for k, r in frame_rows.items() if "video mode" in k)
    photo_mode = next(r["faces_per_s"] for k, r in frame_rows.items() if "photo mode" in k)
    default, whole = recall[default_detector], recall["whole picture (MTCNN settings)"]
    return {
        "frame_640x480_photo_mode_fps": {"target": f">= {PHOTO_TARGET_FPS}", "value": photo_mode,
                                         "met": photo_mode >= PHOTO_TARGET_FPS},
        "frame_640x480_video_mode_fps": {"target": f">= {VIDEO_TARGET_FPS}", "value": video_mode,
                                         "met": video_mode >= VIDEO_TARGET_FPS},
        "recall_no_worse_than_whole_picture": {
            "target": "every photo", "value": sorted(k for k in whole if default[k]["found"] < whole[k]["found"]),
            "met": all(default[k]["found"] >= whole[k]["found"] for k in whole)},
    }


def run(seconds: float, quick: bool = False) -> dict:
    import keras
    import tensorflow as tf
    from skimage import data

    from va2att.faces.detection import FaceDetector
    from va2att.faces.images import from_array

    names = QUICK_DETECTORS if quick else tuple(DETECTORS)
    detectors = {name: FaceDetector(**DETECTORS[name][0]) for name in names}
    rows = _detection_rows(names, detectors, from_array(data.astronaut(), order="rgb"), seconds)
    more, parameters = _model_and_predictor_rows(names, detectors, seconds)
    rows.update(more)
    recall = recall_table(detectors)
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "model": {"config": "ModelConfig() defaults", "parameters": parameters, "weights": "untrained"},
        "seconds_per_row": seconds,
        "detectors": {name: {"options": DETECTORS[name][0], "detect_every": DETECTORS[name][1]} for name in names},
        "rows": rows,
        "recall": recall,
        "targets": _targets(rows, recall, names[0]),
    }


def format_table(report: dict) -> str:
    header = ("benchmark", "per s", "ms/call", "calls")
    rows = [(name, f"{r['faces_per_s']:.1f}", f"{r['ms_per_call']:.2f}", str(r["calls"]))
            for name, r in report["rows"].items()]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    lines.append("(per s: frames/s for frame rows, faces/s otherwise)")
    recall = report["recall"]
    photos = list(next(iter(recall.values())))
    cells = [[name] + [f"{c['found']}/{c['expected']}" + (f" +{c['extra']}" if c["extra"] else "")
                       for c in (recall[name][p] for p in photos)] for name in recall]
    lines += ["", "recall: faces found / expected (+ detections matching no face)",
              common.format_table(["detector"] + photos, cells)]
    for name, t in report["targets"].items():
        lines.append(f"target {name} {t['target']}: {t['value']} -> {'met' if t['met'] else 'MISSED'}")
    m = report["machine"]
    lines.append(f"({m['cpu_count']} CPU cores, GPUs: {m['gpus'] or 'none'}, TF {m['tensorflow']}, "
                 f"model {report['model']['parameters']:,} parameters)")
    if "system" in report:
        lines.append(common.system_line(report["system"], report.get("matmul_peak")))
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per row after a warm-up (default 5)")
    parser.add_argument("--quick", action="store_true", help="0.2 s per row and a small matmul peak (tests)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 0.2)
    return args


def run_report(args) -> dict:
    """`run` with the threads, the matmul peak and the system of the run added to its report."""
    threads = common.configure_threads(args.threads, args.inter_threads)
    peak = common.peak_or_none(args, quick=args.quick)
    report = run(args.seconds, quick=args.quick)
    report["matmul_peak"] = peak
    report["system"] = common.system_report()
    report["threads"] = threads
    return report


def main(argv=None) -> int:
    return common.run_script(parse_args, run_report, format_table, argv)


if __name__ == "__main__":
    sys.exit(main())
