"""The MultiEMO network, assembled from named components (docs/method.md §2): a context encoder
per modality (DialogueRNN by default), a fusion (MultiAttn by default) and a classifier; the
names and their builders are in :mod:`multiemo.components`."""

from multiemo.model.multiemo import MultiEMO, MultiEMOOutput, build_model, components_of, count_parameters

__all__ = ["MultiEMO", "MultiEMOOutput", "build_model", "components_of", "count_parameters"]
