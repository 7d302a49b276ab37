"""A synthetic stand-in for Aff-Wild2 in its exact ABAW layout (see `va2att.data.affwild2`), for demos and tests.

    python -m va2att.data.synthetic OUT --layout affwild2 [--videos 4] [--val-videos 2] [--frames 60] [--seed 0]

Each "video" is one drawn identity (`face`) whose valence and arousal follow smooth
random trajectories (two sinusoids each, random phases and periods of tens of frames), so
per-video CCC means something. Frames are aligned to 112 x 112 colour JPEGs. Expressions are the
nearest circumplex prototype, written as Aff-Wild2 indices; the prototype Contempt, which
Aff-Wild2 lacks, is written as "Other". As in Aff-Wild2, each split has unannotated frames (-5
V/A, -1 expression, an expression file shorter than its video), frames without a face image and a
two-person `_left` / `_right` video; the training split an annotation file without frames; and a
frame folder outside both splits has no annotations (a "test" video). `generate` returns what
preparation must report for each split (`planted`). Invalid labels and unreadable images, which
the real set does not ship, are the tests' own fixtures.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from va2att.data.affwild2 import (
    ANNOTATIONS_DIR,
    EXPR_DIR,
    FRAMES_DIR,
    SPLIT_DIRS,
    VA_DIR,
)

LAYOUT = "Aff-Wild2"
VERSION = 2  # 2: no invalid labels or unreadable images (those are the tests' fixtures)
FRAME_SIZE = 112
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
# AffectNet code -> Aff-Wild2 index (Contempt, which Aff-Wild2 lacks, becomes Other).
TO_AFFWILD2 = {0: 0, 6: 1, 5: 2, 4: 3, 1: 4, 2: 5, 3: 6, 7: 7}
OTHER_INDEX = 7
P_VA_UNANNOTATED = 0.12
P_EXPR_UNANNOTATED = 0.15
P_NO_IMAGE = 0.06
SPLIT_SEED = {"training": 0, "validation": 1}


def trajectory(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) smooth valence/arousal in [-1, 1]: an offset plus two sinusoids per dimension."""
    t = np.arange(n, dtype=np.float64)
    out = np.empty((n, 2))
    for d in range(2):
        x = rng.uniform(-0.6, 0.6)
        for _ in range(2):
            x = x + rng.uniform(0.15, 0.45) * np.sin(2 * np.pi * t / rng.uniform(15, 80) + rng.uniform(0, 2 * np.pi))
        out[:, d] = np.clip(x, -1, 1)
    return np.round(out, 4)


def _face(v: float, a: float, identity_seed) -> np.ndarray:
    """A 112 x 112 BGR aligned face of one identity showing (v, a)."""
    import cv2

    from va2att.data.synthetic.face import draw_face
    from va2att.faces.align import align_face, five_points_from_68
    from va2att.faces.images import from_array

    img, lm, _ = draw_face(v, a, np.random.default_rng(identity_seed))
    gray = align_face(from_array(img, order="bgr"), five_points_from_68(lm), size=FRAME_SIZE)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def _write_video(root: Path, split: str, name: str, n: int, seed: int, index: int, *, frames: bool = True,
                 expr_lines: int | None = None) -> Counter:
    """Write one video's frames and annotation files; return what preparation must count for it."""
    import cv2

    from va2att.data.synthetic.face import expression_for

    rng = np.random.default_rng([seed, SPLIT_SEED[split], index])
    va = trajectory(n, rng)
    expected = Counter()
    va_lines, ex_lines = ["valence,arousal"], [EXPR_HEADER]
    folder = root / FRAMES_DIR / name
    for f in range(1, n + 1):
        v, a = va[f - 1]
        index_ = TO_AFFWILD2[expression_for(v, a)]
        va_state = "unannotated" if rng.random() < P_VA_UNANNOTATED else "ok"
        ex_state = "unannotated" if rng.random() < P_EXPR_UNANNOTATED else "ok"
        image = "none" if rng.random() < P_NO_IMAGE else "ok"
        if expr_lines is not None and f > expr_lines:
            ex_state = "absent"
        va_lines.append({"ok": f"{v},{a}", "unannotated": "-5,-5"}[va_state])
        if ex_state != "absent":
            ex_lines.append({"ok": str(index_), "unannotated": "-1"}[ex_state])
        if frames and image != "none":
            path = folder / f"{f:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), _face(float(v), float(a), [seed, SPLIT_SEED[split], index, 7]),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
        # What preparation must find (the reader's rules, applied to what was planted here).
        has_va = va_state == "ok"
        has_ex = ex_state == "ok" and index_ != OTHER_INDEX
        other = ex_state == "ok" and index_ == OTHER_INDEX
        if not frames or image == "none":
            expected["skip:no_image"] += 1
        elif not has_va and not has_ex and not other:
            expected["skip:no_label"] += 1
        elif not has_va and not has_ex:
            expected["skip:expression_other"] += 1
        else:
            expected["written"] += 1
            expected["label:" + ("va_and_expression" if has_va and has_ex else "va_only" if has_va
                                 else "expression_only")] += 1
    for sub, lines in ((VA_DIR, va_lines), (EXPR_DIR, ex_lines)):
        path = root / ANNOTATIONS_DIR / sub / SPLIT_DIRS[split] / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    return expected


