"""Throughput of the prediction path on this machine: detection + alignment, and the network alone.

    python benchmarks/bench_predict.py [--seconds 5] [--json bench_predict.json]
    python benchmarks/bench_predict.py --quick      # 0.2 s per row, small peak: checks the script runs

Rows (faces per second; higher is better):
  - detect+align: `FaceDetector.detect` (MTCNN) and `align_detection` on a 512×512 photo with one
    face (scikit-image's astronaut), one picture at a time;
  - model batch 1 / batch 256: `InferenceModel` calls on 48×48 crops with the default-size network
    (`build_model(ModelConfig())`, untrained weights, loaded from a `.keras` file as `Predictor`
    does). `Predictor` feeds each face together with its mirror image, so its network cost per face
    is that of two crops;
  - predict end-to-end: `Predictor.predict` on the same photo (reading the file included).
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


def run(seconds: float) -> dict:
    import cv2
    import keras
    import tensorflow as tf
    from skimage import data

    from va2att.config import INPUT_SIZE, ModelConfig
    from va2att.data.align import FaceDetector, align_detection
    from va2att.data.images import from_array
    from va2att.loading import load_inference_model
    from va2att.model import build_model
    from va2att.predictor import Predictor

    rows: dict[str, dict] = {}
    photo = from_array(data.astronaut(), order="rgb")
    detector = FaceDetector()

    def detect_align():
        found = detector.detect(photo)
        assert len(found) == 1, f"expected one face in the astronaut photo, found {len(found)}"
        align_detection(photo, found[0])

    rows["detect+align (512x512, 1 face)"] = _timed(detect_align, seconds, 1)

    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(ModelConfig())
        parameters = int(model.count_params())
        model.save(Path(tmp) / "default.keras")
        inference = load_inference_model(Path(tmp) / "default.keras")
        rng = np.random.default_rng(0)
        for batch in (1, 256):
            images = rng.uniform(0, 255, (batch, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)
            rows[f"model batch {batch}"] = _timed(lambda images=images: inference(images), seconds, batch)

        image_path = Path(tmp) / "astronaut.png"
        cv2.imwrite(str(image_path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        predictor = Predictor(Path(tmp) / "default.keras", detector=detector)
        rows["predict end-to-end (file, 1 face)"] = _timed(lambda: predictor.predict(image_path), seconds, 1)

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
        "rows": rows,
    }


def format_table(report: dict) -> str:
    header = ("benchmark", "faces/s", "ms/call", "calls")
    rows = [(name, f"{r['faces_per_s']:.1f}", f"{r['ms_per_call']:.2f}", str(r["calls"]))
            for name, r in report["rows"].items()]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    m = report["machine"]
    lines.append(f"({m['cpu_count']} CPU cores, GPUs: {m['gpus'] or 'none'}, TF {m['tensorflow']}, "
                 f"model {report['model']['parameters']:,} parameters)")
    if "system" in report:
        lines.append(common.system_line(report["system"], report.get("matmul_peak")))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per row after a warm-up (default 5)")
    parser.add_argument("--quick", action="store_true", help="0.2 s per row and a small matmul peak (tests)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 0.2)
    threads = common.configure_threads(args.threads, args.inter_threads)
    peak = common.peak_or_none(args, quick=args.quick)
    report = run(args.seconds)
    report["matmul_peak"] = peak
    report["system"] = common.system_report()
    report["threads"] = threads
    print(format_table(report))
    common.write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
