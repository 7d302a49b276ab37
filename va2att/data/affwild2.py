"""Reader for Aff-Wild2 as distributed for the ABAW challenges.

    ROOT/cropped_aligned/<video>/<frame:05d>.jpg       112 x 112 aligned faces; frames without a face are absent
    ROOT/Annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt
        "valence,arousal", then one line per frame (frame 1 first): "0.12,-0.30"; -5 = not annotated
    ROOT/Annotations/EXPR_Classification_Challenge/{Train_Set,Validation_Set}/<video>.txt
        "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other", then one index per frame; -1 = not annotated

Video names may end in `_left` / `_right` (two people in one video): they are separate videos
here, as in the annotation files. A frame is written when it has a face image and at least one
valid label; `has_va` / `has_expression` say which (`records`). Every other frame is counted
under one reason (`SKIP_REASONS`). The faces are already aligned: they are converted to 56 x 56
gray by area resizing, without re-detection (method "aligned").

Expressions are mapped **by name**, from each file's own header, onto AffectNet's codes
(`va2att.config.EXPRESSION_NAMES`): Neutral 0, Happiness 1, Sadness 2, Surprise 3, Fear 4,
Disgust 5, Anger 6. Aff-Wild2 has no Contempt (7): its frames never carry that label, and its
expression scores are macro-averaged over the seven codes it annotates (`EXPRESSION_CLASSES`).
"Other" (none of the seven) follows `other` (`OTHER_CHOICES`):
- "unlabelled" (default): the frame keeps its valence/arousal and has no expression label. The
  8-way head has no class for it, and the V/A challenge scores every V/A-annotated frame;
- "none": stored as AffectNet's code 8 ("None", also "none of the eight"): streamed, for its
  valence/arousal only, with `data.none_faces`, exactly as AffectNet's None faces;
- "drop": the frame is not written (counted as `expression_other`).

A video whose annotation files lie in both splits (the two challenges' splits can disagree) is
kept in the validation split only: its training frames are counted as `video_in_validation`.
The training split's frames are written in a seeded random order (`ORDER_SEED`), so that every
shard mixes all videos and the training shuffle buffer does not see one video at a time;
the validation split keeps video and frame order. `LAYOUT` is this layout's entry of
`va2att.data.layouts`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from va2att.config import FACE_SIZE
from va2att.data.affectnet import NONE_CODE
from va2att.data.layout import Layout, ListedRows, PrepareOptions
from va2att.data.records import FaceRecord

FRAMES_DIR = "cropped_aligned"
ANNOTATIONS_DIR = "Annotations"
VA_DIR = "VA_Estimation_Challenge"
EXPR_DIR = "EXPR_Classification_Challenge"
SPLIT_DIRS = {"training": "Train_Set", "validation": "Validation_Set"}
VA_MISSING = -5.0
EXPR_MISSING = -1
OTHER = -100  # internal marker of the "Other" class before `other` is applied
# Aff-Wild2 names (lower case) -> AffectNet code.
NAME_TO_CODE = {
    "neutral": 0,
    "happiness": 1, "happy": 1,
    "sadness": 2, "sad": 2,
    "surprise": 3,
    "fear": 4,
    "disgust": 5,
    "anger": 6, "angry": 6,
    "contempt": 7,
    "other": OTHER,
}
EXPRESSION_CLASSES = (0, 1, 2, 3, 4, 5, 6)  # the AffectNet codes Aff-Wild2 annotates: no Contempt
OTHER_CHOICES = ("unlabelled", "none", "drop")
ORDER_SEED = 0
SKIP_REASONS = (
    "no_image",  # a frame with a valid label but no face image
    "no_label",  # a face image without any annotation (-5 / -1 / no line)
    "labels_invalid",  # a face image whose labels are all invalid (not numbers, out of range)
    "expression_other",  # "Other" with other="drop", or "unlabelled" on a frame without valence/arousal
    "video_in_validation",  # a training video whose labels also lie in the validation split
)


class AffWild2Error(ValueError):
    """A folder that is not an Aff-Wild2 root."""


def is_root(path) -> bool:
    path = Path(path)
    return (path / FRAMES_DIR).is_dir() and (path / ANNOTATIONS_DIR).is_dir()


def expression_header(line: str) -> list[int]:
    """The AffectNet code (or `OTHER`) of each column index of an EXPR header, mapped by name."""
    names = [n.strip().lower() for n in line.strip().split(",")]
    unknown = [n for n in names if n not in NAME_TO_CODE]
    if unknown or not names:
        raise AffWild2Error(f"unknown expression name(s) {unknown} in header {line.strip()!r}")
    return [NAME_TO_CODE[n] for n in names]


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def read_va(path: Path) -> list[tuple[str, float, float]]:
    """Per frame (frame 1 first): ("ok" | "unannotated" | "invalid", valence, arousal)."""
    lines = _read_lines(path)
    header = [h.strip().lower() for h in (lines[0].split(",") if lines else [])]
    if sorted(header) != ["arousal", "valence"]:
        raise AffWild2Error(f"{path}: header {lines[0] if lines else ''!r} is not 'valence,arousal'")
    iv, ia = header.index("valence"), header.index("arousal")
    out = []
    for line in lines[1:]:
        parts = line.strip().split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 2 or not all(np.isfinite(values)):
            out.append(("invalid", np.nan, np.nan))
            continue
        v, a = values[iv], values[ia]
        if v == VA_MISSING or a == VA_MISSING:
            out.append(("unannotated", np.nan, np.nan))
        elif abs(v) > 1 or abs(a) > 1:
            out.append(("invalid", np.nan, np.nan))
        else:
            out.append(("ok", v, a))
    return out


def read_expr(path: Path) -> list[tuple[str, int]]:
    """Per frame (frame 1 first): ("ok" | "unannotated" | "invalid", AffectNet code or OTHER)."""
    lines = _read_lines(path)
    codes = expression_header(lines[0] if lines else "")
    out = []
    for line in lines[1:]:
        text = line.strip()
        try:
            index = int(text)
        except ValueError:
            out.append(("invalid", -1))
            continue
        if index == EXPR_MISSING:
            out.append(("unannotated", -1))
        elif 0 <= index < len(codes):
            out.append(("ok", codes[index]))
        else:
            out.append(("invalid", -1))
    return out


def _frames_of(folder: Path) -> dict[int, str]:
    """{frame index: file name} of a video's face images (<digits>.jpg)."""
    if not folder.is_dir():
        return {}
    found = {}
    for f in folder.iterdir():
        if f.suffix.lower() in (".jpg", ".jpeg", ".png") and f.stem.isdigit():
            found[int(f.stem)] = f.name
    return found


