"""Training speed of the network on this machine: images/s, FLOPs and the fraction of the matmul peak.

    python benchmarks/bench_train.py [--blocks 0 1 2 3] [--batch-size 256] [--steps 10] [--width 32]
                                     [--jit] [--mixed-precision] [--no-metrics] [--profile 3] [--json bench_train.json]
    python benchmarks/bench_train.py --quick          # tiny network and batch: checks the script runs

One row per number of attention blocks (head `2mt` unless --head): the model `train.py` builds
(`va2att.training.trainer.build_compiled_model`: RMSprop, the config's losses and the streaming metrics;
--no-metrics drops the metrics, as `va2att.model.flops.benchmark_training` does), trained with `fit` on one
cached random batch repeated, so the input pipeline costs nothing here (benchmarks/bench_data.py
measures it). Each step is timed on its own; images/s is batch / median step time after the
warm-up steps (the first traces the graph), which a short burst of other load barely moves.

FLOPs: forward FLOPs per image from `va2att.model.flops.count_flops` (TF profiler, 1 multiply-add = 2
FLOPs); a training step is counted as 3x the forward pass (forward, plus a backward pass that
computes gradients for activations and for weights, each about one forward's worth). Achieved
GFLOP/s = images/s x 3 x forward FLOPs, reported as a fraction of the float32 matmul peak measured
in the same process with the same threads (benchmarks/common.py).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # benchmarks/common.py: puts the repository on sys.path, quiets TF logging

TRAIN_FLOPS_FACTOR = 3  # training step ~ forward + backward (2x forward)
QUICK_MODEL = {"width": 8, "level_dim": 16, "gru_units": 8, "dimensional_units": 16, "categorical_units": 16}


def time_training(model_cfg, batch_size: int, steps: int, warmup: int, *, jit: bool = False,
                  mixed_precision: bool = False, metrics: bool = True, seed: int = 0, profile_steps: int = 0) -> dict:
    """Per-step wall and CPU time of `fit` on one cached random batch; the model's forward FLOPs; with
    `profile_steps`, `profile_training` of that many more steps."""
    import keras
    import tensorflow as tf

    from va2att.config import RunConfig, TrainConfig
    from va2att.model.flops import count_flops, random_batch
    from va2att.model.losses import compile_args
    from va2att.training.trainer import _optimizer, build_compiled_model

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    previous_policy = keras.mixed_precision.global_policy().name
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        cfg = RunConfig(model=model_cfg, train=TrainConfig(jit_compile=jit, mixed_precision=mixed_precision))
        if metrics:
            model = build_compiled_model(cfg)
        else:
            from va2att.model.network import build_model

            model = build_model(model_cfg)
            model.compile(optimizer=_optimizer(cfg), jit_compile=jit, **compile_args(model_cfg))
        forward_flops = count_flops(model)

        data = tf.data.Dataset.from_tensors(random_batch(model_cfg, batch_size, seed)).cache().repeat()

        class StepTimer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.wall, self.cpu = [], []

            def on_train_batch_begin(self, batch, logs=None):
                self._w, self._c = time.perf_counter(), time.process_time()

            def on_train_batch_end(self, batch, logs=None):
                self.wall.append(time.perf_counter() - self._w)
                self.cpu.append(time.process_time() - self._c)

        timer = StepTimer()
        model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
        profile = profile_training(model, data, profile_steps) if profile_steps else None
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    wall, cpu = timer.wall[warmup:], timer.cpu[warmup:]
    parameters = int(model.count_params())
    keras.backend.clear_session()
    return {"wall": wall, "cpu": cpu, "first_step_s": timer.wall[0], "forward_flops": forward_flops,
            "parameters": parameters, "profile": profile}


# Op types (or name scopes) of a training step, grouped into what the time goes to (`profile_training`).
PROFILE_GROUPS = (
    ("GRU and level attention (every op of it)", lambda scope, op: "level_attention" in scope),
    ("optimizer (RMSprop updates)", lambda scope, op: "rm_sprop" in scope or op.startswith(("ResourceApply", "Assign"))),
    ("batch-MAD median (sort)", lambda scope, op: op in ("TopKV2", "Sort")),
    ("convolutions, forward", lambda scope, op: "Conv2D" in op and "Backprop" not in op),
    ("convolutions, backward", lambda scope, op: "Conv2DBackprop" in op),
    ("batch norm, forward and backward", lambda scope, op: "FusedBatchNorm" in op),
    ("matrix products", lambda scope, op: "MatMul" in op),
    ("pooling, resize, spatial means", lambda scope, op: any(k in op for k in ("Pool", "Resize", "Mean"))),
    ("element-wise (ReLU, additions, gradients' sums, ...)", lambda scope, op: True),
)


def profile_training(model, data, steps: int) -> dict:
    """Where a training step's time goes: `steps` steps of `fit` traced by TensorFlow's profiler, op time summed
    by `PROFILE_GROUPS` over the compute threads, the wall time a step (with `fit`'s own start and end), the
    median time inside one call of the compiled step and between two calls (Python and Keras), and the input
    pipeline's `get_next` time."""
    import glob
    import tempfile as tmp

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tmp.TemporaryDirectory(prefix="bench_train_profile_") as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    (plane,) = [p for p in space.planes if p.name == "/host:CPU"]
    groups = {name: 0.0 for name, _ in PROFILE_GROUPS}
    pipeline, calls = 0.0, []  # calls: (start, end) in ms of each call of the compiled step
    for line in plane.lines:
        for event in line.events:
            name = plane.event_metadata[event.metadata_id].name
            ms = event.duration_ps / 1e9
            if line.name == "python" and name.startswith("multi_step_on_iterator"):
                calls.append((event.offset_ps / 1e9, event.offset_ps / 1e9 + ms))
            elif line.name.startswith("tf_data_iterator_get_next"):
                pipeline += ms
            elif line.name.startswith("tf_Compute") and ":" in name and "::" not in name:  # "scope:OpType"
                # (the executor threads' op events; "ExecutorState::Process" and the like wrap them)
                scope, op = name.rsplit(":", 1)
                groups[next(g for g, match in PROFILE_GROUPS if match(scope, op))] += ms
    op_ms = sum(groups.values())
    calls.sort()
    gaps = [start - end for (_, end), (start, _) in itertools.pairwise(calls)]  # Python and Keras between steps
    return {"steps": steps, "wall_ms_per_step": round(1000 * wall / steps, 1),
            "compiled_step_ms_per_step": round(statistics.median(e - s for s, e in calls), 1),
            "python_between_steps_ms_per_step": round(statistics.median(gaps), 2) if gaps else None,
            "pipeline_get_next_ms_per_step": round(pipeline / steps, 2),
            "op_ms_per_step": round(op_ms / steps, 1), "cores_busy": round(op_ms / (1000 * wall), 2),
            "groups": {name: {"ms_per_step": round(ms / steps, 1), "share": round(ms / op_ms, 4) if op_ms else 0}
                       for name, ms in sorted(groups.items(), key=lambda kv: -kv[1])}}


def run(args) -> dict:
    from va2att.config import ModelConfig

    threads = common.configure_threads(args.threads, args.inter_threads)
    base = dict(QUICK_MODEL) if args.quick else {}
    if args.width is not None:
        base["width"] = args.width
    peak = common.peak_or_none(args, quick=args.quick)
    rows = []
    for blocks in args.blocks:
        cfg = ModelConfig(blocks=blocks, head=args.head, **base)
        r = time_training(cfg, args.batch_size, args.steps, args.warmup, jit=args.jit,
                          mixed_precision=args.mixed_precision, metrics=not args.no_metrics,
                          profile_steps=args.profile)
        times = common.summarize_times(r["wall"])
        step = times["median_ms"] / 1000
        images_per_s = args.batch_size / step
        train_gflops = images_per_s * TRAIN_FLOPS_FACTOR * r["forward_flops"] / 1e9
        rows.append({
            "blocks": blocks,
            "head": args.head,
            "width": cfg.width,
            "parameters": r["parameters"],
            "forward_mflops_per_image": round(r["forward_flops"] / 1e6, 2),
            "train_mflops_per_image": round(TRAIN_FLOPS_FACTOR * r["forward_flops"] / 1e6, 2),
            "images_per_s": round(images_per_s, 1),
            "images_per_s_mean": round(args.batch_size * len(r["wall"]) / sum(r["wall"]), 1),
            "step": times,
            "first_step_s": round(r["first_step_s"], 2),
            "cpu_ms_per_image": round(1000 * sum(r["cpu"]) / (args.batch_size * len(r["cpu"])), 3),
            "achieved_gflops": round(train_gflops, 2),
            "fraction_of_peak": common.fraction_of_peak(train_gflops, peak),
            "profile": r["profile"],
        })
        print(f"blocks {blocks}: {images_per_s:.0f} images/s (median step {times['median_ms']:.0f} ms)", flush=True)
    return {
        "benchmark": "train",
        "system": common.system_report(),
        "threads": threads,
        "matmul_peak": peak,
        "settings": {
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup_steps": args.warmup,
            "jit_compile": args.jit,
            "mixed_precision": args.mixed_precision,
            "metrics": not args.no_metrics,
            "quick": args.quick,
            "model_overrides": base,
        },
        "flops_rule": (f"train FLOPs = {TRAIN_FLOPS_FACTOR} x forward FLOPs (va2att.model.flops.count_flops, "
                       "TF profiler, 1 multiply-add = 2 FLOPs); images/s from the median step time"),
        "rows": rows,
    }


def format_report(report: dict) -> str:
    header = ["blocks", "head", "width", "fwd MFLOPs/img", "images/s", "median step ms", "p90 step ms",
              "CPU ms/img", "GFLOP/s (3x fwd)", "of peak"]
    rows = []
    for r in report["rows"]:
        frac = r["fraction_of_peak"]
        rows.append([r["blocks"], r["head"], r["width"], f"{r['forward_mflops_per_image']:.1f}",
                     f"{r['images_per_s']:.0f}", f"{r['step']['median_ms']:.0f}", f"{r['step']['p90_ms']:.0f}",
                     f"{r['cpu_ms_per_image']:.2f}", f"{r['achieved_gflops']:.1f}",
                     "" if frac is None else f"{100 * frac:.1f}%"])
    s = report["settings"]
    lines = [
        common.format_table(header, rows, align="rlrrrrrrrr"),
        (f"batch {s['batch_size']}, {s['steps']} timed steps after {s['warmup_steps']} warm-up, "
         f"XLA {'on' if s['jit_compile'] else 'off'}, mixed precision {'on' if s['mixed_precision'] else 'off'}, "
         f"metrics {'on' if s['metrics'] else 'off'}"),
        common.system_line(report["system"], report["matmul_peak"]),
    ]
    for r in report["rows"]:
        if r.get("profile"):
            lines.append(format_profile(r["blocks"], r["profile"]))
    return "\n".join(lines)


def format_profile(blocks: int, profile: dict) -> str:
    facts = (f"profile, blocks {blocks}, {profile['steps']} steps: {profile['wall_ms_per_step']} ms a step, of which "
             f"{profile['compiled_step_ms_per_step']} ms in the compiled step and "
             f"{profile['python_between_steps_ms_per_step']} ms in Python between steps; input pipeline get_next "
             f"{profile['pipeline_get_next_ms_per_step']} ms; op time {profile['op_ms_per_step']} ms a step "
             f"({profile['cores_busy']} cores busy)")
    table = common.format_table(["where", "ms a step", "share of op time"], [
        [name, f"{g['ms_per_step']:.1f}", f"{100 * g['share']:.1f}%"] for name, g in profile["groups"].items()])
    return facts + "\n" + table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 1, 2, 3], choices=[0, 1, 2, 3])
    parser.add_argument("--head", default="2mt", help="model head (default 2mt)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default 256; 16 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 10; 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; 1 with --quick)")
    parser.add_argument("--width", type=int, default=None, help="model.width (default: the config's)")
    parser.add_argument("--jit", action="store_true", help="compile the train step with XLA (train.jit_compile)")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 policy (train.mixed_precision)")
    parser.add_argument("--no-metrics", action="store_true", help="compile without the streaming metrics")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also trace STEPS more steps with TensorFlow's profiler: time by kind of op")
    parser.add_argument("--quick", action="store_true",
                        help="tiny widths, batch 16, 2 steps, small peak (tests; add --blocks 0 for the fastest)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    args.batch_size = args.batch_size or (16 if args.quick else 256)
    args.steps = args.steps or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    return args


def main(argv=None) -> int:
    return common.run_script(parse_args, run, format_report, argv)


if __name__ == "__main__":
    sys.exit(main())
