"""Before/after figures of the model-library speed changes, measured now on this machine.

    python benchmarks/speed_pass.py [--steps 6] [--json speed_pass.json]
    python benchmarks/speed_pass.py --layers-only      # the layer micro-benchmarks alone
    python benchmarks/speed_pass.py --in-version b9a8e1c bench_inference.py --threads 1
                                    # any benchmark script, run against one version of the model files

Two parts:

1. Whole model, one version per speed change. For each commit below, a temporary copy of today's
   `va2att` package gets that commit's `va2att/layers/` and `va2att/model.py` (`git show`); everything
   else (trainer, losses, metrics, flops) is today's, so only the network differs. In a fresh process
   per version: training images/s (blocks 2, head 2mt, batch 256, the trainer's compiled model,
   median step, as benchmarks/bench_train.py), forward MFLOPs per image, and inference with
   `model(x, training=False)` in a tf.function at batch 1 (median ms) and 256 (faces/s).

   - 82dda93  the model library as first written: Keras BatchNormalization, strided 1x1 shortcut
              conv, level vectors = 1x1 conv (ReLU) at full resolution then GAP;
   - 89e300a  fused batch norm (`FusedBatchNormalization`) and slice-then-1x1 shortcut;
   - 4ec508c  level vectors: GAP, then the linear 1x1 conv (no ReLU);
   - b9a8e1c  BN momentum 0.9 (not the cost), still the slice shortcut;
   - HEAD     today's files: since 07ebdc9 the shortcut's `x[:, ::2, ::2]` is a 1x1 stride-2
              average pool (the same elements).

2. Layer micro-benchmarks (forward + backward in training mode, batch 256, on the backbone's
   stage-1 map 24x24x32): Keras `BatchNormalization` vs `FusedBatchNormalization`; strided 1x1
   conv vs `x[:, ::2, ::2]` + 1x1 conv; level vector conv-then-GAP vs GAP-then-conv.

Each version runs in its own process, so a crash (oneDNN's strided 1x1 kernel crashed on some
small shapes, the reason for 89e300a's shortcut) is reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # benchmarks/common.py: puts the repository on sys.path; machine facts, matmul peak

VERSIONS = (
    ("82dda93", "model library: Keras BN, strided 1x1 shortcut, level conv+ReLU at full resolution"),
    ("89e300a", "+ fused batch norm, slice-then-1x1 shortcut"),
    ("4ec508c", "+ level vectors: GAP, then linear 1x1 conv"),
    ("b9a8e1c", "BN momentum 0.9 (same cost); slice shortcut"),
    ("HEAD", "today's working tree: shortcut subsampled by a 1x1 stride-2 average pool (07ebdc9)"),
)
MODEL_FILES = ("va2att/model.py", "va2att/layers")

_CHILD = r"""
import json, sys, time
overlay, benchmarks, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, overlay)
import va2att
assert va2att.__file__.startswith(overlay), va2att.__file__
sys.path.insert(0, benchmarks)
import bench_train, common
import numpy as np, tensorflow as tf
from va2att.config import ModelConfig
from va2att.model import build_model

