"""The MultiEMO network: DialogueRNN context, MultiAttn fusion, classifier (docs/method.md §2)."""

from multiemo.model.multiemo import MultiEMO, MultiEMOOutput, build_model, count_parameters

__all__ = ["MultiEMO", "MultiEMOOutput", "build_model", "count_parameters"]
