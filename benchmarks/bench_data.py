"""Throughput of the data path on this machine.

    python benchmarks/bench_data.py [--data RAW_ROOT] [--json bench_data.json]
    python benchmarks/bench_data.py --quick     # tiny set, tiny model: checks the script runs

Rows:
  - synthetic generation: `synthetic.generate` (all cores), faces/s;
  - prepare, landmarks: a preparation work unit (`va2att.data.work_unit.run_unit`) (read JPEG + parse landmarks + align) in this
    process, i.e. faces/s per core (target >= 300); CPU-time rate alongside, since a shared
    machine inflates wall time;
  - prepare, MTCNN: the same rows with landmarks and boxes removed, so every face is detected;
  - pipeline: `make_dataset(training=True)`, batch 256, cached, from the prepared shards;
  - model: `build_model(ModelConfig())` training steps (batch 256, RMSprop, MSE + cross-entropy),
    images/s, and the pipeline / model ratio (target >= 20).
Without --data a synthetic set is generated in a temporary folder. Like every script here it also
reports the machine (`system`: CPU, cores, TF threads, oneDNN, GPU, load average) and its float32
matmul peak (`matmul_peak`, benchmarks/common.py), and the two targets met or missed (`targets`).
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # benchmarks/common.py: machine facts, matmul peak, JSON report
import numpy as np

LANDMARK_TARGET_PER_CORE = 300
PIPELINE_OVER_MODEL_TARGET = 20
QUICK_MODEL = {"blocks": 0, "width": 8, "level_dim": 16, "gru_units": 8, "dimensional_units": 16, "categorical_units": 16}


def _rows(root, n):
    from va2att.data import affectnet

    t = affectnet.read_split(root, "training")
    n = min(n, len(t))
    return [
        (t.paths[i], t.boxes[i].tolist(), t.landmarks[i], int(t.expression[i]), float(t.valence[i]), float(t.arousal[i]))
        for i in range(n)
    ]


def _rate(fn, items):
    w, c = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    return {"items": items, "wall_s": round(wall, 3), "per_s": round(items / wall, 1), "per_cpu_s": round(items / cpu, 1)}


def _process_rows(root, rows):
    """One work unit of AffectNet rows, as a preparation worker runs it."""
    from va2att.data.affectnet import LAYOUT
    from va2att.data.layout import PrepareOptions
    from va2att.data.work_unit import WorkUnit, run_unit

    return run_unit(WorkUnit("training", 0, str(root), rows, LAYOUT, PrepareOptions()))[2]


def bench_prepare(root, n_rows, n_mtcnn):
    rows = _rows(root, n_rows)
    _process_rows(root, rows[:20])  # warm-up (imports)
    out = {"prepare_landmarks": _rate(lambda: _process_rows(root, rows), len(rows))}
    bare = [(p, [np.nan] * 4, "", e, v, a) for p, _, _, e, v, a in rows[:n_mtcnn]]
    _process_rows(root, bare[:2])  # builds MTCNN
    res = {}
    out["prepare_mtcnn"] = _rate(lambda: res.update(result=_process_rows(root, bare)), len(bare))
    out["prepare_mtcnn"]["found"] = len(res["result"].records)
    return out


def bench_pipeline(prepared, epochs=3, batch=256):
    from va2att.config import DataConfig
    from va2att.data.pipeline import make_dataset

    ds = make_dataset(prepared, "training", DataConfig(batch_size=batch), training=True)
    for _ in ds:  # fills the cache
        pass
    n = 0

    def run():
        nonlocal n
        for _ in range(epochs):
            for x, *_ in ds:
                n += int(x.shape[0])

    r = _rate(run, 0)
    r["items"] = n
    r["per_s"] = round(n / r["wall_s"], 1)
    r["per_cpu_s"] = None
    return r


def bench_model(steps=6, batch=256, overrides=None):
    import keras
    import tensorflow as tf

    from va2att.config import ModelConfig
    from va2att.model.network import build_model

    cfg = ModelConfig(**(overrides or {}))
    model = build_model(cfg)
    losses = {"valence": "mse", "arousal": "mse", "expression": "sparse_categorical_crossentropy"}
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss={k: losses[k] for k in cfg.outputs})
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, 48, 48, 1)).astype(np.float32))
    y = {"valence": tf.zeros((batch, 1)), "arousal": tf.zeros((batch, 1)), "expression": tf.zeros((batch,), tf.int32)}
    y = {k: y[k] for k in cfg.outputs}
    model.train_on_batch(x, y)  # trace
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    wall = time.perf_counter() - t
    return {"items": steps * batch, "wall_s": round(wall, 3), "per_s": round(steps * batch / wall, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="raw AffectNet-layout root (default: generate a synthetic one)")
    parser.add_argument("--train", type=int, default=6000, help="synthetic training faces when generating")
    parser.add_argument("--val", type=int, default=1000, help="synthetic validation faces when generating")
    parser.add_argument("--rows", type=int, default=2000, help="rows for the landmark preparation rate")
    parser.add_argument("--mtcnn-rows", type=int, default=60, help="rows for the MTCNN rate")
    parser.add_argument("--model-steps", type=int, default=6, help="training steps timed (0 = skip the model)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="64/16 synthetic faces, 32 landmark rows, 2 MTCNN rows, 1 step of a tiny model (tests)")
    common.add_common_args(parser, json_option=False)
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.val, args.rows, args.mtcnn_rows = 64, 16, 32, 2  # batch 16 below
        args.model_steps = min(args.model_steps, 1)
    threads = common.configure_threads(args.threads, args.inter_threads)
    batch = 16 if args.quick else 256

    from va2att.data import preparation
    from va2att.data.synthetic import affectnet as synthetic
    from va2att.data.work_unit import cpu_count

    results = {"machine": {"cpus": cpu_count(), "platform": platform.platform(), "python": platform.python_version()}}
    results["matmul_peak"] = common.peak_or_none(args, quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        root = Path(args.data) if args.data else None
        if root is None:
            w = time.perf_counter()
            root = synthetic.generate(Path(tmp) / "raw", args.train, args.val, seed=0)
            wall = time.perf_counter() - w
            results["synthetic_generate"] = {"items": args.train + args.val, "wall_s": round(wall, 2),
                                             "per_s": round((args.train + args.val) / wall, 1)}
        results.update(bench_prepare(root, args.rows, args.mtcnn_rows))
        t = time.perf_counter()
        report = preparation.prepare(root, Path(tmp) / "prepared", progress=False)
        results["prepare_all_cores"] = {"items": report["written"], "wall_s": round(time.perf_counter() - t, 2),
                                        "per_s": round(report["written"] / (time.perf_counter() - t), 1)}
        results["pipeline"] = bench_pipeline(Path(tmp) / "prepared", batch=batch)
    if args.model_steps:
        try:
            results["model_train"] = bench_model(args.model_steps, batch=batch,
                                                 overrides=QUICK_MODEL if args.quick else None)
            results["pipeline_over_model"] = round(results["pipeline"]["per_s"] / results["model_train"]["per_s"], 1)
        except ImportError as e:
            results["model_train"] = {"error": str(e)}

    print(f"{'row':<22}{'items':>8}{'wall s':>9}{'per s':>10}{'per CPU s':>11}")
    for key, r in results.items():
        if isinstance(r, dict) and "per_s" in r:
            cpu = r.get("per_cpu_s")
            print(f"{key:<22}{r['items']:>8}{r['wall_s']:>9}{r['per_s']:>10}{cpu if cpu is not None else '':>11}")
    results["targets"] = targets(results)
    results["system"] = common.system_report()
    results["threads"] = threads
    results["quick"] = args.quick
    if "pipeline_over_model" in results:
        print(f"pipeline / model consumption: {results['pipeline_over_model']}x (target >= 20x)")
    for name, t in results["targets"].items():
        print(f"target {name} {t['target']}: {t['value']} -> {'met' if t['met'] else 'MISSED'}")
    print(common.system_line(results["system"], results["matmul_peak"]))
    if args.json:
        common.write_report(args.json, results)
    return 0


def targets(results: dict) -> dict:
    """The data path's targets: landmark preparation faces/s per core, pipeline / model consumption."""
    out = {}
    landmarks = results.get("prepare_landmarks", {})
    if "per_s" in landmarks:
        # prepare_landmarks runs in this one process: its wall-clock rate is a per-core rate.
        out["prepare_landmarks_faces_per_s_per_core"] = {
            "target": f">= {LANDMARK_TARGET_PER_CORE}", "value": landmarks["per_s"],
            "met": landmarks["per_s"] >= LANDMARK_TARGET_PER_CORE}
    if "pipeline_over_model" in results:
        out["pipeline_over_model"] = {
            "target": f">= {PIPELINE_OVER_MODEL_TARGET}", "value": results["pipeline_over_model"],
            "met": results["pipeline_over_model"] >= PIPELINE_OVER_MODEL_TARGET}
    return out


if __name__ == "__main__":
    sys.exit(main())
