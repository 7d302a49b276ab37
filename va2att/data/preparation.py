"""Preparation: a data set folder -> aligned 56 x 56 gray faces in sharded TFRecords.

    python -m va2att.data.prepare ROOT OUT [--workers N] [--classes 8|7] [--other unlabelled|none|drop]

ROOT may hold any layout of the registry `va2att.data.layouts` (AffectNet's CSV file lists,
AffectNet's per-image .npy annotations, Aff-Wild2 as distributed for the ABAW challenges, or one
registered from outside); all give the same kind of shards (`va2att.data.records`; a layout whose
frames may lack a label writes label masks).

Output layout:
    OUT/<split>-NNNNN.tfrecord   split = training | validation; records described in `records`
    OUT/report.json              written last: counts, skip reasons, shard list (see `prepare`)
    OUT/manifest.json            settings and file-list fingerprints this folder was prepared from
    OUT/.progress/<shard>.json   one per finished shard (its counts): the resume state

The steps (`prepare`): list each split (`Layout.read_split`), claim the folder (`_claim_folder`:
one process at a time, the same settings as before or `overwrite`), cut the rows into work units
of `shard_size` and process those not done yet (`_write_pending_shards`: in worker processes,
`va2att.data.work_unit.run_unit`; the parent writes each shard to a temporary name, renames it and
marks it done), then sum the shards' counts into report.json (`_report`). A killed run,
restarted with the same arguments, redoes only unmarked shards; a reader never sees a
half-written shard. Every row that cannot be used is skipped and counted under its reason;
nothing stops the run except a split with no usable face at all, another process preparing the
same folder (`va2att.util.locking`) and storage errors (full disk, read-only folder), which stop
it with one line saying what to fix; the same command then resumes. A finished preparation is
not written again (it may be read-only).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from collections import Counter
from pathlib import Path

from va2att.config import FACE_SIZE
from va2att.data.affectnet import NONE_CODE
from va2att.data.layout import SPLITS, Layout, PrepareOptions, SplitTable
from va2att.data.layouts import LAYOUTS, detect_layout, root_hints
from va2att.data.work_unit import (
    MAX_EXAMPLES,
    UnitResult,
    WorkUnit,
    cpu_count,
    init_worker,
    run_unit,
)
from va2att.util import fileio
from va2att.util.locking import folder_lock
from va2att.util.storage import storage_problem

FORMAT = "va2att-faces-v1"
SHARD_SIZE = 1024  # rows per shard (one work unit)
PROGRESS_DIR = ".progress"
COUNTERS = ("skipped", "fallbacks", "methods", "per_expression")  # summed over a split's shards


class PrepareError(RuntimeError):
    """Preparation cannot produce a usable folder (no usable face in a split, settings clash)."""


class PrepareStorageError(PrepareError):
    """The output folder cannot be written (full disk, read-only, permissions); the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """One preparation: where from, where to, which layout and settings, and each split's rows."""

    root: Path
    out: Path
    layout: Layout
    options: PrepareOptions
    tables: dict[str, SplitTable]
    shard_size: int

    def shards(self, split: str) -> int:
        return -(-len(self.tables[split]) // self.shard_size)

    def manifest(self) -> dict:
        """What makes this preparation different from another (manifest.json)."""
        manifest = {
            "format": FORMAT,
            "face_size": FACE_SIZE,
            "classes": self.options.classes,
            "shard_size": self.shard_size,
            "use_mtcnn": self.options.use_mtcnn,
            "csv_sha1": {split: table.fingerprint for split, table in self.tables.items()},
            **self.layout.manifest(self.options),
        }
        if self.options.allow_symlinks:  # only when set: folders prepared before the option keep their manifest
            manifest["allow_symlinks"] = True
        return manifest


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.tfrecord"


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
    other: str = "unlabelled",
) -> dict:
    """Prepare (or finish preparing) `out` from the data set folder `root`.

    Args:
        root: a folder in one of the registered layouts (`va2att.data.layouts`).
        out: output folder (created). Re-running with the same arguments resumes.
        workers: processes; 0 = one per core; capped at the core count. 1 = in this process.
        classes: 8 keeps codes 0-7, 7 keeps 0-6.
        shard_size: rows per shard.
        use_mtcnn: detect faces with MTCNN when neither landmarks nor box are usable.
        allow_symlinks: read listed files through symbolic links that leave the images folder (copies
            made of links); otherwise they are skipped as `outside_root`, like `..` and absolute paths.
        progress: show a tqdm bar.
        overwrite: discard a preparation of `out` made with other settings or file lists.
        other: Aff-Wild2 only: what its "Other" expression becomes (`affwild2.OTHER_CHOICES`).
    Returns:
        The report (also OUT/report.json): {"written": N, "skipped": {reason: n}, "fallbacks":
        {reason: n}, "splits": {split: {...per split detail, "shards": [file names]}}, ...}.
    Raises:
        ValueError: `root` is in no known layout, or a file list cannot be read at all (its subclasses
            `affectnet.AffectNetError`, `affwild2.AffWild2Error` name the file).
        PrepareError: a split has no usable face, or `out` holds another preparation.
        FolderInUseError: another process is preparing `out` (`va2att.util.locking`; held while writing).
    """
    if classes not in (7, 8):
        raise ValueError(f"classes must be 7 or 8. Received: classes={classes}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1. Received: shard_size={shard_size}")
    started = time.perf_counter()
    root, out = Path(root), Path(out)
    layout = detect_layout(root)
    if layout is None:
        raise ValueError(f"{root} holds no known data set layout ({root_hints()}).")
    options = PrepareOptions(classes, use_mtcnn, allow_symlinks, other)
    plan = Plan(root, out, layout, options, {s: layout.read_split(root, s, options) for s in SPLITS}, shard_size)
    if _read_manifest(out) == plan.manifest() and is_prepared(out):
        return load_report(out)  # finished: nothing to write (the folder may be read-only)
    try:
        with folder_lock(out, "preparation"):
            _claim_folder(plan, overwrite)
            _write_pending_shards(plan, workers, progress)
            report = _report(plan)
            report["seconds"] = round(time.perf_counter() - started, 2)
            _write_json(out / "report.json", report)
            return report
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


