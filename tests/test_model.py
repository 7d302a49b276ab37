"""VA2AttModel: outputs, gradients in every variant, save/load, config, validation, overfitting."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from va2att.config import ModelConfig
from va2att.model.gcn import build_adjacency
from va2att.model.losses import compile_args
from va2att.model.network import VA2AttModel, build_model

TINY = {"width": 8, "level_dim": 16, "gru_units": 8, "dimensional_units": 16, "categorical_units": 16, "gcn_hidden": 16}


def tiny(**changes) -> ModelConfig:
    return ModelConfig(**{**TINY, **changes})


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, 48, 48, 1)).astype("float32")


def _targets(cfg, n, seed=1):
    rng = np.random.default_rng(seed)
    y = {
        "valence": rng.uniform(-1, 1, (n, 1)).astype("float32"),
        "arousal": rng.uniform(-1, 1, (n, 1)).astype("float32"),
        "expression": rng.integers(0, cfg.num_classes, n).astype("int32"),
    }
    return {name: y[name] for name in cfg.outputs}


VARIANTS = [
    *({"blocks": b} for b in range(4)),  # 2Att-2Mt with 0..3 attention blocks
    {"head": "mt"},
    {"head": "gcn"},
    {"head": "single-valence"},
    {"head": "single-arousal", "attention_pooling": "mean"},
    {"blocks": 0, "second_level": False},  # MultitaskCNN-like baseline
    {"blocks": 3, "second_level": False, "head": "gcn"},
    {"blocks": 1, "attention_pooling": "mean", "num_classes": 7, "dropout": 0.2},
]


@pytest.mark.parametrize("changes", VARIANTS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_outputs_and_every_weight_gets_a_gradient(changes):
    cfg = tiny(**changes)
    model = build_model(cfg)
    assert model.inputs[0].name == "image" and tuple(model.inputs[0].shape) == (None, 48, 48, 1)

    x = _images(4)
    y = _targets(cfg, 4)
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = 0.0
        for name in cfg.outputs:
            if name == "expression":
                loss += keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y[name], out[name]))
            else:
                loss += keras.ops.mean(keras.ops.square(out[name] - y[name]))
    assert sorted(out) == sorted(cfg.outputs)
    for name in cfg.outputs:
        expected = (4, cfg.num_classes) if name == "expression" else (4, 1)
        assert tuple(out[name].shape) == expected, name
        assert out[name].dtype == "float32"
    if "expression" in out:
        np.testing.assert_allclose(np.sum(out["expression"], axis=1), 1.0, rtol=1e-5)
    for name in ("valence", "arousal"):
        if name in out:
            assert np.all(np.abs(out[name]) <= 1.0)

    grads = tape.gradient(loss, model.trainable_variables)
    names = [v.path for v in model.trainable_variables]
    missing = [n for n, g in zip(names, grads) if g is None]
    zero = [n for n, g in zip(names, grads) if g is not None and not np.any(np.asarray(g))]
    nans = [n for n, g in zip(names, grads) if g is not None and not np.all(np.isfinite(g))]
    assert not missing and not zero and not nans, (missing, zero, nans)
    mask_weights = [n for n in names if "_mask_" in n]
    assert len(mask_weights) > 0 if cfg.blocks > 0 else not mask_weights


def _variable_names(cfg):
    return {"/".join(v.path.split("/")[-2:]) for v in build_model(cfg).trainable_variables}


def test_with_blocks_adding_only_masks_the_trunk_stays():
    # Variables named by (layer, variable): the trunk units keep their names inside or outside a block.
    names = {b: _variable_names(tiny(blocks=b, blocks_add_depth=False)) for b in (0, 3)}
    assert names[0] <= names[3]
    assert all("_mask_" in n for n in names[3] - names[0])


@pytest.mark.parametrize("blocks", [0, 1, 2, 3])
def test_each_block_adds_its_trunk_and_its_mask_by_default(blocks):
    import re

    names = _variable_names(tiny(blocks=blocks))
    trunk_units = {m.groups() for n in names if "_mask_" not in n and (m := re.match(r"(stage\d)_attention_trunk(\d)_", n))}
    mask_stages = {n.split("_")[0] for n in names if "_mask_" in n}
    # Two trunk units in each of the first `blocks` stages and none elsewhere; one mask per block.
    assert trunk_units == {(f"stage{i + 1}", u) for i in range(blocks) for u in "12"}
    assert mask_stages == {f"stage{i + 1}" for i in range(blocks)}
    # Three level vectors whatever the depth; deeper means more parameters.
    model = build_model(tiny(blocks=blocks))
    assert [model.get_layer(f"level{i}_vector") is not None for i in (1, 2, 3)] == [True] * 3
    if blocks:
        assert model.count_params() > build_model(tiny(blocks=blocks - 1)).count_params()


def test_save_load_identical_outputs(tmp_path):
    cfg = tiny()
    model = build_model(cfg)
    x = _images(3)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(restored, VA2AttModel)
    assert restored.model_config == cfg
    got = restored.predict(x, verbose=0)
    for name in cfg.outputs:
        np.testing.assert_array_equal(expected[name], got[name])


def test_gcn_adjacency_survives_save_load(tmp_path):
    cfg = tiny(head="gcn")
    rng = np.random.default_rng(0)
    expression = rng.integers(0, 8, 200)
    valence = rng.uniform(-1, 1, 200) + (expression == 1)
    adjacency = build_adjacency(expression, valence, rng.uniform(-1, 1, 200), 8)
    model = build_model(cfg, adjacency=adjacency)
    x = _images(3)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "gcn.keras")
    restored = keras.saving.load_model(tmp_path / "gcn.keras")
    np.testing.assert_array_equal(np.asarray(restored.get_config()["adjacency"], "float32"), adjacency)
    np.testing.assert_array_equal(restored.get_layer("gcn").adjacency, adjacency)
    got = restored.predict(x, verbose=0)
    for name in cfg.outputs:
        np.testing.assert_array_equal(expected[name], got[name])
    # Without an adjacency the gcn head uses the identity graph.
    assert np.array_equal(build_model(cfg).get_layer("gcn").adjacency, np.eye(10))


def test_config_and_json():
    cfg = tiny(blocks=1, head="mt")
    model = build_model(cfg)
    config = model.get_config()
    assert {k: config[k] for k in dataclasses.asdict(cfg)} == dataclasses.asdict(cfg)
    assert config["adjacency"] is None
    assert json.loads(model.to_json())["config"]["head"] == "mt"
    clone = VA2AttModel.from_config(config)
    assert clone.count_params() == model.count_params()
    assert tuple(model.features_model().output.shape) == (None, 3 * 2 * cfg.gru_units)


# Parameter counts from the design (docs/architecture.md), written independently of the layers' code.
# Each count is (trainable, all): a batch norm trains gamma and beta and keeps a moving mean and variance.
MASK_DEPTHS = (2, 1, 1)  # max-poolings in the attention mask of stages 1, 2, 3


def _batch_norm(channels):
    return 2 * channels, 4 * channels


def _weights(count):
    return count, count


def _total(*counts):
    return tuple(sum(c[i] for c in counts) for i in range(2))


def _dense(n_in, n_out):
    return _weights(n_in * n_out + n_out)


def _residual_unit(c_in, filters, strides=1):
    """Pre-activation bottleneck: BN-1x1(filters/4)-BN-3x3(filters/4)-BN-1x1(filters), no biases; a 1x1
    projection shortcut where the channels or the size change."""
    inner = max(1, filters // 4)
    convs = c_in * inner + 3 * 3 * inner * inner + inner * filters
    if c_in != filters or strides != 1:
        convs += c_in * filters
    return _total(_weights(convs), _batch_norm(c_in), _batch_norm(inner), _batch_norm(inner))


def _attention_block(filters, mask_depth):
    """Trunk of two units; mask: a unit after each pooling, one on each skip and after each up-sampling
    but the last, two at the bottom, then BN-1x1 conv twice (the second with a bias)."""
    units = 2 + mask_depth + 2 * (mask_depth - 1) + 1
    mask_head = _total(_batch_norm(filters), _batch_norm(filters), _weights(2 * filters * filters + filters))
    return _total(*[_residual_unit(filters, filters)] * units, mask_head)


def _head(cfg, z):
    du, cu, k = cfg.dimensional_units, cfg.categorical_units, cfg.num_classes
    if cfg.head == "2mt":  # dimensional and categorical from z; expression from categorical; V, A from both
        return _total(_dense(z, du), _dense(z, cu), _dense(cu, k), _dense(du + cu, 1), _dense(du + cu, 1))
    if cfg.head == "mt":
        return _total(_dense(z, du), _dense(du, 1), _dense(du, 1))
    if cfg.head.startswith("single-"):
        return _total(_dense(z, du), _dense(du, 1))
    assert cfg.head == "gcn"  # two bias-free graph convolutions: one-hot node features -> hidden -> z
    return _weights((k + 2) * cfg.gcn_hidden + cfg.gcn_hidden * z)


def designed_parameters(cfg: ModelConfig) -> tuple[int, int]:
    """(trainable, all) parameters of the network that `cfg` describes, from the design alone."""
    widths = [cfg.width, 2 * cfg.width, 4 * cfg.width]  # stages at 24x24, 12x12, 6x6
    counts = [_weights(3 * 3 * 1 * cfg.width)]  # stem: 3x3 conv of the grey face, no bias
    channels = cfg.width
    for stage, filters in enumerate(widths):
        counts.append(_residual_unit(channels, filters, strides=2))
        if stage < cfg.blocks:
            counts.append(_attention_block(filters, MASK_DEPTHS[stage]))
        elif not cfg.blocks_add_depth:  # the block's trunk stays
            counts += [_residual_unit(filters, filters)] * 2
        channels = filters
    if cfg.second_level:  # per stage BN and a 1x1 conv (with bias) to D; a BiGRU (reset_after) over 3 levels
        u = cfg.gru_units
        counts += [_total(_batch_norm(f), _dense(f, cfg.level_dim)) for f in widths]
        counts.append(_weights(2 * 3 * (cfg.level_dim + u + 2) * u))
        z = 3 * 2 * u if cfg.attention_pooling == "flatten" else 2 * u
    else:  # BN and global average pooling of the last stage
        counts.append(_batch_norm(widths[-1]))
        z = widths[-1]
    return _total(*counts, _head(cfg, z))


def _parameters(model) -> tuple[int, int]:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights), model.count_params()


@pytest.mark.parametrize(
    "changes",
    [*VARIANTS, *({"blocks": b, "blocks_add_depth": False} for b in range(3)), {"head": "mt", "num_classes": 7}],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_parameter_count_follows_the_design(changes):
    cfg = tiny(**changes)
    assert _parameters(build_model(cfg)) == designed_parameters(cfg)


def test_gcn_parameters_grow_with_the_node_features_not_with_the_graph():
    cfg = tiny(head="gcn")
    one_hot = _parameters(build_model(cfg))
    rng = np.random.default_rng(0)
    graph = build_adjacency(rng.integers(0, 8, 100), rng.uniform(-1, 1, 100), rng.uniform(-1, 1, 100), 8)
    assert _parameters(build_model(cfg, adjacency=graph)) == one_hot  # the graph is a constant
    words = _parameters(build_model(cfg, node_features=np.ones((10, 3))))
    assert one_hot[0] - words[0] == (10 - 3) * cfg.gcn_hidden  # first graph convolution: features x hidden


def test_the_model_table_lists_the_designed_sizes():
    """docs/model_table.md (`python -m va2att.cli.flops --out docs/model_table.md`) gives the sizes
    of the network that the design describes, at the widths its header names."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "model_table.md").read_text()
    header = dict(re.findall(r"(\w+(?:/\w+)?)=(\w+(?:/\w+)?)", text.split("|", 1)[0]))
    dimensional, categorical = header["dimensional/categorical"].split("/")
    base = ModelConfig(width=int(header["width"]), level_dim=int(header["level_dim"]),
                       gru_units=int(header["gru_units"]), dimensional_units=int(dimensional),
                       categorical_units=int(categorical), gcn_hidden=int(header["gcn_hidden"]),
                       second_level=header["second_level"] == "True", attention_pooling=header["pooling"],
                       num_classes=int(header["K"]))
    rows = re.findall(r"^\| (yes|no) \| (\d) \| ([\w-]+) \| ([\d,]+) \| ([\d,]+) \|", text, re.MULTILINE)
    assert len(rows) == 2 * 4 * 5  # blocks add depth or not, 0-3 blocks, every head
    for depth, blocks, head, trainable, every in rows:
        cfg = dataclasses.replace(base, blocks_add_depth=depth == "yes", blocks=int(blocks), head=head)
        listed = (int(trainable.replace(",", "")), int(every.replace(",", "")))
        assert listed == designed_parameters(cfg), f"{depth} | {blocks} | {head}"


