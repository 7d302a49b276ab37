"""Reproduce a table of the 2Att-2Mt paper: train its variants, score them, write OUT/<table>.md and .json.

    python -m va2att.experiments table2 --data /data/AffectNet --repeats 5 --out runs/experiments
    python -m va2att.experiments table5 --smoke                        # tiny network, demo set, minutes on a CPU
    python -m va2att.experiments table1 --data demo --repeats 1 --epochs 3
    python -m va2att.experiments table5 --data demo-components --repeats 3 --set model.width=32 \
        --set data.demo_train=4000                                     # the set each component has work on

Running the same command again skips finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from va2att.cli import program_name
from va2att.experiments.tables import TABLES

DEFAULT_OUT = "runs/experiments"
PAPER_REPEATS = 5  # "the results on AffectNet are derived from the mean of five experiments"


def parse(argv):
    p = argparse.ArgumentParser(prog=program_name("va2att.experiments"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=sorted(TABLES), help="which table to reproduce")
    p.add_argument("--data", help="'demo', 'demo-components' (the drawn set that needs each component, "
                                  "docs/reproducing.md), an AffectNet root or a prepared folder (required unless "
                                  "--smoke, where it defaults to demo)")
    p.add_argument("--repeats", type=int, help=f"runs per variant, seeds 0..N-1 (default {PAPER_REPEATS}; "
                                               "1 with --smoke)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"experiments folder (default {DEFAULT_OUT})")
    p.add_argument("--smoke", action="store_true",
                   help="tiny network, small demo set, 2 epochs, batch 64: any table in minutes on a CPU")
    p.add_argument("--cache-dir", help="cache for the demo set and prepared data (default $VA2ATT_CACHE or "
                                       "~/.cache/va2att)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the paper's 10; 2 with --smoke); "
                                              "same as --set train.epochs=N")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field for every run of the table, e.g. --set data.demo_train=2000 "
                        "(repeatable); the overrides are part of each run's config")
    p.add_argument("--variant", action="append", default=[], metavar="NAME",
                   help="train only this row (its folder name or label; repeatable); the table shows every row")
    p.add_argument("--list", action="store_true", help="print the table's variants and run configs, train nothing")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines from training")
    args = p.parse_args(argv)
    if args.data is None:
        if not args.smoke and not args.list:
            p.error("--data is required (give 'demo' for the built-in synthetic set), unless --smoke")
        args.data = "demo"
    if args.repeats is None:
        args.repeats = 1 if args.smoke else PAPER_REPEATS
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.epochs is not None:
        if args.epochs < 1:
            p.error("--epochs must be at least 1")
        args.set.append(f"train.epochs={args.epochs}")
    return args


def list_table(table, args) -> None:
    from va2att.config import ModelConfig, to_dict
    from va2att.experiments.runner import run_dir_for
    from va2att.experiments.tables import run_config

    print(table.doc.strip() if table.doc else table.title)
    print()
    default = to_dict(run_config(table.trained()[0], table.trained()[0].runs()[0], data=args.data, seed=0,
                                 smoke=args.smoke, overrides=args.set)) if table.trained() else {}
    defaults = to_dict(ModelConfig())
    for variant in table.variants:
        if not variant.trained:
            print(f"- {variant.name}: reference row (paper figures only)")
            continue
        for part in variant.runs():
            cfg = to_dict(run_config(variant, part, data=args.data, seed=0, smoke=args.smoke, overrides=args.set))
            print(f"- {variant.name}{' (' + part.name + ')' if part.name else ''}: "
                  f"{run_dir_for(args.out, table, variant, part, 0).parent}/seed<k>  "
                  f"model {({k: v for k, v in cfg['model'].items() if defaults[k] != v})}")
    if default:
        print(f"\ndata {default['data']}\ntrain {default['train']}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    from va2att.cli import quiet_tensorflow

    quiet_tensorflow()
    from va2att.experiments import runner
    from va2att.training import trainer

    table = TABLES[args.table]
    try:
        if args.list:
            list_table(table, args)
            return 0
        command = shlex.join(["python", "-m", "va2att.experiments", *argv])
        report = runner.run_table(table, data=args.data, out=args.out, repeats=args.repeats, smoke=args.smoke,
                                  cache_dir=args.cache_dir, overrides=args.set, variants=tuple(args.variant),
                                  command=command, argv=["python -m va2att.experiments", *argv],
                                  verbose=0 if args.quiet else 2)
    except (ValueError, FileNotFoundError, trainer.RunExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report is None:
        return 130
    md = Path(args.out) / f"{table.name}.md"
    print()
    print(md.read_text(encoding="utf-8"))
    print(f"Table in {md}; every run's metrics in {md.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
