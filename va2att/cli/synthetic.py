"""Write a drawn data set in the exact layout of a real one (`va2att.data.synthetic`).

    python -m va2att.data.synthetic OUT --train 6000 --val 1000 [--seed 0] [--style cartoon|portrait|components]
    python -m va2att.data.synthetic OUT --layout affectnet-npy [--train 200] [--val 50]
    python -m va2att.data.synthetic OUT --layout affwild2 [--videos 4] [--val-videos 2] [--frames 60]

Also installed as `va2att-synthetic`. The same seed gives the same files.
"""

from __future__ import annotations

import argparse
import sys
import time

from va2att.cli import program_name
from va2att.data.synthetic import affectnet, affectnet_npy, affwild2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=program_name("va2att.data.synthetic"), description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    parser.add_argument("out", help="folder to write")
    parser.add_argument("--layout", choices=("affectnet", "affectnet-npy", "affwild2"), default="affectnet",
                        help="affectnet: CSV file lists (default); affectnet-npy: AffectNet's .npy annotations; "
                             "affwild2: Aff-Wild2's ABAW layout (videos)")
    parser.add_argument("--train", type=int, help="usable training faces (default 6000; affectnet-npy: 200)")
    parser.add_argument("--val", type=int, help="usable validation faces (default 1000; affectnet-npy: 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per core)")
    parser.add_argument("--style", choices=affectnet.STYLES, default="cartoon",
                        help="affectnet layout: cartoon, the demo set's drawing (default); portrait, another drawing "
                             "with clutter and 4%% random labels; components, the portrait faces with 20%% noisy training labels, small "
                             "off-centre faces among clutter and class marks (the set of the paper's tables)")
    parser.add_argument("--videos", type=int, default=4, help="affwild2: training videos besides the pair (default 4)")
    parser.add_argument("--val-videos", type=int, default=2,
                        help="affwild2: validation videos besides the pair (default 2)")
    parser.add_argument("--frames", type=int, default=60, help="affwild2: frames per video (default 60)")
    return parser


def _affectnet(args) -> None:
    started = time.perf_counter()
    train, val = args.train or 6000, args.val or 1000
    root = affectnet.generate(args.out, train, val, args.seed, args.workers, args.style)
    print(f"wrote {train} + {val} faces (plus {len(affectnet.DIRT)} dirt rows per split) to {root} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def _affectnet_npy(args) -> None:
    planted = affectnet_npy.generate(args.out, args.train or 200, args.val or 50, args.seed)
    print(f"planted: {planted}", file=sys.stderr)


def _affwild2(args) -> None:
    planted = affwild2.generate(args.out, args.videos, args.val_videos, args.frames, args.seed, args.workers)
    for split, p in planted.items():
        print(f"{split}: {p['written']} frames to be written; skipped {p['skipped']}; labels {p['labels']}",
              file=sys.stderr)


GENERATORS = {"affectnet": _affectnet, "affectnet-npy": _affectnet_npy, "affwild2": _affwild2}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    GENERATORS[args.layout](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
