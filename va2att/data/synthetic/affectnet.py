"""A synthetic data set in the exact AffectNet layout, for demos, tests and CI.

    python -m va2att.data.synthetic OUT --train 6000 --val 1000 [--seed 0] [--style cartoon|portrait|components]

(`va2att.cli.synthetic`) writes
    OUT/Manually_Annotated_Images/<sub>/<name>.jpg
    OUT/Manually_Annotated_file_lists/training.csv, validation.csv   (real header)

Each image holds one procedurally drawn face whose mouth, eyes and brows encode valence and
arousal; the expression code is the nearest circumplex prototype. Two drawings: `cartoon`
(`face`, the demo set) and `portrait` (`portrait`: other geometry, label
distribution, clutter and noise, and 4% random labels), to check that a recipe is not tuned to
one drawing. `train` and `val` count the usable faces (codes 0-7). On top of them each split
carries the dirt real copies have (`DIRT`): codes 8-10 (8, "None", is kept for its valence and
arousal), -2 and out-of-range labels, a
missing file, garbage bytes, a truncated JPEG, an empty file; and among the usable rows a
grayscale JPEG, an RGBA PNG, a 16-bit grayscale PNG and rows with bad landmark strings (these
are kept: converted to RGB, or aligned from the face box). Deterministic from the seed,
whatever the number of worker processes.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
from pathlib import Path

import numpy as np

from va2att.data.affectnet import COLUMNS, IMAGES_DIR, LISTS_DIR
from va2att.data.work_unit import cpu_count, init_worker

VERSION = 3  # bump when the drawn faces change, so cached demo sets are regenerated
SPLITS = {"training": 0, "validation": 1}
STYLES = ("cartoon", "portrait", "components")
NOISE_FILE = "label_noise.csv"  # components style: each usable row's noise kind and own labels
NOISE_COLUMNS = ["subDirectory_filePath", "split", "noise", "own_valence", "own_arousal"]
FILES_PER_DIR = 500

# Extra rows per split, each with the reason preparation must count it under.
DIRT = {
    "code_8": None,  # kept: a "None" face has valence and arousal (counted apart, used with data.none_faces)
    "code_9_no_value": "expression_excluded",
    "code_10_no_value": "expression_excluded",
    "valence_minus_2": "no_value",
    "arousal_out_of_range": "label_out_of_range",
    "label_text": "label_non_numeric",
    "missing_file": "missing",
    "garbage_bytes": "not_an_image",
    "truncated_jpeg": "truncated",
    "empty_file": "empty",
}
# Usable rows written in a special way, by position in the split (kept by preparation).
SPECIAL = {0: "grayscale_jpeg", 1: "rgba_png", 2: "gray16_png", 3: "landmarks_wrong_length", 4: "landmarks_non_numeric"}


def _fmt(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _landmark_string(lm: np.ndarray) -> str:
    return ";".join(f"{v:.2f}" for v in lm.reshape(-1))


def _relpath(split: str, index: int, ext: str = "jpg") -> str:
    return f"{split[:5]}{index // FILES_PER_DIR:03d}/{split[:1]}{index:06d}.{ext}"


def _render(job) -> tuple[list[str], list[str] | None]:
    """Draw and write one usable face; returns its CSV row, and for the components style its row of
    `NOISE_FILE` (the noise kind and the face's own labels)."""
    import cv2

    root, split, index, seed, style = job
    rng = np.random.default_rng([seed, SPLITS[split], index])
    noise = None
    if style == "components":
        from va2att.data.synthetic.components import draw_components, sample_labels

        v_own, a_own, code, v, a, kind = sample_labels(rng, training=split == "training")
        img, lm, box = draw_components(v_own, a_own, code, rng)
        noise = [kind, _fmt(v_own), _fmt(a_own)]
    elif style == "portrait":
        from va2att.data.synthetic.portrait import draw_portrait, sample_labels

        v_shown, a_shown, code, v, a = sample_labels(rng)
        img, lm, box = draw_portrait(v_shown, a_shown, rng)
    else:
        from va2att.data.synthetic.face import draw_face, sample_labels

        v, a, code = sample_labels(rng)
        img, lm, box = draw_face(v, a, rng)
    special = SPECIAL.get(index)
    rel = _relpath(split, index, "png" if special in ("rgba_png", "gray16_png") else "jpg")
    path = Path(root) / IMAGES_DIR / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    quality = int(rng.integers(70, 96))
    if special == "grayscale_jpeg":
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_JPEG_QUALITY, quality])
    elif special == "rgba_png":
        alpha = np.full(img.shape[:2] + (1,), 255, np.uint8)
        cv2.imwrite(str(path), np.concatenate([img, alpha], 2))
    elif special == "gray16_png":
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    else:
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    lms = _landmark_string(lm)
    if special == "landmarks_wrong_length":
        lms = ";".join(lms.split(";")[:100])
    elif special == "landmarks_non_numeric":
        parts = lms.split(";")
        parts[7] = "abc"
        lms = ";".join(parts)
    x, y, w, h = box
    row = [rel, _fmt(x), _fmt(y), _fmt(w), _fmt(h), lms, str(code), _fmt(v), _fmt(a)]
    return row, (None if noise is None else [rel, *noise])


