"""Where a trained model comes from, and a clear word when that makes its outputs meaningless.

A training run records its provenance: the data set that trained it (name, kind, size), the va2att
version and git commit, and its best validation scores. It goes into `RUN_DIR/provenance.json`,
into the SavedModel (`assets.extra/va2att.json` under "provenance", and a `provenance` signature
that a served model answers with the same JSON, asked by `va2att.serving.remote.served_provenance`)
and is read back by `read_provenance(model_path)` for a run folder, a `.keras` file inside one, or a
SavedModel.

A model trained on the synthetic demo set has learnt drawn faces whose mouth curve and brows encode
valence and arousal; on real faces its outputs mean nothing. `warn_if_synthetic` says so once per
model and process when such a model is used on anything else (predict, `Predictor`, the serving
client, evaluate on other data), with the command that trains a real model.

Record (JSON):
```
{"format": "va2att-provenance-v1",
 "data": {"data": "demo" | PATH, "kind": "synthetic" | "real", "name": str, "root": PATH | null,
          "training_faces": int | null, "validation_faces": int | null},
 "va2att_version": str, "git_commit": str | null,
 "training": {"epochs": int, "best_epoch": int | null, "best_mean_ccc": float | null,
              "best_metrics": {"val_valence_ccc": float, ...}},
 "created": ISO time}
```
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

PROVENANCE_FILE = "provenance.json"
SYNTHETIC_MARKER = "va2att-synthetic.json"  # written by va2att.data.synthetic.affectnet.generate into the set's root
SYNTHETIC, REAL = "synthetic", "real"
REAL_TRAINING_COMMAND = "python train.py --blocks 2 --data /data/AffectNet --out runs/2att-2mt"
_BEST_METRICS = ("val_valence_ccc", "val_arousal_ccc", "val_valence_rmse", "val_arousal_rmse",
                 "val_expression_accuracy", "val_loss")
_warned: set[str] = set()


def git_commit(folder: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding `folder` (default: va2att's own source), or None."""
    folder = Path(folder or Path(__file__).resolve().parent)
    try:
        proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and len(commit) == 40 else None


def describe_data(data: str, prepared) -> dict:
    """Name, kind and size of the data behind `--data` (`prepared`: its prepared folder, when known).

    A mixture (`--data` given twice: `data` joined by os.pathsep, `prepared` a tuple of folders) is
    described part by part and summed; it counts as synthetic only when every part is."""
    if isinstance(prepared, (tuple, list)):
        names = str(data).split(os.pathsep)
        if len(names) != len(prepared):
            names = [str(p) for p in prepared]
        parts = [describe_data(n, p) for n, p in zip(names, prepared)]
        total = {k: sum(p[k] or 0 for p in parts) for k in ("training_faces", "validation_faces")}
        return {
            "data": data,
            "kind": SYNTHETIC if all(p["kind"] == SYNTHETIC for p in parts) else REAL,
            "name": " + ".join(p["name"] for p in parts),
            "root": [p["root"] for p in parts],
            **total,
        }
    report = {}
    if prepared is not None and (Path(prepared) / "report.json").is_file():
        try:
            report = json.loads((Path(prepared) / "report.json").read_text())
        except (OSError, ValueError):
            report = {}
    root = report.get("root")
    synthetic = str(data).startswith("demo") or any(
        p is not None and (Path(p) / SYNTHETIC_MARKER).is_file() for p in (root, data))
    if str(data).startswith("demo"):
        name = f"the built-in synthetic {data} set" if data != "demo" else "the built-in synthetic demo set (drawn faces)"
    else:
        name = Path(root or data).name or str(root or data)
        name = f"{name} (synthetic drawn faces)" if synthetic else name
    splits = report.get("splits") or {}
    return {
        "data": data,
        "kind": SYNTHETIC if synthetic else REAL,
        "name": name,
        "root": root,
        "training_faces": (splits.get("training") or {}).get("written"),
        "validation_faces": (splits.get("validation") or {}).get("written"),
    }


