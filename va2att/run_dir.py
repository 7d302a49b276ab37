"""Everything about a training run folder, in one place: its layout (`RunDir`) and what reads its
committed state (`load_run_config`, `committed_state`, `completed_epochs`, `run_history`,
`read_data_record`).

```
RUN_DIR/config.json            full RunConfig and the command line
RUN_DIR/data.json              the prepared folders the run trains on (and the cache they were found in)
RUN_DIR/history.csv            one row per completed epoch
RUN_DIR/logs/                  TensorBoard event files
RUN_DIR/checkpoints/           epoch-NNN.weights.h5 (model + optimizer) and state.json
RUN_DIR/best.keras             best model by mean validation CCC
RUN_DIR/export/va2att/<N>/     SavedModel for TF Serving
RUN_DIR/export/va2att-xla/<N>/ optional: a SavedModel with the XLA signature, made by hand (docs/serving.md)
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from va2att.config import RunConfig, from_dict
from va2att.util import fileio

MODEL_NAME = "va2att"


@dataclasses.dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def data(self) -> Path:
        return self.root / "data.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def state(self) -> Path:
        return self.checkpoints / "state.json"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:03d}.weights.h5"

    @property
    def best(self) -> Path:
        return self.root / "best.keras"

    @property
    def adjacency(self) -> Path:
        return self.root / "adjacency.npy"

    @property
    def export_root(self) -> Path:
        return self.root / "export" / MODEL_NAME

    @property
    def xla_export_root(self) -> Path:
        """Exports with the `serving_xla` signature, kept apart: only a server started with
        `--xla_cpu_compilation_enabled=true` runs them (compose's `serving-cpu-xla`)."""
        return self.root / "export" / f"{MODEL_NAME}-xla"

    @staticmethod
    def is_run_dir(path) -> bool:
        return (Path(path) / "config.json").is_file()


def load_run_config(run_dir) -> RunConfig:
    """The `RunConfig` of the run in `run_dir` (FileNotFoundError / ValueError naming the file otherwise)."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise FileNotFoundError(f"{run.root} is not a run folder (no config.json).")
    try:
        return from_dict(fileio.read_json(run.config)["config"])
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(f"{run.config} is damaged and holds no usable run config ({type(error).__name__}: "
                         f"{error}); restore it or start a new run.") from None


def committed_state(run_dir) -> dict:
    """state.json of the run in `run_dir`: the record of its last committed epoch; {} when there is none or
    it cannot be read (a damaged state reads as no progress)."""
    run = RunDir(run_dir)
    if not run.state.is_file():
        return {}
    try:
        state = fileio.read_json(run.state)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def completed_epochs(run_dir) -> int:
    """Epochs the run in `run_dir` has committed (0 for a run that never finished one, or no run)."""
    try:
        return int(committed_state(run_dir).get("epoch") or 0)
    except (TypeError, ValueError):
        return 0


def run_history(run_dir) -> list[dict]:
    """The committed epochs' rows of the run in `run_dir` (state.json's "history"; empty when none)."""
    history = committed_state(run_dir).get("history")
    return [row for row in history if isinstance(row, dict)] if isinstance(history, list) else []


def read_data_record(run_dir) -> dict:
    """data.json of the run: `{"prepared": [folder, ...], "cache_dir": str | None}`; {} when there is none
    (a run folder from before the record existed) or it cannot be read."""
    run = RunDir(run_dir)
    try:
        record = fileio.read_json(run.data)
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or not isinstance(record.get("prepared"), list):
        return {}
    return record


def write_data_record(run_dir, prepared, cache_dir=None) -> None:
    """Record where the run's data was prepared (one folder or several), so that a resumed run reads it there."""
    folders = [prepared] if isinstance(prepared, (str, Path)) else list(prepared)
    fileio.write_json(RunDir(run_dir).data, {"prepared": [str(Path(p).resolve()) for p in folders],
                                             "cache_dir": None if cache_dir is None else str(Path(cache_dir).resolve())})
