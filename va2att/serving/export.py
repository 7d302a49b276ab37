"""Export a trained model as a SavedModel that TF Serving (and plain TensorFlow) can load.

Layout (TF Serving's): `export_root/<version>/saved_model.pb` + `variables/` + `assets.extra/va2att.json`
+ `model.tflite`, where `<version>` is an integer, by default one more than the largest version already
there. The version folder is written under a hidden temporary name and renamed into place once complete,
so a TF Serving instance watching `export_root` never sees a half-written model. `model.tflite` is the
same network as a float32 LiteRT model (`va2att.serving.litert`: what TF Serving serves with
`--prefer_tflite_model=true`, and what a phone runs); `litert=` adds its float16 and int8 variants.

Signatures:

- `serving_default`: input `image`, float32 `[None, 48, 48, 1]`, raw pixel values 0-255 of an aligned
  grayscale face (centre 48x48 crop of the 56x56 alignment); outputs a dict with the model's outputs
  (`valence`, `arousal` float32 `[None, 1]`, `expression` float32 `[None, K]` probabilities — whichever
  the model has). The input is checked inside the graph before any kernel runs (`checked_pixels`): a
  wrong rank, size or channel count, or a NaN/inf pixel, is a clean `InvalidArgumentError` naming what
  was expected, never a process abort; so are pixels outside 0-255 (`PIXEL_RANGE`: finite but huge
  values would give NaN or a blank face's outputs). A batch of 0 images answers empty outputs.
- `serving_bytes`: input `image_bytes`, string `[None]`, each an encoded JPEG/PNG/GIF/BMP of an aligned
  face (GIF: the first frame). Each image's header is checked before decoding (format, and at most
  `MAX_PIXELS` pixels; `va2att.serving.encoded_images`); it is then decoded to grayscale; a 48x48 image is used
  as it is, any other size is resized to the 56x56 alignment size and centre-cropped to 48x48. Same
  outputs, plus `error` (string `[None]`): empty for a decoded image, else why it was refused, and then
  its other outputs are NaN; the rest of the batch is answered, whatever fails for one image (a corrupt
  body included). Over REST, binary values are sent as
  `{"b64": "..."}` (the input name ends in `_bytes`, TF Serving's convention for binary data).
- `serving_xla` (only in exports made with `xla=True`, never by default): `serving_default` with the
  network compiled by XLA (same input, checks and outputs). TF Serving runs XLA-compiled functions
  only when started with `--xla_cpu_compilation_enabled=true`; compose's `serving-cpu-xla` does.
- `serving_whole_batch`: `serving_default` computing every batch whole. `serving_default` runs a batch
  of more than 16 faces on a CPU as chunks of at most 16, two at a time (`va2att.serving.batch_chunks`:
  the activations stay in the caches; 1.2-1.6x the faces/s at batch 256), and this signature does not;
  the LiteRT models are converted from it (the converter takes no such loop). Same input, checks and
  outputs.
- `provenance` (when the export is given one, as every training run does): no inputs; output
  `provenance`, a JSON string: the data set that trained the model, its size, the va2att version and
  commit, the best validation scores (`va2att.serving.provenance`). Also in `assets.extra/va2att.json`.

Every signature runs the model's folded inference graph (`va2att.serving.folded_inference`): the weights are
constants in the graph and every batch norm that directly follows a convolution is folded into it, so
a call runs a few hundred nodes instead of the Keras graph's ~1,400 (variable reads, and the `Switch`
and `Identity` that the empty-batch cond adds per captured variable); `fold=False` exports the Keras
graph with its variables instead. The outputs equal the Keras model's up to float rounding.

The exported graph never contains cuDNN-only kernels (`CudnnRNN*`): recurrent layers are traced with
their portable implementation even when the export runs on a GPU machine, so the same SavedModel is
served by CPU and GPU builds of TF Serving. `saved_model_op_types` lists every op of a SavedModel so
tests (and users) can check this.

The model's outputs must be the served outputs described in `va2att.serving.signature` (their names
and shapes); the description goes into the metadata. Writing is safe to interrupt: one export at a time
holds the export root (an OS lock on the folder itself, gone with its process); it first removes the
temporaries that killed exports left, and a failure to write (a full disk, a read-only folder) is an
`ExportError` and Ctrl-C an `ExportInterrupted` (a KeyboardInterrupt), both one line, after which no
new version and no temporary exists. `find_version` finds the version that already holds a run's
best model, so a run killed between the export and recording it does not export it twice.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from pathlib import Path

import keras
import tensorflow as tf

from va2att.config import FACE_SIZE, INPUT_SIZE
from va2att.faces.network_input import inference_forward
from va2att.serving import litert as litert_models
from va2att.serving.batch_chunks import outputs_in_chunks
from va2att.serving.encoded_images import MAX_PIXELS, checked_faces
from va2att.serving.folded_inference import folded_forward
from va2att.serving.signature import (
    BYTES_ERROR,
    BYTES_INPUT,
    IMAGE_INPUT,
    PIXEL_RANGE,
    PROBABILITIES,
    SERVING_BYTES,
    SERVING_DEFAULT,
    SERVING_WHOLE_BATCH,
    SERVING_XLA,
    describe,
    outputs_of_kind,
    served_output,
    served_outputs,
)
from va2att.util import fileio
from va2att.util.locking import FolderInUseError, folder_lock
from va2att.util.storage import storage_problem

METADATA_FILE = "assets.extra/va2att.json"
PROVENANCE_SIGNATURE = PROVENANCE_OUTPUT = "provenance"  # where the model comes from, as a JSON string
# Ops that exist only in GPU (cuDNN) builds of TensorFlow; a graph containing one cannot run on a CPU server.
CUDNN_OP_PATTERN = re.compile(r"^Cudnn", re.IGNORECASE)


class ExportError(RuntimeError):
    """The export could not be written (full disk, read-only folder, another export running); one line."""


class ExportInterrupted(KeyboardInterrupt):
    """Ctrl-C during an export; nothing was left behind. The message is one line."""


def list_versions(export_root: str | os.PathLike) -> list[int]:
    """Integer version folders under `export_root` (ascending); other names are ignored, as TF Serving does."""
    root = Path(export_root)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


@contextlib.contextmanager
def portable_recurrent_layers(model: keras.Model):
    """Within the block, recurrent layers (GRU, LSTM) of `model` trace their generic loop, never cuDNN.

    Keras picks the cuDNN kernel when a GPU is visible at trace time; a SavedModel traced that way
    holds `CudnnRNNV3` ops that CPU builds of TensorFlow and TF Serving cannot run.
    """
    changed = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if hasattr(layer, "use_cudnn") and layer.use_cudnn is not False:
            changed.append((layer, layer.use_cudnn))
            layer.use_cudnn = False
    try:
        yield
    finally:
        for layer, value in changed:
            layer.use_cudnn = value


def _metadata(model: keras.Model, outputs: dict, xla: bool = False) -> dict:
    shapes = {name: [None if d is None else int(d) for d in value.shape] for name, value in outputs.items()}
    probabilities = outputs_of_kind(PROBABILITIES, shapes)
    num_classes = shapes[probabilities[0].name][-1] if probabilities else None
    classes = probabilities[0].classes if probabilities else ()
    names = list(classes[:num_classes]) if num_classes and num_classes <= len(classes) else None
    pixels = {IMAGE_INPUT: ["float32", [None, INPUT_SIZE, INPUT_SIZE, 1]]}  # serving_default and serving_xla
    return {
        "format": "va2att-saved-model",
        "model_class": type(model).__name__,
        "signatures": {
            SERVING_DEFAULT: {"inputs": pixels},
            SERVING_BYTES: {"inputs": {BYTES_INPUT: ["string", [None]]}, "error_output": BYTES_ERROR,
                            "max_pixels": MAX_PIXELS},
            **({SERVING_XLA: {"inputs": pixels, "needs": "--xla_cpu_compilation_enabled=true"}} if xla else {}),
        },
        "outputs": shapes,
        "served_outputs": describe(),
        "num_classes": num_classes,
        "expression_names": names,
        "input_pixels": "0-255",
        "face_size": FACE_SIZE,
        "input_size": INPUT_SIZE,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }


def checked_pixels(image):
    """The `image` input, validated before any kernel sees it (a clean InvalidArgumentError otherwise).

    A kernel given a tensor of the wrong rank can abort the whole process (a check failure), so the
    shape is enforced first (`EnsureShape`: rank 4, 48 x 48, one channel; its message names the
    expected shape), then finiteness (`CheckNumerics`: NaN or infinite pixels), then the range
    (`PIXEL_RANGE`: finite but huge pixels overflow the per-image standardization into NaN outputs,
    or into a blank face's).
    """
    image = tf.ensure_shape(image, [None, INPUT_SIZE, INPUT_SIZE, 1])
    image = tf.debugging.check_numerics(image, f"{IMAGE_INPUT}: pixels must be finite numbers (0-255), found NaN or inf")
    low, high = PIXEL_RANGE
    inside = tf.logical_or(tf.equal(tf.size(image), 0), tf.logical_and(tf.reduce_min(image) >= low,
                                                                       tf.reduce_max(image) <= high))
    message = f"{IMAGE_INPUT}: pixels must be from {low:g} to {high:g}; found values from"
    check = tf.debugging.Assert(inside, [message, tf.reduce_min(image), "to", tf.reduce_max(image)], summarize=1)
    with tf.control_dependencies([check]):
        return tf.identity(image)


def _outputs_or_empty(forward, images) -> dict:
    """`forward(images)`, the model's named outputs; empty outputs for an empty batch.

    Some of the network's kernels refuse an empty batch, so an empty one is run as one blank image whose
    outputs are then cut away: `images` gains `max(1 - n, 0)` zero images and the outputs keep their first
    `n` rows. No `tf.cond`: a conditional would put the whole network inside an `If` subgraph, which the
    LiteRT converter keeps and LiteRT's CPU delegate (XNNPACK) does not take (`va2att.serving.litert`).
    """
    count = tf.shape(images)[0]
    blank = tf.zeros(tf.concat([[tf.maximum(1 - count, 0)], tf.shape(images)[1:]], 0), images.dtype)
    outputs = forward(tf.concat([images, blank], 0))
    return {name: value[:count] for name, value in outputs.items()}


def _check_outputs(specs: dict) -> None:
    """Refuse a model whose outputs are not the served outputs (`va2att.serving.signature`) or lack their shapes."""
    problems = []
    for name, spec in specs.items():
        described = served_output(name)
        if described is None or described.name == BYTES_ERROR:
            problems.append(f"{name} is not a served output")
        else:
            problems.append(described.shape_problem(tuple(spec.shape), None))
    if not specs or any(problems):
        known = ", ".join(o.name for o in served_outputs())
        raise ValueError(f"The model's outputs do not fit the served outputs ({known}; va2att.serving.signature."
                         f"SERVED_OUTPUTS describes each): {'; '.join(p for p in problems if p) or 'it has none'}.")


def _build_archive(model: keras.Model, provenance: dict | None = None, fold: bool = True,
                   xla: bool = False) -> tuple[keras.export.ExportArchive, dict]:
    archive = keras.export.ExportArchive()
    pixels_spec = tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 1], tf.float32, name=IMAGE_INPUT)
    if fold:
        forward = folded_forward(model)  # the weights as constants, batch norms folded into convolutions
    else:
        archive.track(model)
        forward = inference_forward(model)  # the Keras model's own graph, reading its variables
    # Output shapes from a trace, not a run: the export itself never executes the model.
    traced = tf.function(forward).get_concrete_function(pixels_spec).structured_outputs
    specs = {name: tf.TensorSpec([None, *value.shape[1:]], tf.float32) for name, value in traced.items()}
    _check_outputs(specs)

    whole = functools.partial(_outputs_or_empty, forward)

    def network_outputs(images):
        """The network's outputs; on a CPU a large batch in chunks (`va2att.serving.batch_chunks`)."""
        return outputs_in_chunks(forward, images, whole, specs)

    def serve_pixels_with(network):
        def serve_pixels(image):
            return network(checked_pixels(image))

        return serve_pixels

    def serve_bytes(image_bytes):
        faces, errors = checked_faces(tf.ensure_shape(image_bytes, [None]))
        outputs = network_outputs(faces)
        failed = tf.not_equal(errors, "")
        outputs = {name: tf.where(tf.reshape(failed, [-1, 1]), tf.constant(float("nan")), value)
                   for name, value in outputs.items()}
        return {**outputs, BYTES_ERROR: errors}

    bytes_spec = tf.TensorSpec([None], tf.string, name=BYTES_INPUT)
    pixels_fn = archive.add_endpoint(SERVING_DEFAULT, serve_pixels_with(network_outputs), input_signature=[pixels_spec])
    archive.add_endpoint(SERVING_BYTES, serve_bytes, input_signature=[bytes_spec])
    archive.add_endpoint(SERVING_WHOLE_BATCH, serve_pixels_with(whole), input_signature=[pixels_spec])
    if xla:
        # The checks and the empty-batch padding stay outside the compiled function: XLA compiles the
        # network alone, once per batch size seen.
        compiled = tf.function(forward, jit_compile=True)
        archive.add_endpoint(SERVING_XLA, serve_pixels_with(functools.partial(_outputs_or_empty, compiled)),
                             input_signature=[pixels_spec])  # XLA compiles each batch size whole
    if provenance is not None:
        record = json.dumps(provenance, sort_keys=True)

        def serve_provenance():
            return {PROVENANCE_OUTPUT: tf.constant(record)}

        archive.add_endpoint(PROVENANCE_SIGNATURE, serve_provenance, input_signature=[])
    return archive, pixels_fn.get_concrete_function().structured_outputs


def export_saved_model(model: keras.Model, export_root: str | os.PathLike, version: int | None = None,
                       provenance: dict | None = None, fold: bool = True, xla: bool = False,
                       litert=litert_models.DEFAULT_VARIANTS) -> Path:
    """Write `model` to `export_root/<version>/` as a TF Serving SavedModel and return that folder.

    Args:
        model: keras.Model, input `image` `[None, 48, 48, 1]` pixels 0-255, dict outputs.
        export_root: folder of numbered versions (e.g. `RUN_DIR/export/va2att`); created if missing.
        version: int or None. None = one more than the largest existing version (1 for the first).
            An existing version is never overwritten.
        provenance: dict or None, where the model comes from (`va2att.serving.provenance.make_record`): stored in
            `assets.extra/va2att.json` under "provenance" and answered by a `provenance` signature
            (no inputs; output `provenance`, a JSON string).
        fold: bool. True (default): the signatures run the folded inference graph
            (`va2att.serving.folded_inference`: weights as constants, batch norms folded into the convolutions
            before them; no variables in the SavedModel). False: the Keras model's own graph, reading
            its variables (more graph nodes per call; kept to compare the two, e.g.
            benchmarks/bench_compare.py).
        xla: bool. Also add the `serving_xla` signature (`serving_default` compiled with XLA). Off by
            default: TF Serving runs it only when started with `--xla_cpu_compilation_enabled=true`,
            so such exports belong in their own export root (e.g. `RUN_DIR/export/va2att-xla`, which
            compose's `serving-cpu-xla` serves; docs/serving.md).
        litert: iterable of str, the LiteRT models to write beside the SavedModel (`va2att.serving.litert.
            VARIANTS`): "float32" (`model.tflite`, always written unless `litert` is empty), "float16",
            "int8" (dynamic range). `()` writes none.

    Raises:
        ValueError: the model is not built, its outputs are not the served outputs, a bad version or an
            unknown LiteRT variant.
        FileExistsError: `version` exists already.
        ExportError: the export cannot be written (full disk, read-only folder, another export at work, a
            LiteRT conversion that fails).
        ExportInterrupted: Ctrl-C (a KeyboardInterrupt). After any of these no new version exists and no
            temporary is left (one that a killed process leaves is removed by the next export).
    """
    if not model.built:
        raise ValueError("The model must be built (called once or created from keras.Input) before export.")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ValueError(f"The export version must be a non-negative integer. Received: version={version!r}")
    litert = litert_models.check_variants((litert_models.FLOAT32, *litert)) if tuple(litert) else ()
    root = Path(export_root)
    try:
        with _only_export(root):
            fileio.remove_temporaries(root)  # left by exports that were killed (SIGTERM, kill -9)
            if version is None:
                existing = list_versions(root)
                version = existing[-1] + 1 if existing else 1
            final = root / str(version)
            if final.exists():
                raise FileExistsError(f"Export version {final} already exists; pass another version or none.")
            _write(model, final, provenance, fold, xla, litert)
    except KeyboardInterrupt:
        raise ExportInterrupted(f"The export to {root} was interrupted; no new version was written.") from None
    except litert_models.LiteRTError as error:
        raise ExportError(f"{error}; no new version was written.") from None
    except (OSError, tf.errors.OpError) as error:
        if isinstance(error, FileExistsError) and not storage_problem(error):
            raise
        problem = storage_problem(error) or " ".join(f"{type(error).__name__}: {error}".split())[:300]
        raise ExportError(f"Cannot write the export in {root}: {problem}; no new version was written.") from None
    return final


@contextlib.contextmanager
def _only_export(root: Path):
    """Hold `root` for one export at a time: an OS lock on the folder itself (no lock file among the versions
    that TF Serving lists), released when the process ends however it ends."""
    try:
        with folder_lock(root, "export", lock_file=False):
            yield
    except FolderInUseError:
        raise ExportError(f"Another process is exporting to {root}; wait for it to finish.") from None


def _write(model: keras.Model, final: Path, provenance: dict | None, fold: bool, xla: bool, litert: tuple) -> None:
    """The SavedModel, its LiteRT models and its metadata, written under a hidden temporary name and renamed
    to `final`."""
    with fileio.atomic_path(final, overwrite=False) as tmp:
        # Saving traces the endpoints again (in TensorFlow's save context), so the whole export,
        # not only the first trace, runs with the portable recurrent implementation.
        with portable_recurrent_layers(model):
            archive, outputs = _build_archive(model, provenance, fold, xla)
            archive.write_out(str(tmp), verbose=False)
        written = litert_models.write_models(tmp, litert) if litert else {}
        meta = tmp / METADATA_FILE
        meta.parent.mkdir(parents=True, exist_ok=True)
        metadata = _metadata(model, outputs, xla)
        metadata["litert"] = {variant: path.name for variant, path in written.items()}
        if provenance is not None:
            metadata["provenance"] = provenance
        meta.write_text(json.dumps(metadata, indent=2) + "\n")


def find_version(export_root: str | os.PathLike, provenance: dict) -> Path | None:
    """The newest version under `export_root` that holds the model `provenance` describes (the same data and
    training record: a run's best epoch), or None. A run killed after its export was renamed into place
    but before the run recorded it finds that version here instead of exporting it again."""
    root = Path(export_root)
    wanted = {key: provenance.get(key) for key in ("data", "training")}
    for version in reversed(list_versions(root)):
        try:
            found = json.loads((root / str(version) / METADATA_FILE).read_text()).get("provenance") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if {key: found.get(key) for key in wanted} == wanted:
            return root / str(version)
    return None


def saved_model_op_types(saved_model_dir: str | os.PathLike) -> set[str]:
    """Every op type in a SavedModel: the graph defs of all meta graphs and their function libraries."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    ops: set[str] = set()
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def cudnn_only_ops(saved_model_dir: str | os.PathLike) -> set[str]:
    """The op types of a SavedModel that need a cuDNN (GPU) build of TensorFlow; empty when portable."""
    return {op for op in saved_model_op_types(saved_model_dir) if CUDNN_OP_PATTERN.match(op)}
