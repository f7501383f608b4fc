"""Classifier over the fused utterance representation (docs/method.md §2.3, Eqs. 13–17)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["EmotionClassifier"]


class EmotionClassifier(nn.Module):
    """``z = W_z f + b_z`` (Eq. 14), then ``logits = W ReLU(W_l z + b_l) + b`` (Eqs. 15–16).

    ``z`` is the representation the SWFC loss uses. As in the released code, dropout is applied
    after the hidden layer and to the logits.

    Args:
        in_dim: size of the concatenated fused features f (``num_modalities × model_dim``).
        dim: size of z (model_dim).
        hidden_dim: MLP hidden size (official: 2·model_dim on MELD, model_dim on IEMOCAP).
        num_classes: number of emotion classes.
        dropout: dropout rate.
    """

    def __init__(self, in_dim: int, dim: int, hidden_dim: int, num_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.fuse = nn.Linear(in_dim, dim)
        self.hidden = nn.Linear(dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        """``f`` ``(..., in_dim)`` → ``(logits (..., C), z (..., dim))``."""
        z = self.fuse(f)  # (..., dim)
        hidden = self.dropout(torch.relu(self.hidden(z)))  # (..., hidden_dim)
        return self.dropout(self.out(hidden)), z
