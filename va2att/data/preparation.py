"""Preparation: an AffectNet or Aff-Wild2 folder -> aligned 56 x 56 gray faces in sharded TFRecords.

    python -m va2att.data.prepare ROOT OUT [--workers N] [--classes 8|7] [--other unlabelled|none|drop]

ROOT may hold any of three layouts, recognised by `source.detect_layout`: AffectNet's CSV file
lists (`affectnet`), AffectNet's per-image .npy annotations (`affectnet_npy`), or Aff-Wild2 as
distributed for the ABAW challenges (`affwild2`; its frames may lack one of the two labels, and
the records then carry label masks). All three give the same kind of shards.

Output layout:
    OUT/<split>-NNNNN.tfrecord   split = training | validation; records described in `records`
    OUT/report.json              written last: counts, skip reasons, shard list (see `prepare`)
    OUT/manifest.json            settings and CSV fingerprints this folder was prepared from
    OUT/.progress/<shard>.json   one per finished shard (its counts): the resume state

Each shard of `shard_size` CSV rows is one work unit, processed in a worker process, written
by the parent to a temporary name and renamed into place, then marked done. A killed run,
restarted with the same arguments, redoes only unmarked shards; a reader never sees a
half-written shard. Alignment follows `align.align_any`: CSV landmarks when usable, else the
face box, else MTCNN. Every row that cannot be used is skipped and counted under its reason (a
line that is not a CSV row or not UTF-8 too; a listed file outside the images folder: `..`, an
absolute path or a symbolic link leading out, as `outside_root`); nothing stops the run except a
split with no usable face at all, another process preparing the same folder (`va2att.util.locking`) and
storage errors (full disk, read-only folder), which stop it with one line saying what to fix; the
same command then resumes. A finished preparation is not written again (it may be read-only).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from va2att.config import FACE_SIZE
from va2att.data import affectnet
from va2att.data.work_unit import (
    MAX_EXAMPLES,
    align_or_note,
    new_result,
    note,
    read_image_or_note,
)
from va2att.util import fileio
from va2att.util.locking import folder_lock

FORMAT = "va2att-faces-v1"
SPLITS = tuple(affectnet.SPLIT_FILES)
SHARD_SIZE = 1024  # CSV rows per shard (one work unit)
PROGRESS_DIR = ".progress"
EXTRA_COUNTS = ("labels", "masked")  # Aff-Wild2: written frames by labels present, and why a label is missing


class PrepareError(RuntimeError):
    """Preparation cannot produce a usable folder (no usable face in a split, settings clash)."""


class PrepareStorageError(PrepareError):
    """The output folder cannot be written (full disk, read-only, permissions); the message says what to fix."""


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.tfrecord"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --------------------------------------------------------------------------- worker side


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def outside_root(images: Path, path: str, allow_symlinks: bool = False) -> bool:
    """True when the listed `path` would read a file outside the images folder: an absolute path, a `..`
    component, or (unless `allow_symlinks`) a symbolic link that leads out of it."""
    listed = Path(path)
    if listed.is_absolute() or ".." in listed.parts:
        return True
    if allow_symlinks:
        return False
    return not (images / listed).resolve().is_relative_to(images.resolve())


def process_rows(root: str, rows: list[tuple], use_mtcnn: bool = True, allow_symlinks: bool = False) -> dict:
    """Align one work unit. rows: (path, box(4), landmark string, expression, valence, arousal).

    Returns {"records": [(face bytes, valence, arousal, expression, path, method)],
    "skipped", "fallbacks", "methods": Counter, "examples": {reason: [paths]}}.
    """
    from va2att.faces.align import usable_box

    images = Path(root) / affectnet.IMAGES_DIR
    out = new_result()
    for path, box, lm_text, expr, v, a in rows:
        if outside_root(images, path, allow_symlinks):
            note(out, "skipped", "outside_root", path)
            continue
        box = np.asarray(box, np.float64)
        min_scale = None
        if usable_box(box):
            min_scale = min(1.0, 2.5 * FACE_SIZE / max(box[2], box[3]))
        image = read_image_or_note(out, images / path, path, min_scale=min_scale)
        aligned = None if image is None else align_or_note(out, image, lm_text, box, use_mtcnn, path)
        if aligned is None:
            continue
        face, method = aligned
        out["records"].append((face.tobytes(), float(v), float(a), int(expr), path, method))
    return out


def _processor(layout: str):
    """The work-unit function of a layout (all return `process_rows`'s result shape)."""
    if layout == "affectnet":
        return process_rows
    from va2att.data import affectnet_npy, affwild2

    return {"affectnet-npy": affectnet_npy.process_ids, "affwild2": affwild2.process_frames}[layout]


def _run_unit(unit) -> tuple:
    split, index, root, rows, use_mtcnn, allow_symlinks, layout = unit
    if layout == "affectnet":
        return split, index, process_rows(root, rows, use_mtcnn, allow_symlinks)
    return split, index, _processor(layout)(root, rows, use_mtcnn)


# --------------------------------------------------------------------------- parent side


def _fingerprint(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, value) -> None:
    fileio.write_text(path, json.dumps(value, indent=1, sort_keys=True))


def _write_shard(out: Path, split: str, index: int, result: dict) -> None:
    import tensorflow as tf

    from va2att.data.records import serialize

    name = shard_name(split, index)
    with fileio.atomic_path(out / name) as tmp, tf.io.TFRecordWriter(str(tmp)) as w:
        for rec in result["records"]:
            w.write(serialize(*rec))
    per_expr = Counter(str(r[3]) for r in result["records"])
    marker = {
        "written": len(result["records"]),
        "skipped": dict(result["skipped"]),
        "fallbacks": dict(result["fallbacks"]),
        "methods": dict(result["methods"]),
        "per_expression": dict(per_expr),
        "examples": result["examples"],
    }
    for key in EXTRA_COUNTS:  # label counts of the layouts with label masks
        if key in result:
            marker[key] = dict(result[key])
    _write_json(out / PROGRESS_DIR / f"{name}.json", marker)


def _done(out: Path, split: str, index: int) -> bool:
    name = shard_name(split, index)
    return (out / PROGRESS_DIR / f"{name}.json").is_file() and (out / name).is_file()


def _merge(into: dict, part: dict) -> None:
    for key in ("skipped", "fallbacks", "methods", "per_expression", *EXTRA_COUNTS):
        if key not in part and key in EXTRA_COUNTS:
            continue
        c = Counter(into.get(key, {}))
        c.update(part.get(key, {}))
        into[key] = dict(sorted(c.items()))
    for reason, paths in part.get("examples", {}).items():
        ex = into.setdefault("examples", {}).setdefault(reason, [])
        ex.extend(paths[: MAX_EXAMPLES - len(ex)])


def prepare(
    root,
    out,
    workers: int = 0,
    *,
    classes: int = 8,
    shard_size: int = SHARD_SIZE,
    use_mtcnn: bool = True,
    allow_symlinks: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    stop_after_shards: int | None = None,
    other: str = "unlabelled",
) -> dict:
    """Prepare (or finish preparing) `out` from the AffectNet-layout folder `root`.

    Args:
        root: folder with Manually_Annotated_file_lists/ and Manually_Annotated_Images/.
        out: output folder (created). Re-running with the same arguments resumes.
        workers: processes; 0 = one per core; capped at the core count. 1 = in this process.
        classes: 8 keeps codes 0-7, 7 keeps 0-6.
        shard_size: CSV rows per shard.
        use_mtcnn: detect faces with MTCNN when neither landmarks nor box are usable.
        allow_symlinks: read listed files through symbolic links that leave the images folder (copies
            made of links); otherwise they are skipped as `outside_root`, like `..` and absolute paths.
        progress: show a tqdm bar.
        overwrite: discard a preparation of `out` made with other settings or CSVs.
        stop_after_shards: stop (raise KeyboardInterrupt) after writing this many shards,
            as a kill would; used to test resuming.
        other: Aff-Wild2 only: what its "Other" expression becomes (`affwild2.OTHER_CHOICES`).
    Returns:
        The report (also OUT/report.json): {"written": N, "skipped": {reason: n}, "fallbacks":
        {reason: n}, "splits": {split: {...per split detail, "shards": [file names]}}, ...}.
    Raises:
        affectnet.AffectNetError: a CSV is missing or lacks columns.
        PrepareError: a split has no usable face, or `out` holds another preparation.
        FolderInUseError: another process is preparing `out` (`va2att.util.locking`; held while writing).
    """
    if classes not in (7, 8):
        raise ValueError(f"classes must be 7 or 8. Received: classes={classes}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1. Received: shard_size={shard_size}")
    t0 = time.perf_counter()
    root, out = Path(root), Path(out)
    from va2att.data.source import detect_layout

    layout = detect_layout(root) or "affectnet"
    if layout == "affectnet":
        tables = {s: affectnet.read_split(root, s, classes) for s in SPLITS}
        fingerprints = {s: _fingerprint(affectnet.list_path(root, s)) for s in SPLITS}
    else:
        tables = _read_tables(layout, root, classes, other)
        fingerprints = {s: t.fingerprint for s, t in tables.items()}
    manifest = {
        "format": FORMAT,
        "face_size": FACE_SIZE,
        "classes": classes,
        "shard_size": shard_size,
        "use_mtcnn": use_mtcnn,
        "csv_sha1": fingerprints,
    }
    if layout != "affectnet":
        manifest["layout"] = layout
        if layout == "affwild2":
            manifest["other"] = other
    if allow_symlinks:  # only when set: folders prepared before the option keep their manifest
        manifest["allow_symlinks"] = True
    if _read_manifest(out) == manifest and is_prepared(out):
        return load_report(out)  # finished: nothing to write (the folder may be read-only)
    try:
        with folder_lock(out, "preparation"):
            return _prepare_locked(root, out, tables, manifest, classes=classes, shard_size=shard_size,
                                   use_mtcnn=use_mtcnn, allow_symlinks=allow_symlinks, progress=progress,
                                   overwrite=overwrite, stop_after_shards=stop_after_shards, workers=workers, t0=t0,
                                   layout=layout, other=other)
    except Exception as error:
        message = storage_problem(error)
        if message is None:
            raise
        raise PrepareStorageError(f"cannot write the preparation in {out}: {message}; the shards written so far "
                                  "are kept and the same command resumes from them.") from None


def _read_manifest(out: Path):
    try:
        return json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def storage_problem(error: BaseException) -> str | None:
    """What to free or fix when `error` is a storage failure (full disk, read-only or unwritable folder), else None."""
    import errno

    code = getattr(error, "errno", None)
    name = type(error).__name__
    text = str(error).lower()
    if code in (errno.ENOSPC, errno.EDQUOT) or name == "ResourceExhaustedError" or "no space left" in text:
        return "the disk is full (free space there)"
    if code == errno.EROFS or "read-only file system" in text:
        return "the file system is read-only (choose a writable output folder)"
    if code in (errno.EACCES, errno.EPERM) or name == "PermissionDeniedError":
        return "permission denied (make the folder writable or choose another)"
    return None


def _prepare_locked(root: Path, out: Path, tables: dict, manifest: dict, *, classes, shard_size, use_mtcnn,
                    allow_symlinks, progress, overwrite, stop_after_shards, workers, t0, layout="affectnet",
                    other="unlabelled") -> dict:
    from tqdm import tqdm

    (out / PROGRESS_DIR).mkdir(exist_ok=True)
    mpath = out / "manifest.json"
    found = _read_manifest(out)
    if mpath.is_file() and found != manifest:
        if not overwrite:
            raise PrepareError(
                f"{out} holds a preparation made with other settings or file lists; "
                "use another folder or overwrite=True (--overwrite)."
            )
        for f in list(out.glob("*.tfrecord")) + list((out / PROGRESS_DIR).glob("*.json")) + [out / "report.json"]:
            f.unlink(missing_ok=True)
    if found != manifest:
        _write_json(mpath, manifest)
    fileio.remove_temporaries(out)
    fileio.remove_temporaries(out / PROGRESS_DIR)

    units, counts = [], {}
    for split, t in tables.items():
        counts[split] = -(-len(t) // shard_size)
        for i in range(counts[split]):
            if _done(out, split, i):
                continue
            lo, hi = i * shard_size, min(len(t), (i + 1) * shard_size)
            if layout != "affectnet":
                units.append((split, i, str(root), t.rows(lo, hi), use_mtcnn, False, layout))
                continue
            rows = [
                (t.paths[j], t.boxes[j].tolist(), t.landmarks[j], int(t.expression[j]), float(t.valence[j]), float(t.arousal[j]))
                for j in range(lo, hi)
            ]
            units.append((split, i, str(root), rows, use_mtcnn, allow_symlinks, "affectnet"))
    workers = max(1, min(workers or cpu_count(), cpu_count(), len(units) or 1))
    bar = tqdm(total=sum(len(u[3]) for u in units), unit="face", disable=not progress, desc="prepare")
    written = 0
    pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker) if workers > 1 and len(units) > 1 else None
    try:
        results = pool.imap_unordered(_run_unit, units) if pool else map(_run_unit, units)
        for split, index, result in results:
            _write_shard(out, split, index, result)
            bar.update(sum(result["skipped"].values()) + len(result["records"]))
            written += 1
            if stop_after_shards is not None and written >= stop_after_shards:
                raise KeyboardInterrupt(f"stopped after {written} shard(s)")
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    report = {"format": FORMAT, "face_size": FACE_SIZE, "classes": classes, "root": str(root.resolve()), "splits": {}}
    for split, t in tables.items():
        s = {"csv_rows": t.total, "written": 0, "skipped": dict(t.dropped), "shards": []}
        for i in range(counts[split]):
            part = json.loads((out / PROGRESS_DIR / f"{shard_name(split, i)}.json").read_text())
            s["written"] += part["written"]
            _merge(s, part)
            s["shards"].append(shard_name(split, i))
        s["skipped"] = dict(sorted(s["skipped"].items()))
        s.update(getattr(t, "report", {}))
        s["none_faces"] = int(s.get("per_expression", {}).get(str(affectnet.NONE_CODE), 0))  # kept, used only with data.none_faces
        if s["written"] - s["none_faces"] == 0:
            raise PrepareError(
                f"no usable face in split {split!r} of {root} ({t.total} CSV rows; skipped: {s['skipped']})"
            )
        report["splits"][split] = s
    total_skipped, total_fallbacks = Counter(), Counter()
    for s in report["splits"].values():
        total_skipped.update(s["skipped"])
        total_fallbacks.update(s.get("fallbacks", {}))
    report["written"] = sum(s["written"] for s in report["splits"].values())
    report["skipped"] = dict(sorted(total_skipped.items()))
    report["fallbacks"] = dict(sorted(total_fallbacks.items()))
    if layout != "affectnet":
        report.update(_layout_report(layout, root, other))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    _write_json(out / "report.json", report)
    return report


def _read_tables(layout: str, root: Path, classes: int, other: str) -> dict:
    """The per-split work lists of the non-CSV layouts (`.rows(lo, hi)`, `.total`, `.dropped`, `.report`)."""
    from va2att.data import affectnet_npy, affwild2

    if layout == "affwild2":
        return {s: affwild2.read_split(root, s, other) for s in SPLITS}
    return {s: affectnet_npy.read_split(root, s, classes) for s in SPLITS}


def _layout_report(layout: str, root: Path, other: str) -> dict:
    """report.json entries of the non-CSV layouts: the layout, whether records carry label masks, the
    expression codes the data set annotates (macro-F1 is averaged over these)."""
    from va2att.data import affwild2

    if layout == "affwild2":
        return {"layout": layout, "label_masks": True, "other": other,
                "expression_classes": list(affwild2.EXPRESSION_CLASSES),
                "videos_without_annotations": affwild2.videos_without_annotations(root)}
    return {"layout": layout}


def is_prepared(path) -> bool:
    """True when `path` holds a finished preparation: report.json and every shard it lists."""
    path = Path(path)
    try:
        report = json.loads((path / "report.json").read_text())
    except (OSError, ValueError):
        return False
    if report.get("format") != FORMAT or not isinstance(report.get("splits"), dict):
        return False
    return all((path / name).is_file() for s in report["splits"].values() for name in s.get("shards", []))


def load_report(path) -> dict:
    """report.json of a finished preparation (FileNotFoundError naming the folder otherwise)."""
    if not is_prepared(path):
        raise FileNotFoundError(f"{path} is not a finished preparation (no valid report.json); run va2att.data.preparation")
    return json.loads((Path(path) / "report.json").read_text())
