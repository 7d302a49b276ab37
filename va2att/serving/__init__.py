"""Talking to TF Serving: REST request bodies and responses (`request`) and a command-line client (`client`).

The exported SavedModel (`va2att.serving.export`) is served by the stock `tensorflow/serving` image
(`docker/compose.yaml`, service `serving`); see docs/serving.md.
"""

from va2att.serving.request import (
    ServingError,
    build_bytes_body,
    build_predict_body,
    encode_body,
    parse_predict_response,
    predict_url,
    prepare_faces,
)

__all__ = [
    "ServingError",
    "build_bytes_body",
    "build_predict_body",
    "encode_body",
    "parse_predict_response",
    "predict_url",
    "prepare_faces",
]
