"""Read DailyDialog from its official text release into a :class:`~multiemo.data.corpus.Corpus`.

Layout under ``root`` (the release's ``train.zip``, ``validation.zip``, ``test.zip`` unpacked)::

    train/dialogues_train.txt              Say , Jim , how about ... ? __eou__ You know ... __eou__
    train/dialogues_emotion_train.txt      0 0
    validation/dialogues_validation.txt    (and dialogues_emotion_validation.txt)
    test/dialogues_test.txt                (and dialogues_emotion_test.txt)

One dialogue per line: its utterances each end with ``__eou__``; the emotion file has, on the
same line number, one space-separated emotion code per utterance. The folders map to the
splits ``train``, ``dev`` (``validation``) and ``test``. Official sizes: 11,118 / 1,000 / 1,000
dialogues and 87,170 / 8,069 / 7,740 utterances (train / dev / test).

Labels: :data:`DAILYDIALOG_LABELS`, whose index is the release's emotion code (0 no emotion,
1 anger, 2 disgust, 3 fear, 4 happiness, 5 sadness, 6 surprise). "no emotion" dominates (over
80% of the utterances), so papers report the micro-F1 over the six emotions leaving out
``no_emotion``, and the macro-F1; the metrics themselves are computed elsewhere.

Ids: dialogue ``{split}_dia{n}`` and utterance ``{split}_dia{n}_utt{i}``, with ``split`` the
corpus split (``train``, ``dev``, ``test``), ``n`` the 0-based line index in the file (kept when
lines before it are skipped) and ``i`` the 0-based utterance index in the line. Speakers: the
two parties alternate, utterance ``i`` is ``"A"`` when ``i`` is even, ``"B"`` when odd
(:func:`dailydialog_speaker`; ``speaker_vocab=("A", "B")``).

Text: each utterance is the text between two ``__eou__`` marks, through
:func:`~multiemo.data.text.normalize_text` (which also strips it) and otherwise as the release
has it: DailyDialog is tokenised with spaces before punctuation (``"Hello , how are you ?"``) and
that spacing is kept, not undone. An empty utterance (``__eou__ __eou__``) is kept with
``text=""`` and counted (``info["empty_text"]``).

Bad input is an error naming file and line: a missing file; the dialogue and emotion files of a
split with different line counts (trailing blank lines aside); a blank dialogue line (empty
dialogue); text after a line's last ``__eou__``; an emotion code that is not an integer in 0..6;
a line whose ``__eou__`` count and emotion-code count disagree; a split without dialogues. With
``skip_bad_rows=True`` the bad dialogues (reasons ``"empty dialogue"``, ``"missing __eou__"``,
``"bad emotion code"``, ``"count mismatch"``) are skipped and counted in
``corpus.info["skipped"]`` (reason → count, one per dialogue); a missing file or a line-count
difference is always an error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from multiemo.data.corpus import BadRecord, Corpus, CorpusError, Dialogue, Utterance
from multiemo.data.text import normalize_text

__all__ = ["read_dailydialog", "DAILYDIALOG_LABELS", "DAILYDIALOG_SPLITS", "dailydialog_files",
           "dailydialog_speaker"]

DAILYDIALOG_LABELS = ("no_emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
DAILYDIALOG_SPLITS = {"train": "train", "dev": "validation", "test": "test"}  # split → folder
EOU = "__eou__"


def dailydialog_files(root: str | Path, split: str) -> tuple[Path, Path]:
    """The (dialogues, emotions) files of a corpus split under ``root``.

    >>> [p.as_posix() for p in dailydialog_files("dd", "dev")]
    ['dd/validation/dialogues_validation.txt', 'dd/validation/dialogues_emotion_validation.txt']
    """
    folder = DAILYDIALOG_SPLITS[split]
    base = Path(root) / folder
    return base / f"dialogues_{folder}.txt", base / f"dialogues_emotion_{folder}.txt"


def dailydialog_speaker(index: int) -> str:
    """The speaker of the ``index``-th utterance (0-based) of a dialogue.

    >>> [dailydialog_speaker(i) for i in range(3)]
    ['A', 'B', 'A']
    """
    return "A" if index % 2 == 0 else "B"


def _lines(path: Path) -> list[str]:
    """The lines of a file (split on ``\\n`` only, ``\\r`` dropped), less trailing blank lines."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        lines = [line.rstrip("\r") for line in fh.read().split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _parse(text_path: Path, emotion_path: Path, number: int, text_line: str,
           emotion_line: str) -> tuple[list[str], list[int]]:
    """(utterance texts, emotion codes) of one dialogue line, or BadRecord naming file and line."""
    if not text_line.strip():
        raise BadRecord("empty dialogue", f"{text_path}:{number}: empty dialogue (a blank line)")
    parts = text_line.split(EOU)
    if parts[-1].strip():
        raise BadRecord("missing __eou__", f"{text_path}:{number}: text after the last {EOU}: "
                       f"{parts[-1].strip()[:60]!r} (each utterance ends with {EOU})")
    codes = []
    for token in emotion_line.split():
        try:
            code = int(token)
        except ValueError:
            code = -1
        if not 0 <= code < len(DAILYDIALOG_LABELS):
            raise BadRecord("bad emotion code", f"{emotion_path}:{number}: emotion code {token!r} "
                           f"is not an integer in 0..{len(DAILYDIALOG_LABELS) - 1}")
        codes.append(code)
    texts = parts[:-1]
    if len(texts) != len(codes):
        raise BadRecord("count mismatch", f"{text_path}:{number}: {len(texts)} utterances "
                       f"({EOU} marks) but {emotion_path}:{number} has {len(codes)} emotion codes")
    return [normalize_text(t) for t in texts], codes


