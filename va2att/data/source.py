"""Resolve `--data` to a prepared folder of TFRecord shards (or several: a mixture).

`demo` generates the built-in synthetic set into a cache folder on first use and
prepares it (`demo-affwild2` and `demo-affectnet-npy`: the synthetic stand-ins in those
layouts); a raw root in one of the three layouts (`detect_layout`: AffectNet's CSV lists,
AffectNet's .npy annotations, Aff-Wild2) is prepared into the cache on first use; an already
prepared folder is used as is. Several sources separated by `os.pathsep` (":"), e.g. from
`--data A --data B`, resolve to a tuple of prepared folders that the pipeline reads together.
The cache is `$VA2ATT_CACHE`, else `~/.cache/va2att`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

from va2att.config import DataConfig
from va2att.data import affectnet_npy, affwild2
from va2att.data.affectnet import LISTS_DIR as AFFECTNET_LISTS

LAYOUTS = ("affectnet", "affectnet-npy", "affwild2")
DEMOS = ("demo", "demo-affwild2", "demo-affectnet-npy")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("VA2ATT_CACHE") or Path.home() / ".cache" / "va2att")


def is_affectnet_root(path: str | os.PathLike) -> bool:
    return (Path(path) / AFFECTNET_LISTS).is_dir()


def detect_layout(path: str | os.PathLike) -> str | None:
    """"affectnet" (CSV file lists), "affectnet-npy" (train_set/annotations/*.npy), "affwild2"
    (cropped_aligned/ + Annotations/), or None for a folder in none of them."""
    if is_affectnet_root(path):
        return "affectnet"
    if affwild2.is_root(path):
        return "affwild2"
    if affectnet_npy.is_root(path):
        return "affectnet-npy"
    return None


def data_sources(data: str) -> list[str]:
    """The sources `data.data` names: one, or several separated by `os.pathsep`."""
    return [part for part in data.split(os.pathsep) if part]


def resolve_data(cfg: DataConfig, cache_dir=None, log=print):
    """Return a prepared folder for `cfg.data`, generating and preparing it when needed; for several
    sources, a tuple of prepared folders (in the order given)."""
    import dataclasses

    sources = data_sources(cfg.data)
    if len(sources) > 1:
        return tuple(resolve_data(dataclasses.replace(cfg, data=s), cache_dir, log) for s in sources)
    return _resolve_one(cfg, cache_dir, log)


def _prepare_shared(raw, prepared: Path, log, **kwargs) -> None:
    """Prepare into a cache folder that other processes (the workers of one run) may be preparing too:
    when one of them holds the folder's lock, wait for it to finish instead of failing."""
    import time

    from va2att.data import preparation as prepare
    from va2att.util.locking import FolderInUseError

    told = False
    while True:
        try:
            prepare.prepare(raw, prepared, **kwargs)
            return
        except FolderInUseError as error:
            if not told:
                log(f"{error} Waiting for it to finish.")
                told = True
            time.sleep(1.0)
            if prepare.is_prepared(prepared):
                return


def _demo(cfg: DataConfig, cache: Path, log) -> Path:
    """Generate (first use) and prepare a named synthetic set (`DEMOS`) in the cache."""
    from va2att.data import preparation as prepare
    from va2att.data.synthetic import affectnet as synthetic
    from va2att.data.synthetic import affectnet_npy as synthetic_affectnet_npy
    from va2att.data.synthetic import affwild2 as synthetic_affwild2

    name = cfg.data
    if name == "demo":
        version, layout, generate = synthetic.VERSION, "AffectNet", functools.partial(synthetic.generate, progress=True)
        what, size = "the demo set", "the built-in synthetic demo set ("
        bars = {"progress": sys.stderr.isatty()}  # no bar in a log file
    else:
        module = synthetic_affwild2 if name == "demo-affwild2" else synthetic_affectnet_npy
        version, layout, generate = module.VERSION, module.LAYOUT, module.generate_demo
        what, size, bars = f"the {name} set", f"the synthetic {name} set (about ", {}
    base = cache / f"{name}-v{version}-{cfg.demo_train}-{cfg.demo_val}-seed{cfg.demo_seed}"
    prepared = base / "prepared"
    if prepare.is_prepared(prepared):
        return prepared
    raw, done = base / "raw", base / "raw.done"
    if not done.is_file():
        log(f"Generating {size}{cfg.demo_train} training and {cfg.demo_val} validation faces in the {layout} "
            f"layout) into {raw} (first use only).")
        generate(raw, train=cfg.demo_train, val=cfg.demo_val, seed=cfg.demo_seed)
        done.write_text("complete\n")
    log(f"Preparing {what} into {prepared} (first use only).")
    _prepare_shared(raw, prepared, log, workers=cfg.prepare_workers, **bars)
    return prepared


def _resolve_one(cfg: DataConfig, cache_dir=None, log=print) -> Path:
    from va2att.data import preparation as prepare

    cache = cache_root(cache_dir)
    workers = cfg.prepare_workers
    if cfg.data in DEMOS:
        return _demo(cfg, cache, log)
    path = Path(cfg.data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--data {cfg.data!r}: no such folder. Give {', '.join(map(repr, DEMOS))}, an "
                                f"AffectNet root (with {AFFECTNET_LISTS}/ or train_set/annotations/), an Aff-Wild2 "
                                "root (with cropped_aligned/ and Annotations/) or a folder made by "
                                "`python -m va2att.data.prepare`.")
    if prepare.is_prepared(path):
        return path
    layout = detect_layout(path)
    if layout is not None:
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        prepared = cache / f"{layout}-{digest}"
        if not prepare.is_prepared(prepared):
            log(f"Preparing the {layout} copy at {path} into {prepared} (first use only; resumable if interrupted).")
            _prepare_shared(path, prepared, log, workers=workers)
        return prepared
    raise ValueError(f"--data {cfg.data!r} is neither a data set root (AffectNet: {AFFECTNET_LISTS}/ or "
                     "train_set/annotations/; Aff-Wild2: cropped_aligned/ and Annotations/) nor a prepared folder "
                     "(no complete report.json).")
