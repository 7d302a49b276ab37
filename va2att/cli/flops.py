"""Parameters and forward MFLOPs per image of the network variants; optional training-speed benchmark.

    python -m va2att.cli.flops                 # table for blocks 0-3 x heads at the default width
    python -m va2att.cli.flops --out docs/model_table.md    # also write it (the repository's copy)
    python -m va2att.cli.flops --benchmark     # also time training steps (batch 256) of the default model on this machine
    python -m va2att.cli.flops --model.width=16

FLOPs are TensorFlow's profiler count (`float_ops`) of the frozen forward graph for one image
(`va2att.model.flops`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from va2att.cli import program_name
from va2att.config import RunConfig, apply_overrides
from va2att.model.flops import benchmark_training, markdown_table, model_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=program_name("va2att.cli.flops"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="model.field=value overrides, e.g. model.width=16")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="also write the Markdown table to this file")
    parser.add_argument("--no-write", action="store_true", help="print only (the default without --out)")
    parser.add_argument("--benchmark", action="store_true", help="also time training steps of the configured model")
    parser.add_argument("--batch-size", type=int, default=256)
    args, extra = parser.parse_known_args(argv)
    overrides = [o.removeprefix("--") for o in [*args.overrides, *extra]]
    base = apply_overrides(RunConfig(), overrides).model
    table = markdown_table(model_rows(base), base)
    print(table)
    if args.out and not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        print(f"wrote {args.out}")
    if args.benchmark:
        result = benchmark_training(base, batch_size=args.batch_size)
        print(
            f"training (blocks={base.blocks}, head={base.head}, batch {result['batch_size']}): "
            f"{result['images_per_s']:.0f} images/s wall-clock, {result['cpu_s_per_image'] * 1e3:.2f} ms CPU per image "
            f"({result['threads']} cores)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
