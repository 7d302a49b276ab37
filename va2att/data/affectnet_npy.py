"""Reader for AffectNet's second distribution: face crops with one .npy file per label.

    ROOT/train_set/images/<id>.jpg                 224 x 224 face crops
    ROOT/train_set/annotations/<id>_exp.npy        expression code (a number or a numeric string)
    ROOT/train_set/annotations/<id>_val.npy        valence
    ROOT/train_set/annotations/<id>_aro.npy        arousal
    ROOT/train_set/annotations/<id>_lnd.npy        68 landmarks: 136 numbers x0, y0, x1, y1, ... (or 68 x 2)
    ROOT/val_set/...                               the same for the validation split

Files are read with `numpy.load(allow_pickle=False)`: a pickled (object) array is refused and
counted as `annotation_unreadable`. The label codes are the CSV layout's (`affectnet`): codes
0..K-1 and 8 ("None") kept, 9 and 10 and -2 values dropped, under the same reason names. Faces
are aligned from their landmarks (`align.align_any`), else from the whole crop as the face box,
else MTCNN. An image without its four annotation files is counted as `annotation_missing`; an
annotation set without its image as `missing` (the image reason). `LAYOUT` is this layout's entry
of `va2att.data.layouts`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from va2att.data.affectnet import NO_VALUE, NONE_CODE
from va2att.data.layout import Layout, ListedRows, PrepareOptions
from va2att.data.records import FaceRecord

SPLIT_DIRS = {"training": "train_set", "validation": "val_set"}
IMAGES = "images"
ANNOTATIONS = "annotations"
SUFFIXES = ("exp", "val", "aro", "lnd")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def is_root(path) -> bool:
    path = Path(path)
    return any((path / d / ANNOTATIONS).is_dir() for d in SPLIT_DIRS.values())


def read_split(root, split: str, classes: int = 8) -> ListedRows:
    """List the ids of a split (images and annotation sets) as work rows `(split folder, id, image file
    name or "", classes)`; labels are read per work unit."""
    if split not in SPLIT_DIRS:
        raise ValueError(f"split must be one of {list(SPLIT_DIRS)}. Received: split={split!r}")
    base = Path(root) / SPLIT_DIRS[split]
    if not (base / ANNOTATIONS).is_dir():
        raise FileNotFoundError(f"{base / ANNOTATIONS} not found: expected the AffectNet npy layout "
                                f"{SPLIT_DIRS[split]}/{IMAGES}/<id>.jpg + {SPLIT_DIRS[split]}/{ANNOTATIONS}/<id>_exp.npy")
    images = {}
    if (base / IMAGES).is_dir():
        images = {f.stem: f.name for f in (base / IMAGES).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS}
    annotated = set()
    digest = hashlib.sha1()
    for f in sorted((base / ANNOTATIONS).iterdir()):
        stem, _, kind = f.stem.rpartition("_")
        if f.suffix == ".npy" and kind in SUFFIXES and stem:
            annotated.add(stem)
            digest.update(f"{f.name}:{f.stat().st_size}\n".encode())
    ids = sorted(set(images) | annotated, key=lambda s: (len(s), s))
    items = [(SPLIT_DIRS[split], i, images.get(i, ""), classes) for i in ids]
    return ListedRows(items, Counter(), len(items), {"ids": len(items)}, digest.hexdigest())


def _number(value) -> float:
    """The one number an annotation array holds (numeric or numeric text); NaN otherwise."""
    value = np.asarray(value).reshape(-1)
    if value.size != 1:
        return float("nan")
    try:
        return float(value[0].item())
    except (TypeError, ValueError):
        return float("nan")


def read_labels(annotations: Path, face_id: str, classes: int):
    """((expression, valence, arousal, landmarks text), None) or (None, reason) for one id."""
    paths = {k: annotations / f"{face_id}_{k}.npy" for k in SUFFIXES}
    if not all(p.is_file() for p in paths.values()):
        return None, "annotation_missing"
    try:
        arrays = {k: np.load(p, allow_pickle=False) for k, p in paths.items()}  # no pickles, ever
    except (OSError, ValueError, EOFError):
        return None, "annotation_unreadable"
    values = {k: _number(arrays[k]) for k in ("exp", "val", "aro")}
    try:
        lnd = np.asarray(arrays["lnd"]).astype(np.float64).reshape(-1)
    except (TypeError, ValueError):
        lnd = np.array([])
    expr, v, a = values["exp"], values["val"], values["aro"]
    if not np.isfinite(expr) or expr != round(expr):
        return None, "expression_non_numeric"
    expr = int(expr)
    if not (0 <= expr < classes or expr == NONE_CODE):
        return None, "expression_excluded"
    if v == NO_VALUE or a == NO_VALUE:
        return None, "no_value"
    if not (np.isfinite(v) and np.isfinite(a)):
        return None, "label_non_numeric"
    if abs(v) > 1 or abs(a) > 1:
        return None, "label_out_of_range"
    return (expr, float(v), float(a), ";".join(repr(float(x)) for x in lnd)), None


class AffectNetNpyLayout(Layout):
    """AffectNet's second distribution: face crops with one .npy file per label."""

    name = "affectnet-npy"
    title = "AffectNet (.npy annotations)"
    root_hint = "train_set/annotations/ or val_set/annotations/"

    def is_root(self, path: Path) -> bool:
        return is_root(path)

    def read_split(self, root: Path, split: str, options: PrepareOptions) -> ListedRows:
        return read_split(root, split, options.classes)

    def row_path(self, row) -> str:
        split_dir, face_id, image_name, _ = row
        return f"{split_dir}/{IMAGES}/{image_name or face_id + '.jpg'}"

    def process_row(self, root: Path, row, options: PrepareOptions, result) -> None:
        """Read the labels of one id and align its face from its landmarks, else the whole crop, else MTCNN."""
        split_dir, face_id, image_name, classes = row
        rel = self.row_path(row)
        labels, reason = read_labels(root / split_dir / ANNOTATIONS, face_id, classes)
        if reason is not None:
            result.note("skipped", reason, rel)
            return
        expression, valence, arousal, landmark_text = labels
        image = result.read_image(root / split_dir / IMAGES, image_name or face_id + ".jpg", rel,
                                  allow_symlinks=options.allow_symlinks)
        if image is None:
            return
        h, w = image.original_size
        aligned = result.align(image, landmark_text, np.array([0.0, 0.0, w, h]), options.use_mtcnn, rel)
        if aligned is not None:
            face, method = aligned
            result.records.append(FaceRecord(face.tobytes(), valence, arousal, expression, rel, method))


LAYOUT = AffectNetNpyLayout()
