"""`python -m va2att.serving.client`: the documented command of the serving client, kept at this
path; the tool is `va2att.cli.client`, the calls it makes `va2att.serving.remote`."""

import sys

from va2att.cli.client import main

if __name__ == "__main__":
    sys.exit(main())
