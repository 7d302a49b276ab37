"""Train the 2Att-2Mt network (or an ablation of it) with the paper's recipe.

    python train.py --blocks 2                     # the built-in demo set
    python train.py --blocks 2 --data /data/AffectNet --out runs/2att-2mt
    python train.py --resume runs/2att-2mt         # continue an interrupted run

The same as `va2att-train` or `python -m va2att.cli.train`.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

from va2att.cli import (
    add_config_flags,
    add_verbose_flag,
    config_from_args,
    given_config_flags,
    program_name,
    quiet_tensorflow,
    split_dotted,
)


def parse(argv):
    parser = argparse.ArgumentParser(prog=program_name("va2att.cli.train"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="run folder (default runs/<date>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR and finish its epochs")
    parser.add_argument("--cache-dir", help="where the demo set and prepared data are cached "
                                            "(default $VA2ATT_CACHE or ~/.cache/va2att)")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch, no live progress line (the default when output is not a terminal)")
    add_verbose_flag(parser)
    add_config_flags(parser)
    rest, overrides = split_dotted(list(argv))
    args = parser.parse_args(rest)
    return parser, args, overrides


def check_data(cfg, cache_dir):
    """Fail on unusable `--data` before the run folder is created. Locally the data is resolved (the demo
    set generated, an AffectNet copy prepared: the run needs it next) and its prepared folder(s) returned,
    for the run folder to record; under multiworker, where no TensorFlow work may precede the strategy,
    only its existence is checked (None: the trainer resolves it)."""
    if cfg.train.strategy != "multiworker":
        from va2att.data.source import resolve_data

        return resolve_data(cfg.data, cache_dir=cache_dir)
    from va2att.data.synthetic import DEMOS

    if cfg.data.data not in DEMOS and not Path(cfg.data.data).expanduser().exists():
        raise FileNotFoundError(f"--data {cfg.data.data!r}: no such folder.")
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args, overrides = parse(argv)
    from va2att.run_dir import RunDir, completed_epochs, load_run_config
    from va2att.training import trainer
    from va2att.util.storage import storage_problem

    try:
        if args.resume:
            changed = [f for f in given_config_flags(args, overrides) if f != "--epochs"]
            if changed or args.out:
                parser.error(f"--resume continues a run with its saved config; drop {', '.join(changed or ['--out'])}")
            run_dir = args.resume
            load_run_config(run_dir)
            quiet_tensorflow(args.verbose)  # after the checks that need no TensorFlow
        else:
            run_dir = _start(args, argv, overrides)
        result = trainer.train(run_dir, cache_dir=args.cache_dir, epochs=args.epochs if args.resume else None,
                               verbose=2 if args.quiet else "auto")
    except (ValueError, FileNotFoundError, trainer.RunExistsError, trainer.FolderInUseError,
            trainer.TrainStorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        if args.resume and RunDir.is_run_dir(args.resume) and not completed_epochs(args.resume):
            print(f"{args.resume} completed no epoch: run the corrected train.py command with --out {args.resume} "
                  "to start it over, or delete the folder.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training started (fit reports its own interruption)
        print(f"\nInterrupted. {_interrupted_hint(args)}", file=sys.stderr)
        return 130
    except OSError as e:  # creating the run folder or its lock: a read-only or full disk
        problem = storage_problem(e)
        if problem is None:
            raise
        print(f"error: cannot write the run folder {args.resume or args.out}: {problem}.", file=sys.stderr)
        return 2
    if result.interrupted:
        return 130
    from va2att.training.console import plural

    print(f"Finished {plural(result.epochs_done, 'epoch')} in {result.run_dir}.")
    if result.best_epoch:
        print(f"Best mean validation CCC {result.best_mean_ccc:.4f} at epoch {result.best_epoch}; "
              f"SavedModel: {result.export_dir}")
    from va2att.run_dir import run_history
    from va2att.training.trend import train_on_advice

    advice = train_on_advice(run_history(result.run_dir), result.run_dir, result.epochs_done)
    if advice:
        print(advice)
    from va2att.serving.provenance import is_synthetic, read_provenance

    if is_synthetic(read_provenance(result.run_dir)):
        print("Note: this model learnt drawn faces (the synthetic demo set); its outputs on real photos mean "
              "nothing. For real faces, train on AffectNet (README: 'Real faces').")
    print(next_steps(result.run_dir))
    return 0


def _interrupted_hint(args) -> str:
    """What to run after Ctrl-C before the first epoch (while the data was generated or prepared)."""
    from va2att.run_dir import RunDir
    from va2att.training.trainer import resume_command

    run = args.resume or args.out
    if run and RunDir.is_run_dir(run):
        return f"Continue with: {resume_command(run, args.cache_dir)}"
    return "Data prepared so far is kept; the same command resumes from it."


def _start(args, argv, overrides) -> str:
    """A new run: its config from the flags, its data checked (and prepared) before the folder exists, then
    the folder created by the chief (the other workers of a multi-worker run join it)."""
    from va2att.training import distribute, trainer

    cfg = config_from_args(args, overrides)
    if cfg.train.strategy == "multiworker":
        distribute.require_cluster()
        if not args.out:
            raise ValueError("--strategy multiworker needs --out: a run folder shared by all workers.")
    quiet_tensorflow(args.verbose)
    prepared = check_data(cfg, args.cache_dir)  # a typo in --data fails here, before any run folder exists
    run_dir = args.out or f"runs/{datetime.datetime.now():%Y%m%d-%H%M%S}"
    if distribute.is_chief():
        trainer.start_run(cfg, run_dir, ["train.py", *argv], prepared=prepared, cache_dir=args.cache_dir)
        print(f"Run folder: {run_dir}")
    else:
        trainer.join_run(cfg, run_dir)
    return run_dir


def next_steps(run_dir) -> str:
    """The commands that use a finished run: evaluate it, predict with it, watch its curves."""
    run = shlex.quote(str(run_dir))
    return "\n".join([
        "Next:",
        f"  evaluate:    python evaluate.py --model {run}",
        f"  predict:     python -m va2att.predict photo.jpg --model {run}",
        f"  curves:      tensorboard --logdir {shlex.quote(str(Path(run_dir) / 'logs'))}",
    ])


if __name__ == "__main__":
    sys.exit(main())
