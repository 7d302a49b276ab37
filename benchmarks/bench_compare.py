"""Our served model side by side with the networks users would pick instead: one run, one process, same threads.

    python benchmarks/bench_compare.py [--threads N --inter-threads N] [--rounds 15] [--calls 20]
                                       [--batch-size 256] [--json bench_compare.json]
    python benchmarks/bench_compare.py --quick      # tiny inputs, few calls: checks the script runs

Rows, every one a SavedModel written to a temporary folder, loaded with `tf.saved_model.load` and
called through its serving function, random weights (the cost does not depend on them):
  - va2att: the default model exported by `va2att.serving.export.export_saved_model` (folded inference
    graph), `serving_default` on float32 `[N, 48, 48, 1]`;
  - va2att serving_xla: the optional XLA-compiled signature of the same export (`xla=True`; TF
    Serving needs `--xla_cpu_compilation_enabled=true` for it, so it is never the default);
  - va2att, Keras graph: the same model exported with `fold=False` (its own graph and variables),
    the serving graph before the folding;
  - va2att LiteRT: the export's `model.tflite` in the `ai-edge-litert` interpreter
    (`va2att.serving.litert.LiteRTModel`, with the threads `load_inference_model` gives it: the usable cores);
  - EfficientNet-B0 at 224x224x3 (`keras.applications`, the backbone of HSEmotion's valence-arousal
    network) and MobileNetV2 at 224x224x3, exported with Keras's `model.export`;
  - FER CNN: a plain small FER2013 network at 64x64x1 (`fer_cnn` below: the mini-Xception layout
    that the `fer` package ships), exported the same way.
With --quick the three are called as a `tf.function` of the Keras model instead (no export), at 32x32.
The batch norms of every network get random moving statistics, as trained ones have (with the
initial zero mean and unit variance a folded bias would be zero and the optimizer would drop it).

Timing: `--rounds` interleaved rounds; in each, every row runs `--calls` calls at batch 1, then
`--batch-calls` calls at `--batch-size`, so load from other processes hits every row alike. Batch 1:
median ms per call; batch N: N / median call time (images/s). Ratios are against va2att: latency
ratio = their ms / our ms (> 1: we answer sooner), throughput ratio = our images/s / theirs. Fraction of
peak at batch N: images/s x each network's forward FLOPs (`va2att.model.flops.count_flops`) / this
process's matmul peak (with `--threads 1` a one-core peak, while the inter-op pool still runs ops on
every core).
NumPy in, NumPy out on every call. Also printed: the op counts of the va2att serving graph before
and after folding (`va2att.serving.graph_ops`: as saved, and as run after TensorFlow's graph optimizer)
and the largest difference between the Keras model and the SavedModel outputs.

Goals at batch 1: the runtime `load_inference_model` picks for an export by default (the path
`Predictor` uses: without a GPU, the LiteRT model) no slower than the FER CNN;
`serving_default` no slower than 1.5x the FER CNN; both at least 6x sooner than EfficientNet-B0. The
LiteRT row's own ratio is printed beside them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # benchmarks/common.py: puts the repository on sys.path, quiets TF logging

OURS = "va2att"
OURS_UNFOLDED = "va2att, Keras graph"
OURS_XLA = "va2att serving_xla"
OURS_LITERT = "va2att LiteRT"
FER_CNN = "FER CNN 64x64x1"
EFFICIENTNET = "EfficientNet-B0 224x224x3"
DEFAULT_PATH_GOAL = 1.0  # batch-1 ms of the runtime load_inference_model picks by default / the FER CNN's, at most
SERVING_DEFAULT_GOAL = 1.5  # serving_default's batch-1 ms / the FER CNN's, at most
EFFICIENTNET_GOAL = 6.0  # EfficientNet-B0's batch-1 ms / ours, at least (both rows above)
QUICK_MODEL = {"width": 8, "level_dim": 16, "gru_units": 8, "dimensional_units": 16, "categorical_units": 16}
FER_CLASSES = 7
FER_FILTERS = (16, 32, 64, 128)  # the mini-Xception's residual modules


def fer_cnn(size: int = 64, classes: int = FER_CLASSES):
    """The mini-Xception FER2013 classifier (Arriaga et al. 2017), the network the `fer` package ships.

    Two 3x3 conv-BN-ReLU layers of 8 filters, four residual modules (two separable 3x3 convs with
    BN, a 3x3 stride-2 max-pool, and a strided 1x1 conv-BN shortcut) of 16, 32, 64, 128 filters,
    then a 3x3 conv to the classes, global average pooling and softmax. Input `[N, size, size, 1]`.
    """
    import keras
    from keras import layers

    image = keras.Input((size, size, 1), name="image")
    x = layers.Rescaling(1.0 / 255.0)(image)
    for _ in range(2):
        x = layers.Conv2D(8, 3, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    for filters in FER_FILTERS:
        shortcut = layers.BatchNormalization()(layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x))
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.BatchNormalization()(layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x))
        x = layers.Add()([layers.MaxPooling2D(3, strides=2, padding="same")(x), shortcut])
    x = layers.Conv2D(classes, 3, padding="same")(x)
    x = layers.Softmax()(layers.GlobalAveragePooling2D()(x))
    return keras.Model(image, x, name="fer_cnn")


def trained_like_weights(model, seed: int = 0) -> None:
    """Give every batch norm of `model` random moving statistics and affine weights, and every bias random
    values, as training leaves them. A freshly built network's biases are zeros, and TensorFlow's graph
    optimizer drops an addition of zeros: the matrix products before the attention masks' sigmoids then
    run without a bias, and the sigmoid apart, which a trained model's do not (its bias, product and
    sigmoid are one fused kernel)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for weight in model.weights:
        leaf = weight.path.rsplit("/", 1)[-1]
        if leaf in ("moving_variance", "gamma"):
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        elif leaf in ("moving_mean", "beta"):
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
        elif leaf == "bias":
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))


