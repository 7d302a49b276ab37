"""`python -m va2att.experiments`: the documented command, kept at this path; the tool is `va2att.cli.experiments`."""

import sys

from va2att.cli.experiments import main

if __name__ == "__main__":
    sys.exit(main())
