"""The result of one preparation work unit, shared by every layout's reader.

A unit's result is a dict: `records` (one tuple per written face), the Counters `skipped`,
`fallbacks` and `methods`, and `examples` (up to `MAX_EXAMPLES` paths per reason). `note` counts
one skip or fallback; `read_image_or_note` reads one listed image and `align_or_note` aligns its
face from its 68 landmarks, else its box, else MTCNN, each counting its reason when it fails.
"""

from __future__ import annotations

from collections import Counter

MAX_EXAMPLES = 5  # paths kept per skip reason in report.json


def new_result(*extra: str) -> dict:
    """An empty unit result, with one more Counter for each name in `extra`."""
    out = {"records": [], "skipped": Counter(), "fallbacks": Counter(), "methods": Counter(), "examples": {}}
    out.update({name: Counter() for name in extra})
    return out


def note(out: dict, kind: str, reason: str, path: str) -> None:
    """Count `reason` under `kind` ("skipped" or "fallbacks") and keep `path` as one of its examples."""
    out[kind][reason] += 1
    examples = out["examples"].setdefault(reason, [])
    if len(examples) < MAX_EXAMPLES:
        examples.append(path)


def read_image_or_note(out: dict, file, path: str, **read_kwargs):
    """The image at `file` (`images.read_image`), or None with the reason counted under `path`."""
    from va2att.faces.images import ImageError, read_image

    try:
        return read_image(file, **read_kwargs)
    except ImageError as e:
        note(out, "skipped", e.reason, path)
    except Exception:  # noqa: BLE001 - a decoder crash must not stop the run
        note(out, "skipped", "unreadable", path)
    return None


def align_or_note(out: dict, image, landmark_text, box, use_mtcnn: bool, path: str):
    """(face, method) aligned from the landmarks when usable, else the box, else MTCNN; or None.

    Every fallback and skip is counted under `path`."""
    from va2att.data import affectnet
    from va2att.faces.align import (
        align_any,
        default_detector,
        five_points_from_68,
        usable_points,
    )
    from va2att.faces.images import ImageError

    lm, lm_reason = affectnet.parse_landmarks(landmark_text)
    if lm is not None and not usable_points(five_points_from_68(lm), image):
        lm, lm_reason = None, "landmarks_implausible"
    try:
        face, method = align_any(image, landmarks68=lm, box=box, detector=default_detector() if use_mtcnn else None)
    except ImageError as e:  # no usable face
        note(out, "skipped", e.reason, path)
        return None
    except Exception:  # noqa: BLE001
        note(out, "skipped", "align_failed", path)
        return None
    if lm_reason is not None:
        note(out, "fallbacks", lm_reason, path)
    if method == "mtcnn":
        note(out, "fallbacks", "box_unusable", path)
    out["methods"][method] += 1
    return face, method
