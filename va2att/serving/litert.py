"""The served network as a LiteRT (TensorFlow Lite) model, beside the SavedModel, run by LiteRT's interpreter.

Every export writes `model.tflite` (float32) into its version folder, next to `saved_model.pb`,
converted from the export's own `serving_whole_batch` signature (`serving_default` without its CPU
chunk loop, `conversion_source`), so the LiteRT model is the folded graph the SavedModel serves
(`va2att.serving.folded_inference`), with the same signature name, input (`image`, float32
`[N, 48, 48, 1]`, pixels 0-255) and output names. TF Serving serves that file instead of the
SavedModel when started with `--prefer_tflite_model=true`, and an app on a phone runs it with the
LiteRT interpreter. Variants, on request (`VARIANTS`):

- `float32` (`model.tflite`, always written): the same arithmetic as the SavedModel; outputs equal it
  within float rounding (tests/test_litert.py: 1e-4 on random and real faces);
- `float16` (`model-float16.tflite`): weights stored as float16 (half the file), computed in float32
  on CPUs without float16 arithmetic, in float16 where the delegate supports it (phone GPUs, ARM);
- `int8` (`model-int8.tflite`): dynamic-range quantisation, weights as int8 (a quarter of the file),
  activations quantised on the fly per call, float inputs and outputs.

What the LiteRT model leaves out: the SavedModel's input checks (shape, NaN/inf, pixels outside 0-255:
the converter drops `CheckNumerics` and `Assert`). `LiteRTModel` (what `load_inference_model` returns for
a LiteRT model) checks pixels in Python before each call, as it does for a SavedModel; an app that runs
the file itself must send aligned 48 x 48 grayscale faces of pixels 0-255.

The interpreter is the `ai-edge-litert` package's (`ai_edge_litert.interpreter.Interpreter`), which
needs neither TensorFlow nor va2att: TensorFlow's own `tf.lite.Interpreter` is deprecated since
TensorFlow 2.20. The converter is TensorFlow's (`tf.lite.TFLiteConverter`), used only to write the files.
"""

from __future__ import annotations

import collections
import contextlib
import os
from pathlib import Path

import numpy as np

from va2att.serving.signature import IMAGE_INPUT, SERVING_DEFAULT, SERVING_WHOLE_BATCH
from va2att.util import fileio
from va2att.util.quiet import stderr_silenced

FLOAT32 = "float32"
VARIANTS = {  # variant -> file name in the version folder
    FLOAT32: "model.tflite",  # the name TF Serving's --prefer_tflite_model reads
    "float16": "model-float16.tflite",
    "int8": "model-int8.tflite",  # dynamic-range: int8 weights, float inputs and outputs
}
DEFAULT_VARIANTS = (FLOAT32,)


class LiteRTError(ValueError):
    """A LiteRT model could not be written or run (a failed conversion, a file that is not a va2att LiteRT
    model, no interpreter installed); a ValueError, as the loaders raise for a model they cannot use."""


def check_variants(variants) -> tuple[str, ...]:
    """`variants` as a tuple of known variant names in `VARIANTS`' order, each once; ValueError otherwise."""
    variants = tuple(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"Unknown LiteRT variants {unknown}; known: {', '.join(VARIANTS)}. Received: {variants}")
    return tuple(v for v in VARIANTS if v in variants)


@contextlib.contextmanager
def _conversion_errors(saved_model_dir, target: str):
    """Any failure inside as a one-line LiteRTError naming the SavedModel and `target` ("a float32 LiteRT model");
    the MLIR converter's own logging on stderr silenced (a failure is raised instead)."""
    try:
        with stderr_silenced():
            yield
    except Exception as error:  # noqa: BLE001 - its ConverterError is not public API; ValueError and others too
        message = " ".join(str(error).split())[:300]
        raise LiteRTError(f"Cannot convert {saved_model_dir} to {target}: {message}") from None