def _write_json(path: Path, value) -> None:
    fileio.write_text(path, json.dumps(value, indent=1, sort_keys=True))


def _claim_folder(plan: Plan, overwrite: bool) -> None:
    """Make `plan.out` a folder of this preparation: refuse (or, with `overwrite`, empty) a folder prepared
    with other settings, record the manifest, and remove what a killed writer left half-written."""
    out, manifest = plan.out, plan.manifest()
    (out / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    found = _read_manifest(out)
    if (out / "manifest.json").is_file() and found != manifest:
        if not overwrite:
            raise PrepareError(f"{out} holds a preparation made with other settings or file lists; "
                               "use another folder or overwrite=True (--overwrite).")
        for f in [*out.glob("*.tfrecord"), *(out / PROGRESS_DIR).glob("*.json"), out / "report.json"]:
            f.unlink(missing_ok=True)
    if found != manifest:
        _write_json(out / "manifest.json", manifest)
    fileio.remove_temporaries(out)
    fileio.remove_temporaries(out / PROGRESS_DIR)


def _done(out: Path, split: str, index: int) -> bool:
    """The shard is written and marked done, and still has the size it was written with."""
    name = shard_name(split, index)
    try:
        marker = json.loads((out / PROGRESS_DIR / f"{name}.json").read_text())
        size = (out / name).stat().st_size
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("bytes", size) == size


def _pending_units(plan: Plan) -> list[WorkUnit]:
    """The work units whose shard is not written yet, in split and shard order."""
    units = []
    for split, table in plan.tables.items():
        for i in range(plan.shards(split)):
            if not _done(plan.out, split, i):
                rows = table.rows(i * plan.shard_size, (i + 1) * plan.shard_size)
                units.append(WorkUnit(split, i, str(plan.root), list(rows), plan.layout, plan.options))
    return units


def _write_pending_shards(plan: Plan, workers: int, progress: bool) -> None:
    """Process every pending unit (in `workers` processes) and write each unit's shard as it arrives."""
    from tqdm import tqdm

    units = _pending_units(plan)
    workers = max(1, min(workers or cpu_count(), cpu_count(), len(units) or 1))
    bar = tqdm(total=sum(len(u.rows) for u in units), unit="face", disable=not progress, desc="prepare")
    pool = mp.get_context("spawn").Pool(workers, initializer=init_worker) if workers > 1 and len(units) > 1 else None
    try:
        results = pool.imap_unordered(run_unit, units) if pool else map(run_unit, units)
        for split, index, result in results:
            _write_shard(plan.out, split, index, result)
            bar.update(sum(result.skipped.values()) + len(result.records))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()


def _write_shard(out: Path, split: str, index: int, result: UnitResult) -> None:
    """The unit's records as a shard (temporary name, then renamed), then its counts as the done marker."""
    import tensorflow as tf

    from va2att.data.records import serialize

    name = shard_name(split, index)
    with fileio.atomic_path(out / name) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for record in result.records:
            writer.write(serialize(record))
    marker = {
        "bytes": (out / name).stat().st_size,  # a shard of another size later is damaged (`preparation_problem`)
        "written": len(result.records),
        "skipped": dict(result.skipped),
        "fallbacks": dict(result.fallbacks),
        "methods": dict(result.methods),
        "per_expression": dict(Counter(str(r.expression) for r in result.records)),
        "examples": result.examples,
        **{name: dict(counter) for name, counter in result.extra.items()},
    }
    _write_json(out / PROGRESS_DIR / f"{name}.json", marker)


def _read_marker(out: Path, name: str) -> dict:
    path = out / PROGRESS_DIR / f"{name}.json"
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PrepareError(f"{path} is damaged ({type(error).__name__}); delete it and its shard {out / name}, and "
                           "the same command prepares that shard again.") from None
    if not isinstance(marker, dict) or not isinstance(marker.get("written"), int):
        raise PrepareError(f"{path} holds no shard counts; delete it and its shard {out / name}, and the same "
                           "command prepares that shard again.")
    return marker


def _merge(into: dict, part: dict, counters) -> None:
    for key in counters:
        if key in part or key in COUNTERS:
            total = Counter(into.get(key, {}))
            total.update(part.get(key, {}))
            into[key] = dict(sorted(total.items()))
    for reason, paths in part.get("examples", {}).items():
        examples = into.setdefault("examples", {}).setdefault(reason, [])
        examples.extend(paths[: MAX_EXAMPLES - len(examples)])


def _split_report(plan: Plan, split: str) -> dict:
    """One split's counts: its listing's, plus every shard's marker."""
    table = plan.tables[split]
    s = {"csv_rows": table.total, "written": 0, "skipped": dict(table.dropped), "shards": [], "shard_bytes": []}
    for i in range(plan.shards(split)):
        marker = _read_marker(plan.out, shard_name(split, i))
        s["written"] += marker["written"]
        _merge(s, marker, (*COUNTERS, *plan.layout.counts))
        s["shards"].append(shard_name(split, i))
        s["shard_bytes"].append((plan.out / shard_name(split, i)).stat().st_size)
    s["skipped"] = dict(sorted(s["skipped"].items()))
    s.update(table.report)
    s["none_faces"] = int(s.get("per_expression", {}).get(str(NONE_CODE), 0))  # kept, used only with data.none_faces
    if s["written"] - s["none_faces"] == 0:
        hint = (" Listed files lead out of the images folder: give --allow-symlinks (allow_symlinks=True) if the "
                "copy is made of symbolic links." if s["skipped"].get("outside_root") else "")
        raise PrepareError(f"no usable face in split {split!r} of {plan.root} ({table.total} rows; skipped: "
                           f"{s['skipped']}).{hint}")
    return s


def _report(plan: Plan) -> dict:
    """report.json: the splits' counts, their totals and the layout's own entries."""
    report = {"format": FORMAT, "face_size": FACE_SIZE, "classes": plan.options.classes,
              "root": str(plan.root.resolve()), "splits": {split: _split_report(plan, split) for split in plan.tables}}
    splits = report["splits"].values()
    report["written"] = sum(s["written"] for s in splits)
    for key in ("skipped", "fallbacks"):
        total = Counter()
        for s in splits:
            total.update(s.get(key, {}))
        report[key] = dict(sorted(total.items()))
    report.update(plan.layout.report(plan.root, plan.options))
    return report


def preparation_problem(path) -> str | None:
    """Why `path` is not a finished preparation (no or a damaged report.json, a shard missing or of another
    size than when it was written), or None when it is one."""
    path = Path(path)
    try:
        report = json.loads((path / "report.json").read_text())
    except FileNotFoundError:
        return f"{path} holds no report.json"
    except (OSError, ValueError) as error:
        return f"{path / 'report.json'} cannot be read ({type(error).__name__})"
    if not isinstance(report, dict) or report.get("format") != FORMAT or not isinstance(report.get("splits"), dict):
        return f"{path / 'report.json'} is not the report of a finished preparation"
    for split, s in report["splits"].items():
        if not (isinstance(s, dict) and isinstance(s.get("shards"), list)):
            return f"{path / 'report.json'} is damaged (the shard list of {split!r})"
        sizes = s.get("shard_bytes") or [None] * len(s["shards"])  # folders prepared before sizes were kept
        for name, size in zip(s["shards"], sizes):
            shard = path / str(name)
            if not shard.is_file():
                return f"the prepared shard {shard} is missing"
            if size is not None and shard.stat().st_size != size:
                return (f"the prepared shard {shard} is damaged ({shard.stat().st_size} bytes, {size} when it was "
                        f"written); delete it and {path / PROGRESS_DIR / (str(name) + '.json')}, and `python -m "
                        f"va2att.data.prepare {report.get('root', 'ROOT')} {path}` prepares it again")
    return None


def is_prepared(path) -> bool:
    """True when `path` holds a finished preparation: report.json and every shard it lists, of the size
    each had when it was written."""
    return preparation_problem(path) is None


def load_report(path) -> dict:
    """report.json of a finished preparation (FileNotFoundError saying what is wrong otherwise)."""
    problem = preparation_problem(path)
    if problem is not None:
        raise FileNotFoundError(f"{path} is not a finished preparation: {problem}. Prepare it with "
                                "python -m va2att.data.prepare ROOT OUT")
    return json.loads((Path(path) / "report.json").read_text())


def layout_of(report: dict) -> Layout | None:
    """The registered layout a prepared folder's report.json was written from (None for an unknown one)."""
    return LAYOUTS.get(report.get("layout", "affectnet"))
