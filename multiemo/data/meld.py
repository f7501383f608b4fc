"""Read MELD from its official CSV files into a :class:`~multiemo.data.corpus.Corpus`.

The release has ``train_sent_emo.csv``, ``dev_sent_emo.csv`` and ``test_sent_emo.csv`` with the
columns ``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season,
Episode, StartTime, EndTime`` (times as ``00:16:16,059``).

Ids. MELD's dev and test CSVs number their dialogues from 0 again, so the ids carry the split for
dev and test: train keeps the plain ``dia{D}`` / ``dia{D}_utt{U}``; dev is ``dev_dia{D}`` /
``dev_dia{D}_utt{U}``; test is ``test_dia{D}`` / ``test_dia{D}_utt{U}``. Utterances are in
``Utterance_ID`` order (some ids are missing in the release; the times are not monotonic in about
thirty dialogues, so they are kept, not checked for order). Labels index
:data:`~multiemo.data.corpus.MELD_LABELS`; speakers are names, indexed by first appearance in
their dialogue (``speaker_vocab=None``). Transcripts and speaker names go through
:func:`~multiemo.data.text.normalize_text`.

Media. ``audio`` and ``video`` are both the utterance's clip, relative to a media root:
``train_splits/dia{D}_utt{U}.mp4``, ``dev_splits_complete/...``,
``output_repeated_splits_test/...``. Given ``media_root``, the reader finds each clip folder either
directly under it or under ``train/``, ``dev/``, ``test/`` (``MELD.Raw`` unpacked), writes the
paths relative to ``media_root``, and leaves the media of a clip that is not there empty
(counted in ``corpus.info["missing_media"]``).

Bad input is an error naming file and line: a missing column, an unknown emotion, a duplicate
(dialogue, utterance) id, an id or time that does not parse, an end before its start. With
``skip_bad_rows=True`` the bad rows (not a missing column) are skipped and counted in
``corpus.info["skipped"]`` (reason → count).
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from pathlib import Path

from multiemo.data.corpus import (MELD_LABELS, BadRecord, Corpus, CorpusError, Dialogue,
                                  Utterance, csv_records)
from multiemo.data.text import normalize_text

__all__ = ["read_meld", "MELD_FILES", "MELD_CLIP_DIRS", "meld_ids", "parse_meld_time"]

MELD_FILES = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
MELD_CLIP_DIRS = {"train": "train_splits", "dev": "dev_splits_complete",
                  "test": "output_repeated_splits_test"}
REQUIRED_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID",
                    "StartTime", "EndTime")
_TIME = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})$")


def meld_ids(split: str, dialogue: int, utterance: int) -> tuple[str, str]:
    """The (dialogue id, utterance id) of a MELD row.

    >>> meld_ids("train", 3, 1), meld_ids("test", 3, 1)
    (('dia3', 'dia3_utt1'), ('test_dia3', 'test_dia3_utt1'))
    """
    prefix = "" if split == "train" else f"{split}_"
    return f"{prefix}dia{dialogue}", f"{prefix}dia{dialogue}_utt{utterance}"


def parse_meld_time(text: str) -> float:
    """``"00:16:16,059"`` → seconds.

    >>> parse_meld_time("00:16:16,059")
    976.059
    """
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"time {text!r} is not of the form HH:MM:SS,mmm")
    h, m, s, ms = match.groups()
    return round(int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000, 3)


def _clip_dirs(media_root: Path) -> dict[str, Path]:
    """Where each split's clip folder is under ``media_root`` (relative to it)."""
    found = {}
    for split, folder in MELD_CLIP_DIRS.items():
        for candidate in (Path(folder), Path(split) / folder):
            if (media_root / candidate).is_dir():
                found[split] = candidate
                break
    return found


def _rows(reader: csv.DictReader, path: Path):
    """``(line, row)`` of a CSV (:func:`~multiemo.data.corpus.csv_records`); a file with a
    header and no rows is a warning."""
    count = 0
    for line, row in csv_records(reader, path):
        count += 1
        yield line, row
    if count == 0:
        logging.getLogger("multiemo").warning("%s has a header and no rows: its split is empty", path)