def test_pixels_are_normalised_inside_the_graph():
    faces = np.random.default_rng(0).uniform(0, 255, size=(2, 48, 48, 1)).astype("float32")
    model = build_model(tiny())
    assert model.get_layer("standardize").count_params() == 0
    # Brightness and contrast of a face do not change what the network sees.
    first = model.get_layer("stem_conv").input
    standardized = keras.Model(model.inputs, first)
    np.testing.assert_allclose(standardized(faces * 0.5 + 40.0), standardized(faces), atol=1e-4)
    rescaled = build_model(tiny(input_normalization="rescale"))
    assert rescaled.get_layer("rescale").scale == pytest.approx(1.0 / 255.0)


def test_a_model_saved_before_input_normalization_existed_keeps_rescaling():
    config = build_model(tiny()).get_config()
    del config["input_normalization"]
    assert VA2AttModel.from_config(config).model_config.input_normalization == "rescale"


@pytest.mark.parametrize(
    "changes,field,allowed",
    [
        ({"blocks": 5}, "model.blocks", "0..3"),
        ({"head": "lstm"}, "model.head", "'2mt'"),
        ({"width": -3}, "model.width", ">= 1"),
    ],
)
def test_bad_config_fails_at_construction(changes, field, allowed):
    with pytest.raises(ValueError, match=field) as error:
        VA2AttModel(**{**TINY, **changes})
    assert allowed in str(error.value)
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{**TINY, **changes})


