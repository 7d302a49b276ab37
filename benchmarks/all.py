"""Every benchmark of the current default model in one command, and their tables in one Markdown file.

    python benchmarks/all.py [--out bench-results] [--write BENCHMARKS.md]
    python benchmarks/all.py --quick --out /tmp/bench     # every script with --quick: checks they all run
    python benchmarks/all.py --out bench-results --tables-only --write BENCHMARKS.md   # the tables of that run again

Runs each script of `BENCHMARKS` below in a process of its own (TensorFlow fixes its thread pools once per
process), one after the other, with `--json OUT/NAME.json` (its figures) and its console output in
`OUT/NAME.txt`. Then writes `OUT/tables.md`: per benchmark its command, when it ran, the machine line
(CPU, cores, TensorFlow threads, oneDNN, load average, the float32 matmul peak of that run) and its tables,
as the script prints them. A script that fails is listed with its exit status and the others still run.
With `--write BENCHMARKS.md` the tables also replace what stands between the two `MARKERS` lines there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # benchmarks/common.py: puts the repository on sys.path

# (name, script, arguments, what it measures). Sizes chosen so the whole run takes about half an hour on
# two cores; each script's own defaults take longer.
BENCHMARKS = (
    ("serving", "bench_serving.py", ["--rounds", "3"],
     "serving_default and the LiteRT model over batch sizes, per thread setting, as a fraction of the peak"),
    ("compare", "bench_compare.py", ["--rounds", "8"],
     ("batch-1 latency and batch-256 throughput beside the FER CNN, EfficientNet-B0 and MobileNetV2 "
      "(TensorFlow's default threads)")),
    ("compare-intra1", "bench_compare.py", ["--rounds", "8", "--threads", "1"],
     "the same with one intra-op thread, the CPU server's setting"),
    ("inference", "bench_inference.py", ["--calls", "200", "--batch-calls", "10"],
     "the Keras paths, the SavedModel and the LiteRT model at batch 1 and 256"),
    ("runtimes", "bench_runtimes.py", [],
     "the SavedModel, the LiteRT model and auto (both) in one process over the batch sizes Predictor and evaluate use"),
    ("train", "bench_train.py", ["--blocks", "2", "--steps", "8", "--profile", "3"],
     "training images/s of the default model and where a step's time goes"),
    ("train-jit", "bench_train.py", ["--blocks", "2", "--steps", "4", "--jit"],
     "the same training step compiled by XLA (train.jit_compile)"),
    ("predict", "bench_predict.py", ["--seconds", "4"],
     "Predictor on photos and video frames, and the detector's recall"),
    ("data", "bench_data.py", [], "synthetic generation, preparation, the input pipeline against training"),
    ("gpu-train", "bench_gpu_train.py", ["--faces", "6000", "--steps", "10", "--modes", "float32"],
     "the GPU training script on this machine's CPU: real pipeline, float32 (no GPU here)"),
    ("video", "bench_video.py", ["--minutes", "1"], "predict on a one-minute video (benchmarks/bench_video.py)"),
)
QUICK = {"bench_serving.py": ["--quick"], "bench_compare.py": ["--quick"], "bench_inference.py": ["--quick"],
         "bench_runtimes.py": ["--quick"],
         "bench_train.py": ["--quick", "--blocks", "0", "--profile", "2"], "bench_predict.py": ["--quick"],
         "bench_data.py": ["--quick"], "bench_gpu_train.py": ["--quick"], "bench_video.py": ["--quick"]}
MARKERS = ("<!-- benchmarks/all.py: begin -->", "<!-- benchmarks/all.py: end -->")


def run_one(name: str, script: str, arguments: list[str], out: Path, quick: bool) -> dict:
    """Run one benchmark script; what happened (command, exit status, seconds, when)."""
    arguments = QUICK.get(script, ["--quick"]) if quick else arguments
    command = [sys.executable, str(HERE / script), *arguments, "--json", str(out / f"{name}.json")]
    shown = " ".join(["python", f"benchmarks/{script}", *arguments])
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"[{started}] {shown}", flush=True)
    begin = time.perf_counter()
    with open(out / f"{name}.txt", "w") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    return {"name": name, "script": script, "command": shown, "status": status, "started": started,
            "seconds": round(time.perf_counter() - begin, 1)}


def rendered(script: str, report: dict) -> str:
    """A report as its own script prints it (its `format_report` or `format_table`)."""
    if script == "bench_data.py":
        return _data_table(report)
    module = importlib.import_module(Path(script).stem)
    formatter = getattr(module, "format_report", None) or module.format_table
    return formatter(report)


def _data_table(report: dict) -> str:
    rows = [[key, r["items"], r["wall_s"], r["per_s"], r.get("per_cpu_s") or ""]
            for key, r in report.items() if isinstance(r, dict) and "per_s" in r]
    lines = [common.format_table(["row", "items", "wall s", "per s", "per CPU s"], rows)]
    for name, target in report.get("targets", {}).items():
        lines.append(f"target {name} {target['target']}: {target['value']} -> {'met' if target['met'] else 'MISSED'}")
    if "system" in report:
        lines.append(common.system_line(report["system"], report.get("matmul_peak")))
    return "\n".join(lines)


def tables(runs: list[dict], out: Path) -> str:
    """The Markdown of every run: heading, command, time, then its tables (or why there are none)."""
    parts = []
    for run in runs:
        what = next(b[3] for b in BENCHMARKS if b[0] == run["name"])
        parts.append(f"### {run['name']}: {what}\n\n`{run['command']}`: started {run['started']}, "
                     f"{run['seconds']:.0f} s.\n")
        report_file = out / f"{run['name']}.json"
        if run["status"] != 0 or not report_file.is_file():
            parts.append(f"Not measured: the script ended with exit status {run['status']} "
                         f"(its output: `{out.name}/{run['name']}.txt`).\n")
            continue
        parts.append(as_markdown(rendered(run["script"], json.loads(report_file.read_text()))))
    return "\n".join(parts)


def as_markdown(text: str) -> str:
    """A script's printed report as Markdown: its tables (lines starting with "|") as they are, the lines between
    them in `text` blocks (aligned columns and figures stay as printed), a blank line between the two."""
    blocks: list[tuple[bool, list[str]]] = []
    for line in text.rstrip().splitlines():
        is_table = line.startswith("|")
        if blocks and blocks[-1][0] == is_table:
            blocks[-1][1].append(line)
        else:
            blocks.append((is_table, [line]))
    out = []
    for is_table, lines in blocks:
        lines = lines if is_table else ["```text", *(line for line in lines if line.strip()), "```"]
        if len(lines) > 2 or is_table:
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def write_between_markers(document: Path, text: str) -> None:
    """Replace what stands between `MARKERS` in `document` by `text` (the markers must be there, once each)."""
    content = document.read_text()
    begin, end = content.find(MARKERS[0]), content.find(MARKERS[1])
    if begin < 0 or end < begin:
        raise SystemExit(f"error: {document} has no '{MARKERS[0]}' ... '{MARKERS[1]}' section to replace")
    from va2att.util.fileio import write_text

    write_text(document, content[: begin + len(MARKERS[0])] + "\n\n" + text.rstrip() + "\n\n" + content[end:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for the reports (default bench-results)")
    parser.add_argument("--only", nargs="+", choices=[b[0] for b in BENCHMARKS], help="run only these")
    parser.add_argument("--write", type=Path, metavar="FILE.md", help="also put the tables between the markers of FILE.md")
    parser.add_argument("--quick", action="store_true", help="every script with --quick (tests; figures mean nothing)")
    parser.add_argument("--tables-only", action="store_true",
                        help="run nothing: write the tables of the run already in --out (its runs.json)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tables_only:
        runs = json.loads((args.out / "runs.json").read_text())
    else:
        runs = [run_one(name, script, arguments, args.out, args.quick) for name, script, arguments, _ in BENCHMARKS
                if (not args.only or name in args.only) and (HERE / script).is_file()]
    text = tables(runs, args.out)
    (args.out / "tables.md").write_text(text)
    (args.out / "runs.json").write_text(json.dumps(runs, indent=2) + "\n")
    print(f"wrote {args.out / 'tables.md'}")
    if args.write:
        write_between_markers(args.write, text)
        print(f"wrote the tables into {args.write}")
    return 0 if all(r["status"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