def _read_split(path: Path, split: str, skip: bool, skipped: Counter, clip_dir: Path | None,
                media_root: Path | None, missing_media: list[str]) -> list[Dialogue]:
    label_index = {name: i for i, name in enumerate(MELD_LABELS)}
    rows: dict[int, dict[int, Utterance]] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        lost = [c for c in REQUIRED_COLUMNS if c not in columns]
        if lost:
            raise CorpusError(f"{path}:1: missing column(s) {lost}; the header has {columns}")
        for line, row in _rows(reader, path):
            try:
                emotion = (row["Emotion"] or "").strip().lower()
                if emotion not in label_index:
                    raise BadRecord("unknown emotion", f"unknown emotion {row['Emotion']!r} "
                                  f"(expected one of {list(MELD_LABELS)})")
                try:
                    d, u = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
                except (TypeError, ValueError):
                    raise BadRecord("bad id", f"Dialogue_ID {row['Dialogue_ID']!r} / Utterance_ID "
                                  f"{row['Utterance_ID']!r} are not integers") from None
                try:
                    start, end = parse_meld_time(row["StartTime"] or ""), \
                        parse_meld_time(row["EndTime"] or "")
                except ValueError as err:
                    raise BadRecord("bad time", str(err)) from None
                if end < start:
                    raise BadRecord("bad time", f"EndTime {row['EndTime']} is before StartTime "
                                  f"{row['StartTime']}")
                if u in rows.get(d, {}):
                    raise BadRecord("duplicate id", f"duplicate (Dialogue_ID, Utterance_ID) = "
                                  f"({d}, {u})")
            except BadRecord as bad:
                bad.skip_or_raise(f"{path}:{line}: ", skip, skipped)
                continue
            _, uid = meld_ids(split, d, u)
            media = None
            if clip_dir is None:
                media = f"{MELD_CLIP_DIRS[split]}/dia{d}_utt{u}.mp4"
            else:
                rel = clip_dir / f"dia{d}_utt{u}.mp4"
                if media_root is not None and (media_root / rel).is_file():
                    media = rel.as_posix()
                else:
                    missing_media.append(uid)
            rows.setdefault(d, {})[u] = Utterance(
                id=uid, speaker=normalize_text(row["Speaker"] or ""), label=label_index[emotion],
                text=normalize_text(row["Utterance"] or ""), start=start, end=end,
                audio=media, video=media)
    return [Dialogue(meld_ids(split, d, 0)[0], split, tuple(utts[u] for u in sorted(utts)))
            for d, utts in sorted(rows.items())]


def read_meld(root: str | Path, *, splits: tuple[str, ...] = ("train", "dev", "test"),
              media_root: str | Path | None = None, skip_bad_rows: bool = False) -> Corpus:
    """Read MELD's CSVs under ``root``.

    Args:
        root: the folder of ``train_sent_emo.csv``, ``dev_sent_emo.csv``, ``test_sent_emo.csv``.
        splits: which of them to read.
        media_root: the folder of the clip folders; when given, clip paths are checked.
        skip_bad_rows: skip (and count) bad rows instead of raising.

    Returns:
        The corpus; ``info`` holds the source, per-reason skipped counts, the number of empty
        transcripts and the ids whose clip is missing.

    Raises:
        CorpusError: a missing file or column, or a bad row (without ``skip_bad_rows``), naming
            the file and line.
    """
    root = Path(root)
    skipped: Counter = Counter()
    missing_media: list[str] = []
    media = Path(media_root) if media_root else None
    dirs = _clip_dirs(media) if media is not None else {}
    dialogues: list[Dialogue] = []
    for split in splits:
        if split not in MELD_FILES:
            raise ValueError(f"unknown MELD split {split!r} (expected {list(MELD_FILES)})")
        path = root / MELD_FILES[split]
        if not path.is_file():
            raise CorpusError(f"MELD file {path} does not exist (root {root})")
        if media is not None and split not in dirs:
            raise CorpusError(f"media root {media}: no clip folder {MELD_CLIP_DIRS[split]!r} "
                              f"under it or under {split}/")
        dialogues += _read_split(path, split, skip_bad_rows, skipped, dirs.get(split), media,
                                 missing_media)
    empty = sum(1 for d in dialogues for u in d.utterances if not u.text)
    info = {"source": str(root), "reader": "meld", "skipped": dict(skipped), "empty_text": empty,
            "media_root": str(media) if media else None, "missing_media": len(missing_media),
            "missing_media_ids": missing_media[:100]}
    return Corpus("meld", MELD_LABELS, tuple(dialogues), speaker_vocab=None, info=info)
