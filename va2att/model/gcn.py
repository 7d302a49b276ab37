"""Label graph of the Emotion-GCN head, built once from the training labels (DESIGN.md §3).

Nodes: the K expression classes, then valence, then arousal. Steps:

1. label matrix `L` (n × (K + 2)): one-hot expression indicators, valence, arousal;
2. Spearman correlation between its columns (`scipy.stats.spearmanr`; a constant column, e.g. a
   class absent from the labels, correlates 0 with everything but itself);
3. absolute value; expression–expression off-diagonals set to 0 (one-hot indicators are negatively
   correlated by construction, which says nothing about the emotions);
4. binarise: `B = 1` where the value is `>= tau`, else 0 (the diagonal is 1);
5. re-weight each row: a node's neighbours share `p` equally, the node itself keeps 0.5
   (`A_ij = p · B_ij / Σ_{k≠i} B_ik` for `j ≠ i`, `A_ii = 0.5`; no neighbours: only `A_ii`);
6. normalisation as the public code's `gen_adj` does it: `(A·D)ᵀ·D = D·Aᵀ·D` with
   `D = diag(row sums of A)^-½`. Rows of the re-weighted A sum to 1 (0.5 for a node without
   neighbours), so D is nearly the identity and the graph convolutions (`A_used · X · W`)
   propagate with **Aᵀ**: node i gathers from the nodes that list i as a neighbour. A is not
   symmetric (a class with few neighbours gives each a large share), so this is not A.

This follows the public Emotion-GCN code (`utils.py: gen_A, gen_adj`, PanosAntoniadis/emotion-gcn)
step for step; the one reading of ours is that `p` is a parameter (their code fixes 0.5 for both
shares), and a node without neighbours keeps only its self weight (their code divides by zero).
"""

from __future__ import annotations

import warnings

import numpy as np

SELF_WEIGHT = 0.5  # weight a node keeps for itself after re-weighting (Emotion-GCN)


def spearman_matrix(columns: np.ndarray) -> np.ndarray:
    """Spearman correlation between the columns of an (n, m) array; constant columns give 0 off the diagonal."""
    from scipy import stats

    columns = np.asarray(columns, dtype="float64")
    constant = np.ptp(columns, axis=0) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 of a constant column, replaced below
        corr = np.atleast_2d(stats.spearmanr(columns).statistic).astype("float64")
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    np.fill_diagonal(corr, 1.0)
    return corr


def label_matrix(expression, valence, arousal, num_classes: int) -> np.ndarray:
    """(n, K + 2) matrix: one-hot expression, valence, arousal."""
    expression = np.asarray(expression).reshape(-1).astype("int64")
    valence = np.asarray(valence, dtype="float64").reshape(-1)
    arousal = np.asarray(arousal, dtype="float64").reshape(-1)
    if not (len(expression) == len(valence) == len(arousal)) or len(expression) < 2:
        raise ValueError(
            "expression, valence and arousal must have the same length, at least 2. "
            f"Received: {len(expression)}, {len(valence)}, {len(arousal)}"
        )
    if expression.min() < 0 or expression.max() >= num_classes:
        raise ValueError(f"expression codes must lie in 0..{num_classes - 1}. Received: {expression.min()}..{expression.max()}")
    one_hot = np.eye(num_classes, dtype="float64")[expression]
    return np.concatenate([one_hot, valence[:, None], arousal[:, None]], axis=1)


def build_adjacency(expression, valence, arousal, num_classes: int, tau: float = 0.1, p: float = 0.5) -> np.ndarray:
    """The normalised `(K + 2, K + 2)` float32 adjacency of the Emotion-GCN head from training labels."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must lie in [0, 1]. Received: tau={tau!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1]. Received: p={p!r}")
    corr = np.abs(spearman_matrix(label_matrix(expression, valence, arousal, num_classes)))
    k = num_classes
    off_diagonal = ~np.eye(k, dtype=bool)
    corr[:k, :k][off_diagonal] = 0.0
    binary = (corr >= tau).astype("float64")
    np.fill_diagonal(binary, 1.0)

    neighbours = binary.sum(axis=1, keepdims=True) - 1.0
    weighted = binary * p / np.where(neighbours > 0, neighbours, 1.0)
    np.fill_diagonal(weighted, SELF_WEIGHT)

    d_inv_sqrt = 1.0 / np.sqrt(weighted.sum(axis=1))
    return (d_inv_sqrt[:, None] * weighted.T * d_inv_sqrt[None, :]).astype("float32")  # D·Aᵀ·D
