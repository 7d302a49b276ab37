"""Run a table's variants, resume or skip what is done, aggregate over repeats, render.

Layout under `--out`:

```
OUT/<table>/<variant>/seed<k>/           one trainer run folder per (variant, repeat)
OUT/<table>/<variant>-<part>/seed<k>/    rows combined from several runs (2Att-CNN: -valence, -arousal)
OUT/<table>/.../seed<k>/metrics.json     flip-averaged validation metrics of the run's best model
OUT/<table>.md                           the table: ours (mean ± std over repeats) beside the paper
OUT/<table>.json                         every run's metrics behind it
```

A run whose export and metrics.json exist is finished and is not redone; a run
folder without them is continued with `trainer.train` (which resumes from its
last epoch checkpoint), then evaluated. A run folder whose config differs from
the one the table asks for is an error, never silently reused.
"""

from __future__ import annotations

import math
from pathlib import Path

from va2att.config import to_dict
from va2att.experiments import ordering
from va2att.experiments.tables import Part, Table, Variant, run_config
from va2att.run_dir import RunDir
from va2att.util import fileio

METRICS_FILE = "metrics.json"
DEMO_LABEL = "demo set (synthetic) — not comparable with the paper's AffectNet figures"
LABELS = {"valence": "V", "arousal": "A", "mean": "mean", "expression": "expression"}
MEASURES = {"ccc": "CCC", "rmse": "RMSE", "pcc": "PCC", "sagr": "SAGR", "accuracy": "Accuracy", "macro_f1": "macro-F1"}
FLAT_KEYS = [f"{o}.{m}" for o in ("valence", "arousal", "mean") for m in ("ccc", "rmse", "pcc", "sagr")] + [
    "expression.accuracy", "expression.macro_f1"]


class ConfigMismatchError(ValueError):
    pass


def run_dir_for(out: Path, table: Table, variant: Variant, part: Part, seed: int) -> Path:
    name = f"{variant.slug}-{part.name}" if part.name else variant.slug
    return Path(out) / table.name / name / f"seed{seed}"


def data_label(data: str, smoke: bool = False) -> str:
    from va2att.data.layouts import detect_layout
    from va2att.data.synthetic import DEMOS

    layout = None if data in DEMOS else detect_layout(data)
    if data == "demo":
        label = DEMO_LABEL
    elif data in DEMOS:
        label = f"the {data} set (synthetic, docs/reproducing.md) — not comparable with the paper's AffectNet figures"
    elif layout is not None:
        label = f"{layout.title} validation set (`{data}`)"
    else:
        label = f"validation split of the prepared data at `{data}`"
    if smoke:
        label += "; smoke run (tiny network, 2 epochs): the figures only show that the pipeline runs"
    return label


def is_finished(run_dir: Path) -> bool:
    run = RunDir(run_dir)
    exported = run.export_root.is_dir() and any(
        (p / "saved_model.pb").is_file() for p in run.export_root.iterdir() if p.is_dir())
    return exported and (run.root / METRICS_FILE).is_file()


def _config_differences(saved: dict, wanted: dict) -> list[str]:
    return [f"{section}.{k}: {saved.get(section, {}).get(k)!r} in the folder, {v!r} asked for"
            for section, values in wanted.items() for k, v in values.items()
            if saved.get(section, {}).get(k) != v]


def check_config(run_dir: Path, cfg) -> None:
    """Refuse to reuse a run folder that holds a run of another config."""
    saved = fileio.read_json(RunDir(run_dir).config)["config"]
    diffs = _config_differences(saved, to_dict(cfg))
    if diffs:
        raise ConfigMismatchError(
            f"{run_dir} holds a run with another config ({'; '.join(diffs)}). Choose another --out, or "
            f"remove that folder to train it again.")


def find_twin(out: Path, cfg, classes: int | None, exclude: Path) -> Path | None:
    """A finished run under `out` (any table) of the same config, scored on the same classes, or None.

    Tables share rows (the default 2Att-2Mt is a row of Tables 2-5 and the GCN comparison; Table 1's
    2nd-level is Table 3's 2Att-Mt): such a row is trained once per seed and linked from the others."""
    wanted = to_dict(cfg)
    for config in sorted(Path(out).glob("*/*/seed*/config.json")):
        folder = config.parent
        if folder.is_symlink() or folder == exclude or not is_finished(folder):
            continue
        try:
            saved = fileio.read_json(config)["config"]
            record = fileio.read_json(folder / METRICS_FILE)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _config_differences(saved, wanted) and record.get("classes") == (classes or cfg.model.num_classes):
            return folder
    return None


def link_twin(run_dir: Path, twin: Path) -> None:
    """Make `run_dir` a relative symbolic link to the finished run `twin`."""
    import os

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.symlink_to(os.path.relpath(twin, run_dir.parent), target_is_directory=True)


