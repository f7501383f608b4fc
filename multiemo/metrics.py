"""Classification metrics for emotion recognition in conversations: pure functions over labels.

Scores are **fractions** in ``[0, 1]`` here; reports and tables multiply by 100 (the paper's
tables are in percent). Weighted-F1 is scikit-learn's ``f1_score(average="weighted")``, the
paper's headline metric (docs/method.md §1): per-class F1 averaged with the classes' true counts as
weights. Macro-F1 averages the F1 of all ``num_classes`` classes equally; a class that never
occurs in ``y_true`` nor in ``y_pred`` scores 0 there (scikit-learn's ``zero_division=0``).
Every score is computed from the confusion matrix (one ``bincount``), the same arithmetic for
one epoch and for each bootstrap resample; the tests hold it equal to scikit-learn's
``f1_score``/``accuracy_score``, which are not imported here (their import alone costs a
training process 1.5 s).

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

__all__ = ["classification_scores", "confusion", "weighted_f1_from_confusion",
           "bootstrap_interval", "paired_bootstrap"]

_CHUNK_CELLS = 4_000_000  # bound on the (resamples, units) and (resamples, cells) matrices


def _as_labels(y_true: Sequence[int], y_pred: Sequence[int],
               num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("no labels to score (y_true is empty)")
    return _class_indices(t, "y_true", num_classes), _class_indices(p, "y_pred", num_classes)


def _class_indices(arr: np.ndarray, name: str, num_classes: int) -> np.ndarray:
    """``arr`` as int64 after checking it holds integers in ``0..num_classes-1``."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        raise ValueError(f"{name} holds class indices outside 0..{num_classes - 1}: "
                         f"{sorted(set(arr[bad].tolist()))[:10]}")
    return arr.astype(np.int64)


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class."""
    t, p = _as_labels(y_true, y_pred, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes,
                                                                                num_classes)


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int],
                          num_classes: int, exclude: int | None = None) -> dict:
    """Per-class F1, weighted-F1, macro-F1, micro-F1, accuracy (fractions) and per-class support.

    Args:
        y_true: gold class indices.
        y_pred: predicted class indices, same length.
        num_classes: K; every class ``0..K-1`` gets a column even if it never occurs.
        exclude: a class that micro-F1 leaves out (DailyDialog's "no emotion"): scikit-learn's
            ``f1_score(average="micro", labels=<every other class>)``; None: micro-F1 over all
            classes, which equals accuracy.

    Returns:
        ``{"per_class_f1": [K floats], "weighted_f1", "macro_f1", "micro_f1", "accuracy",
        "support": [K ints], "confusion": [[K ints] * K]}`` (row = true, column = predicted).

    >>> classification_scores([0, 1, 2, 0], [1, 1, 0, 0], 3, exclude=0)["micro_f1"]  # 1 hit, 1 FP, 1 FN
    0.5
    """
    matrix = confusion(y_true, y_pred, num_classes)
    per_class, weighted = _f1_from_confusion(matrix)
    kept = np.ones(num_classes, dtype=bool)
    if exclude is not None:
        kept[exclude] = False
    tp = np.trace(matrix * kept[:, None])  # hits on the kept classes
    both = matrix[kept, :].sum() + matrix[:, kept].sum()  # kept gold + kept predictions
    return {
        "per_class_f1": per_class.tolist(),
        "weighted_f1": float(weighted),
        "macro_f1": float(per_class.mean()),
        "micro_f1": float(2 * tp / both) if both else 0.0,
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "support": matrix.sum(axis=1).tolist(),
        "confusion": matrix.tolist(),
    }


def _f1_from_confusion(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 ``(..., K)`` and weighted-F1 ``(...)`` of a stack of confusion matrices."""
    m = np.asarray(matrices, dtype=np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)  # (..., K)
    support = m.sum(axis=-1)  # (..., K) true counts
    predicted = m.sum(axis=-2)  # (..., K)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    total = support.sum(axis=-1)
    weighted = np.divide((f1 * support).sum(axis=-1), total, out=np.zeros_like(total),
                         where=total > 0)
    return f1, weighted


def weighted_f1_from_confusion(matrices: np.ndarray) -> np.ndarray:
    """Weighted-F1 of one ``(K, K)`` or a stack ``(..., K, K)`` of confusion matrices.

    Equal to scikit-learn's ``average="weighted"`` (a class with no true and no predicted
    item gets F1 0 and weight 0).

    >>> float(weighted_f1_from_confusion(np.array([[1, 1], [0, 2]])))  # doctest: +ELLIPSIS
    0.7333...
    """
    return _f1_from_confusion(matrices)[1]


def _units(groups: Sequence | None, size: int) -> tuple[np.ndarray, int]:
    """Resampling unit (0..G-1) of each item, and G: one per distinct group, else per item."""
    if groups is None:
        return np.arange(size), size
    keys = np.asarray([str(g) for g in groups])
    if keys.size != size:
        raise ValueError(f"groups has {keys.size} entries for {size} labels")
    _, unit = np.unique(keys, return_inverse=True)
    return unit.reshape(-1), int(unit.max()) + 1


def _unit_cells(unit: np.ndarray, num_units: int, t: np.ndarray, p: np.ndarray,
                k: int) -> np.ndarray:
    """Per-unit confusion counts, flattened: ``(G, K*K)`` floats."""
    cells = np.bincount(unit * k * k + t * k + p, minlength=num_units * k * k)
    return cells.reshape(num_units, k * k).astype(np.float64)


def _resampled_counts(rng: np.random.Generator, num_units: int, n_resamples: int,
                      width: int):
    """Yield ``(start, counts)``: how often each unit is drawn, ``(size, G)``, chunk by chunk.

    A resample draws ``G`` units with replacement; chunks keep ``size * max(G, width)`` (the
    count matrix and the ``(size, width)`` product the caller makes of it) bounded.
    """
    chunk = max(1, _CHUNK_CELLS // max(num_units, width))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.integers(0, num_units, size=(size, num_units))  # (R, G) unit indices
        flat = (np.arange(size)[:, None] * num_units + draws).reshape(-1)
        counts = np.bincount(flat, minlength=size * num_units).reshape(size, num_units)
        yield start, counts.astype(np.float64)


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
    unit, num_units = _units(groups, t.size)
    cells = _unit_cells(unit, num_units, t, p, k)  # (G, K*K)
    values = np.empty(n_resamples, dtype=np.float64)
    for start, counts in _resampled_counts(np.random.default_rng(seed), num_units,
                                           n_resamples, k * k):
        matrices = (counts @ cells).reshape(-1, k, k)  # (R, K, K)
        values[start:start + len(counts)] = weighted_f1_from_confusion(matrices)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _prediction_rows(preds: Sequence, size: int, k: int, name: str) -> np.ndarray:
    """``(S, N)`` class indices from one run ``(N,)`` or several runs ``(S, N)``."""
    rows = np.asarray(preds)
    rows = rows.reshape(1, -1) if rows.ndim <= 1 else rows
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"{name} must be (N,) or (runs, N) class indices, got shape "
                         f"{np.shape(preds)}")
    if rows.shape[1] != size:
        raise ValueError(f"y_true has {size} labels but {name} has {rows.shape[1]} per run")
    return _class_indices(rows, name, k)


def paired_bootstrap(y_true: Sequence[int], pred_a: Sequence, pred_b: Sequence,
                     groups: Sequence | None = None, *, num_classes: int | None = None,
                     n_resamples: int = 10000, seed: int = 0,
                     confidence: float = 0.95) -> dict:
    """Paired bootstrap test of system B against system A on the same items (fractions).

    Each resample draws as many units as there are, with replacement: whole groups (e.g.
    dialogues, a cluster bootstrap, as utterances of one conversation are not independent)
    when ``groups`` is given, single items otherwise. The *same* draw scores both systems, so
    the difference ``d* = F1_B - F1_A`` of a resample keeps the pairing. A side may hold several
    runs (e.g. seeds): its score is then the mean over its runs of each metric, every run scored
    on the same resampled units. For weighted-F1 (scikit-learn's ``average="weighted"``) and the
    F1 of each class this gives the observed scores of A and B, the observed difference
    ``d = B - A``, the ``confidence`` percentile interval of ``d*``, and the two-sided p-value of
    H0 "no difference", from the resampled differences centred on ``d``::

        p = (1 + #{r : |d*_r - d| >= |d|}) / (1 + R)

    (at least ``1 / (1 + R)``; 1 when ``d = 0``). Vectorised: each unit is reduced to its
    confusion counts once per run, and a resample is a count-weighted sum of those.

    >>> t, a = [0, 1, 1, 0, 1, 0], [0, 1, 0, 0, 1, 1]
    >>> same = paired_bootstrap(t, a, a, groups=[0, 0, 1, 1, 2, 2], n_resamples=50)
    >>> same["weighted_f1"]["diff"], same["weighted_f1"]["p_value"], same["per_class_f1"]["p_value"]
    (0.0, 1.0, [1.0, 1.0])
    >>> better = paired_bootstrap(t, a, t, n_resamples=50)
    >>> round(better["weighted_f1"]["a"], 4), better["weighted_f1"]["b"], better["resampled"]
    (0.6667, 1.0, 'utterances')

    Args:
        y_true: gold class indices, ``(N,)``.
        pred_a, pred_b: predicted class indices of system A and B: ``(N,)`` for one run, or
            ``(runs, N)`` for several runs of the system (the numbers of runs may differ).
        groups: one group key per item (any hashable, e.g. a dialogue id), or None.
        num_classes: K; defaults to the largest class index in the labels and predictions + 1.
        n_resamples: R, the number of bootstrap resamples.
        seed: seed of the resampling (the same inputs and seed give the same result).
        confidence: coverage of the interval of the difference, in (0, 1).

    Returns:
        ``{"weighted_f1": {"a", "b", "diff", "ci_low", "ci_high", "p_value"}, "per_class_f1":
        {the same keys, each a list of K floats}, "num_classes", "num_units", "resampled"
        ("dialogues" or "utterances"), "runs_a", "runs_b", "n_resamples", "seed",
        "confidence"}``; ``diff`` is B - A.

    Raises:
        ValueError: lengths that differ, class indices out of range, ``n_resamples < 1`` or a
            ``confidence`` outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    t0 = np.asarray(y_true).reshape(-1)
    if t0.size == 0:
        raise ValueError("no labels to score (y_true is empty)")
    k = int(num_classes if num_classes is not None else
            max(int(np.max(t0)), int(np.max(pred_a)), int(np.max(pred_b))) + 1)
    t = _class_indices(t0, "y_true", k)
    rows_a = _prediction_rows(pred_a, t.size, k, "pred_a")
    rows_b = _prediction_rows(pred_b, t.size, k, "pred_b")
    unit, num_units = _units(groups, t.size)
    # per-unit confusion counts of every run, A's then B's: (G, S*K*K)
    cells = np.concatenate([_unit_cells(unit, num_units, t, p, k)
                            for p in np.concatenate([rows_a, rows_b])], axis=1)
    n_a = len(rows_a)

    def difference(counts: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-class and weighted F1 of A, of B (run means) and B - A for ``(R, G)`` counts."""
        f1, weighted = _f1_from_confusion((counts @ cells).reshape(len(counts), -1, k, k))
        scores = np.concatenate([f1, weighted[..., None]], axis=-1)  # (R, S, K+1)
        a, b = scores[:, :n_a].mean(axis=1), scores[:, n_a:].mean(axis=1)
        return a, b, b - a

    obs_a, obs_b, obs = (v[0] for v in difference(np.ones((1, num_units))))
    diffs = np.empty((n_resamples, k + 1), dtype=np.float64)
    for start, counts in _resampled_counts(np.random.default_rng(seed), num_units,
                                           n_resamples, cells.shape[1]):
        diffs[start:start + len(counts)] = difference(counts)[2]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha], axis=0)
    # the 1e-12 keeps ties (e.g. a resample whose difference is exactly 0) from rounding away
    extreme = np.abs(diffs - obs) >= np.abs(obs) - 1e-12
    p_value = (1.0 + extreme.sum(axis=0)) / (1.0 + n_resamples)
    columns = {"a": obs_a, "b": obs_b, "diff": obs, "ci_low": low, "ci_high": high,
               "p_value": p_value}
    return {
        "weighted_f1": {name: float(v[k]) for name, v in columns.items()},
        "per_class_f1": {name: [float(x) for x in v[:k]] for name, v in columns.items()},
        "num_classes": k, "num_units": num_units,
        "resampled": "utterances" if groups is None else "dialogues",
        "runs_a": n_a, "runs_b": len(rows_b),
        "n_resamples": int(n_resamples), "seed": seed, "confidence": confidence,
    }
