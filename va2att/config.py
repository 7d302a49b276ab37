"""Typed configuration: one frozen dataclass per component, composed in `RunConfig`.

Every variant of the network (the paper's ablations included) is a `ModelConfig`;
the input pipeline reads a `DataConfig`; the optimiser and schedule a `TrainConfig`.
Invalid values fail at construction with a message that names the field and the
allowed values. `apply_overrides` takes dotted `section.field=value` strings from
the command line and rejects unknown keys and values of the wrong type.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

FACE_SIZE = 56  # side of the aligned grayscale face written by preparation
INPUT_SIZE = 48  # side of the crop the network sees (random in training, centre in evaluation)

INPUT_NORMALIZATIONS = ("per_image", "rescale")
LOSSES = ("tukey", "mse", "ccc")
TUKEY_FORMS = ("residual", "scaled")
PLATEAU_MONITORS = ("ccc", "val_loss")
SELECTIONS = ("validation", "holdout")
POOLINGS = ("flatten", "mean")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
SCHEDULES = ("plateau", "step", "constant")
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
# The heads and the outputs each gives the model; `va2att.model.heads.HEADS` has one builder per key.
HEAD_OUTPUTS = {
    "2mt": ("valence", "arousal", "expression"),  # two-stage multi-task (2Att-2Mt)
    "mt": ("valence", "arousal"),  # multi-task without the categorical stage (2Att-Mt)
    "gcn": ("valence", "arousal", "expression"),  # Emotion-GCN
    "single-valence": ("valence",),  # single task (2Att-CNN)
    "single-arousal": ("arousal",),
}
EXPRESSION_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")


def _fail(name: str, value, allowed: str) -> typing.NoReturn:
    raise ValueError(f"Invalid config value {name}={value!r}: allowed values are {allowed}.")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        _fail(name, value, ", ".join(repr(c) for c in choices))


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        _fail(name, value, f"integers {low}..{high}" if high is not None else f"integers >= {low}")


def _check_float(name: str, value, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        _fail(name, value, f"numbers in [{low}, {high}]")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        _fail(name, value, "true, false")


@dataclass(frozen=True)
class ModelConfig:
    """The network: backbone, both attention levels, head, loss. Defaults are the paper's 2Att-2Mt."""

    input_normalization: str = "per_image"  # per_image: each face to zero mean, unit variance; rescale: pixels / 255
    blocks: int = 2  # residual attention blocks in the first N of the 3 stages (0 = no first-level attention)
    blocks_add_depth: bool = True  # a stage without a block has no trunk units (the paper's Table 2); false: trunk kept
    second_level: bool = True  # BiGRU + dot-product self-attention over the level vectors; off = GAP of the last stage
    head: str = "2mt"  # a key of HEAD_OUTPUTS: 2mt (two-stage multi-task), mt (V+A only), gcn (Emotion-GCN), single-valence, single-arousal
    width: int = 128  # base channels; the stages use width, 2*width, 4*width (128/256/512: ResAttNet's small-input widths)
    level_dim: int = 128  # D: channels of the 1x1 conv that turns each stage into a level vector
    gru_units: int = 64  # units per direction of the bidirectional GRU
    attention_pooling: str = "flatten"  # how the attended level sequence becomes z: flatten or mean
    dimensional_units: int = 256  # stage-1 dimensional representation
    categorical_units: int = 128  # stage-1 categorical representation
    num_classes: int = 8  # 8 = AffectNet-8 (codes 0-7), 7 = AffectNet-7 (codes 0-6)
    loss: str = "tukey"  # regression loss: tukey (biweight on MAD-scaled residuals), mse, ccc (1 - CCC)
    alpha: float = 0.5  # weight of the expression cross-entropy
    beta: float = 0.3  # valence weight; arousal gets 1 - beta
    tukey_c: float = 4.685  # Tukey's biweight tuning constant
    tukey_form: str = "residual"  # residual: s^2 * rho(r/s), value in label units; scaled: rho(r/s) (see losses.py)
    tukey_min_scale: float = 0.0  # floor on Tukey's residual scale s = 1.4826 * MAD of the batch (0 = none)
    gcn_hidden: int = 512  # hidden width of the Emotion-GCN's first graph convolution
    gcn_tau: float = 0.1  # binarisation threshold of the label correlation matrix
    gcn_p: float = 0.5  # share of a node's weight given to its neighbours
    dropout: float = 0.0  # dropout before the head (0 = none, as in the paper)

    def __post_init__(self):
        _check_choice("model.input_normalization", self.input_normalization, INPUT_NORMALIZATIONS)
        _check_int("model.blocks", self.blocks, 0, 3)
        _check_bool("model.blocks_add_depth", self.blocks_add_depth)
        _check_bool("model.second_level", self.second_level)
        _check_choice("model.head", self.head, tuple(HEAD_OUTPUTS))
        for name in ("width", "level_dim", "gru_units", "dimensional_units", "categorical_units", "gcn_hidden"):
            _check_int(f"model.{name}", getattr(self, name), 1)
        _check_choice("model.attention_pooling", self.attention_pooling, POOLINGS)
        _check_choice("model.num_classes", self.num_classes, (8, 7))
        _check_choice("model.loss", self.loss, LOSSES)
        _check_float("model.alpha", self.alpha, 0.0, 1e6)
        _check_float("model.beta", self.beta, 0.0, 1.0)
        _check_float("model.tukey_c", self.tukey_c, 1e-6, 1e6)
        _check_choice("model.tukey_form", self.tukey_form, TUKEY_FORMS)
        _check_float("model.tukey_min_scale", self.tukey_min_scale, 0.0, 10.0)
        _check_float("model.gcn_tau", self.gcn_tau, 0.0, 1.0)
        _check_float("model.gcn_p", self.gcn_p, 0.0, 1.0)
        _check_float("model.dropout", self.dropout, 0.0, 0.99)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the model's outputs for this head (`HEAD_OUTPUTS`)."""
        return HEAD_OUTPUTS[self.head]


