"""Train the 2Att-2Mt network (or an ablation of it): `python train.py --help`.

A thin wrapper: the tool is `va2att.cli.train` (also installed as `va2att-train`).
"""

import sys

from va2att.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
