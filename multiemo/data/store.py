"""Feature stores: one vector per utterance id, a presence mask, and metadata, in safetensors.

A store is a single ``.safetensors`` file (a documented, versioned format that never runs code
on load, unlike a pickle) holding

* ``features``: float32 ``(N, D)``, row ``i`` the vector of utterance ``ids[i]`` (zeros when absent);
* ``present``: uint8 ``(N,)``, 1 where the vector was really computed, 0 where it is missing
  (a clip with no face, an unreadable file): absent is never a silent zero;

and in the safetensors header metadata (strings): ``format`` = ``multiemo-feature-store``,
``format_version``, ``ids`` (JSON list of utterance ids, in row order) and ``info`` (JSON: the
extractor's name and settings, model id, dimension, library versions, creation time, and any
extra fields the writer gives).

Writes are atomic (temporary file, then rename). Reading is lazy: opening a store reads only the
header; vectors are read, memory-mapped by safetensors, when first asked for.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "audio.safetensors")
>>> write_store(path, ["a", "b"], np.ones((2, 3), np.float32), present=[True, False],
...             info={"extractor": "toy"})
>>> store = FeatureStore(path)
>>> store.dim, len(store), store.info["extractor"]
(3, 2, 'toy')
>>> vectors, present = store.get(["b", "a"])
>>> vectors.tolist(), present.tolist()
([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], [False, True])
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from multiemo.data.atomic import atomic_path
from multiemo.errors import UserError

__all__ = ["FeatureStore", "StoreError", "write_store", "library_versions", "FORMAT", "FORMAT_VERSION"]

FORMAT = "multiemo-feature-store"
FORMAT_VERSION = 1
_LIBRARIES = ("numpy", "torch", "safetensors", "transformers", "opensmile", "librosa", "av",
              "opencv-python-headless", "scikit-image")


class StoreError(UserError):
    """A feature store that cannot be read or written as asked; names the file and ids."""


def library_versions(names: Iterable[str] = _LIBRARIES) -> dict[str, str]:
    """Versions of the installed libraries that shape features (for store metadata)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            pass
    return out


def write_store(path: str | Path, ids: Sequence[str], features: np.ndarray,
                present: Sequence[bool] | np.ndarray | None = None,
                info: dict[str, Any] | None = None) -> None:
    """Write a store atomically.

    Args:
        path: the ``.safetensors`` file to write (its folder is created).
        ids: utterance ids, unique, in row order.
        features: ``(N, D)`` array; rows of absent items are stored as zeros whatever they hold.
        present: ``(N,)`` booleans; all present when omitted.
        info: metadata (extractor name, settings, model id...); ``dim``, ``num_items``,
            ``num_present``, ``library_versions`` and ``created_at`` are filled in unless given.

    Raises:
        StoreError: duplicate ids, shapes that disagree, or NaN/inf in a present row (the message
            lists the offending utterance ids).
    """
    path = Path(path)
    ids = [str(i) for i in ids]
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != len(ids):
        raise StoreError(f"{path}: features of shape {features.shape} do not match {len(ids)} ids "
                         f"(expected ({len(ids)}, D))")
    present_arr = (np.ones(len(ids), dtype=bool) if present is None
                   else np.asarray(present, dtype=bool).reshape(-1))
    if present_arr.shape[0] != len(ids):
        raise StoreError(f"{path}: {present_arr.shape[0]} presence flags for {len(ids)} ids")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = sorted({i for i in ids if i in seen or seen.add(i)})
        raise StoreError(f"{path}: duplicate utterance ids {dup[:10]}")
    bad = ~np.isfinite(features).all(axis=1) & present_arr
    if bad.any():
        bad_ids = [ids[i] for i in np.flatnonzero(bad)]
        raise StoreError(f"{path}: NaN or inf in the features of {len(bad_ids)} utterance(s): "
                         f"{bad_ids[:10]}{' ...' if len(bad_ids) > 10 else ''}")
    features = np.where(present_arr[:, None], features, 0.0).astype(np.float32)
    meta = dict(info or {})
    meta.setdefault("dim", int(features.shape[1]))
    meta["num_items"] = len(ids)
    meta["num_present"] = int(present_arr.sum())
    meta.setdefault("library_versions", library_versions())
    meta.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
              "ids": json.dumps(ids, ensure_ascii=False), "info": json.dumps(meta, ensure_ascii=False)}
    with atomic_path(path) as tmp:
        save_file({"features": np.ascontiguousarray(features),
                   "present": present_arr.astype(np.uint8)}, tmp, metadata=header)


class FeatureStore:
    """Read side of a store: ids and metadata at open, vectors lazily on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"feature store {self.path} does not exist")
        try:
            with safe_open(str(self.path), framework="numpy") as fh:
                header = fh.metadata() or {}
                keys = set(fh.keys())
        except Exception as err:  # safetensors raises its own error types for bad files
            raise StoreError(f"{self.path}: not a readable safetensors file ({err})") from err
        if header.get("format") != FORMAT or not {"features", "present"} <= keys:
            raise StoreError(f"{self.path}: not a multiemo feature store "
                             f"(format={header.get('format')!r}, tensors={sorted(keys)})")
        if header.get("format_version") != str(FORMAT_VERSION):
            raise StoreError(f"{self.path}: store format version {header.get('format_version')!r} "
                             f"is not supported (this version reads {FORMAT_VERSION})")
        self.ids: list[str] = json.loads(header["ids"])
        self.info: dict[str, Any] = json.loads(header.get("info", "{}"))
        self._row = {uid: i for i, uid in enumerate(self.ids)}
        self._features: np.ndarray | None = None
        self._present: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, uid: object) -> bool:
        return uid in self._row

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}, items={len(self)}, dim={self.dim}, "
                f"extractor={self.info.get('extractor')!r})")

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    def _load(self) -> None:
        if self._features is None:
            with safe_open(str(self.path), framework="numpy") as fh:
                self._features = fh.get_tensor("features")
                self._present = fh.get_tensor("present").astype(bool)
            if self._features.shape != (len(self.ids), self.dim):
                raise StoreError(f"{self.path}: features of shape {self._features.shape} disagree "
                                 f"with its {len(self.ids)} ids and dim {self.dim}")

    @property
    def present(self) -> np.ndarray:
        self._load()
        assert self._present is not None
        return self._present

    def get(self, ids: Sequence[str], missing: str = "error") -> tuple[np.ndarray, np.ndarray]:
        """Vectors ``(n, D)`` and presence ``(n,)`` of ``ids``.

        ``missing="error"`` raises for an id the store does not hold (naming it);
        ``missing="absent"`` returns it as an absent zero vector.
        """
        self._load()
        assert self._features is not None and self._present is not None
        rows = np.fromiter((self._row.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        if (rows < 0).any():
            lost = [i for i, r in zip(ids, rows) if r < 0]
            if missing == "error":
                raise StoreError(f"{self.path}: no vector for {len(lost)} utterance id(s): "
                                 f"{lost[:10]}{' ...' if len(lost) > 10 else ''}")
        safe = np.maximum(rows, 0)
        vectors = self._features[safe].copy()
        present = self._present[safe] & (rows >= 0)
        vectors[~present] = 0.0
        return vectors, present
