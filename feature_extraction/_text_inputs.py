"""EmoBERTa-style inputs: the target utterance with its speaker, and as much context as fits.

Each utterance is the text ``"<speaker>: <transcript>"``, tokenized once without special tokens.
An input is laid out with the tokenizer's own special tokens (found by probing the tokenizer,
so BERT, RoBERTa, DeBERTa... each get their usual ones)::

    no context:        [CLS] target [SEP]                               (single-sequence template)
    past only:         [CLS] past_1 ... past_k [SEP] target [SEP]          (pair template)
    future only:       [CLS] target [SEP] future_1 ... [SEP]
    past and future:   [CLS] past ... [SEP] target [SEP] future ... [SEP]   (RoBERTa: </s></s>)

Context utterances are added nearest first (alternating past and future when both are asked
for) while they fit in ``max_length`` and up to ``past`` / ``future`` of them; a context
utterance that does not fit whole is left out, never cut. A target longer than the budget is cut
at its end. The target's span is recorded for mean pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multiemo.data.corpus import Corpus

__all__ = ["SpecialLayout", "ModelInput", "build_inputs", "utterance_text", "collate", "pool"]


@dataclass(frozen=True)
class SpecialLayout:
    """The special tokens a tokenizer puts around one sequence and around a pair."""

    single_prefix: tuple[int, ...]
    single_suffix: tuple[int, ...]
    pair_prefix: tuple[int, ...]
    pair_middle: tuple[int, ...]
    pair_suffix: tuple[int, ...]

    @classmethod
    def probe(cls, tokenizer: Any) -> "SpecialLayout":
        """Find the tokenizer's templates from its own output on two short probe texts."""
        single = tokenizer("a", return_special_tokens_mask=True)
        pair = tokenizer("a", "b", return_special_tokens_mask=True)
        s, p = _specials(single), _specials(pair)
        if len(s) != 2 or len(p) != 3:
            raise ValueError(f"cannot read the special-token layout of tokenizer "
                             f"{type(tokenizer).__name__}: single {s}, pair {p}")
        return cls(s[0], s[1], p[0], p[1], p[2])

    @property
    def num_single(self) -> int:
        return len(self.single_prefix) + len(self.single_suffix)

    @property
    def num_pair(self) -> int:
        return len(self.pair_prefix) + len(self.pair_middle) + len(self.pair_suffix)


def _specials(enc: Any) -> list[tuple[int, ...]]:
    """The runs of special tokens around the non-special runs: before, between..., after."""
    out: list[list[int]] = [[]]
    in_text = False
    for token, is_special in zip(enc["input_ids"], enc["special_tokens_mask"]):
        if is_special:
            if in_text:
                out.append([])
                in_text = False
            out[-1].append(token)
        else:
            in_text = True
    if in_text:
        out.append([])
    return [tuple(x) for x in out]


@dataclass(frozen=True)
class ModelInput:
    ids: tuple[int, ...]  # the whole input, special tokens included
    target: tuple[int, int]  # [start, end) of the target's tokens in ids
    num_past: int
    num_future: int


def utterance_text(speaker: str, text: str, with_speaker: bool = True) -> str:
    """``"Ross: Hi."``; just the transcript when speakers are left out."""
    return f"{speaker}: {text}" if with_speaker else text


