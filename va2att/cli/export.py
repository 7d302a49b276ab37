"""Add LiteRT models to an export, or export a `.keras` file.

    python -m va2att.cli.export runs/2att-2mt --litert float16 int8     # into the run's newest export version
    python -m va2att.cli.export runs/2att-2mt/export/va2att/3            # model.tflite for an older version
    python -m va2att.cli.export model.keras --out exports/va2att --litert int8   # a new version

Every export already holds `model.tflite` (float32); `--litert` adds `model-float16.tflite` (float16
weights) and `model-int8.tflite` (dynamic-range int8 weights) beside it, converted from the version's
own SavedModel (docs/serving.md, "LiteRT"). A version without `model.tflite` (exported before the LiteRT
export existed) gets it. Each file is written under a temporary name and renamed; the SavedModel is
not touched. A `.keras` file (or a run folder without an export, whose `best.keras` is used) is exported
as a new version into `--out` (for a run folder: its export root), LiteRT models included.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from va2att.cli import add_verbose_flag, program_name, quiet_tensorflow


def parse(argv):
    from va2att.serving.litert import VARIANTS

    p = argparse.ArgumentParser(prog=program_name("va2att.cli.export"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="run folder, export root, SavedModel version folder or .keras file")
    p.add_argument("--litert", nargs="+", default=[], choices=tuple(VARIANTS), metavar="VARIANT",
                   help=f"LiteRT variants to write beside the SavedModel ({', '.join(VARIANTS)}; float32, "
                        "model.tflite, is always written)")
    p.add_argument("--out", metavar="EXPORT_ROOT", help="where a .keras file is exported (a new numbered version)")
    add_verbose_flag(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(args.verbose)
    from va2att.serving.export import ExportError
    from va2att.serving.loading import resolve_model_path

    try:
        source = resolve_model_path(args.model, runtime="savedmodel")
        written = _export_keras(source, args) if source.suffix == ".keras" else _add_litert(source, args.litert)
    except (OSError, ValueError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted; every file already written is whole. Run the same command again.", file=sys.stderr)
        return 130
    for path in written:
        print(path)
    return 0


def _add_litert(version: Path, variants) -> list[Path]:
    """Write the LiteRT variants (float32 too, if missing) into an export version; the paths written."""
    from va2att.serving import litert

    missing = () if litert.model_file(version).is_file() else (litert.FLOAT32,)
    return list(litert.write_models(version, litert.check_variants((*missing, *variants))).values())


def _export_keras(path: Path, args) -> list[Path]:
    """Export a `.keras` file (a run's `best.keras`: into the run's export root) as a new version; its folder."""
    from va2att.run_dir import RunDir
    from va2att.serving.export import export_saved_model
    from va2att.serving.loading import load_keras_model

    run = RunDir(path.parent)
    out = args.out or (run.export_root if path == run.best else None)
    if out is None:
        raise ValueError(f"Give --out EXPORT_ROOT: where to export {path}.")
    return [export_saved_model(load_keras_model(path), out, litert=("float32", *args.litert))]


if __name__ == "__main__":
    sys.exit(main())
