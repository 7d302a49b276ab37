"""Evaluate a trained model on a split, with flip averaging, and write a report.

    python evaluate.py --model runs/2att-2mt                       # the run's own data, validation split
    python evaluate.py --model runs/2att-2mt/export/va2att/1 --data /data/AffectNet --json metrics.json
    python evaluate.py --model runs/affwild2 --smooth 0.5 1 2      # video data: also smoothed over time

Writes metrics.json, report.md, circumplex.png, confusion.png and (for a run
folder) curves.png into --out (default RUN_DIR/eval-<split>, or eval/<name>-<split>).
The same as `va2att-evaluate` or `python -m va2att.cli.evaluate`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from va2att.cli import add_verbose_flag, program_name, quiet_tensorflow


def parse(argv):
    p = argparse.ArgumentParser(prog=program_name("va2att.cli.evaluate"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="run folder, .keras or .tflite file, SavedModel folder or export root")
    p.add_argument("--data", help="'demo', an AffectNet root or a prepared folder (default: the run's data, else demo)")
    p.add_argument("--split", default="validation", choices=("validation", "training"),
                   help="the split to score (default validation; AffectNet has no public test set)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    p.add_argument("--out", metavar="DIR", help="report folder (default RUN_DIR/eval-<split>, else eval/<name>-<split>)")
    p.add_argument("--classes", type=int, choices=(8, 7), help="expression classes to score (default: the model's)")
    p.add_argument("--batch-size", type=int, default=256, help="faces per network call (default 256)")
    p.add_argument("--runtime", default="auto", choices=("auto", "savedmodel", "litert"),
                   help="what runs an export: its SavedModel, its LiteRT model (model.tflite), or auto (default: "
                        "LiteRT without a GPU, the SavedModel with one); a .keras or .tflite file "
                        "runs as what it is")
    p.add_argument("--smooth", type=float, nargs="+", metavar="SECONDS",
                   help="video data sets: also score the predictions smoothed over each video's last SECONDS "
                        "(causal, as predict --smooth); several windows give one row each")
    p.add_argument("--smooth-fps", type=float, default=30.0, metavar="FPS",
                   help="frame rate that turns frame numbers into seconds for --smooth (default 30, Aff-Wild2's)")
    p.add_argument("--cache-dir", help="cache for the demo set and prepared data "
                                       "(default $VA2ATT_CACHE or ~/.cache/va2att)")
    add_verbose_flag(p)
    args = p.parse_args(argv)
    if args.smooth and (min(args.smooth) < 0 or not args.smooth_fps > 0):
        p.error(f"--smooth takes seconds >= 0 and --smooth-fps a rate > 0 (received {args.smooth}, {args.smooth_fps})")
    return args


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(args.verbose)
    try:
        return _evaluate(args)
    except KeyboardInterrupt:
        print("\nInterrupted; nothing was written. Run the same command again.", file=sys.stderr)
        return 130


def _evaluate(args) -> int:
    from va2att.config import DataConfig
    from va2att.data.source import run_data
    from va2att.evaluation.evaluate import evaluate
    from va2att.run_dir import RunDir, load_run_config
    from va2att.serving.loading import load_inference_model
    from va2att.serving.provenance import warn_if_synthetic

    model_path = Path(args.model)
    run = RunDir(model_path) if RunDir.is_run_dir(model_path) else None
    try:
        run_cfg = load_run_config(model_path) if run else None
        model = load_inference_model(model_path, runtime=args.runtime)
    except (OSError, ValueError) as e:
        print(f"error: cannot load a model from {model_path}: {e}", file=sys.stderr)
        return 2
    data_cfg = run_cfg.data if run_cfg else DataConfig()
    data_cfg = dataclasses.replace(data_cfg, data=args.data or data_cfg.data, batch_size=args.batch_size)
    out = Path(args.out) if args.out else (run.root / f"eval-{args.split}" if run else
                                          Path("eval") / f"{model_path.resolve().name}-{args.split}")
    problem = _unwritable([out / "metrics.json", *([Path(args.json)] if args.json else [])])
    if problem:  # before the evaluation, not after it
        print(f"error: {problem}", file=sys.stderr)
        return 2
    warn_if_synthetic(model_path, data=data_cfg.data)  # a synthetic-trained model scored on real faces
    seed = run_cfg.train.seed if run_cfg else 0
    num_classes = args.classes or getattr(model, "num_classes", None) or (run_cfg.model.num_classes if run_cfg else 8)
    try:  # the run's own data is read where the run prepared it
        prepared = run_data(run, data_cfg, args.cache_dir, record=False) if run and not args.data else None
        evaluation = evaluate(model, data_cfg, args.split, num_classes, seed=seed, cache_dir=args.cache_dir,
                              prepared=prepared, smooth=args.smooth or (), fps=args.smooth_fps)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _write_report(args, out, run, model_path, data_cfg, num_classes, evaluation)
    print((out / "report.md").read_text())
    print(f"Report, metrics and plots in {out}")
    return 0


def _unwritable(paths) -> str | None:
    """Why one of the output files `paths` cannot be written, or None."""
    from va2att.util.storage import unwritable

    for path in paths:
        problem = unwritable(path, folder=False)
        if problem:
            return f"cannot write {path}: {problem}."
    return None


def _write_report(args, out: Path, run, model_path: Path, data_cfg, num_classes: int, evaluation) -> None:
    """metrics.json (and --json), report.md, the circumplex, the confusion matrix and the run's curves."""
    import numpy as np

    from va2att.config import EXPRESSION_NAMES
    from va2att.evaluation import plots
    from va2att.evaluation.evaluate import markdown_report
    from va2att.util import fileio

    result, predictions, labels = evaluation.metrics, evaluation.predictions, evaluation.labels
    name = model_path.resolve().name
    meta = {"model": str(model_path), "data": data_cfg.data, "split": args.split, "classes": num_classes}
    report = dict(meta, **result)
    fileio.write_json(out / "metrics.json", report)
    if args.json:
        fileio.write_json(args.json, report)
    fileio.write_text(out / "report.md", markdown_report(result, f"Evaluation of {name}", meta))
    if "valence" in predictions and "arousal" in predictions:
        va = np.isfinite(labels["valence"]) & np.isfinite(labels["arousal"])  # frames with V/A labels
        plots.circumplex(out / "circumplex.png", predictions["valence"][va], predictions["arousal"][va],
                         true_valence=labels["valence"][va], true_arousal=labels["arousal"][va],
                         title=f"{name}: predicted (dots) vs true valence-arousal, {args.split}")
    if "expression" in result:
        plots.confusion_matrix(out / "confusion.png", result["expression"]["confusion"],
                               list(EXPRESSION_NAMES[:num_classes]), title=f"{name}: expression, {args.split}")
    if run and run.history.is_file():
        plots.training_curves(out / "curves.png", run.history)


if __name__ == "__main__":
    sys.exit(main())