cfg = ModelConfig()
r = bench_train.time_training(cfg, batch, steps, 2)
train = common.summarize_times(r["wall"])
model = build_model(cfg)
forward = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, 48, 48, 1])])
rng = np.random.default_rng(0)
one = rng.uniform(0, 255, (1, 48, 48, 1)).astype("float32")
many = rng.uniform(0, 255, (256, 48, 48, 1)).astype("float32")
call = lambda x: {k: v.numpy() for k, v in forward(tf.constant(x)).items()}
b1 = common.summarize_times(common.time_calls(lambda: call(one), calls=200, warmup=5))
b256 = common.summarize_times(common.time_calls(lambda: call(many), calls=15, warmup=2))
print("RESULT " + json.dumps({
    "train_images_per_s": round(batch / (train["median_ms"] / 1000), 1),
    "train_step": train,
    "forward_mflops_per_image": round(r["forward_flops"] / 1e6, 2),
    "parameters": r["parameters"],
    "infer_batch1_median_ms": b1["median_ms"],
    "infer_batch256_faces_per_s": round(256 / (b256["median_ms"] / 1000), 1),
}))
"""


def overlay_package(commit: str, dest: Path) -> Path:
    """A copy of today's va2att package with `commit`'s model.py and layers/ (HEAD = working tree as is)."""
    shutil.copytree(common.REPO / "va2att", dest / "va2att", ignore=shutil.ignore_patterns("__pycache__"))
    if commit == "HEAD":
        return dest
    shutil.rmtree(dest / "va2att" / "layers")
    listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", commit, "--", *MODEL_FILES],
                             cwd=common.REPO, check=True, capture_output=True, text=True).stdout.split()
    for path in listing:
        blob = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=common.REPO, check=True,
                              capture_output=True).stdout
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    return dest


def measure_version(commit: str, steps: int, batch: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"speed_pass_{commit}_") as tmp:
        overlay = overlay_package(commit, Path(tmp))
        env = dict(os.environ)
        if threads:
            env["TF_NUM_INTRAOP_THREADS"] = str(threads)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(overlay), str(Path(__file__).resolve().parent),
                               str(steps), str(batch)], check=False, capture_output=True, text=True, env=env, cwd=tmp)
        wall = round(time.perf_counter() - start, 1)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "process_s": wall}
    return {"error": f"exit code {proc.returncode}", "stderr_tail": proc.stderr[-1500:], "process_s": wall}


_RUN_SCRIPT = r"""
import runpy, sys
overlay, script = sys.argv[1], sys.argv[2]
sys.path.insert(0, overlay)
import va2att
assert va2att.__file__.startswith(overlay), va2att.__file__
print(f"va2att from {overlay}", flush=True)
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


def run_in_version(commit: str, script: str, script_args: list[str]) -> int:
    """Run benchmarks/<script> with `commit`'s model files (see `overlay_package`); its exit code."""
    path = Path(__file__).resolve().parent / script
    with tempfile.TemporaryDirectory(prefix=f"speed_pass_{commit}_") as tmp:
        overlay = overlay_package(commit, Path(tmp))
        return subprocess.run([sys.executable, "-c", _RUN_SCRIPT, str(overlay), str(path), *script_args],
                              check=False).returncode


def _time_grad(fn, variables, x, calls):
    import tensorflow as tf

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * y)
        grads = tape.gradient(loss, [x, *variables])
        return loss, grads

    return common.summarize_times(common.time_calls(lambda: step(x)[0].numpy(), calls=calls, warmup=2))["median_ms"]