def test_build_model_rejects_other_configs():
    with pytest.raises(TypeError, match="ModelConfig"):
        build_model({"blocks": 2})
    with pytest.raises(ValueError, match="head='gcn'"):
        build_model(tiny(), adjacency=np.eye(10))


@pytest.mark.large
def test_overfits_a_small_fixed_set():
    # The MAD-scaled Tukey loss is scale-free (it does not shrink as residuals shrink), so the
    # "loss falls by 90%" criterion is checked with MSE; the architecture is the full 2Att-2Mt.
    keras.utils.set_random_seed(0)
    cfg = tiny(loss="mse")
    model = build_model(cfg)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), **compile_args(cfg))
    x, y = _images(64, seed=3), _targets(cfg, 64, seed=4)
    history = model.fit(x, y, batch_size=64, epochs=80, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.1 * losses[0], losses[::10]


def test_a_new_head_is_a_builder_and_its_outputs(monkeypatch):
    from va2att.config import HEAD_OUTPUTS
    from va2att.model.heads import HEADS, Head

    def apply_arousal_probe(z, cfg, **_):
        return {"arousal": keras.layers.Dense(1, activation="tanh", dtype="float32", name="arousal")(z)}

    with pytest.raises(ValueError, match="model.head"):
        tiny(head="probe")
    monkeypatch.setitem(HEAD_OUTPUTS, "probe", ("arousal",))
    monkeypatch.setitem(HEADS, "probe", Head(apply_arousal_probe, lambda cfg: {"arousal": 2.0}))
    cfg = tiny(head="probe")  # the config validates against HEAD_OUTPUTS, and reads the outputs from it
    assert cfg.outputs == ("arousal",)
    assert compile_args(cfg)["loss_weights"] == {"arousal": 2.0}
    model = build_model(cfg)
    out = model(_images(2))
    assert list(out) == ["arousal"] and tuple(out["arousal"].shape) == (2, 1)


def test_every_configured_head_has_a_builder_and_every_builder_a_configuration():
    from va2att.config import HEAD_OUTPUTS
    from va2att.model.heads import HEADS

    assert list(HEADS) == list(HEAD_OUTPUTS)
