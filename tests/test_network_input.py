"""Aligned face -> network input, flip averaging and named outputs: NumPy and TF versions agree."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from va2att.faces import network_input


@pytest.fixture(scope="module")
def faces():
    return np.random.default_rng(0).integers(0, 256, (3, 56, 56, 1)).astype(np.uint8)


def test_centre_crop_is_the_same_on_arrays_and_tensors_eagerly_and_in_tf_data(faces):
    crop = network_input.centre_crop(faces)
    assert crop.shape == (3, 48, 48, 1)
    np.testing.assert_array_equal(crop, faces[:, 4:52, 4:52])
    np.testing.assert_array_equal(network_input.centre_crop(tf.constant(faces)).numpy(), crop)
    in_data = next(iter(tf.data.Dataset.from_tensor_slices(faces).batch(3).map(network_input.centre_crop)))
    np.testing.assert_array_equal(in_data.numpy(), crop)
    pairs = network_input.flip_pair(tf.constant(faces)).numpy()
    assert pairs.shape == (3, 2, 48, 48, 1)
    np.testing.assert_array_equal(pairs[:, 0], crop)
    np.testing.assert_array_equal(pairs[:, 1], crop[:, :, ::-1])


def test_prepare_faces_accepts_faces_and_crops(faces):
    expected = faces[:, 4:52, 4:52].astype(np.float32)
    for given in (faces, faces[..., 0], expected, expected[..., 0]):
        out = network_input.prepare_faces(given)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, expected)
    for bad in (np.zeros((2, 64, 64)), np.zeros((2, 56, 56, 3)), np.zeros((56, 56))):
        with pytest.raises(ValueError, match="aligned faces"):
            network_input.prepare_faces(bad)


def test_aligned_face_and_its_graph_twin_give_the_same_input(faces):
    # 56 x 56 faces and 48 x 48 crops need no resizing: both paths must give the same network input.
    images = [faces[0, ..., 0], faces[1, 4:52, 4:52, 0]]
    encoded = tf.constant([cv2.imencode(".png", image)[1].tobytes() for image in images])
    decoded = network_input.decode_aligned_faces(encoded).numpy()
    numpy_side = np.concatenate([network_input.prepare_faces(network_input.aligned_face(image)[None]) for image in images])
    np.testing.assert_array_equal(decoded, numpy_side)
    rgb = np.repeat(faces[2], 3, axis=-1)
    np.testing.assert_array_equal(network_input.aligned_face(rgb), faces[2, ..., 0])
    assert network_input.aligned_face(np.zeros((112, 90), np.uint8)).shape == (56, 56)


def test_flip_average_is_the_mean_over_crop_and_mirror():
    crops = np.random.default_rng(1).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    calls = []

    def model(images):
        calls.append(images)
        return {"valence": images.reshape(len(images), -1)[:, :1], "expression": images[:, 0, :3, 0]}

    averaged = network_input.flip_average(model, crops)
    assert len(calls) == 1 and calls[0].shape == (8, 48, 48, 1)  # one call, crops first
    np.testing.assert_array_equal(calls[0][4:], crops[:, :, ::-1])
    np.testing.assert_allclose(averaged["valence"][:, 0], (crops[:, 0, 0, 0] + crops[:, 0, -1, 0]) / 2)
    assert averaged["expression"].shape == (4, 3) and averaged["expression"].dtype == np.float64
    given = network_input.flip_average(model, crops, crops[:, :, ::-1])
    np.testing.assert_array_equal(given["expression"], averaged["expression"])


def test_named_outputs_names_list_outputs_and_casts_to_float32():
    image = keras.Input((2,))
    model = keras.Model(image, [keras.layers.Dense(1, name="valence")(image), keras.layers.Dense(1, name="arousal")(image)])
    x = tf.ones((3, 2), tf.float16)
    out = network_input.named_outputs(model, [tf.cast(t, tf.float16) for t in model(x)])
    assert list(out) == ["valence", "arousal"] and all(v.dtype == tf.float32 for v in out.values())
    with pytest.raises(ValueError, match="dict of named outputs"):
        network_input.named_outputs(model, [x])
