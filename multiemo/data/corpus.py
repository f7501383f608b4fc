"""The corpus: dialogues of utterances and their labels, as plain frozen dataclasses, and its JSON file.

A corpus file (``corpus.json``) is what the readers and the official-pickle importer write and
what training reads. Labels are written as class names, so the file reads on its own::

    {"format": "multiemo-corpus", "version": 1, "name": "meld",
     "labels": ["neutral", "surprise", ...],
     "speaker_vocab": null,                      # null: speakers indexed by first appearance
     "dialogues": [{"id": "dia0", "split": "train",
                    "utterances": [{"id": "dia0_utt0", "speaker": "Chandler", "label": "neutral",
                                    "text": "...", "start": 976.059, "end": 981.731,
                                    "audio": "train_splits/dia0_utt0.mp4",
                                    "video": "train_splits/dia0_utt0.mp4"}, ...]}, ...]}

An utterance without a ``label`` key is unlabelled (``Utterance.label is None``): conversations
to predict may have no labels; training and evaluation refuse them, naming the utterances.

Media paths are relative to a media root that the extraction config gives. ``audio_span`` /
``video_span`` (seconds, ``[start, end]``) say which segment of the file is the utterance when the
file holds more than it (IEMOCAP's dialogue-long avi); absent, the whole file is the utterance.

``speaker_vocab`` fixes the speaker index of every speaker name (IEMOCAP: ``["M", "F"]``); when it
is null, a speaker's index is the order in which speakers first speak in their dialogue (MELD, as
in the released features, docs/method.md §6.1).

>>> utt = Utterance(id="d0_u0", speaker="A", label=1)
>>> corpus = Corpus("toy", ("neg", "pos"), (Dialogue("d0", "train", (utt,)),))
>>> corpus.label_counts("train")
[0, 1]
>>> Corpus.from_dict(corpus.to_dict()) == corpus
True
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from multiemo.data.atomic import atomic_write_text
from multiemo.errors import UserError

__all__ = ["Utterance", "Dialogue", "Corpus", "CorpusError", "MELD_LABELS", "IEMOCAP_LABELS",
           "SPLITS", "atomic_write_text", "csv_records", "BadRecord"]

MELD_LABELS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
IEMOCAP_LABELS = ("happiness", "sadness", "neutral", "anger", "excitement", "frustration")
SPLITS = ("train", "dev", "test")
FORMAT = "multiemo-corpus"
VERSION = 1


class CorpusError(UserError):
    """A corpus that breaks a rule; the message names the file and the dialogue or utterance."""


class BadRecord(ValueError):
    """A bad record of a raw release (a row, a line, an utterance): a reader raises it with a
    ``reason`` (the key it is counted under when skipped) and a message."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason

    def skip_or_raise(self, where: str, skip: bool, skipped: Counter) -> None:
        """Count the record under its reason when ``skip`` (``--skip-bad-rows``), else raise a
        :class:`CorpusError` of ``where`` (the file and line or id) and the message."""
        if not skip:
            raise CorpusError(f"{where}{self}") from None
        skipped[self.reason] += 1


