"""The paper's experiments as named configs (`tables`) and a resumable runner (`runner`).

    python -m va2att.experiments table2 --data /data/AffectNet --repeats 5
    python -m va2att.experiments table5 --smoke          # a few minutes on a CPU, demo set

See docs/reproducing.md for every table's command and expected runtime.
"""

from va2att.experiments.tables import TABLES, Part, Table, Variant, run_config

__all__ = ["TABLES", "Part", "Table", "Variant", "run_config"]