def _annotation_files(root: Path, split: str) -> dict[str, dict[str, Path]]:
    """{video: {"va": path, "expr": path}} of one split."""
    videos: dict[str, dict[str, Path]] = {}
    for kind, sub in (("va", VA_DIR), ("expr", EXPR_DIR)):
        folder = root / ANNOTATIONS_DIR / sub / SPLIT_DIRS[split]
        if folder.is_dir():
            for f in sorted(folder.glob("*.txt")):
                videos.setdefault(f.stem, {})[kind] = f
    return videos


def read_split(root, split: str, other: str = "unlabelled") -> ListedRows:
    """The labelled frames of one split (see the module docstring for what is kept and counted), as work
    rows `(relpath, video, frame, has_va, valence, arousal, has_expression, code, masked reasons)`."""
    if split not in SPLIT_DIRS:
        raise ValueError(f"split must be one of {list(SPLIT_DIRS)}. Received: split={split!r}")
    if other not in OTHER_CHOICES:
        raise ValueError(f"other must be one of {OTHER_CHOICES}. Received: other={other!r}")
    root = Path(root)
    if not is_root(root):
        raise AffWild2Error(f"{root} is not an Aff-Wild2 root: expected {FRAMES_DIR}/ and {ANNOTATIONS_DIR}/")
    videos = _annotation_files(root, split)
    in_validation = set(_annotation_files(root, "validation")) if split == "training" else set()
    digest = hashlib.sha1()
    items, dropped, unreadable, no_frames = [], Counter(), {}, []
    total = 0
    for video in sorted(videos):
        files = videos[video]
        va, expr = [], []
        try:
            for kind in sorted(files):
                digest.update(f"{kind}/{video}\n".encode())
                digest.update(files[kind].read_bytes())
            va = read_va(files["va"]) if "va" in files else []
            expr = read_expr(files["expr"]) if "expr" in files else []
        except (OSError, AffWild2Error) as e:
            unreadable[str(next(iter(files.values())).relative_to(root))] = str(e)
            continue
        images = _frames_of(root / FRAMES_DIR / video)
        if not images:
            no_frames.append(video)
        count = max(len(va), len(expr), max(images, default=0))
        for frame in range(1, count + 1):
            total += 1
            vs, v, a = va[frame - 1] if frame <= len(va) else ("unannotated", np.nan, np.nan)
            es, code = expr[frame - 1] if frame <= len(expr) else ("unannotated", -1)
            if video in in_validation:
                dropped["video_in_validation"] += 1
                continue
            if frame not in images:
                dropped["no_image"] += 1
                continue
            if vs != "ok" and es != "ok":
                dropped["labels_invalid" if "invalid" in (vs, es) else "no_label"] += 1
                continue
            masked = []
            if vs != "ok":
                masked.append(f"va_{vs}")
            if es == "ok" and code == OTHER:
                if other == "drop":
                    dropped["expression_other"] += 1
                    continue
                if other == "unlabelled":
                    es, code = "other", -1
                    masked.append("expression_other")
                else:
                    code = NONE_CODE
            elif es != "ok":
                masked.append(f"expression_{es}")
            if vs != "ok" and es != "ok":  # "Other" was its only label: nothing left to train on
                dropped["expression_other"] += 1
                continue
            rel = f"{video}/{images[frame]}"
            items.append((rel, video, frame, int(vs == "ok"), float(v), float(a), int(es == "ok"), int(code),
                          ",".join(masked)))
    if split == "training":
        order = np.random.default_rng(ORDER_SEED).permutation(len(items))
        items = [items[i] for i in order]
    report = {
        "frames": total,
        "videos": len(videos) - len(unreadable),
        "videos_without_frames": no_frames,
        "annotation_files_unreadable": unreadable,
    }
    return ListedRows(items, dropped, total, report, digest.hexdigest())


