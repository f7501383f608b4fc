"""Cross-entropy and the combined MultiEMO objective (docs/method.md §3.3, Eqs. 21–22).

``total = ce_weight·CE + swfc_weight·SWFC + hgr_weight·SoftHGR``, three free coefficients as in
the released code (the paper writes them μ1, μ2, 1 − μ1 − μ2 and puts a common 1/N in front,
which the terms already carry: CE is a mean, SWFC and official Soft-HGR divide by N). The L2
term λ‖θ‖² of Eq. 22 is the optimiser's weight decay, not part of this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hgr import HGR_VARIANTS, soft_hgr_loss
from .swfc import SWFCLoss, swfc_class_weights

if TYPE_CHECKING:
    from multiemo.config import LossConfig

__all__ = ["ce_class_weights", "LOSS_TERMS", "LossInputs", "MultiEMOLoss", "build_loss"]


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


class LossInputs(NamedTuple):
    """What a loss term reads: the model's outputs over the N real utterances of a batch."""

    logits: Tensor  # (N, C) classifier outputs, float32
    z: Tensor  # (N, D) the representation fed to SWFC
    fused: Sequence[Tensor]  # one (N, D) fused feature per modality
    labels: Tensor  # (N,) class indices


def _ce_term(loss: "MultiEMOLoss", x: LossInputs) -> Tensor:
    """Cross-entropy, class-weighted with ``loss.ce_class_weight_power`` > 0 (Eq. 21)."""
    return weighted_cross_entropy(x.logits, x.labels, loss.ce_class_weights)


def _swfc_term(loss: "MultiEMOLoss", x: LossInputs) -> Tensor:
    """Sample-weighted focal contrastive loss, options ``temperature``, ``gamma``, ``alpha`` (Eqs. 18–19)."""
    return loss.swfc(x.z, x.labels)


def _hgr_term(loss: "MultiEMOLoss", x: LossInputs) -> Tensor:
    """Soft-HGR across the fused modalities, option ``hgr_variant`` (Eq. 20)."""
    return soft_hgr_loss(x.fused, loss.hgr_variant)


#: The terms of the objective, in the order they are summed and logged: name → its
#: computation. A term's coefficient is the loss option ``<name>_weight``
#: (:class:`~multiemo.config.LossConfig`); its other options are attributes of the loss module.
#: A new term is one function here, one line in this table and its ``<name>_weight`` key.
LOSS_TERMS: dict[str, Callable[["MultiEMOLoss", LossInputs], Tensor]] = {
    "ce": _ce_term,
    "swfc": _swfc_term,
    "hgr": _hgr_term,
}


class MultiEMOLoss(nn.Module):
    """The training objective of MultiEMO: weighted CE + SWFC + Soft-HGR (docs/method.md §3),
    the terms of :data:`LOSS_TERMS`.

    Args:
        class_counts (Sequence[int]): training-set label counts per class (for the SWFC
            weights, Eq. 19, and the optional CE weights).
        temperature (float): SWFC τ.
        gamma (float): SWFC γ.
        alpha (float): SWFC α of the class weights.
        hgr_variant (str): ``"official"`` or ``"paper"`` (see :mod:`multiemo.losses.hgr`).
        ce_class_weight_power (float): 0 for plain CE, else class weights ``∝ (N/n_c)^p``.
        **term_weights (float): ``<name>_weight`` for every term of :data:`LOSS_TERMS`:
            ``ce_weight`` (Eq. 21), ``swfc_weight`` (Eqs. 18–19), ``hgr_weight`` (Eq. 20).

    A term whose coefficient is 0 is not computed (an ablation costs nothing, and Soft-HGR
    with a single modality needs no special case); it is reported as 0 in the parts dict.
    """

    def __init__(self, class_counts: Sequence[int], *, temperature: float, gamma: float, alpha: float,
                 hgr_variant: str = "official", ce_class_weight_power: float = 0.0,
                 **term_weights: float) -> None:
        super().__init__()
        expected = {f"{name}_weight" for name in LOSS_TERMS}
        if set(term_weights) != expected:
            raise TypeError(f"MultiEMOLoss takes the weights {sorted(expected)}, got {sorted(term_weights)}")
        weights = {name: term_weights[f"{name}_weight"] for name in LOSS_TERMS}
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name}_weight must be >= 0, got {value}")
        if hgr_variant not in HGR_VARIANTS:
            raise ValueError(f"unknown Soft-HGR variant {hgr_variant!r}; choose one of "
                             f"{HGR_VARIANTS}")
        self.weights = {name: float(weights[name]) for name in LOSS_TERMS}  # in LOSS_TERMS order
        self.hgr_variant = hgr_variant
        self.num_classes = len(class_counts)
        self.register_buffer("ce_class_weights", ce_class_weights(class_counts,
                                                                  ce_class_weight_power))
        self.swfc = SWFCLoss(swfc_class_weights(class_counts, alpha), temperature, gamma)

    @property
    def ce_weight(self) -> float:
        return self.weights["ce"]

    @property
    def swfc_weight(self) -> float:
        return self.weights["swfc"]

    @property
    def hgr_weight(self) -> float:
        return self.weights["hgr"]

    def extra_repr(self) -> str:
        return ", ".join(f"{name}_weight={w}" for name, w in self.weights.items()) + \
            f", hgr_variant={self.hgr_variant!r}, weighted_ce={self.ce_class_weights is not None}"

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
            ``Σ weight·term`` over :data:`LOSS_TERMS` and the parts ``{"ce", "swfc", "hgr"}``,
            each detached (0 for a skipped term). All inputs are cast to float32, autocast off.
        """
        if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
            raise ValueError(f"expected logits (N, C) and labels (N,), got "
                             f"{tuple(logits.shape)} and {tuple(labels.shape)}")
        device = logits.device
        total = torch.zeros((), device=device)
        parts = {}
        with torch.autocast(device_type=device.type, enabled=False):
            inputs = LossInputs(logits.float(), z, fused, labels)
            for name, compute in LOSS_TERMS.items():
                weight = self.weights[name]
                if weight == 0:
                    parts[name] = torch.zeros((), device=device)
                    continue
                term = compute(self, inputs)
                total = total + weight * term
                parts[name] = term.detach()
        return total, parts


def build_loss(cfg: LossConfig, class_counts: Sequence[int]) -> MultiEMOLoss:
    """The one place a :class:`~multiemo.config.LossConfig` becomes a loss module."""
    return MultiEMOLoss(class_counts, temperature=cfg.temperature, gamma=cfg.gamma, alpha=cfg.alpha,
                        hgr_variant=cfg.hgr_variant, ce_class_weight_power=cfg.ce_class_weight_power,
                        **{f"{name}_weight": getattr(cfg, f"{name}_weight") for name in LOSS_TERMS})
