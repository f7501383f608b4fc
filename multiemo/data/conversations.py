"""Read and write the conversation file format: your own corpus as CSV or JSONL, one row per utterance.

This is the one format for conversations that are not in an official release (MELD, IEMOCAP...):
a corpus of your own to train on, and, later, new conversations to predict. A file is either

* ``.csv``: UTF-8 (a byte-order mark is allowed), comma-separated, a header row naming the
  columns, then one row per utterance; an **empty cell means "not given"**; or
* ``.jsonl``: UTF-8, one JSON object per line (blank lines are ignored); a missing key or
  ``null`` means "not given".

The format is chosen by the extension (``.csv`` or ``.jsonl``, any case); any other extension is an
error. Both formats have the same fields; columns or keys not in the table are ignored (listed in
``corpus.info["ignored_columns"]``), so a file may carry extra columns such as ``sentiment``.

| field | required | type | meaning |
|---|---|---|---|
| ``dialogue_id`` | yes | string | the conversation of the utterance; a dialogue's rows need not be adjacent |
| ``speaker`` | yes | string | speaker name (indexed by first appearance in the dialogue) |
| ``text`` | yes | string | the transcript; may be empty, but the column (JSONL: key) must exist |
| ``utterance_index`` | one of these two (*) | integer | position in the dialogue (``3``; ``3.0`` is read as 3); unique within the dialogue, need not be contiguous |
| ``start`` | one of these two (*) | number, seconds | start time of the utterance in its conversation |
| ``label`` | yes (**), for prediction no | string | class name |
| ``split`` | no (***) | string | ``train``, ``dev`` or ``test``; the same in every row of a dialogue |
| ``utterance_id`` | no | string | unique in the file; default ``{dialogue_id}_utt{k}``, ``k`` the 0-based position after sorting |
| ``end`` | no | number, seconds | end time; not before ``start`` |
| ``audio`` | no | path | media file with the utterance's audio, relative to the media root given at extraction |
| ``video`` | no | path | media file with its video, relative to the media root |
| ``audio_start``, ``audio_end`` | no, both or neither | number, seconds | the utterance's segment of the ``audio`` file (time within that file); absent: the whole file is the utterance |
| ``video_start``, ``video_end`` | no, both or neither | number, seconds | the same for ``video`` |

(*) Ordering. At least one of ``utterance_index`` / ``start`` must be given in every row. Within a
dialogue, utterances are sorted by ``utterance_index`` when the dialogue's rows give it (then every
row of that dialogue must give it, and two rows with the same index are an error); a dialogue
whose rows give no ``utterance_index`` is sorted by ``start`` (ties keep the file order).
Dialogues keep the order in which they first appear in the file.

(**) Labels. Every row of a corpus to train on needs a label; conversations to predict
(``require_labels=False``, what ``multiemo predict`` reads) may leave it out in any row, and the
rows that give one are scored against it. The class set
is either declared (``labels=[...]``, e.g. from the config; it is the class order, and a label
outside it is an error) or taken from the data: the sorted set of the label names that occur
(``corpus.info["labels_from"]`` is ``"declared"`` or ``"data (sorted)"``).

(***) Split. Without a ``split`` column (or value) a row gets ``default_split`` (``multiemo corpus
build --default-split``); when that is not given either, it is an error naming the missing column.

Text and speaker names go through :func:`~multiemo.data.text.normalize_text`; other string cells
are stripped of surrounding spaces. In JSONL, ids, speakers and labels may also be JSON integers
(``"dialogue_id": 3`` reads as ``"3"``), numbers may be JSON numbers or strings.

A CSV file::

    dialogue_id,utterance_index,speaker,text,label,split,start,end,audio,audio_start,audio_end
    d1,0,Ann,"Hi, how are you?",neutral,train,0.0,1.4,d1.wav,0.0,1.4
    d1,1,Bob,I got the job!,joy,train,1.6,3.0,d1.wav,1.6,3.0
    d2,0,Ann,Where were you?,anger,test,,,,,

The same conversations as JSONL::

    {"dialogue_id": "d1", "utterance_index": 0, "speaker": "Ann", "text": "Hi, how are you?", "label": "neutral", "split": "train", "start": 0.0, "end": 1.4, "audio": "d1.wav", "audio_start": 0.0, "audio_end": 1.4}
    {"dialogue_id": "d1", "utterance_index": 1, "speaker": "Bob", "text": "I got the job!", "label": "joy", "split": "train", "start": 1.6, "end": 3.0, "audio": "d1.wav", "audio_start": 1.6, "audio_end": 3.0}
    {"dialogue_id": "d2", "utterance_index": 0, "speaker": "Ann", "text": "Where were you?", "label": "anger", "split": "test"}

Bad input is a :class:`~multiemo.data.corpus.CorpusError` naming the file and the line (1-based
physical line; the CSV header is line 1; a CSV record that spans lines is named by its first
line): an unsupported extension, a missing file, an undecodable byte, an empty file or a header
with no rows (``no rows``), a missing required column (named) or field, malformed JSON (line and
the decoder's message), a row with more or fewer cells than the header, a missing ``speaker`` /
``dialogue_id``, a row with neither ``utterance_index`` nor ``start``, a non-number in
``utterance_index`` / ``start`` / ``end`` / a span, ``end`` before ``start``, a half-given or
reversed span or a span without its media path, a duplicate (dialogue, ``utterance_index``), a
duplicate utterance id, a missing label (``no label``), a label outside the declared set, a split
name other than train/dev/test, and rows of one dialogue that disagree on the split. With
``skip_bad_rows=True`` a bad row (not a file-level problem: extension, encoding, missing column,
no rows) is skipped and counted in ``corpus.info["skipped"]`` (reason → count).

:func:`write_conversations` writes a corpus in this format (every field, label names, an explicit
``utterance_id`` and ``utterance_index``), so that reading the file back with the corpus's label
order gives the same corpus:

>>> import tempfile, os
>>> from multiemo.data.corpus import Dialogue, Utterance
>>> corpus = Corpus("toy", ("neg", "pos"), (Dialogue("d0", "train", (
...     Utterance("d0_u0", "A", 1, "Great!", start=0.0, end=1.5),
...     Utterance("d0_u1", "B", 0, "Not really.", start=1.5, audio="d0.wav", audio_span=(1.5, 3.0)),
... )),))
>>> folder = tempfile.mkdtemp()
>>> for ext in ("csv", "jsonl"):
...     path = write_conversations(corpus, os.path.join(folder, f"toy.{ext}"))
...     assert read_conversations(path, labels=corpus.labels) == corpus
>>> read_conversations(path).info["labels_from"]
'data (sorted)'
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from multiemo.data.atomic import atomic_write_text
from multiemo.data.corpus import (SPLITS, BadRecord, Corpus, CorpusError, Dialogue, Utterance,
                                  csv_records)
from multiemo.data.text import normalize_text

__all__ = ["read_conversations", "read_conversation_rows", "write_conversations", "CONVERSATION_FIELDS", "REQUIRED_FIELDS",
           "CONVERSATION_FORMATS"]

CONVERSATION_FORMATS = ("csv", "jsonl")
log = logging.getLogger("multiemo")
REQUIRED_FIELDS = ("dialogue_id", "speaker", "text")
ORDER_FIELDS = ("utterance_index", "start")
#: every field, in the column order that :func:`write_conversations` writes
CONVERSATION_FIELDS = ("dialogue_id", "utterance_id", "utterance_index", "speaker", "text", "label",
                       "split", "start", "end", "audio", "audio_start", "audio_end", "video",
                       "video_start", "video_end")
_TIME_FIELDS = ("start", "end", "audio_start", "audio_end", "video_start", "video_end")


@dataclass
class _Row:
    line: int
    dialogue: str
    uid: str | None
    index: int | None
    speaker: str
    text: str
    label: str | None
    split: str
    times: dict[str, float | None]
    audio: str | None
    video: str | None


@dataclass
class _DialogueState:
    first_line: int
    split: str
    by_index: bool
    indices: dict[int, int] = field(default_factory=dict)  # utterance_index -> line
    rows: list[_Row] = field(default_factory=list)


def _format_of(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in CONVERSATION_FORMATS:
        raise CorpusError(f"{path}: a conversation file must end in .csv or .jsonl "
                          f"(not {path.suffix or 'no extension'!r})")
    return fmt


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: not UTF-8 (byte {data[err.start]:#04x} at offset "
                          f"{err.start}); save the file as UTF-8") from None


# -- records: (line, fields given, error) ---------------------------------------------------
Record = tuple[int, dict[str, Any], BadRecord | None]


def _csv_records(path: Path, text: str) -> tuple[list[str], Iterator[Record]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise CorpusError(f"{path}:1: malformed CSV header ({err})") from None
    if header is None or not any(cell.strip() for cell in header):
        raise CorpusError(f"{path}:1: no rows (the file is empty; expected a header row and one "
                          f"row per utterance)")
    columns = [cell.strip() for cell in header]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise CorpusError(f"{path}:1: column(s) {repeated} appear more than once in the header")

    def records() -> Iterator[Record]:
        for line, cells in csv_records(reader, path):
            if not any(cell.strip() for cell in cells):
                continue  # a blank line, or a spreadsheet's row of empty cells
            if len(cells) != len(columns):
                yield line, {}, BadRecord("wrong number of cells",
                                        f"{len(cells)} cells, but the header has {len(columns)} "
                                        f"columns (a comma in an unquoted text?)")
                continue
            given = {}
            for column, cell in zip(columns, cells):
                if column == "text":
                    given[column] = cell  # an empty text is a given, empty transcript
                elif cell.strip():
                    given[column] = cell.strip()
            yield line, given, None

    return columns, records()


def _jsonl_records(text: str) -> Iterator[Record]:
    for line, raw in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 may be in a string
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            yield line, {}, BadRecord("malformed JSON", f"malformed JSON ({err.msg} at column "
                                                      f"{err.colno})")
            continue
        if not isinstance(obj, dict):
            yield line, {}, BadRecord("malformed JSON", f"not a JSON object but a "
                                                      f"{type(obj).__name__}: one object per line")
            continue
        yield line, _given(obj), None


def _given(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a JSON object (or a mapping) gives: null, or an empty string in an optional
    field, is "not given" (as an empty CSV cell)."""
    return {k: v for k, v in obj.items() if v is not None and not (
        isinstance(v, str) and not v.strip() and k not in REQUIRED_FIELDS)}


