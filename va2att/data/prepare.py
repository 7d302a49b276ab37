"""`python -m va2att.data.prepare`: the documented command, kept at this path; the tool is
`va2att.cli.prepare` and the library `va2att.data.preparation` (whose `prepare`, `is_prepared` and
`load_report` are importable from here too, as before)."""

import sys

from va2att.data.preparation import is_prepared, load_report, prepare  # noqa: F401

if __name__ == "__main__":
    from va2att.cli.prepare import main

    sys.exit(main())
