"""predict's JSON document, written as results come: one JSON object whose `results` array grows frame by frame.

    {"model": ..., "expression_names": [...], "smoothing_seconds": ...,
     "results": [
       {"source": ..., "frame": ..., "time": ..., "faces": [...], "lost_tracks": [...], ...},
       ...
     ],
     "summary": {"items": ..., "read": ..., ...}}

The head is written at once, each result on its own line as it is handed over (`ImageResult.to_dict`),
and the closing bracket and the `summary` at the end (also after Ctrl-C), so the finished file is one
valid JSON document (`json.load`), and a reader that goes line by line finds one result per line
between the `"results": [` line and the `]` line. Nothing of the results is held in memory.
"""

from __future__ import annotations

import json

from va2att.prediction.results import ImageResult


class JsonWriter:
    """Writes predict's JSON document to a text stream: `head`'s keys now, each result as it comes, `close(tail)`.

    Args:
        stream: a text stream (e.g. `va2att.prediction.result_files.StreamedText`).
        head: dict, the keys that come before `results` (JSON-ready values).
    """

    def __init__(self, stream, head: dict):
        self._stream = stream
        self._count = 0
        lines = [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
        stream.write("{\n" + "".join(line + "\n" for line in lines) + '  "results": [')

    def write(self, result: ImageResult) -> None:
        """Append one result (on its own line)."""
        self._stream.write(("," if self._count else "") + "\n    " + json.dumps(result.to_dict()))
        self._count += 1

    def close(self, tail: dict) -> None:
        """End the results and write `tail`'s keys (e.g. the summary): the document is complete."""
        lines = [f",\n  {json.dumps(key)}: {json.dumps(value)}" for key, value in tail.items()]
        self._stream.write(("\n  ]" if self._count else "]") + "".join(lines) + "\n}\n")
