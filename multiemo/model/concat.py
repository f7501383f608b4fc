"""Concatenation fusion: the "w/o MultiAttn" ablation as a component (docs/method.md §2.2).

Each modality's context-encoded sequence goes to the classifier as it is; the classifier's
first layer (Eq. 14) sees their concatenation. No parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from multiemo.model.packing import Packing

__all__ = ["ConcatFusion"]


class ConcatFusion(nn.Module):
    """No cross-modal interaction: every modality's sequence is passed on unchanged.

    Args:
        modalities: the modalities used, in the order text, audio, visual.
    """

    def __init__(self, modalities: tuple[str, ...]) -> None:
        super().__init__()
        self.modalities = tuple(modalities)

    def forward(self, unimodal: dict[str, Tensor], key_masks: dict[str, Tensor],
                packing: Packing) -> dict[str, Tensor]:
        """The fusion interface of :class:`~multiemo.model.multiattn.MultiAttn`: modality →
        ``(N, D)`` packed, returned in the model's modality order."""
        return {m: unimodal[m] for m in self.modalities}
