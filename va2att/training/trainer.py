"""The training loop: data, model, the paper's optimiser and schedule, checkpoints, export.

`train()` runs a fresh run or resumes one, as named steps (`_train`): read the run folder, set up
TensorFlow (`_tensorflow`), find the data where the run prepared it (`va2att.data.source.run_data`), build the
datasets, the label graph (`_label_graph`) and the model, restore the last complete epoch
(`_restore`), assemble the callbacks in their one order (`_callbacks`), fit (`_fit`), then
record the provenance and export the best model (`_finish`). Resuming rebuilds the model from the
run's `config.json`, restores weights and optimizer state from the last complete epoch
checkpoint, restores the schedule and best-model state, and finishes the planned epochs; it
reads its data from where the run prepared it (`RUN_DIR/data.json`), whatever cache the
resuming process would use. Ctrl-C or a kill loses at most the epoch in progress. The training
order and augmentation are a function of (seed, epoch), so a deterministic run
(`data.deterministic`) resumed after epoch e ends bit-identical to an uninterrupted one. A
damaged last checkpoint is skipped for the latest complete one (with a warning); temporaries of a
killed writer are removed. A full disk or a read-only run folder stops the run with
`TrainStorageError`, whose one line says what to fix; the last complete epoch is kept.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import shutil
import sys
from pathlib import Path

from va2att import __version__
from va2att.config import RunConfig, to_dict
from va2att.data.source import run_data
from va2att.run_dir import (
    RunDir,
    completed_epochs,
    load_run_config,
    write_data_record,
)
from va2att.util import fileio
from va2att.util.locking import FolderInUseError, folder_lock  # noqa: F401 (FolderInUseError: what train() raises)
from va2att.util.storage import storage_problem, unwritable


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


class TrainStorageError(RuntimeError):
    """The run folder cannot be written (full disk, read-only, permissions); the message says what to fix."""


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
    for _, labels, weights in ds:  # the correlations need faces with all three labels
        keep = (weights["expression"].numpy() > 0) & (weights["valence"].numpy() > 0)
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


def start_run(cfg: RunConfig, run_dir, argv, log=print, *, prepared=None, cache_dir=None) -> RunDir:
    """Create the run folder and write config.json (and, given `prepared`, the folder(s) the data was
    prepared in, found in `cache_dir`: data.json, which `train` then reads instead of resolving the data again).

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
            for stale in (run.history, run.adjacency, run.best, run.data):
                stale.unlink(missing_ok=True)
        fileio.write_json(run.config, {
            "config": to_dict(cfg),
            "argv": list(argv if argv is not None else sys.argv),
            "va2att_version": __version__,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version(),
        })
        if prepared is not None:
            write_data_record(run.root, prepared, cache_dir)
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
    `cache_dir`: where to find or prepare the data when the run folder records no usable prepared folder.

    The chief holds the run folder's lock (`va2att.util.locking`) throughout: a second process training
    into the same folder (a `--resume` of a run still going) is refused with FolderInUseError. A storage
    failure (full disk, read-only folder) raises TrainStorageError with one line saying what to fix.
    """
    from va2att.training import distribute

    try:
        if not distribute.is_chief():  # the other workers of a multi-worker run write nothing
            return _train(run_dir, cache_dir=cache_dir, epochs=epochs, verbose=verbose, log=log)
        with folder_lock(run_dir, "training run"):
            run = RunDir(run_dir)
            for folder in (run.root, run.checkpoints):  # what a killed writer left half-written
                if folder.is_dir():
                    fileio.remove_temporaries(folder)
            problem = unwritable(run.export_root, folder=True)
            if problem:  # found now, not after hours of training
                raise TrainStorageError(f"cannot write the export of {run_dir}: {problem}.")
            return _train(run_dir, cache_dir=cache_dir, epochs=epochs, verbose=verbose, log=log)
    except TrainStorageError:
        raise
    except Exception as error:
        problem = storage_problem(error)
        if problem is None:
            raise
        done = completed_epochs(run_dir)
        raise TrainStorageError(f"cannot write the run folder {run_dir}: {problem}. The last complete epoch "
                                f"({done}) is kept; continue with: {resume_command(run_dir, cache_dir)}") from None


def resume_command(run_dir, cache_dir=None) -> str:
    """The command that continues the run in `run_dir`."""
    import shlex

    cache = f" --cache-dir {shlex.quote(str(cache_dir))}" if cache_dir else ""
    return f"python train.py --resume {shlex.quote(str(run_dir))}{cache}"


@dataclasses.dataclass
class _Session:
    """What one call of `train` works with."""

    run: RunDir
    cfg: RunConfig
    total_epochs: int
    state: dict | None  # state.json of the last committed epoch (None: a fresh run)
    chief: bool
    multiworker: bool
    log: object
    console: object = None  # EpochConsole, or None
    prepared: object = None  # the prepared folder(s) the run reads


def _train(run_dir, *, cache_dir=None, epochs: int | None = None, verbose="auto", log=print) -> TrainResult:
    from va2att.training import distribute

    run = RunDir(run_dir)
    cfg = load_run_config(run.root)
    session = _Session(run, cfg, epochs or cfg.train.epochs, fileio.read_json(run.state) if run.state.is_file()
                       else None, distribute.is_chief(), cfg.train.strategy == "multiworker", log)
    _console(session, verbose)
    strategy = _tensorflow(cfg)
    data_cfg = cfg.data
    if session.multiworker:
        # Every worker must see the same global batches: it keeps its own share of each (DATA sharding).
        data_cfg = dataclasses.replace(data_cfg, deterministic=True)
    prepared = session.prepared = run_data(run, data_cfg, cache_dir, session.log, record=session.chief)
    data_epoch = None
    if not session.multiworker and strategy.num_replicas_in_sync == 1:
        import tensorflow as tf

        # The epoch the pipeline seeds its order and augmentation with, set before each epoch (DataEpoch).
        data_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    train_ds, val_ds = selection_datasets(prepared, cfg, data_cfg, session.log, epoch=data_epoch)
    adjacency = _label_graph(session, prepared)
    with strategy.scope():
        model = build_compiled_model(cfg, adjacency)
    if strategy.num_replicas_in_sync > 1:
        distribute.synchronize_batch_norm(model, True)
    initial_epoch = _restore(session, model, strategy)
    checkpoint, callbacks = _callbacks(session, train_ds, val_ds, data_epoch)
    last_logs = _fit(session, model, strategy, train_ds, val_ds, initial_epoch, checkpoint, callbacks, cache_dir)
    if last_logs is None:  # interrupted
        state = checkpoint.state
        return TrainResult(run.root, state["epoch"], state.get("best_epoch"), state.get("best_mean_ccc"), {}, None,
                           interrupted=True)
    try:
        export_dir = _finish(session, strategy, prepared, checkpoint.state, initial_epoch)
    except KeyboardInterrupt:
        session.log(f"\nInterrupted during the export. Every epoch is complete; export the best model with: "
                    f"{resume_command(run.root, cache_dir)}")
        state = checkpoint.state
        return TrainResult(run.root, state["epoch"], state.get("best_epoch"), state.get("best_mean_ccc"), last_logs,
                           None, interrupted=True)
    state = checkpoint.state
    return TrainResult(run.root, state["epoch"], state.get("best_epoch"), state.get("best_mean_ccc"), last_logs,
                       export_dir)


def _console(session: _Session, verbose) -> None:
    """The epoch lines (and the live line on a terminal); the multi-worker loop prints its own."""
    if verbose in (0, False) or session.multiworker:
        return
    from va2att.training.console import EpochConsole

    session.console = EpochConsole(session.total_epochs, live=None if verbose in ("auto", 1, True) else False)
    session.log = session.console.wrap(session.log)


def _tensorflow(cfg: RunConfig):
    """The distribution strategy (created first: multi-worker set-up precedes any TF op), the seeds and
    the precision policy."""
    import keras

    from va2att.training import distribute

    strategy = distribute.make_strategy(cfg.train.strategy)
    keras.utils.set_random_seed(cfg.train.seed)
    if cfg.train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    return strategy


def _label_graph(session: _Session, prepared):
    """The Emotion-GCN adjacency of a head built on a label graph (None otherwise): the run's saved one, else
    built from the training labels (and saved by the chief)."""
    import numpy as np

    from va2att.model.heads import HEADS

    cfg, run = session.cfg, session.run
    if not HEADS[cfg.model.head].label_graph:
        return None
    if run.adjacency.is_file():
        return np.load(run.adjacency)
    from va2att.model.gcn import build_adjacency

    expr, val, aro = training_labels(prepared, cfg, cfg.train.seed)
    adjacency = build_adjacency(expr, val, aro, cfg.model.num_classes, tau=cfg.model.gcn_tau, p=cfg.model.gcn_p)
    if session.chief:
        with fileio.atomic_path(run.adjacency) as tmp:
            np.save(tmp, adjacency)
    return adjacency


def _restore(session: _Session, model, strategy) -> int:
    """Load the last complete epoch's weights, optimizer state and rate into `model`; the epoch to start from."""
    state = session.state
    if not (state and state.get("checkpoint")):
        return 0
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
        initial_epoch = load_checkpoint(model, session.run, int(state["epoch"]), session.log)
        model.optimizer.learning_rate.assign(state["lr"])
    if initial_epoch != int(state["epoch"]):
        session.state = dict(state, epoch=initial_epoch)
    session.log(f"Resuming {session.run.root} after epoch {initial_epoch} of {session.total_epochs} "
                f"(learning rate {state['lr']:.3g}).")
    return initial_epoch


