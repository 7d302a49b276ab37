"""Emotion-GCN adjacency from labels, checked against the public code's formulas written out by hand.

The reference (`utils.py`): `gen_A` re-weights rows (neighbours share p, self 0.5), then
`gen_adj(A) = (A·D)ᵀ·D = D·Aᵀ·D` with `D = diag(rowsum(A))^-½`: the propagation matrix is the
normalised transpose of A."""

import numpy as np
import pytest

from va2att.model.gcn import build_adjacency, spearman_matrix

# K = 2 classes, 4 samples. Nodes: e0, e1, V, A.
EXPRESSION = [0, 0, 1, 1]
VALENCE = [-0.5, -0.2, 0.4, 0.9]
AROUSAL = [0.1, 0.3, 0.2, 0.0]

# Hand computation.
# Average ranks: e0 = [1,1,0,0] -> [3.5,3.5,1.5,1.5]; e1 -> [1.5,1.5,3.5,3.5];
#                V -> [1,2,3,4]; A (0.1,0.3,0.2,0.0) -> [2,4,3,1].
# Centred (mean 2.5): e0 [1,1,-1,-1], e1 [-1,-1,1,1], V [-1.5,-0.5,0.5,1.5], A [-0.5,1.5,0.5,-1.5];
# norms: 2, 2, sqrt(5), sqrt(5).
# rho(e0,V) = (-1.5-0.5-0.5-1.5)/(2 sqrt5) = -2/sqrt5 ~ -0.894; rho(e1,V) = +0.894
# rho(e0,A) = (-0.5+1.5-0.5+1.5)/(2 sqrt5) = 1/sqrt5 ~ 0.447;  rho(e1,A) = -0.447
# rho(V,A)  = (0.75-0.75+0.25-2.25)/5 = -0.4;                   rho(e0,e1) = -1 (zeroed: expr-expr)
S5 = np.sqrt(5.0)
HAND_SPEARMAN = np.array(
    [
        [1.0, -1.0, -2 / S5, 1 / S5],
        [-1.0, 1.0, 2 / S5, -1 / S5],
        [-2 / S5, 2 / S5, 1.0, -0.4],
        [1 / S5, -1 / S5, -0.4, 1.0],
    ]
)


def test_spearman_by_hand():
    from va2att.model.gcn import label_matrix

    np.testing.assert_allclose(spearman_matrix(label_matrix(EXPRESSION, VALENCE, AROUSAL, 2)), HAND_SPEARMAN, atol=1e-12)


def test_adjacency_tau_0_45_by_hand():
    # |rho| >= 0.45: e0-V, e1-V only (0.447 and 0.4 fall below). Binary (self included):
    #   e0 [1,0,1,0]  e1 [0,1,1,0]  V [1,1,1,0]  A [0,0,0,1]
    # Re-weight, p = 0.5 shared by the neighbours, self 0.5:
    #   e0 [.5,0,.5,0]  e1 [0,.5,.5,0]  V [.25,.25,.5,0]  A [0,0,0,.5] (no neighbours)
    # Row sums 1, 1, 1, 0.5 -> D^-1/2 = [1, 1, 1, sqrt2]; D Aᵀ D: the transpose, A's diagonal 0.5*2 = 1.
    expected = np.array(
        [
            [0.5, 0.0, 0.25, 0.0],
            [0.0, 0.5, 0.25, 0.0],
            [0.5, 0.5, 0.5, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    got = build_adjacency(EXPRESSION, VALENCE, AROUSAL, num_classes=2, tau=0.45, p=0.5)
    assert got.dtype == np.float32 and got.shape == (4, 4)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_adjacency_tau_0_45_p_0_3_by_hand():
    # Same graph, neighbours share p = 0.3, self 0.5:
    #   e0 [.5,0,.3,0]  e1 [0,.5,.3,0]  V [.15,.15,.5,0]  A [0,0,0,.5]; row sums .8, .8, .8, .5
    # D Aᵀ D: the transpose, among e0, e1, V every entry / 0.8; A's diagonal .5 / .5 = 1.
    expected = np.array(
        [
            [0.5 / 0.8, 0.0, 0.15 / 0.8, 0.0],
            [0.0, 0.5 / 0.8, 0.15 / 0.8, 0.0],
            [0.3 / 0.8, 0.3 / 0.8, 0.5 / 0.8, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(build_adjacency(EXPRESSION, VALENCE, AROUSAL, 2, tau=0.45, p=0.3), expected, atol=1e-6)


def test_adjacency_tau_0_1_by_hand():
    # |rho| >= 0.1 everywhere except e0-e1 (zeroed). Neighbours: e0 {V, A}, e1 {V, A}, V {e0, e1, A}, A {e0, e1, V}.
    #   e0 [.5, 0, .25, .25]  e1 [0, .5, .25, .25]  V [1/6, 1/6, .5, 1/6]  A [1/6, 1/6, 1/6, .5]
    # Every row sums to 1, so D = I and the reference propagates with Aᵀ. A is not symmetric
    # (e0 gives V 0.25, V gives e0 1/6): V gathers 0.25 from each class node, e0 1/6 from V.
    sixth = 1 / 6
    expected = np.array(
        [
            [0.5, 0.0, sixth, sixth],
            [0.0, 0.5, sixth, sixth],
            [0.25, 0.25, 0.5, sixth],
            [0.25, 0.25, sixth, 0.5],
        ]
    )
    got = build_adjacency(EXPRESSION, VALENCE, AROUSAL, 2)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, got.T)


def test_absent_class_and_bad_input():
    # Class 2 never occurs: its indicator is constant, correlates 0, and the node keeps only itself.
    adjacency = build_adjacency(EXPRESSION, VALENCE, AROUSAL, num_classes=3)
    assert np.all(np.isfinite(adjacency))
    np.testing.assert_allclose(adjacency[2], [0, 0, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(adjacency[:, 2], [0, 0, 1, 0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="0..1"):
        build_adjacency([0, 2], [0.1, 0.2], [0.1, 0.2], num_classes=2)
    with pytest.raises(ValueError, match="same length"):
        build_adjacency([0, 1], [0.1], [0.1, 0.2], num_classes=2)
