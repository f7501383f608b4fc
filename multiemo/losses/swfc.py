"""Sample-Weighted Focal Contrastive loss, SWFC (docs/method.md §3.1, Eqs. 18–19), vectorised.

Over the N utterances of a batch, with ``z`` L2-normalised, anchor ``j`` and every *other*
utterance ``g``::

    s_{j,g} = exp(z_j·z_g / τ) / Σ_{s≠j} exp(z_j·z_s / τ)
    L = −(1/N) Σ_j w_{y_j} · (1/|R_j|) Σ_{g∈R_j} (1 − s_{j,g})^γ · log s_{j,g}

with ``R_j`` the other utterances labelled like ``j``. An anchor with no positive adds zero
but still counts in N (as in the released code).

The released code (``Loss/SampleWeightedFocalContrastiveLoss.py`` of TaoShi1998/MultiEMO)
loops over anchors in Python, building ``N − 1`` rows and a softmax per anchor; here the whole
``(N, N)`` similarity matrix is one matmul, one ``log_softmax`` with the diagonal filled, and a
product with the one-hot labels that sums each row over its positives; the same numbers
(checked against a literal per-anchor oracle in ``tests/test_losses.py``).

>>> import torch
>>> loss = SWFCLoss(swfc_class_weights([3, 1], alpha=1.0), temperature=1.0, gamma=2.0)
>>> z, labels = torch.eye(3), torch.tensor([0, 0, 1])
>>> # orthogonal z: every s = 1/2; w = (1/4, 3/4); anchors 0, 1 have one positive, anchor 2 none
>>> round(loss(z, labels).item(), 6)  # −(1/3)·2·(1/4)·(1/2)²·log(1/2)
0.028881
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["swfc_class_weights", "SWFCLoss"]

# Stand-in for −inf on the diagonal (an utterance is not its own candidate): −(1e4 + 2/τ).
# Logits off the diagonal lie in [−1/τ, 1/τ], so the diagonal sits at least 1e4 below the row
# maximum and exp underflows to exactly 0 in float32: the softmax is unchanged. Unlike −inf it
# never yields inf − inf = NaN, even when a row is entirely diagonal (N = 1).
_DIAGONAL_MARGIN = 1.0e4
# Floor of 1 − s inside the focal factor when 0 < γ < 1: (1 − s)^γ then has an infinite
# derivative at s = 1 (s = 1 happens for N = 2 and for a lone positive far above the rest), and
# inf · 0 is NaN in backward. For γ ≥ 1 the derivative is finite and no floor is applied.
# Clamping only changes values where 1 − s < 1e-12 (below float32 resolution near 1, so in
# practice only where it is exactly 0), and clamp passes zero gradient there, which is the true
# derivative of (1 − s)^γ·log s at s = 1 for γ > 0.
_FOCAL_FLOOR = 1.0e-12


def swfc_class_weights(counts: Sequence[int], alpha: float) -> Tensor:
    """SWFC class weights ``w_c = (N_train / n_c)^α``, L1-normalised over the classes (§3.1).

    This is what the released code does (``(total / counts) ** α`` then
    ``normalize(p=1)``). A class with count 0 (absent from the training set) gets weight 0
    and is left out of the normalisation; the released code would divide by zero and turn
    every weight into NaN.

    Args:
        counts (Sequence[int]): training-set label counts, one per class, in label-index order.
        alpha (float): the sample-weight parameter α (0 gives equal weights).

    Returns:
        Tensor: float32 ``(C,)``, non-negative, summing to 1.

    Raises:
        ValueError: a negative count, or no class with a positive count.

    >>> swfc_class_weights([30, 10], alpha=1.0)  # (40/30, 40/10) = (4/3, 4), L1 → (1/4, 3/4)
    tensor([0.2500, 0.7500])
    >>> swfc_class_weights([5, 0, 5], alpha=1.2)
    tensor([0.5000, 0.0000, 0.5000])
    """
    n = torch.as_tensor(list(counts), dtype=torch.float64)
    if n.ndim != 1 or (n < 0).any() or not (n > 0).any():
        raise ValueError(f"class counts must be non-negative with at least one positive, "
                         f"got {list(counts)}")
    present = n > 0
    raw = torch.where(present, n.sum() / n.clamp_min(1.0), torch.zeros_like(n)) ** alpha
    raw = torch.where(present, raw, torch.zeros_like(n))  # 0 ** 0 = 1 for α = 0
    return (raw / raw.sum()).float()


class SWFCLoss(nn.Module):
    """Sample-Weighted Focal Contrastive loss (docs/method.md §3.1, Eqs. 18–19).

    Args:
        class_weights (Tensor): ``(C,)`` per-class weights ``w_c``, e.g. from
            :func:`swfc_class_weights`; kept as a buffer so it follows ``.to(device)``.
        temperature (float): τ > 0.
        gamma (float): focusing parameter γ ≥ 0.

    Raises:
        ValueError: a non-positive τ, a negative γ, or class weights that are not a vector.
    """

    def __init__(self, class_weights: Tensor, temperature: float, gamma: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"SWFC temperature must be > 0, got {temperature}")
        if gamma < 0:
            raise ValueError(f"SWFC gamma must be >= 0, got {gamma}")
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
        if class_weights.ndim != 1:
            raise ValueError(f"class_weights must be a vector (C,), got shape "
                             f"{tuple(class_weights.shape)}")
        self.register_buffer("class_weights", class_weights.clone())
        self.temperature = float(temperature)
        self.gamma = float(gamma)

    def extra_repr(self) -> str:
        return f"num_classes={self.class_weights.numel()}, temperature={self.temperature}, " \
               f"gamma={self.gamma}"

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        """SWFC over one batch.

        Notation: N utterances (unpadded, flattened over the dialogues), D feature size.

        Args:
            z (Tensor): ``(N, D)`` pre-normalisation vectors (any float dtype; computed in
                float32, with autocast switched off).
            labels (Tensor): ``(N,)`` integer class indices.

        Returns:
            Tensor: scalar float32 loss; 0 for N = 0; finite (with finite gradients) for N = 1
            and for anchors without positives.
        """
        if z.ndim != 2 or labels.ndim != 1 or labels.shape[0] != z.shape[0]:
            raise ValueError(f"expected z (N, D) and labels (N,), got {tuple(z.shape)} and "
                             f"{tuple(labels.shape)}")
        N, C = z.shape[0], self.class_weights.numel()
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1)  # (N, D); same eps as the released code
            logits = (z / self.temperature) @ z.T  # (N, N); τ applied to the smaller side
            logits.fill_diagonal_(-(_DIAGONAL_MARGIN + 2.0 / self.temperature))  # g ≠ j
            # (in place is safe: mm's backward needs its inputs, not its output)
            log_s = torch.log_softmax(logits, dim=1)  # (N, N), row j: log s_{j,·}
            # (N, N), all finite; a copy for γ = 0 too, as log_softmax's backward needs log_s
            terms = log_s * self._focal(log_s) if self.gamma else log_s.clone()
            terms.fill_diagonal_(0.0)  # j ∉ R_j (the diagonal term is ≈ −1e4, drop it exactly)
            # Σ_{g∈R_j} as a product with the one-hot labels, never an (N, N) mask: column c of
            # terms @ onehot sums row j over the utterances of class c; keep column y_j.
            onehot = F.one_hot(labels, C).to(terms.dtype)  # (N, C)
            per_anchor = (terms @ onehot).gather(1, labels[:, None]).squeeze(1)  # (N,)
            num_positive = onehot.sum(dim=0)[labels] - 1  # (N,) |R_j| (no bincount: no sync)
            # w_{y_j} / |R_j|; an anchor without positives has a zero sum, the max avoids 0/0.
            scale = self.class_weights[labels] / num_positive.clamp_min(1)  # (N,)
            return -(scale * per_anchor).sum() / max(N, 1)

    def _focal(self, log_s: Tensor) -> Tensor:
        """``(1 − s)^γ`` from ``log s``; ``1 − s`` is floored only where needed (γ < 1)."""
        one_minus_s = -torch.expm1(log_s)  # 1 − s, precise near s = 1
        if self.gamma < 1:
            one_minus_s = one_minus_s.clamp_min(_FOCAL_FLOOR)
        return one_minus_s.pow(self.gamma)
