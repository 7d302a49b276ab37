"""The layout of a training run folder, in one place.

```
RUN_DIR/config.json            full RunConfig and the command line
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