def conversion_source(saved_model_dir: str | os.PathLike):
    """(the loaded SavedModel, the signature function its LiteRT models are converted from).

    The export's `serving_whole_batch` signature (`serving_default` without the CPU's chunk loop,
    `va2att.serving.batch_chunks`: the converter takes neither its `DeviceIndex` nor, for LiteRT's CPU
    delegate, a loop), or `serving_default` in exports made before it existed.
    """
    import tensorflow as tf

    with _conversion_errors(saved_model_dir, "LiteRT models"):
        loaded = tf.saved_model.load(str(saved_model_dir))
        function = loaded.signatures.get(SERVING_WHOLE_BATCH, loaded.signatures.get(SERVING_DEFAULT))
        if function is None:
            raise ValueError(f"no {SERVING_DEFAULT} signature")
    return loaded, function


def convert(saved_model_dir: str | os.PathLike, variant: str = FLOAT32, source=None) -> bytes:
    """The LiteRT flatbuffer of `saved_model_dir`'s network, as `variant` quantises it, with the signature
    `serving_default` (input and outputs as the SavedModel's). `source`: `conversion_source(saved_model_dir)`
    when the caller has it already (it loads the SavedModel)."""
    import tensorflow as tf

    check_variants([variant])
    loaded, function = source or conversion_source(saved_model_dir)
    with _conversion_errors(saved_model_dir, f"a {variant} LiteRT model"):
        # One function converted: its signature is named serving_default, input and outputs as the source's.
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
        if variant != FLOAT32:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # without a data set: dynamic-range int8
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def write_models(saved_model_dir: str | os.PathLike, variants=DEFAULT_VARIANTS,
                 folder: str | os.PathLike | None = None) -> dict[str, Path]:
    """Convert the SavedModel (loaded once) for each of `variants` and write each file atomically into `folder`
    (default: the SavedModel's own folder). Returns variant -> path."""
    folder = Path(saved_model_dir if folder is None else folder)
    variants = check_variants(variants)
    source = conversion_source(saved_model_dir) if variants else None
    written = {}
    for variant in variants:
        content = convert(saved_model_dir, variant, source)
        with fileio.atomic_path(folder / VARIANTS[variant]) as tmp:
            tmp.write_bytes(content)
        written[variant] = folder / VARIANTS[variant]
    return written


def model_file(version_dir: str | os.PathLike, variant: str = FLOAT32) -> Path:
    """Where an export version keeps its LiteRT model of `variant` (it may not exist)."""
    check_variants([variant])
    return Path(version_dir) / VARIANTS[variant]


def variant_of(path: str | os.PathLike) -> str | None:
    """The variant a LiteRT file's name says (None for a name the export does not write)."""
    return next((v for v, name in VARIANTS.items() if Path(path).name == name), None)


def default_threads() -> int:
    """The interpreter's threads when none is asked for: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def interpreter(path: str | os.PathLike, threads: int | None = None):
    """The `ai-edge-litert` interpreter of the LiteRT file `path`, with `threads` CPU threads (XNNPACK)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise LiteRTError(f"Running a LiteRT model needs the ai-edge-litert package (pip install ai-edge-litert): "
                          f"{error}") from None
    return Interpreter(model_path=str(path), num_threads=threads or default_threads())


CHUNK = 4  # LiteRTModel runs a batch as chunks of at most this many faces
INTERPRETERS = CHUNK  # interpreters a LiteRTModel keeps, each planned for one chunk size (1 to CHUNK)


