"""Inference speed of the network on this machine: latency per face at batch 1, faces/s at batch 256.

    python benchmarks/bench_inference.py [--calls 300] [--batch-calls 30] [--width 32] [--blocks 2]
                                         [--jit] [--json bench_inference.json]
    python benchmarks/bench_inference.py --quick      # tiny network, few calls: checks the script runs

Rows (a freshly built model with the default config unless --width/--blocks/--head; untrained
weights, which do not change the cost):
  - keras tf.function: `model(x, training=False)` inside one `tf.function` with a `[None, 48, 48, 1]`
    signature (one trace for every batch size) — the fast path, and what `va2att.serving.loading` uses for
    `.keras` files;
  - keras predict_on_batch: Keras's own batch call, for comparison (it re-enters Keras's predict
    machinery on every call);
  - SavedModel serving_default: the model exported with `va2att.serving.export.export_saved_model` into a
    temporary folder, loaded with `tf.saved_model.load` and called through its `serving_default`
    signature, as TF Serving and `va2att.serving.loading` do;
  - LiteRT model.tflite: the same export's LiteRT model in the `ai-edge-litert` interpreter
    (`va2att.serving.litert.LiteRTModel`, the usable cores as threads), as `load_inference_model(...,
    runtime="litert")` runs it;
  - with --jit, also the tf.function compiled with XLA (`jit_compile=True`).
Every call takes a NumPy batch and returns NumPy outputs (conversion included). Latency: median
(and 10th/90th percentile) of `--calls` calls at batch 1. Throughput: batch 256 / median call time
over `--batch-calls` calls. FLOPs: `va2att.model.flops.count_flops` (forward, TF profiler); achieved
GFLOP/s = faces/s x forward FLOPs, as a fraction of the float32 matmul peak measured in the same
process (benchmarks/common.py).

Targets: SavedModel <= 5 ms per face at batch 1 and >= 1,000 faces/s at batch 256.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # benchmarks/common.py: puts the repository on sys.path, quiets TF logging

LATENCY_TARGET_MS = 5.0
THROUGHPUT_TARGET = 1000.0
QUICK_MODEL = {"width": 8, "level_dim": 16, "gru_units": 8, "dimensional_units": 16, "categorical_units": 16}


def _paths(model, export_dir: Path, jit: bool) -> dict:
    """name -> callable(np.ndarray) -> dict of np.ndarray, for every inference path measured."""
    import tensorflow as tf

    from va2att.config import INPUT_SIZE
    from va2att.serving import litert
    from va2att.serving.export import export_saved_model
    from va2att.serving.litert import LiteRTModel

    spec = tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 1], tf.float32)

    def numpy_outputs(outputs):
        return {k: v.numpy() for k, v in outputs.items()}

    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    paths = {
        "keras tf.function": lambda x: numpy_outputs(forward(tf.constant(x))),
        "keras predict_on_batch": lambda x: model.predict_on_batch(x),
    }
    if jit:
        xla = tf.function(lambda x: model(x, training=False), input_signature=[spec], jit_compile=True)
        paths["keras tf.function XLA"] = lambda x: numpy_outputs(xla(tf.constant(x)))
    version_dir = export_saved_model(model, export_dir)
    loaded = tf.saved_model.load(str(version_dir))
    signature = loaded.signatures["serving_default"]
    paths["SavedModel serving_default"] = lambda x: numpy_outputs(signature(image=tf.constant(x)))
    paths["SavedModel serving_default"].loaded = loaded  # keep the variables alive
    paths["LiteRT model.tflite"] = LiteRTModel(litert.model_file(version_dir))
    return paths


def run(args) -> dict:
    import keras
    import numpy as np

    from va2att.config import INPUT_SIZE, ModelConfig
    from va2att.model.flops import count_flops
    from va2att.model.network import build_model

    threads = common.configure_threads(args.threads, args.inter_threads)
    overrides = dict(QUICK_MODEL) if args.quick else {}
    if args.width is not None:
        overrides["width"] = args.width
    cfg = ModelConfig(blocks=args.blocks, head=args.head, **overrides)
    peak = common.peak_or_none(args, quick=args.quick)

    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    forward_flops = count_flops(model)
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)
    many = rng.uniform(0, 255, (args.batch_size, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        paths = _paths(model, Path(tmp) / "export", args.jit)
        reference = paths["keras tf.function"](many)
        for name, fn in paths.items():
            got = fn(many)
            assert all(np.allclose(got[k], reference[k], atol=1e-4) for k in reference), f"{name} disagrees"
            latency = common.summarize_times(common.time_calls(lambda fn=fn: fn(one), calls=args.calls, warmup=5))
            batch = common.summarize_times(common.time_calls(lambda fn=fn: fn(many), calls=args.batch_calls, warmup=2))
            faces_per_s = args.batch_size / (batch["median_ms"] / 1000)
            gflops = faces_per_s * forward_flops / 1e9
            rows.append({
                "path": name,
                "batch1": latency,
                "batch1_ms_per_face": latency["median_ms"],
                "batch1_faces_per_s": round(1000 / latency["median_ms"], 1),
                "batch_n": batch,
                "batch_n_faces_per_s": round(faces_per_s, 1),
                "batch_n_ms_per_face": round(batch["median_ms"] / args.batch_size, 4),
                "achieved_gflops": round(gflops, 2),
                "fraction_of_peak": common.fraction_of_peak(gflops, peak),
                "batch1_fraction_of_peak": common.fraction_of_peak(
                    forward_flops / (latency["median_ms"] / 1000) / 1e9, peak),
            })
            print(f"{name}: batch 1 {latency['median_ms']:.2f} ms, batch {args.batch_size} "
                  f"{faces_per_s:.0f} faces/s", flush=True)

    saved = next(r for r in rows if r["path"] == "SavedModel serving_default")
    targets = {
        "savedmodel_batch1_ms_per_face": {"target": f"<= {LATENCY_TARGET_MS}", "value": saved["batch1_ms_per_face"],
                                          "met": saved["batch1_ms_per_face"] <= LATENCY_TARGET_MS},
        "savedmodel_batch256_faces_per_s": {"target": f">= {THROUGHPUT_TARGET:.0f}", "value": saved["batch_n_faces_per_s"],
                                            "met": saved["batch_n_faces_per_s"] >= THROUGHPUT_TARGET},
    }
    if args.batch_size != 256:
        targets["savedmodel_batch256_faces_per_s"]["note"] = f"measured at batch {args.batch_size}, not 256"
    return {
        "benchmark": "inference",
        "system": common.system_report(),
        "threads": threads,
        "matmul_peak": peak,
        "model": {"config": overrides or "ModelConfig() defaults", "blocks": cfg.blocks, "head": cfg.head,
                  "width": cfg.width, "parameters": int(model.count_params()), "weights": "untrained",
                  "forward_mflops_per_image": round(forward_flops / 1e6, 2)},
        "settings": {"calls": args.calls, "batch_calls": args.batch_calls, "batch_size": args.batch_size,
                     "jit": args.jit, "quick": args.quick},
        "rows": rows,
        "targets": targets,
    }


def format_report(report: dict) -> str:
    n = report["settings"]["batch_size"]
    header = ["path", "batch 1 median ms", "batch 1 p90 ms", f"batch {n} faces/s", f"batch {n} ms/face",
              "GFLOP/s", "of peak"]
    rows = []
    for r in report["rows"]:
        frac = r["fraction_of_peak"]
        rows.append([r["path"], f"{r['batch1']['median_ms']:.2f}", f"{r['batch1']['p90_ms']:.2f}",
                     f"{r['batch_n_faces_per_s']:.0f}", f"{r['batch_n_ms_per_face']:.3f}",
                     f"{r['achieved_gflops']:.1f}", "" if frac is None else f"{100 * frac:.1f}%"])
    m = report["model"]
    lines = [common.format_table(header, rows)]
    for name, t in report["targets"].items():
        lines.append(f"target {name} {t['target']}: {t['value']} -> {'met' if t['met'] else 'MISSED'}")
    lines.append(f"model: blocks {m['blocks']}, head {m['head']}, width {m['width']}, {m['parameters']:,} parameters, "
                 f"{m['forward_mflops_per_image']:.1f} forward MFLOPs/image")
    lines.append(common.system_line(report["system"], report["matmul_peak"]))
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=2, choices=[0, 1, 2, 3])
    parser.add_argument("--head", default="2mt")
    parser.add_argument("--width", type=int, default=None, help="model.width (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch of the throughput figure (default 256)")
    parser.add_argument("--calls", type=int, default=None, help="timed batch-1 calls per path (default 300; 10 with --quick)")
    parser.add_argument("--batch-calls", type=int, default=None,
                        help="timed large-batch calls per path (default 30; 3 with --quick)")
    parser.add_argument("--jit", action="store_true", help="also time the tf.function compiled with XLA")
    parser.add_argument("--quick", action="store_true", help="tiny network, batch 32, few calls, small peak (tests)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick and args.batch_size == 256:
        args.batch_size = 32
    args.calls = args.calls or (10 if args.quick else 300)
    args.batch_calls = args.batch_calls or (3 if args.quick else 30)
    return args


def main(argv=None) -> int:
    return common.run_script(parse_args, run, format_report, argv)


if __name__ == "__main__":
    sys.exit(main())
