"""Drawn data sets in the exact layouts of the real ones, for demos, tests and checking recipes.

- `affectnet`: the AffectNet CSV layout (`generate`, the `demo` set), with the dirt real copies have;
- `affectnet_npy`: AffectNet's second distribution (`demo-affectnet-npy`);
- `affwild2`: Aff-Wild2's ABAW layout, videos with smooth valence/arousal trajectories (`demo-affwild2`);
- `face` and `portrait`: the two drawings (a face whose features encode valence and arousal).

    python -m va2att.data.synthetic OUT [--layout affectnet|affectnet-npy|affwild2] [--style cartoon|portrait]

(the tool is `va2att.cli.synthetic`, also installed as `va2att-synthetic`).
"""

__all__ = ["generate"]


def generate(*args, **kwargs):
    """`va2att.data.synthetic.affectnet.generate`: the AffectNet-layout set (the demo set's generator)."""
    from va2att.data.synthetic.affectnet import generate as affectnet_generate

    return affectnet_generate(*args, **kwargs)