def make_record(data: dict, state: dict) -> dict:
    """The provenance of a run: `data` from `describe_data`, `state` the run's checkpoint state."""
    from va2att import __version__

    best = state.get("best_epoch")
    row = next((h for h in state.get("history", []) if h.get("epoch") == best), {})
    return {
        "format": "va2att-provenance-v1",
        "data": data,
        "va2att_version": __version__,
        "git_commit": git_commit(),
        "training": {
            "epochs": state.get("epoch"),
            "best_epoch": best,
            "best_mean_ccc": state.get("best_mean_ccc"),
            "best_metrics": {k: row[k] for k in _BEST_METRICS if k in row},
        },
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _from_run(run_root: Path) -> dict | None:
    from va2att.util import fileio

    if (run_root / PROVENANCE_FILE).is_file():
        record = fileio.read_json(run_root / PROVENANCE_FILE)
        return record if isinstance(record, dict) else None
    config = run_root / "config.json"
    if not config.is_file():
        return None
    data = _path(fileio.read_json(config), "config", "data", "data")
    return {"format": "va2att-provenance-v1", "data": describe_data(data, None)} if isinstance(data, str) else None


def _path(document, *keys):
    """`document[k1][k2]...`, or None where a level is missing or not a JSON object."""
    for key in keys:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def read_provenance(model_path: str | os.PathLike) -> dict | None:
    """The provenance of whatever `load_inference_model(model_path)` loads, or None when unknown.

    A SavedModel carries its own (and so does the LiteRT model beside it); a `.keras` file or a run folder is
    read from its run folder
    (`provenance.json`, else the data named in `config.json`). A file of another shape, or one that is
    no JSON, counts as unknown: None, never an exception."""
    from va2att.serving.loading import resolve_model_path

    try:
        resolved = resolve_model_path(model_path)
    except (OSError, ValueError):
        return None
    version = resolved.parent if resolved.suffix == ".tflite" else resolved  # a LiteRT model of an export version
    meta = version / "assets.extra" / "va2att.json"
    if version.is_dir() and meta.is_file():
        try:
            found = _path(json.loads(meta.read_text()), "provenance")
        except (OSError, ValueError, RecursionError):
            found = None
        if isinstance(found, dict) and found:
            return found
    for folder in [resolved, *resolved.parents][:5]:  # SavedModel in RUN/export/va2att/N, or RUN/best.keras
        if (folder / "config.json").is_file():
            try:
                return _from_run(folder)
            except (OSError, ValueError, RecursionError):  # a damaged run folder: the provenance is unknown
                return None
    return None


def is_synthetic(provenance: dict | None) -> bool:
    return _path(provenance, "data", "kind") == SYNTHETIC


def synthetic_warning(model: str, provenance: dict) -> str:
    data = provenance.get("data") or {}
    size = data.get("training_faces")
    faces = f" ({size} faces)" if size else ""
    return (
        f"warning: {model} was trained on {data.get('name', 'synthetic data')}{faces}, not on photos of real "
        "faces. It has learnt how drawn mouths and brows encode valence and arousal; on real faces its "
        "valence, arousal and expression mean nothing. For real photos, train on AffectNet (its licence "
        f"allows no shipped weights; a GPU takes hours): {REAL_TRAINING_COMMAND} "
        "- or use weights a colleague trained with --model (a run folder, .keras file or SavedModel)."
    )


def warn_if_synthetic(model, provenance: dict | None = None, *, data: str | None = None, stream=None) -> bool:
    """Warn once per model and process when a model trained on synthetic faces is used on other data.

    Args:
        model: the model's path (or a name for it).
        provenance: its record; None = `read_provenance(model)`.
        data: the data it is used on: None for photos (always other data); a `--data` value for
            evaluation, where the synthetic set itself draws no warning.
        stream: where to write (default stderr).

    Returns:
        True when the warning applies (printed now or earlier in this process).
    """
    provenance = read_provenance(model) if provenance is None else provenance
    if not is_synthetic(provenance):
        return False
    if data is not None and describe_data(data, data if data != "demo" else None)["kind"] == SYNTHETIC:
        return False
    key = str(model)
    if key not in _warned:
        _warned.add(key)
        print(synthetic_warning(str(model), provenance), file=stream or sys.stderr, flush=True)
    return True
