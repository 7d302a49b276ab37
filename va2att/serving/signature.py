"""The served model's contract, named once: signature names, input names and the served outputs.

`SERVED_OUTPUTS` describes every output the network may serve (name, kind, width, dtype, order). The
export (`va2att.serving.export`) refuses a model with an output not described here and writes the
description into its metadata; loading (`va2att.serving.loading`), the REST and gRPC answers
(`va2att.serving.request`, `va2att.serving.remote`), the client's lines (`va2att.cli.client`), the
`Predictor`'s `FaceResult` and predict's table and CSV (`va2att.prediction`, `va2att.cli.predict`) all
read it, so a new output is one entry here (and the head that computes it, `va2att.model.heads`).
Consumers look the description up when they run (`served_outputs()`), never copy it at import.
Plain Python, so a client needs neither TensorFlow nor Keras to use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from va2att.config import EXPRESSION_NAMES

SERVING_DEFAULT = "serving_default"  # signature: float32 pixels of aligned, centre-cropped faces
SERVING_XLA = "serving_xla"  # optional signature (exports made with xla=True): SERVING_DEFAULT compiled with XLA
SERVING_BYTES = "serving_bytes"  # signature: encoded images of aligned faces
# signature: SERVING_DEFAULT running every batch whole, without the CPU's chunks (va2att.serving.batch_chunks);
# what the LiteRT models are converted from
SERVING_WHOLE_BATCH = "serving_whole_batch"
IMAGE_INPUT = "image"  # input of SERVING_DEFAULT, float32 [N, 48, 48, 1], pixels 0-255
PIXEL_RANGE = (0.0, 255.0)  # the pixel values the network takes; others are refused (in the export's graph too)
BYTES_INPUT = "image_bytes"  # input of SERVING_BYTES, string [N] (TF Serving's `_bytes` convention: sent as b64)

SCORE = "score"  # one number per face in [-1, 1] (a tanh unit): printed signed, clipped by the Predictor
PROBABILITIES = "probabilities"  # one probability per class: printed as the most probable class
TEXT = "text"  # one string per face


@dataclass(frozen=True)
class ServedOutput:
    """One named output of the served signatures.

    Args:
        name: str, the output's name in the SavedModel and in TF Serving's answers.
        kind: str, `SCORE`, `PROBABILITIES` or `TEXT` (how it is checked, printed and reported).
        label: str, the short name drawn on annotated pictures (`V +0.42`); "" draws the class name.
        classes: tuple of str, the class names of a `PROBABILITIES` output (the model may have fewer).
        dtype: str, "float32" or "string".
    """

    name: str
    kind: str
    label: str = ""
    classes: tuple[str, ...] = ()
    dtype: str = "float32"

    def shape_problem(self, shape: tuple[int, ...], count: int) -> str | None:
        """Why an answer of `shape` for `count` faces does not fit this output, or None when it does.

        A score is one number per face (`[N, 1]`, or `[N]` as TF Serving's row format may give it),
        probabilities are `[N, K]` with K >= 1, text is `[N]`."""
        shape = tuple(shape)
        if self.kind == SCORE:
            fits = shape in ((count, 1), (count,))
            wanted = f"[{count}, 1]"
        elif self.kind == PROBABILITIES:
            fits = len(shape) == 2 and shape[0] == count and shape[1] >= 1
            wanted = f"[{count}, K] with K >= 1"
        else:
            fits = shape == (count,)
            wanted = f"[{count}]"
        return None if fits else f"{self.name}: expected {wanted} for {count} face(s), received shape {list(shape)}"


SERVED_OUTPUTS: tuple[ServedOutput, ...] = (
    ServedOutput("valence", SCORE, label="V"),
    ServedOutput("arousal", SCORE, label="A"),
    ServedOutput("expression", PROBABILITIES, classes=EXPRESSION_NAMES),
)
# SERVING_BYTES answers it besides the network's outputs: "" for a decoded image, else why it was refused.
BYTES_ERROR_OUTPUT = ServedOutput("error", TEXT, dtype="string")
BYTES_ERROR = BYTES_ERROR_OUTPUT.name
OUTPUT_ORDER = tuple(output.name for output in SERVED_OUTPUTS)  # how outputs are listed, whatever a model's order


def served_outputs() -> tuple[ServedOutput, ...]:
    """The network's served outputs, in order (`SERVED_OUTPUTS` as it is now)."""
    return SERVED_OUTPUTS


def served_output(name: str) -> ServedOutput | None:
    """The description of output `name` (the network's, or `serving_bytes`'s `error`); None when unknown."""
    return next((o for o in (*served_outputs(), BYTES_ERROR_OUTPUT) if o.name == name), None)


def outputs_of_kind(kind: str, names: Iterable[str] | None = None) -> tuple[ServedOutput, ...]:
    """The served outputs of one kind, in order; only those in `names` when given."""
    names = None if names is None else set(names)
    return tuple(o for o in served_outputs() if o.kind == kind and (names is None or o.name in names))


def ordered_names(names: Iterable[str]) -> tuple[str, ...]:
    """Output names in the served order, then any other name alphabetically."""
    names = list(names)
    known = [o.name for o in served_outputs() if o.name in names]
    return tuple(known + sorted(name for name in names if name not in known))


def order_outputs(outputs: Mapping) -> dict:
    """The same mapping with its keys in `ordered_names` order."""
    return {name: outputs[name] for name in ordered_names(outputs)}


def unknown_outputs(names: Iterable[str]) -> list[str]:
    """The names that are neither a served output nor `serving_bytes`'s error, sorted."""
    return sorted(name for name in names if served_output(name) is None)


def describe() -> dict:
    """The description as JSON (written into each export's metadata)."""
    return {o.name: {"kind": o.kind, "dtype": o.dtype, **({"classes": list(o.classes)} if o.classes else {})}
            for o in (*served_outputs(), BYTES_ERROR_OUTPUT)}