def _baselines(quick: bool) -> dict:
    """name -> (keras.Model builder, input shape) of the networks compared with ours."""
    import keras

    size = 32 if quick else 224  # 32: the smallest input keras.applications accept
    fer_size = 32 if quick else 64
    return {
        EFFICIENTNET: (lambda: keras.applications.EfficientNetB0(
            weights=None, input_shape=(size, size, 3), classes=10), (size, size, 3)),
        "MobileNetV2 224x224x3": (lambda: keras.applications.MobileNetV2(
            weights=None, input_shape=(size, size, 3), classes=10), (size, size, 3)),
        FER_CNN: (lambda: fer_cnn(fer_size), (fer_size, fer_size, 1)),
    }


def _loaded_row(loaded, call, shape, rng, batch_size: int) -> dict:
    import numpy as np

    return {
        "loaded": loaded,  # keeps the SavedModel's objects alive
        "call": call,
        "shape": list(shape),
        "one": rng.uniform(0, 255, (1, *shape)).astype(np.float32),
        "many": rng.uniform(0, 255, (batch_size, *shape)).astype(np.float32),
    }


def build_rows(args, folder: Path) -> tuple[dict, dict]:
    """The rows to time (name -> callable and inputs) and the facts about our model (ops, differences)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from va2att.config import INPUT_SIZE, ModelConfig
    from va2att.model.flops import count_flops
    from va2att.model.network import build_model
    from va2att.serving import graph_ops, litert
    from va2att.serving.export import export_saved_model
    from va2att.serving.litert import LiteRTModel
    from va2att.serving.signature import IMAGE_INPUT, SERVING_DEFAULT, SERVING_XLA

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(**(QUICK_MODEL if args.quick else {}))
    model = build_model(cfg)
    trained_like_weights(model)
    shape = (INPUT_SIZE, INPUT_SIZE, 1)
    rows, ours = {}, {"config": QUICK_MODEL if args.quick else "ModelConfig() defaults",
                      "parameters": int(model.count_params()), "forward_flops": count_flops(model)}
    ops = {}
    for name, fold in ((OURS, True), (OURS_UNFOLDED, False)):
        path = export_saved_model(model, folder / ("folded" if fold else "keras"), fold=fold, xla=fold,
                                  litert=("float32",) if fold else ())
        loaded = tf.saved_model.load(str(path))
        for row, signature_name in ((name, SERVING_DEFAULT), (OURS_XLA, SERVING_XLA)):
            if signature_name not in loaded.signatures:
                continue

            def call(x, signature=loaded.signatures[signature_name]):
                return {k: v.numpy() for k, v in signature(**{IMAGE_INPUT: tf.constant(x)}).items()}

            rows[row] = _loaded_row(loaded, call, shape, rng, args.batch_size)
        saved, executed = graph_ops.saved_op_counts(path), graph_ops.executed_op_counts(path)
        ops["after" if fold else "before"] = {
            "saved_nodes": sum(saved.values()),
            "saved_constants_and_variable_reads": saved["Const"] + saved["ReadVariableOp"],
            "saved_batch_norms": sum(v for k, v in saved.items() if k.startswith("FusedBatchNorm")),
            "executed_nodes": sum(executed.values()),
            "executed_top": dict(executed.most_common(8)),
        }
    ours["ops"] = ops
    litert_model = LiteRTModel(litert.model_file(folder / "folded" / "1"))
    rows[OURS_LITERT] = _loaded_row(litert_model, litert_model, shape, rng, args.batch_size)
    check = rows[OURS]["many"][: min(64, args.batch_size)]
    expected = {k: v.numpy() for k, v in model(check, training=False).items()}
    ours["max_abs_difference_keras_vs_savedmodel"] = {
        name: round(max(float(np.abs(rows[name]["call"](check)[k] - expected[k]).max()) for k in expected), 8)
        for name in (OURS, OURS_XLA, OURS_UNFOLDED, OURS_LITERT)}

    for name, (build, in_shape) in _baselines(args.quick).items():
        network = build()
        trained_like_weights(network)
        if args.quick:  # a tf.function of the Keras model: the same graph, without the export's seconds
            loaded = tf.function(lambda x, network=network: network(x, training=False),
                                 input_signature=[tf.TensorSpec([None, *in_shape], tf.float32)])
            serve = loaded
        else:
            path = folder / name.split()[0].lower()
            network.export(str(path), format="tf_saved_model", verbose=False)
            loaded = tf.saved_model.load(str(path))
            serve = loaded.serve

        def call(x, serve=serve):
            return serve(tf.constant(x)).numpy()

        rows[name] = _loaded_row(loaded, call, in_shape, rng, args.batch_size)
        rows[name]["parameters"] = int(network.count_params())
        rows[name]["forward_flops"] = count_flops(network)
    return rows, ours


def time_interleaved(rows: dict, rounds: int, calls: int, batch_calls: int) -> dict:
    """Per row: batch-1 and batch-N call times (s), taken in interleaved rounds after warm-up calls."""
    for row in rows.values():
        for _ in range(3):
            row["call"](row["one"])
        row["call"](row["many"])
    times = {name: {"one": [], "many": []} for name in rows}
    for _ in range(rounds):
        for name, row in rows.items():
            for _ in range(calls):
                start = time.perf_counter()
                row["call"](row["one"])
                times[name]["one"].append(time.perf_counter() - start)
            for _ in range(batch_calls):
                start = time.perf_counter()
                row["call"](row["many"])
                times[name]["many"].append(time.perf_counter() - start)
    return times


def run(args) -> dict:
    threads = common.configure_threads(args.threads, args.inter_threads)
    peak = common.peak_or_none(args, quick=args.quick)
    load_before = common.load_average()
    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        rows, ours = build_rows(args, Path(tmp))
        times = time_interleaved(rows, args.rounds, args.calls, args.batch_calls)
    table = []
    for name, row in rows.items():
        one, many = common.summarize_times(times[name]["one"]), common.summarize_times(times[name]["many"])
        images_per_s = args.batch_size / (many["median_ms"] / 1000)
        flops = row.get("forward_flops", ours["forward_flops"])
        table.append({"model": name, "input": row["shape"], "parameters": row.get("parameters", ours["parameters"]),
                      "forward_mflops": round(flops / 1e6, 1), "batch1": one, "batch1_ms": one["median_ms"],
                      "batch_n": many, "batch_n_images_per_s": round(images_per_s, 1),
                      "batch_n_fraction_of_peak": common.fraction_of_peak(images_per_s * flops / 1e9, peak)})
    mine = next(r for r in table if r["model"] == OURS)
    for r in table:
        r["latency_ratio"] = round(r["batch1_ms"] / mine["batch1_ms"], 3)  # > 1: va2att answers sooner
        r["throughput_ratio"] = round(mine["batch_n_images_per_s"] / r["batch_n_images_per_s"], 3)  # > 1: va2att faster
    goals = compare_goals(table)
    return {
        "benchmark": "compare",
        "system": common.system_report(),
        "load_average_before": load_before,
        "threads": threads,
        "matmul_peak": peak,
        "settings": {"rounds": args.rounds, "calls": args.calls, "batch_calls": args.batch_calls,
                     "batch_size": args.batch_size, "quick": args.quick},
        "va2att": ours,
        "rows": table,
        "goals": goals,
    }


def compare_goals(table: list[dict]) -> dict:
    """The batch-1 goals against the FER CNN and EfficientNet-B0 (module doc), from the rows of one run."""
    from va2att.serving.loading import gpu_visible

    row = {r["model"]: r for r in table}
    fer, efficientnet = row[FER_CNN]["batch1_ms"], row[EFFICIENTNET]["batch1_ms"]
    default_path = OURS if gpu_visible() else OURS_LITERT
    goals = {}
    for name, model, limit in (("default_path", default_path, DEFAULT_PATH_GOAL),
                               ("serving_default", OURS, SERVING_DEFAULT_GOAL),
                               ("litert", OURS_LITERT, DEFAULT_PATH_GOAL)):
        ratio = row[model]["batch1_ms"] / fer
        goals[f"{name}_batch1_vs_fer_cnn"] = {"row": model, "target": f"<= {limit}", "value": round(ratio, 3),
                                              "met": ratio <= limit}
    for name, model in (("default_path", default_path), ("serving_default", OURS)):
        ratio = efficientnet / row[model]["batch1_ms"]
        goals[f"{name}_batch1_sooner_than_efficientnet"] = {"row": model, "target": f">= {EFFICIENTNET_GOAL}",
                                                            "value": round(ratio, 2), "met": ratio >= EFFICIENTNET_GOAL}
    goals["litert_batch1_vs_fer_cnn"]["note"] = "the LiteRT model, whether or not it is the default"
    return goals


def format_report(report: dict) -> str:
    n = report["settings"]["batch_size"]
    header = ["model", "input", "parameters", "fwd MFLOPs", "batch 1 median ms (p90)", f"batch {n} images/s",
              f"of peak at {n}", "latency ratio (theirs/ours)", "throughput ratio (ours/theirs)"]
    rows = [[r["model"], "x".join(str(d) for d in r["input"]), f"{r['parameters']:,}", r.get("forward_mflops", ""),
             f"{r['batch1']['median_ms']:.2f} ({r['batch1']['p90_ms']:.2f})", f"{r['batch_n_images_per_s']:,.0f}",
             "" if r.get("batch_n_fraction_of_peak") is None else f"{100 * r['batch_n_fraction_of_peak']:.1f}%",
             f"{r['latency_ratio']:.2f}", f"{r['throughput_ratio']:.2f}"] for r in report["rows"]]
    lines = [common.format_table(header, rows)]
    ops = report["va2att"]["ops"]
    lines.append("va2att serving_default ops, before (Keras graph) -> after (folded):")
    for key in ("saved_nodes", "saved_constants_and_variable_reads", "saved_batch_norms", "executed_nodes"):
        lines.append(f"  {key}: {ops['before'][key]} -> {ops['after'][key]}")
    lines.append(f"  executed, most frequent (after): {ops['after']['executed_top']}")
    for name, diff in report["va2att"]["max_abs_difference_keras_vs_savedmodel"].items():
        lines.append(f"max |Keras - SavedModel| ({name}): {diff:.2e}")
    for name, goal in report["goals"].items():
        lines.append(f"goal {name} ({goal['row']}) {goal['target']}: {goal['value']} -> "
                     f"{'met' if goal['met'] else 'MISSED'}")
    lines.append(f"load average before the run {report['load_average_before']}")
    lines.append(common.system_line(report["system"], report["matmul_peak"]))
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 15; 2 with --quick)")
    parser.add_argument("--calls", type=int, default=None, help="batch-1 calls per row and round (default 20; 3 with --quick)")
    parser.add_argument("--batch-calls", type=int, default=1, help="batch-N calls per row and round (default 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch of the throughput figure (default 256; 4 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny va2att, 32x32 baselines, batch 4, few calls, small peak (tests; figures mean nothing)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 15)
    args.calls = args.calls or (3 if args.quick else 20)
    args.batch_size = args.batch_size or (4 if args.quick else 256)
    return args


def main(argv=None) -> int:
    return common.run_script(parse_args, run, format_report, argv)


if __name__ == "__main__":
    sys.exit(main())
