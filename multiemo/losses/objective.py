"""Cross-entropy and the combined MultiEMO objective (docs/method.md §3.3, Eqs. 21–22).

``total = ce_weight·CE + swfc_weight·SWFC + hgr_weight·SoftHGR``, three free coefficients as in
the released code (the paper writes them μ1, μ2, 1 − μ1 − μ2 and puts a common 1/N in front,
which the terms already carry: CE is a mean, SWFC and official Soft-HGR divide by N). The L2
term λ‖θ‖² of Eq. 22 is the optimiser's weight decay, not part of this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hgr import HGR_VARIANTS, soft_hgr_loss
from .swfc import SWFCLoss, swfc_class_weights

if TYPE_CHECKING:
    from multiemo.config import LossConfig

__all__ = ["ce_class_weights", "MultiEMOLoss", "build_loss"]


def ce_class_weights(counts: Sequence[int], power: float) -> Tensor | None:
    """Class weights for cross-entropy: ``(N / n_c)^power``, normalised to mean 1.

    ``power = 0`` means plain CE and returns ``None``; ``power = 1`` is inverse frequency,
    ``0.5`` its square root. The mean is taken over the classes present in training (count
    > 0); an absent class gets weight 0. The normalisation is only for readability: the
    weighted mean CE divides by the batch's ``Σ w_{y_i}``, so any common scale cancels.

    Args:
        counts (Sequence[int]): training-set label counts, one per class.
        power (float): exponent ≥ 0.

    Returns:
        Tensor | None: float32 ``(C,)`` or ``None`` when ``power == 0``.

    Raises:
        ValueError: a negative power or count, or no class with a positive count.

    >>> ce_class_weights([30, 10], power=1.0)  # (40/30, 40/10) = (4/3, 4), mean 8/3 → (1/2, 3/2)
    tensor([0.5000, 1.5000])
    >>> ce_class_weights([30, 10], power=0.0) is None
    True
    """
    if power < 0:
        raise ValueError(f"ce_class_weight_power must be >= 0, got {power}")
    n = torch.as_tensor(list(counts), dtype=torch.float64)
    if n.ndim != 1 or (n < 0).any() or not (n > 0).any():
        raise ValueError(f"class counts must be non-negative with at least one positive, "
                         f"got {list(counts)}")
    if power == 0:
        return None
    present = n > 0
    raw = torch.where(present, (n.sum() / n.clamp_min(1.0)) ** power, torch.zeros_like(n))
    return (raw / raw[present].mean()).float()


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weight: Tensor | None) -> Tensor:
    """Mean CE, or ``Σ_i w_{y_i} CE_i / Σ_i w_{y_i}`` with weights (torch's weighted mean).

    Written out rather than ``F.cross_entropy(weight=...)`` only so that a batch whose labels
    all have weight 0 gives 0 instead of 0/0 = NaN. Empty batch: 0.
    """
    per_utterance = F.cross_entropy(logits, labels, reduction="none")  # (N,)
    if weight is None:
        return per_utterance.sum() / max(labels.shape[0], 1)
    w = weight[labels]  # (N,)
    return (w * per_utterance).sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


class MultiEMOLoss(nn.Module):
    """The training objective of MultiEMO: weighted CE + SWFC + Soft-HGR (docs/method.md §3).

    Args:
        class_counts (Sequence[int]): training-set label counts per class (for the SWFC
            weights, Eq. 19, and the optional CE weights).
        ce_weight (float): coefficient of the cross-entropy (Eq. 21).
        swfc_weight (float): coefficient of SWFC (Eqs. 18–19).
        hgr_weight (float): coefficient of Soft-HGR (Eq. 20).
        temperature (float): SWFC τ.
        gamma (float): SWFC γ.
        alpha (float): SWFC α of the class weights.
        hgr_variant (str): ``"official"`` or ``"paper"`` (see :mod:`multiemo.losses.hgr`).
        ce_class_weight_power (float): 0 for plain CE, else class weights ``∝ (N/n_c)^p``.

    A term whose coefficient is 0 is not computed (an ablation costs nothing, and Soft-HGR
    with a single modality needs no special case); it is reported as 0 in the parts dict.
    """

    def __init__(self, class_counts: Sequence[int], *, ce_weight: float, swfc_weight: float,
                 hgr_weight: float, temperature: float, gamma: float, alpha: float,
                 hgr_variant: str = "official", ce_class_weight_power: float = 0.0) -> None:
        super().__init__()
        for name, value in (("ce_weight", ce_weight), ("swfc_weight", swfc_weight),
                            ("hgr_weight", hgr_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if hgr_variant not in HGR_VARIANTS:
            raise ValueError(f"unknown Soft-HGR variant {hgr_variant!r}; choose one of "
                             f"{HGR_VARIANTS}")
        self.ce_weight = float(ce_weight)
        self.swfc_weight = float(swfc_weight)
        self.hgr_weight = float(hgr_weight)
        self.hgr_variant = hgr_variant
        self.num_classes = len(class_counts)
        self.register_buffer("ce_class_weights", ce_class_weights(class_counts,
                                                                  ce_class_weight_power))
        self.swfc = SWFCLoss(swfc_class_weights(class_counts, alpha), temperature, gamma)

    def extra_repr(self) -> str:
        return f"ce_weight={self.ce_weight}, swfc_weight={self.swfc_weight}, " \
               f"hgr_weight={self.hgr_weight}, hgr_variant={self.hgr_variant!r}, " \
               f"weighted_ce={self.ce_class_weights is not None}"

    def forward(self, logits: Tensor, z: Tensor, fused: Sequence[Tensor],
                labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The total loss and its parts, over the unpadded utterances of a batch.

        Notation: N utterances, C classes, D feature size.

        Args:
            logits (Tensor): ``(N, C)`` classifier outputs.
            z (Tensor): ``(N, D)`` the representation fed to SWFC (before L2 normalisation).
            fused (Sequence[Tensor]): one ``(N, D)`` fused feature per modality (Soft-HGR).
            labels (Tensor): ``(N,)`` class indices.

        Returns:
            tuple[Tensor, dict[str, Tensor]]: the float32 scalar total
            ``ce_weight·CE + swfc_weight·SWFC + hgr_weight·HGR`` and ``{"ce", "swfc", "hgr"}``,
            each detached (0 for a skipped term). All inputs are cast to float32, autocast off.
        """
        if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
            raise ValueError(f"expected logits (N, C) and labels (N,), got "
                             f"{tuple(logits.shape)} and {tuple(labels.shape)}")
        device = logits.device
        total = torch.zeros((), device=device)
        parts = {}
        with torch.autocast(device_type=device.type, enabled=False):
            for name, weight, compute in (
                    ("ce", self.ce_weight, lambda: weighted_cross_entropy(
                        logits.float(), labels, self.ce_class_weights)),
                    ("swfc", self.swfc_weight, lambda: self.swfc(z, labels)),
                    ("hgr", self.hgr_weight, lambda: soft_hgr_loss(fused, self.hgr_variant))):
                if weight == 0:
                    parts[name] = torch.zeros((), device=device)
                    continue
                term = compute()
                total = total + weight * term
                parts[name] = term.detach()
        return total, parts


def build_loss(cfg: LossConfig, class_counts: Sequence[int]) -> MultiEMOLoss:
    """The one place a :class:`~multiemo.config.LossConfig` becomes a loss module."""
    return MultiEMOLoss(class_counts, ce_weight=cfg.ce_weight, swfc_weight=cfg.swfc_weight,
                        hgr_weight=cfg.hgr_weight, temperature=cfg.temperature,
                        gamma=cfg.gamma, alpha=cfg.alpha, hgr_variant=cfg.hgr_variant,
                        ce_class_weight_power=cfg.ce_class_weight_power)
