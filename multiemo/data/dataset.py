"""Dialogues as tensors for training: a torch Dataset over a split, and its collate function.

The dataset joins a :class:`Corpus` with the feature stores of any subset of the three
modalities. Every vector is read and checked once, when the dataset is built: a store whose
dimension disagrees with the config, an utterance without a vector, NaN or inf, or a dialogue
with more speakers than the speaker vector holds is an error that names the store file, the
dialogue or the utterance ids. A vector the store marks absent is a zero vector with
``present = False``, carried to the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from multiemo.config import resolve_path
from multiemo.data.corpus import Corpus, CorpusError, Dialogue
from multiemo.data.splits import DataError, ValidationRule
from multiemo.data.store import FeatureStore, StoreError

__all__ = ["DialogueDataset", "Batch", "collate", "split_dialogues", "open_stores", "DataError"]


@dataclass
class Batch:
    """A padded batch. B dialogues, U = longest dialogue, D_m per modality, S speakers."""

    features: dict[str, Tensor]  # modality -> (B, U, D_m), zeros where absent or padded
    present: dict[str, Tensor]  # modality -> (B, U) bool
    speaker_mask: Tensor  # (B, U, S) one-hot speaker, zeros at padding
    mask: Tensor  # (B, U) bool, True at real utterances
    labels: Tensor  # (B, U) long, -100 at padding
    dialogue_ids: list[str]
    utterance_ids: list[list[str]]

    def to(self, device: torch.device) -> "Batch":
        return Batch({m: t.to(device, non_blocking=True) for m, t in self.features.items()},
                     {m: t.to(device, non_blocking=True) for m, t in self.present.items()},
                     self.speaker_mask.to(device), self.mask.to(device), self.labels.to(device),
                     self.dialogue_ids, self.utterance_ids)


def split_dialogues(corpus: Corpus, validation: str = "fraction", valid_fraction: float = 0.05,
                    valid_seed: int = 2023) -> dict[str, list[Dialogue]]:
    """Train, valid and test dialogues by :class:`multiemo.data.splits.ValidationRule` (the one
    rule that fine-tuning and fitted projections use too).

    Raises:
        DataError: an empty split, ``"dev"`` on a corpus without one, or a split name other
            than train, dev and test (its dialogues would be dropped).
    """
    return ValidationRule(validation, valid_fraction, valid_seed).split(corpus)


def open_stores(root: str | Path, paths: dict[str, str], dims: dict[str, int]) -> dict[str, FeatureStore]:
    """Open the store of each modality and check its dimension against the config.

    Args:
        root: folder that relative paths are taken from.
        paths: modality → store path.
        dims: modality → the dimension the config expects (``model.<modality>_dim``).
    """
    stores = {}
    for m, rel in paths.items():
        path = resolve_path(root, rel)
        store = FeatureStore(path)
        if store.dim != dims[m]:
            raise DataError(f"{path}: {m} vectors have dimension {store.dim} but the config says "
                            f"model.{m}_dim={dims[m]}; set model.{m}_dim={store.dim}")
        stores[m] = store
    return stores


class DialogueDataset(torch.utils.data.Dataset):
    """The dialogues of one split, every tensor built up front.

    Args:
        corpus: the corpus (labels, speakers).
        dialogues: the dialogues of this split.
        stores: modality → feature store.
        num_speakers: size of the speaker one-hot.
        missing: ``"error"`` when a store has no row for an utterance, or ``"absent"``.
        require_labels: an unlabelled utterance is an error (training, evaluation); without it
            (prediction) its label is -100, as padding.
    """

    def __init__(self, corpus: Corpus, dialogues: Sequence[Dialogue],
                 stores: dict[str, FeatureStore], num_speakers: int, missing: str = "error",
                 require_labels: bool = True) -> None:
        if not dialogues:
            raise DataError(f"no dialogues given for corpus {corpus.name!r}")
        unlabelled = [u.id for d in dialogues for u in d.utterances if u.label is None]
        if unlabelled and require_labels:
            raise DataError(f"corpus {corpus.name!r}: {len(unlabelled)} utterance(s) have no label "
                            f"(e.g. {unlabelled[:5]}): training and evaluation need a label on every "
                            f"utterance (unlabelled conversations are for `multiemo predict`)")
        self.modalities = tuple(stores)
        self.num_speakers = num_speakers
        self.dialogue_ids = [d.id for d in dialogues]
        self.utterance_ids = [[u.id for u in d.utterances] for d in dialogues]
        flat_ids = [uid for ids in self.utterance_ids for uid in ids]
        bounds = np.cumsum([0] + [len(ids) for ids in self.utterance_ids])
        self._slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

        self.labels = torch.tensor([-100 if u.label is None else u.label
                                    for d in dialogues for u in d.utterances], dtype=torch.long)
        speakers = []
        for d in dialogues:
            try:
                idx = d.speaker_indices(corpus.speaker_vocab)
            except CorpusError as err:
                raise DataError(str(err)) from None
            if max(idx) >= num_speakers:
                raise DataError(f"dialogue {d.id!r} has {max(idx) + 1} speakers but the speaker "
                                f"vector holds {num_speakers} (model.num_speakers)")
            speakers.extend(idx)
        self.speakers = torch.tensor(speakers, dtype=torch.long)

        self.features: dict[str, Tensor] = {}
        self.present: dict[str, Tensor] = {}
        for m, store in stores.items():
            try:
                vectors, present = store.get(flat_ids, missing=missing)
            except StoreError as err:
                raise DataError(f"{m}: {err}") from None
            bad = ~np.isfinite(vectors).all(axis=1)
            if bad.any():
                ids = [flat_ids[i] for i in np.flatnonzero(bad)]
                raise DataError(f"{store.path}: NaN or inf in the {m} vectors of {len(ids)} "
                                f"utterance(s): {ids[:10]}")
            self.features[m] = torch.from_numpy(vectors)
            self.present[m] = torch.from_numpy(present)

    def __len__(self) -> int:
        return len(self.dialogue_ids)

    def __getitem__(self, i: int) -> dict:
        s = self._slices[i]
        return {"features": {m: t[s] for m, t in self.features.items()},
                "present": {m: t[s] for m, t in self.present.items()},
                "speaker": self.speakers[s], "labels": self.labels[s],
                "dialogue_id": self.dialogue_ids[i], "utterance_ids": self.utterance_ids[i],
                "num_speakers": self.num_speakers}

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


def collate(items: list[dict]) -> Batch:
    """Pad a list of dialogues into a :class:`Batch`."""
    lengths = torch.tensor([len(it["labels"]) for it in items])
    mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]  # (B, U)
    num_speakers = items[0]["num_speakers"]
    speaker = pad_sequence([it["speaker"] for it in items], batch_first=True)  # (B, U)
    speaker_mask = torch.nn.functional.one_hot(speaker, num_speakers).float() * mask[..., None]
    modalities = items[0]["features"].keys()
    return Batch(
        features={m: pad_sequence([it["features"][m] for it in items], batch_first=True) for m in modalities},
        present={m: pad_sequence([it["present"][m] for it in items], batch_first=True) for m in modalities},
        speaker_mask=speaker_mask, mask=mask,
        labels=pad_sequence([it["labels"] for it in items], batch_first=True, padding_value=-100),
        dialogue_ids=[it["dialogue_id"] for it in items],
        utterance_ids=[it["utterance_ids"] for it in items])
