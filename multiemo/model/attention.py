"""Multi-head cross-attention with a key mask, and one MultiAttn layer (PAPER.md §2.2, Eqs. 2–12).

Unlike the released code, attention never looks at padded utterances (nor at utterances whose
vector in the key modality is absent): their keys are masked out, so appending padding to a
dialogue leaves the outputs of its real utterances unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MultiHeadAttention", "FeedForward", "MultiAttnLayer"]


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

    def forward(self, query: Tensor, key_value: Tensor, key_mask: Tensor) -> Tensor:
        """Attend from every query utterance to the unmasked utterances of the same dialogue.

        Shapes: B dialogues, U utterances, D model dim, H heads, d = D / H.

        Args:
            query: ``(B, U, D)``.
            key_value: ``(B, U, D)``, the other modality.
            key_mask: ``(B, U)`` bool, True where a key may be attended to.

        Returns:
            ``(B, U, D)``; a dialogue with no attendable key gets zeros.
        """
        B, U, D = query.shape
        H = self.num_heads
        q = self.q_proj(query).view(B, U, H, D // H).transpose(1, 2)  # (B, H, U, d)
        k = self.k_proj(key_value).view(B, U, H, D // H).transpose(1, 2)  # (B, H, U, d)
        v = self.v_proj(key_value).view(B, U, H, D // H).transpose(1, 2)  # (B, H, U, d)
        any_key = key_mask.any(dim=1)  # (B,)
        # a dialogue without any attendable key would give softmax over nothing (NaN):
        # let it attend to everything and zero its output below
        safe_mask = key_mask | ~any_key[:, None]  # (B, U)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask[:, None, None, :])  # (B, H, U, d)
        out = self.out_proj(out.transpose(1, 2).reshape(B, U, D))  # (B, U, D)
        return out * any_key[:, None, None].to(out.dtype)


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

    def forward(self, x: Tensor, others: list[Tensor], key_masks: list[Tensor]) -> Tensor:
        """``x`` ``(B, U, D)``; ``others[i]`` ``(B, U, D)`` with ``key_masks[i]`` ``(B, U)`` → ``(B, U, D)``."""
        for attend, norm, other, mask in zip(self.cross, self.cross_norms, others, key_masks):
            x = norm(x + self.dropout(attend(x, other, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))
