"""Classification metrics for emotion recognition in conversations: pure functions over labels.

Scores are **fractions** in ``[0, 1]`` here; reports and tables multiply by 100 (the paper's
tables are in percent). Weighted-F1 is scikit-learn's ``f1_score(average="weighted")``, the
paper's headline metric (PAPER.md §1): per-class F1 averaged with the classes' true counts as
weights. Macro-F1 averages the F1 of all ``num_classes`` classes equally; a class that never
occurs in ``y_true`` nor in ``y_pred`` scores 0 there (scikit-learn's ``zero_division=0``).

>>> scores = classification_scores([0, 0, 1, 1], [0, 1, 1, 1], num_classes=2)
>>> [round(f, 4) for f in scores["per_class_f1"]], scores["support"]
([0.6667, 0.8], [2, 2])
>>> round(scores["weighted_f1"], 4), scores["accuracy"]
(0.7333, 0.75)
>>> confusion([0, 0, 1, 1], [0, 1, 1, 1], num_classes=2).tolist()
[[1, 1], [0, 2]]
>>> low, high = bootstrap_interval([0, 0, 1, 1] * 25, [0, 1, 1, 1] * 25, n_resamples=200)
>>> low <= 0.7333 <= high
True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

__all__ = ["classification_scores", "confusion", "weighted_f1_from_confusion",
           "bootstrap_interval"]


def _as_labels(y_true: Sequence[int], y_pred: Sequence[int],
               num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("no labels to score (y_true is empty)")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= num_classes)
        if bad.any():
            raise ValueError(f"{name} holds class indices outside 0..{num_classes - 1}: "
                             f"{sorted(set(arr[bad].tolist()))[:10]}")
    return t.astype(np.int64), p.astype(np.int64)


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class."""
    t, p = _as_labels(y_true, y_pred, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes,
                                                                                num_classes)


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int],
                          num_classes: int) -> dict:
    """Per-class F1, weighted-F1, macro-F1, accuracy (fractions) and per-class support.

    Args:
        y_true: gold class indices.
        y_pred: predicted class indices, same length.
        num_classes: K; every class ``0..K-1`` gets a column even if it never occurs.

    Returns:
        ``{"per_class_f1": [K floats], "weighted_f1", "macro_f1", "accuracy",
        "support": [K ints], "confusion": [[K ints] * K]}`` (row = true, column = predicted).
    """
    t, p = _as_labels(y_true, y_pred, num_classes)
    classes = list(range(num_classes))
    per_class = f1_score(t, p, labels=classes, average=None, zero_division=0)
    return {
        "per_class_f1": [float(f) for f in per_class],
        "weighted_f1": float(f1_score(t, p, labels=classes, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(t, p, labels=classes, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(t, p)),
        "support": np.bincount(t, minlength=num_classes).tolist(),
        "confusion": confusion(t, p, num_classes).tolist(),
    }


def weighted_f1_from_confusion(matrices: np.ndarray) -> np.ndarray:
    """Weighted-F1 of one ``(K, K)`` or a stack ``(..., K, K)`` of confusion matrices.

    Equal to scikit-learn's ``average="weighted"`` (a class with no true and no predicted
    item gets F1 0 and weight 0).

    >>> float(weighted_f1_from_confusion(np.array([[1, 1], [0, 2]])))  # doctest: +ELLIPSIS
    0.7333...
    """
    m = np.asarray(matrices, dtype=np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)  # (..., K)
    support = m.sum(axis=-1)  # (..., K) true counts
    predicted = m.sum(axis=-2)  # (..., K)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    total = support.sum(axis=-1)
    return np.divide((f1 * support).sum(axis=-1), total, out=np.zeros_like(total),
                     where=total > 0)


def bootstrap_interval(y_true: Sequence[int], y_pred: Sequence[int],
                       groups: Sequence | None = None, *, n_resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0,
                       num_classes: int | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of weighted-F1 (fractions).

    Utterances of one conversation are not independent, so when ``groups`` (e.g. dialogue ids)
    is given, whole groups are resampled with replacement (a cluster bootstrap); otherwise
    single utterances are. Each resample draws as many units as there are; the interval is the
    ``(1-confidence)/2`` and ``(1+confidence)/2`` percentiles of the resampled weighted-F1s.
    Vectorised: each unit is reduced to its confusion counts once, and a resample is a
    count-weighted sum of those.

    Args:
        y_true, y_pred: class indices.
        groups: one group key per item (any hashable), or None.
        n_resamples: number of bootstrap resamples.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the resampling (the same inputs and seed give the same interval).
        num_classes: K; defaults to ``max(y_true, y_pred) + 1``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    t0, p0 = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    k = int(num_classes if num_classes is not None
            else max(int(t0.max(initial=0)), int(p0.max(initial=0))) + 1)
    t, p = _as_labels(t0, p0, k)
    if groups is None:
        unit = np.arange(t.size)
    else:
        keys = np.asarray([str(g) for g in groups])
        if keys.size != t.size:
            raise ValueError(f"groups has {keys.size} entries for {t.size} labels")
        _, unit = np.unique(keys, return_inverse=True)
    num_units = int(unit.max()) + 1
    # per-unit confusion counts, flattened: (G, K*K)
    cells = np.bincount(unit * k * k + t * k + p, minlength=num_units * k * k)
    cells = cells.reshape(num_units, k * k).astype(np.float64)
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, 4_000_000 // num_units)  # bound the (resamples, G) count matrix in memory
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.integers(0, num_units, size=(size, num_units))  # (R, G) unit indices
        flat = (np.arange(size)[:, None] * num_units + draws).reshape(-1)
        counts = np.bincount(flat, minlength=size * num_units).reshape(size, num_units)
        matrices = (counts.astype(np.float64) @ cells).reshape(size, k, k)  # (R, K, K)
        values[start:start + size] = weighted_f1_from_confusion(matrices)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)
