"""MultiEMO: per-modality projection and context, fusion, classifier (docs/method.md §2).

The network is assembled from named components (:mod:`multiemo.components`); the
default assembly (DialogueRNN context, MultiAttn fusion, MLP classifier) is the released model.

Only modules that take part in the forward pass are built (the released model also builds a text
DialogueRNN on MELD that it never runs), so the parameter count is the count of parameters that
are trained: 10,392,583 with the official MELD sizes and 29,670,918 with the IEMOCAP ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from multiemo.config import ModelConfig
from multiemo.components import (CLASSIFIERS, CONTEXT_ENCODERS, FUSIONS, NO_CONTEXT, resolve_context,
                                       resolve_fusion)
from multiemo.model.packing import Packing

__all__ = ["MultiEMO", "MultiEMOOutput", "multiemo", "build_model", "components_of", "count_parameters",
           "encode_all"]

log = logging.getLogger(__name__)


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
    """The MultiEMO network, assembled from its components (see :func:`build_model`).

    Args:
        projections: modality → its input projection ``D_m → D`` (their order is the model's
            modality order: text, audio, visual).
        context: modality → context encoder, for the modalities that have one (a modality
            without one goes on as projected).
        fusion: the fusion (``forward(unimodal, key_masks, packing)``).
        classifier: the classifier (``forward(f) -> (logits, z)``).
    """

    def __init__(self, projections: dict[str, nn.Module], context: dict[str, nn.Module],
                 fusion: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.modalities = tuple(projections)
        self.projections = nn.ModuleDict(projections)
        self.context = nn.ModuleDict(context)
        self.fusion = fusion
        self.classifier = classifier

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
        if self.context:
            contexts = encode_all(dict(self.context), {m: packing.pad(unimodal[m]) for m in self.context},
                                  speaker, lengths)  # (B, U, D) each
            unimodal.update({m: packing.pack(x) for m, x in contexts.items()})
        key_masks = {m: mask & present[m] if present is not None and m in present else mask
                     for m in self.modalities}
        fused = self.fusion(unimodal, key_masks, packing)  # modality -> (N, D)
        f = torch.cat([fused[m] for m in self.modalities], dim=-1)  # (N, M·D)
        logits, z = self.classifier(f)  # (N, C), (N, D)
        return MultiEMOOutput(packing, logits, z, fused)


def encode_all(encoders: dict[str, nn.Module], inputs: dict[str, Tensor], speaker: Tensor,
               lengths: Tensor) -> dict[str, Tensor]:
    """Run every modality's context encoder; encoders of one class that can run together
    (``encode_many``, e.g. all DialogueRNNs in lockstep) do. Returns modality → ``(B, U, D)``."""
    groups: dict[type, dict[str, nn.Module]] = {}
    for m, encoder in encoders.items():
        groups.setdefault(type(encoder), {})[m] = encoder
    out: dict[str, Tensor] = {}
    for kind, group in groups.items():
        many = getattr(kind, "encode_many", None)
        if many is not None:
            out.update(many(group, {m: inputs[m] for m in group}, speaker, lengths))
        else:
            out.update({m: encoder(inputs[m], speaker, lengths) for m, encoder in group.items()})
    return out


def multiemo(*, modalities: tuple[str, ...], input_dims: dict[str, int], context: dict[str, str],
             fusion: str = "multiattn", classifier: str = "mlp", dim: int = 256, num_heads: int = 4,
             hidden_dim: int = 1024, num_layers: int = 2, context_layers: int = 1, mlp_hidden: int = 512,
             num_classes: int = 7, bidirectional_context: bool = False, dropout: float = 0.0,
             dropout_rec: float = 0.0) -> MultiEMO:
    """Assemble a MultiEMO from named components (:mod:`multiemo.components`).

    Args:
        modalities: a non-empty subset of ("text", "audio", "visual"), in that order.
        input_dims: modality → size of its input vectors.
        context: modality → context encoder name (``none``: no encoder).
        fusion: fusion name.
        classifier: classifier name.
        dim: model dimension (official 256).
        num_heads: attention heads (official 4), of MultiAttn and of a Transformer context.
        hidden_dim: feed-forward hidden size (official 1024), likewise.
        num_layers: MultiAttn layers per modality (official 2 on MELD, 6 on IEMOCAP).
        context_layers: layers of a Transformer context encoder.
        mlp_hidden: classifier hidden size (official 512 on MELD, 256 on IEMOCAP).
        num_classes: emotion classes.
        bidirectional_context: context both ways (IEMOCAP) or forward only / causal (MELD).
        dropout: dropout rate outside the recurrences.
        dropout_rec: dropout inside DialogueRNN.
    """
    modalities = tuple(modalities)
    # built in this order (projections, context, fusion, classifier) so that one seed gives the
    # released model's initial weights
    projections = {m: nn.Linear(input_dims[m], dim) for m in modalities}
    encoders = {m: CONTEXT_ENCODERS[context[m]](dim=dim, num_heads=num_heads, num_layers=context_layers,
                                                hidden_dim=hidden_dim, bidirectional=bidirectional_context,
                                                dropout=dropout, dropout_rec=dropout_rec)
                for m in modalities if context[m] != NO_CONTEXT}
    fuse = FUSIONS[fusion](modalities=modalities, dim=dim, num_heads=num_heads, hidden_dim=hidden_dim,
                           num_layers=num_layers, dropout=dropout)
    classify = CLASSIFIERS[classifier](in_dim=len(modalities) * dim, dim=dim, hidden_dim=mlp_hidden,
                                       num_classes=num_classes, dropout=dropout)
    return MultiEMO(projections, encoders, fuse, classify)


def components_of(cfg: ModelConfig) -> dict:
    """The components ``cfg`` assembles, by name: what a model folder records and its card names.

    >>> components_of(ModelConfig())
    {'context': {'text': 'none', 'audio': 'dialoguernn', 'visual': 'dialoguernn'}, 'fusion': 'multiattn', 'classifier': 'mlp'}
    """
    return {"context": resolve_context(cfg.modalities, cfg.context, cfg.text_context),
            "fusion": resolve_fusion(cfg.fusion, cfg.multiattn), "classifier": cfg.classifier}


def build_model(cfg: ModelConfig) -> MultiEMO:
    """The one place a config becomes a model."""
    if not cfg.multiattn and cfg.fusion is None:
        log.warning("model.multiattn=false is the older name of model.fusion=concat")
    dims = {"text": cfg.text_dim, "audio": cfg.audio_dim, "visual": cfg.visual_dim}
    components = components_of(cfg)
    return multiemo(
        modalities=cfg.modalities, input_dims={m: dims[m] for m in cfg.modalities},
        context=components["context"], fusion=components["fusion"], classifier=components["classifier"],
        dim=cfg.model_dim, num_heads=cfg.num_heads, hidden_dim=cfg.hidden_dim,
        num_layers=cfg.num_layers, context_layers=cfg.context_layers, mlp_hidden=cfg.mlp_hidden,
        num_classes=cfg.num_classes, bidirectional_context=cfg.bidirectional_context,
        dropout=cfg.dropout, dropout_rec=cfg.dropout_rec)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (all of which take part in the forward pass)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
