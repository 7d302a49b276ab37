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
    BYTES_ERROR,
    BYTES_INPUT,
    IMAGE_INPUT,
    SERVING_BYTES,
    SERVING_DEFAULT,
    order_outputs,
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


def parse_predict_response(payload, output_names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """A predict response (bytes, str or parsed JSON) -> `{output name: float32 array [N, ...]}`.

    The `serving_bytes` signature's `error` output (one string per image, empty when it was decoded)
    comes back as a str array.

    Handles the row (`predictions`) and columnar (`outputs`) answers. For a single-output model TF
    Serving omits the name; `output_names` (one name) then says what to call it (default "output").
    Raises ServingError for an `{"error": ...}` body or an answer of the wrong shape.
    """
    data = _decode_json(payload)
    message = error_message(data)
    if message is not None:
        raise ServingError(f"TF Serving error: {message}")
    if not isinstance(data, dict) or not ({"predictions", "outputs"} & set(data)):
        raise ServingError(f"Unexpected predict response: no 'predictions' or 'outputs' in {str(data)[:200]!r}")
    single = (list(output_names) or ["output"])[0] if output_names is not None else "output"
    if "predictions" in data:
        rows = data["predictions"]
        if not isinstance(rows, list):
            raise ServingError("Unexpected predict response: 'predictions' is not a list.")
        if rows and all(isinstance(r, dict) for r in rows):
            names = list(rows[0])
            columns = {name: [r[name] for r in rows] for name in names}
        else:
            columns = {single: rows}
    else:
        outputs = data["outputs"]
        columns = dict(outputs) if isinstance(outputs, dict) else {single: outputs}
    try:
        result = {name: np.asarray(value, dtype=str if name == BYTES_ERROR else np.float32)
                  for name, value in columns.items()}
    except (TypeError, ValueError) as error:
        raise ServingError(f"Unexpected predict response: outputs are not numeric arrays ({error}).") from None
    return order_outputs(result)