# -- values -------------------------------------------------------------------------------
def _string(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRecord("bad value", f"{key} must be a string, not {json.dumps(value)}")
    return value if key == "text" else str(value).strip()


def _number(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError
        number = float(value)
    except ValueError:
        raise BadRecord("bad number", f"{key} {value!r} is not a number (seconds)") from None
    if not math.isfinite(number):
        raise BadRecord("bad number", f"{key} {value!r} is not a finite number")
    return number


def _index(row: dict[str, Any]) -> int | None:
    value = row.get("utterance_index")
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError
        number = float(value)
        if not number.is_integer():
            raise ValueError
    except (ValueError, OverflowError):
        raise BadRecord("bad number", f"utterance_index {value!r} is not an integer") from None
    return int(number)


def _parse(line: int, row: dict[str, Any], fmt: str, default_split: str | None,
           label_set: set[str] | None, require_labels: bool = True) -> _Row:
    """One row's fields, typed and checked on their own (no other row needed)."""
    if fmt == "jsonl":  # (a CSV's columns are checked on its header)
        for key in REQUIRED_FIELDS:
            if key not in row:
                hint = '; write "text": "" for an empty transcript' if key == "text" else ""
                raise BadRecord("missing field", f"no {key!r} field (required{hint})")
    dialogue = _string(row, "dialogue_id")
    if not dialogue:
        raise BadRecord("missing value", "no dialogue_id")
    speaker = normalize_text(_string(row, "speaker") or "")
    if not speaker:
        raise BadRecord("missing value", f"no speaker (dialogue {dialogue!r})")
    text = normalize_text(_string(row, "text") or "")
    index = _index(row)
    times = {key: _number(row, key) for key in _TIME_FIELDS}
    if index is None and times["start"] is None:
        raise BadRecord("no order", "neither utterance_index nor start is given: one of them orders "
                      "the utterances of a dialogue")
    if times["start"] is not None and times["end"] is not None and times["end"] < times["start"]:
        raise BadRecord("bad time", f"end {times['end']} is before start {times['start']}")
    media = {key: _string(row, key) or None for key in ("audio", "video")}
    for key in ("audio", "video"):
        lo, hi = times[f"{key}_start"], times[f"{key}_end"]
        if (lo is None) != (hi is None):
            raise BadRecord("bad span", f"{key}_start and {key}_end go together: give both or neither")
        if lo is not None and hi is not None:
            if media[key] is None:
                raise BadRecord("bad span", f"{key}_start/{key}_end are given but no {key} path")
            if hi < lo:
                raise BadRecord("bad span", f"{key}_end {hi} is before {key}_start {lo}")
    label = _string(row, "label") or None
    if label is None and require_labels:
        raise BadRecord("no label", "no label (every row of a training corpus needs one; "
                      "unlabelled conversations are for `multiemo predict`)")
    if label is not None and label_set is not None and label not in label_set:
        raise BadRecord("unknown label", f"unknown label {label!r} (the declared labels are "
                      f"{sorted(label_set)})")
    split = _string(row, "split") or default_split
    if split is None:
        raise BadRecord("no split", "no split: the 'split' field is missing or empty and no default "
                      "split is given (fill the field, or pass --default-split train|dev|test)")
    if split not in SPLITS:
        raise BadRecord("unknown split", f"split {split!r} is not one of {list(SPLITS)}")
    return _Row(line=line, dialogue=dialogue, uid=_string(row, "utterance_id") or None, index=index,
                speaker=speaker, text=text, label=label, split=split, times=times,
                audio=media["audio"], video=media["video"])


def read_conversations(path: str | Path, *, labels: Sequence[str] | None = None,
                       name: str | None = None, default_split: str | None = None,
                       skip_bad_rows: bool = False, require_labels: bool = True) -> Corpus:
    """Read a conversation file (CSV or JSONL, see the module docstring for the format).

    With ``require_labels`` (a corpus to train on) a row without a label is an error (``line N:
    no label``); without it (conversations to predict) such a row is an unlabelled utterance
    (``Utterance.label is None``), and a row that gives a label is still checked against
    ``labels``.

    Args:
        path: a ``.csv`` or ``.jsonl`` file.
        labels: the ordered class set (e.g. declared in the config); a row label outside it is an
            error. ``None``: the sorted set of the label names in the file.
        name: the corpus name; default the file's stem.
        default_split: the split (train/dev/test) of rows that give none (no ``split`` column or
            an empty cell); ``None``: such a row is an error.
        skip_bad_rows: skip (and count, in ``info["skipped"]`` by reason) bad rows instead of
            raising. File-level problems (extension, encoding, a missing column, no rows) still
            raise.
        require_labels: whether every row needs a label (see above).

    Returns:
        The corpus. ``info`` holds ``source`` (the path), ``reader`` (``"conversations"``),
        ``format`` (``"csv"`` or ``"jsonl"``), ``skipped`` (reason → count), ``labels_from``
        (``"declared"`` or ``"data (sorted)"``), ``empty_text`` (utterances with an empty
        transcript) and ``ignored_columns`` (columns or keys not in the format).

    Raises:
        CorpusError: bad input, naming the file and line (see the module docstring).
        ValueError: ``default_split`` is not a split name; TypeError: ``labels`` is a string.
    """
    path = Path(path)
    fmt = _format_of(path)
    if default_split is not None and default_split not in SPLITS:
        raise ValueError(f"default_split {default_split!r} is not one of {list(SPLITS)}")
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of class names, not one string")
    if not path.is_file():
        raise CorpusError(f"conversation file {path} does not exist")
    text = _decode(path)

    ignored: set[str] = set()
    if fmt == "csv":
        columns, records = _csv_records(path, text)
        lost = [c for c in REQUIRED_FIELDS if c not in columns]
        if lost:
            raise CorpusError(f"{path}:1: missing column(s) {lost}; the header has {columns}")
        if not any(c in columns for c in ORDER_FIELDS):
            raise CorpusError(f"{path}:1: missing column: give 'utterance_index' or 'start' (or "
                              f"both) to order the utterances; the header has {columns}")
        if "split" not in columns and default_split is None:
            raise CorpusError(f"{path}:1: missing column 'split' and no default split given: add "
                              f"the column, or pass --default-split train|dev|test")
        ignored = set(columns) - set(CONVERSATION_FIELDS)
    else:
        records = _jsonl_records(text)

    return _assemble(records, source=str(path), fmt=fmt, name=name if name is not None else path.stem,
                     labels=labels, default_split=default_split, skip_bad_rows=skip_bad_rows,
                     require_labels=require_labels, ignored=ignored)


def read_conversation_rows(rows: Iterable[Mapping[str, Any]], *, labels: Sequence[str] | None = None,
                           name: str = "conversations", default_split: str | None = None,
                           skip_bad_rows: bool = False, require_labels: bool = True,
                           source: str = "row") -> Corpus:
    """Conversations given as Python mappings, one per utterance, with the fields (and rules) of
    a JSONL line; errors name ``source`` and the 1-based row number (``row 3: no speaker``).

    >>> corpus = read_conversation_rows([
    ...     {"dialogue_id": "d", "utterance_index": 0, "speaker": "Ann", "text": "Hi!"},
    ...     {"dialogue_id": "d", "utterance_index": 1, "speaker": "Bob", "text": "Hello."}],
    ...     labels=("neg", "pos"), default_split="test", require_labels=False)
    >>> [(u.id, u.speaker, u.label) for u in corpus.utterances()]
    [('d_utt0', 'Ann', None), ('d_utt1', 'Bob', None)]
    """
    if default_split is not None and default_split not in SPLITS:
        raise ValueError(f"default_split {default_split!r} is not one of {list(SPLITS)}")

    def records() -> Iterator[Record]:
        for line, row in enumerate(rows, start=1):
            if not isinstance(row, Mapping):
                yield line, {}, BadRecord("malformed row", f"not a mapping but a {type(row).__name__}")
                continue
            yield line, _given(row), None

    return _assemble(records(), source=source, fmt="jsonl", name=name, labels=labels,
                     default_split=default_split, skip_bad_rows=skip_bad_rows,
                     require_labels=require_labels, ignored=set(), where=f"{source} ")


def _warn_case_only(label_names: Sequence[str], source: str) -> None:
    """Log a warning for label names taken from the data that differ only in case."""
    groups: dict[str, list[str]] = {}
    for name in label_names:
        groups.setdefault(name.casefold(), []).append(name)
    clashes = [names for names in groups.values() if len(names) > 1]
    if clashes:
        named = "; ".join(" and ".join(repr(n) for n in names) for names in clashes)
        log.warning("%s: labels that differ only in case: %s; they stay separate classes (the "
                    "label set is %s): make them one name in the file, or declare the classes "
                    "with --labels", source, named, list(label_names))


def _assemble(records: Iterable[Record], *, source: str, fmt: str, name: str,
              labels: Sequence[str] | None, default_split: str | None, skip_bad_rows: bool,
              require_labels: bool, ignored: set[str], where: str | None = None) -> Corpus:
    """The corpus of parsed records: rows checked, grouped into dialogues, ordered, ids given.
    Errors start with ``where`` and the line (default ``"<source>:"``)."""
    where = where if where is not None else f"{source}:"
    known = set(CONVERSATION_FIELDS)
    label_set = set(labels) if labels is not None else None
    skipped: Counter = Counter()
    dialogues: dict[str, _DialogueState] = {}
    explicit_ids: dict[str, int] = {}  # utterance_id -> line
    rows_seen = 0
    for line, given, bad in records:
        rows_seen += 1
        try:
            if bad is not None:
                raise bad
            if fmt == "jsonl":
                ignored |= set(given) - known
            row = _parse(line, given, fmt, default_split, label_set, require_labels)
            state = dialogues.get(row.dialogue)
            if state is not None:
                if row.split != state.split:
                    raise BadRecord("split mismatch", f"dialogue {row.dialogue!r} has split "
                                  f"{row.split!r} here but {state.split!r} on line {state.first_line}")
                if state.by_index and row.index is None:
                    raise BadRecord("no order", f"no utterance_index, but dialogue {row.dialogue!r} "
                                  f"gives one on line {state.first_line}: give it in every row of "
                                  f"a dialogue or in none")
                if not state.by_index and row.index is not None:
                    raise BadRecord("no order", f"utterance_index is given, but not on line "
                                  f"{state.first_line} of dialogue {row.dialogue!r}: give it in "
                                  f"every row of a dialogue or in none")
                if row.index is not None and row.index in state.indices:
                    raise BadRecord("duplicate index", f"duplicate utterance_index {row.index} in "
                                  f"dialogue {row.dialogue!r} (also on line "
                                  f"{state.indices[row.index]})")
            if row.uid is not None and row.uid in explicit_ids:
                raise BadRecord("duplicate id", f"duplicate utterance_id {row.uid!r} (also on line "
                              f"{explicit_ids[row.uid]})")
        except BadRecord as err:
            err.skip_or_raise(f"{where}{line}: ", skip_bad_rows, skipped)
            continue
        if state is None:
            state = dialogues[row.dialogue] = _DialogueState(line, row.split, row.index is not None)
        if row.index is not None:
            state.indices[row.index] = line
        if row.uid is not None:
            explicit_ids[row.uid] = line
        state.rows.append(row)

    if rows_seen == 0:
        after = "after the header" if fmt == "csv" else "in the file"
        raise CorpusError(f"{where}{2 if fmt == 'csv' else 1}: no rows {after} (one row per "
                          f"utterance expected)")
    if not dialogues:
        raise CorpusError(f"{source}: no rows left: all {rows_seen} rows are bad "
                          f"(skipped: {dict(skipped)})")

    if labels is not None:
        label_names, labels_from = tuple(labels), "declared"
    else:
        label_names = tuple(sorted({r.label for s in dialogues.values() for r in s.rows
                                    if r.label is not None}))
        labels_from = "data (sorted)"
        _warn_case_only(label_names, source)
    label_index = {label: i for i, label in enumerate(label_names)}

    used_ids: dict[str, int] = dict(explicit_ids)
    out: list[Dialogue] = []
    for dialogue_id, state in dialogues.items():
        if state.by_index:
            rows = sorted(state.rows, key=lambda r: r.index)
        else:
            rows = sorted(state.rows, key=lambda r: r.times["start"])  # stable: ties keep file order
        utterances = []
        for k, row in enumerate(rows):
            uid = row.uid
            if uid is None:
                uid = f"{dialogue_id}_utt{k}"
                if uid in used_ids:
                    detail = (f"the default utterance id {uid!r} of this row is also the id on line "
                              f"{used_ids[uid]}: give this row an utterance_id")
                    if not skip_bad_rows:
                        raise CorpusError(f"{where}{row.line}: {detail}")
                    skipped["duplicate id"] += 1
                    continue
                used_ids[uid] = row.line
            t = row.times
            utterances.append(Utterance(
                id=uid, speaker=row.speaker, label=label_index.get(row.label), text=row.text,
                start=t["start"], end=t["end"], audio=row.audio, video=row.video,
                audio_span=(t["audio_start"], t["audio_end"]) if t["audio_start"] is not None else None,
                video_span=(t["video_start"], t["video_end"]) if t["video_start"] is not None else None))
        if utterances:
            out.append(Dialogue(dialogue_id, state.split, tuple(utterances)))

    info = {"source": source, "reader": "conversations", "format": fmt,
            "skipped": dict(skipped), "labels_from": labels_from,
            "empty_text": sum(1 for d in out for u in d.utterances if not u.text),
            "ignored_columns": sorted(ignored)}
    try:
        return Corpus(name, label_names, tuple(out),
                      speaker_vocab=None, info=info)
    except CorpusError as err:
        raise CorpusError(str(err).replace("corpus:", f"{source}:", 1)) from None


def _rows_of(corpus: Corpus) -> Iterator[dict[str, Any]]:
    for d in corpus.dialogues:
        for k, u in enumerate(d.utterances):
            audio_span = u.audio_span or (None, None)
            video_span = u.video_span or (None, None)
            yield {"dialogue_id": d.id, "utterance_id": u.id, "utterance_index": k,
                   "speaker": u.speaker, "text": u.text,
                   "label": None if u.label is None else corpus.labels[u.label],
                   "split": d.split, "start": u.start, "end": u.end,
                   "audio": u.audio, "audio_start": audio_span[0], "audio_end": audio_span[1],
                   "video": u.video, "video_start": video_span[0], "video_end": video_span[1]}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return str(value)


def write_conversations(corpus: Corpus, path: str | Path) -> Path:
    """Write ``corpus`` as a conversation file (CSV or JSONL by the extension), atomically.

    Every field is written (label names, ``utterance_id`` and ``utterance_index`` explicitly;
    media spans as ``*_start`` / ``*_end``), so that
    ``read_conversations(path, labels=corpus.labels, name=corpus.name) == corpus``. Without
    ``labels``, the read corpus has the sorted set of the label names that occur. Not carried by
    the format: ``speaker_vocab`` (the read corpus has ``None``) and ``info``. Text is written as
    it is and normalised on reading, so a corpus of normalised text (what the readers make)
    round-trips exactly.

    Args:
        corpus: the corpus to write.
        path: a ``.csv`` or ``.jsonl`` file (folders are made).

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        CorpusError: an unsupported extension, or a corpus with no dialogues (a conversation
            file needs at least one row).
    """
    path = Path(path)
    fmt = _format_of(path)
    if not corpus.dialogues:
        raise CorpusError(f"{path}: corpus {corpus.name!r} has no dialogues; a conversation file "
                          f"needs at least one row")
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CONVERSATION_FIELDS)
        for row in _rows_of(corpus):
            writer.writerow([_cell(row[key]) for key in CONVERSATION_FIELDS])
        text = buffer.getvalue()
    else:
        text = "".join(json.dumps({k: v for k, v in row.items() if v is not None},
                                  ensure_ascii=False) + "\n" for row in _rows_of(corpus))
    atomic_write_text(path, text)
    return path
