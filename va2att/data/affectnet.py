"""Reader for AffectNet's manually annotated file lists.

    ROOT/Manually_Annotated_file_lists/{training,validation}.csv
    ROOT/Manually_Annotated_Images/<subDirectory_filePath>

Columns: subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks
(136 numbers "x0;y0;x1;y1;..."), expression, valence, arousal. A file may come with the
header or without it (then the nine columns are taken in this order); header names are
matched ignoring case, spaces and underscores. Rows are filtered here on their labels, and
every dropped row is counted under one reason (`LABEL_REASONS`); landmark strings are
parsed later, per row, by `parse_landmarks`. Code 8 ("None") faces carry real valence and
arousal: they are kept, with their code, so that training can use them for valence and arousal
(`data.none_faces`); the pipeline leaves them out by default (AffectNet-8 is codes 0-7).

`LAYOUT` is this layout's entry of `va2att.data.layouts`: each listed file is read (a path that
leads out of the images folder is skipped as `outside_root`) and its face aligned from the row's
landmarks when usable, else its face box, else MTCNN (`va2att.data.work_unit.UnitResult.align`).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from va2att.config import FACE_SIZE
from va2att.data.layout import Layout, PrepareOptions
from va2att.data.records import FaceRecord

IMAGES_DIR = "Manually_Annotated_Images"
LISTS_DIR = "Manually_Annotated_file_lists"
SPLIT_FILES = {"training": "training.csv", "validation": "validation.csv"}
COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
NO_VALUE = -2.0  # AffectNet's "no valence/arousal" marker
NONE_CODE = 8  # "None": a face with valence and arousal but none of the expression classes
LABEL_REASONS = (
    "malformed_row",  # more fields than the header, an unbalanced quote or a NUL byte: not a CSV row
    "bad_encoding",  # not UTF-8 text (a latin-1 byte in a path, a binary line)
    "no_path",  # empty file path
    "expression_non_numeric",  # expression not an integer
    "expression_excluded",  # codes outside the kept set (9 Uncertain, 10 No-Face; 7 for AffectNet-7)
    "no_value",  # valence or arousal is -2
    "label_non_numeric",  # valence or arousal missing or not a number
    "label_out_of_range",  # valence or arousal outside [-1, 1]
)
_ALIASES = {
    "subdirectoryfilepath": "subDirectory_filePath",
    "filepath": "subDirectory_filePath",
    "path": "subDirectory_filePath",
    "facex": "face_x",
    "facey": "face_y",
    "facewidth": "face_width",
    "faceheight": "face_height",
    "faciallandmarks": "facial_landmarks",
    "landmarks": "facial_landmarks",
    "expression": "expression",
    "valence": "valence",
    "arousal": "arousal",
}


class AffectNetError(ValueError):
    """A file list that cannot be read at all (missing file, missing columns)."""


@dataclass
class Rows:
    """The kept rows of one split, as plain lists, plus the count of dropped rows per reason."""

    paths: list[str]
    boxes: np.ndarray  # (N, 4) float64 x, y, w, h; NaN where missing
    landmarks: list[str]  # raw strings, parsed per row by parse_landmarks
    expression: np.ndarray  # (N,) int64
    valence: np.ndarray  # (N,) float32
    arousal: np.ndarray  # (N,) float32
    dropped: Counter = field(default_factory=Counter)
    total: int = 0  # rows in the file
    fingerprint: str = ""  # SHA-1 of the file
    report: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def rows(self, lo: int, hi: int) -> list[tuple]:
        """Work rows `(path, box (4 floats), landmark string, expression, valence, arousal)` lo..hi."""
        return [(self.paths[j], self.boxes[j].tolist(), self.landmarks[j], int(self.expression[j]),
                 float(self.valence[j]), float(self.arousal[j])) for j in range(lo, min(hi, len(self)))]


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name)).lower()


def list_path(root, split: str) -> Path:
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {list(SPLIT_FILES)}. Received: split={split!r}")
    return Path(root) / LISTS_DIR / SPLIT_FILES[split]


def read_split(root, split: str, num_classes: int = 8) -> Rows:
    """Read and filter one split's CSV.

    Args:
        root: AffectNet root folder.
        split: "training" or "validation".
        num_classes: 8 keeps codes 0-7 (AffectNet-8), 7 keeps 0-6 (AffectNet-7); code 8 ("None")
            is kept in both, for its valence and arousal.
    Raises:
        AffectNetError: the file is missing, or lacks columns (they are named).
    """
    import pandas as pd

    if num_classes not in (7, 8):
        raise ValueError(f"num_classes must be 7 or 8. Received: num_classes={num_classes}")
    path = list_path(root, split)
    if not path.is_file():
        raise AffectNetError(f"{path} not found: expected the AffectNet layout ROOT/{LISTS_DIR}/{SPLIT_FILES[split]}")
    raw, bad = _read_rows(path)
    if raw.empty:
        raise AffectNetError(f"{path} has no readable CSV row" + (f" (unreadable: {dict(bad)})" if bad else ""))
    first = [_key(v) for v in raw.iloc[0].tolist()]
    if any(k in _ALIASES for k in first):
        names = [_ALIASES.get(k, str(v).strip()) for k, v in zip(first, raw.iloc[0].tolist())]
        raw = raw.iloc[1:]
        raw.columns = names
    elif raw.shape[1] == len(COLUMNS):
        raw.columns = list(COLUMNS)
    else:
        raise AffectNetError(
            f"{path} has no header and {raw.shape[1]} columns; expected the {len(COLUMNS)} columns {', '.join(COLUMNS)}"
        )
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise AffectNetError(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, raw.columns))})")
    df = raw.loc[:, list(COLUMNS)].apply(lambda s: s.str.strip())
    total = len(df) + sum(bad.values())
    dropped = Counter(bad)
    num = {c: pd.to_numeric(df[c], errors="coerce") for c in ("face_x", "face_y", "face_width", "face_height", "expression", "valence", "arousal")}
    keep = np.ones(len(df), bool)

    def drop(mask, reason):
        mask = np.asarray(mask, bool) & keep
        if mask.any():
            dropped[reason] += int(mask.sum())
            keep[mask] = False

    expr = num["expression"].to_numpy(np.float64)
    v = num["valence"].to_numpy(np.float64)
    a = num["arousal"].to_numpy(np.float64)
    drop(df["subDirectory_filePath"].to_numpy() == "", "no_path")
    drop(~np.isfinite(expr) | (expr != np.round(expr)), "expression_non_numeric")
    with np.errstate(invalid="ignore"):
        drop(~(((expr >= 0) & (expr < num_classes)) | (expr == NONE_CODE)), "expression_excluded")
        drop((v == NO_VALUE) | (a == NO_VALUE), "no_value")
        drop(~np.isfinite(v) | ~np.isfinite(a), "label_non_numeric")
        drop((np.abs(v) > 1) | (np.abs(a) > 1), "label_out_of_range")
    boxes = np.stack([num[c].to_numpy(np.float64) for c in ("face_x", "face_y", "face_width", "face_height")], 1)
    return Rows(
        paths=df["subDirectory_filePath"].to_numpy()[keep].tolist(),
        boxes=boxes[keep],
        landmarks=df["facial_landmarks"].to_numpy()[keep].tolist(),
        expression=expr[keep].astype(np.int64),
        valence=v[keep].astype(np.float32),
        arousal=a[keep].astype(np.float32),
        dropped=dropped,
        total=total,
        fingerprint=file_sha1(path),
    )


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_rows(path: Path):
    """The CSV's rows as a DataFrame of strings, and a Counter of the lines that are not rows.

    Each line is decoded and parsed on its own (AffectNet's fields hold no line breaks), so one bad
    line (not UTF-8, an unbalanced quote, a NUL byte, more fields than the first row) is counted
    under its reason and cannot swallow or stop the rest. Shorter rows are padded with empty fields.
    """
    import pandas as pd

    rows, bad = [], Counter()
    with open(path, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if not rows and not bad else "utf-8")
            except UnicodeDecodeError:
                bad["bad_encoding"] += 1
                continue
            try:
                fields = next(csv.reader([text], skipinitialspace=True, strict=True))
            except (csv.Error, StopIteration):
                bad["malformed_row"] += 1
                continue
            if rows and len(fields) > len(rows[0]):
                bad["malformed_row"] += 1
                continue
            rows.append(fields)
    width = len(rows[0]) if rows else 0
    return pd.DataFrame([r + [""] * (width - len(r)) for r in rows], dtype=str), bad


def parse_landmarks(text) -> tuple[np.ndarray | None, str | None]:
    """A landmark string -> ((68, 2) float64, None), or (None, reason) when it cannot be used.

    Reasons: "landmarks_absent" (empty), "landmarks_non_numeric", "landmarks_wrong_length".
    Separators: ';' (AffectNet), also ',' or whitespace.
    """
    if text is None or (isinstance(text, float) and not np.isfinite(text)):
        return None, "landmarks_absent"
    text = str(text).strip()
    if not text or text.lower() in ("nan", "none", "null"):
        return None, "landmarks_absent"
    parts = [p for p in re.split(r"[;,\s]+", text) if p]
    try:
        values = np.array([float(p) for p in parts], np.float64)
    except ValueError:
        return None, "landmarks_non_numeric"
    if values.size != 136:
        return None, "landmarks_wrong_length"
    if not np.all(np.isfinite(values)):
        return None, "landmarks_non_numeric"
    return values.reshape(68, 2), None


def is_root(path) -> bool:
    return (Path(path) / LISTS_DIR).is_dir()


class AffectNetLayout(Layout):
    """AffectNet's CSV file lists (`read_split`), one face per listed image."""

    name = "affectnet"
    title = "AffectNet (CSV file lists)"
    root_hint = f"{LISTS_DIR}/ and {IMAGES_DIR}/"

    def is_root(self, path: Path) -> bool:
        return is_root(path)

    def read_split(self, root: Path, split: str, options: PrepareOptions) -> Rows:
        return read_split(root, split, options.classes)

    def process_row(self, root: Path, row, options: PrepareOptions, result) -> None:
        from va2att.faces.align import usable_box

        path, box, landmark_text, expression, valence, arousal = row
        box = np.asarray(box, np.float64)
        # A big photo with a known face box is decoded at reduced size (the face stays >= 2.5 x FACE_SIZE).
        min_scale = min(1.0, 2.5 * FACE_SIZE / max(box[2], box[3])) if usable_box(box) else None
        image = result.read_image(root / IMAGES_DIR, path, path, allow_symlinks=options.allow_symlinks,
                                  min_scale=min_scale)
        aligned = None if image is None else result.align(image, landmark_text, box, options.use_mtcnn, path)
        if aligned is not None:
            face, method = aligned
            result.records.append(FaceRecord(face.tobytes(), float(valence), float(arousal), int(expression), path,
                                             method))

    def manifest(self, options: PrepareOptions) -> dict:
        return {}  # the first layout: its folders' manifest.json never named one

    def report(self, root: Path, options: PrepareOptions) -> dict:
        return {}


LAYOUT = AffectNetLayout()
