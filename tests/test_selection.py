"""Training with a held-out selection split and with AffectNet's "None" faces, end to end on a tiny model."""

import dataclasses

import pytest
from conftest import TINY_MODEL

from va2att.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from va2att.training.trainer import start_run, train


@pytest.mark.large
def test_holdout_selection_and_none_faces_train_end_to_end(prepared, tmp_path):
    cfg = RunConfig(model=ModelConfig(**TINY_MODEL),
                    data=DataConfig(data=str(prepared), batch_size=8, selection="holdout", holdout_share=0.25,
                                    none_faces=True, deterministic=True),
                    train=TrainConfig(epochs=1))
    lines = []
    run = start_run(cfg, tmp_path / "run", ["test"])
    result = train(run.root, verbose=0, log=lines.append)
    selection = [line for line in lines if "held out of the training split" in line]
    assert len(selection) == 1 and "25.0%" in selection[0] and "evaluate.py" in selection[0]
    assert result.epochs_done == 1 and result.best_mean_ccc is not None and (run.root / "best.keras").is_file()
    # The same config with the paper's protocol selects on the validation split and says nothing.
    lines.clear()
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, selection="validation"))
    train(start_run(other, tmp_path / "run2", ["test"]).root, verbose=0, log=lines.append)
    assert not any("held out" in line for line in lines)
