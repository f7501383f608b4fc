"""A fixed-size linear projection of a feature store: PCA fitted on training dialogues only.

The paper projects its openSMILE functionals to 512 dimensions (docs/method.md §5). After a job has
merged its raw store, :func:`project_store` fits scikit-learn's PCA (full SVD: deterministic) on
the *present* rows of the train dialogues of the validation rule (never its validation dialogues,
nor test: :mod:`multiemo.data.splits`), optionally after standardising each feature with those
rows' mean and standard deviation, and applies it to every row of every split. Absent rows stay
absent. Two files come out:

* the projected store (``out``), whose ``info["projection"]`` records the method, the fitting
  dialogues and row count, the raw store and the explained variance, and whose
  ``info["learned_from"]`` lists the dialogues the projection was fitted on;
* the projection itself, ``<out stem>.projection.safetensors``: ``center`` ``(D,)``, ``scale``
  ``(D,)`` and ``components`` ``(K, D)``, with ``y = ((x - center) / scale) @ components.T``
  (:func:`load_projection` / :func:`apply_projection` project new vectors the same way).

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
>>> params = fit_projection(x, dim=3)
>>> apply_projection(x, params).shape
(50, 3)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from multiemo.data.corpus import Corpus
from multiemo.data.splits import ValidationRule, learned_record
from multiemo.data.atomic import atomic_path
from multiemo.data.store import FeatureStore, write_store

__all__ = ["fit_projection", "apply_projection", "project_store", "load_projection",
           "projection_path", "project_with"]


def fit_projection(x: np.ndarray, dim: int, standardize: bool = True) -> dict[str, np.ndarray]:
    """Fit PCA to ``dim`` components on rows ``x`` ``(N, D)``; returns center, scale, components.

    Raises:
        ValueError: ``dim`` larger than the rows or features available.
    """
    from sklearn.decomposition import PCA
    n, d = x.shape
    if not 0 < dim <= min(n, d):
        raise ValueError(f"a projection to {dim} dimensions needs at least {dim} present fitting "
                         f"rows and {dim} features; there are {n} rows of {d} features")
    x = x.astype(np.float64)
    center = x.mean(axis=0)
    scale = x.std(axis=0) if standardize else np.ones(d)
    scale[scale < 1e-12] = 1.0  # constant features stay, unscaled (PCA gives them no weight)
    pca = PCA(n_components=dim, svd_solver="full").fit((x - center) / scale)
    return {"center": (center + scale * pca.mean_).astype(np.float32),
            "scale": scale.astype(np.float32),
            "components": pca.components_.astype(np.float32),
            "explained_variance_ratio": pca.explained_variance_ratio_.astype(np.float32)}


def apply_projection(x: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """``((x - center) / scale) @ components.T``: ``(N, D)`` → ``(N, K)`` float32."""
    return (((x - params["center"]) / params["scale"]) @ params["components"].T).astype(np.float32)


def projection_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".safetensors") + ".projection.safetensors")


def load_projection(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata of a ``.projection.safetensors`` file."""
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as fh:
        meta = json.loads((fh.metadata() or {}).get("info", "{}"))
        return {k: fh.get_tensor(k) for k in fh.keys()}, meta


def project_store(raw: str | Path, out: str | Path, corpus: Corpus, dim: int, *,
                  standardize: bool = True, rule: ValidationRule | None = None) -> Path:
    """Fit the projection on the present rows of ``rule``'s train dialogues (never its validation
    or test ones) of store ``raw``; write ``out``, recording those dialogues
    (``info["learned_from"]``) so that training can refuse a leak.

    Raises:
        SplitError: the corpus cannot be split by ``rule``.
        ValueError: too few present rows to fit.
    """
    from safetensors.numpy import save_file
    raw, out = Path(raw), Path(out)
    rule = rule or ValidationRule()
    store = FeatureStore(raw)
    fitting = rule.split(corpus)["train"]
    fit_ids = {u.id for d in fitting for u in d.utterances}
    features, present = store.get(store.ids)
    rows = np.array([uid in fit_ids for uid in store.ids]) & present
    try:
        params = fit_projection(features[rows], dim, standardize)
    except ValueError as err:
        raise ValueError(f"{raw}: {err} (present rows of the train dialogues)") from None
    projected = apply_projection(features, params)
    variance = float(params.pop("explained_variance_ratio").sum())
    record = {"method": "pca", "dim": dim, "raw_dim": store.dim, "standardize": standardize,
              "fit_dialogues": rule.describe(corpus) + " train", "fit_rows": int(rows.sum()),
              "raw_store": raw.name,
              "params": projection_path(out).name, "explained_variance": round(variance, 6)}
    params_file = projection_path(out)
    with atomic_path(params_file) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in params.items()}, tmp,
                  metadata={"format": "multiemo-projection", "info": json.dumps(record)})
    _write_projected(store, out, projected, record,
                     learned_record("PCA projection", rule, fitting, corpus))
    return out


def _write_projected(store: FeatureStore, out: Path, projected: np.ndarray,
                     record: dict[str, Any], learned: dict[str, Any] | None = None) -> None:
    """``out``: the raw store's ids, presence and metadata (less what ``write_store`` fills in
    again) with the projected vectors, ``info["projection"] = record`` and, for a fitted
    projection, ``info["learned_from"] = learned``."""
    info = {k: v for k, v in store.info.items()
            if k not in ("dim", "num_items", "num_present", "library_versions", "created_at")}
    info["projection"] = record
    if learned:
        info["learned_from"] = learned
    write_store(out, store.ids, projected, store.present, info=info)


def project_with(raw: str | Path, out: str | Path, params_file: str | Path) -> Path:
    """Apply a saved projection (``.projection.safetensors``, fitted by :func:`project_store` on
    the training features) to store ``raw``, writing ``out``: how new conversations are projected
    exactly as the features a model was trained on. Absent rows stay absent."""
    raw, out = Path(raw), Path(out)
    params, record = load_projection(params_file)
    store = FeatureStore(raw)
    features, _ = store.get(store.ids)
    if features.shape[1] != params["components"].shape[1]:
        raise ValueError(f"{raw}: vectors of dimension {features.shape[1]}, but the projection "
                         f"{params_file} reads {params['components'].shape[1]}")
    _write_projected(store, out, apply_projection(features, params),
                     {**record, "applied_from": Path(params_file).name})
    return out
