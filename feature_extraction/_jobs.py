"""What the audio and visual commands share: the output / projection config blocks, the media
root, and the parse → build → run → project flow of their ``main``."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from feature_extraction.media import MediaError
from feature_extraction.runner import (Absent, CorpusSource, check_splits, load_corpus, merge_job,
                                       run_job)
from multiemo.config import ConfigError, check_open_unit, load, set_num_threads, to_dict
from multiemo.data.corpus import Corpus
from multiemo.data.splits import SplitError, ValidationRule

__all__ = ["ProjectionConfig", "media_root_of", "raw_store_path", "run_extraction", "map_items",
           "job_settings", "RUNTIME_KEYS"]

#: fields of an extraction config that say where and how fast a job runs, never what its
#: vectors are: left out of the settings recorded in the store (so changing them neither breaks
#: a resume nor the record of how the features were made)
RUNTIME_KEYS = ("corpus", "out", "splits", "device", "num_threads", "batch_size", "num_workers",
                "encode_batch_size", "chunk_items", "chunk_seconds", "finetuned_dir")


def job_settings(cfg: Any) -> dict[str, Any]:
    """The settings of an extraction config that shape its vectors, as plain data: the job config
    without :data:`RUNTIME_KEYS`. Recorded in the store (``info["settings"]``), so that a trained
    model can run the same extraction on new conversations (``multiemo export`` / ``predict``)."""
    return {k: v for k, v in to_dict(cfg).items() if k not in RUNTIME_KEYS}

log = logging.getLogger("feature_extraction")
T = TypeVar("T")
R = TypeVar("R")


def map_items(workers: int, fn: Callable[[T], R], items: list[T]) -> list[R | Exception]:
    """``fn`` over ``items`` in ``workers`` threads, in order; a :class:`MediaError` or
    :class:`Absent` becomes that item's outcome instead of stopping the batch. Threads pay off
    because decoding (PyAV), OpenCV, scikit-image's cascade and openSMILE release the GIL."""
    def safe(item: T) -> R | Exception:
        try:
            return fn(item)
        except (MediaError, Absent) as err:
            return err
    if workers <= 1 or len(items) <= 1:
        return [safe(item) for item in items]
    with ThreadPoolExecutor(min(workers, len(items))) as pool:
        return list(pool.map(safe, items))


@dataclass(frozen=True)
class ProjectionConfig:
    """Optional PCA to ``dim`` dimensions, fitted on the present rows of the train dialogues of
    the validation rule ``validation``, ``valid_fraction``, ``valid_seed`` only (the training
    config's ``data`` settings, same keys and meaning: :mod:`multiemo.data.splits`), so the
    projection never learns from the dialogues a model built on it validates or tests on.

    ``dim: 0`` keeps the raw features. Otherwise the job writes the raw store beside ``out``
    (``<name>.raw.safetensors``), and ``out`` holds the projected one (docs/method.md §5: 512).
    """

    dim: int = 0
    standardize: bool = True  # z-score each raw feature with the fitting dialogues' statistics
    validation: Literal["auto", "dev", "fraction"] = "auto"
    valid_fraction: float = 0.05
    valid_seed: int = 2023

    def __post_init__(self) -> None:
        if self.dim < 0:
            raise ValueError(f"projection.dim must be >= 0 (0: no projection), got {self.dim}")
        check_open_unit(self, "projection", ("valid_fraction",))


def media_root_of(source: CorpusSource) -> str | None:
    """Where utterance media paths are resolved: ``corpus.media_root``, else the media root the
    corpus recorded when it was built (``info["media_root"]``), else the working directory."""
    if source.media_root:
        return source.media_root
    path = Path(source.path)
    return Corpus.load(path).info.get("media_root") if path.is_file() else None


def raw_store_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".safetensors") + ".raw.safetensors")


def run_extraction(args, *, config_cls: type, build: Callable[[Any], Any]) -> int:
    """A ``run_command`` of an extraction command: config → extractor → run (or merge) → project.

    ``args`` are the parsed options of :mod:`multiemo.cli` (``--config``, overrides, ``--shard``,
    ``--merge``, ``--device``, ``--no-progress``). ``config_cls`` must have the fields ``corpus``
    (:class:`CorpusSource`), ``out``, ``device``, ``splits``, ``num_threads``, ``chunk_items``,
    ``chunk_seconds`` and ``projection`` (:class:`ProjectionConfig`); ``build`` makes the extractor.
    """
    cfg = load(config_cls, args.config, args.overrides)
    try:
        extractor = build(cfg)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err)) from None
    set_num_threads(cfg.num_threads)
    corpus = load_corpus(cfg.corpus)
    check_splits(corpus, list(cfg.splits) or None)  # --merge too: a bad override is never ignored
    out = Path(cfg.out)
    store = raw_store_path(out) if cfg.projection.dim else out
    if args.merge:
        merged: Path | None = merge_job(store)
    else:
        summary = run_job(extractor, corpus, store, shard=args.shard,
                          device=args.device or cfg.device, splits=list(cfg.splits) or None,
                          progress=not args.no_progress, chunk_items=cfg.chunk_items,
                          chunk_seconds=cfg.chunk_seconds, settings=job_settings(cfg))
        merged = summary.merged
        if summary.failed:
            log.warning("%d item(s) failed; their errors are in %s.work/failures-*.jsonl and the "
                        "store's info['failed']", summary.failed, store)
    if merged is not None and cfg.projection.dim:
        from feature_extraction._projection import project_store
        rule = ValidationRule.of(cfg.projection)
        try:
            project_store(store, out, corpus, cfg.projection.dim,
                          standardize=cfg.projection.standardize, rule=rule)
        except SplitError as err:
            raise ConfigError(f"projection: {err}") from None
        log.info("projected %s to %d dimensions (PCA fitted on the train dialogues of %s) → %s",
                 store.name, cfg.projection.dim, rule.describe(corpus), out)
    return 0
