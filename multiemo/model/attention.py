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

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from multiemo.model.packing import AttentionKeys, AttentionRows, Packing  # noqa: F401 (imported from here before)

__all__ = ["Packing", "AttentionRows", "AttentionKeys", "MultiHeadAttention", "FeedForward", "MultiAttnLayer"]


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

    @staticmethod
    def project_keys_values(attentions: Sequence["MultiHeadAttention"], key_value: Tensor,
                            packing: Packing) -> list[tuple[Tensor, Tensor]]:
        """Keys and values, ``(H·rows, U, d)`` each, of every attention in ``attentions`` over the
        same packed sequence ``key_value`` ``(N, D)``: one product and one padding for all of them
        (in MultiAttn each modality is read by every layer of the other stacks), the same numbers
        as each attention projecting alone."""
        H = attentions[0].num_heads
        weight = torch.cat([w for a in attentions for w in (a.k_proj.weight, a.v_proj.weight)])  # (2n·D, D)
        bias = torch.cat([b for a in attentions for b in (a.k_proj.bias, a.v_proj.bias)])  # (2n·D,)
        heads = packing.pad_heads(F.linear(key_value, weight, bias), 2 * len(attentions) * H).chunk(2 * len(attentions))
        return [(heads[2 * i], heads[2 * i + 1]) for i in range(len(attentions))]

    def forward(self, query: Tensor, key_value: Tensor | tuple[Tensor, Tensor], keys: AttentionKeys,
                packing: Packing) -> Tensor:
        """Attend from every query utterance to the unmasked utterances of the same dialogue.

        Shapes: N real utterances, D model dim, H heads, d = D / H; rows and U as in
        :meth:`Packing.pad_heads`.

        Args:
            query: ``(N, D)`` packed.
            key_value: the other modality, packed ``(N, D)``; or its keys and values already
                projected by :meth:`project_keys_values` (each ``(H·rows, U, d)``).
            keys: the other modality's key mask (:meth:`Packing.keys`).
            packing: the batch's layout.

        Returns:
            ``(N, D)`` packed; a dialogue with no attendable key gets zeros.
        """
        H = self.num_heads
        d = query.shape[1] // H
        k, v = self.project_keys_values([self], key_value, packing)[0] if isinstance(key_value, Tensor) else key_value
        q = packing.pad_heads(self.q_proj(query), H)  # (H·rows, U, d)
        scores = torch.baddbmm(keys.bias.to(q.dtype), q, k.transpose(1, 2), alpha=d ** -0.5)  # (H·rows, U, U), Eq. 3
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
        i-th other modality (:meth:`MultiHeadAttention.project_keys_values`), whose key mask is ``keys[i]`` → ``(N, D)``."""
        for attend, norm, other, mask in zip(self.cross, self.cross_norms, others, keys):
            x = norm(x + self.dropout(attend(x, other, mask, packing)))  # out of place: under
        return self.ffn_norm(x + self.dropout(self.ffn(x)))  # autocast x is float32, the branch bf16
