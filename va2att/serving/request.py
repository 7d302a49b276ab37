"""TF Serving REST bodies for the exported model, built and parsed with the standard library and NumPy.

Request format: TF Serving's **row format**, one object per face, keyed by the signature's input name:

    {"signature_name": "serving_default",
     "instances": [{"image": [[[p], [p], ...], ...]}, ...]}     # each image 48 x 48 x 1, pixels 0-255

Pixels of aligned faces are whole numbers and are written as JSON integers (TF Serving converts them to
the input's float32), which keeps the body about half the size of float text. For the `serving_bytes`
signature each instance is `{"image_bytes": {"b64": "<base64 of a JPEG/PNG/GIF/BMP>"}}`, and each prediction
also holds `"error"`: "" for an image that was decoded, else why it was refused (its other outputs are NaN).

Response: `{"predictions": [{"valence": [v], "arousal": [a], "expression": [p0, ..., pK-1]}, ...]}`, one
object per instance (TF Serving drops the names when a model has a single output: then each prediction
is the bare value). Errors come back as `{"error": "<message>"}` with an HTTP error status.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping

import numpy as np

from va2att.config import INPUT_SIZE
from va2att.faces.network_input import prepare_faces  # noqa: F401  (part of this module's API: faces -> body input)
from va2att.serving.signature import (
    BYTES_INPUT,
    IMAGE_INPUT,
    PIXEL_RANGE,
    SCORE,
    SERVING_BYTES,
    SERVING_DEFAULT,
    order_outputs,
    served_output,
    served_outputs,
)


class ServingError(RuntimeError):
    """A request TF Serving refused or could not answer; the message is one line, ready to print."""


def predict_url(base_url: str, model: str, version: int | None = None) -> str:
    """`http://host:8501` + model name -> the REST predict endpoint (optionally of one version).

    The address is checked here, before anything is sent: http or https only (no scheme means http),
    a host, a numeric port. The model name is quoted into the path. Raises ValueError (one line).
    """
    from urllib.parse import quote, urlsplit

    base = base_url.strip()
    if "://" not in base:
        base = "http://" + base
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError as error:
        raise ValueError(f"Malformed server URL {base_url!r}: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"Server URL {base_url!r}: only http:// and https:// are supported, not {parts.scheme}://")
    if not parts.hostname:
        raise ValueError(f"Server URL {base_url!r} names no host")
    if not model:
        raise ValueError("The model name is empty")
    base = base.rstrip("/")
    path = f"/v1/models/{quote(model, safe='')}" + (f"/versions/{int(version)}" if version is not None else "")
    return f"{base}{path}:predict"


def build_predict_body(images, signature_name: str = SERVING_DEFAULT) -> dict:
    """Row-format predict body for float32 `[N, 48, 48, 1]` pixel images (see `prepare_faces`)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 1):
        raise ValueError(
            f"Expected images of shape [N, {INPUT_SIZE}, {INPUT_SIZE}, 1]. Received: shape={images.shape}"
        )
    if not np.all(np.isfinite(images)):
        raise ValueError("Images contain NaN or infinite pixel values.")
    low, high = PIXEL_RANGE
    if images.size and (images.min() < low or images.max() > high):
        raise ValueError(f"Pixels must be from {low:g} to {high:g} (the served model refuses others). "
                         f"Received: values from {images.min()} to {images.max()}")
    whole = np.array_equal(images, np.round(images))
    values = images.astype(np.int64) if whole else images
    return {"signature_name": signature_name, "instances": [{IMAGE_INPUT: image.tolist()} for image in values]}


def build_bytes_body(encoded_images: Iterable[bytes], signature_name: str = SERVING_BYTES) -> dict:
    """Row-format body for the `serving_bytes` signature: encoded JPEG/PNG faces as `{"b64": ...}`."""
    return {
        "signature_name": signature_name,
        "instances": [{BYTES_INPUT: {"b64": base64.b64encode(bytes(data)).decode("ascii")}} for data in encoded_images],
    }


