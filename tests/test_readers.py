"""MELD and IEMOCAP readers on small hand-made releases, the corpus CLI, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from multiemo.cli import main as cli_main
from multiemo.data.corpus import IEMOCAP_LABELS, MELD_LABELS, Corpus, CorpusError
from multiemo.data.iemocap import read_iemocap
from multiemo.data.meld import read_meld


def corpus_main(argv: list[str]) -> int:
    """`multiemo corpus ...` as a user types it."""
    return cli_main(["corpus", *argv])


MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
               "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]


def meld_row(n, text, speaker, emotion, d, u, start="00:00:01,000", end="00:00:02,500"):
    return [n, text, speaker, emotion, "neutral", d, u, 1, 1, start, end]


def write_meld(root: Path, rows_by_split: dict[str, list[list]] | None = None,
               header=MELD_HEADER) -> Path:
    rows_by_split = rows_by_split or {
        "train": [meld_row(1, "Oh, it’s “fine”…", "Ross", "joy", 0, 0),
                  meld_row(2, "Is it?", "Rachel", "surprise", 0, 1, "00:00:03,000", "00:00:04,000"),
                  meld_row(3, "No.", "Ross", "sadness", 0, 3, "00:00:02,000", "00:00:03,000"),
                  meld_row(4, "Hi.\nThere", "Joey", "neutral", 2, 0)],
        "dev": [meld_row(1, "Hey.", "Monica", "anger", 0, 0)],
        "test": [meld_row(1, "", "Phoebe", "fear", 0, 0),
                 meld_row(2, "Ew.", "Chandler", "disgust", 0, 1)],
    }
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in rows_by_split.items():
        with open(root / f"{split}_sent_emo.csv", "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
    return root


def test_meld_reader_ids_order_text_and_media(tmp_path):
    corpus = read_meld(write_meld(tmp_path / "meld"))
    assert corpus.labels == MELD_LABELS and corpus.speaker_vocab is None
    assert [d.id for d in corpus.dialogues] == ["dia0", "dia2", "dev_dia0", "test_dia0"]
    dia0 = corpus.dialogues[0]
    assert [u.id for u in dia0.utterances] == ["dia0_utt0", "dia0_utt1", "dia0_utt3"]
    first = dia0.utterances[0]
    assert first.text == "Oh, it's \"fine\"..." and first.speaker == "Ross"
    assert first.label == MELD_LABELS.index("joy") and (first.start, first.end) == (1.0, 2.5)
    assert first.audio == first.video == "train_splits/dia0_utt0.mp4"
    assert corpus.dialogues[1].utterances[0].text == "Hi. There"
    dev = corpus.dialogues[2].utterances[0]
    assert dev.id == "dev_dia0_utt0" and dev.video == "dev_splits_complete/dia0_utt0.mp4"
    test = corpus.dialogues[3].utterances
    assert test[0].id == "test_dia0_utt0" and test[0].text == ""  # empty transcript: kept, counted
    assert test[1].audio == "output_repeated_splits_test/dia0_utt1.mp4"
    assert corpus.info["empty_text"] == 1 and corpus.info["skipped"] == {}
    assert corpus.stats()["splits"]["train"]["utterances"] == 4
    assert dia0.speaker_indices(None) == [0, 1, 0]


def test_meld_media_root_finds_the_clip_folders(tmp_path):
    root = write_meld(tmp_path / "meld")
    media = tmp_path / "MELD.Raw"
    (media / "train" / "train_splits").mkdir(parents=True)  # unpacked MELD.Raw: split/folder
    (media / "dev_splits_complete").mkdir(parents=True)  # or the folder itself
    (media / "output_repeated_splits_test").mkdir(parents=True)
    for rel in ("train/train_splits/dia0_utt0.mp4", "dev_splits_complete/dia0_utt0.mp4",
                "output_repeated_splits_test/dia0_utt1.mp4"):
        (media / rel).write_bytes(b"")
    corpus = read_meld(root, media_root=media)
    by_id = {u.id: u for u in corpus.utterances()}
    assert by_id["dia0_utt0"].audio == "train/train_splits/dia0_utt0.mp4"
    assert by_id["dev_dia0_utt0"].video == "dev_splits_complete/dia0_utt0.mp4"
    assert by_id["dia0_utt1"].audio is None and by_id["test_dia0_utt0"].video is None
    assert corpus.info["missing_media"] == 4
    (media / "dev_splits_complete").rename(media / "elsewhere")
    with pytest.raises(CorpusError, match="dev_splits_complete"):
        read_meld(root, media_root=media)


@pytest.mark.parametrize("bad_row, match, reason", [
    (meld_row(2, "x", "Ross", "happy", 0, 1), "unknown emotion 'happy'", "unknown emotion"),
    (meld_row(2, "x", "Ross", "joy", 0, 0), r"duplicate \(Dialogue_ID, Utterance_ID\) = \(0, 0\)",
     "duplicate id"),
    (meld_row(2, "x", "Ross", "joy", "zero", 1), "not integers", "bad id"),
    (meld_row(2, "x", "Ross", "joy", 0, 1, "01:02", "00:00:09,000"), "HH:MM:SS", "bad time"),
])
def test_meld_bad_rows_name_file_and_line_or_are_skipped(tmp_path, bad_row, match, reason):
    rows = {"train": [meld_row(1, "multi\nline", "Ross", "joy", 0, 0), bad_row,
                      meld_row(3, "ok", "Ross", "joy", 0, 2)]}
    root = write_meld(tmp_path, rows)
    with pytest.raises(CorpusError, match=rf"train_sent_emo.csv:4: .*{match}"):  # line 4: after the
        read_meld(root, splits=("train",))  # two-line quoted field
    corpus = read_meld(root, splits=("train",), skip_bad_rows=True)
    assert corpus.info["skipped"] == {reason: 1}
    assert [u.id for u in corpus.utterances()] == ["dia0_utt0", "dia0_utt2"]


def test_meld_missing_column_or_file(tmp_path):
    header = [c for c in MELD_HEADER if c != "Emotion"]
    root = write_meld(tmp_path, {"train": [[1, "x", "A", 0, 0, 0, 1, 1, "0:0:1,0", "0:0:2,0"]]},
                      header=header)
    with pytest.raises(CorpusError, match=r"train_sent_emo.csv:1: missing column\(s\) \['Emotion'\]"):
        read_meld(root, splits=("train",), skip_bad_rows=True)  # never skippable
    with pytest.raises(CorpusError, match="dev_sent_emo.csv does not exist"):
        read_meld(root, splits=("dev",))


# -- IEMOCAP -----------------------------------------------------------------------------------

def write_iemocap_dialog(root: Path, session: int, dialog: str, lines: list[tuple],
                         extra_transcript: list[str] = (), transcript: bool = True) -> None:
    """``lines``: (utterance id, start, end, emotion code, text)."""
    base = root / f"Session{session}" / "dialog"
    (base / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
    (base / "transcriptions").mkdir(parents=True, exist_ok=True)
    evaluation = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for uid, start, end, code, _ in lines:
        evaluation += [f"[{start:.4f} - {end:.4f}]\t{uid}\t{code}\t[2.5000, 3.0000, 2.0000]",
                       f"C-E1:\t{code.title()};\t()", "A-E2:\tval 3; act 2; dom  2;\t()", ""]
    (base / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(evaluation) + "\n")
    if transcript:
        text = [f"{uid} [{start:08.4f}-{end:08.4f}]: {t}" for uid, start, end, _, t in lines]
        (base / "transcriptions" / f"{dialog}.txt").write_text(
            "\n".join(text + list(extra_transcript)) + "\n")


def small_iemocap(root: Path) -> Path:
    write_iemocap_dialog(root, 1, "Ses01F_impro01", [
        ("Ses01F_impro01_M001", 9.5, 11.0, "hap", "Yeah—sure."),
        ("Ses01F_impro01_F000", 6.2901, 8.2357, "neu", "Excuse me."),
        ("Ses01F_impro01_F001", 12.0, 13.0, "xxx", "Hmm."),
        ("Ses01F_impro01_M002", 14.0, 15.5, "exc", ""),
    ], extra_transcript=["Ses01F_impro01_MXX0 [016.0000-017.0000]: [LAUGHTER]"])
    write_iemocap_dialog(root, 5, "Ses05M_script01_1", [
        ("Ses05M_script01_1_F000", 1.0, 2.0, "fru", "Why?"),
        ("Ses05M_script01_1_M000", 2.5, 3.0, "sur", "What!"),
        ("Ses05M_script01_1_M001", 3.5, 4.0, "ang", "Stop."),
        ("Ses05M_script01_1_F001", 4.5, 5.0, "sad", "Fine."),
    ])
    return root


def test_iemocap_reader(tmp_path):
    corpus = read_iemocap(small_iemocap(tmp_path), sessions=(1, 5))
    assert corpus.labels == IEMOCAP_LABELS and corpus.speaker_vocab == ("M", "F")
    train, test = corpus.dialogues
    assert (train.id, train.split, test.id, test.split) == \
        ("Ses01F_impro01", "train", "Ses05M_script01_1", "test")
    assert [u.id for u in train.utterances] == [  # by start time; xxx dropped
        "Ses01F_impro01_F000", "Ses01F_impro01_M001", "Ses01F_impro01_M002"]
    f000, m001, m002 = train.utterances
    assert (f000.speaker, m001.speaker) == ("F", "M")
    assert [u.label for u in train.utterances] == [IEMOCAP_LABELS.index(x) for x in
                                                    ("neutral", "happiness", "excitement")]
    assert m001.text == "Yeah - sure." and m002.text == "" and f000.text == "Excuse me."
    assert (f000.start, f000.end) == (6.2901, 8.2357)
    assert f000.audio == "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
    assert f000.audio_span is None
    assert f000.video == "Session1/dialog/avi/DivX/Ses01F_impro01.avi"
    assert f000.video_span == (6.2901, 8.2357)
    assert [u.speaker for u in test.utterances] == ["F", "M", "F"]  # not the session's letter
    info = corpus.info
    assert info["dropped_labels"] == {"sur": 1, "xxx": 1}
    assert info["not_in_emoevaluation"] == 1 and info["empty_text"] == 1
    assert train.speaker_indices(corpus.speaker_vocab) == [1, 0, 0]


@pytest.mark.parametrize("line, match, reason", [
    ("[1.0 - 2.0]\tSes01F_impro01_F009\tbored\t[2, 2, 2]", "unknown emotion code 'bored'",
     "unknown emotion"),
    ("[1.0 - 2.0] Ses01F_impro01_F009", "summary line does not parse", "bad EmoEvaluation line"),
    ("[1.0 - 2.0]\tSes01F_impro01_F000\tneu\t[2, 2, 2]", "duplicate utterance id",
     "duplicate id"),
    ("[1.0 - 2.0]\tSes01F_impro02_F009\tneu\t[2, 2, 2]", "not of dialogue", "bad id"),
    ("[3.0 - 2.0]\tSes01F_impro01_F009\tneu\t[2, 2, 2]", "before start", "bad time"),
])
def test_iemocap_bad_evaluation_lines(tmp_path, line, match, reason):
    small_iemocap(tmp_path)
    path = tmp_path / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    with open(path, "a") as fh:
        fh.write(line + "\n")
    number = len(path.read_text().splitlines())
    with pytest.raises(CorpusError, match=rf"Ses01F_impro01.txt:{number}: .*{match}"):
        read_iemocap(tmp_path, sessions=(1,))
    corpus = read_iemocap(tmp_path, sessions=(1,), skip_bad_rows=True)
    assert corpus.info["skipped"] == {reason: 1}
    assert len(list(corpus.utterances())) == 3


def test_iemocap_bad_transcript_line_and_missing_transcription(tmp_path):
    small_iemocap(tmp_path)
    path = tmp_path / "Session1/dialog/transcriptions/Ses01F_impro01.txt"
    with open(path, "a") as fh:
        fh.write("M: this line has no id\n")
    with pytest.raises(CorpusError, match=r"transcriptions/Ses01F_impro01.txt:6: transcript line"):
        read_iemocap(tmp_path, sessions=(1,))
    assert read_iemocap(tmp_path, sessions=(1,), skip_bad_rows=True).info["skipped"] == \
        {"bad transcript line": 1}
    write_iemocap_dialog(tmp_path, 1, "Ses01M_impro02",
                         [("Ses01M_impro02_F000", 1.0, 2.0, "neu", "x")], transcript=False)
    with pytest.raises(CorpusError, match=r"Ses01M_impro02.txt:1: EmoEvaluation file without"):
        read_iemocap(tmp_path, sessions=(1,), skip_bad_rows=True)


def test_corpus_cli_stats_and_build(tmp_path, capsys):
    root = write_meld(tmp_path / "meld")
    assert corpus_main(["stats", "--dataset", "meld", "--root", str(root), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["splits"]["train"]["dialogues"] == 2
    assert stats["splits"]["test"]["labels"]["fear"] == 1 and stats["info"]["empty_text"] == 1
    assert corpus_main(["stats", "--dataset", "iemocap", "--root", str(small_iemocap(
        tmp_path / "iemocap"))]) == 2  # sessions 2-4 missing: an error, not a traceback
    assert "Session2" in capsys.readouterr().err
    out = tmp_path / "data" / "corpus.json"
    assert corpus_main(["build", "--dataset", "meld", "--root", str(root), "--out", str(out)]) == 0
    assert Corpus.load(out) == read_meld(root)
    assert corpus_main(["stats", "--dataset", "meld", "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "dialogues" in text and "neutral" in text


@pytest.mark.slow
def test_real_meld_csvs():
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "meld"
    if not (root / "train_sent_emo.csv").exists():
        pytest.skip(f"no MELD CSVs at {root}")
    stats = read_meld(root).stats()["splits"]
    assert [stats[s]["dialogues"] for s in ("train", "dev", "test")] == [1038, 114, 280]
    assert [stats[s]["utterances"] for s in ("train", "dev", "test")] == [9989, 1109, 2610]
    assert list(stats["test"]["labels"].values()) == [1256, 281, 50, 208, 402, 68, 345]


def test_meld_malformed_record_and_header_only_file(tmp_path, caplog):
    from multiemo.data.meld import read_meld

    root = write_meld(tmp_path / "m")
    with open(root / "train_sent_emo.csv", "a", encoding="utf-8") as fh:
        fh.write('9,"an open quote that never closes' + "x" * 200_000 + "\n")
    with pytest.raises(CorpusError, match=r"train_sent_emo.csv:\d+: malformed CSV record"):
        read_meld(root)
    root = write_meld(tmp_path / "h", {"train": [meld_row(1, "Hi.", "Ross", "joy", 0, 0)],
                                       "dev": [], "test": [meld_row(1, "Yo.", "Joey", "joy", 0, 0)]})
    with caplog.at_level("WARNING", logger="multiemo"):
        read_meld(root)
    assert "dev_sent_emo.csv has a header and no rows" in caplog.text


def test_corpus_file_faults_are_named(tmp_path):
    from multiemo.data.corpus import Corpus

    good = {"format": "multiemo-corpus", "version": 1, "name": "c", "labels": ["a", "b"],
            "dialogues": [{"id": "d0", "split": "train",
                           "utterances": [{"id": "u0", "speaker": "S", "label": "a"}]}]}
    Corpus.from_dict(good)
    no_speaker = json.loads(json.dumps(good))
    del no_speaker["dialogues"][0]["utterances"][0]["speaker"]
    with pytest.raises(CorpusError, match="utterance 'u0' of dialogue 'd0' has no 'speaker'"):
        Corpus.from_dict(no_speaker, "c.json")
    twice = {**good, "labels": ["a", "b", "a"]}
    with pytest.raises(CorpusError, match=r"names \['a'\] more than once"):
        Corpus.from_dict(twice, "c.json")