def _callbacks(session: _Session, train_ds, val_ds, data_epoch):
    """The run's checkpoint callback and every callback, in the one order Keras must call them (each hook
    runs in list order):

    1. PreciseBatchNorm: recomputes batch-norm statistics before validation (`on_test_begin`);
    2. DataEpoch: sets the epoch the pipeline seeds its order and augmentation with, before the epoch;
    3. LearningRateControl: adds `lr` and `schedule_signal` to the epoch's logs and sets the next rate;
    4. EpochConsole: prints the epoch line (with its `lr`) ...
    5. RunCheckpoint: ... before it commits the epoch (history with `lr`, state.json) and says "best so far";
    6. RunTensorBoard and 7. ValidationFigures: the chief's logs, last.
    """
    from va2att.training.callbacks import DataEpoch, LearningRateControl, RunCheckpoint

    cfg, chief = session.cfg, session.chief
    lr_control = LearningRateControl(cfg.train, state=(session.state or {}).get("lr_control"), log=session.log)
    checkpoint = RunCheckpoint(session.run, lr_control, state=session.state, chief=chief, log=session.log)
    board = figures = None
    if chief:
        from va2att.training import tensorboard_figures

        board = tensorboard_figures.RunTensorBoard(log_dir=str(session.run.logs))
        if not session.multiworker:  # validation faces and circumplex per epoch (a fixed sample, taken once)
            figures = tensorboard_figures.ValidationFigures(val_ds, session.run.logs / tensorboard_figures.FIGURES_DIR)
    ordered = [
        _precise_batch_norm(cfg, train_ds, single=data_epoch is not None, log=session.log),
        None if data_epoch is None else DataEpoch(data_epoch),
        lr_control,
        session.console,
        checkpoint,
        board,
        figures,
    ]
    return checkpoint, [callback for callback in ordered if callback is not None]