def csv_records(reader: Any, path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` of each record a ``csv.reader`` / ``csv.DictReader`` gives after its
    header, ``line`` the physical line it starts on; a malformed record (a quote left open runs
    past the csv module's field limit) is a :class:`CorpusError` naming the file and that line."""
    last = reader.line_num
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise CorpusError(f"{path}:{last + 1}: malformed CSV record ({err}; a quote left "
                              f"open?)") from None
        line, last = last + 1, reader.line_num
        yield line, record


@dataclass(frozen=True)
class Utterance:
    """One utterance. ``label`` is the class index into ``Corpus.labels``, or ``None`` for an
    unlabelled utterance (a conversation to predict; training and evaluation refuse it)."""

    id: str
    speaker: str
    label: int | None
    text: str = ""
    start: float | None = None  # seconds, the utterance's time in its conversation (for ordering)
    end: float | None = None
    audio: str | None = None  # media file holding the utterance's audio, relative to a media root
    video: str | None = None  # media file holding its video
    audio_span: tuple[float, float] | None = None  # segment of `audio` to cut; None: the whole file
    video_span: tuple[float, float] | None = None


@dataclass(frozen=True)
class Dialogue:
    id: str
    split: str
    utterances: tuple[Utterance, ...]

    def speaker_indices(self, speaker_vocab: tuple[str, ...] | None) -> list[int]:
        """Per-utterance speaker index: from ``speaker_vocab`` or by order of first appearance."""
        if speaker_vocab is not None:
            index = {name: i for i, name in enumerate(speaker_vocab)}
            try:
                return [index[u.speaker] for u in self.utterances]
            except KeyError as err:
                raise CorpusError(f"dialogue {self.id}: speaker {err.args[0]!r} is not in the "
                                  f"speaker vocabulary {list(speaker_vocab)}") from None
        order: dict[str, int] = {}
        return [order.setdefault(u.speaker, len(order)) for u in self.utterances]


@dataclass(frozen=True)
class Corpus:
    name: str
    labels: tuple[str, ...]
    dialogues: tuple[Dialogue, ...]
    speaker_vocab: tuple[str, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict, compare=False)  # provenance, counts of skipped rows

    def __post_init__(self) -> None:
        self.validate()

    # -- queries --------------------------------------------------------------------------
    def split(self, name: str) -> list[Dialogue]:
        return [d for d in self.dialogues if d.split == name]

    @property
    def splits(self) -> list[str]:
        present = {d.split for d in self.dialogues}
        return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))

    def utterances(self, split: str | None = None) -> Iterator[Utterance]:
        for d in self.dialogues:
            if split is None or d.split == split:
                yield from d.utterances

    def label_counts(self, split: str) -> list[int]:
        """Utterances of each class in ``split`` (unlabelled ones are not counted)."""
        counts = Counter(u.label for u in self.utterances(split))
        return [counts.get(i, 0) for i in range(len(self.labels))]

    def stats(self) -> dict[str, Any]:
        """Dialogues, utterances and label counts (by name) per split."""
        out: dict[str, Any] = {"name": self.name, "splits": {}}
        for s in self.splits:
            dialogues = self.split(s)
            counts = self.label_counts(s)
            out["splits"][s] = {
                "dialogues": len(dialogues),
                "utterances": sum(len(d.utterances) for d in dialogues),
                "max_dialogue_length": max(len(d.utterances) for d in dialogues),
                "labels": dict(zip(self.labels, counts)),
            }
        return out

    # -- checks ---------------------------------------------------------------------------
    def validate(self, source: str = "corpus") -> None:
        if not self.labels:
            raise CorpusError(f"{source}: the corpus has no label set")
        repeated = sorted({name for name in self.labels if self.labels.count(name) > 1})
        if repeated:
            raise CorpusError(f"{source}: the label set {list(self.labels)} names {repeated} more "
                              f"than once: each class must have one name")
        seen_dialogues: set[str] = set()
        seen_utts: set[str] = set()
        for d in self.dialogues:
            if d.id in seen_dialogues:
                raise CorpusError(f"{source}: duplicate dialogue id {d.id!r}")
            seen_dialogues.add(d.id)
            if not d.utterances:
                raise CorpusError(f"{source}: dialogue {d.id!r} has no utterances")
            for u in d.utterances:
                if u.id in seen_utts:
                    raise CorpusError(f"{source}: duplicate utterance id {u.id!r} (dialogue {d.id!r})")
                seen_utts.add(u.id)
                if u.label is not None and not (isinstance(u.label, int) and
                                                0 <= u.label < len(self.labels)):
                    raise CorpusError(f"{source}: utterance {u.id!r} has label {u.label!r}, outside "
                                      f"the {len(self.labels)} classes {list(self.labels)}")
                if self.speaker_vocab is not None and u.speaker not in self.speaker_vocab:
                    raise CorpusError(f"{source}: utterance {u.id!r} has speaker {u.speaker!r}, not in "
                                      f"the speaker vocabulary {list(self.speaker_vocab)}")

    # -- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "name": self.name, "labels": list(self.labels),
            "speaker_vocab": list(self.speaker_vocab) if self.speaker_vocab is not None else None,
            "info": self.info,
            "dialogues": [
                {"id": d.id, "split": d.split, "utterances": [
                    {k: v for k, v in (("id", u.id), ("speaker", u.speaker),
                                        ("label", None if u.label is None else self.labels[u.label]),
                                        ("text", u.text),
                                        ("start", u.start), ("end", u.end), ("audio", u.audio),
                                        ("video", u.video),
                                        ("audio_span", list(u.audio_span) if u.audio_span else None),
                                        ("video_span", list(u.video_span) if u.video_span else None))
                     if v is not None}
                    for u in d.utterances]}
                for d in self.dialogues],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "corpus") -> "Corpus":
        if data.get("format") != FORMAT:
            raise CorpusError(f"{source}: not a multiemo corpus file (format={data.get('format')!r})")
        if data.get("version") != VERSION:
            raise CorpusError(f"{source}: corpus format version {data.get('version')!r} is not "
                              f"supported (this version reads {VERSION})")
        for key in ("name", "labels", "dialogues"):
            if key not in data:
                raise CorpusError(f"{source}: no {key!r} key (not a complete corpus file)")
        labels = tuple(data["labels"])
        label_index = {name: i for i, name in enumerate(labels)}
        dialogues = []
        for d in data["dialogues"]:
            for key in ("id", "split", "utterances"):
                if key not in d:
                    raise CorpusError(f"{source}: dialogue {d.get('id')!r} has no {key!r}")
            utts = []
            for u in d["utterances"]:
                for key in ("id", "speaker"):
                    if u.get(key) in (None, ""):
                        raise CorpusError(f"{source}: utterance {u.get('id')!r} of dialogue "
                                          f"{d['id']!r} has no {key!r}")
                if u.get("label") is not None and u.get("label") not in label_index:
                    raise CorpusError(f"{source}: utterance {u.get('id')!r} of dialogue {d.get('id')!r} "
                                      f"has label {u.get('label')!r}, not one of {list(labels)}")
                utts.append(Utterance(id=str(u["id"]), speaker=str(u["speaker"]),
                                      label=label_index.get(u.get("label")), text=u.get("text", ""),
                                      start=u.get("start"), end=u.get("end"), audio=u.get("audio"),
                                      video=u.get("video"),
                                      audio_span=_span(u.get("audio_span")),
                                      video_span=_span(u.get("video_span"))))
            dialogues.append(Dialogue(id=str(d["id"]), split=str(d["split"]), utterances=tuple(utts)))
        vocab = data.get("speaker_vocab")
        try:
            return cls(name=data["name"], labels=labels, dialogues=tuple(dialogues),
                       speaker_vocab=tuple(vocab) if vocab is not None else None,
                       info=data.get("info") or {})
        except CorpusError as err:
            raise CorpusError(str(err).replace("corpus:", f"{source}:", 1)) from None

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Corpus":
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"corpus file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CorpusError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(data, source=str(path))


def _span(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))