def encode_body(body: Mapping) -> bytes:
    """The bytes sent over HTTP (compact JSON, UTF-8)."""
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _decode_json(payload) -> object:
    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8", errors="replace")
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            snippet = " ".join(payload.split())[:200]
            raise ServingError(f"The server did not answer with JSON: {snippet!r}") from None
        except RecursionError:
            raise ServingError("The server's answer is JSON nested too deeply to be a predict response.") from None
    return payload


def error_message(payload) -> str | None:
    """The `error` string of a TF Serving error body, or None when the payload is not one."""
    try:
        data = _decode_json(payload)
    except ServingError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return " ".join(data["error"].split())
    return None


def _columns(data: dict, single: str) -> dict:
    """`{output name: values for every face}` from a row (`predictions`) or columnar (`outputs`) answer."""
    if "predictions" in data:
        rows = data["predictions"]
        if not isinstance(rows, list):
            raise ServingError("Unexpected predict response: 'predictions' is not a list.")
        if not (rows and all(isinstance(r, dict) for r in rows)):
            return {single: rows}
        names = list(rows[0])
        for i, row in enumerate(rows):
            if set(row) != set(names):
                raise ServingError(f"Unexpected predict response: prediction {i} has the outputs {sorted(row)}, "
                                   f"prediction 0 has {sorted(names)}.")
        return {name: [r[name] for r in rows] for name in names}
    outputs = data["outputs"]
    return dict(outputs) if isinstance(outputs, dict) else {single: outputs}


def parse_predict_response(payload, output_names: Iterable[str] | None = None,
                           count: int | None = None) -> dict[str, np.ndarray]:
    """A predict response (bytes, str or parsed JSON) -> `{output name: array [N, ...]}`.

    Each output's dtype is its served description's (`va2att.serving.signature`): float32, or str
    for the `serving_bytes` signature's `error` output (one string per image, empty when it was decoded).

    Handles the row (`predictions`) and columnar (`outputs`) answers. For a single-output model TF
    Serving omits the name; `output_names` (one name) then says what to call it (default "output").
    With `count` (the faces sent) the answer is checked too (`check_answer`).
    Raises ServingError for an `{"error": ...}` body or an answer of the wrong shape.
    """
    data = _decode_json(payload)
    message = error_message(data)
    if message is not None:
        raise ServingError(f"TF Serving error: {message}")
    if not isinstance(data, dict) or not ({"predictions", "outputs"} & set(data)):
        raise ServingError(f"Unexpected predict response: no 'predictions' or 'outputs' in {str(data)[:200]!r}")
    single = (list(output_names) or ["output"])[0] if output_names is not None else "output"
    result = {}
    for name, value in _columns(data, single).items():
        described = served_output(name)
        try:
            result[name] = np.asarray(value, dtype=str if described and described.dtype == "string" else np.float32)
        except (TypeError, ValueError, RecursionError) as error:
            raise ServingError(f"Unexpected predict response: {name} is not an array of "
                               f"{described.dtype if described else 'numbers'} ({type(error).__name__}).") from None
    result = order_outputs(result)
    return result if count is None else check_answer(result, count)


def check_answer(outputs: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """The outputs of an answer for `count` faces, checked against their served descriptions.

    Every described output must have its shape (a score `[N, 1]`, probabilities `[N, K]`, text `[N]`;
    a score given as `[N]` is reshaped to `[N, 1]`) and at least one of the network's outputs must be
    there. Outputs of other names are dropped. Raises ServingError (one line) otherwise.
    """
    counts = {name: len(value) for name, value in outputs.items() if np.ndim(value) >= 1}
    if any(n != count for n in counts.values()):
        raise ServingError(f"The server answered for {counts} faces; {count} were sent.")
    known = {}
    for name, value in outputs.items():
        described = served_output(name)
        if described is None:
            continue
        problem = described.shape_problem(np.shape(value), count)
        if problem:
            raise ServingError(f"The server's answer does not fit the model's outputs: {problem}.")
        known[name] = np.reshape(value, (count, 1)) if described.kind == SCORE else value
    if not any(o.name in known for o in served_outputs()):
        raise ServingError(
            f"The server answered the outputs {sorted(outputs)}, none of {[o.name for o in served_outputs()]}: "
            "is it serving a va2att model (check --url and --model)?")
    return known
