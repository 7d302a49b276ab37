"""Evaluate a trained model and write a report: `python evaluate.py --help`.

A thin wrapper: the tool is `va2att.cli.evaluate` (also installed as `va2att-evaluate`).
"""

import sys

from va2att.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