def build_inputs(corpus: Corpus, tokens: dict[str, list[int]], layout: SpecialLayout, *,
                 max_length: int, past: int, future: int, filler: int) -> dict[str, ModelInput]:
    """The input of every utterance of ``corpus``.

    Args:
        corpus: dialogues give each utterance its context.
        tokens: utterance id → token ids of its ``"<speaker>: <text>"`` (no special tokens).
        layout: the tokenizer's special tokens.
        max_length: the longest input, special tokens included.
        past, future: the most context utterances to put before / after the target.
        filler: a token for a target with no tokens at all (empty transcript, no speaker).
    """
    inputs: dict[str, ModelInput] = {}
    for dialogue in corpus.dialogues:
        utts = dialogue.utterances
        for i, utt in enumerate(utts):
            target = list(tokens[utt.id]) or [filler]
            budget = max_length - (layout.num_pair if past or future else layout.num_single)
            if budget < 1:
                raise ValueError(f"max_length={max_length} leaves no room for the target")
            target = target[:budget]
            room = budget - len(target)
            before: list[list[int]] = []
            after: list[list[int]] = []
            candidates = []  # nearest first, alternating past and future
            for k in range(1, max(past, future) + 1):
                if k <= past and i - k >= 0:
                    candidates.append(("past", i - k))
                if k <= future and i + k < len(utts):
                    candidates.append(("future", i + k))
            past_open = future_open = True
            for side, j in candidates:
                if (side == "past" and not past_open) or (side == "future" and not future_open):
                    continue
                seg = tokens[utts[j].id]
                # both sides in use costs an extra middle separator
                extra = len(layout.pair_middle) if (side == "past" and not before and after) or \
                    (side == "future" and not after and before) else 0
                if len(seg) + extra > room:
                    if side == "past":
                        past_open = False
                    else:
                        future_open = False
                    continue
                room -= len(seg) + extra
                (before.insert(0, seg) if side == "past" else after.append(seg))
            inputs[utt.id] = _assemble(layout, before, target, after, len(before), len(after))
    return inputs


def _assemble(layout: SpecialLayout, before: list[list[int]], target: list[int],
              after: list[list[int]], num_past: int, num_future: int) -> ModelInput:
    past_ids = [t for seg in before for t in seg]
    future_ids = [t for seg in after for t in seg]
    if not past_ids and not future_ids:
        ids = [*layout.single_prefix, *target, *layout.single_suffix]
        start = len(layout.single_prefix)
    elif not future_ids:
        ids = [*layout.pair_prefix, *past_ids, *layout.pair_middle, *target, *layout.pair_suffix]
        start = len(layout.pair_prefix) + len(past_ids) + len(layout.pair_middle)
    elif not past_ids:
        ids = [*layout.pair_prefix, *target, *layout.pair_middle, *future_ids, *layout.pair_suffix]
        start = len(layout.pair_prefix)
    else:
        ids = [*layout.pair_prefix, *past_ids, *layout.pair_middle, *target, *layout.pair_middle,
               *future_ids, *layout.pair_suffix]
        start = len(layout.pair_prefix) + len(past_ids) + len(layout.pair_middle)
    return ModelInput(tuple(ids), (start, start + len(target)), num_past, num_future)


def collate(inputs: list[ModelInput], pad_id: int) -> dict[str, "torch.Tensor"]:
    """Pad a batch: ``input_ids`` and ``attention_mask`` (B, T), ``target_mask`` (B, T)."""
    import torch

    width = max(len(x.ids) for x in inputs)
    ids = torch.full((len(inputs), width), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(inputs), width), dtype=torch.long)  # (B, T)
    target = torch.zeros((len(inputs), width), dtype=torch.bool)  # (B, T)
    for row, x in enumerate(inputs):
        ids[row, :len(x.ids)] = torch.tensor(x.ids)
        attention[row, :len(x.ids)] = 1
        target[row, x.target[0]:x.target[1]] = True
    return {"input_ids": ids, "attention_mask": attention, "target_mask": target}


def pool(hidden: "torch.Tensor", target_mask: "torch.Tensor", pooling: str) -> "torch.Tensor":
    """The utterance vector from the encoder's last hidden states.

    Args:
        hidden: (B, T, H) last hidden states.
        target_mask: (B, T) True on the target utterance's own tokens.
        pooling: ``first`` (the first token, [CLS] / <s>) or ``mean`` (over the target's tokens).

    Returns:
        (B, H)
    """
    if pooling == "first":
        return hidden[:, 0]  # (B, H)
    if pooling == "mean":
        weights = target_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # (B, H)
    raise ValueError(f"pooling must be 'first' or 'mean', got {pooling!r}")
