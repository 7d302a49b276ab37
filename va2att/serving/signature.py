"""The served model's contract, named once: signature names, input names and the order of the outputs.

The exported SavedModel (`va2att.serving.export`) is written with these names; loading (`va2att.serving.loading`)
and the TF Serving request bodies and client (`va2att.serving`) read them from here. Plain Python,
so a client needs neither TensorFlow nor Keras to use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SERVING_DEFAULT = "serving_default"  # signature: float32 pixels of aligned, centre-cropped faces
SERVING_XLA = "serving_xla"  # optional signature (exports made with xla=True): SERVING_DEFAULT compiled with XLA
SERVING_BYTES = "serving_bytes"  # signature: encoded images of aligned faces
IMAGE_INPUT = "image"  # input of SERVING_DEFAULT, float32 [N, 48, 48, 1], pixels 0-255
BYTES_INPUT = "image_bytes"  # input of SERVING_BYTES, string [N] (TF Serving's `_bytes` convention: sent as b64)
BYTES_ERROR = "error"  # output of SERVING_BYTES, string [N]: "" for a decoded image, else why it was refused
OUTPUT_ORDER = ("valence", "arousal", "expression")  # how outputs are listed, whatever order a model gives them


def ordered_names(names: Iterable[str]) -> tuple[str, ...]:
    """Output names in `OUTPUT_ORDER`, then any other name alphabetically."""
    names = list(names)
    known = [name for name in OUTPUT_ORDER if name in names]
    return tuple(known + sorted(name for name in names if name not in known))


def order_outputs(outputs: Mapping) -> dict:
    """The same mapping with its keys in `ordered_names` order."""
    return {name: outputs[name] for name in ordered_names(outputs)}
