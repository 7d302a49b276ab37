"""Serving at the machine's limit: each runtime and thread setting over a sweep of batch sizes, as a fraction of the
float32 matmul peak, and where the time goes, op type by op type.

    python benchmarks/bench_serving.py [--batches 1 8 32 64 128 256] [--rounds 5] [--json bench_serving.json]
    python benchmarks/bench_serving.py --quick      # tiny network, two batch sizes, one round: checks the script runs

One export of the default model (`export_saved_model`: the folded `serving_default` and `model.tflite`), random
weights with batch-norm statistics as after training (the cost does not depend on the weights). Each setting
runs in a worker process of its own, since TensorFlow fixes its thread pools once per process:
  - `savedmodel, TF default threads`: `serving_default` through `tf.saved_model.load`, intra- and inter-op
    pools at TensorFlow's default (one thread per core each);
  - `savedmodel, intra-op 1`: one intra-op thread, the default inter-op pool: what docker/compose.yaml gives
    the CPU server (`--tensorflow_intra_op_parallelism=1`);
  - `savedmodel, oneDNN off`: TensorFlow's own kernels (`TF_ENABLE_ONEDNN_OPTS=0`), default threads;
  - `litert, N threads`: `model.tflite` in the `ai-edge-litert` interpreter (XNNPACK), for each N of
    `--litert-threads` (default 1 and the cores); these workers import no TensorFlow;
  - `litert float16` and `litert int8`: the quantised variants (`model-float16.tflite`,
    `model-int8.tflite`) with the cores as threads (not with --quick);
  - `LiteRTModel ...`: what va2att runs (`va2att.serving.litert.LiteRTModel`, `runtime="auto"` without a
    GPU): the float32 and int8 models with the cores as threads, each batch in chunks of `litert.CHUNK`
    faces (the rows above run the whole batch in one call, as TF Serving's `--prefer_tflite_model` and
    a phone app that sends a batch do).
The workers take turns: in each of `--rounds` rounds every worker runs once, so load from other processes
falls on every setting alike. In its turn a TensorFlow worker measures the float32 matmul peak with its
own threads (`common.matmul_peak`: chains of 2048 x 2048 products), then every worker times its calls at
each batch size (NumPy in, NumPy out). Per setting and batch: the fastest call over all rounds and the
median, faces/s, GFLOP/s (faces/s x forward FLOPs of `count_flops`), the fraction of the machine's peak
(the best matmul rate of the TensorFlow-default worker: every core), and the cores the worker used
(its CPU time / wall time during its calls: under 1.0 per thread means other processes took the rest).

Profile (the TensorFlow workers, batch `--profile-batch`): one call traced in a session (as TF Serving runs
the SavedModel), the time of every node summed by op type, and for the convolutions and matrix products
their FLOPs and GFLOP/s by output map size (48x48 ... 6x6, and the dense head).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # benchmarks/common.py: puts the repository on sys.path, quiets TF logging

QUICK_MODEL = {"width": 8, "level_dim": 16, "gru_units": 8, "dimensional_units": 16, "categorical_units": 16}
TF_DEFAULT = "savedmodel, TF default threads"
TF_INTRA1 = "savedmodel, intra-op 1 (compose)"
TF_ONEDNN_OFF = "savedmodel, oneDNN off"
GOALS = {"fastest_runtime": 0.60, "serving_default": 0.50}  # fraction of the machine's peak at the largest batch


def worker_specs(args) -> list[dict]:
    """The settings, one worker process each: name, runtime, TensorFlow threads, environment, LiteRT threads."""
    specs = [{"name": TF_DEFAULT, "runtime": "savedmodel", "intra": 0, "inter": 0, "env": {}},
             {"name": TF_INTRA1, "runtime": "savedmodel", "intra": 1, "inter": 0, "env": {}}]
    if not args.quick:
        specs.append({"name": TF_ONEDNN_OFF, "runtime": "savedmodel", "intra": 0, "inter": 0,
                      "env": {"TF_ENABLE_ONEDNN_OPTS": "0"}})
    for threads in args.litert_threads or ([1] if args.quick else [1, common.usable_cores()]):
        specs.append({"name": f"litert, {threads} thread{'s' if threads > 1 else ''}", "runtime": "litert",
                      "threads": threads, "file": "model.tflite", "env": {}})
    if not args.quick:  # the quantised variants, with the threads load_inference_model gives the interpreter
        for variant in ("float16", "int8"):
            specs.append({"name": f"litert {variant}, {common.usable_cores()} threads", "runtime": "litert",
                          "threads": common.usable_cores(), "file": f"model-{variant}.tflite", "env": {}})
    for file in ("model.tflite",) if args.quick else ("model.tflite", "model-int8.tflite"):
        variant = "int8" if "int8" in file else "float32"
        specs.append({"name": f"LiteRTModel {variant} (chunks), {common.usable_cores()} threads",
                      "runtime": "litert-chunks", "threads": common.usable_cores(), "file": file, "env": {}})
    unique = {spec["name"]: spec for spec in specs}  # 1 and the cores may be the same
    return list(unique.values())


# --------------------------------------------------------------------------------------------- worker


class Worker:
    """One setting in its own process: `turn(batches)` runs one round there and returns its figures."""

    def __init__(self, spec: dict, export: Path, quick: bool):
        env = dict(os.environ, **spec["env"], PYTHONUNBUFFERED="1")
        command = [sys.executable, __file__, "--worker", json.dumps(spec), "--export", str(export)]
        self.spec = spec
        self.process = subprocess.Popen([*command, *(["--quick"] if quick else [])], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.spec['name']} ended (exit status {self.process.wait()})")
        return json.loads(line)

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _tf_model(export: Path, spec: dict):
    common.configure_threads(spec["intra"], spec["inter"])
    import tensorflow as tf

    signature = tf.saved_model.load(str(export)).signatures["serving_default"]

    def call(x):
        return {k: v.numpy() for k, v in signature(image=tf.constant(x)).items()}

    call.keep = signature
    return call


def _litert_model(export: Path, spec: dict):
    from ai_edge_litert.interpreter import Interpreter

    interpreters = {}  # one per batch size, as a server keeps one sized for its batches

    def call(x):
        if len(x) not in interpreters:
            interpreter = Interpreter(model_path=str(export / spec["file"]), num_threads=spec["threads"])
            interpreters[len(x)] = interpreter.get_signature_runner("serving_default")
        return interpreters[len(x)](image=x)

    return call


def _litert_chunks(export: Path, spec: dict):
    from va2att.serving.litert import LiteRTModel

    return LiteRTModel(export / spec["file"], threads=spec["threads"])


def _time_batch(call, x, seconds: float) -> dict:
    """Call times (s) at one batch size for about `seconds` (at least 3 calls), and the CPU time they took."""
    call(x)  # warm: the first call at a size allocates
    times, cpu = [], time.process_time()
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - t)
    return {"times": times, "cores": (time.process_time() - cpu) / max(time.perf_counter() - start, 1e-9)}


def run_worker(spec: dict, export: Path, quick: bool) -> int:
    """The worker's loop: build the setting, then answer one JSON line per request on stdin."""
    import numpy as np

    call = {"savedmodel": _tf_model, "litert": _litert_model, "litert-chunks": _litert_chunks}[spec["runtime"]](export, spec)
    rng = np.random.default_rng(0)
    print(json.dumps({"ready": spec["name"], "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict = {}
        if request.get("peak") and spec["runtime"] == "savedmodel":
            answer["peak"] = common.matmul_peak(n=512, chain=2, best_of=1) if quick else \
                common.matmul_peak(best_of=2)
        if request.get("profile") and spec["runtime"] == "savedmodel":
            answer["profile"] = op_profile(export, request["profile"], repeats=1 if quick else 3)
        answer["batches"] = {}
        for batch in request.get("batches", []):
            x = rng.uniform(0, 255, (batch, 48, 48, 1)).astype(np.float32)
            answer["batches"][str(batch)] = _time_batch(call, x, request["seconds"])
        answer["load_average"] = common.load_average()
        print(json.dumps(answer), flush=True)
    return 0


# -------------------------------------------------------------------------------------------- profile


def op_profile(export: Path, batch: int, repeats: int = 3) -> dict:
    """Time by op type of one `serving_default` call at `batch`, traced in a session (the fastest of `repeats`),
    and the FLOPs and GFLOP/s of its convolutions and matrix products by output map size."""
    import numpy as np
    import tensorflow as tf

    x = np.random.default_rng(1).uniform(0, 255, (batch, 48, 48, 1)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(export))
        signature = meta_graph.signature_def["serving_default"]
        feed = {signature.inputs["image"].name: x}
        fetches = {k: v.name for k, v in signature.outputs.items()}
        session.run(fetches, feed)
        best = None
        for _ in range(repeats):
            metadata = tf.compat.v1.RunMetadata()
            options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE,
                                              output_partition_graphs=True)
            start = time.perf_counter()
            session.run(fetches, feed, options=options, run_metadata=metadata)
            wall = time.perf_counter() - start
            if best is None or wall < best[0]:
                best = (wall, metadata)
    return {**_summarise_trace(*best, _faces_per_network_call(batch)), "batch": batch,
            "faces_per_network_call": _faces_per_network_call(batch)}


def _faces_per_network_call(batch: int) -> int:
    """Faces in each call of the network within one `serving_default` call: on a CPU a batch above
    `batch_chunks.CHUNK` runs as equal chunks (va2att.serving.batch_chunks)."""
    from va2att.serving.batch_chunks import CHUNK

    chunks = -(-batch // CHUNK)
    return batch if batch <= CHUNK else -(-batch // chunks)


CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")  # a function's call: its time is its own nodes'


def _partition_graphs(metadata) -> list:
    """The graphs one traced call ran: the top level's and those of the functions it called (the chunk loop)."""
    return [*metadata.partition_graphs, *(p for f in metadata.function_graphs for p in f.partition_graphs)]


def _constant_shapes(metadata) -> dict[str, list[int]]:
    shapes = {}
    for partition in _partition_graphs(metadata):
        for node in partition.node:
            if node.op == "Const":
                shapes[node.name] = [d.size for d in node.attr["value"].tensor.tensor_shape.dim]
    return shapes


def _node_flops(node_stat, inputs: list[str], constants: dict) -> float:
    """Multiply-add FLOPs of a convolution or matrix-product node from its output and its constant weights."""
    output = [d.size for d in node_stat.output[0].tensor_description.shape.dim] if node_stat.output else []
    weights = next((constants[name.split(":")[0]] for name in inputs if name.split(":")[0] in constants
                    and len(constants[name.split(":")[0]]) in (2, 4)), None)
    if not output or weights is None:
        return 0.0
    if len(weights) == 4:  # conv kernel [kh, kw, in, out], output [N, H, W, out]
        return 2.0 * math.prod(output) * weights[0] * weights[1] * weights[2]
    return 2.0 * math.prod(output) * weights[0]  # matmul weights [in, out], output [rows, out]


def _summarise_trace(wall: float, metadata, batch: int) -> dict:
    """By op type and by map size; `batch` is the faces of each network call (matrix products' rows are
    faces x map positions)."""
    inputs = {node.name: list(node.input) for p in _partition_graphs(metadata) for node in p.node}
    constants = _constant_shapes(metadata)
    by_op: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    by_map: dict = collections.defaultdict(lambda: [0.0, 0.0])
    for device in metadata.step_stats.dev_stats:
        for stat in device.node_stats:
            op = stat.timeline_label.split("=", 1)[-1].strip().split("(")[0] if "=" in stat.timeline_label else ""
            if not op or op in ("_Arg", "_Retval", "NoOp", "Const", *CALL_OPS):
                continue
            micros = stat.op_end_rel_micros - stat.op_start_rel_micros
            by_op[op] += micros
            counts[op] += 1
            if "MatMul" in op or "Conv2D" in op:
                flops = _node_flops(stat, inputs.get(stat.node_name, []), constants)
                dims = [d.size for d in stat.output[0].tensor_description.shape.dim] if stat.output else []
                rows = dims[0] // batch if len(dims) == 2 and dims[0] >= batch else 0
                side = math.isqrt(rows) if rows else (dims[1] if len(dims) == 4 else 0)
                key = f"{side}x{side}" if side > 1 and (not rows or side * side == rows) else \
                    "head and GRU (dense)"
                by_map[key][0] += flops
                by_map[key][1] += micros
    total = sum(by_op.values())
    return {
        "batch": batch, "wall_ms": round(1000 * wall, 2), "op_ms": round(total / 1000, 2),
        "by_op": [{"op": op, "nodes": counts[op], "ms": round(us / 1000, 2), "share": round(us / total, 4)}
                  for op, us in by_op.most_common()],
        "contractions_by_map": {key: {"gflop": round(f / 1e9, 3), "ms": round(us / 1000, 2),
                                      "gflops": round(f / us / 1e3, 1) if us else None}
                                for key, (f, us) in sorted(by_map.items(), key=lambda kv: -kv[1][0])},
    }


# ---------------------------------------------------------------------------------------------- parent


def export_default(folder: Path, quick: bool) -> tuple[Path, float, dict]:
    """The default model (tiny with --quick), exported with its LiteRT model; (version folder, forward FLOPs, facts)."""
    import keras
    from bench_compare import trained_like_weights

    from va2att.config import ModelConfig
    from va2att.model.flops import count_flops
    from va2att.model.network import build_model
    from va2att.serving.export import export_saved_model

    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(**(QUICK_MODEL if quick else {})))
    trained_like_weights(model)
    flops = count_flops(model)
    path = export_saved_model(model, folder / "va2att", litert=("float32",) if quick else ("float16", "int8"))
    return path, flops, {"config": QUICK_MODEL if quick else "ModelConfig() defaults",
                         "parameters": int(model.count_params()), "forward_mflops_per_image": round(flops / 1e6, 2)}


def run(args) -> dict:
    common.configure_threads(args.threads, args.inter_threads)
    load_before = common.load_average()
    rounds: dict = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        export, flops, model = export_default(Path(tmp), args.quick)
        workers = [Worker(spec, export, args.quick) for spec in worker_specs(args)]
        pids = [worker.ready["pid"] for worker in workers]
        try:
            for r in range(args.rounds):
                for worker in workers:
                    request = {"peak": not args.no_peak, "batches": args.batches, "seconds": args.seconds,
                               "profile": args.profile_batch if r == args.rounds - 1 else None}
                    rounds[worker.spec["name"]].append(worker.ask(request))
                    print(f"round {r + 1}/{args.rounds}: {worker.spec['name']}", flush=True)
        finally:
            for worker in workers:
                worker.close()
    report = summarise(args, rounds, flops, model, load_before)
    report["settings"]["worker_pids"] = pids  # ended and reaped by now
    return report


def _peak(rounds: list[dict]) -> dict | None:
    rates = [r["peak"]["gflops"] for r in rounds if r.get("peak")]
    return {"best_gflops": max(rates), "median_gflops": round(statistics.median(rates), 1)} if rates else None


def summarise(args, rounds: dict, flops: float, model: dict, load_before) -> dict:
    machine = _peak(rounds.get(TF_DEFAULT, []))
    rows = []
    for name, answers in rounds.items():
        for batch in args.batches:
            times = [t for a in answers for t in a["batches"][str(batch)]["times"]]
            medians = [statistics.median(a["batches"][str(batch)]["times"]) for a in answers]
            best, median = min(times), statistics.median(medians)
            gflops = batch / best * flops / 1e9
            rows.append({
                "setting": name, "batch": batch, "best_ms": round(1000 * best, 3), "median_ms": round(1000 * median, 3),
                "faces_per_s": round(batch / best, 1), "faces_per_s_median": round(batch / median, 1),
                "gflops": round(gflops, 1),
                "fraction_of_peak": round(gflops / machine["best_gflops"], 4) if machine else None,
                "fraction_of_peak_median": round(batch / median * flops / 1e9 / machine["median_gflops"], 4)
                if machine else None,
                "cores_used": round(statistics.median(a["batches"][str(batch)]["cores"] for a in answers), 2),
                "own_threads_peak": _peak(answers),
            })
    largest = max(args.batches)
    at_largest = [r for r in rows if r["batch"] == largest]
    fastest = max(at_largest, key=lambda r: r["faces_per_s"])
    default = next(r for r in at_largest if r["setting"] == TF_DEFAULT)
    compose = next(r for r in at_largest if r["setting"] == TF_INTRA1)
    goals = {}
    if machine:
        goals = {
            "fastest_runtime": _goal(fastest, GOALS["fastest_runtime"]),
            "serving_default_tf_default_threads": _goal(default, GOALS["serving_default"]),
            "serving_default_compose_threads": _goal(compose, GOALS["serving_default"]),
        }
    profiles = {name: answers[-1]["profile"] for name, answers in rounds.items() if answers[-1].get("profile")}
    return {
        "benchmark": "serving", "system": common.system_report(), "load_average_before": load_before,
        "load_averages": {name: [a["load_average"] for a in answers] for name, answers in rounds.items()},
        "matmul_peak": machine and {"gflops": machine["best_gflops"], "median_gflops": machine["median_gflops"],
                                    "n": 512 if args.quick else 2048, "threads": "TensorFlow default (every core)"},
        "settings": {"batches": args.batches, "rounds": args.rounds, "seconds": args.seconds,
                     "workers": [s["name"] for s in worker_specs(args)], "quick": args.quick},
        "model": model, "rows": rows, "goals": goals, "profiles": profiles,
    }


def _goal(row: dict, target: float) -> dict:
    return {"setting": row["setting"], "batch": row["batch"], "target": f">= {target:.0%}",
            "value": row["fraction_of_peak"], "value_median": row["fraction_of_peak_median"],
            "met": row["fraction_of_peak"] >= target}


def format_report(report: dict) -> str:
    header = ["setting", "batch", "best ms", "median ms", "faces/s (best)", "GFLOP/s", "of peak (best)",
              "of peak (median)", "cores used"]
    rows = [[r["setting"], r["batch"], f"{r['best_ms']:.2f}", f"{r['median_ms']:.2f}", f"{r['faces_per_s']:,.0f}",
             f"{r['gflops']:.1f}", _percent(r["fraction_of_peak"]), _percent(r["fraction_of_peak_median"]),
             f"{r['cores_used']:.2f}"] for r in report["rows"]]
    lines = [common.format_table(header, rows, align="lrrrrrrrr")]
    for name, goal in report["goals"].items():
        lines.append(f"goal {name} ({goal['setting']}, batch {goal['batch']}) {goal['target']}: "
                     f"{_percent(goal['value'])} (median {_percent(goal['value_median'])}) -> "
                     f"{'met' if goal['met'] else 'MISSED'}")
    for name, profile in report["profiles"].items():
        lines.append(f"\nprofile, {name}, batch {profile['batch']} ({profile.get('faces_per_network_call', '?')} "
                     f"faces a network call): call {profile['wall_ms']} ms, node time {profile['op_ms']} ms")
        lines.append(common.format_table(["op", "nodes", "ms", "share"], [
            [p["op"], p["nodes"], f"{p['ms']:.2f}", _percent(p["share"])] for p in profile["by_op"][:14]]))
        by_map = profile["contractions_by_map"]
        if any(v["gflop"] for v in by_map.values()):
            lines.append(common.format_table(["convolutions and matrix products by map", "GFLOP", "ms", "GFLOP/s"], [
                [k, v["gflop"], v["ms"], v["gflops"]] for k, v in by_map.items()]))
        else:  # the trace names no weights of nodes run inside a function (the chunk loop): time only
            lines.append(common.format_table(["convolutions and matrix products by map", "ms"], [
                [k, v["ms"]] for k, v in by_map.items()]))
    peak = report["matmul_peak"]
    lines.append(f"model: {report['model']}; load average before {report['load_average_before']}")
    lines.append(common.system_line(report["system"], peak))
    return "\n".join(lines)


def _percent(value) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default 1 8 32 64 128 256)")
    parser.add_argument("--rounds", type=int, default=None, help="turns of every worker (default 5; 1 with --quick)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per batch size and turn (default 1)")
    parser.add_argument("--litert-threads", type=int, nargs="+", help="LiteRT interpreter threads (default 1 and the cores)")
    parser.add_argument("--profile-batch", type=int, default=None, help="batch of the op profile (default: the largest)")
    parser.add_argument("--quick", action="store_true", help="tiny network, batches 1 and 4, one round (tests)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    args.batches = args.batches or ([1, 4] if args.quick else [1, 8, 32, 64, 128, 256])
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.seconds = args.seconds if args.seconds is not None else (0.05 if args.quick else 1.0)
    args.profile_batch = args.profile_batch or max(args.batches)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(json.loads(args.worker), args.export, args.quick)
    return common.run_script(lambda _: args, run, format_report, argv)


if __name__ == "__main__":
    sys.exit(main())
