"""Shared pieces of the benchmark scripts: thread settings, machine facts, the machine's own float32
matrix-multiply peak, timing helpers, a plain-text table and the JSON report.

Every script calls `configure_threads` before TensorFlow runs its first op, so the matmul peak and
the benchmark itself use the same intra-/inter-op thread pools; `system_report` records them with
the CPU model, core count, TensorFlow/Keras versions, whether oneDNN is on and whether a GPU is
visible, and the load average at the time (other processes on the machine slow every figure).

The peak is the best of several timed chains of `tf.linalg.matmul` on float32 `n x n` matrices
(2 n^3 FLOPs each); model figures are reported as a fraction of it ("fraction of peak").
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_THREADS = {"intra_op": 0, "inter_op": 0, "applied": False}


def add_common_args(parser, json_option: bool = True) -> None:
    """--json, --threads, --inter-threads, --no-peak: the options every benchmark script shares."""
    if json_option:
        parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON to this file")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra-op threads (default 0: TensorFlow's choice, one per core)")
    parser.add_argument("--inter-threads", type=int, default=0,
                        help="TensorFlow inter-op threads (default 0: TensorFlow's choice)")
    parser.add_argument("--no-peak", action="store_true", help="skip the float32 matmul peak measurement")


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> dict:
    """Set TensorFlow's thread pools; must run before TensorFlow executes anything.

    0 keeps TensorFlow's default (as many threads as cores). When TensorFlow is already running
    (e.g. a script's `main` called from a test) the pools cannot change; that is recorded, not raised.
    """
    import tensorflow as tf

    _THREADS.update(intra_op=intra_op, inter_op=inter_op)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
        _THREADS["applied"] = True
    except RuntimeError:
        _THREADS["applied"] = False
    return dict(_THREADS)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(wanted=("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")) -> list[str]:
    """The vector-instruction flags of the first CPU in /proc/cpuinfo that matter for float32/bfloat16 kernels."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN (MKL) kernels are on in this process."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # private module moved: fall back to the documented switch
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def system_report() -> dict:
    """Machine and software facts, thread settings and the current load average."""
    import keras
    import tensorflow as tf

    usable = usable_cores()
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": onednn_enabled(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "threads_applied": _THREADS["applied"],
        "load_average": load_average(),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def matmul_peak(n: int = 2048, chain: int = 4, best_of: int = 5) -> dict:
    """Best float32 matmul rate of this process, GFLOP/s.

    Each timed call runs a chain of `chain` dependent `n x n` products inside one `tf.function`
    (dependent, so the graph optimiser cannot merge them); the rate is that of the fastest of
    `best_of` calls after one warm-up call.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n)).astype(np.float32))
    # Scaled so that repeated products keep their magnitude (no overflow, no denormals).
    b = tf.constant((rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32))

    @tf.function
    def run(x, w):
        for _ in range(chain):
            x = tf.linalg.matmul(x, w)
        return tf.reduce_sum(x)

    run(a, b).numpy()
    times = []
    for _ in range(best_of):
        start = time.perf_counter()
        run(a, b).numpy()
        times.append(time.perf_counter() - start)
    flops = 2.0 * n**3 * chain
    return {
        "n": n,
        "chain": chain,
        "best_of": best_of,
        "gflops": round(flops / min(times) / 1e9, 1),
        "median_gflops": round(flops / statistics.median(times) / 1e9, 1),
    }


def peak_or_none(args, quick: bool = False) -> dict | None:
    if getattr(args, "no_peak", False):
        return None
    return matmul_peak(n=512, chain=2, best_of=2) if quick else matmul_peak()


def fraction_of_peak(gflops: float | None, peak: dict | None) -> float | None:
    if gflops is None or not peak or not peak.get("gflops"):
        return None
    return round(gflops / peak["gflops"], 4)


def time_calls(fn, calls: int | None = None, seconds: float | None = None, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of each call of `fn()` after `warmup` untimed calls.

    Runs `calls` calls, or as many as fit in `seconds` (at least 3), whichever is given.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if calls is not None and len(times) >= calls:
            break
        if calls is None and time.perf_counter() - start >= (seconds or 0) and len(times) >= 3:
            break
    return times


def summarize_times(times: list[float]) -> dict:
    """Median, 10th/90th percentile, mean and minimum of per-call times, in milliseconds."""
    ordered = sorted(times)

    def pct(q):
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "calls": len(times),
        "median_ms": round(1000 * statistics.median(times), 3),
        "p10_ms": round(1000 * pct(0.1), 3),
        "p90_ms": round(1000 * pct(0.9), 3),
        "mean_ms": round(1000 * statistics.fmean(times), 3),
        "min_ms": round(1000 * ordered[0], 3),
    }


def format_table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A Markdown table; `align` holds one of 'l'/'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]

    def line(values):
        return "| " + " | ".join(v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in cells)])


def system_line(system: dict, peak: dict | None) -> str:
    """One line that says where the figures were taken."""
    threads = system["intra_op_threads"] or "default"
    peak_text = f", float32 matmul peak {peak['gflops']:.1f} GFLOP/s (n={peak['n']})" if peak else ""
    return (
        f"{system['cpu_model']}, {system['usable_cores']} cores, intra-op threads {threads}, "
        f"TF {system['tensorflow']}, oneDNN {'on' if system['onednn'] else 'off'}, "
        f"GPU {', '.join(system['gpus']) or 'none'}, load average {system['load_average']}{peak_text}"
    )


def write_report(path, report: dict) -> None:
    """Write `report` as JSON to `path` atomically (a temporary file renamed into place)."""
    if path is None:
        return
    from va2att.util.fileio import write_json

    write_json(path, report)
    print(f"wrote {path}")


def run_script(parse_args, run, format_report, argv=None) -> int:
    """A benchmark script's `main`: parse its arguments, run it, print the report, write `--json`."""
    args = parse_args(argv)
    report = run(args)
    print(format_report(report))
    write_report(args.json, report)
    return 0
