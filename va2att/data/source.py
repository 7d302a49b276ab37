"""Resolve `--data` to a prepared folder of TFRecord shards.

`demo` generates the built-in synthetic set into a cache folder on first use and
prepares it; a raw AffectNet root (it has `Manually_Annotated_file_lists/`) is
prepared into the cache on first use; an already prepared folder is used as is.
The cache is `$VA2ATT_CACHE`, else `~/.cache/va2att`.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from va2att.config import DataConfig
from va2att.data.affectnet import LISTS_DIR as AFFECTNET_LISTS


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("VA2ATT_CACHE") or Path.home() / ".cache" / "va2att")


def is_affectnet_root(path: str | os.PathLike) -> bool:
    return (Path(path) / AFFECTNET_LISTS).is_dir()


def resolve_data(cfg: DataConfig, cache_dir=None, log=print) -> Path:
    """Return a prepared folder for `cfg.data`, generating and preparing it when needed."""
    from va2att.data import prepare, synthetic

    cache = cache_root(cache_dir)
    workers = cfg.prepare_workers
    if cfg.data == "demo":
        base = cache / f"demo-v{synthetic.VERSION}-{cfg.demo_train}-{cfg.demo_val}-seed{cfg.demo_seed}"
        prepared = base / "prepared"
        if prepare.is_prepared(prepared):
            return prepared
        raw, done = base / "raw", base / "raw.done"
        if not done.is_file():
            log(f"Generating the built-in synthetic demo set ({cfg.demo_train} training and {cfg.demo_val} "
                f"validation faces in the AffectNet layout) into {raw} (first use only).")
            synthetic.generate(raw, train=cfg.demo_train, val=cfg.demo_val, seed=cfg.demo_seed, progress=True)
            done.write_text("complete\n")
        log(f"Preparing the demo set into {prepared} (first use only).")
        prepare.prepare(raw, prepared, workers=workers, progress=sys.stderr.isatty())  # no bar in a log file
        return prepared
    path = Path(cfg.data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--data {cfg.data!r}: no such folder. Give 'demo', an AffectNet root "
                                f"(with {AFFECTNET_LISTS}/) or a folder made by `python -m va2att.data.prepare`.")
    if prepare.is_prepared(path):
        return path
    if is_affectnet_root(path):
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        prepared = cache / f"affectnet-{digest}"
        if not prepare.is_prepared(prepared):
            log(f"Preparing the AffectNet copy at {path} into {prepared} (first use only; resumable if interrupted).")
            prepare.prepare(path, prepared, workers=workers)
        return prepared
    raise ValueError(f"--data {cfg.data!r} is neither an AffectNet root (no {AFFECTNET_LISTS}/ inside) nor a "
                     f"prepared folder (no complete report.json).")
