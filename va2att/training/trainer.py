"""The training loop: data, model, the paper's optimiser and schedule, checkpoints, export.

`train()` runs a fresh run or resumes one. Resuming rebuilds the model from the
run's `config.json`, restores weights and optimizer state from the last complete
epoch checkpoint, restores the schedule and best-model state, and finishes the
planned epochs. Ctrl-C or a kill loses at most the epoch in progress. The training order
and augmentation are a function of (seed, epoch), so a deterministic run (`data.deterministic`)
resumed after epoch e ends bit-identical to an uninterrupted one. A damaged last checkpoint is
skipped for the latest complete one (with a warning); temporaries of a killed writer are removed.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import shutil
import sys
from pathlib import Path

from va2att import __version__
from va2att.config import RunConfig, from_dict, to_dict
from va2att.run_dir import RunDir
from va2att.util import fileio
from va2att.util.locking import FolderInUseError, folder_lock  # noqa: F401 (FolderInUseError: what train() raises)


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_epoch: int | None
    best_mean_ccc: float | None
    last_logs: dict
    export_dir: Path | None
    interrupted: bool = False


class RunExistsError(RuntimeError):
    pass


def _optimizer(cfg):
    import keras

    t = cfg.train
    if t.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=t.lr)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=t.lr)
    return keras.optimizers.SGD(learning_rate=t.lr, momentum=0.9)


def training_labels(prepared, cfg: RunConfig, seed: int):
    """Expression, valence and arousal of the whole training split (for the GCN adjacency)."""
    import numpy as np

    from va2att.data.pipeline import make_dataset

    holdout = "exclude" if cfg.data.selection == "holdout" else None
    ds = make_dataset(prepared, "training", dataclasses.replace(cfg.data, cache=False), training=False,
                      num_classes=cfg.model.num_classes, seed=seed, holdout=holdout)
    expr, val, aro = [], [], []
    for _, labels, *weights in ds:
        keep = slice(None)
        if weights:  # label masks: the correlations need faces with all three labels
            keep = (weights[0]["expression"].numpy() > 0) & (weights[0]["valence"].numpy() > 0)
        expr.append(labels["expression"].numpy().reshape(-1)[keep])
        val.append(labels["valence"].numpy().reshape(-1)[keep])
        aro.append(labels["arousal"].numpy().reshape(-1)[keep])
    return np.concatenate(expr), np.concatenate(val), np.concatenate(aro)


def only_model_targets(dataset, cfg: RunConfig):
    """Keep the labels (and sample weights) of the outputs the head has (the mt and single-task heads
    predict no expression)."""
    names = cfg.model.outputs
    if set(names) == {"valence", "arousal", "expression"}:
        return dataset
    return dataset.map(lambda image, *dicts: (image, *({k: d[k] for k in names} for d in dicts)))


def selection_datasets(prepared, cfg: RunConfig, data_cfg, log=print, epoch=None):
    """The training dataset and the one that selects the best epoch and drives the schedule.

    `data.selection="validation"` (the paper's protocol: AffectNet has no public test set) selects on
    the validation split that is then reported; `"holdout"` holds out `data.holdout_share` of the
    training split (a fixed, keyed hash of the file path) and selects on it, so the validation split
    is seen only by evaluate.py."""
    from va2att.data.pipeline import count_examples, count_holdout, make_dataset

    k, seed = cfg.model.num_classes, cfg.train.seed
    none = data_cfg.none_faces
    if none and not count_examples(prepared, "training", k, none_faces=True) > count_examples(prepared, "training", k):
        log(f"data.none_faces: {prepared} holds no code-8 ('None') faces; re-prepare it to use them "
            "(python -m va2att.data.prepare ROOT OUT --overwrite).")
    if data_cfg.selection == "holdout":
        kept, held = count_holdout(prepared, "training", data_cfg.holdout_share, data_cfg.holdout_seed, k)
        log(f"Model selection and the schedule use {held} faces held out of the training split "
            f"({data_cfg.holdout_share:.1%}, seed {data_cfg.holdout_seed}); training uses the other {kept}. "
            "The validation split is left for evaluate.py.")
        train = make_dataset(prepared, "training", data_cfg, training=True, num_classes=k, seed=seed,
                             none_faces=none, holdout="exclude", epoch=epoch)
        select = make_dataset(prepared, "training", data_cfg, training=False, num_classes=k, seed=seed,
                              holdout="only")
    else:
        train = make_dataset(prepared, "training", data_cfg, training=True, num_classes=k, seed=seed, none_faces=none,
                             epoch=epoch)
        select = make_dataset(prepared, "validation", data_cfg, training=False, num_classes=k, seed=seed)
    return only_model_targets(train, cfg), only_model_targets(select, cfg)


def build_compiled_model(cfg: RunConfig, adjacency=None):
    from va2att.model.losses import compile_args
    from va2att.model.metrics import metric_args
    from va2att.model.network import build_model

    model = build_model(cfg.model, adjacency=adjacency)
    model.compile(optimizer=_optimizer(cfg), **metric_args(cfg.model),
                  jit_compile=cfg.train.jit_compile, steps_per_execution=cfg.train.steps_per_execution,
                  **compile_args(cfg.model))
    return model


def _committed_state(run_dir) -> dict:
    """state.json of the run in `run_dir`; {} when there is none or it cannot be read."""
    run = RunDir(run_dir)
    if not run.state.is_file():
        return {}
    try:
        state = fileio.read_json(run.state)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def completed_epochs(run_dir) -> int:
    """Epochs the run in `run_dir` has committed (0 for a run that never finished one, or no run)."""
    try:
        return int(_committed_state(run_dir).get("epoch") or 0)
    except (TypeError, ValueError):
        return 0


def run_history(run_dir) -> list[dict]:
    """The committed epochs' rows of the run in `run_dir` (state.json's "history"; empty when none)."""
    history = _committed_state(run_dir).get("history")
    return [row for row in history if isinstance(row, dict)] if isinstance(history, list) else []


def start_run(cfg: RunConfig, run_dir, argv, log=print) -> RunDir:
    """Create the run folder and write config.json.

    A folder whose run completed at least one epoch is refused (`RunExistsError`); one whose run never
    completed an epoch (a failed or interrupted start) is started over with the new config."""
    run = RunDir(run_dir)
    if RunDir.is_run_dir(run.root):
        done = completed_epochs(run.root)
        if done:
            raise RunExistsError(f"{run.root} already holds a run ({done} epoch{'s' if done != 1 else ''} done). "
                                 f"Continue it with `python train.py --resume {run.root}`, choose another --out, "
                                 "or delete the folder to start it again.")
    with folder_lock(run.root, "training run"):
        done = completed_epochs(run.root)
        if done:  # another process started it meanwhile
            raise RunExistsError(f"{run.root} already holds a run; choose another --out.")
        if RunDir.is_run_dir(run.root):
            log(f"Starting {run.root} over: its earlier start completed no epoch.")
            for stale in (run.logs, run.checkpoints):
                if stale.is_dir():
                    shutil.rmtree(stale)
            for stale in (run.history, run.adjacency, run.best):
                stale.unlink(missing_ok=True)
        fileio.write_json(run.config, {
            "config": to_dict(cfg),
            "argv": list(argv if argv is not None else sys.argv),
            "va2att_version": __version__,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version(),
        })
    return run


def join_run(cfg: RunConfig, run_dir, timeout: float = 600.0) -> RunDir:
    """A non-chief worker waits for the chief to create the run folder and checks it holds the same config."""
    import time

    run = RunDir(run_dir)
    deadline = time.monotonic() + timeout
    while not run.config.is_file():
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"the chief worker did not create {run.config} within {timeout:.0f} s; the run "
                                    "folder must be on storage shared by all workers.")
        time.sleep(0.5)
    if load_run_config(run.root) != cfg:
        raise ValueError(f"{run.config} holds a different config from this worker's command line.")
    return run


def load_run_config(run_dir) -> RunConfig:
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise FileNotFoundError(f"{run.root} is not a run folder (no config.json).")
    try:
        return from_dict(fileio.read_json(run.config)["config"])
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(f"{run.config} is damaged and holds no usable run config ({type(error).__name__}: "
                         f"{error}); restore it or start a new run.") from None


def load_checkpoint(model, run: RunDir, epoch: int, log=print) -> int:
    """Load the checkpoint of `epoch`, or of the latest earlier epoch whose file is complete; return its epoch.

    A damaged checkpoint (truncated, not HDF5) is reported and skipped; ValueError when none loads.
    """
    for candidate in range(epoch, 0, -1):
        path = run.checkpoint(candidate)
        if not path.is_file():
            continue
        try:
            model.load_weights(path)
        except Exception as error:  # noqa: BLE001 - h5py and Keras raise many kinds for a damaged file
            log(f"Warning: checkpoint {path} cannot be read ({type(error).__name__}); trying the one before.")
            continue
        if candidate != epoch:
            log(f"Warning: resuming from epoch {candidate}, the latest complete checkpoint; epochs after it are redone.")
        return candidate
    raise ValueError(f"no readable checkpoint in {run.checkpoints} (state.json names epoch {epoch}); "
                     "start a new run.")


def train(run_dir, *, cache_dir=None, epochs: int | None = None, verbose="auto", log=print) -> TrainResult:
    """Train (or continue) the run in `run_dir`, whose config.json was written by `start_run`.

    `verbose`: "auto" (or 1) prints one compact line per epoch and, on a terminal, a live progress line
    (`va2att.training.console.EpochConsole`); 2 prints only the epoch lines; 0 prints no epoch lines.

    The chief holds the run folder's lock (`va2att.util.locking`) throughout: a second process training
    into the same folder (a `--resume` of a run still going) is refused with FolderInUseError.
    """
    from va2att.training import distribute

    if not distribute.is_chief():  # the other workers of a multi-worker run write nothing
        return _train(run_dir, cache_dir=cache_dir, epochs=epochs, verbose=verbose, log=log)
    with folder_lock(run_dir, "training run"):
        run = RunDir(run_dir)
        for folder in (run.root, run.checkpoints):  # what a killed writer left half-written
            if folder.is_dir():
                fileio.remove_temporaries(folder)
        return _train(run_dir, cache_dir=cache_dir, epochs=epochs, verbose=verbose, log=log)


def _train(run_dir, *, cache_dir=None, epochs: int | None = None, verbose="auto", log=print) -> TrainResult:
    import keras
    import numpy as np

    from va2att.data.source import resolve_data
    from va2att.training import distribute
    from va2att.training.callbacks import LearningRateControl, RunCheckpoint

    run = RunDir(run_dir)
    cfg = load_run_config(run.root)
    total_epochs = epochs or cfg.train.epochs
    state = fileio.read_json(run.state) if run.state.is_file() else None
    chief = distribute.is_chief()
    multiworker = cfg.train.strategy == "multiworker"
    console = None
    if verbose not in (0, False) and not multiworker:  # the multi-worker loop prints its own epoch lines
        from va2att.training.console import EpochConsole

        console = EpochConsole(total_epochs, live=None if verbose in ("auto", 1, True) else False)
        log = console.wrap(log)

    strategy = distribute.make_strategy(cfg.train.strategy)  # first: multi-worker set-up precedes any TF op
    keras.utils.set_random_seed(cfg.train.seed)
    if cfg.train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")

    data_cfg = cfg.data
    if multiworker:
        # Every worker must see the same global batches: it keeps its own share of each (DATA sharding).
        data_cfg = dataclasses.replace(data_cfg, deterministic=True)
    prepared = resolve_data(data_cfg, cache_dir=cache_dir, log=log)
    data_epoch = None
    if not multiworker and strategy.num_replicas_in_sync == 1:
        import tensorflow as tf

        # The epoch the pipeline seeds its order and augmentation with, set before each epoch (DataEpoch).
        data_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    train_ds, val_ds = selection_datasets(prepared, cfg, data_cfg, log, epoch=data_epoch)

    adjacency = None
    if cfg.model.head == "gcn":
        if run.adjacency.is_file():
            adjacency = np.load(run.adjacency)
        else:
            from va2att.model.gcn import build_adjacency

            expr, val, aro = training_labels(prepared, cfg, cfg.train.seed)
            adjacency = build_adjacency(expr, val, aro, cfg.model.num_classes, tau=cfg.model.gcn_tau,
                                        p=cfg.model.gcn_p)
            if chief:
                with fileio.atomic_path(run.adjacency) as tmp:
                    np.save(tmp, adjacency)

    with strategy.scope():
        model = build_compiled_model(cfg, adjacency)
    if strategy.num_replicas_in_sync > 1:
        distribute.synchronize_batch_norm(model, True)
    initial_epoch = 0
    if state and state.get("checkpoint"):
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
            initial_epoch = load_checkpoint(model, run, int(state["epoch"]), log)
            model.optimizer.learning_rate.assign(state["lr"])
        if initial_epoch != int(state["epoch"]):
            state = dict(state, epoch=initial_epoch)
        log(f"Resuming {run.root} after epoch {initial_epoch} of {total_epochs} (learning rate {state['lr']:.3g}).")

    lr_control = LearningRateControl(cfg.train, state=(state or {}).get("lr_control"), log=log)
    checkpoint = RunCheckpoint(run, lr_control, state=state, chief=chief, log=log)
    callbacks = [lr_control, *([console] if console else []), checkpoint]  # the epoch line before "best so far"
    if data_epoch is not None:
        from va2att.training.callbacks import DataEpoch

        callbacks.insert(0, DataEpoch(data_epoch))
    precise_bn = _precise_batch_norm(cfg, train_ds, single=data_epoch is not None, log=log)
    if precise_bn is not None:
        callbacks.insert(0, precise_bn)
    if chief:
        from va2att.training import tensorboard_figures as board

        callbacks.append(board.RunTensorBoard(log_dir=str(run.logs)))
        if not multiworker:  # validation faces and circumplex per epoch (a fixed sample, taken once)
            callbacks.append(board.ValidationFigures(val_ds, run.logs / board.FIGURES_DIR))
    last_logs: dict = {}
    if initial_epoch < total_epochs:
        try:
            if multiworker:
                from va2att.training import multiworker as mw

                last_logs = mw.fit(model, strategy, train_ds, val_ds, epochs=total_epochs,
                                   initial_epoch=initial_epoch, callbacks=callbacks, log=log)
                log(f"Worker {distribute.task()[1]}: weights digest {mw.weights_digest(model)}")
            else:
                history = model.fit(train_ds, validation_data=val_ds, epochs=total_epochs,
                                    initial_epoch=initial_epoch, callbacks=callbacks, verbose=0, shuffle=False)
                last_logs = {k: float(v[-1]) for k, v in history.history.items() if v}
        except KeyboardInterrupt:
            if chief:  # the epoch in progress is dropped: a resumed run redoes it exactly
                done = checkpoint.state["epoch"]
                log(f"\nInterrupted. The last complete epoch is {done} (its checkpoint is kept). "
                    f"Continue with: python train.py --resume {run.root}")
            return TrainResult(run.root, checkpoint.state["epoch"], checkpoint.state.get("best_epoch"),
                               checkpoint.state.get("best_mean_ccc"), {}, None, interrupted=True)
    elif checkpoint.state["history"]:
        last_logs = {k: v for k, v in checkpoint.state["history"][-1].items() if k != "epoch"}

    export_dir = None
    if chief:
        from va2att.serving.provenance import (
            PROVENANCE_FILE,
            describe_data,
            make_record,
        )

        provenance = make_record(describe_data(cfg.data.data, prepared), checkpoint.state)
        fileio.write_json(run.root / PROVENANCE_FILE, provenance)
        export_dir = _export_best(run, checkpoint.state, log, provenance, resumed_after=initial_epoch)
    if multiworker:
        from va2att.training.multiworker import barrier

        barrier(strategy)  # no worker leaves before the chief has exported
    return TrainResult(run.root, checkpoint.state["epoch"], checkpoint.state.get("best_epoch"),
                       checkpoint.state.get("best_mean_ccc"), last_logs, export_dir)


def _precise_batch_norm(cfg: RunConfig, train_ds, single: bool, log):
    """The callback that recomputes batch-norm statistics before each validation, or None.

    `single`: one process, one replica. With several replicas the statistics would have to be
    gathered across them; the moving averages are kept there, and the log says so."""
    from va2att.training.precise_batch_norm import PreciseBatchNorm, batches_for

    batches = batches_for(cfg.train.precise_bn_samples, cfg.data.batch_size)
    if not batches:
        return None
    if not single:
        log("Batch-norm statistics: moving averages (train.precise_bn_samples applies to one replica only).")
        return None
    return PreciseBatchNorm(train_ds, batches)


def _export_best(run: RunDir, state: dict, log, provenance: dict | None = None, resumed_after: int = 0) -> Path:
    """Export the best model once per best epoch. A resumed run whose best epoch is exported keeps its
    export; a run trained on to a new best (`train.py --resume RUN --epochs N`) gets a new version,
    the one TF Serving and `load_inference_model(RUN)` take (the newest). A state written before
    `export_epoch` was recorded counts its export as current unless the best epoch came after
    `resumed_after`, the epoch this call resumed from."""
    from va2att.serving.export import export_saved_model
    from va2att.serving.loading import load_keras_model

    best_epoch = state.get("best_epoch")
    exported_epoch = state.get("export_epoch")
    if exported_epoch is None and best_epoch is not None and best_epoch <= resumed_after:
        exported_epoch = best_epoch
    if state.get("export") and (run.root / state["export"]).is_dir() and exported_epoch == best_epoch:
        return run.root / state["export"]
    best = load_keras_model(run.best)
    export_dir = export_saved_model(best, run.export_root, provenance=provenance)
    state = dict(state, export=str(Path(export_dir).relative_to(run.root)), export_epoch=best_epoch)
    fileio.write_json(run.state, state)
    log(f"Exported the best model (epoch {best_epoch}) for TF Serving to {export_dir}")
    return Path(export_dir)