def _read_split(root: Path, split: str, skip: bool, skipped: Counter) -> list[Dialogue]:
    text_path, emotion_path = dailydialog_files(root, split)
    for path in (text_path, emotion_path):
        if not path.is_file():
            raise CorpusError(f"DailyDialog file {path} does not exist (root {root})")
    text_lines, emotion_lines = _lines(text_path), _lines(emotion_path)
    if len(text_lines) != len(emotion_lines):
        longer, shorter = (text_path, emotion_path) if len(text_lines) > len(emotion_lines) \
            else (emotion_path, text_path)
        first = min(len(text_lines), len(emotion_lines)) + 1
        raise CorpusError(f"{longer}:{first}: line {first} has no counterpart in {shorter} "
                          f"({text_path.name} has {len(text_lines)} lines, {emotion_path.name} "
                          f"has {len(emotion_lines)}: the two files must align line by line)")
    dialogues = []
    for n, (text_line, emotion_line) in enumerate(zip(text_lines, emotion_lines)):
        try:
            texts, codes = _parse(text_path, emotion_path, n + 1, text_line, emotion_line)
        except BadRecord as bad:
            bad.skip_or_raise("", skip, skipped)
            continue
        did = f"{split}_dia{n}"
        dialogues.append(Dialogue(did, split, tuple(
            Utterance(id=f"{did}_utt{i}", speaker=dailydialog_speaker(i), label=code, text=text)
            for i, (text, code) in enumerate(zip(texts, codes)))))
    if not dialogues:
        left = " left after skipping bad lines" if skip else ""
        raise CorpusError(f"{text_path}: no dialogues{left} (the {split} split would be empty)")
    return dialogues


def read_dailydialog(root: str | Path, *, skip_bad_rows: bool = False) -> Corpus:
    """Read DailyDialog's dialogue and emotion files under ``root``.

    Args:
        root: the folder of ``train/``, ``validation/`` and ``test/``.
        skip_bad_rows: skip (and count) bad dialogue lines instead of raising.

    Returns:
        The 7-class corpus (:data:`DAILYDIALOG_LABELS`, index = emotion code) with splits
        ``train``, ``dev``, ``test``; ``info`` holds the source, the folders read, per-reason
        skipped counts and the number of empty utterances.

    Raises:
        CorpusError: a missing file, files of different line counts, or a bad line (without
            ``skip_bad_rows``), naming the file and line.
    """
    root = Path(root)
    skipped: Counter = Counter()
    dialogues: list[Dialogue] = []
    for split in DAILYDIALOG_SPLITS:
        dialogues += _read_split(root, split, skip_bad_rows, skipped)
    info = {"source": str(root), "reader": "dailydialog", "folders": dict(DAILYDIALOG_SPLITS),
            "skipped": dict(skipped),
            "empty_text": sum(1 for d in dialogues for u in d.utterances if not u.text)}
    return Corpus("dailydialog", DAILYDIALOG_LABELS, tuple(dialogues), speaker_vocab=("A", "B"),
                  info=info)
