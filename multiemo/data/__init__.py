"""Corpora, feature stores and the torch dataset that joins them (knows nothing of the model)."""

from multiemo.data.corpus import (IEMOCAP_LABELS, MELD_LABELS, Corpus, CorpusError, Dialogue,
                                  Utterance)
from multiemo.data.store import FeatureStore, StoreError, write_store

__all__ = ["Corpus", "CorpusError", "Dialogue", "Utterance", "MELD_LABELS", "IEMOCAP_LABELS",
           "FeatureStore", "StoreError", "write_store"]
