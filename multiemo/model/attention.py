"""Multi-head cross-attention with a key mask, and one MultiAttn layer (PAPER.md §2.2, Eqs. 2–12).

Unlike the released code, attention never looks at padded utterances (nor at utterances whose
vector in the key modality is absent): their keys are masked out, so appending padding to a
dialogue leaves the outputs of its real utterances unchanged.

Sequences travel *packed*: ``(N, D)`` with N the real utterances of the batch, in row-major
order of the ``(B, U)`` mask. Every linear map, residual, LayerNorm and feed-forward runs on
the N real rows only; a :class:`Packing` scatters them into the padded ``(B, U, D)`` layout just
for the attention product itself. On MELD-shaped batches this skips well over half the work.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["Packing", "AttentionKeys", "MultiHeadAttention", "FeedForward", "MultiAttnLayer"]


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

    def pad_heads(self, x: Tensor, heads: int) -> Tensor:
        """``(N, heads·d)`` → ``(heads·B, U, d)``, head-major, zeros at padding (ready for ``bmm``)."""
        N, d = x.shape[0], x.shape[1] // heads
        B, U = self.shape
        out = x.new_zeros(heads, B * U, d)
        return out.index_copy_(1, self.index, x.view(N, heads, d).transpose(0, 1)).view(heads * B, U, d)

    def pack_heads(self, x: Tensor) -> Tensor:
        """``(heads·B, U, d)`` → ``(N, heads·d)``, the inverse of :meth:`pad_heads`."""
        B, U = self.shape
        x = x.reshape(-1, B * U, x.shape[-1]).index_select(1, self.index)  # (heads, N, d)
        return x.transpose(0, 1).reshape(x.shape[1], -1)

    def keys(self, key_mask: Tensor, heads: int) -> "AttentionKeys":
        """What every attention over keys ``key_mask`` ``(B, U)`` (True = may be attended) needs."""
        B, U = self.shape
        any_key = key_mask.any(dim=1)  # (B,)
        # a dialogue without any attendable key would give softmax over nothing (NaN):
        # it attends to everything and its outputs are zeroed
        safe = key_mask | ~any_key[:, None]  # (B, U)
        bias = torch.zeros(B, U, device=key_mask.device).masked_fill_(~safe, float("-inf"))
        bias = bias[None, :, None, :].expand(heads, B, 1, U).reshape(heads * B, 1, U)
        rows = None if bool(any_key.all()) else self.pack(any_key[:, None].expand(B, U))[:, None].float()
        return AttentionKeys(bias, rows)


class AttentionKeys(NamedTuple):
    """The key mask of one modality in the form attention uses it, made once per batch."""

    bias: Tensor  # (H·B, 1, U): 0 where a key may be attended, -inf elsewhere
    rows: Tensor | None  # (N, 1): 0 for queries of a dialogue with no key, 1 elsewhere; None if all have one


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

    def forward(self, query: Tensor, key_value: Tensor, keys: AttentionKeys, packing: Packing) -> Tensor:
        """Attend from every query utterance to the unmasked utterances of the same dialogue.

        Shapes: N real utterances, B dialogues, U utterances, D model dim, H heads, d = D / H.

        Args:
            query: ``(N, D)`` packed.
            key_value: ``(N, D)`` packed, the other modality.
            keys: the other modality's key mask (:meth:`Packing.keys`).
            packing: the batch's layout.

        Returns:
            ``(N, D)`` packed; a dialogue with no attendable key gets zeros.
        """
        H = self.num_heads
        d = query.shape[1] // H
        q, k, v = (packing.pad_heads(proj(x), H) for proj, x in
                   ((self.q_proj, query), (self.k_proj, key_value), (self.v_proj, key_value)))  # (H·B, U, d)
        scores = torch.baddbmm(keys.bias.to(q.dtype), q, k.transpose(1, 2), alpha=d ** -0.5)  # (H·B, U, U), Eq. 3
        out = packing.pack_heads(torch.bmm(torch.softmax(scores, dim=-1), v))  # (N, D)
        if keys.rows is not None:
            out = out * keys.rows.to(out.dtype)
        return self.out_proj(out)  # (N, D)


class FeedForward(nn.Module):
    """``Dropout(W2 ReLU(W1 x))`` (Eq. 10)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.linear2(torch.relu(self.linear1(x))))


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

    def forward(self, x: Tensor, others: list[Tensor], keys: list[AttentionKeys], packing: Packing) -> Tensor:
        """``x`` ``(N, D)`` packed; ``others[i]`` ``(N, D)`` with key mask ``keys[i]`` → ``(N, D)``."""
        for attend, norm, other, mask in zip(self.cross, self.cross_norms, others, keys):
            x = norm(x + self.dropout(attend(x, other, mask, packing)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))