def evaluate_run(run_dir: Path, cfg, classes: int | None, cache_dir=None, log=print) -> dict:
    """Flip-averaged metrics of the run's exported best model on the validation split of its data."""
    from va2att.evaluation.evaluate import evaluate
    from va2att.serving.loading import load_inference_model

    model = load_inference_model(run_dir)
    return evaluate(model, cfg.data, "validation", classes or cfg.model.num_classes, seed=cfg.train.seed,
                    cache_dir=cache_dir, log=log).metrics


def ensure_run(run_dir: Path, cfg, *, classes: int | None = None, cache_dir=None, argv=(), verbose=2,
               shared: Path | None = None, log=print) -> dict | None:
    """Train (or resume) and evaluate one run; return its metrics.json content, or None if interrupted.

    With `shared` (an experiments folder), a run folder not yet made whose run another table there
    already finished (`find_twin`) is linked to that run instead of training it again."""
    from va2att.training import trainer

    run_dir = Path(run_dir)
    if not run_dir.exists() and not run_dir.is_symlink() and shared is not None:
        twin = find_twin(shared, cfg, classes, exclude=run_dir)
        if twin is not None:
            link_twin(run_dir, twin)
            log(f"{run_dir}: the same run as {twin}, linked (not trained again).")
    if RunDir.is_run_dir(run_dir):
        check_config(run_dir, cfg)
        if is_finished(run_dir):
            log(f"{run_dir}: finished run found, metrics read back (not retrained).")
            return fileio.read_json(run_dir / METRICS_FILE)
        log(f"{run_dir}: unfinished run found, resuming it.")
    else:
        trainer.start_run(cfg, run_dir, list(argv))
        log(f"{run_dir}: training.")
    import keras

    keras.backend.clear_session()
    result = trainer.train(run_dir, cache_dir=cache_dir, verbose=verbose, log=log)
    if result.interrupted:
        return None
    metrics = evaluate_run(run_dir, cfg, classes, cache_dir=cache_dir, log=log)
    record = {
        "run_dir": str(run_dir),
        "epochs_done": result.epochs_done,
        "best_epoch": result.best_epoch,
        "best_val_mean_ccc": result.best_mean_ccc,
        "export": str(result.export_dir) if result.export_dir else None,
        "classes": classes or cfg.model.num_classes,
        "faces": metrics["n"],
        "metrics": metrics,
    }
    fileio.write_json(run_dir / METRICS_FILE, record)
    m = metrics.get("mean", {}).get("ccc")
    log(f"{run_dir}: done" + (f", validation CCC mean {m:.3f}" if m is not None else "") + ".")
    return record


def flatten(metrics: dict) -> dict[str, float]:
    """`{"valence": {"ccc": x}}` -> `{"valence.ccc": x}` for the keys a table can show."""
    flat = {}
    for key in FLAT_KEYS:
        out, _, measure = key.partition(".")
        if isinstance(metrics.get(out), dict) and measure in metrics[out]:
            flat[key] = float(metrics[out][measure])
    return flat


def combine(part_records: list[tuple[Part, dict]]) -> dict[str, float]:
    """One row's metrics from its runs: each part supplies its outputs; the mean is re-derived."""
    row: dict[str, float] = {}
    for part, record in part_records:
        flat = flatten(record["metrics"])
        row.update({k: v for k, v in flat.items() if k.partition(".")[0] in part.supplies})
    if len(part_records) > 1:
        for measure in ("ccc", "rmse", "pcc", "sagr"):
            v, a = row.get(f"valence.{measure}"), row.get(f"arousal.{measure}")
            if v is not None and a is not None:
                row[f"mean.{measure}"] = (v + a) / 2
    return row


