"""Multi-head cross-attention with a key mask, and one MultiAttn layer (docs/method.md §2.2, Eqs. 2–12).

Unlike the released code, attention never looks at padded utterances (nor at utterances whose
vector in the key modality is absent): their keys are masked out, so appending padding to a
dialogue leaves the outputs of its real utterances unchanged.

Sequences travel *packed*: ``(N, D)`` with N the real utterances of the batch, in row-major
order of the ``(B, U)`` mask. Every linear map, residual, LayerNorm and feed-forward runs on
the N real rows only; a :class:`Packing` scatters them into padded attention rows just for the
attention product itself, several short dialogues sharing one row of U slots under a
block-diagonal key mask (so the padded tensors hold about N slots, not B·U). On MELD-shaped
batches this skips well over half the work. ``tests/test_model.py`` holds the attention to
``torch.nn.MultiheadAttention`` run on each dialogue alone.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Packing", "AttentionRows", "AttentionKeys", "MultiHeadAttention", "project_keys_values", "FeedForward", "MultiAttnLayer"]


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


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with ``num_heads`` heads (Eqs. 2–5).

    Each head has its own query, key and value maps of size ``dim / num_heads``; they are kept as
    the row blocks of one ``dim × dim`` map per role, which is the same parametrisation.

    Args:
        dim: model dimension.
        num_heads: number of heads; must divide ``dim``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key_value: tuple[Tensor, Tensor], keys: AttentionKeys,
                packing: Packing) -> Tensor:
        """Attend from every query utterance to the unmasked utterances of the same dialogue.

        Shapes: N real utterances, D model dim, H heads, d = D / H; rows and U as in
        :meth:`Packing.pad_heads`.

        Args:
            query: ``(N, D)`` packed.
            key_value: this attention's keys and values of the other modality, each
                ``(H·rows, U, d)``, from :func:`project_keys_values`.
            keys: the other modality's key mask (:meth:`Packing.keys`).
            packing: the batch's layout.

        Returns:
            ``(N, D)`` packed; a dialogue with no attendable key gets zeros.
        """
        H = self.num_heads
        d = query.shape[1] // H
        k, v = key_value
        q = packing.pad_heads(self.q_proj(query), H)  # (H·rows, U, d)
        scores = torch.baddbmm(keys.bias.to(q.dtype), q, k.transpose(1, 2), alpha=d ** -0.5)  # (H·rows, U, U), Eq. 3
        out = packing.pack_heads(torch.bmm(torch.softmax(scores, dim=-1), v))  # (N, D)
        if keys.rows is not None:
            out = out * keys.rows.to(out.dtype)
        return self.out_proj(out)  # (N, D)


def project_keys_values(attentions: Sequence[MultiHeadAttention], key_value: Tensor,
                        packing: Packing) -> list[tuple[Tensor, Tensor]]:
    """Keys and values, ``(H·rows, U, d)`` each, of every attention in ``attentions`` over the
    same packed sequence ``key_value`` ``(N, D)``: one product and one padding for all of them
    (in MultiAttn each modality is read by every layer of the other stacks)."""
    H = attentions[0].num_heads
    weight = torch.cat([w for a in attentions for w in (a.k_proj.weight, a.v_proj.weight)])  # (2n·D, D)
    bias = torch.cat([b for a in attentions for b in (a.k_proj.bias, a.v_proj.bias)])  # (2n·D,)
    heads = packing.pad_heads(F.linear(key_value, weight, bias), 2 * len(attentions) * H).chunk(2 * len(attentions))
    return [(heads[2 * i], heads[2 * i + 1]) for i in range(len(attentions))]


class FeedForward(nn.Module):
    """``Dropout(W2 ReLU(W1 x))`` (Eq. 10)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.linear2(torch.relu_(self.linear1(x))))  # in place: one (N, hidden) less


class MultiAttnLayer(nn.Module):
    """One layer of a MultiAttn stack: cross-attend to each other modality in turn, then FFN.

    With query F and other modalities A (then B)::

        H1  = LayerNorm(F  + Dropout(MHA(F,  A, A)))
        H2  = LayerNorm(H1 + Dropout(MHA(H1, B, B)))
        out = LayerNorm(H2 + Dropout(FFN(H2)))

    Args:
        dim: model dimension.
        num_heads: attention heads.
        hidden_dim: feed-forward hidden size.
        num_others: how many other modalities this stack attends to (2 in the full model).
        dropout: dropout rate.
    """

    def __init__(self, dim: int, num_heads: int, hidden_dim: int, num_others: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.cross = nn.ModuleList(MultiHeadAttention(dim, num_heads) for _ in range(num_others))
        self.cross_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_others))
        self.ffn = FeedForward(dim, hidden_dim, dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, others: list[tuple[Tensor, Tensor]], keys: list[AttentionKeys],
                packing: Packing) -> Tensor:
        """``x`` ``(N, D)`` packed; ``others[i]``: the keys and values of ``self.cross[i]`` over the
        i-th other modality (:func:`project_keys_values`), whose key mask is ``keys[i]`` → ``(N, D)``."""
        for attend, norm, other, mask in zip(self.cross, self.cross_norms, others, keys):
            x = norm(x + self.dropout(attend(x, other, mask, packing)))  # out of place: under
        return self.ffn_norm(x + self.dropout(self.ffn(x)))  # autocast x is float32, the branch bf16