def _fit(session: _Session, model, strategy, train_ds, val_ds, initial_epoch: int, checkpoint, callbacks,
         cache_dir) -> dict | None:
    """Train the remaining epochs; the last epoch's logs, or None when interrupted (Ctrl-C)."""
    from va2att.training import distribute

    if initial_epoch >= session.total_epochs:
        history = checkpoint.state["history"]
        return {k: v for k, v in history[-1].items() if k != "epoch"} if history else {}
    import tensorflow as tf

    try:
        if session.multiworker:
            from va2att.training import multiworker

            logs = multiworker.fit(model, strategy, train_ds, val_ds, epochs=session.total_epochs,
                                   initial_epoch=initial_epoch, callbacks=callbacks, log=session.log)
            session.log(f"Worker {distribute.task()[1]}: weights digest {multiworker.weights_digest(model)}")
            return logs
        from va2att.training.callbacks import StopBetweenSteps
        from va2att.util.interrupt import deferred_interrupt

        with deferred_interrupt() as interrupt:  # Ctrl-C between two steps (StopBetweenSteps)
            history = model.fit(train_ds, validation_data=val_ds, epochs=session.total_epochs,
                                initial_epoch=initial_epoch, callbacks=[*callbacks, StopBetweenSteps(interrupt)],
                                verbose=0, shuffle=False)
            interrupt.check()  # pressed after the last step
        return {k: float(v[-1]) for k, v in history.history.items() if v}
    except tf.errors.DataLossError as error:  # a truncated or corrupted shard: name it
        from va2att.data.pipeline import reading_error

        raise reading_error(session.prepared, error) from None
    except KeyboardInterrupt:
        if session.chief:  # the epoch in progress is dropped: a resumed run redoes it exactly
            session.log(f"\nInterrupted. The last complete epoch is {checkpoint.state['epoch']} (its checkpoint is "
                        f"kept). Continue with: {resume_command(session.run.root, cache_dir)}")
        return None