@dataclass(frozen=True)
class DataConfig:
    """Where the faces come from and how they are streamed."""

    data: str = "demo"  # "demo" / "demo-affwild2" / "demo-affectnet-npy" (synthetic sets), a raw AffectNet, AffectNet-npy or Aff-Wild2 root, or a prepared folder; several, separated by os.pathsep (":"), are trained on together
    batch_size: int = 256  # global batch size
    shuffle_buffer: int = 20000  # examples in the shuffle buffer
    cache: bool = True  # keep decoded faces in memory after the first epoch
    parallel_calls: int = -1  # map parallelism; -1 = tf.data.AUTOTUNE
    deterministic: bool = False  # reproducible order and augmentation from the seed (slower)
    demo_train: int = 6000  # size of the generated demo training split
    demo_val: int = 1000  # size of the generated demo validation split
    demo_seed: int = 0  # seed of the generated demo set (the same faces whatever train.seed is)
    prepare_workers: int = 0  # processes for preparation; 0 = one per core
    none_faces: bool = False  # also train V/A on AffectNet's code-8 "None" faces (expression loss masked for them)
    selection: str = "validation"  # split for model selection and the schedule: validation (the paper's) or holdout
    holdout_share: float = 0.05  # with selection=holdout: share of the training split held out (by path hash)
    holdout_seed: int = 0  # with selection=holdout: key of the path hash (the same held-out faces in every run)
    frame_step: int = 1  # training: keep every k-th frame of each video (frames 1, 1 + k, ...); still images are all kept

    def __post_init__(self):
        if not isinstance(self.data, str) or not self.data:
            _fail("data.data", self.data, "'demo' or a folder path")
        _check_int("data.batch_size", self.batch_size, 1)
        _check_int("data.shuffle_buffer", self.shuffle_buffer, 1)
        _check_bool("data.cache", self.cache)
        _check_int("data.parallel_calls", self.parallel_calls, -1)
        if self.parallel_calls == 0:
            _fail("data.parallel_calls", 0, "-1 (autotune) or integers >= 1")
        _check_bool("data.deterministic", self.deterministic)
        _check_int("data.demo_train", self.demo_train, 1)
        _check_int("data.demo_val", self.demo_val, 1)
        _check_int("data.demo_seed", self.demo_seed, 0)
        _check_int("data.prepare_workers", self.prepare_workers, 0)
        _check_bool("data.none_faces", self.none_faces)
        _check_choice("data.selection", self.selection, SELECTIONS)
        _check_float("data.holdout_share", self.holdout_share, 0.001, 0.5)
        _check_int("data.holdout_seed", self.holdout_seed, 0)
        _check_int("data.frame_step", self.frame_step, 1)


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and run length. Defaults are the paper's recipe."""

    epochs: int = 10
    optimizer: str = "rmsprop"
    lr: float = 1e-3
    schedule: str = "plateau"  # plateau: lr / 10 when the monitored loss stops falling; step: at step_epochs
    plateau_monitor: str = "ccc"  # ccc: 1 - mean validation CCC; val_loss: the validation objective
    plateau_patience: int = 1  # epochs without a fall of the monitored loss before the lr is divided
    plateau_min_delta: float = 0.01  # a fall counts when the loss is below best * (1 - min_delta)
    plateau_cooldown: int = 1  # epochs after a cut in which no new cut is counted
    plateau_min_steps: int = 1000  # optimizer steps since the start or the last cut before a cut (~1 AffectNet epoch)
    min_lr: float = 1e-5  # floor of the learning rate for the plateau schedule (two cuts from 1e-3)
    lr_factor: float = 0.1  # factor applied at each plateau or step
    step_epochs: tuple[int, ...] = (6, 9)  # epochs (1-based) after which the step schedule divides the lr
    seed: int = 0
    mixed_precision: bool = False  # float16 compute (useful on GPUs only)
    jit_compile: bool = False  # XLA compilation of the train step
    precise_bn_samples: int = 8192  # before each validation, batch-norm statistics recomputed over this many training faces (va2att.training.precise_batch_norm); 0 = moving averages
    steps_per_execution: int = 1  # train steps per call of the compiled step (fewer Python round trips per step)
    strategy: str = "auto"  # tf.distribute strategy: auto, one, mirrored, multiworker

    def __post_init__(self):
        _check_int("train.epochs", self.epochs, 1)
        _check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _check_float("train.lr", self.lr, 1e-12, 10.0)
        _check_choice("train.schedule", self.schedule, SCHEDULES)
        _check_choice("train.plateau_monitor", self.plateau_monitor, PLATEAU_MONITORS)
        _check_int("train.plateau_patience", self.plateau_patience, 0)
        _check_float("train.plateau_min_delta", self.plateau_min_delta, 0.0, 0.99)
        _check_int("train.plateau_cooldown", self.plateau_cooldown, 0)
        _check_int("train.plateau_min_steps", self.plateau_min_steps, 0)
        _check_float("train.min_lr", self.min_lr, 0.0, 10.0)
        _check_float("train.lr_factor", self.lr_factor, 1e-6, 1.0)
        if not isinstance(self.step_epochs, tuple) or not all(
            isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in self.step_epochs
        ):
            _fail("train.step_epochs", self.step_epochs, "a list of integers >= 1")
        _check_int("train.seed", self.seed, 0)
        _check_bool("train.mixed_precision", self.mixed_precision)
        _check_bool("train.jit_compile", self.jit_compile)
        _check_int("train.precise_bn_samples", self.precise_bn_samples, 0)
        _check_int("train.steps_per_execution", self.steps_per_execution, 1)
        _check_choice("train.strategy", self.strategy, STRATEGIES)


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; saved as `config.json` in the run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}

