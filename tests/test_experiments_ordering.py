"""va2att.experiments.ordering: our rows' order against the paper's, and the seeds' spread."""

from va2att.experiments import ordering
from va2att.experiments.runner import render


def _entry(name, paper, mean=None, sd=0.0, n=3, reference=False):
    summary = {} if mean is None else {"mean.ccc": {"mean": mean, "std": sd, "n": n}}
    return {"name": name, "paper": {} if paper is None else {"mean.ccc": paper}, "reference_only": reference,
            "summary": summary, "repeats": [{}] * (0 if mean is None else n)}


def _report(*entries, metrics=("mean.ccc",)):
    return {"table": "t", "title": "T", "data": "demo", "data_label": "demo", "smoke": False, "repeats": 3,
            "overrides": [], "metrics": list(metrics), "note": "", "variants": list(entries)}


def test_an_order_that_agrees_and_one_that_does_not():
    same = ordering.compare(_report(_entry("A", 0.5, 0.70, 0.01), _entry("B", 0.6, 0.80, 0.01),
                                    _entry("C", 0.55, 0.75, 0.01)))
    assert [r.name for r in same.ours()] == ["B", "C", "A"] == [r.name for r in same.paper()]
    assert all(agrees for *_, agrees, _ in same.pairs())
    text = "\n".join(ordering.describe(same))
    assert "agrees with the paper's: 3 of 3 pairs" in text

    flipped = ordering.compare(_report(_entry("A", 0.5, 0.80, 0.01), _entry("B", 0.6, 0.70, 0.01)))
    (a, b, agrees, close), = flipped.pairs()
    assert (a.name, b.name, agrees, close) == ("B", "A", False, False)
    text = "\n".join(ordering.describe(flipped))
    assert "disagrees with the paper's: 0 of 1 pairs" in text
    assert "the paper puts B above A; ours does not (beyond the seeds' spread)" in text


def test_differences_within_the_seeds_spread_are_marked():
    close = ordering.compare(_report(_entry("A", 0.5, 0.80, 0.03), _entry("B", 0.6, 0.78, 0.03)))
    (_, _, agrees, within), = close.pairs()
    assert not agrees and within  # 0.02 < sqrt(2) * 0.03
    text = "\n".join(ordering.describe(close))
    assert "A (0.800) ≈ B (0.780)" in text and "(within the seeds' spread)" in text
    # One seed each: no spread to compare with, so nothing is called within it.
    single = ordering.compare(_report(_entry("A", 0.5, 0.80, 0.0, n=1), _entry("B", 0.6, 0.78, 0.0, n=1)))
    assert not single.pairs()[0][3]


def test_rows_without_a_paper_figure_or_a_run_are_left_out():
    report = _report(_entry("SVR", 0.3, reference=True), _entry("A", 0.5, 0.7, 0.01), _entry("new", None, 0.9),
                     _entry("not run", 0.7))
    assert ordering.compare(report) is None  # "A" is the one row with a paper figure and a run
    assert ordering.describe(None) == []
    # Equal paper figures give no paper order for that pair.
    tied = ordering.compare(_report(_entry("A", 0.6, 0.7, 0.01), _entry("A'", 0.6, 0.8, 0.01)))
    assert tied.pairs() == [] and "orders none of them" in "\n".join(ordering.describe(tied))


def test_accuracy_ranks_a_table_without_ccc_and_render_shows_the_ordering():
    def acc(name, paper, mean):
        return {"name": name, "paper": {"expression.accuracy": paper}, "reference_only": False,
                "summary": {"expression.accuracy": {"mean": mean, "std": 0.01, "n": 3}}, "repeats": [{}] * 3}

    report = _report(acc("X", 0.5, 0.6), acc("Y", 0.4, 0.7), metrics=("expression.accuracy",))
    assert ordering.compare(report).key == "expression.accuracy"
    md = render(report)
    assert "Ordering by accuracy, best first" in md and "- ours: Y (0.700) > X (0.600)" in md


def test_a_table_on_a_named_drawn_set_says_it_is_synthetic():
    from va2att.experiments.runner import data_label

    label = data_label("demo-components")
    assert "demo-components" in label and "synthetic" in label and "not comparable" in label
