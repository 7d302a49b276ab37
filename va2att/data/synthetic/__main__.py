"""`python -m va2att.data.synthetic`: the documented command, kept at this path; the tool is `va2att.cli.synthetic`."""

import sys

from va2att.cli.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
