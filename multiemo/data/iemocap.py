"""Read IEMOCAP from its release layout into a :class:`~multiemo.data.corpus.Corpus` (6 classes).

Layout under ``root`` (docs/method.md §6.2)::

    Session{1..5}/dialog/transcriptions/<dialog>.txt   Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
    Session{1..5}/dialog/EmoEvaluation/<dialog>.txt    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]
    Session{1..5}/sentences/wav/<dialog>/<utt>.wav
    Session{1..5}/dialog/avi/DivX/<dialog>.avi

The utterances are those of the EmoEvaluation summary lines (lines starting with ``[``; the
header, blank lines and per-annotator lines such as ``C-E1:`` or ``A-E2:`` are skipped) whose
emotion is one of the six classes: ``hap`` → happiness, ``sad``, ``neu``, ``ang``, ``exc`` →
excitement, ``fru`` (:data:`~multiemo.data.corpus.IEMOCAP_LABELS` order); ``sur``, ``fea``,
``dis``, ``oth``, ``xxx`` are dropped and counted (``info["dropped_labels"]``). The text comes
from the transcription; transcription lines of utterances that EmoEvaluation does not list
(``Ses01F_impro01_MXX0``...) are skipped and counted (``info["not_in_emoevaluation"]``), and
transcription lines that are not utterances at all (no id and time span) are bad rows. An
utterance with an empty transcript is kept with ``text=""`` and counted (``info["empty_text"]``).

Speaker: the M/F letter at the start of the id's last field (``F000`` → ``F``), not the letter in
the session name; ``speaker_vocab=("M", "F")``. Dialogue order: by start time (ties by id).
Split: Sessions 1-4 train, Session 5 test (no dev; training holds out a fraction of train).
Media, relative to ``root``: ``audio`` = the utterance's wav (whole file), ``video`` = the
dialogue's avi with ``video_span=(start, end)``. Transcripts go through
:func:`~multiemo.data.text.normalize_text`.

Bad input is an error naming file and line: an EmoEvaluation file without its transcription, a
summary or transcription line that does not parse, an unknown emotion code, a duplicate id, an
end before its start, an id outside its dialogue or with no M/F speaker letter. With
``skip_bad_rows=True`` bad lines (not a missing file) are skipped and counted
(``info["skipped"]``: reason → count).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from multiemo.data.corpus import IEMOCAP_LABELS, BadRecord, Corpus, CorpusError, Dialogue, Utterance
from multiemo.data.text import normalize_text

__all__ = ["read_iemocap", "IEMOCAP_CODES", "IEMOCAP_DROPPED", "iemocap_speaker"]

IEMOCAP_CODES = {"hap": "happiness", "sad": "sadness", "neu": "neutral", "ang": "anger",
                 "exc": "excitement", "fru": "frustration"}
IEMOCAP_DROPPED = ("sur", "fea", "dis", "oth", "xxx")
TEST_SESSIONS = (5,)
_SUMMARY = re.compile(r"^\[\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*\]\s+(\S+)\s+(\S+)\s+\[.*\]\s*$")
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*\]:\s?(.*)$")


def iemocap_speaker(utterance_id: str) -> str:
    """The speaker letter of an utterance id: the first letter of its last field.

    >>> iemocap_speaker("Ses01F_impro01_M013"), iemocap_speaker("Ses05M_script01_1b_F002")
    ('M', 'F')
    """
    letter = utterance_id.rsplit("_", 1)[-1][:1]
    if letter not in ("M", "F"):
        raise ValueError(f"utterance id {utterance_id!r} has no M/F speaker letter in its last field")
    return letter


def _lines(path: Path):
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            yield number, line.rstrip("\r\n")


def _read_transcript(path: Path, skip: bool, skipped: Counter) -> dict[str, str]:
    """utterance id → raw transcript text."""
    texts: dict[str, str] = {}
    for number, line in _lines(path):
        if not line.strip():
            continue
        match = _TRANSCRIPT.match(line)
        if not match:
            if not skip:
                raise CorpusError(f"{path}:{number}: transcript line does not parse (expected "
                                  f"'<utterance id> [start-end]: text'): {line[:80]!r}")
            skipped["bad transcript line"] += 1
            continue
        texts.setdefault(match.group(1), match.group(4))
    return texts


def _read_dialogue(session: int, evaluation: Path, transcript: Path, skip: bool,
                   counts: Counter, skipped: Counter) -> Dialogue | None:
    dialog = evaluation.stem
    texts = _read_transcript(transcript, skip, skipped)
    split = "test" if session in TEST_SESSIONS else "train"
    utts: list[Utterance] = []
    seen: set[str] = set()
    for number, line in _lines(evaluation):
        if not line.startswith("["):
            continue  # header, blank and per-annotator lines
        try:
            match = _SUMMARY.match(line)
            if not match:
                raise BadRecord("bad EmoEvaluation line", f"summary line does not parse (expected "
                               f"'[start - end]<TAB>id<TAB>emotion<TAB>[v, a, d]'): {line[:80]!r}")
            start, end, uid, code = float(match.group(1)), float(match.group(2)), match.group(3), \
                match.group(4)
            if not uid.startswith(dialog + "_"):
                raise BadRecord("bad id", f"utterance {uid!r} is not of dialogue {dialog!r}")
            try:
                speaker = iemocap_speaker(uid)
            except ValueError as err:
                raise BadRecord("bad id", str(err)) from None
            if code not in IEMOCAP_CODES and code not in IEMOCAP_DROPPED:
                raise BadRecord("unknown emotion", f"unknown emotion code {code!r} (expected one "
                               f"of {list(IEMOCAP_CODES) + list(IEMOCAP_DROPPED)})")
            if end < start:
                raise BadRecord("bad time", f"end {end} is before start {start}")
            if uid in seen:
                raise BadRecord("duplicate id", f"duplicate utterance id {uid!r}")
        except BadRecord as bad:
            bad.skip_or_raise(f"{evaluation}:{number}: ", skip, skipped)
            continue
        seen.add(uid)
        if code in IEMOCAP_DROPPED:
            counts[f"dropped:{code}"] += 1
            continue
        if uid not in texts:
            counts["no_transcript"] += 1
        text = normalize_text(texts.get(uid, ""))
        if not text:
            counts["empty_text"] += 1
        ses = f"Session{session}"
        utts.append(Utterance(
            id=uid, speaker=speaker, label=IEMOCAP_LABELS.index(IEMOCAP_CODES[code]), text=text,
            start=start, end=end, audio=f"{ses}/sentences/wav/{dialog}/{uid}.wav",
            video=f"{ses}/dialog/avi/DivX/{dialog}.avi", video_span=(start, end)))
    counts["not_in_emoevaluation"] += len(set(texts) - seen)
    if not utts:
        return None
    utts.sort(key=lambda u: (u.start, u.id))
    return Dialogue(dialog, split, tuple(utts))


def read_iemocap(root: str | Path, *, sessions: tuple[int, ...] = (1, 2, 3, 4, 5),
                 skip_bad_rows: bool = False) -> Corpus:
    """Read the IEMOCAP release under ``root`` (the folder of ``Session1``...``Session5``).

    Args:
        root: the release folder.
        sessions: which sessions to read (5 is the test split, the others train).
        skip_bad_rows: skip (and count) bad lines instead of raising.

    Returns:
        The 6-class corpus; ``info`` counts dropped labels, skipped lines, utterances of the
        transcriptions missing from EmoEvaluation, empty transcripts.

    Raises:
        CorpusError: a missing session folder, an EmoEvaluation file without its transcription,
            or a bad line (without ``skip_bad_rows``), naming the file and line.
    """
    root = Path(root)
    counts: Counter = Counter()
    skipped: Counter = Counter()
    dialogues: list[Dialogue] = []
    for session in sessions:
        folder = root / f"Session{session}" / "dialog"
        evaluations = sorted((folder / "EmoEvaluation").glob("*.txt"))
        if not evaluations:
            raise CorpusError(f"IEMOCAP: no EmoEvaluation files under {folder / 'EmoEvaluation'}")
        for evaluation in evaluations:
            transcript = folder / "transcriptions" / evaluation.name
            if not transcript.is_file():
                raise CorpusError(f"{evaluation}:1: EmoEvaluation file without its transcription "
                                  f"(expected {transcript})")
            dialogue = _read_dialogue(session, evaluation, transcript, skip_bad_rows,
                                      counts, skipped)
            if dialogue is not None:
                dialogues.append(dialogue)
    info = {"source": str(root), "reader": "iemocap", "skipped": dict(skipped),
            "dropped_labels": {k.split(":", 1)[1]: v for k, v in sorted(counts.items())
                               if k.startswith("dropped:")},
            "not_in_emoevaluation": counts["not_in_emoevaluation"],
            "no_transcript": counts["no_transcript"], "empty_text": counts["empty_text"]}
    return Corpus("iemocap", IEMOCAP_LABELS, tuple(dialogues), speaker_vocab=("M", "F"), info=info)
