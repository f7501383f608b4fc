"""The conversation file format (CSV / JSONL): reading, ordering, labels, media, round trip, bad input."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

import multiemo.data.conversations as conversations
from multiemo.data.conversations import (CONVERSATION_FIELDS, read_conversations,
                                         write_conversations)
from multiemo.data.corpus import Corpus, CorpusError, Dialogue, Utterance


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def write_rows(tmp_path: Path, fmt: str, rows: list[dict], stem: str = "conv", **kw) -> Path:
    path = tmp_path / f"{stem}.{fmt}"
    return write_csv(path, rows, **kw) if fmt == "csv" else write_jsonl(path, rows)


ROWS = [
    # file order is not conversation order: d1's rows come out of order, d2 is ordered by time
    {"dialogue_id": "d1", "utterance_index": 1, "speaker": "Bob", "text": "I got the job!",
     "label": "joy", "split": "train", "start": 1.6, "end": 3.0},
    {"dialogue_id": "d2", "speaker": "Ann", "text": "Where were you?", "label": "anger",
     "split": "test", "start": 5.0},
    {"dialogue_id": "d1", "utterance_index": 0, "speaker": "Ann", "text": "Hi, how’s it going…",
     "label": "neutral", "split": "train", "start": 0.0, "end": 1.4},
    {"dialogue_id": "d2", "speaker": "Bob", "text": "", "label": "sadness", "split": "test",
     "start": 2.0, "end": 4.5},
    {"dialogue_id": "d1", "utterance_index": 5, "speaker": "Ann", "text": "Congrats!",
     "label": "joy", "split": "train"},
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_reads_dialogues_in_order_with_default_ids(tmp_path, fmt):
    corpus = read_conversations(write_rows(tmp_path, fmt, ROWS))
    assert corpus.name == "conv" and corpus.speaker_vocab is None
    assert [d.id for d in corpus.dialogues] == ["d1", "d2"]  # order of first appearance
    assert [d.split for d in corpus.dialogues] == ["train", "test"]
    d1, d2 = corpus.dialogues
    assert [u.id for u in d1.utterances] == ["d1_utt0", "d1_utt1", "d1_utt2"]  # by utterance_index
    assert [u.text for u in d1.utterances] == ["Hi, how's it going...", "I got the job!", "Congrats!"]
    assert [u.speaker for u in d1.utterances] == ["Ann", "Bob", "Ann"]
    assert (d1.utterances[0].start, d1.utterances[0].end) == (0.0, 1.4)
    assert d1.utterances[2].start is None and d1.utterances[2].end is None
    assert [u.speaker for u in d2.utterances] == ["Bob", "Ann"]  # by start time
    assert [u.start for u in d2.utterances] == [2.0, 5.0] and d2.utterances[0].text == ""
    assert corpus.labels == ("anger", "joy", "neutral", "sadness")  # sorted, from the data
    assert [corpus.labels[u.label] for u in d1.utterances] == ["neutral", "joy", "joy"]
    assert corpus.info["labels_from"] == "data (sorted)" and corpus.info["format"] == fmt
    assert corpus.info["source"] == str(tmp_path / f"conv.{fmt}") and corpus.info["skipped"] == {}
    assert corpus.info["empty_text"] == 1 and corpus.info["reader"] == "conversations"


def test_csv_and_jsonl_give_the_same_corpus(tmp_path):
    a = read_conversations(write_rows(tmp_path, "csv", ROWS))
    b = read_conversations(write_rows(tmp_path, "jsonl", ROWS))
    assert a == b


def test_documented_examples_read_the_same(tmp_path):
    doc = conversations.__doc__
    blocks = re.findall(r"::\n\n((?:    .*\n)+)", doc)
    csv_text = next(b for b in blocks if b.startswith("    dialogue_id,"))
    jsonl_text = next(b for b in blocks if b.startswith("    {"))
    (tmp_path / "ex.csv").write_text(re.sub(r"(?m)^    ", "", csv_text), encoding="utf-8")
    (tmp_path / "ex.jsonl").write_text(re.sub(r"(?m)^    ", "", jsonl_text), encoding="utf-8")
    a, b = read_conversations(tmp_path / "ex.csv"), read_conversations(tmp_path / "ex.jsonl")
    assert a == b and len(list(a.utterances())) == 3
    assert a.dialogues[0].utterances[1].audio_span == (1.6, 3.0)
    for column in CONVERSATION_FIELDS:  # every field is in the documented table
        assert f"``{column}``" in doc


def test_start_time_ordering_ties_keep_file_order(tmp_path):
    rows = [{"dialogue_id": "x", "speaker": s, "text": s, "label": "a", "start": t}
            for s, t in (("C", 3), ("A", 1), ("B", 1), ("D", "0.5"))]
    corpus = read_conversations(write_rows(tmp_path, "csv", rows), default_split="train")
    assert [u.speaker for u in corpus.dialogues[0].utterances] == ["D", "A", "B", "C"]
    assert corpus.dialogues[0].split == "train"


def test_index_ordering_accepts_integral_floats(tmp_path):
    rows = [{"dialogue_id": "x", "utterance_index": i, "speaker": "A", "text": str(i),
             "label": "a", "split": "dev"} for i in ("2.0", "10", "-1")]
    corpus = read_conversations(write_rows(tmp_path, "csv", rows))
    assert [u.text for u in corpus.dialogues[0].utterances] == ["-1", "2.0", "10"]


def test_declared_labels_set_the_class_order(tmp_path):
    declared = ["sadness", "neutral", "joy", "anger", "fear"]
    corpus = read_conversations(write_rows(tmp_path, "jsonl", ROWS), labels=declared, name="mine")
    assert corpus.labels == tuple(declared) and corpus.name == "mine"
    assert corpus.info["labels_from"] == "declared"
    assert corpus.label_counts("train") == [0, 1, 2, 0, 0]


def test_media_paths_spans_ids_and_extra_columns(tmp_path):
    rows = [{"dialogue_id": "s1", "utterance_id": "first", "utterance_index": 0, "speaker": "A",
             "text": "hi", "label": "a", "split": "train", "audio": "audio/s1.wav",
             "audio_start": 0.5, "audio_end": "2.25", "video": "video/s1.mp4",
             "sentiment": "positive"},
            {"dialogue_id": "s1", "utterance_index": 1, "speaker": "B", "text": "yo", "label": "b",
             "split": "train", "video": "clips/s1_1.mp4", "video_start": 1, "video_end": 3}]
    for fmt in ("csv", "jsonl"):
        corpus = read_conversations(write_rows(tmp_path, fmt, rows))
        u0, u1 = corpus.dialogues[0].utterances
        assert (u0.id, u1.id) == ("first", "s1_utt1")
        assert u0.audio == "audio/s1.wav" and u0.audio_span == (0.5, 2.25)
        assert u0.video == "video/s1.mp4" and u0.video_span is None  # the whole file
        assert u1.audio is None and u1.audio_span is None
        assert u1.video == "clips/s1_1.mp4" and u1.video_span == (1.0, 3.0)
        assert corpus.info["ignored_columns"] == ["sentiment"]


def test_default_split_only_where_no_split_is_given(tmp_path):
    rows = [dict(r) for r in ROWS]
    for r in rows:
        r.pop("split")
    corpus = read_conversations(write_rows(tmp_path, "csv", rows), default_split="test")
    assert {d.split for d in corpus.dialogues} == {"test"}
    # a given split wins over the default
    corpus = read_conversations(write_rows(tmp_path, "jsonl", ROWS), default_split="test")
    assert [d.split for d in corpus.dialogues] == ["train", "test"]
    with pytest.raises(ValueError, match="default_split"):
        read_conversations(write_rows(tmp_path, "jsonl", ROWS), default_split="validation")


def sample_corpus() -> Corpus:
    return Corpus("sample", ("zeta", "alpha", "unused"), (
        Dialogue("dia 1", "train", (
            Utterance("u-a", "Ann", 1, "Hello, \"world\"", start=0.1, end=0.30000000000000004,
                      audio="a/1.wav", audio_span=(0.1, 0.3)),
            Utterance("u-b", "Bob", 0, "", start=0.2, video="v/1.mp4", video_span=(1.0, 2.5)),
            Utterance("u-c", "Ann", 0, "Café, ça va", audio="a/2.wav", video="v/2.mp4"),
        )),
        Dialogue("7", "test", (Utterance("7_utt0", "Cy", 1, "one,two\tthree".replace("\t", " ")),)),
        Dialogue("dev0", "dev", (Utterance("dev0_x", "Di", 0, "ok", start=12.0, end=13.5),)),
    ))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_round_trip(tmp_path, fmt):
    corpus = sample_corpus()
    path = write_conversations(corpus, tmp_path / "out" / f"sample.{fmt}")
    assert path == tmp_path / "out" / f"sample.{fmt}" and path.is_file()
    assert read_conversations(path, labels=corpus.labels) == corpus
    # without the declared labels: the sorted labels that occur, same utterances otherwise
    again = read_conversations(path)
    assert again.labels == ("alpha", "zeta")
    assert [again.labels[u.label] for u in again.utterances()] == \
        [corpus.labels[u.label] for u in corpus.utterances()]
    # writing what was read gives the same file
    second = write_conversations(again, tmp_path / f"again.{fmt}")
    assert second.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_writer_rejects_bad_extension_and_empty_corpus(tmp_path):
    with pytest.raises(CorpusError, match=r"\.csv or \.jsonl"):
        write_conversations(sample_corpus(), tmp_path / "c.tsv")
    with pytest.raises(CorpusError, match="no dialogues"):
        write_conversations(Corpus("e", ("a",), ()), tmp_path / "c.csv")
    assert not list(tmp_path.iterdir())


# -- bad input ----------------------------------------------------------------------------
GOOD = {"dialogue_id": "d", "utterance_index": 0, "speaker": "A", "text": "t", "label": "a",
        "split": "train", "start": 1.0, "end": 2.0}


def row(**changes):
    out = {**GOOD, **changes}
    return {k: v for k, v in out.items() if v is not None}


def with_bad(bad: dict) -> list[dict]:
    """A good row on line 2 (CSV) / 1 (JSONL), the bad row next, then another good row."""
    return [row(), bad, row(dialogue_id="e")]


BAD_ROWS = {  # reason: (bad row, message part)
    "no label": (row(utterance_index=1, label=None), "no label"),
    "unknown label": (row(utterance_index=1, label="surprise"), "unknown label 'surprise'"),
    "bad number": (row(utterance_index="first"), "utterance_index 'first' is not an integer"),
    "bad start": (row(utterance_index=1, start="soon"), "start 'soon' is not a number"),
    "bad end": (row(utterance_index=1, end="later"), "end 'later' is not a number"),
    "bad span value": (row(utterance_index=1, audio="a.wav", audio_start="x", audio_end=2),
                       "audio_start 'x' is not a number"),
    "fractional index": (row(utterance_index=1.5), "not an integer"),
    "end before start": (row(utterance_index=1, start=5.0, end=4.0), "end 4.0 is before start 5.0"),
    "half span": (row(utterance_index=1, video="v.mp4", video_start=1.0), "give both or neither"),
    "reversed span": (row(utterance_index=1, audio="a.wav", audio_start=3, audio_end=2),
                      "audio_end 2.0 is before audio_start 3.0"),
    "span without path": (row(utterance_index=1, audio_start=0, audio_end=1), "no audio path"),
    "duplicate index": (row(), "duplicate utterance_index 0 in dialogue 'd'"),
    "split mismatch": (row(utterance_index=1, split="dev"), "split 'dev' here but 'train' on line"),
    "unknown split": (row(dialogue_id="z", split="validation"), "split 'validation' is not one of"),
    "no speaker": (row(utterance_index=1, speaker=""), "no speaker"),
    "no dialogue": (row(dialogue_id=""), "no dialogue_id"),
    "no order": (row(dialogue_id="z", utterance_index=None, start=None), "neither utterance_index"),
    "mixed order": (row(utterance_index=None), "no utterance_index, but dialogue 'd' gives one"),
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_names_file_and_line(tmp_path, fmt, case):
    bad, message = BAD_ROWS[case]
    columns = list(dict.fromkeys(k for r in [GOOD, bad] for k in r))
    path = write_rows(tmp_path, fmt, with_bad(bad), **({"columns": columns} if fmt == "csv" else {}))
    line = 3 if fmt == "csv" else 2
    labels = ["a"] if case == "unknown label" else None
    with pytest.raises(CorpusError) as err:
        read_conversations(path, labels=labels)
    assert f"{path}:{line}: " in str(err.value) and message in str(err.value)
    corpus = read_conversations(path, labels=labels, skip_bad_rows=True)
    assert sum(corpus.info["skipped"].values()) == 1
    assert [d.id for d in corpus.dialogues] == ["d", "e"]


def test_duplicate_utterance_ids(tmp_path):
    rows = [row(utterance_id="x"), row(utterance_index=1, utterance_id="x")]
    path = write_rows(tmp_path, "csv", rows)
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:3: duplicate utterance_id 'x' "
                                          rf"\(also on line 2\)"):
        read_conversations(path)
    # a default id that another row gives explicitly
    rows = [row(), row(dialogue_id="e", utterance_id="d_utt0")]
    path = write_rows(tmp_path, "jsonl", rows)
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:1: the default utterance id "
                                          rf"'d_utt0' .* line 2"):
        read_conversations(path)
    corpus = read_conversations(path, skip_bad_rows=True)
    assert corpus.info["skipped"] == {"duplicate id": 1} and [d.id for d in corpus.dialogues] == ["e"]


def test_label_outside_declared_set(tmp_path):
    path = write_rows(tmp_path, "jsonl", [row(), row(utterance_index=1, label="b")])
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:2: unknown label 'b'"):
        read_conversations(path, labels=["a"])
    corpus = read_conversations(path, labels=["a", "c"], skip_bad_rows=True)
    assert corpus.info["skipped"] == {"unknown label": 1} and corpus.labels == ("a", "c")


def test_skip_bad_rows_counts_by_reason(tmp_path):
    rows = [row(), row(utterance_index=1, label=None), row(utterance_index=2, label=None),
            row(utterance_index=3, start="x"), row(utterance_index=0), row(dialogue_id="e")]
    path = write_rows(tmp_path, "jsonl", rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"dialogue_id": "f", oops}\n\n[1, 2]\n')
    corpus = read_conversations(path, skip_bad_rows=True)
    assert corpus.info["skipped"] == {"no label": 2, "bad number": 1, "duplicate index": 1,
                                      "malformed JSON": 2}
    assert [len(d.utterances) for d in corpus.dialogues] == [1, 1]


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    path = write_rows(tmp_path, "csv", [row(label=None)])
    with pytest.raises(CorpusError, match="no rows left"):
        read_conversations(path, skip_bad_rows=True)


def test_malformed_json_names_line_and_decoder_message(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(row()) + "\n\n" + '{"dialogue_id": "d",, }\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:3: malformed JSON "
                                          rf"\(Expecting property name enclosed in double quotes"):
        read_conversations(path)
    path.write_text('"just a string"\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r":1: not a JSON object"):
        read_conversations(path)


@pytest.mark.parametrize("column", ["dialogue_id", "speaker", "text"])
def test_missing_required_column(tmp_path, column):
    rows = [{k: v for k, v in row().items() if k != column}]
    path = write_rows(tmp_path, "csv", rows)
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:1: missing column\(s\) "
                                          rf"\['{column}'\]"):
        read_conversations(path)
    path = write_rows(tmp_path, "jsonl", [row(), *rows])
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:2: no '{column}' field"):
        read_conversations(path)


def test_missing_order_and_split_columns(tmp_path):
    path = write_rows(tmp_path, "csv", [row(utterance_index=None, start=None, end=None)])
    with pytest.raises(CorpusError, match=r":1: missing column: give 'utterance_index' or 'start'"):
        read_conversations(path)
    path = write_rows(tmp_path, "csv", [row(split=None)])
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:1: missing column 'split'"):
        read_conversations(path)
    path = write_rows(tmp_path, "jsonl", [row(split=None)])
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:1: no split: the 'split' field"):
        read_conversations(path)


@pytest.mark.parametrize("content, line", [("", 1), ("\n", 1),
                                           (",".join(GOOD) + "\n", 2),
                                           (",".join(GOOD) + "\n\n", 2)])
def test_empty_csv(tmp_path, content, line):
    path = tmp_path / "c.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:{line}: no rows"):
        read_conversations(path)


def test_empty_jsonl(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:1: no rows"):
        read_conversations(path, skip_bad_rows=True)


def test_csv_record_problems(tmp_path):
    path = tmp_path / "c.csv"
    header = ",".join(GOOD)
    path.write_text(f"{header}\nd,0,A,hi, there,a,train,1,2\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r":2: 9 cells, but the header has 8 columns"):
        read_conversations(path)
    # a quoted multi-line text: the record is named by its first line
    path.write_text(f'{header}\nd,0,A,"two\nlines",a,train,1,2\nd,1,A,x,a,dev,3,4\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r":4: dialogue 'd' has split 'dev'"):
        read_conversations(path)
    path.write_text(f"{header},text\nd,0,A,x,a,train,1,2,y\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r":1: column\(s\) \['text'\] appear more than once"):
        read_conversations(path)
    path.write_bytes(f"{header}\nd,0,A,ok,a,train,1,2\nd,1,A,caf\xe9,a,train,1,2\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r":3: not UTF-8"):
        read_conversations(path)


def test_csv_with_bom_blank_rows_and_spaces(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("\ufeff dialogue_id , speaker,text,utterance_index,label,split\n"
                    " d , A ,  hi  there ,  1 , a ,train\n,,,,,\n\nd,B,yo,0,a,train\n",
                    encoding="utf-8")
    corpus = read_conversations(path)
    (d,) = corpus.dialogues
    assert d.id == "d" and [(u.speaker, u.text) for u in d.utterances] == [("B", "yo"),
                                                                           ("A", "hi there")]


def test_file_level_errors(tmp_path):
    with pytest.raises(CorpusError, match=r"must end in \.csv or \.jsonl"):
        read_conversations(tmp_path / "c.json")
    with pytest.raises(CorpusError, match="does not exist"):
        read_conversations(tmp_path / "nothing.csv")
    with pytest.raises(TypeError):
        read_conversations(write_rows(tmp_path, "csv", [row()]), labels="abc")


def test_declared_labels_repeated_name_the_file(tmp_path):
    path = write_rows(tmp_path, "csv", [row()])
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}: the label set .* more than once"):
        read_conversations(path, labels=["a", "a"])


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_labels_from_the_data_that_differ_only_in_case_are_a_warning(tmp_path, caplog, fmt):
    rows = [dict(r) for r in ROWS]
    rows[0]["label"] = "Joy"  # the other "joy" row stays lower case
    path = write_rows(tmp_path, fmt, rows)
    with caplog.at_level("WARNING", logger="multiemo"):
        corpus = read_conversations(path)
    assert corpus.labels == ("Joy", "anger", "joy", "neutral", "sadness")  # still two classes
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and "differ only in case: 'Joy' and 'joy'" in warnings[0]
    assert "['Joy', 'anger', 'joy', 'neutral', 'sadness']" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="multiemo"):  # distinct names, or declared: no warning
        read_conversations(write_rows(tmp_path, fmt, ROWS, stem="plain"))
        read_conversations(path, labels=["Joy", "joy", "anger", "neutral", "sadness"])
    assert not [r for r in caplog.records if "differ only in case" in r.getMessage()]


def test_corpus_build_without_a_split_column_names_default_split(tmp_path, capsys):
    from multiemo.cli import main as cli
    rows = [{k: v for k, v in r.items() if k != "split"} for r in ROWS]
    path = write_rows(tmp_path, "csv", rows)
    out = tmp_path / "corpus.json"
    build = ["corpus", "build", "--dataset", "conversations", "--root", str(path), "--out", str(out)]
    assert cli(build) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{path}:1: missing column 'split' and no default split given: add the column, or pass " \
           f"--default-split train|dev|test" in err and not out.exists()
    assert cli([*build, "--default-split", "train"]) == 0
    corpus = Corpus.load(out)
    assert {d.split for d in corpus.dialogues} == {"train"} and len(corpus.dialogues) == 2
    assert cli([*build, "--default-split", "validation"]) == 2  # argparse's choices
    assert "invalid choice: 'validation'" in capsys.readouterr().err
    assert cli(["corpus", "stats", "--dataset", "emorynlp", "--root", str(tmp_path),
                "--default-split", "train"]) == 2
    assert "--default-split is for the conversation file format" in capsys.readouterr().err
