"""Whether a table's rows rank as the paper's do, and which of our neighbours the seeds cannot tell apart.

A table is read for its ordering more than for its figures (ours are not on AffectNet): the paper
says, for instance, that the second level of attention beats the first. `compare` ranks the trained
rows that have a paper figure by one metric (mean CCC, or accuracy where a table has no CCC), counts
the pairs of rows whose order agrees with the paper's, and marks each difference that lies within
the seeds' spread: |mean_1 - mean_2| < sqrt(sd_1^2 + sd_2^2), the spread of the difference between
two single runs. A pair whose paper figures are equal (Table 2's two readings of a block share the
paper's figures) has no paper order and is not counted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

KEYS = ("mean.ccc", "expression.accuracy")  # the first the table shows is the one it is ranked by
NAMES = {"mean.ccc": "mean CCC", "expression.accuracy": "accuracy"}


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    paper: float
    mean: float
    sd: float
    n: int


@dataclasses.dataclass(frozen=True)
class Ordering:
    key: str
    rows: tuple[Row, ...]  # in the table's order

    def ours(self) -> list[Row]:
        return sorted(self.rows, key=lambda r: -r.mean)

    def paper(self) -> list[Row]:
        return sorted(self.rows, key=lambda r: -r.paper)

    def pairs(self) -> list[tuple[Row, Row, bool, bool]]:
        """(a, b, agrees, within_spread) for each pair with a paper order, a above b in the paper."""
        out = []
        for a, b in itertools.combinations(self.rows, 2):
            if a.paper == b.paper:
                continue
            if a.paper < b.paper:
                a, b = b, a
            out.append((a, b, a.mean > b.mean, within_spread(a, b)))
        return out


def within_spread(a: Row, b: Row) -> bool:
    """A difference smaller than the spread of the difference of two single runs (needs 2+ seeds each)."""
    if a.n < 2 or b.n < 2:
        return False
    return abs(a.mean - b.mean) < math.hypot(a.sd, b.sd)


def compare(report: dict) -> Ordering | None:
    """The ordering of a table's report (`runner.collect`), or None when fewer than two rows can be ranked."""
    key = next((k for k in KEYS if k in report["metrics"]), None)
    if key is None:
        return None
    rows = []
    for entry in report["variants"]:
        s = entry.get("summary", {}).get(key)
        if entry["reference_only"] or not s or key not in entry["paper"]:
            continue
        rows.append(Row(entry["name"], float(entry["paper"][key]), s["mean"], s["std"], s["n"]))
    return Ordering(key, tuple(rows)) if len(rows) >= 2 else None


def _chain(rows: list[Row], value, close) -> str:
    """`rows` as "A (x) > B (y) ≈ C (z)": ≈ where `close(above, row)`."""
    parts = [f"{rows[0].name} ({value(rows[0]):.3f})"]
    for above, row in itertools.pairwise(rows):
        parts.append(f"{'≈' if close(above, row) else '>'} {row.name} ({value(row):.3f})")
    return " ".join(parts)


def describe(ordering: Ordering | None) -> list[str]:
    """Markdown lines: both orders, the pairs that agree, the differences within the seeds' spread."""
    if ordering is None:
        return []
    name = NAMES[ordering.key]
    pairs = ordering.pairs()
    agree = sum(1 for *_, agrees, _ in pairs if agrees)
    lines = [(f"Ordering by {name}, best first (≈: a difference within the seeds' spread, "
              f"|m₁ − m₂| < √(sd₁² + sd₂²)):"), "",
             f"- paper: {_chain(ordering.paper(), lambda r: r.paper, lambda a, b: a.paper == b.paper)}",
             f"- ours: {_chain(ordering.ours(), lambda r: r.mean, lambda a, b: a.mean == b.mean or within_spread(a, b))}"]
    if not pairs:
        lines.append("- the paper gives these rows one figure: it orders none of them")
        return lines
    verdict = "agrees with the paper's" if agree == len(pairs) else (
        "disagrees with the paper's" if agree == 0 else "agrees with the paper's in part")
    lines.append(f"- our order {verdict}: {agree} of {len(pairs)} pairs in the paper's order")
    for a, b, agrees, close in pairs:
        if not agrees:
            note = "within the seeds' spread" if close else "beyond the seeds' spread"
            lines.append(f"  - the paper puts {a.name} above {b.name}; ours does not ({note})")
    return lines
