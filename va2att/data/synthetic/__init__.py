"""Drawn data sets in the exact layouts of the real ones, for demos, tests and checking recipes.

- `affectnet`: the AffectNet CSV layout (`generate`, the `demo` set), with the dirt real copies have;
- `affectnet_npy`: AffectNet's second distribution (`demo-affectnet-npy`);
- `affwild2`: Aff-Wild2's ABAW layout, videos with smooth valence/arousal trajectories (`demo-affwild2`);
- `face` and `portrait`: the two drawings (a face whose features encode valence and arousal);
- `components`: the portrait faces with label noise, small off-centre faces among clutter and class
  marks, so that each component of 2Att-2Mt has something to do (`demo-components`).

    python -m va2att.data.synthetic OUT [--layout affectnet|affectnet-npy|affwild2] [--style cartoon|portrait|components]

(the tool is `va2att.cli.synthetic`, also installed as `va2att-synthetic`). `DEMOS` names the sets
`--data` generates and prepares on first use.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from va2att.data.synthetic import affectnet, affectnet_npy, affwild2, components

__all__ = ["DEMOS", "Demo", "generate"]

generate = affectnet.generate  # the AffectNet-layout set, the demo set's generator


@dataclasses.dataclass(frozen=True)
class Demo:
    """A named synthetic set that `--data NAME` generates (first use) and prepares."""

    version: int  # part of the cache folder's name: a new version is generated anew
    layout: str  # the layout it is written in, for messages
    generate: Callable  # (out, train=, val=, seed=) -> anything; writes the raw set
    bar: bool = False  # the generator takes `progress=` (a tqdm bar)


DEMOS = {
    "demo": Demo(affectnet.VERSION, "AffectNet", affectnet.generate, bar=True),
    "demo-affwild2": Demo(affwild2.VERSION, affwild2.LAYOUT, affwild2.generate_demo),
    "demo-affectnet-npy": Demo(affectnet_npy.VERSION, affectnet_npy.LAYOUT, affectnet_npy.generate_demo),
    # The paper's tables run on this one (docs/reproducing.md): `components`' label noise, small faces
    # among clutter and class marks give each component of 2Att-2Mt something to do.
    "demo-components": Demo(components.VERSION, "AffectNet", functools.partial(affectnet.generate, style="components"),
                            bar=True),
}