def _finish(session: _Session, strategy, prepared, state: dict, initial_epoch: int) -> Path | None:
    """The chief records what trained the model and exports the best one; every worker waits for it."""
    export_dir = None
    if session.chief:
        from va2att.serving.provenance import (
            PROVENANCE_FILE,
            describe_data,
            make_record,
        )

        provenance = make_record(describe_data(session.cfg.data.data, prepared), state)
        fileio.write_json(session.run.root / PROVENANCE_FILE, provenance)
        from va2att.serving.export import ExportError

        try:
            export_dir = _export_best(session.run, state, session.log, provenance, resumed_after=initial_epoch)
        except ExportError as error:  # one line already; say that training itself is complete
            raise TrainStorageError(f"{error} Every epoch is complete; export the best model with: "
                                    f"{resume_command(session.run.root)}") from None
    if session.multiworker:
        from va2att.training.multiworker import barrier

        barrier(strategy)  # no worker leaves before the chief has exported
    return export_dir


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
    from va2att.serving.export import export_saved_model, find_version
    from va2att.serving.loading import load_keras_model

    best_epoch = state.get("best_epoch")
    exported_epoch = state.get("export_epoch")
    if exported_epoch is None and best_epoch is not None and best_epoch <= resumed_after:
        exported_epoch = best_epoch
    if state.get("export") and (run.root / state["export"]).is_dir() and exported_epoch == best_epoch:
        return run.root / state["export"]
    export_dir = find_version(run.export_root, provenance) if provenance else None
    if export_dir is None:  # not written yet (a run killed after the rename finds its version above)
        export_dir = export_saved_model(load_keras_model(run.best), run.export_root, provenance=provenance)
    state = dict(state, export=str(Path(export_dir).relative_to(run.root)), export_epoch=best_epoch)
    fileio.write_json(run.state, state)
    log(f"Exported the best model (epoch {best_epoch}) for TF Serving to {export_dir}")
    return Path(export_dir)
