"""A small synthetic AffectNet in its second distribution's layout (see `va2att.data.affectnet_npy`).

    python -m va2att.data.synthetic OUT --layout affectnet-npy [--train 200] [--val 50] [--seed 0]

Faces are the demo set's drawings (`face`), cut out as 224 x 224 crops around the
face, with their 68 landmarks in crop coordinates. Labels are written as numpy arrays, the
expression as numeric text (as many copies have it). Each split also carries `DIRT`, each with
the reason preparation must count it under (None: kept). `generate` returns the planted counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from va2att.data.affectnet_npy import ANNOTATIONS, IMAGES, SPLIT_DIRS

LAYOUT = "AffectNet npy"
VERSION = 1
CROP = 224
DIRT = {
    "code_8": None,  # kept: a "None" face (valence and arousal only, with data.none_faces)
    "code_9_no_value": "expression_excluded",
    "valence_minus_2": "no_value",
    "arousal_out_of_range": "label_out_of_range",
    "no_arousal_file": "annotation_missing",
    "pickled_array": "annotation_unreadable",
    "no_image": "missing",
}


def _crop(img: np.ndarray, lm: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """The CROP x CROP face crop around `box` (1.25 x its side) and the landmarks in it."""
    import cv2

    x, y, w, h = box
    side = 1.25 * max(w, h)
    x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
    s = CROP / side
    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]])
    crop = cv2.warpAffine(img, m, (CROP, CROP), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return crop, (lm - [x0, y0]) * s


def _save(annotations: Path, face_id: str, code, v, a, lm) -> None:
    annotations.mkdir(parents=True, exist_ok=True)
    np.save(annotations / f"{face_id}_exp.npy", np.array(str(code)))
    np.save(annotations / f"{face_id}_val.npy", np.array(str(v)))
    np.save(annotations / f"{face_id}_aro.npy", np.array(str(a)))
    np.save(annotations / f"{face_id}_lnd.npy", lm.reshape(-1).astype(np.float64))


def generate(out, train: int = 200, val: int = 50, seed: int = 0) -> dict:
    """Write the set under `out`; return {split: {"written", "skipped": {reason: n}, "none_faces"}}."""
    import cv2

    from va2att.data.synthetic.face import draw_face, sample_labels

    root = Path(out)
    planted = {}
    for k, (split, n) in enumerate((("training", train), ("validation", val))):
        base = root / SPLIT_DIRS[split]
        (base / IMAGES).mkdir(parents=True, exist_ok=True)
        skipped = {}
        for i in range(n + len(DIRT)):
            rng = np.random.default_rng([seed, k, i])
            v, a, code = sample_labels(rng)
            img, lm, box = draw_face(v, a, rng)
            crop, lm = _crop(img, lm, box)
            face_id = str(i + 1)
            kind = list(DIRT)[i - n] if i >= n else None
            if kind == "code_8":
                code = 8
            elif kind == "code_9_no_value":
                code, v, a = 9, -2, -2
            elif kind == "valence_minus_2":
                v = -2
            elif kind == "arousal_out_of_range":
                a = 1.5
            if kind != "no_image":
                cv2.imwrite(str(base / IMAGES / f"{face_id}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
            _save(base / ANNOTATIONS, face_id, code, v, a, lm)
            if kind == "no_arousal_file":
                (base / ANNOTATIONS / f"{face_id}_aro.npy").unlink()
            elif kind == "pickled_array":
                with open(base / ANNOTATIONS / f"{face_id}_val.npy", "wb") as f:
                    np.save(f, np.array([{"valence": v}], dtype=object), allow_pickle=True)
            if kind is not None and DIRT[kind] is not None:
                skipped[DIRT[kind]] = skipped.get(DIRT[kind], 0) + 1
        planted[split] = {"written": n + 1, "skipped": dict(sorted(skipped.items())), "none_faces": 1}
    return planted


def generate_demo(out, train: int = 6000, val: int = 1000, seed: int = 0) -> dict:
    """The `demo-affectnet-npy` set."""
    return generate(out, train=train, val=val, seed=seed)
