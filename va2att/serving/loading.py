"""Load a trained model for inference from whatever a run left behind.

`load_inference_model(path)` accepts:

- a run folder (`RUN_DIR` written by `train.py`): the newest version under `RUN_DIR/export/va2att/`
  when there is one, otherwise `RUN_DIR/best.keras`;
- an export root holding numbered SavedModel versions (`.../export/va2att`): the newest version;
- a SavedModel folder (holding `saved_model.pb`): its `serving_default` signature;
- a `.keras` file: the Keras model (`load_keras_model`, which imports va2att's Keras classes itself);
- a `.tflite` file: a LiteRT model (`va2att.serving.litert`, run by the `ai-edge-litert` interpreter).

`runtime` picks what runs an export version (a SavedModel folder, or one that a run folder or an export
root resolves to): "savedmodel" its `serving_default` signature in TensorFlow, "litert" its LiteRT model
(`model.tflite`, written by every export since the LiteRT export exists; older versions have none),
"auto" (the default) the LiteRT model where TensorFlow sees no GPU, which on the CPU serves as many faces
per second as the SavedModel or more at every batch size (1.1-2x at a photo's few faces; BENCHMARKS.md,
"LiteRT or the SavedModel"), and the SavedModel where TensorFlow sees a GPU, or where the version has no
LiteRT model or a damaged one (with a warning). A `.keras` or `.tflite` file runs as what it is.

Whatever the source, `InferenceModel(images)` takes float32 `[N, 48, 48, 1]` pixels 0-255 (aligned,
centre-cropped faces; `[N, 48, 48]` is accepted too; other values are a ValueError), runs them in
batches and returns a dict of NumPy arrays keyed by output name, with the model's own shapes, read
from the loaded model (an empty batch too): `valence` and `arousal` `[N, 1]`, `expression` `[N, K]`
probabilities. A model that answers none of the served outputs (`va2att.serving.signature`) is refused
when it is loaded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from va2att.config import INPUT_SIZE
from va2att.run_dir import RunDir
from va2att.serving import litert
from va2att.serving.signature import (
    PIXEL_RANGE,
    PROBABILITIES,
    SERVING_DEFAULT,
    ordered_names,
    outputs_of_kind,
    served_outputs,
)
from va2att.util.checks import check_positive_int

DEFAULT_BATCH_SIZE = 256
RUNTIMES = ("auto", "savedmodel", "litert")


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (then "auto" runs the SavedModel alone: the LiteRT interpreter runs on the CPU)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _is_saved_model(path: Path) -> bool:
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


def _newest_version(export_root: Path) -> Path | None:
    versions = [p for p in export_root.iterdir() if p.is_dir() and p.name.isdigit() and _is_saved_model(p)]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def resolve_model_path(path: str | os.PathLike, runtime: str = "auto") -> Path:
    """The file or SavedModel folder that `load_inference_model(path, runtime=runtime)` would load."""
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model at {path}: expected a run folder, a .keras or .tflite file or a "
                                f"SavedModel folder.")
    if path.is_file():
        if path.suffix not in (".keras", ".tflite"):
            raise ValueError(f"Unsupported model file {path}: expected a .keras or .tflite file or a SavedModel folder.")
        return path
    version = _export_version(path)
    if version is None:
        run = RunDir(path)
        if run.best.is_file():
            if runtime == "litert":
                raise FileNotFoundError(f"{path} has no export, so no LiteRT model: only {run.best.name}.")
            return run.best
        raise FileNotFoundError(
            f"No model found in {path}: expected saved_model.pb, numbered SavedModel versions, "
            f"{run.export_root.relative_to(run.root)}/<version>/ or {run.best.name}."
        )
    litert_model = litert.model_file(version)
    if runtime == "litert" and not litert_model.is_file():
        raise FileNotFoundError(f"{version} has no LiteRT model ({litert_model.name}): it was exported before "
                                f"the LiteRT export existed; add one with `python -m va2att.cli.export {version}`.")
    if runtime == "litert":
        return litert_model
    return version


def _export_version(path: Path) -> Path | None:
    """The SavedModel folder that a SavedModel folder, an export root or a run folder names, or None."""
    if _is_saved_model(path):
        return path
    newest = _newest_version(path)
    if newest is not None:
        return newest
    run = RunDir(path)
    return _newest_version(run.export_root) if run.export_root.is_dir() else None


class InferenceModel:
    """A loaded model: `model(images) -> {name: np.ndarray}`, in batches of `batch_size`.

    Args:
        predict_fn: callable, float32 `[n, 48, 48, 1]` array -> dict of arrays or tensors.
        widths: dict, output name -> values per face (the model's own output shapes: `[n, width]`).
        source: Path the model was loaded from.
        kind: str, "saved_model", "litert" or "keras".
        batch_size: int, images per call of `predict_fn`.

    `outputs` lists the output names in the served order (`va2att.serving.signature`), `num_classes`
    is the width of the probabilities output (`expression`), None when the model has none.
    """

    def __init__(self, predict_fn, widths, source, kind, batch_size=DEFAULT_BATCH_SIZE):
        check_positive_int("batch_size", batch_size)
        self._predict_fn = predict_fn
        self.outputs = ordered_names(widths)
        self.widths = {name: int(widths[name]) for name in self.outputs}
        probabilities = outputs_of_kind(PROBABILITIES, self.outputs)
        self.num_classes = self.widths[probabilities[0].name] if probabilities else None
        self.source = Path(source)
        self.kind = kind
        self.batch_size = batch_size

    def __repr__(self):
        return f"InferenceModel(kind={self.kind!r}, source='{self.source}', outputs={self.outputs})"

    def __call__(self, images) -> dict[str, np.ndarray]:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 1):
            raise ValueError(
                f"Expected images of shape [N, {INPUT_SIZE}, {INPUT_SIZE}, 1] (pixels 0-255). "
                f"Received: shape={images.shape}"
            )
        if len(images) == 0:
            return {name: np.zeros((0, width), np.float32) for name, width in self.widths.items()}
        if not (np.isfinite(images).all() and images.min() >= PIXEL_RANGE[0] and images.max() <= PIXEL_RANGE[1]):
            raise ValueError(f"Pixels must be finite numbers from {PIXEL_RANGE[0]:g} to {PIXEL_RANGE[1]:g}. "
                             f"Received: values from {np.nanmin(images)} to {np.nanmax(images)}")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for start in range(0, len(images), self.batch_size):
            result = self._predict_fn(images[start : start + self.batch_size])
            for name in self.outputs:
                parts[name].append(np.asarray(result[name], dtype=np.float32))
        return {name: np.concatenate(parts[name], axis=0) for name in self.outputs}


def output_widths(specs, source) -> dict[str, int]:
    """`{name: width}` of a model's outputs (`[None, width]` tensor specs), checked against the served
    outputs: a model answering none of them is refused (ValueError naming what it answers)."""
    _check_served(specs, source)
    return {name: int(spec.shape[-1]) if spec.shape.rank == 2 else 1 for name, spec in specs.items()}


def _check_served(names, source) -> None:
    if not any(o.name in names for o in served_outputs()):
        raise ValueError(
            f"{source} answers the outputs {sorted(names)}, none of the outputs va2att reads "
            f"({', '.join(o.name for o in served_outputs())}): is it a va2att model?")


def _from_saved_model(path: Path, batch_size: int) -> InferenceModel:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if SERVING_DEFAULT not in loaded.signatures:
        raise ValueError(f"SavedModel {path} has no {SERVING_DEFAULT} signature (found: {list(loaded.signatures)}).")
    signature = loaded.signatures[SERVING_DEFAULT]
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise ValueError(f"SavedModel {path}: {SERVING_DEFAULT} must take one input; it takes {sorted(inputs)}.")
    input_name = next(iter(inputs))
    widths = output_widths(signature.structured_outputs, f"SavedModel {path}")

    def predict(batch):
        return {k: v.numpy() for k, v in signature(**{input_name: tf.constant(batch)}).items()}

    model = InferenceModel(predict, widths, path, "saved_model", batch_size)
    model.saved_model = loaded  # the signature's variables live as long as the loaded object
    return model


def load_keras_model(path: str | os.PathLike, compile: bool = False):
    """A `.keras` file written by va2att (or plain Keras) as its Keras model; a va2att network comes
    back as a `VA2AttModel`.

    The modules that define va2att's Keras classes (the model and its layers; the losses and metrics
    that a compiled model's file names) are imported here, so loading works in a fresh process
    whatever it imported before.
    """
    import keras

    from va2att.model import losses, metrics, network  # noqa: F401  (their classes are the ones a .keras file names)

    return keras.saving.load_model(str(path), compile=compile)


def _from_keras(path: Path, batch_size: int) -> InferenceModel:
    import tensorflow as tf

    from va2att.faces.network_input import inference_forward

    model = load_keras_model(path)
    forward = inference_forward(model)
    # One trace for every batch size (a fixed signature), unlike predict_on_batch.
    compiled = tf.function(forward, input_signature=[tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 1], tf.float32)])
    widths = output_widths(compiled.get_concrete_function().structured_outputs, f"Keras model {path}")

    def predict(batch):
        return {k: v.numpy() for k, v in compiled(tf.constant(batch)).items()}

    inference = InferenceModel(predict, widths, path, "keras", batch_size)
    inference.keras_model = model
    return inference


def _from_litert(path: Path, batch_size: int, threads: int | None) -> InferenceModel:
    model = litert.LiteRTModel(path, threads)
    widths = model.output_widths()
    _check_served(widths, f"LiteRT model {path}")
    inference = InferenceModel(model, widths, path, "litert", batch_size)
    inference.litert_model = model
    return inference


def _from_litert_or_saved_model(version: Path, batch_size: int, threads: int | None) -> InferenceModel:
    """An export version run by its LiteRT model; by its SavedModel, with a warning, when the LiteRT model cannot
    be loaded."""
    try:
        return _from_litert(litert.model_file(version), batch_size, threads)
    except ValueError as error:  # a damaged model.tflite (LiteRTError, the interpreter's own ValueError)
        warnings.warn(f"{litert.model_file(version)} cannot be used ({error}); running the SavedModel instead. "
                      f"`python -m va2att.cli.export {version} --litert float32` writes it again.", stacklevel=3)
        return _from_saved_model(version, batch_size)


def load_inference_model(path: str | os.PathLike, batch_size: int = DEFAULT_BATCH_SIZE, runtime: str = "auto",
                         threads: int | None = None) -> InferenceModel:
    """Load a run folder, export root, SavedModel folder, `.keras` or `.tflite` file for inference (see module doc).

    Args:
        path: str or Path, what to load.
        batch_size: int, faces per call of the network.
        runtime: str, "auto", "savedmodel" or "litert": what runs an export version (module doc).
        threads: int or None, the LiteRT interpreter's CPU threads (default: the usable cores); TensorFlow
            runtimes use TensorFlow's own thread settings.
    """
    resolved = resolve_model_path(path, runtime)
    if resolved.suffix == ".tflite":
        return _from_litert(resolved, batch_size, threads)
    if resolved.is_file():
        return _from_keras(resolved, batch_size)
    if runtime == "auto" and litert.model_file(resolved).is_file() and not gpu_visible():
        return _from_litert_or_saved_model(resolved, batch_size, threads)
    return _from_saved_model(resolved, batch_size)
