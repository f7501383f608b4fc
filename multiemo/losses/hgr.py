"""Soft-HGR loss between the fused modality features (docs/method.md §3.2, Eq. 20), two variants.

For every pair (Q, V) of modality features, each ``(N, D)`` over the N utterances of a batch,
Soft-HGR rewards correlation: ``E[QᵀV] − ½ tr(cov(Q) cov(V))``; the loss is its negated sum.

``"paper"`` (Eq. 20 as written, features assumed zero-mean)::

    Q̄ = Q − mean over utterances                          (N, D), likewise V̄
    E = (1/N) Σ_i q̄_i·v̄_i
    cov(Q) = Q̄ᵀQ̄ / (N − 1)                                (D, D) feature covariance
    L = −Σ_pairs (E − ½ tr(cov(Q) cov(V)))

``"official"`` (what ``Loss/SoftHGRLoss.py`` of TaoShi1998/MultiEMO does, and what produced the
published numbers)::

    E = torch.mean(torch.sum(Q * V, -1))                   no centring
    C_Q = torch.cov(Q)                                     (N, N): torch.cov takes *rows* as
                                                           variables, so each utterance is a
                                                           variable observed over its D
                                                           features: rows are centred over D
                                                           and the divisor is D − 1
    L = −(1/N) Σ_pairs (E − ½ tr(C_Q C_V) / N)

The traces use ``tr(AAᵀ BBᵀ) = ‖AᵀB‖²_F`` and ``tr(AᵀA BᵀB) = ‖ABᵀ‖²_F``: one product of
the centred features, ``(D, D)`` for the official ``N × N`` covariances and ``(N, N)`` for the
paper's ``D × D`` ones, never a covariance matrix followed by a second matmul.

Small batches. The released code *raises* on a batch of one utterance: ``torch.cov`` of a
``(1, D)`` input returns a 0-dimensional tensor and ``torch.matmul`` rejects it ("both arguments
to matmul need to be at least 1D"). Here the ``(N, N)`` matrix keeps its shape, so N = 1 gives
the 1×1 covariance (the utterance's variance over its D features) and a finite value. With
D = 1 ``torch.cov`` divides by D − 1 = 0 and gives NaN; here the divisor is ``max(D − 1, 1)``,
which changes nothing else because a single centred feature is 0. In the paper variant the
divisor is ``max(N − 1, 1)``; at N = 1 the centred features are all zero, so the value is 0
with zero gradient. Features are cast to float32 with autocast off.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["HGR_VARIANTS", "soft_hgr_loss", "SoftHGRLoss"]

HGR_VARIANTS = ("official", "paper")


def _pair_official(q: Tensor, v: Tensor) -> Tensor:
    """``E − ½ tr(C_Q C_V) / N`` of the released code for one pair, q, v ``(N, D)``."""
    N, D = q.shape
    inner = (q * v).sum(dim=-1).mean()  # E, no centring
    q_c = q - q.mean(dim=1, keepdim=True)  # (N, D): each utterance centred over its features
    v_c = v - v.mean(dim=1, keepdim=True)  # (N, D)
    trace = (q_c.T @ v_c).square().sum() / max(D - 1, 1) ** 2  # tr(C_Q C_V), C = torch.cov
    return inner - 0.5 * trace / N


def _pair_paper(q: Tensor, v: Tensor) -> Tensor:
    """``E − ½ tr(cov(Q) cov(V))`` of Eq. 20 for one pair, centred features, q, v ``(N, D)``."""
    N = q.shape[0]
    q_c = q - q.mean(dim=0, keepdim=True)  # (N, D): each feature centred over the batch
    v_c = v - v.mean(dim=0, keepdim=True)  # (N, D)
    inner = (q_c * v_c).sum(dim=-1).mean()  # E[QᵀV] of zero-mean features
    trace = (q_c @ v_c.T).square().sum() / max(N - 1, 1) ** 2  # tr(cov_Q cov_V), unbiased
    return inner - 0.5 * trace


def soft_hgr_loss(features: Sequence[Tensor], variant: str = "official") -> Tensor:
    """Soft-HGR loss summed over all pairs of modality features (docs/method.md §3.2, Eq. 20).

    Args:
        features (Sequence[Tensor]): one ``(N, D)`` tensor per modality (same N and D), e.g.
            the fused text, audio and visual outputs ``f^t, f^a, f^v`` of the unpadded
            utterances; all pairs ``i < j`` are summed (three pairs for three modalities).
        variant (str): ``"official"`` (released code, default) or ``"paper"``; see the module
            docstring for what each computes.

    Returns:
        Tensor: float32 scalar. With fewer than two modalities there is no pair and the loss is
        0 (still connected to the inputs' graph when there is one, so ``backward`` works);
        so is an empty batch (N = 0).

    Raises:
        ValueError: an unknown variant, or features that are not ``(N, D)`` of equal shapes.

    >>> import torch
    >>> f = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # already zero-mean
    >>> soft_hgr_loss([f], "paper")
    tensor(0.)
    >>> soft_hgr_loss([f, f], "paper")  # E = 1, cov = [[2, 0], [0, 0]]: −(1 − ½·4)
    tensor(1.)
    """
    if variant not in HGR_VARIANTS:
        raise ValueError(f"unknown Soft-HGR variant {variant!r}; choose one of {HGR_VARIANTS}")
    features = list(features)
    shapes = [tuple(f.shape) for f in features]
    if any(len(s) != 2 for s in shapes) or len(set(shapes)) > 1:
        raise ValueError(f"Soft-HGR features must all be (N, D) of one shape, got {shapes}")
    if not features:
        return torch.zeros(())
    if len(features) < 2 or features[0].shape[0] == 0:
        # The sum of an empty slice: exactly 0 (never NaN), yet part of the inputs' graph.
        return features[0].float().flatten()[:0].sum()
    pair = _pair_official if variant == "official" else _pair_paper
    with torch.autocast(device_type=features[0].device.type, enabled=False):
        features = [f.float() for f in features]
        total = sum(pair(features[i], features[j])
                    for i in range(len(features)) for j in range(i + 1, len(features)))
        if variant == "official":
            return -total / max(features[0].shape[0], 1)
        return -total


class SoftHGRLoss(nn.Module):
    """Module wrapper of :func:`soft_hgr_loss` with a fixed variant.

    Args:
        variant (str): ``"official"`` or ``"paper"``.
    """

    def __init__(self, variant: str = "official") -> None:
        super().__init__()
        if variant not in HGR_VARIANTS:
            raise ValueError(f"unknown Soft-HGR variant {variant!r}; choose one of {HGR_VARIANTS}")
        self.variant = variant

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Args: features: one ``(N, D)`` tensor per modality. Returns: scalar loss."""
        return soft_hgr_loss(features, self.variant)
