"""MultiEMO: per-modality projection and context, MultiAttn fusion, classifier (docs/method.md §2).

Only modules that take part in the forward pass are built (the released model also builds a text
DialogueRNN on MELD that it never runs), so the parameter count is the count of parameters that
are trained: 10,392,583 with the official MELD sizes and 29,670,918 with the IEMOCAP ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from multiemo.config import ModelConfig
from multiemo.model.classifier import EmotionClassifier
from multiemo.model.dialoguernn import ContextEncoder, encode_contexts
from multiemo.model.attention import Packing
from multiemo.model.multiattn import MultiAttn

__all__ = ["MultiEMO", "MultiEMOOutput", "build_model", "count_parameters"]


@dataclass
class MultiEMOOutput:
    """The network's outputs for the real utterances of a batch, *packed*: row i is the i-th True
    of the ``(B, U)`` mask in row-major order (the order of ``x[mask]``). :attr:`logits`,
    :attr:`z` and :attr:`fused` give the padded ``(B, U, ·)`` layout, zeros at padding."""

    packing: Packing
    packed_logits: Tensor  # (N, C)
    packed_z: Tensor  # (N, D) representation for the SWFC loss
    packed_fused: dict[str, Tensor]  # modality -> (N, D), for the Soft-HGR loss

    @property
    def logits(self) -> Tensor:  # (B, U, C)
        return self.packing.pad(self.packed_logits)

    @property
    def z(self) -> Tensor:  # (B, U, D)
        return self.packing.pad(self.packed_z)

    @property
    def fused(self) -> dict[str, Tensor]:  # modality -> (B, U, D)
        return {m: self.packing.pad(x) for m, x in self.packed_fused.items()}


class MultiEMO(nn.Module):
    """The MultiEMO network.

    Args:
        modalities: modalities used, a non-empty subset of ("text", "audio", "visual").
        input_dims: modality → size of its input vectors.
        dim: model dimension (official 256).
        num_heads: attention heads (official 4).
        hidden_dim: MultiAttn feed-forward hidden size (official 1024).
        num_layers: MultiAttn layers per modality (official 2 on MELD, 6 on IEMOCAP).
        mlp_hidden: classifier hidden size (official 512 on MELD, 256 on IEMOCAP).
        num_classes: emotion classes.
        bidirectional_context: DialogueRNN both ways (IEMOCAP) or forward only (MELD).
        text_context: run text through a DialogueRNN (IEMOCAP) or not (MELD, whose text
            features are context-aware already).
        multiattn: fuse with MultiAttn; False concatenates the unimodal sequences instead.
        dropout: dropout rate outside the recurrences.
        dropout_rec: dropout inside DialogueRNN.
    """

    def __init__(self, modalities: tuple[str, ...], input_dims: dict[str, int], dim: int = 256,
                 num_heads: int = 4, hidden_dim: int = 1024, num_layers: int = 2,
                 mlp_hidden: int = 512, num_classes: int = 7, bidirectional_context: bool = False,
                 text_context: bool = False, multiattn: bool = True, dropout: float = 0.0,
                 dropout_rec: float = 0.0) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.projections = nn.ModuleDict({m: nn.Linear(input_dims[m], dim) for m in self.modalities})
        self.context = nn.ModuleDict({
            m: ContextEncoder(dim, bidirectional_context, dropout, dropout_rec)
            for m in self.modalities if m != "text" or text_context
        })
        self.fusion = (MultiAttn(self.modalities, dim, num_heads, hidden_dim, num_layers, dropout)
                       if multiattn else None)
        self.classifier = EmotionClassifier(len(self.modalities) * dim, dim, mlp_hidden,
                                            num_classes, dropout)

    def forward(self, features: dict[str, Tensor], speaker_mask: Tensor, mask: Tensor,
                present: dict[str, Tensor] | None = None) -> MultiEMOOutput:
        """Classify every utterance of a batch of dialogues.

        Shapes: B dialogues, U utterances (padded), D_m input size of modality m, S speakers,
        D model dim, C classes.

        Args:
            features: modality → ``(B, U, D_m)``; absent and padded vectors are zeros.
            speaker_mask: ``(B, U, S)`` one-hot speaker of each utterance (the "party mask").
            mask: ``(B, U)`` bool, True at real utterances.
            present: modality → ``(B, U)`` bool, False where that modality's vector is absent;
                absent vectors are not attended to by the other modalities. All present if None.

        Returns:
            :class:`MultiEMOOutput` with logits, z and the fused per-modality sequences.
        """
        lengths = mask.sum(dim=1)  # (B,)
        speaker = speaker_mask.argmax(dim=-1) * mask  # (B, U) party index, 0 at padding
        packing = Packing(mask)
        unimodal = {m: self.projections[m](packing.pack(features[m])) for m in self.modalities}  # (N, D) each
        if self.context:  # every modality's DialogueRNNs (and both directions) step together
            contexts = encode_contexts(dict(self.context), {m: packing.pad(unimodal[m]) for m in self.context},
                                       speaker, lengths)  # (B, U, D) each
            unimodal.update({m: packing.pack(x) for m, x in contexts.items()})
        key_masks = {m: mask & present[m] if present is not None and m in present else mask
                     for m in self.modalities}
        fused = self.fusion(unimodal, key_masks, packing) if self.fusion is not None else unimodal
        f = torch.cat([fused[m] for m in self.modalities], dim=-1)  # (N, M·D)
        logits, z = self.classifier(f)  # (N, C), (N, D)
        return MultiEMOOutput(packing, logits, z, fused)


def build_model(cfg: ModelConfig) -> MultiEMO:
    """The one place a config becomes a model."""
    dims = {"text": cfg.text_dim, "audio": cfg.audio_dim, "visual": cfg.visual_dim}
    return MultiEMO(
        modalities=cfg.modalities, input_dims={m: dims[m] for m in cfg.modalities},
        dim=cfg.model_dim, num_heads=cfg.num_heads, hidden_dim=cfg.hidden_dim,
        num_layers=cfg.num_layers, mlp_hidden=cfg.mlp_hidden, num_classes=cfg.num_classes,
        bidirectional_context=cfg.bidirectional_context, text_context=cfg.text_context,
        multiattn=cfg.multiattn, dropout=cfg.dropout, dropout_rec=cfg.dropout_rec)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (all of which take part in the forward pass)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
