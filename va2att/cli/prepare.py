"""Prepare a data set: aligned 56 x 56 gray faces in sharded TFRecords (`va2att.data.preparation`).

    python -m va2att.data.prepare ROOT OUT [--workers N] [--classes 8|7] [--other unlabelled|none|drop]

Also installed as `va2att-prepare`. Running the same command again resumes an interrupted preparation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from va2att.cli import program_name
from va2att.data import affectnet
from va2att.data.preparation import SHARD_SIZE, PrepareError, prepare
from va2att.util.locking import FolderInUseError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=program_name("va2att.data.prepare"), description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="AffectNet root (Manually_Annotated_file_lists/, Manually_Annotated_Images/), "
                                     "AffectNet npy root (train_set/, val_set/) or Aff-Wild2 root (cropped_aligned/, "
                                     "Annotations/)")
    parser.add_argument("out", help="output folder for the TFRecord shards and report.json")
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per core)")
    parser.add_argument("--classes", type=int, choices=(8, 7), default=8, help="8: codes 0-7, 7: codes 0-6")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE, help="CSV rows per shard")
    parser.add_argument("--no-mtcnn", action="store_true", help="skip rows without usable landmarks or box")
    parser.add_argument("--allow-symlinks", action="store_true",
                        help="follow symbolic links that lead out of the images folder (else skipped as outside_root)")
    parser.add_argument("--overwrite", action="store_true", help="replace a preparation made with other settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--other", choices=("unlabelled", "none", "drop"), default="unlabelled",
                        help="Aff-Wild2's 'Other' expression: unlabelled (default: V/A kept, no expression label), "
                             "none (AffectNet's code 8, used with data.none_faces), drop (frame not written)")
    args = parser.parse_args(argv)
    from va2att.util.quiet import quiet_tensorflow

    quiet_tensorflow()
    try:
        report = prepare(
            args.root, args.out, args.workers, classes=args.classes, shard_size=args.shard_size,
            use_mtcnn=not args.no_mtcnn, allow_symlinks=args.allow_symlinks, progress=not args.quiet,
            overwrite=args.overwrite, other=args.other,
        )
    except (PrepareError, affectnet.AffectNetError, FolderInUseError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nInterrupted. The shards written so far are kept in {args.out}; the same command resumes from "
              "them.", file=sys.stderr)
        return 130
    for split, s in report["splits"].items():
        print(f"{split:>10}: {s['written']:>7} written of {s['csv_rows']} rows; skipped {s['skipped']}; "
              f"fallbacks {s.get('fallbacks', {})}")
    print(f"report: {Path(args.out) / 'report.json'} ({report['seconds']} s)")
    return 0
