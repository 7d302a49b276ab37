"""The command-line tools, one module each (`train`, `evaluate`, `predict`, `prepare`, `synthetic`,
`flops`, `experiments`), and the helpers they share:
plain flags for what users type every day, mapped onto the typed config, plus one generic override
form (`--set section.field=value`, or `--section.field=value`) for everything else.

`train.py` and `evaluate.py` at the repository root, the `va2att-*` console scripts and the
documented `python -m va2att.predict`, `va2att.data.prepare`, `va2att.data.synthetic` and
`va2att.experiments` only call `main()` of the modules here. This package sits on top: nothing
else in va2att imports it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from va2att.config import (
    HEAD_OUTPUTS,
    LOSSES,
    SCHEDULES,
    STRATEGIES,
    RunConfig,
    apply_overrides,
)

# flag dest -> config key
PLAIN_FLAGS = {
    "data": "data.data",
    "blocks": "model.blocks",
    "head": "model.head",
    "loss": "model.loss",
    "width": "model.width",
    "classes": "model.num_classes",
    "epochs": "train.epochs",
    "batch_size": "data.batch_size",
    "lr": "train.lr",
    "seed": "train.seed",
    "schedule": "train.schedule",
    "strategy": "train.strategy",
}
_DOTTED = re.compile(r"^--(model|data|train)\.([a-z_]+)(=.*)?$")


def quiet_tensorflow(verbose: bool = False) -> None:
    """Load TensorFlow without its start-up logging unless asked for (`va2att.util.quiet`)."""
    from va2att.util.quiet import quiet_tensorflow as quiet

    quiet(verbose)


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own start-up and log lines (also: VA2ATT_VERBOSE=1)")


def program_name(module: str) -> str:
    """The program a usage line should name: the script or console command the user ran
    (`train.py`, `va2att-train`), `python -m PACKAGE.MODULE` for a module of this package run with -m
    (`python -m va2att.predict`, which hands over to `va2att.cli.predict`), or `python -m module`
    when there is no script (`-c`, an embedded interpreter)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if not argv0 or argv0 == "-c":
        return f"python -m {module}"
    ran = _package_module(argv0)
    return f"python -m {ran}" if ran else Path(argv0).name


def _package_module(path: str) -> str | None:
    """The dotted name of the va2att module at `path` (a package's `__main__.py` names the package), or None."""
    package = Path(__file__).resolve().parents[1]
    try:
        relative = Path(path).resolve().relative_to(package.parent)
    except (OSError, ValueError):
        return None
    if relative.suffix != ".py" or relative.parts[0] != package.name:
        return None
    parts = relative.with_suffix("").parts
    if parts[-1] == "__main__":
        parts = parts[:-1]
    return ".".join(parts)


def split_dotted(argv: list[str]) -> tuple[list[str], list[str]]:
    """Pull `--model.width=16` / `--model.width 16` out of argv as overrides."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        m = _DOTTED.match(argv[i])
        if m:
            if m.group(3):
                overrides.append(f"{m.group(1)}.{m.group(2)}{m.group(3)}")
            elif i + 1 < len(argv):
                overrides.append(f"{m.group(1)}.{m.group(2)}={argv[i + 1]}")
                i += 1
            else:
                raise SystemExit(f"error: {argv[i]} needs a value")
        else:
            rest.append(argv[i])
        i += 1
    return rest, overrides


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("configuration (defaults: the paper's 2Att-2Mt recipe)")
    g.add_argument("--data", action="append",
                   help="'demo' (built-in synthetic set, default), 'demo-affwild2', 'demo-affectnet-npy', an AffectNet "
                        "root (CSV or npy layout), an Aff-Wild2 root, or a prepared folder; give it twice (or more) "
                        "to train on several data sets together")
    g.add_argument("--blocks", type=int, choices=range(4), metavar="{0,1,2,3}",
                   help="residual attention blocks in the first N stages (default 2)")
    g.add_argument("--head", choices=tuple(HEAD_OUTPUTS), help="head (default 2mt, the two-stage multi-task head)")
    g.add_argument("--loss", choices=LOSSES, help="regression loss (default tukey)")
    g.add_argument("--width", type=int, help="base channels of the backbone")
    g.add_argument("--classes", type=int, choices=(8, 7), help="expression classes: 8 (AffectNet-8) or 7")
    g.add_argument("--epochs", type=int, help="epochs (default 10)")
    g.add_argument("--batch-size", type=int, help="global batch size (default 256)")
    g.add_argument("--lr", type=float, help="initial learning rate (default 1e-3)")
    g.add_argument("--seed", type=int, help="random seed (default 0)")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="plateau (default): lr / 10 when 1 - mean validation CCC stops dropping (train.plateau_*); "
                        "step: at train.step_epochs; constant")
    g.add_argument("--strategy", choices=STRATEGIES, help="tf.distribute strategy (default auto)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="any other config field, e.g. --set model.gru_units=128 (repeatable); "
                        "--model.gru_units=128 works too")


def _flag_value(value) -> str:
    """A repeated flag (`--data A --data B`) becomes one `os.pathsep`-separated value."""
    return os.pathsep.join(map(str, value)) if isinstance(value, list) else str(value)


def config_from_args(args: argparse.Namespace, overrides: list[str], base: RunConfig | None = None) -> RunConfig:
    items = [f"{key}={_flag_value(getattr(args, dest))}" for dest, key in PLAIN_FLAGS.items()
             if getattr(args, dest, None) is not None]
    return apply_overrides(base or RunConfig(), items + list(args.set) + list(overrides))


def given_config_flags(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    flags = [f"--{dest.replace('_', '-')}" for dest in PLAIN_FLAGS if getattr(args, dest, None) is not None]
    return flags + [f"--set {o}" for o in list(args.set) + list(overrides)]