def _dirt_rows(root: Path, split: str, template: list[str], rng: np.random.Generator) -> list[list[str]]:
    """The DIRT rows; `template` is a usable row whose file some of them reuse."""
    rows = []
    src = root / IMAGES_DIR / template[0]
    for i, kind in enumerate(DIRT):
        row = list(template)
        if kind == "code_8":  # its own file: paths are unique in AffectNet's lists
            row[0], row[6] = f"{split[:5]}_none/none.jpg", "8"
            (root / IMAGES_DIR / row[0]).parent.mkdir(parents=True, exist_ok=True)
            (root / IMAGES_DIR / row[0]).write_bytes(src.read_bytes())
        elif kind in ("code_9_no_value", "code_10_no_value"):
            row[6], row[7], row[8] = ("9" if "9" in kind else "10"), "-2", "-2"
        elif kind == "valence_minus_2":
            row[6], row[7] = "0", "-2"
        elif kind == "arousal_out_of_range":
            row[8] = "1.5"
        elif kind == "label_text":
            row[7] = "high"
        else:
            rel = f"{split[:5]}_dirt/{kind}.jpg"
            row[0] = rel
            path = root / IMAGES_DIR / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "garbage_bytes":
                path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
            elif kind == "truncated_jpeg":
                data = src.read_bytes()
                path.write_bytes(data[: len(data) // 2])
            elif kind == "empty_file":
                path.write_bytes(b"")
        rows.append(row)
    return rows


def _bar_through(items, bar):
    """Yield `items`, advancing the tqdm `bar` by one for each."""
    for item in items:
        yield item
        bar.update()


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def generate(out, train: int = 6000, val: int = 1000, seed: int = 0, workers: int = 0, style: str = "cartoon",
             progress: bool = False) -> Path:
    """Write the synthetic set under `out` (created); returns the root Path.

    Args:
        out: folder to create (existing files are overwritten).
        train, val: usable faces per split (>= 1; dirt rows come on top).
        seed: int; the same seed gives the same files.
        workers: processes; 0 = one per core.
        style: "cartoon" (the demo set's drawing), "portrait" (another drawing) or "components" (the
            portrait faces with label noise, small off-centre faces among clutter and class marks, the
            set the paper's tables run on: `va2att.data.synthetic.components`; also writes `NOISE_FILE`).
        progress: show a tqdm bar (on stderr, when it is a terminal).
    """
    if train < 1 or val < 1:
        raise ValueError(f"train and val must be >= 1. Received: train={train}, val={val}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}. Received: style={style!r}")
    root = Path(out)
    (root / LISTS_DIR).mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    workers = workers or cpu_count()
    bar = tqdm(total=train + val, unit="face", desc="generate", disable=None if progress else True)
    noise_rows = []
    for split, n in (("training", train), ("validation", val)):
        jobs = [(str(root), split, i, seed, style) for i in range(n)]
        if workers > 1 and n >= 64:
            with mp.get_context("spawn").Pool(workers, initializer=init_worker) as pool:
                rendered = list(_bar_through(pool.imap(_render, jobs, chunksize=max(1, n // (workers * 8))), bar))
        else:
            rendered = list(_bar_through(map(_render, jobs), bar))
        rows = [row for row, _ in rendered]
        noise_rows += [[noise[0], split, *noise[1:]] for _, noise in rendered if noise is not None]
        rng = np.random.default_rng([seed, SPLITS[split], 10**9])
        rows += _dirt_rows(root, split, rows[-1], rng)
        _write_csv(root / LISTS_DIR / f"{split}.csv", COLUMNS, rows)
    if noise_rows:
        _write_csv(root / NOISE_FILE, NOISE_COLUMNS, noise_rows)
    bar.close()
    # Marks the set as drawn faces, so models trained on it say so (va2att.serving.provenance).
    (root / "va2att-synthetic.json").write_text(json.dumps(
        {"generator": "va2att.data.synthetic", "version": VERSION, "style": style, "seed": seed,
         "train": train, "val": val}, indent=1) + "\n")
    return root