def _job(args) -> Counter:
    root, split, name, n, seed, index, kwargs = args
    return _write_video(Path(root), split, name, n, seed, index, **kwargs)


def generate(out, videos: int = 4, val_videos: int = 2, frames: int = 60, seed: int = 0, workers: int = 1) -> dict:
    """Write the synthetic Aff-Wild2 set under `out`; return the planted counts per split:
    {split: {"written", "skipped": {reason: n}, "labels": {va_and_expression, va_only, expression_only}}}.

    Training: `videos` videos (the second with an expression file 5 lines short), a `_left` / `_right`
    pair, and an annotation file whose video has no frames. Validation: `val_videos` videos and a pair. Frames: per video.
    `workers` > 1 draws the videos in that many processes (0 = one per core); the files are the same.
    """
    if videos < 2 or val_videos < 1 or frames < 8:
        raise ValueError(f"need videos >= 2, val_videos >= 1, frames >= 8. Received: {videos}, {val_videos}, {frames}")
    root = Path(out)
    planted = {}
    from va2att.data.work_unit import cpu_count

    workers = workers or cpu_count()
    for split, n_videos in (("training", videos), ("validation", val_videos)):
        prefix = split[:5]
        jobs = [(str(root), split, f"{prefix}_{i:03d}", frames, seed, i,
                 {"expr_lines": frames - 5 if i == 1 else None}) for i in range(n_videos)]
        jobs += [(str(root), split, f"{prefix}_pair_{side}", frames, seed, 1000 + j, {})
                 for j, side in enumerate(("left", "right"))]
        if split == "training":
            jobs.append((str(root), split, f"{prefix}_noframes", frames // 2, seed, 2000, {"frames": False}))
        if workers > 1 and len(jobs) > 2:
            import multiprocessing as mp

            from va2att.data.work_unit import init_worker

            with mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=init_worker) as pool:
                counts = pool.map(_job, jobs)
        else:
            counts = [_job(j) for j in jobs]
        total = sum(counts, Counter())
        planted[split] = {
            "written": total["written"],
            "skipped": {k[5:]: n for k, n in sorted(total.items()) if k.startswith("skip:")},
            "labels": {k[6:]: n for k, n in sorted(total.items()) if k.startswith("label:")},
        }
    # A frame folder that no annotation names (a test video): listed, not prepared.
    import cv2

    test = root / FRAMES_DIR / "test_000"
    test.mkdir(parents=True, exist_ok=True)
    for f in range(1, 4):
        cv2.imwrite(str(test / f"{f:05d}.jpg"), _face(0.0, 0.0, [seed, 9, f]))
    return planted


def generate_demo(out, train: int = 6000, val: int = 1000, seed: int = 0) -> dict:
    """The `demo-affwild2` set: about `train` / `val` frames, in videos of 100 frames."""
    frames = 100
    return generate(out, videos=max(2, round(train / frames) - 2), val_videos=max(1, round(val / frames) - 2),
                    frames=frames, seed=seed, workers=0)