def layer_benchmarks(calls: int = 20) -> list[dict]:
    """Forward + backward (training mode) of each changed layer before and after, batch 256, 24x24x32."""
    import keras
    import numpy as np
    import tensorflow as tf

    from va2att.layers import FusedBatchNormalization

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((256, 24, 24, 32)).astype(np.float32))
    rows = []

    def pair(name, before_label, before, after_label, after):
        b = _time_grad(before[0], before[1], x, calls)
        a = _time_grad(after[0], after[1], x, calls)
        rows.append({"change": name, "before": before_label, "before_ms": b, "after": after_label, "after_ms": a,
                     "speedup": round(b / a, 2)})

    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    fused = FusedBatchNormalization(momentum=0.9, epsilon=1e-3)
    plain.build(x.shape)
    fused.build(x.shape)
    pair("batch norm 256x24x24x32",
         "keras.layers.BatchNormalization", (lambda t: plain(t, training=True), plain.trainable_variables),
         "FusedBatchNormalization", (lambda t: fused(t, training=True), fused.trainable_variables))

    strided = keras.layers.Conv2D(64, 1, strides=2, padding="same", use_bias=False)
    sliced = keras.layers.Conv2D(64, 1, padding="same", use_bias=False)
    strided.build(x.shape)
    sliced.build(x.shape)
    pair("shortcut 1x1, 24x24x32 -> 12x12x64",
         "strided 1x1 conv", (strided, strided.trainable_variables),
         "x[:, ::2, ::2] + 1x1 conv", (lambda t: sliced(t[:, ::2, ::2, :]), sliced.trainable_variables))

    conv_first = keras.layers.Conv2D(128, 1, activation="relu")
    conv_after = keras.layers.Conv2D(128, 1)
    conv_first.build(x.shape)
    conv_after.build((256, 1, 1, 32))
    pooled = keras.layers.Conv2D(64, 1, padding="same", use_bias=False)
    pooled.build(x.shape)
    pair("shortcut subsampling (proposal)",
         "x[:, ::2, ::2] + 1x1 conv", (lambda t: sliced(t[:, ::2, ::2, :]), sliced.trainable_variables),
         "1x1 avg pool stride 2 + 1x1 conv", (lambda t: pooled(tf.nn.avg_pool2d(t, 1, 2, "VALID")),
                                             pooled.trainable_variables))

    pair("level vector 24x24x32 -> 128",
         "1x1 conv (ReLU) then GAP", (lambda t: tf.reduce_mean(conv_first(t), axis=[1, 2]), conv_first.trainable_variables),
         "GAP then 1x1 conv", (lambda t: tf.reshape(conv_after(tf.reduce_mean(t, axis=[1, 2], keepdims=True)), [256, 128]),
                               conv_after.trainable_variables))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per version (default 6)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--versions", nargs="+", default=[v for v, _ in VERSIONS], help="commits to measure")
    parser.add_argument("--layers-only", action="store_true", help="only the layer micro-benchmarks")
    parser.add_argument("--in-version", nargs=argparse.REMAINDER, metavar="VERSION SCRIPT [OPTIONS]",
                        help="run a benchmark script with its options (all that follows) against one version")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.in_version is not None:
        if len(args.in_version) < 2 or not args.in_version[1].endswith(".py"):
            parser.error("--in-version needs a version and a script, e.g. --in-version HEAD bench_inference.py")
        return run_in_version(args.in_version[0], Path(args.in_version[1]).name, args.in_version[2:])
    threads = common.configure_threads(args.threads, args.inter_threads)
    report = {"benchmark": "speed_pass", "threads": threads, "matmul_peak": common.peak_or_none(args)}
    report["layers"] = layer_benchmarks()
    print(common.format_table(["change", "before", "ms", "after", "ms", "speed-up"],
                              [[r["change"], r["before"], f"{r['before_ms']:.1f}", r["after"], f"{r['after_ms']:.1f}",
                                f"{r['speedup']:.2f}x"] for r in report["layers"]], align="llrlrr"), flush=True)
    report["versions"] = []
    if not args.layers_only:
        notes = dict(VERSIONS)
        for commit in args.versions:
            r = {"commit": commit, "change": notes.get(commit, ""), **measure_version(commit, args.steps,
                                                                                        args.batch_size, args.threads)}
            report["versions"].append(r)
            print(f"{commit}: {r.get('train_images_per_s', r.get('error'))} training images/s", flush=True)
        rows = []
        for r in report["versions"]:
            if "error" in r:
                rows.append([r["commit"], r["change"], r["error"], "", "", "", ""])
                continue
            rows.append([r["commit"], r["change"], f"{r['forward_mflops_per_image']:.1f}",
                         f"{r['train_images_per_s']:.0f}", f"{r['train_step']['median_ms']:.0f}",
                         f"{r['infer_batch1_median_ms']:.2f}", f"{r['infer_batch256_faces_per_s']:.0f}"])
        print(common.format_table(["commit", "change", "fwd MFLOPs/img", "train images/s", "step ms",
                                   "infer b1 ms", "infer b256 faces/s"], rows, align="llrrrrr"))
    report["system"] = common.system_report()
    print(common.system_line(report["system"], report["matmul_peak"]))
    common.write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