def videos_without_annotations(root) -> list[str]:
    """Frame folders that no annotation file of either split names (e.g. the challenges' test videos)."""
    root = Path(root)
    named = set(_annotation_files(root, "training")) | set(_annotation_files(root, "validation"))
    return sorted(d.name for d in (root / FRAMES_DIR).iterdir() if d.is_dir() and d.name not in named)


class AffWild2Layout(Layout):
    """Aff-Wild2's aligned frames with per-video annotation files; frames may lack one kind of label."""

    name = "affwild2"
    title = "Aff-Wild2"
    root_hint = f"{FRAMES_DIR}/ and {ANNOTATIONS_DIR}/"
    videos = True
    counts = ("labels", "masked")  # written frames by the labels they have; why a written frame lacks one

    def is_root(self, path: Path) -> bool:
        return is_root(path)

    def read_split(self, root: Path, split: str, options: PrepareOptions) -> ListedRows:
        return read_split(root, split, options.other)

    def process_row(self, root: Path, row, options: PrepareOptions, result) -> None:
        """Convert one aligned frame to 56 x 56 gray (no re-detection) with its label masks, video and
        frame, counting the frame's labels (`labels`) and why a label is missing (`masked`)."""
        import cv2

        rel, video, frame, has_va, valence, arousal, has_expression, code, masked = row
        image = result.read_image(root / FRAMES_DIR, rel, rel, allow_symlinks=options.allow_symlinks)
        if image is None:
            return
        gray = cv2.cvtColor(np.ascontiguousarray(image.pixels), cv2.COLOR_RGB2GRAY)
        face = cv2.resize(gray, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
        result.methods["aligned"] += 1
        result.count("labels", "va_and_expression" if has_va and has_expression else
                     "va_only" if has_va else "expression_only")
        for reason in filter(None, masked.split(",")):
            result.count("masked", reason)
        nan = float("nan")
        result.records.append(FaceRecord(
            face.tobytes(), float(valence) if has_va else nan, float(arousal) if has_va else nan,
            int(code) if has_expression else -1, rel, "aligned", int(has_va), int(has_expression), video, int(frame)))

    def manifest(self, options: PrepareOptions) -> dict:
        return {"layout": self.name, "other": options.other}

    def report(self, root: Path, options: PrepareOptions) -> dict:
        """Records carry label masks; macro-F1 is averaged over the codes Aff-Wild2 annotates."""
        return {"layout": self.name, "label_masks": True, "other": options.other,
                "expression_classes": list(EXPRESSION_CLASSES),
                "videos_without_annotations": videos_without_annotations(root)}


LAYOUT = AffWild2Layout()
