"""Import the feature pickles released with the official MultiEMO code (docs/method.md §6.1).

``multiemo import-official --dataset {meld,iemocap} --src DIR --out DIR`` reads

* ``DIR/Speakers.pkl``: the DialogueRNN-style tuple. Item 1: dialogue id → per-utterance
  speakers (MELD: one-hot vectors, index = order of first appearance in the dialogue;
  IEMOCAP: ``'M'``/``'F'``); item 2: dialogue id → class indices; item 7: train dialogue ids
  (for MELD, train + dev); item 8: test dialogue ids. Item 0, when it is a dict of per-utterance
  id lists of the right lengths (DialogueRNN's ``videoIDs``), gives the utterance ids.
* ``DIR/TextFeatures.pkl``, ``AudioFeatures.pkl``, ``VisualFeatures.pkl``: dialogue id → the
  dialogue's per-utterance vectors (a list of arrays or one 2-D array);

and writes ``OUT/corpus.json`` and ``OUT/features/{text,audio,visual}.safetensors``, the paths
training reads by default. Everything is checked before anything is written.

Ids: MELD dialogue ``d`` (an int) becomes ``dia{d}`` and its utterances ``dia{d}_utt{i}`` (``i``
from item 0 when it holds integer utterance ids, else the position); IEMOCAP keeps its dialogue
names (``Ses01F_impro01``) and takes utterance ids from item 0 (``Ses01F_impro01_F000``), else
``{dialogue}_{i}``. The importer writes the splits ``train`` and ``test`` only: the validation
split is drawn from train at training time (``data.validation``).

MELD speakers become ``speaker{k}`` with ``k`` the one-hot index, and the corpus indexes them by
first appearance (``speaker_vocab=None``), which is the released one-hots' own order; where a
dialogue's one-hots follow another order the names are kept and the count is recorded in
``corpus.info`` (DialogueRNN treats parties alike, so only the numbering differs).

**Security.** Unpickling runs code. This module is the only place in the toolkit that loads a
pickle, only when asked to import, and it warns: import pickles only from a trusted source.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from multiemo.data.corpus import Corpus, CorpusError, Dialogue, Utterance
from multiemo.data.datasets import DATASETS, OfficialLayout, dataset_info
from multiemo.data.store import StoreError, write_store
from multiemo.errors import UserError

__all__ = ["run_command", "OfficialImportError", "UntrustedPickleWarning", "import_official", "read_official",
           "FEATURE_FILES"]

FEATURE_FILES = {"text": "TextFeatures.pkl", "audio": "AudioFeatures.pkl",
                 "visual": "VisualFeatures.pkl"}
SPEAKERS_FILE = "Speakers.pkl"
_ITEM_IDS, _ITEM_SPEAKERS, _ITEM_LABELS, _ITEM_TRAIN, _ITEM_TEST = 0, 1, 2, 7, 8
TRUST_WARNING = ("loading pickles runs code from them: import only pickles from a trusted source "
                 "(the official MultiEMO release)")


class OfficialImportError(UserError):
    """Released pickles that do not fit the expected layout; names the file, key and item."""


class UntrustedPickleWarning(UserWarning):
    """Unpickling executes code; the importer says so every time it loads pickles."""


def _load_pickle(path: Path) -> Any:
    if not path.is_file():
        raise OfficialImportError(f"{path} does not exist (expected the released "
                                  f"{path.name} of docs/method.md §6.1)")
    try:
        with path.open("rb") as fh:
            # latin-1 reads Python 2 str (IEMOCAP) and numpy arrays pickled under Python 2
            return pickle.load(fh, encoding="latin1")
    except Exception as err:  # any unpickling failure: a truncated or foreign file
        raise OfficialImportError(f"{path}: not a readable pickle ({type(err).__name__}: "
                                  f"{err})") from err


def _as_str(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _layout(dataset: str) -> tuple[OfficialLayout, tuple[str, ...]]:
    """The released-pickle layout of ``dataset`` and its classes, from the table of datasets."""
    info = dataset_info(dataset)
    if info is None or info.official is None:
        known = [name for name, d in DATASETS.items() if d.official is not None]
        raise OfficialImportError(f"unknown dataset {dataset!r}: the official MultiEMO pickles "
                                  f"exist for {', '.join(known)}")
    return info.official, info.labels


def _dialogue_name(layout: OfficialLayout, key: Any) -> str:
    number = int(key) if isinstance(key, (int, np.integer)) else _as_str(key)
    return f"{layout.dialogue_prefix}{number}"


def _utterance_ids(layout: OfficialLayout, key: Any, name: str, n: int, video_ids: Any
                   ) -> list[str]:
    given = video_ids.get(key) if isinstance(video_ids, dict) else None
    if given is not None and not isinstance(given, (str, bytes)):
        given = list(given)
        if len(given) == n:
            if all(isinstance(u, (int, np.integer)) for u in given):
                ids = [f"{name}{layout.utterance_sep}{int(u)}" for u in given]
            else:
                ids = [_as_str(u) for u in given]
            if len(set(ids)) == n:
                return ids
    return [f"{name}{layout.utterance_sep}{i}" for i in range(n)]


def _split_ids(items: Sequence[Any], index: int, path: Path) -> list[Any]:
    value = items[index]
    if isinstance(value, dict):
        value = list(value)
    try:
        ids = list(value)
    except TypeError:
        raise OfficialImportError(f"{path}: item {index} should list dialogue ids, got "
                                  f"{type(value).__name__}") from None
    try:
        return sorted(ids)  # the official loader sorts each split
    except TypeError:
        return ids


def _onehot_speakers(vectors: Any, key: Any, path: Path, width: int | None
                   ) -> tuple[list[str], int, bool]:
    try:
        onehots = np.asarray([np.asarray(v, dtype=np.float64).reshape(-1) for v in vectors])
    except ValueError:
        raise OfficialImportError(f"{path}: item 1, dialogue {key!r}: speaker vectors of "
                                  f"different lengths") from None
    if onehots.ndim != 2:
        raise OfficialImportError(f"{path}: item 1, dialogue {key!r}: expected one speaker "
                                  f"vector per utterance, got shape {onehots.shape}")
    if width is not None and onehots.shape[1] != width:
        raise OfficialImportError(f"{path}: item 1, dialogue {key!r}: speaker vectors hold "
                                  f"{onehots.shape[1]} speakers, the others {width}")
    bad = [i for i, v in enumerate(onehots)
           if not (np.isin(v, (0.0, 1.0)).all() and v.sum() == 1.0)]
    if bad:
        raise OfficialImportError(f"{path}: item 1, dialogue {key!r}: the speaker vector of "
                                  f"utterance(s) {bad[:10]} is not one-hot (e.g. "
                                  f"{onehots[bad[0]].tolist()}): all zeros or several ones")
    index = onehots.argmax(axis=1)
    first_seen = list(dict.fromkeys(index.tolist()))
    in_order = first_seen == list(range(len(first_seen)))
    return [f"speaker{k}" for k in index], onehots.shape[1], in_order


def _named_speakers(values: Any, key: Any, path: Path, vocab: Sequence[str]) -> list[str]:
    speakers = [_as_str(v) for v in values]
    bad = sorted({s for s in speakers if s not in vocab})
    if bad:
        raise OfficialImportError(f"{path}: item 1, dialogue {key!r}: speaker(s) {bad} do not "
                                  f"fit the {len(vocab)}-speaker vector {list(vocab)}")
    return speakers


def _labels(values: Any, key: Any, path: Path, classes: Sequence[str],
            utt_ids: list[str]) -> list[int]:
    out = []
    for i, value in enumerate(np.asarray(values).reshape(-1).tolist()):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or not 0 <= value < len(classes):
            raise OfficialImportError(f"{path}: item 2, dialogue {key!r}, utterance {utt_ids[i]}: "
                                      f"label {value!r} is outside the {len(classes)} classes "
                                      f"0..{len(classes) - 1} ({', '.join(classes)})")
        out.append(value)
    return out


def _features(table: Any, key: Any, path: Path, n: int) -> np.ndarray:
    if key not in table:
        raise OfficialImportError(f"{path}: no features for dialogue {key!r}")
    value = table[key]
    try:
        rows = [np.asarray(v, dtype=np.float32).reshape(-1) for v in value]
        matrix = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    except (TypeError, ValueError) as err:
        raise OfficialImportError(f"{path}: dialogue {key!r}: features are not one vector per "
                                  f"utterance of a common size ({err})") from None
    if matrix.shape[0] != n:
        raise OfficialImportError(f"{path}: dialogue {key!r} has {matrix.shape[0]} feature "
                                  f"vectors but {n} labelled utterances in {SPEAKERS_FILE}")
    return matrix


def read_official(dataset: str, src: str | Path
                  ) -> tuple[Corpus, dict[str, tuple[list[str], np.ndarray]]]:
    """Load and check the released pickles; nothing is written.

    Returns:
        The corpus (splits ``train`` and ``test``) and, per modality, the utterance ids in
        corpus order with their ``(N, D)`` float32 features.

    Raises:
        OfficialImportError: a missing or unreadable file, a layout that differs from docs/method.md
            §6.1, lengths that disagree between speakers, labels and features, a label outside
            the class set, a speaker the speaker vector cannot hold, NaN or inf in features
            (with the utterance ids); each names the file and dialogue.
    """
    dataset = dataset.lower()
    layout, classes = _layout(dataset)
    src = Path(src)
    warnings.warn(TRUST_WARNING, UntrustedPickleWarning, stacklevel=2)
    spk_path = src / SPEAKERS_FILE
    items = _load_pickle(spk_path)
    if not isinstance(items, (tuple, list)) or len(items) < 9:
        raise OfficialImportError(f"{spk_path}: expected the DialogueRNN-style tuple of "
                                  f"{layout.items} items, got "
                                  f"{type(items).__name__}"
                                  + (f" of {len(items)} items" if isinstance(items, (tuple, list))
                                     else ""))
    speakers_by, labels_by = items[_ITEM_SPEAKERS], items[_ITEM_LABELS]
    for index, value in ((_ITEM_SPEAKERS, speakers_by), (_ITEM_LABELS, labels_by)):
        if not isinstance(value, dict):
            raise OfficialImportError(f"{spk_path}: item {index} should be a dict dialogue id → "
                                      f"per-utterance values, got {type(value).__name__}")
    train, test = _split_ids(items, _ITEM_TRAIN, spk_path), _split_ids(items, _ITEM_TEST, spk_path)
    both = set(train) & set(test)
    if both:
        raise OfficialImportError(f"{spk_path}: dialogue(s) {sorted(both, key=str)[:10]} are in "
                                  f"both the train ids (item 7) and the test ids (item 8)")
    tables = {}
    for modality, filename in FEATURE_FILES.items():
        tables[modality] = _load_pickle(src / filename)
        if not isinstance(tables[modality], dict):
            raise OfficialImportError(f"{src / filename}: expected a dict dialogue id → features, "
                                      f"got {type(tables[modality]).__name__}")

    dialogues, features = [], {m: [] for m in FEATURE_FILES}
    width, out_of_order = None, 0
    for split, keys in (("train", train), ("test", test)):
        for key in keys:
            for index, table in ((_ITEM_SPEAKERS, speakers_by), (_ITEM_LABELS, labels_by)):
                if key not in table:
                    raise OfficialImportError(f"{spk_path}: dialogue {key!r} of the {split} ids "
                                              f"has no entry in item {index}")
            name = _dialogue_name(layout, key)
            raw_speakers, raw_labels = speakers_by[key], labels_by[key]
            n = len(raw_labels)
            if len(raw_speakers) != n:
                raise OfficialImportError(f"{spk_path}: dialogue {key!r} has {len(raw_speakers)} "
                                          f"speakers (item 1) but {n} labels (item 2)")
            if n == 0:
                raise OfficialImportError(f"{spk_path}: dialogue {key!r} has no utterances")
            utt_ids = _utterance_ids(layout, key, name, n, items[_ITEM_IDS])
            if layout.speakers == "onehot":
                speakers, width, in_order = _onehot_speakers(raw_speakers, key, spk_path, width)
                out_of_order += not in_order
            else:
                speakers = _named_speakers(raw_speakers, key, spk_path, layout.speaker_vocab or ())
            labels = _labels(raw_labels, key, spk_path, classes, utt_ids)
            for modality, table in tables.items():
                features[modality].append(_features(table, key, src / FEATURE_FILES[modality], n))
            dialogues.append(Dialogue(id=name, split=split, utterances=tuple(
                Utterance(id=u, speaker=s, label=y) for u, s, y in zip(utt_ids, speakers, labels))))

    ids = [u.id for d in dialogues for u in d.utterances]
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for modality, parts in features.items():
        path = src / FEATURE_FILES[modality]
        dims = sorted({p.shape[1] for p in parts})
        if len(dims) > 1:
            first = {p.shape[1]: d.id for p, d in zip(parts, dialogues)}
            raise OfficialImportError(f"{path}: feature vectors of different sizes "
                                      f"{dims} (e.g. dialogue {first[dims[0]]} has {dims[0]}, "
                                      f"{first[dims[-1]]} has {dims[-1]})")
        matrix = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        if bad.size:
            raise OfficialImportError(f"{path}: NaN or inf in the features of {bad.size} "
                                      f"utterance(s): {[ids[i] for i in bad[:10]]}"
                                      f"{' ...' if bad.size > 10 else ''}")
        out[modality] = (ids, matrix)
    unused = len(set(labels_by) - set(train) - set(test))
    info = {"source": "official MultiEMO feature pickles (docs/method.md §6.1)", "src": str(src),
            "dialogues_in_neither_split": unused}
    if layout.speakers == "onehot":
        info["speaker_vector_size"] = width
        info["dialogues_with_onehots_not_in_first_appearance_order"] = out_of_order
    try:
        corpus = Corpus(name=dataset, labels=tuple(classes), dialogues=tuple(dialogues),
                        speaker_vocab=layout.speaker_vocab,
                        info=info)
    except CorpusError as err:  # e.g. duplicate utterance ids from item 0
        raise OfficialImportError(f"{spk_path}: {err}") from None
    return corpus, out


def import_official(dataset: str, src: str | Path, out: str | Path) -> Corpus:
    """Read the released pickles of ``dataset`` from ``src`` and write ``out/corpus.json`` and
    ``out/features/{text,audio,visual}.safetensors``; returns the corpus.

    The stores are written first and the corpus last, each atomically, so a ``corpus.json`` is
    only ever beside complete stores.
    """
    corpus, features = read_official(dataset, src)
    out = Path(out)
    for modality, (ids, matrix) in features.items():
        source = Path(src) / FEATURE_FILES[modality]
        try:
            write_store(out / "features" / f"{modality}.safetensors", ids, matrix,
                        info={"extractor": f"official-{modality}", "source": str(source),
                              "dataset": corpus.name,
                              "note": "features released with the official MultiEMO code"})
        except StoreError as err:
            raise OfficialImportError(f"{source}: {err}") from None
    corpus.save(out / "corpus.json")
    return corpus


def run_command(args) -> int:
    """``multiemo import-official`` (the options are declared in :mod:`multiemo.cli`)."""
    print(f"multiemo import-official: warning: {TRUST_WARNING}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrustedPickleWarning)  # printed just above
        corpus = import_official(args.dataset, args.src, args.out)
    for split, stats in corpus.stats()["splits"].items():
        print(f"{split}: {stats['dialogues']} dialogues, {stats['utterances']} utterances")
    out = Path(args.out)
    print(f"wrote {out / 'corpus.json'} and {out / 'features'}/"
          f"{{{','.join(FEATURE_FILES)}}}.safetensors")
    return 0
