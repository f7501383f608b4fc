"""A speaker-aware Transformer context encoder, the alternative to DialogueRNN (docs/method.md §2.1).

Transformer context is what recent ERC models use instead of a recurrence (SDT, TelME). This
one is kept small and plain:

- **positions**: the sinusoidal encoding of each utterance's index in its dialogue is added to
  its vector (no learned parameters, any dialogue length);
- **speakers**: every attention head has one learned scalar added to its score wherever query
  and key have the same speaker (a same-speaker bias, zero at initialisation). It reads only
  *whether* two utterances share a speaker, so it does not depend on how a corpus numbers its
  parties;
- **direction**: ``causal=True`` lets an utterance attend to itself and the utterances before
  it (the forward-only DialogueRNN of MELD); ``causal=False`` to its whole dialogue
  (bidirectional, IEMOCAP). ``model.bidirectional_context`` sets it for both encoders;
- **padding**: keys at padded positions are masked out, so padding never changes a real
  utterance's output; outputs at padding are zeros.

Each layer is post-norm, like a MultiAttn layer::

    H   = LayerNorm(X + Dropout(SelfAttention(X)))
    out = LayerNorm(H + Dropout(FFN(H)))

``tests/test_components.py`` holds it to a literal per-utterance reference (values and
gradients, float64), to padding and to causality.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from multiemo.model.attention import FeedForward

__all__ = ["TransformerContext", "TransformerContextLayer", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | None = None) -> Tensor:
    """``(length, dim)`` sinusoidal position encodings (Vaswani et al., 2017): even columns
    ``sin(t / 10000^(2i/dim))``, odd columns the cosine.

    >>> sinusoidal_positions(2, 4, torch.float64).round(decimals=3).tolist()
    [[0.0, 1.0, 0.0, 1.0], [0.841, 0.54, 0.01, 1.0]]
    """
    position = torch.arange(length, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64, device=device) * (-math.log(10000.0) / dim))
    angle = position * freq  # (T, ceil(dim/2))
    out = torch.zeros(length, dim, dtype=torch.float64, device=device)
    out[:, 0::2] = torch.sin(angle)
    out[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return out.to(dtype)


class TransformerContextLayer(nn.Module):
    """One self-attention layer with a same-speaker bias, then a feed-forward block.

    Args:
        dim: model dimension.
        num_heads: attention heads; must divide ``dim``.
        hidden_dim: feed-forward hidden size.
        dropout: dropout on the attention and feed-forward branches.
    """

    def __init__(self, dim: int, num_heads: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)  # the query, key and value maps, head-major blocks
        self.out_proj = nn.Linear(dim, dim)
        self.speaker_bias = nn.Parameter(torch.zeros(num_heads))  # added where speakers match
        self.attn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, hidden_dim, dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor, same_speaker: Tensor) -> Tensor:
        """Shapes: B dialogues, U utterances, D model dim, H heads, d = D / H.

        Args:
            x: ``(B, U, D)``.
            allowed: ``(B, U, U)`` bool, True where query i may attend to key j (every row
                has at least one True).
            same_speaker: ``(B, U, U)`` bool, True where i and j have the same speaker.

        Returns:
            ``(B, U, D)``.
        """
        B, U, D = x.shape
        H = self.num_heads
        d = D // H
        q, k, v = self.qkv(x).view(B, U, 3, H, d).permute(2, 0, 3, 1, 4)  # 3 × (B, H, U, d)
        bias = same_speaker[:, None].to(q.dtype) * self.speaker_bias.to(q.dtype)[None, :, None, None]  # (B, H, U, U)
        bias = bias.masked_fill(~allowed[:, None], float("-inf"))
        scores = torch.matmul(q, k.transpose(-1, -2)) * d ** -0.5 + bias  # (B, H, U, U)
        attended = torch.matmul(torch.softmax(scores, dim=-1), v)  # (B, H, U, d)
        attended = attended.transpose(1, 2).reshape(B, U, D)  # (B, U, D)
        x = self.attn_norm(x + self.dropout(self.out_proj(attended)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class TransformerContext(nn.Module):
    """Speaker-aware Transformer over the utterances of each dialogue (module docstring).

    Args:
        dim: model dimension.
        num_heads: attention heads.
        num_layers: layers (``model.context_layers``).
        hidden_dim: feed-forward hidden size.
        causal: attend only to the current and earlier utterances.
        dropout: dropout on the inputs and inside every layer.
    """

    def __init__(self, dim: int, num_heads: int, num_layers: int, hidden_dim: int,
                 causal: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.causal = causal
        self.layers = nn.ModuleList(TransformerContextLayer(dim, num_heads, hidden_dim, dropout)
                                    for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return f"causal={self.causal}"

    def forward(self, u: Tensor, speaker: Tensor, lengths: Tensor) -> Tensor:
        """Context-encode every utterance.

        Shapes: B dialogues, U utterances (padded), D model dim.

        Args:
            u: ``(B, U, D)`` utterance vectors.
            speaker: ``(B, U)`` long party index of each utterance's speaker.
            lengths: ``(B,)`` true dialogue lengths.

        Returns:
            ``(B, U, D)``; zeros at padded positions.
        """
        B, U, D = u.shape
        position = torch.arange(U, device=u.device)
        mask = position[None, :] < lengths[:, None]  # (B, U) real utterances
        allowed = mask[:, None, :].expand(B, U, U)  # (B, U, U) query i, key j
        if self.causal:
            allowed = allowed & (position[None, :] <= position[:, None])[None]
        # a padded query attends to itself only (its output is dropped): no softmax over nothing
        allowed = allowed | torch.eye(U, dtype=torch.bool, device=u.device)[None]
        same_speaker = speaker[:, :, None] == speaker[:, None, :]  # (B, U, U)
        x = self.dropout(u + sinusoidal_positions(U, D, u.dtype, u.device)[None])  # (B, U, D)
        for layer in self.layers:
            x = layer(x, allowed, same_speaker)
        return x * mask[..., None].to(x.dtype)
