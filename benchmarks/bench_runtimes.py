"""The two runtimes of an export in one process, over the batch sizes Predictor and evaluate use: what
`runtime="auto"` chooses between on a machine without a GPU.

    python benchmarks/bench_runtimes.py [--seconds 1.5] [--rounds 2] [--sizes 2 8 20 60 64 128 256]
    python benchmarks/bench_runtimes.py --quick      # tiny network, short cells: checks the script runs

The default model (untrained weights, which do not change the cost) is exported once with its LiteRT
model, then loaded three times with `load_inference_model`: `runtime="savedmodel"`, `"litert"` and
`"auto"`. All three live in one process, as in `Predictor` (where MTCNN runs in TensorFlow beside the
interpreter), and take turns: per round, per batch size, each runtime runs for `--seconds`. A cell is
faces/s (NumPy in, NumPy out) per round. Without a GPU `auto` is the LiteRT model (in chunks of
`va2att.serving.litert.CHUNK` faces), which should be as fast as the SavedModel or faster at every size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # benchmarks/common.py: puts the repository on sys.path, quiets TF logging

RUNTIMES = ("savedmodel", "litert", "auto")
QUICK_MODEL = {"width": 8, "level_dim": 16, "gru_units": 8, "dimensional_units": 16, "categorical_units": 16}


def run(args) -> dict:
    import keras
    import numpy as np

    from va2att.config import INPUT_SIZE, ModelConfig
    from va2att.model.flops import count_flops
    from va2att.model.network import build_model
    from va2att.serving.export import export_saved_model
    from va2att.serving.litert import CHUNK
    from va2att.serving.loading import gpu_visible, load_inference_model

    threads = common.configure_threads(args.threads, args.inter_threads)
    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(**(QUICK_MODEL if args.quick else {})))
    flops = count_flops(model)
    peak = common.peak_or_none(args, quick=args.quick)
    rng = np.random.default_rng(0)
    cells: dict[str, dict[int, list[float]]] = {r: {n: [] for n in args.sizes} for r in RUNTIMES}
    with tempfile.TemporaryDirectory(prefix="bench_runtimes_") as tmp:
        version = export_saved_model(model, Path(tmp) / "export", litert=("float32",))
        loaded = {r: load_inference_model(version, runtime=r, batch_size=max(args.sizes)) for r in RUNTIMES}
        kinds = {r: m.kind for r, m in loaded.items()}
        for _ in range(args.rounds):
            for n in args.sizes:
                faces = rng.uniform(0, 255, (n, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)
                for runtime, inference in loaded.items():
                    times = common.time_calls(lambda inference=inference, faces=faces: inference(faces), seconds=args.seconds)
                    cells[runtime][n].append(round(n * len(times) / sum(times), 1))
    return {
        "settings": {"sizes": args.sizes, "seconds": args.seconds, "rounds": args.rounds, "quick": args.quick,
                     "threads": threads, "litert_chunk": CHUNK, "gpu_visible": gpu_visible()},
        "kinds": kinds,
        "faces_per_s": {r: {str(n): v for n, v in by_size.items()} for r, by_size in cells.items()},
        "auto_fraction_of_peak": {str(n): common.fraction_of_peak(flops * max(cells["auto"][n]) / 1e9, peak)
                                  for n in args.sizes},
        "forward_flops": flops,
        "system": common.system_report(),
        "matmul_peak": peak,
    }


def format_report(report: dict) -> str:
    sizes = report["settings"]["sizes"]
    header = ["runtime (what runs it)"] + [f"{n} faces" for n in sizes]
    rows = [[f"{r} ({report['kinds'][r]})"] + [", ".join(f"{v:,.0f}" for v in report["faces_per_s"][r][str(n)])
                                                for n in sizes] for r in RUNTIMES]
    fractions = report["auto_fraction_of_peak"]
    rows.append(["auto, best round, of peak"] + ["" if fractions[str(n)] is None else f"{100 * fractions[str(n)]:.1f}%"
                                                 for n in sizes])
    lines = [common.format_table(header, rows),
             "faces/s per round; " + ("a GPU is visible: auto is the SavedModel" if report["settings"]["gpu_visible"]
                                      else f"auto is the LiteRT model, in chunks of {report['settings']['litert_chunk']} faces"),
             f"forward MFLOPs per face {report['forward_flops'] / 1e6:.1f}",
             common.system_line(report["system"], report["matmul_peak"])]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="faces per call (default 2 8 20 60 64 128 256; 2 16 with --quick)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per cell (default 1.5; 0.1 with --quick)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over every size and runtime (default 2)")
    parser.add_argument("--quick", action="store_true", help="tiny network, two sizes, short cells (tests)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([2, 16] if args.quick else [2, 8, 20, 60, 64, 128, 256])
    args.seconds = args.seconds or (0.1 if args.quick else 1.5)
    return args


def main(argv=None) -> int:
    return common.run_script(parse_args, run, format_report, argv)


if __name__ == "__main__":
    sys.exit(main())
