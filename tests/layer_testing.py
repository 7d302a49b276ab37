"""`run_layer_test`: the checks every va2att layer gets, after keras-hub's `TestCase.run_layer_test`.

One call checks, for a layer class and its constructor arguments:

- config: every plain constructor argument is stored under its own name in `get_config()`, and
  `from_config(get_config())` gives the same config back;
- eager call: output shape(s), number of trainable and non-trainable weights, finite values;
- symbolic call (`keras.Input`): the same shapes with an unknown batch size (`compute_output_shape`);
- training: one `fit` step of a model around the layer changes every trainable weight;
- save/load: a `.keras` round trip of that model restores the layer's class and gives identical outputs;
- mixed precision: under `mixed_float16` the outputs have the expected compute dtype, every variable
  stays float32 and every sublayer inherits the policy.

`input_data` is an array, a list of arrays (a layer called on a list), or a tuple of those (several
positional inputs). `fixed_batch=True` is for layers whose first axis is not a batch axis (graph
nodes): the symbolic inputs then have the data's full shape.
"""

from __future__ import annotations

import keras
import numpy as np

MIXED = "mixed_float16"


def _as_args(input_data) -> tuple:
    return input_data if isinstance(input_data, tuple) else (input_data,)


def _shapes(expected) -> list[tuple]:
    """One shape `(2, 8)` or several `[(2, 8), (2, 1)]` -> a list of shapes."""
    if all(d is None or isinstance(d, int) for d in expected):
        return [tuple(expected)]
    return [tuple(shape) for shape in expected]


def _out_shapes(outputs) -> list[tuple]:
    return [tuple(t.shape) for t in keras.tree.flatten(outputs)]


def _model(cls, init_kwargs, args, fixed_batch):
    """A functional model around a fresh layer: (model, layer, flat input arrays)."""
    def symbolic(x):
        return keras.Input(batch_shape=x.shape) if fixed_batch else keras.Input(shape=x.shape[1:])

    inputs = keras.tree.map_structure(symbolic, args)
    layer = cls(**init_kwargs)
    outputs = layer(*inputs)
    flat_outputs = keras.tree.flatten(outputs)
    model = keras.Model(keras.tree.flatten(inputs), flat_outputs if len(flat_outputs) > 1 else flat_outputs[0])
    return model, layer, keras.tree.flatten(args)


def _check_config(cls, init_kwargs):
    layer = cls(**init_kwargs)
    config = layer.get_config()
    for key, value in init_kwargs.items():
        if isinstance(value, (bool, int, float, str)):
            assert config[key] == value, f"{cls.__name__}: argument {key}={value!r} stored as {config.get(key)!r}"
    revived = cls.from_config(config)
    assert revived.get_config() == config


def _check_training(cls, init_kwargs, args, fixed_batch):
    model, _, data = _model(cls, init_kwargs, args, fixed_batch)
    rng = np.random.default_rng(0)
    targets = [rng.normal(size=shape).astype("float32") for shape in _out_shapes(model(data))]
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    batch = len(data[0])
    history = model.fit(data, targets if len(targets) > 1 else targets[0], batch_size=batch, epochs=1, shuffle=False,
                        verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    for weight, old in zip(model.trainable_weights, before):
        assert not np.array_equal(keras.ops.convert_to_numpy(weight), old), f"{weight.path} did not train"


def _check_saving(cls, init_kwargs, args, fixed_batch, tmp_path):
    model, layer, data = _model(cls, init_kwargs, args, fixed_batch)
    batch = len(data[0])
    expected = model.predict(data, batch_size=batch, verbose=0)
    path = tmp_path / f"{cls.__name__}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.get_layer(layer.name)) is cls
    got = restored.predict(data, batch_size=batch, verbose=0)
    for e, g in zip(keras.tree.flatten(expected), keras.tree.flatten(got)):
        np.testing.assert_array_equal(e, g)


def _check_mixed_precision(cls, init_kwargs, args, expected_output_dtype):
    layer = cls(**{**init_kwargs, "dtype": MIXED})
    outputs = layer(*args)
    for tensor in keras.tree.flatten(outputs):
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        assert dtype == expected_output_dtype, f"{cls.__name__} returns {dtype} under {MIXED}"
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(tensor).astype("float32")))
    for weight in layer.weights:
        assert keras.backend.standardize_dtype(weight.dtype) == "float32", weight.path
    for sublayer in layer._flatten_layers(include_self=False, recursive=True):
        assert sublayer.dtype_policy.name == MIXED, f"{sublayer.name} has policy {sublayer.dtype_policy.name}"


def run_layer_test(
    cls,
    init_kwargs: dict,
    input_data,
    expected_output_shape,
    *,
    expected_num_trainable_weights: int,
    expected_num_non_trainable_weights: int = 0,
    expected_mixed_precision_dtype: str = "float16",
    call_kwargs: dict | None = None,
    fixed_batch: bool = False,
    tmp_path,
):
    """Run every check above; return `(layer, outputs)` of the eager call for further, layer-specific checks.

    Args:
        cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: NumPy input(s), see the module docstring.
        expected_output_shape: the eager output's shape, or a list of shapes for several outputs.
        expected_num_trainable_weights, expected_num_non_trainable_weights: weight counts once built.
        expected_mixed_precision_dtype: the outputs' dtype under `mixed_float16` ("float32" for a layer
            that returns float32 on purpose).
        call_kwargs: extra arguments of the eager call (e.g. `training=True`).
        fixed_batch: the first axis is not a batch axis (see the module docstring).
        tmp_path: folder for the `.keras` file.
    """
    args = _as_args(input_data)
    shapes = _shapes(expected_output_shape)
    _check_config(cls, init_kwargs)

    layer = cls(**init_kwargs)
    outputs = layer(*args, **(call_kwargs or {}))
    assert _out_shapes(outputs) == shapes
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(t))) for t in keras.tree.flatten(outputs))
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights

    model, _, _ = _model(cls, init_kwargs, args, fixed_batch)
    symbolic_shapes = [shape if fixed_batch else (None, *shape[1:]) for shape in shapes]
    assert [tuple(t.shape) for t in keras.tree.flatten(model.outputs)] == symbolic_shapes

    _check_training(cls, init_kwargs, args, fixed_batch)
    _check_saving(cls, init_kwargs, args, fixed_batch, tmp_path)
    _check_mixed_precision(cls, init_kwargs, args, expected_mixed_precision_dtype)
    return layer, outputs
