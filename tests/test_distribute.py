"""va2att.training.distribute: the chief from TF_CONFIG, and batch-norm synchronisation across replicas."""

import json

import keras
import pytest
from conftest import TINY_MODEL

from va2att.config import ModelConfig
from va2att.model.network import build_model
from va2att.training import distribute


def test_chief_and_task_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.task() == (None, 0, 1) and distribute.is_chief()
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.require_cluster()
    workers = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": workers, "task": {"type": "worker", "index": 1}}))
    assert distribute.task() == ("worker", 1, 2) and not distribute.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**workers, "chief": ["c:3"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert distribute.task() == ("worker", 0, 3) and not distribute.is_chief()


def test_batch_norm_synchronisation_reaches_every_batch_norm_and_is_off_while_saving(tmp_path):
    model = build_model(ModelConfig(**TINY_MODEL, blocks=1))
    layers = distribute.batch_norm_layers(model)
    # the model's own level BNs and those inside the residual units and the attention block
    assert len(layers) > 10 and any("_attention_mask_bn1" in layer.name for layer in layers)
    distribute.synchronize_batch_norm(model, True)
    assert all(layer.synchronized for layer in layers)
    with distribute.unsynchronized_batch_norm(model):
        assert not any(layer.synchronized for layer in layers)
        model.save(tmp_path / "m.keras")
    assert all(layer.synchronized for layer in layers)
    restored = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert not any(layer.synchronized for layer in distribute.batch_norm_layers(restored))
    distribute.synchronize_batch_norm(model, False)
    assert not any(layer.synchronized for layer in layers)