def summarize(rows: list[dict[str, float]]) -> dict[str, dict]:
    """Mean, sample standard deviation (0 for one repeat) and count of each metric over repeats."""
    keys = sorted({k for r in rows for k in r})
    out = {}
    for k in keys:
        values = [r[k] for r in rows if k in r]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((x - mean) ** 2 for x in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        out[k] = {"mean": mean, "std": std, "n": len(values)}
    return out


def collect(table: Table, out: Path, repeats: int, *, smoke: bool, data: str, overrides=()) -> dict:
    """The report of a table from the finished runs under `out` (unfinished ones are left out)."""
    variants = []
    for variant in table.variants:
        entry: dict = {"name": variant.name, "folder": variant.slug if variant.trained else None,
                       "paper": dict(variant.paper), "reference_only": not variant.trained, "repeats": []}
        if variant.trained:
            rows = []
            for seed in range(repeats):
                parts = []
                for part in variant.runs():
                    run_dir = run_dir_for(out, table, variant, part, seed)
                    if is_finished(run_dir):
                        parts.append((part, fileio.read_json(run_dir / METRICS_FILE)))
                if len(parts) == len(variant.runs()):
                    row = combine(parts)
                    rows.append(row)
                    entry["repeats"].append({"seed": seed, "row": row, "runs": [
                        dict(record, part=part.name or None) for part, record in parts]})
            entry["summary"] = summarize(rows)
        variants.append(entry)
    return {"table": table.name, "title": table.title, "data": data, "data_label": data_label(data, smoke),
            "smoke": smoke, "repeats": repeats, "overrides": list(overrides), "metrics": list(table.metrics),
            "note": table.note, "variants": variants}


def _header(key: str) -> str:
    out, _, measure = key.partition(".")
    if out == "expression":
        return MEASURES[measure]
    return f"{MEASURES[measure]} {LABELS[out]}"


def _ours(entry: dict, key: str) -> str:
    if entry["reference_only"]:
        return "—"
    s = entry["summary"].get(key)
    if not s:
        return "not run"
    return f"{s['mean']:.3f} ± {s['std']:.3f}" if s["n"] > 1 else f"{s['mean']:.3f}"


def render(report: dict, command: str | None = None) -> str:
    """The table as Markdown: for each metric our figure (mean ± std over repeats) and the paper's."""
    keys = report["metrics"]
    lines = [f"### {report['title']}", "", f"Data: {report['data_label']}.", ""]
    done = [len(v["repeats"]) for v in report["variants"] if not v["reference_only"]]
    lines.append(f"Ours: flip-averaged validation metrics of each run's best epoch, mean ± std over "
                 f"{report['repeats']} repeat(s) (seeds 0..{report['repeats'] - 1})"
                 + ("" if all(d == report["repeats"] for d in done) else
                    f"; finished so far: {', '.join(str(d) for d in done)} per trained row") + ". "
                 "Paper: the 2Att-2Mt paper's AffectNet figures (— where it gives none).")
    if report["overrides"]:
        lines.append(f"Overrides: `{' '.join(report['overrides'])}`.")
    if command:
        lines.append(f"Command: `{command}`")
    lines.append("")
    cols = [c for k in keys for c in (f"{_header(k)} (ours)", f"{_header(k)} (paper)")]
    lines += ["| Model | " + " | ".join(cols) + " |", "|---" + "|---:" * len(cols) + "|"]
    for entry in report["variants"]:
        cells = [c for k in keys for c in (
            _ours(entry, k), f"{entry['paper'][k]:.3f}" if k in entry["paper"] else "—")]
        lines.append(f"| {entry['name']} | " + " | ".join(cells) + " |")
    order = ordering.describe(ordering.compare(report))
    if order:
        lines += [""] + order
    if report["note"]:
        lines += ["", report["note"]]
    return "\n".join(lines) + "\n"


def write_outputs(report: dict, out: Path, command: str | None = None) -> tuple[Path, Path]:
    out = Path(out)
    md = fileio.write_text(out / f"{report['table']}.md", render(report, command))
    js = fileio.write_json(out / f"{report['table']}.json", dict(report, command=command))
    return md, js


def run_table(table: Table, *, data: str, out, repeats: int, smoke: bool = False, cache_dir=None, overrides=(),
              variants: tuple[str, ...] = (), command: str | None = None, argv=(), verbose=2,
              log=print) -> dict | None:
    """Train/resume every run of `table` (repeats x variants x parts), then write OUT/<table>.md and .json.

    Returns the report, or None when training was interrupted (the finished runs are rendered anyway).
    `variants` restricts the runs to the rows of those names (the table still shows every row).
    """
    out = Path(out)
    wanted = [v for v in table.trained() if not variants or v.name in variants or v.slug in variants]
    unknown = set(variants) - {v.name for v in table.trained()} - {v.slug for v in table.trained()}
    if unknown:
        raise ValueError(f"Unknown variant(s) {sorted(unknown)} of {table.name}: choose from "
                         f"{', '.join(v.slug for v in table.trained())}.")
    # Build every config first, so that a bad override fails before hours of training.
    plan = [(v, p, seed, run_config(v, p, data=data, seed=seed, smoke=smoke, overrides=overrides))
            for seed in range(repeats) for v in wanted for p in v.runs()]
    for i, (variant, part, seed, cfg) in enumerate(plan, 1):
        run_dir = run_dir_for(out, table, variant, part, seed)
        log(f"[{table.name} {i}/{len(plan)}] {variant.name}{' (' + part.name + ')' if part.name else ''}, "
            f"seed {seed}")
        record = ensure_run(run_dir, cfg, classes=variant.classes, cache_dir=cache_dir, argv=argv, shared=out,
                            verbose=verbose, log=log)
        report = collect(table, out, repeats, smoke=smoke, data=data, overrides=overrides)
        write_outputs(report, out, command)
        if record is None:
            log(f"Interrupted; the finished runs are in {out / (table.name + '.md')}. Run the same command "
                f"again to continue.")
            return None
    report = collect(table, out, repeats, smoke=smoke, data=data, overrides=overrides)
    write_outputs(report, out, command)
    return report
