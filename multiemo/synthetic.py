"""Synthetic feature-level corpora (clearly labelled SYNTHETIC) for the demo, tests and benchmarks.

Each modality carries only part of the label: the class index c is seen through a different
grouping of the classes per modality (text sees ``c // 2``, audio sees ``c % 2``, visual sees
``(c + c // 2) % 2``), as a group prototype plus Gaussian noise. No single modality can tell all
classes apart; together they can, so a model that fuses the three beats the best single one.
Dialogue lengths, speakers and labels are random; a share of utterances repeat the previous
label so that context helps too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from multiemo.data.corpus import Corpus, Dialogue, Utterance
from multiemo.data.store import write_store

__all__ = ["make_synthetic_corpus", "MELD_DIALOGUE_LENGTHS", "modality_groups"]

# Number of MELD dialogues (train + dev + test) of each length 1..33, counted from the real CSVs
# (MELD's {train,dev,test}_sent_emo.csv): used to shape synthetic benchmark data like MELD.
MELD_DIALOGUE_LENGTHS = {
    1: 88, 2: 81, 3: 78, 4: 69, 5: 101, 6: 90, 7: 89, 8: 90, 9: 77, 10: 82, 11: 79, 12: 79,
    13: 54, 14: 57, 15: 55, 16: 60, 17: 47, 18: 32, 19: 38, 20: 27, 21: 23, 22: 18, 23: 12,
    24: 5, 33: 1,
}


def modality_groups(modality: str, num_classes: int) -> np.ndarray:
    """Group of each class as one modality sees it.

    >>> modality_groups("text", 4).tolist(), modality_groups("audio", 4).tolist()
    ([0, 0, 1, 1], [0, 1, 0, 1])
    """
    c = np.arange(num_classes)
    rule = {"text": c // 2, "audio": c % 2, "visual": (c + c // 2) % 2}
    return rule[modality]


def make_synthetic_corpus(out_dir: str | Path, *, dialogues: dict[str, int],
                          dims: dict[str, int], num_classes: int = 4, num_speakers: int = 3,
                          lengths: dict[int, int] | Sequence[int] = (2, 12), noise: float = 1.0,
                          label_persistence: float = 0.3, class_prior: Sequence[float] | None = None,
                          absent_rate: float = 0.0, seed: int = 0) -> Corpus:
    """Write ``corpus.json`` and ``features/<modality>.safetensors`` under ``out_dir``.

    Args:
        out_dir: folder to write (the ``data.root`` of a training config).
        dialogues: split → number of dialogues, e.g. ``{"train": 80, "dev": 10, "test": 20}``.
        dims: modality → vector size, e.g. ``{"text": 32, "audio": 24, "visual": 40}``.
        num_classes: number of classes.
        num_speakers: speakers per dialogue at most.
        lengths: ``(min, max)`` dialogue length, or a histogram length → weight.
        noise: standard deviation of the noise (prototypes have unit-variance entries).
        label_persistence: chance that an utterance repeats the previous label.
        class_prior: class probabilities (uniform if None).
        absent_rate: share of vectors marked absent (zero, ``present = 0``) in each store.
        seed: random seed; the same seed gives the same files.

    Returns:
        The corpus that was written.
    """
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    labels = tuple(f"class{c}" for c in range(num_classes))
    prior = np.full(num_classes, 1.0 / num_classes) if class_prior is None else np.asarray(class_prior, float)
    if isinstance(lengths, dict):
        values = np.array(list(lengths)); weights = np.array(list(lengths.values()), float)
        draw_length = lambda: int(rng.choice(values, p=weights / weights.sum()))
    else:
        low, high = lengths
        draw_length = lambda: int(rng.integers(low, high + 1))

    dialogue_list, all_labels = [], []
    for split, count in dialogues.items():
        for d in range(count):
            n = draw_length()
            speakers = rng.integers(0, num_speakers, n)
            y = np.empty(n, dtype=int)
            for i in range(n):
                repeat = i > 0 and rng.random() < label_persistence
                y[i] = y[i - 1] if repeat else rng.choice(num_classes, p=prior)
            did = f"{split}_dia{d}"
            utts = tuple(Utterance(id=f"{did}_utt{i}", speaker=f"S{speakers[i]}", label=int(y[i]),
                                   text=f"synthetic utterance {i}") for i in range(n))
            dialogue_list.append(Dialogue(did, split, utts))
            all_labels.append(y)
    corpus = Corpus("synthetic", labels, tuple(dialogue_list),
                    info={"synthetic": True, "seed": seed, "noise": noise})
    corpus.save(out_dir / "corpus.json")

    ids = [u.id for d in dialogue_list for u in d.utterances]
    y_all = np.concatenate(all_labels)
    for m, dim in dims.items():
        groups = modality_groups(m, num_classes)
        prototypes = rng.standard_normal((groups.max() + 1, dim)).astype(np.float32)
        vectors = prototypes[groups[y_all]] + noise * rng.standard_normal((len(ids), dim)).astype(np.float32)
        present = rng.random(len(ids)) >= absent_rate
        write_store(out_dir / "features" / f"{m}.safetensors", ids, vectors, present,
                    info={"extractor": f"synthetic-{m}", "synthetic": True, "seed": seed,
                          "sees_groups": groups.tolist()})
    return corpus