def _info_logs_hidden() -> bool:
    """Whether TensorFlow's INFO logs are asked off (`TF_CPP_MIN_LOG_LEVEL` 1 or more; va2att's command-line
    tools set it): then LiteRT's own INFO line, which no setting of its Python API turns off, goes too."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 1
    except ValueError:
        return False


def chunk_sizes(n: int) -> list[int]:
    """The chunks a batch of `n` faces runs as: `CHUNK` faces each, the rest in one last chunk."""
    return [CHUNK] * (n // CHUNK) + ([n % CHUNK] if n % CHUNK else [])


class LiteRTModel:
    """A LiteRT model's `serving_default` as a callable: float32 `[n, 48, 48, 1]` -> {output name: array}.

    Args:
        path: str or Path, a `.tflite` file written by the export.
        threads: int or None, the interpreter's CPU threads (default: the usable cores).
        interpreters: int, how many interpreters to keep, each planned for one batch size.

    A batch runs as chunks of `CHUNK` faces and one smaller last chunk (`chunk_sizes`), one after another:
    XNNPACK serves the most faces per second at a few faces a call, where a layer's activations stay in
    the caches (chunks of 4 serve 1.45x the faces/s of one call of 256 with the float32 model, 1.85x with
    int8; BENCHMARKS.md). An interpreter plans its work (XNNPACK's kernels, memory) for one batch size,
    and planning again takes longer than running a small batch, so each chunk size (1 to `CHUNK`) keeps an
    interpreter planned for it (`interpreters` of them at most; past that the least recently used one
    plans again). Rows do not affect each other (inference batch norm), so the outputs are those of the
    faces alone, whatever the chunks. Not thread-safe: one LiteRTModel per thread.

    LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on the process's first call;
    where TensorFlow's INFO logs are off (`TF_CPP_MIN_LOG_LEVEL` >= 1, as the command-line tools set it)
    that call runs with the process's stderr pointed at /dev/null, so the line stays off their output
    (an error still raises, with its message).
    """

    _first_call_done = False  # per process: LiteRT prints its delegate's INFO line once

    def __init__(self, path, threads: int | None = None, interpreters: int = INTERPRETERS):
        self.path = Path(path)
        self.threads = threads
        self.interpreters = max(1, int(interpreters))
        self.interpreter = interpreter(self.path, threads)
        signatures = self.interpreter.get_signature_list()
        if SERVING_DEFAULT not in signatures or signatures[SERVING_DEFAULT]["inputs"] != [IMAGE_INPUT]:
            raise LiteRTError(f"{self.path} has no {SERVING_DEFAULT} signature taking {IMAGE_INPUT!r} "
                              f"(found {signatures}): is it a va2att export's LiteRT model?")
        self._first = self.interpreter.get_signature_runner(SERVING_DEFAULT)
        self._runners: collections.OrderedDict = collections.OrderedDict()  # padded size -> signature runner
        self.output_names = tuple(signatures[SERVING_DEFAULT]["outputs"])

    def output_widths(self) -> dict[str, int]:
        """{output name: values per face}, from the model's output shapes."""
        details = self._first.get_output_details()
        return {name: int(details[name]["shape"][-1]) if len(details[name]["shape"]) == 2 else 1
                for name in self.output_names}

    def _runner(self, size: int):
        runner = self._runners.pop(size, None)
        if runner is None:
            if not self._runners:  # the first call: the interpreter opened to read the signatures
                runner = self._first
            elif len(self._runners) >= self.interpreters:
                runner = self._runners.popitem(last=False)[1]  # re-planned for `size` by its next call
            else:
                runner = interpreter(self.path, self.threads).get_signature_runner(SERVING_DEFAULT)
        self._runners[size] = runner
        return runner

    def __call__(self, images) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if len(images) == 0:  # the answer to one blank face, without its row
            return {name: value[:0] for name, value in self(np.zeros((1, *images.shape[1:]), np.float32)).items()}
        parts, start = [], 0
        quiet = not LiteRTModel._first_call_done and _info_logs_hidden()
        with stderr_silenced() if quiet else contextlib.nullcontext():
            for n in chunk_sizes(len(images)):
                parts.append(self._runner(n)(**{IMAGE_INPUT: images[start:start + n]}))
                start += n
        LiteRTModel._first_call_done = True
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
