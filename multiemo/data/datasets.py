"""The one table of datasets: name → its reader and its rules.

Nothing else in the toolkit tests a dataset's name: ``multiemo corpus stats|build``, the
extraction jobs and training ask this table. A dataset owns

- its **reader** (``module:function``, imported when used): ``read(root, media_root=...,
  skip_bad_rows=...) -> Corpus``;
- its **label set**, in the order of its class indices;
- its **media layout**: whether media paths in its corpus are relative to the release's root
  (IEMOCAP) or to a separate media folder (MELD), or it has no media (EmoryNLP, DailyDialog);
- its **primary metric**, the one its papers report first, which picks the epoch by default
  (``train.select_metric=auto``) and is a sweep's default objective: ``weighted_f1`` (MELD,
  IEMOCAP, EmoryNLP) or ``micro_f1`` over every class but one (DailyDialog: the six emotions,
  leaving out "no emotion"), with ``excluded_class`` naming the class left out;
- its **released-pickle layout** (``official``), for the datasets whose features the official
  MultiEMO code released (MELD, IEMOCAP; docs/method.md §6.1): what ``multiemo import-official``
  needs to know about them.

A corpus under any other name (your own, through the conversation file format) is scored with
weighted-F1 and reported in its label order.

>>> dataset_info("dailydialog").primary_metric, dataset_info("dailydialog").excluded_class
('micro_f1', 'no_emotion')
>>> dataset_info("my_corpus") is None
True
>>> primary_metric("my_corpus")
'weighted_f1'
>>> [name for name, d in DATASETS.items() if d.official is not None]
['meld', 'iemocap']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from multiemo.data.corpus import IEMOCAP_LABELS, MELD_LABELS, Corpus, CorpusError
from multiemo.data.dailydialog import DAILYDIALOG_LABELS
from multiemo.data.emorynlp import EMORYNLP_LABELS

__all__ = ["DatasetInfo", "OfficialLayout", "DATASETS", "dataset_info", "read_dataset", "primary_metric",
           "excluded_class_index", "METRICS"]

METRICS = ("weighted_f1", "macro_f1", "micro_f1")


@dataclass(frozen=True)
class OfficialLayout:
    """How a dataset is laid out in the official MultiEMO feature pickles (docs/method.md §6.1)."""

    items: int  # length of the Speakers.pkl tuple
    # per-utterance speakers: one-hot vectors (MELD; index = order of first appearance) or
    # names from ``speaker_vocab`` (IEMOCAP: 'M'/'F')
    speakers: Literal["onehot", "names"]
    dialogue_prefix: str  # before the released dialogue id: MELD 3 → "dia3"; "" keeps the name
    utterance_sep: str  # between dialogue and utterance number: "dia3_utt0", "Ses01F_impro01_0"
    speaker_vocab: tuple[str, ...] | None = None  # fixed speaker names; None: first appearance


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    reader: str  # "module:function"
    labels: tuple[str, ...]
    # where media paths are resolved: a separate folder (--media-root), the release's own
    # folder, nowhere (text corpora), or a folder given at extraction (conversation files)
    media: Literal["separate", "release", "none", "file"]
    primary_metric: str = "weighted_f1"
    excluded_class: str | None = None  # micro_f1 over every class but this one
    description: str = ""
    official: OfficialLayout | None = None  # the released feature pickles, if any

    def read(self, root: str | Path, *, media_root: str | Path | None = None,
             skip_bad_rows: bool = False, labels: Sequence[str] | None = None,
             default_split: str | None = None) -> Corpus:
        """The raw release at ``root`` (a conversation file: its path) as a :class:`Corpus`;
        ``labels`` and ``default_split`` are for the conversation file format only."""
        if media_root and self.media not in ("separate", "file"):
            where = "relative to --root" if self.media == "release" else "none"
            raise CorpusError(f"--media-root is not used by {self.name} (its media paths: {where})")
        module, function = self.reader.split(":")
        read = getattr(importlib.import_module(module), function)
        kwargs = {"media_root": media_root} if self.media == "separate" else {}
        if labels is not None:
            if self.media != "file":
                raise CorpusError(f"--labels is for the conversation file format; {self.name} has "
                                  f"its own label set {list(self.labels)}")
            kwargs["labels"] = labels
        if default_split is not None:
            if self.media != "file":
                raise CorpusError(f"--default-split is for the conversation file format; {self.name} "
                                  f"has its own splits")
            kwargs["default_split"] = default_split
        corpus = read(root, skip_bad_rows=skip_bad_rows, **kwargs)
        # where extraction resolves media paths, unless its config says otherwise
        if self.media == "release":
            corpus.info["media_root"] = str(Path(root).resolve())
        elif media_root:
            corpus.info["media_root"] = str(Path(media_root).resolve())
        return corpus


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("meld", "multiemo.data.meld:read_meld", MELD_LABELS, "separate",
                description="MELD: {train,dev,test}_sent_emo.csv, clips in a separate folder",
                official=OfficialLayout(items=10, speakers="onehot", dialogue_prefix="dia",
                                        utterance_sep="_utt")),
    DatasetInfo("iemocap", "multiemo.data.iemocap:read_iemocap", IEMOCAP_LABELS, "release",
                description="IEMOCAP 6-class: Session1..5 of the release",
                official=OfficialLayout(items=9, speakers="names", dialogue_prefix="",
                                        utterance_sep="_", speaker_vocab=("M", "F"))),
    DatasetInfo("emorynlp", "multiemo.data.emorynlp:read_emorynlp", EMORYNLP_LABELS, "none",
                description="EmoryNLP: emotion-detection-{trn,dev,tst}.json"),
    DatasetInfo("dailydialog", "multiemo.data.dailydialog:read_dailydialog", DAILYDIALOG_LABELS,
                "none", primary_metric="micro_f1", excluded_class="no_emotion",
                description="DailyDialog: {train,validation,test}/dialogues[_emotion]_<split>.txt"),
    DatasetInfo("conversations", "multiemo.data.conversations:read_conversations", (), "file",
                description="your own corpus: a conversation file (.csv or .jsonl, see README); "
                            "--labels a,b,c declares the classes and their order"),
)}


def dataset_info(name: str) -> DatasetInfo | None:
    """The table's entry for ``name`` (any case), or None for a corpus of another name."""
    return DATASETS.get(name.lower())


def read_dataset(name: str, root: str | Path, *, media_root: str | Path | None = None,
                 skip_bad_rows: bool = False, labels: Sequence[str] | None = None,
                 default_split: str | None = None) -> Corpus:
    """Read a raw release with the reader of ``name``; an unknown name is a CorpusError."""
    info = dataset_info(name)
    if info is None:
        raise CorpusError(f"unknown dataset {name!r}: known are {', '.join(DATASETS)} (your own "
                          f"corpus: `--dataset conversations` with a conversation file)")
    return info.read(root, media_root=media_root, skip_bad_rows=skip_bad_rows, labels=labels,
                     default_split=default_split)


def primary_metric(name: str) -> str:
    info = dataset_info(name)
    return info.primary_metric if info is not None else "weighted_f1"


def excluded_class_index(name: str, labels: tuple[str, ...] | list[str]) -> int | None:
    """Index of the class micro-F1 leaves out for this dataset, if its labels hold it."""
    info = dataset_info(name)
    if info is None or info.excluded_class is None or info.excluded_class not in labels:
        return None
    return list(labels).index(info.excluded_class)
