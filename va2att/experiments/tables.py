"""The paper's experiments (Tables 1-6) and the Emotion-GCN comparison, as named configs.

Each table is a function whose docstring gives the command, the expected runtime
and the paper's figures; it returns a `Table`, a list of `Variant`s. A variant is
the change it makes to the default 2Att-2Mt `ModelConfig` (blocks 2, second-level
attention on, head 2mt, 256/128 units, Tukey loss), never a copy of training
code: `va2att.experiments.runner` trains each one with `va2att.training.trainer` and
scores it with `va2att.evaluation.evaluate`.

Metric keys are the paths of `va2att.evaluation.evaluate.score`'s result:
`valence.ccc`, `arousal.rmse`, `mean.ccc`, `expression.accuracy`, ...

Runtimes are estimates, not measurements: the paper trained 10 epochs of the
full AffectNet training set in about 5 hours on a Titan X; a current data-centre
GPU with the prepared TFRecords is expected to need well under an hour per run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from va2att.config import DataConfig, ModelConfig, RunConfig, TrainConfig

CCC = ("valence.ccc", "arousal.ccc", "mean.ccc")
RMSE = ("valence.rmse", "arousal.rmse", "mean.rmse")
CCC_RMSE = CCC + RMSE
ACCURACY = ("expression.accuracy",)

# --- The smoke variant: any table in a few minutes on a CPU (CI and tests) ---
# Widths are divided by 8 (dimensional 256 -> 32, categorical 128 -> 16), so tables
# about widths keep the paper's ratios.
SMOKE_SCALE = 8
SMOKE_MODEL = {"width": 8, "level_dim": 16, "gru_units": 8, "gcn_hidden": 64}
SMOKE_DATA = {"demo_train": 256, "demo_val": 64, "batch_size": 64, "shuffle_buffer": 256}
SMOKE_TRAIN = {"epochs": 2}


def _frozen(d: Mapping | None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclasses.dataclass(frozen=True)
class Part:
    """One training run of a variant that needs several (2Att-CNN: a valence and an arousal network).

    Args:
        name: str, the run folder's suffix (`<variant>-<name>`).
        model: mapping, changes to the variant's `ModelConfig`.
        supplies: tuple of str, the outputs whose metrics this run contributes to the row.
    """

    name: str
    model: Mapping
    supplies: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "model", _frozen(self.model))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a table.

    Args:
        name: str, the row label, as in the paper.
        model: mapping or None, changes to the default 2Att-2Mt `ModelConfig`; None for a
            reference row (another paper's figures, quoted; nothing is trained).
        paper: mapping, metric key -> the paper's figure.
        parts: tuple of `Part`, for a row combined from several runs (empty: one run).
        classes: int or None, expression classes to score (7: argmax over the first 7
            outputs on the 7-class validation subset); None = the model's.
        smoke_model: mapping, model changes that replace `model`'s in smoke mode
            (tables about widths keep their ratios at a smaller scale).
    """

    name: str
    model: Mapping | None
    paper: Mapping = dataclasses.field(default_factory=dict)
    parts: tuple[Part, ...] = ()
    classes: int | None = None
    smoke_model: Mapping = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "model", None if self.model is None else _frozen(self.model))
        object.__setattr__(self, "paper", _frozen(self.paper))
        object.__setattr__(self, "smoke_model", _frozen(self.smoke_model))

    @property
    def trained(self) -> bool:
        return self.model is not None

    @property
    def slug(self) -> str:
        """The variant's folder name: lower case, spaces and slashes as dashes."""
        out = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name.lower().replace("'", ""))
        while "--" in out:
            out = out.replace("--", "-")
        return out.strip("-")

    def runs(self) -> tuple[Part, ...]:
        """The runs behind this row: its parts, or a single run supplying everything."""
        return self.parts or (Part("", {}, ("valence", "arousal", "mean", "expression")),)


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of the paper: its variants, the metrics it reports and where its figures come from."""

    name: str
    title: str
    metrics: tuple[str, ...]
    variants: tuple[Variant, ...]
    doc: str = ""
    note: str = ""

    def trained(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.trained)


def _paper(keys, values) -> dict:
    return dict(zip(keys, values))


def table1() -> Table:
    """Table 1: levels of attention on a multi-task (V+A) network.

    Command:  python -m va2att.experiments table1 --data /data/AffectNet --repeats 5
    Runtime:  3 variants x 5 repeats x 10 epochs; estimate 15 GPU runs of well under an hour each
              (the paper: ~5 h per run on a Titan X). Smoke: about a minute on a CPU.
    Expected CCC (paper, mean of V and A): MultitaskCNN 0.506, 1st-level 0.518, 2nd-level 0.539.
    """
    return Table("table1", "Table 1: the levels of attention", CCC_RMSE, (
        Variant("MultitaskCNN", {"blocks": 0, "blocks_add_depth": False, "second_level": False, "head": "mt"},
                _paper(CCC_RMSE, (0.589, 0.423, 0.506, 0.373, 0.408, 0.391))),
        Variant("1st-level", {"blocks": 2, "second_level": False, "head": "mt"},
                _paper(CCC_RMSE, (0.605, 0.437, 0.518, 0.367, 0.402, 0.385))),
        Variant("2nd-level", {"blocks": 2, "second_level": True, "head": "mt"},
                _paper(CCC_RMSE, (0.618, 0.460, 0.539, 0.360, 0.393, 0.377))),
    ), doc=table1.__doc__, note="MultitaskCNN is our backbone without attention masks, each stage keeping its "
                                "trunk (the paper's is AlexNet-based); all three rows regress V and A only "
                                "(head `mt`).")


def table2() -> Table:
    """Table 2: the number of residual attention blocks in 2Att-2Mt.

    Command:  python -m va2att.experiments table2 --data /data/AffectNet --repeats 5
    Runtime:  6 variants (3 per reading) x 5 repeats x 10 epochs; estimate 30 GPU runs of well under an
              hour each.
    Expected CCC (paper, mean): 1-Block 0.594, 2-Block 0.635, 3-Block 0.614.

    Two readings of what a block is, each with three rows: blocks add depth (the default, as the
    paper's text says: "the increase in the number of blocks also deepens the depth of network"; a
    stage without a block is its down-sampling unit alone), and blocks add only the attention mask
    (`model.blocks_add_depth=false`: every stage keeps the block's trunk). Run one reading with
    `--variant 1-Block --variant 2-Block --variant 3-Block` or the `(masks only)` names.
    """
    papers = ((0.677, 0.511, 0.594, 0.365, 0.382, 0.373), (0.714, 0.556, 0.635, 0.353, 0.364, 0.359),
              (0.696, 0.532, 0.614, 0.356, 0.371, 0.364))
    rows = [Variant(f"{n}-Block", {"blocks": n}, _paper(CCC_RMSE, paper)) for n, paper in zip((1, 2, 3), papers)]
    rows += [Variant(f"{n}-Block (masks only)", {"blocks": n, "blocks_add_depth": False}, _paper(CCC_RMSE, paper))
             for n, paper in zip((1, 2, 3), papers)]
    return Table("table2", "Table 2: the number of residual attention blocks", CCC_RMSE, tuple(rows), doc=table2.__doc__,
                 note="All rows are the full 2Att-2Mt (two-level attention, two-stage multi-task head). Rows "
                      "'(masks only)' keep the trunk in every stage, so blocks add only the attention mask; the "
                      "others are the paper's reading, where each block adds its trunk and its mask. The paper's "
                      "figures are repeated on both.")


def table3() -> Table:
    """Table 3: single-task, multi-task and two-stage multi-task heads, beside other methods.

    Command:  python -m va2att.experiments table3 --data /data/AffectNet --repeats 5
    Runtime:  4 runs x 5 repeats x 10 epochs (2Att-CNN is two single-task runs); estimate 20 GPU runs
              of well under an hour each.
    Expected CCC (paper, mean): 2Att-CNN 0.487, 2Att-Mt 0.539, 2Att-2Mt 0.635.
    """
    return Table("table3", "Table 3: single-task, multi-task and two-stage multi-task", CCC_RMSE, (
        Variant("SVR (Mollahosseini et al. 2017)", None,
                _paper(CCC_RMSE, (0.372, 0.182, 0.277, 0.384, 0.513, 0.449))),
        Variant("CNN (Mahoor 2017)", None, _paper(CCC_RMSE, (0.600, 0.340, 0.470, 0.370, 0.410, 0.390))),
        Variant("2Att-CNN", {}, _paper(CCC_RMSE, (0.609, 0.365, 0.487, 0.368, 0.406, 0.387)), parts=(
            Part("valence", {"head": "single-valence"}, ("valence",)),
            Part("arousal", {"head": "single-arousal"}, ("arousal",)),
        )),
        Variant("2Att-Mt", {"head": "mt"}, _paper(CCC_RMSE, (0.618, 0.460, 0.539, 0.360, 0.393, 0.377))),
        Variant("2Att-2Mt", {}, _paper(CCC_RMSE, (0.714, 0.556, 0.635, 0.353, 0.364, 0.359))),
    ), doc=table3.__doc__, note="SVR and CNN are the AffectNet paper's baselines as quoted by the 2Att-2Mt paper "
                                "(reference only, not trained here). 2Att-CNN is two single-task networks, one "
                                "for valence and one for arousal, combined into one row.")


def table4() -> Table:
    """Table 4: widths of the dimensional and categorical representations.

    Command:  python -m va2att.experiments table4 --data /data/AffectNet --repeats 5
    Runtime:  3 variants x 5 repeats x 10 epochs; estimate 15 GPU runs of well under an hour each.
    Expected CCC (paper, mean): 128/128 0.622, 256/128 0.635, 256/256 0.630.
    Smoke:    the widths divided by 8 (16/16, 32/16, 32/32).
    """

    def widths(dim: int, cat: int) -> dict:
        return {"dimensional_units": dim, "categorical_units": cat}

    def row(dim: int, cat: int, figures) -> Variant:
        return Variant(f"{dim}/{cat}", widths(dim, cat), _paper(CCC, figures),
                       smoke_model=widths(dim // SMOKE_SCALE, cat // SMOKE_SCALE))

    return Table("table4", "Table 4: dimensional/categorical representation units", CCC_RMSE, (
        row(128, 128, (0.708, 0.536, 0.622)),
        row(256, 128, (0.714, 0.556, 0.635)),
        row(256, 256, (0.711, 0.549, 0.630)),
    ), doc=table4.__doc__, note="Rows are dimensional/categorical units. The paper reports CCC only.")


def table5() -> Table:
    """Table 5: MSE against Tukey's biweight as the regression loss.

    Command:  python -m va2att.experiments table5 --data /data/AffectNet --repeats 5
    Runtime:  2 variants x 5 repeats x 10 epochs; estimate 10 GPU runs of well under an hour each.
    Expected CCC (paper, mean): MSE 0.625, Tukey's biweight 0.635.
    """
    return Table("table5", "Table 5: regression loss", CCC_RMSE, (
        Variant("MSE", {"loss": "mse"}, _paper(CCC, (0.709, 0.541, 0.625))),
        Variant("Tukey's biweight", {"loss": "tukey"}, _paper(CCC, (0.714, 0.556, 0.635))),
    ), doc=table5.__doc__, note="The paper reports CCC only.")


def table6() -> Table:
    """Table 6: expression accuracy of the trained 2Att-2Mt on seven classes.

    The default (8-class) 2Att-2Mt is trained and scored "without any change" on the
    7-class validation subset (codes 0-6): argmax over its first seven outputs.

    Command:  python -m va2att.experiments table6 --data /data/AffectNet --repeats 5
    Runtime:  1 variant x 5 repeats x 10 epochs; estimate 5 GPU runs of well under an hour each.
    Expected accuracy (paper): 0.48.
    """
    return Table("table6", "Table 6: expression classification, seven classes", ACCURACY, (
        Variant("Down-sampling (Mahoor 2017)", None, {"expression.accuracy": 0.50}),
        Variant("Up-sampling (Mahoor 2017)", None, {"expression.accuracy": 0.47}),
        Variant("Weighted-loss (Mahoor 2017)", None, {"expression.accuracy": 0.58}),
        Variant("Ours (2Att-2Mt)", {}, {"expression.accuracy": 0.48}, classes=7),
    ), doc=table6.__doc__, note="The first three rows are the AffectNet paper's classifiers as quoted "
                                "(reference only). Ours: the 8-class 2Att-2Mt, argmax over its first 7 "
                                "outputs, on the 7-class validation subset.")


def gcn() -> Table:
    """Emotion-GCN head against the two-stage multi-task head on the same 2-block, two-level backbone.

    Not in the paper (no paper figures); the GCN head follows Antoniadis et al. 2021.

    Command:  python -m va2att.experiments gcn --data /data/AffectNet --repeats 5
    Runtime:  2 variants x 5 repeats x 10 epochs; estimate 10 GPU runs of well under an hour each.
    Expected CCC: 2mt about 0.635 (the paper's 2Att-2Mt); gcn not published for this backbone.
    """
    return Table("gcn", "Two-stage multi-task head against the Emotion-GCN head", CCC_RMSE + ACCURACY, (
        Variant("2Att-2Mt (2mt head)", {"head": "2mt"}, _paper(CCC_RMSE, (0.714, 0.556, 0.635, 0.353, 0.364, 0.359))),
        Variant("Emotion-GCN head", {"head": "gcn"}, {}),
    ), doc=gcn.__doc__, note="Same backbone (2 attention blocks, second-level attention); only the head "
                             "differs. The paper column is the 2Att-2Mt paper's; the GCN head has none.")


TABLES: dict[str, Table] = {t.name: t for t in (table1(), table2(), table3(), table4(), table5(), table6(), gcn())}


def run_config(variant: Variant, part: Part, *, data: str, seed: int, smoke: bool = False,
               overrides=()) -> RunConfig:
    """The RunConfig of one run: defaults, the variant's (and part's) model changes, the smoke
    scale when asked, the repeat's seed, then `section.field=value` overrides."""
    from va2att.config import apply_overrides

    if not variant.trained:
        raise ValueError(f"{variant.name!r} is a reference row: nothing to train.")
    model = dict(variant.model)
    data_changes: dict = {"data": data}
    train_changes: dict = {"seed": seed}
    if smoke:
        model.update(SMOKE_MODEL)
        model.update({"dimensional_units": ModelConfig.dimensional_units // SMOKE_SCALE,
                      "categorical_units": ModelConfig.categorical_units // SMOKE_SCALE})
        model.update(variant.smoke_model)
        data_changes.update(SMOKE_DATA)
        train_changes.update(SMOKE_TRAIN)
    model.update(part.model)
    cfg = RunConfig(model=dataclasses.replace(ModelConfig(), **model),
                    data=dataclasses.replace(DataConfig(), **data_changes),
                    train=dataclasses.replace(TrainConfig(), **train_changes))
    return apply_overrides(cfg, overrides)
