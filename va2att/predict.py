"""`python -m va2att.predict`: the documented command, kept at this path; the tool is `va2att.cli.predict`."""

import sys

if __name__ == "__main__":
    from va2att.cli.predict import main

    sys.exit(main())
