"""The named components a MultiEMO model is assembled from: one small dict per kind.

========================  =====================  ==============================================
kind (config key)         names                  module
========================  =====================  ==============================================
``model.context``         ``dialoguernn``        :class:`~multiemo.model.dialoguernn.ContextEncoder`
                          ``transformer``        :class:`~multiemo.model.transformer_context.TransformerContext`
                          ``none``               no module: the projected vectors go on as they are
``model.fusion``          ``multiattn``          :class:`~multiemo.model.multiattn.MultiAttn`
                          ``concat``             :class:`~multiemo.model.concat.ConcatFusion`
``model.classifier``      ``mlp``                :class:`~multiemo.model.classifier.EmotionClassifier`
========================  =====================  ==============================================

(The loss terms ``ce``, ``swfc`` and ``hgr`` are the table ``LOSS_TERMS`` of
:mod:`multiemo.losses.objective`.)

A builder is a function of explicit keyword arguments that returns a module; every builder of
one kind takes the same arguments (it may ignore some), so :func:`multiemo.model.build_model`
can call any of them. No config object reaches a builder or a module. A new variant is one
module file, one builder + one line in its dict here, and the config value that names it.

This module sits outside :mod:`multiemo.model` and imports no torch: :class:`~multiemo.config.ModelConfig`
checks the names here whenever a config is built, so each builder imports its module when it is
called.

The interfaces a module of each kind has:

- context encoder: ``forward(u (B, U, D), speaker (B, U), lengths (B,)) -> (B, U, D)``, zeros
  at padding. A class may also define ``encode_many(encoders, inputs, speaker, lengths)`` to
  run several of its instances (one per modality) at once, as DialogueRNN does;
- fusion: ``forward(unimodal, key_masks, packing) -> dict`` (see
  :meth:`~multiemo.model.multiattn.MultiAttn.forward`);
- classifier: ``forward(f (N, M·D)) -> (logits (N, C), z (N, D))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:  # the builders import their module when called: the config reads the names
    from torch import nn  # here, and building a config must not import torch

    from multiemo.model.classifier import EmotionClassifier
    from multiemo.model.concat import ConcatFusion
    from multiemo.model.dialoguernn import ContextEncoder
    from multiemo.model.multiattn import MultiAttn
    from multiemo.model.transformer_context import TransformerContext

__all__ = ["CONTEXT_ENCODERS", "NO_CONTEXT", "FUSIONS", "CLASSIFIERS", "resolve_context", "resolve_fusion",
           "check_name"]


# -- context encoders ---------------------------------------------------------------------------

def dialoguernn_context(*, dim: int, num_heads: int, num_layers: int, hidden_dim: int,
                        bidirectional: bool, dropout: float, dropout_rec: float) -> ContextEncoder:
    """DialogueRNN, one way or both (docs/method.md §2.1); heads, layers and hidden size unused."""
    from multiemo.model.dialoguernn import ContextEncoder
    return ContextEncoder(dim, bidirectional, dropout, dropout_rec)


def transformer_context(*, dim: int, num_heads: int, num_layers: int, hidden_dim: int,
                        bidirectional: bool, dropout: float, dropout_rec: float) -> TransformerContext:
    """Speaker-aware Transformer, causal unless ``bidirectional``; ``dropout_rec`` unused."""
    from multiemo.model.transformer_context import TransformerContext
    return TransformerContext(dim, num_heads, num_layers, hidden_dim, causal=not bidirectional,
                              dropout=dropout)


NO_CONTEXT = "none"
CONTEXT_ENCODERS: dict[str, Callable[..., "nn.Module"]] = {
    "dialoguernn": dialoguernn_context,
    "transformer": transformer_context,
}


# -- fusions ------------------------------------------------------------------------------------

def multiattn_fusion(*, modalities: tuple[str, ...], dim: int, num_heads: int, hidden_dim: int,
                     num_layers: int, dropout: float) -> MultiAttn:
    """MultiAttn cross-attention stacks (docs/method.md §2.2)."""
    from multiemo.model.multiattn import MultiAttn
    return MultiAttn(modalities, dim, num_heads, hidden_dim, num_layers, dropout)


def concat_fusion(*, modalities: tuple[str, ...], dim: int, num_heads: int, hidden_dim: int,
                  num_layers: int, dropout: float) -> ConcatFusion:
    """Plain concatenation, the "w/o MultiAttn" ablation; no parameters."""
    from multiemo.model.concat import ConcatFusion
    return ConcatFusion(modalities)


FUSIONS: dict[str, Callable[..., "nn.Module"]] = {
    "multiattn": multiattn_fusion,
    "concat": concat_fusion,
}


# -- classifiers --------------------------------------------------------------------------------

def mlp_classifier(*, in_dim: int, dim: int, hidden_dim: int, num_classes: int,
                   dropout: float) -> EmotionClassifier:
    """Linear fusion layer then an MLP (docs/method.md §2.3)."""
    from multiemo.model.classifier import EmotionClassifier
    return EmotionClassifier(in_dim, dim, hidden_dim, num_classes, dropout)


CLASSIFIERS: dict[str, Callable[..., "nn.Module"]] = {
    "mlp": mlp_classifier,
}


# -- reading the config values ------------------------------------------------------------------

def check_name(key: str, name: str, choices: Mapping[str, object] | tuple[str, ...]) -> str:
    """``name`` if it is one of ``choices``, else a ValueError naming ``key`` and the choices.

    >>> check_name("model.fusion", "concat", FUSIONS)
    'concat'
    >>> check_name("model.fusion", "sum", FUSIONS)
    Traceback (most recent call last):
    ...
    ValueError: model.fusion: unknown name 'sum'; choose one of multiattn, concat
    """
    if name not in choices:
        raise ValueError(f"{key}: unknown name {name!r}; choose one of {', '.join(choices)}")
    return name


def resolve_context(modalities: tuple[str, ...], context: str | Mapping[str, str] | None,
                    text_context: bool, known: tuple[str, ...] = ("text", "audio", "visual")) -> dict[str, str]:
    """The context encoder of each modality, from ``model.context`` and ``model.text_context``.

    - ``context`` unset (None): DialogueRNN for audio and visual, and for text only if
      ``text_context`` (the released MultiEMO: MELD's text features carry their context
      already). This is the only case ``text_context`` is read.
    - one name: that encoder for every modality, text included.
    - a mapping modality → name: those; a modality it leaves out takes the unset rule above.
      It may name modalities the model does not use (ignored), but no other keys.

    >>> resolve_context(("text", "audio"), None, text_context=False)
    {'text': 'none', 'audio': 'dialoguernn'}
    >>> resolve_context(("text",), "transformer", text_context=False)
    {'text': 'transformer'}
    >>> resolve_context(("text", "audio", "visual"), {"text": "transformer"}, text_context=False)
    {'text': 'transformer', 'audio': 'dialoguernn', 'visual': 'dialoguernn'}
    """
    default = {m: "dialoguernn" if m != "text" or text_context else NO_CONTEXT for m in modalities}
    names = (*CONTEXT_ENCODERS, NO_CONTEXT)
    if context is None:
        return default
    if isinstance(context, str):
        check_name("model.context", context, names)
        return {m: context for m in modalities}
    for m, name in context.items():
        if m not in known:
            raise ValueError(f"model.context: {m!r} is not a modality; a per-modality context names "
                             f"some of {', '.join(known)}")
        check_name(f"model.context.{m}", name, names)
    return {m: context.get(m, default[m]) for m in modalities}


def resolve_fusion(fusion: str | None, multiattn: bool) -> str:
    """The fusion's name, from ``model.fusion`` and its older alias ``model.multiattn``.

    ``multiattn: false`` means ``fusion: concat``; unset, the fusion is MultiAttn. Saying
    ``multiattn: false`` with ``fusion: multiattn`` is a contradiction (a ValueError).

    >>> resolve_fusion(None, multiattn=False)
    'concat'
    >>> resolve_fusion("concat", multiattn=True)
    'concat'
    """
    if fusion is None:
        return "multiattn" if multiattn else "concat"
    check_name("model.fusion", fusion, FUSIONS)
    if not multiattn and fusion != "concat":
        raise ValueError(f"model.multiattn=false means model.fusion=concat, but model.fusion={fusion}: "
                         f"drop model.multiattn")
    return fusion
