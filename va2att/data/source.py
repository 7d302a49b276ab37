"""Resolve `--data` to a prepared folder of TFRecord shards (or several: a mixture).

A synthetic set's name (`va2att.data.synthetic.DEMOS`: `demo`, `demo-affwild2`,
`demo-affectnet-npy`) generates the set into a cache folder on first use and prepares it; a raw
root in a registered layout (`va2att.data.layouts`) is prepared into the cache on first use; an
already prepared folder is used as is. Several sources separated by `os.pathsep` (":"), e.g. from
`--data A --data B`, resolve to a tuple of prepared folders that the pipeline reads together.
The cache is `cache_dir`, else `$VA2ATT_CACHE`, else `~/.cache/va2att`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from pathlib import Path

from va2att.config import DataConfig
from va2att.data.layouts import detect_layout, root_hints
from va2att.data.preparation import is_prepared, preparation_problem, prepare
from va2att.run_dir import RunDir, read_data_record, write_data_record
from va2att.util import fileio
from va2att.util.locking import FolderInUseError


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("VA2ATT_CACHE") or Path.home() / ".cache" / "va2att")


def data_sources(data: str) -> list[str]:
    """The sources `data.data` names: one, or several separated by `os.pathsep`."""
    return [part for part in data.split(os.pathsep) if part]


def resolve_data(cfg: DataConfig, cache_dir=None, log=print):
    """Return a prepared folder for `cfg.data`, generating and preparing it when needed; for several
    sources, a tuple of prepared folders (in the order given)."""
    sources = data_sources(cfg.data)
    if len(sources) > 1:
        return tuple(resolve_data(dataclasses.replace(cfg, data=s), cache_dir, log) for s in sources)
    return _resolve_one(cfg, cache_root(cache_dir), log)


def run_data(run: RunDir, data_cfg: DataConfig, cache_dir=None, log=print, record: bool = True):
    """The prepared folder(s) a training run reads: those its data.json records while they are still complete
    preparations, else `data_cfg.data` resolved (generated or prepared when needed) in `cache_dir`, or in the
    cache the run recorded; with `record`, the result is recorded for the next resume."""
    recorded = read_data_record(run.root)
    folders = [Path(p) for p in recorded.get("prepared", [])]
    if folders and all(is_prepared(p) for p in folders):
        return folders[0] if len(folders) == 1 else tuple(folders)
    if folders:
        log(f"The run's prepared data ({', '.join(map(str, folders))}) is gone or incomplete; finding it again.")
    cache_dir = cache_dir or recorded.get("cache_dir")
    prepared = resolve_data(data_cfg, cache_dir=cache_dir, log=log)
    if record:
        write_data_record(run.root, prepared, cache_dir)
    return prepared


def _resolve_one(cfg: DataConfig, cache: Path, log) -> Path:
    from va2att.data.synthetic import DEMOS

    if cfg.data in DEMOS:
        return _demo(cfg, cache, log)
    path = Path(cfg.data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--data {cfg.data!r}: no such folder. Give {', '.join(map(repr, DEMOS))}, a data "
                                f"set root ({root_hints()}) or a folder made by `python -m va2att.data.prepare`.")
    if is_prepared(path):
        return path
    layout = detect_layout(path)
    if layout is None:
        if (path / "report.json").exists():  # a prepared folder that is damaged: say what is wrong
            raise ValueError(f"--data {cfg.data!r}: {preparation_problem(path)}.")
        raise ValueError(f"--data {cfg.data!r} is neither a data set root ({root_hints()}) nor a prepared folder "
                         "(no complete report.json).")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    prepared = cache / f"{layout.name}-{digest}"
    if not is_prepared(prepared):
        log(f"Preparing the {layout.title} copy at {path} into {prepared} (first use only; resumable if interrupted).")
        _prepare_shared(path, prepared, log, workers=cfg.prepare_workers)
    return prepared


def _demo(cfg: DataConfig, cache: Path, log) -> Path:
    """Generate (first use) and prepare a named synthetic set in the cache."""
    from va2att.data.synthetic import DEMOS

    demo = DEMOS[cfg.data]
    base = cache / f"{cfg.data}-v{demo.version}-{cfg.demo_train}-{cfg.demo_val}-seed{cfg.demo_seed}"
    prepared = base / "prepared"
    if is_prepared(prepared):
        return prepared
    raw, done = base / "raw", base / "raw.done"
    bars = {"progress": sys.stderr.isatty()} if demo.bar else {}  # no bar in a log file
    if not done.is_file():
        log(f"Generating the synthetic {cfg.data} set ({cfg.demo_train} training and {cfg.demo_val} validation faces "
            f"in the {demo.layout} layout) into {raw} (first use only).")
        demo.generate(raw, train=cfg.demo_train, val=cfg.demo_val, seed=cfg.demo_seed, **bars)
        fileio.write_text(done, "complete\n")
    log(f"Preparing the {cfg.data} set into {prepared} (first use only).")
    _prepare_shared(raw, prepared, log, workers=cfg.prepare_workers, **bars)
    return prepared


def _prepare_shared(raw, prepared: Path, log, **kwargs) -> None:
    """Prepare into a cache folder that other processes (the workers of one run) may be preparing too:
    when one of them holds the folder's lock, wait for it to finish instead of failing."""
    told = False
    while True:
        try:
            prepare(raw, prepared, **kwargs)
            return
        except FolderInUseError as error:
            if not told:
                log(f"{error} Waiting for it to finish.")
                told = True
            time.sleep(1.0)
            if is_prepared(prepared):
                return