# Fields whose default changed, with the value that a config saved before the field existed meant.
# A saved config (config.json, a .keras file's model config) that lacks one of them is read with this
# value, not the new default, so an older run resumes and an older model predicts as it was trained.
LEGACY_VALUES = {"model": {"input_normalization": "rescale"}, "train": {"precise_bn_samples": 0}}


def with_legacy_values(section: str, values: dict) -> dict:
    """`values` of a saved `section`, with `LEGACY_VALUES` filled in for the fields it lacks."""
    return {**LEGACY_VALUES.get(section, {}), **values}


def to_dict(cfg) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(section: str, name: str, tp, value):
    """Turn a JSON or command-line value into the field's declared type, or fail naming the field."""
    key = f"{section}.{name}"
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split()]
        if not isinstance(value, (list, tuple)):
            _fail(key, value, "a list of integers")
        return tuple(_coerce(section, name, int, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        _fail(key, value, "true, false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value))
        except ValueError:
            _fail(key, value, "an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            _fail(key, value, "a number")
    if tp is str:
        return str(value)
    raise TypeError(f"unsupported config field type {tp!r} for {key}")


def _section_from_dict(section: str, values: dict):
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(
            f"Unknown config key(s) {', '.join(f'{section}.{k}' for k in unknown)}: "
            f"allowed keys are {', '.join(f'{section}.{n}' for n in names)}."
        )
    return cls(**{k: _coerce(section, k, hints[k], v) for k, v in values.items()})


def from_dict(values: dict) -> RunConfig:
    """Rebuild a RunConfig from `to_dict` output (as read from config.json; see `LEGACY_VALUES`)."""
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise ValueError(f"Unknown config section(s) {unknown}: allowed sections are {', '.join(SECTIONS)}.")
    return RunConfig(**{s: _section_from_dict(s, with_legacy_values(s, values.get(s, {}))) for s in SECTIONS})


def apply_overrides(cfg: RunConfig, overrides: typing.Iterable[str]) -> RunConfig:
    """Apply `section.field=value` strings, e.g. `model.gru_units=128` or `train.step_epochs=5,8`."""
    values = to_dict(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"Override {item!r} is not of the form section.field=value (sections: {', '.join(SECTIONS)}).")
        if section not in SECTIONS:
            raise ValueError(f"Unknown config section {section!r} in {item!r}: allowed sections are {', '.join(SECTIONS)}.")
        if name not in values[section]:
            allowed = ", ".join(f"{section}.{n}" for n in values[section])
            raise ValueError(f"Unknown config key {key!r}: allowed keys are {allowed}.")
        values[section][name] = raw.strip()
    return from_dict(values)
