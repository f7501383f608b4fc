"""Packed and padded layouts of one batch of dialogues, and the attention rows built from them.

Sequences travel *packed* through the model: ``(N, D)`` with N the real utterances of the batch,
in row-major order of the ``(B, U)`` mask (the order of ``x[mask]``). :class:`Packing` moves
between that and the padded ``(B, U, D)`` layout, and lays dialogues out for attention: several
short dialogues share one row of U slots under a block-diagonal key mask, so the padded
attention tensors hold about N slots, not B·U.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Packing", "AttentionRows", "AttentionKeys"]


class Packing:
    """Moves between padded ``(B, U, ...)`` and packed ``(N, ...)`` layouts of one batch.

    >>> packing = Packing(torch.tensor([[True, True], [True, False]]))
    >>> packing.pad(torch.tensor([[1.], [2.], [3.]])).squeeze(-1).tolist()
    [[1.0, 2.0], [3.0, 0.0]]
    """

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask  # (B, U) bool
        self.shape = tuple(mask.shape)
        self.index = mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of real rows

    def pack(self, x: Tensor) -> Tensor:
        """``(B, U, ...)`` → ``(N, ...)``."""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.index)

    def pad(self, x: Tensor) -> Tensor:
        """``(N, ...)`` → ``(B, U, ...)`` with zeros at padding."""
        out = x.new_zeros(self.shape[0] * self.shape[1], *x.shape[1:])
        return out.index_copy_(0, self.index, x).view(*self.shape, *x.shape[1:])  # in place: no clone

    @functools.cached_property
    def attention_rows(self) -> "AttentionRows":
        """Lay the dialogues out for attention: several short dialogues share one row of U slots
        (first-fit, longest first), so the padded attention tensors hold ~N slots instead of B·U;
        the key mask is block-diagonal, so a dialogue only ever sees its own utterances. Made on
        first use (a model without MultiAttn never needs it)."""
        B, U = self.shape
        lengths = self.mask.sum(dim=1).tolist()
        fill: list[int] = []  # slots used in each row
        start = [0] * B  # first slot of each dialogue
        for b in sorted(range(B), key=lambda b: -lengths[b]):
            n = lengths[b]
            row = next((r for r, used in enumerate(fill) if used + n <= U), None)
            if row is None:
                row = len(fill)
                fill.append(0)
            start[b] = row * U + fill[row]
            fill[row] += n
        dialogue, position = self.mask.nonzero(as_tuple=True)  # (N,) each, row-major
        slot = torch.tensor(start, device=self.mask.device)[dialogue] + position  # (N,)
        # the dialogue in each slot, -1 where empty
        slot_dialogue = torch.full((len(fill) * U,), -1, device=self.mask.device).index_copy_(0, slot, dialogue)
        return AttentionRows(len(fill), slot, slot_dialogue)

    def pad_heads(self, x: Tensor, heads: int) -> Tensor:
        """``(N, heads·d)`` → ``(heads·rows, U, d)``: head-major attention rows (see
        :meth:`keys`), zeros in empty slots."""
        N, d = x.shape[0], x.shape[1] // heads
        U = self.shape[1]
        rows, slot, _ = self.attention_rows
        out = x.new_zeros(heads, rows * U, d)
        return out.index_copy_(1, slot, x.view(N, heads, d).transpose(0, 1)).view(heads * rows, U, d)

    def pack_heads(self, x: Tensor) -> Tensor:
        """``(heads·rows, U, d)`` → ``(N, heads·d)``, the inverse of :meth:`pad_heads`."""
        rows, slot, _ = self.attention_rows
        x = x.reshape(-1, rows * self.shape[1], x.shape[-1]).index_select(1, slot)  # (heads, N, d)
        return x.transpose(0, 1).reshape(x.shape[1], -1)

    def keys(self, key_mask: Tensor, heads: int) -> "AttentionKeys":
        """What every attention over keys ``key_mask`` ``(B, U)`` (True = may be attended) needs."""
        U = self.shape[1]
        rows, slot, slot_dialogue = self.attention_rows
        seg = slot_dialogue.view(rows, U)  # (rows, U)
        present = torch.zeros(rows * U, dtype=torch.bool, device=seg.device)
        present[slot] = self.pack(key_mask)
        allowed = (seg[:, :, None] == seg[:, None, :]) & present.view(rows, 1, U)  # (rows, U, U)
        # a query with no attendable key (an empty slot, a dialogue whose key vectors are all
        # absent) would take a softmax over nothing (NaN): it attends to its whole row instead,
        # and a real query's output is zeroed
        lonely = ~allowed.any(dim=2, keepdim=True)  # (rows, U, 1)
        bias = torch.zeros(allowed.shape, device=seg.device).masked_fill_(~(allowed | lonely), float("-inf"))
        bias = bias.expand(heads, *bias.shape).reshape(heads * rows, U, U)
        lonely = lonely.view(-1)[slot]  # (N,)
        zero = None if not bool(lonely.any()) else (~lonely)[:, None].float()
        return AttentionKeys(bias, zero)


class AttentionRows(NamedTuple):
    """The attention layout of a batch (:attr:`Packing.attention_rows`)."""

    rows: int  # rows of U slots
    slot: Tensor  # (N,) flat slot of each packed utterance
    slot_dialogue: Tensor  # (rows·U,) the dialogue in each slot, -1 where empty


class AttentionKeys(NamedTuple):
    """The key mask of one modality in the form attention uses it, made once per batch."""

    bias: Tensor  # (H·rows, U, U): 0 where a query may attend to a key, -inf elsewhere
    rows: Tensor | None  # (N, 1): 0 for queries with no attendable key, 1 elsewhere; None if all have one
