"""MultiEMO training losses (docs/method.md §3): SWFC, Soft-HGR, cross-entropy and their sum.

All losses take the real (unpadded) utterances of a batch, flattened to ``(N, ...)``, and
compute in float32 with autocast switched off, whatever the input dtype. Move the modules to
the model's device (``loss.to(device)``): the class weights are buffers.
"""

from .hgr import HGR_VARIANTS, SoftHGRLoss, soft_hgr_loss
from .objective import MultiEMOLoss, build_loss, ce_class_weights
from .swfc import SWFCLoss, swfc_class_weights

__all__ = ["swfc_class_weights", "SWFCLoss", "soft_hgr_loss", "SoftHGRLoss", "HGR_VARIANTS",
           "ce_class_weights", "MultiEMOLoss", "build_loss"]
