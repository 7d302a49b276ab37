"""A large batch served in chunks on the CPU (va2att.serving.batch_chunks): the same outputs as the whole batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_MODEL

from va2att.config import ModelConfig
from va2att.model.network import build_model
from va2att.serving import batch_chunks, export, graph_ops
from va2att.serving.signature import SERVING_DEFAULT, SERVING_WHOLE_BATCH

SPECS = {"rows": tf.TensorSpec([None, 1], tf.float32), "mean": tf.TensorSpec([None, 1], tf.float32)}


def _forward(images):
    """Each face's mean pixel, and the size of the batch it was computed in."""
    count = tf.shape(images)[0]
    return {"rows": tf.fill([count, 1], tf.cast(count, tf.float32)),
            "mean": tf.reshape(tf.reduce_mean(images, axis=[1, 2, 3]), [-1, 1])}


@pytest.mark.parametrize("count, computed_in", [(0, 0), (1, 1), (16, 16), (17, 9), (33, 11), (100, 15)])
def test_batches_above_the_chunk_run_as_equal_chunks_with_the_whole_batchs_outputs(count, computed_in):
    images = np.random.default_rng(count).uniform(0, 255, (count, 48, 48, 1)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 48, 48, 1], tf.float32)])
    def served(x):
        return batch_chunks.outputs_in_chunks(_forward, x, _forward, SPECS, chunk=16, parallel=2)

    out = served(images)
    assert out["mean"].shape == (count, 1) and out["rows"].shape == (count, 1)
    np.testing.assert_allclose(out["mean"].numpy()[:, 0], images.mean(axis=(1, 2, 3)), rtol=1e-6)
    # 17 faces: two chunks of 9 (one blank face); 33: three of 11; 100: seven of 15 (five blank faces).
    assert set(out["rows"].numpy()[:, 0]) <= {computed_in}


def test_on_cpu_is_true_on_a_cpu():
    assert bool(tf.function(batch_chunks.on_cpu)())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = build_model(ModelConfig(**TINY_MODEL))
    version = export.export_saved_model(model, tmp_path_factory.mktemp("export"))
    return model, version, tf.saved_model.load(str(version))


@pytest.mark.parametrize("count", [1, 16, 17, 40])
def test_serving_default_in_chunks_equals_the_whole_batch_and_the_keras_model(served, count):
    model, _, loaded = served
    images = np.random.default_rng(count).uniform(0, 255, (count, 48, 48, 1)).astype(np.float32)
    chunked = loaded.signatures[SERVING_DEFAULT](image=tf.constant(images))
    whole = loaded.signatures[SERVING_WHOLE_BATCH](image=tf.constant(images))
    expected = model(images, training=False)
    for name, value in whole.items():
        assert chunked[name].shape == value.shape == (count, expected[name].shape[-1])
        np.testing.assert_allclose(chunked[name].numpy(), value.numpy(), atol=1e-5)
        np.testing.assert_allclose(chunked[name].numpy(), np.asarray(expected[name]), atol=1e-4)


def test_the_chunk_loop_is_in_serving_default_and_not_in_the_whole_batch_signature(served):
    _, version, _ = served
    default, whole = (graph_ops.saved_op_counts(version, s) for s in (SERVING_DEFAULT, SERVING_WHOLE_BATCH))
    assert default["DeviceIndex"] == 1 and whole["DeviceIndex"] == 0
    assert whole["EnsureShape"] == default["EnsureShape"] == 1  # both check their input
