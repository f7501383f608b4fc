"""MultiAttn: one stack of cross-attention layers per modality (docs/method.md §2.2).

Every stack reads the same unfused unimodal sequences as its keys and values; only its queries
carry the stack's own output from layer to layer. The stacks share no weights. The order of the
other modalities follows the paper: text attends to audio then visual, audio to text then
visual, visual to text then audio.
"""

from __future__ import annotations

from torch import Tensor, nn

from multiemo.model.attention import MultiAttnLayer, MultiHeadAttention
from multiemo.model.packing import Packing

__all__ = ["MultiAttn"]


class MultiAttn(nn.Module):
    """Bidirectional multi-head cross-attention fusion over ``modalities``.

    Args:
        modalities: the modalities used, in the order text, audio, visual (any subset of two
            or three; with a single modality there is nothing to fuse and no stack is built).
        dim: model dimension.
        num_heads: attention heads.
        hidden_dim: feed-forward hidden size.
        num_layers: layers per stack.
        dropout: dropout rate.
    """

    def __init__(self, modalities: tuple[str, ...], dim: int, num_heads: int, hidden_dim: int,
                 num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.num_heads = num_heads
        num_others = len(self.modalities) - 1
        self.stacks = nn.ModuleDict({
            m: nn.ModuleList(MultiAttnLayer(dim, num_heads, hidden_dim, num_others, dropout)
                             for _ in range(num_layers))
            for m in (self.modalities if num_others else ())
        })
        self.others = {m: [o for o in self.modalities if o != m] for m in self.stacks}
        # who reads modality o: (stack, layer, position among that stack's others)
        self.readers = {o: [(m, layer, i) for m in self.stacks for layer in range(num_layers)
                            for i, other in enumerate(self.others[m]) if other == o]
                        for o in self.modalities}

    def forward(self, unimodal: dict[str, Tensor], key_masks: dict[str, Tensor],
                packing: Packing) -> dict[str, Tensor]:
        """Fuse each modality with the others.

        Args:
            unimodal: modality → ``(N, D)`` packed context-encoded sequence.
            key_masks: modality → ``(B, U)`` bool, True where that modality's vector is real
                (not padding, not absent).
            packing: the batch's layout (see :class:`Packing`).

        Returns:
            modality → ``(N, D)`` packed fused sequence (the input itself for a single modality).
        """
        fused: dict[str, Tensor] = {m: unimodal[m] for m in self.modalities if m not in self.stacks}
        if not self.stacks:
            return fused
        keys = {m: packing.keys(key_masks[m], self.num_heads) for m in self.modalities}
        # every attention that reads modality o (any stack, any layer) gets its keys and values
        # from one product over o
        key_values = {}
        for o, readers in self.readers.items():
            attentions = [self.stacks[m][layer].cross[i] for m, layer, i in readers]
            key_values.update(zip(readers, MultiHeadAttention.project_keys_values(attentions, unimodal[o], packing)))
        for m, stack in self.stacks.items():
            others = self.others[m]
            x = unimodal[m]
            for layer, block in enumerate(stack):
                x = block(x, [key_values[m, layer, i] for i in range(len(others))],
                          [keys[o] for o in others], packing)
            fused[m] = x
        return {m: fused[m] for m in self.modalities}
