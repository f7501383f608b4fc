"""The whole text pipeline on EmoryNLP, DailyDialog and a user's own conversation file, through
the command line: build the corpus → extract text features (a tiny random encoder) → train →
report; each dataset's primary metric picks the epoch and leads the report."""

import json

import yaml

from builders import (CONVERSATION_ROWS, TINY_TRAIN, write_csv, write_dailydialog,
                      write_emorynlp)
from multiemo.cli import main as cli


def write_conversations_csv(path):
    return write_csv(path, CONVERSATION_ROWS[:9])  # dialogues d0-d3: two test utterances


def pipeline(tmp_path, bert_dir, dataset, root, config, extra=(), build_extra=()):
    data = tmp_path / "data"
    assert cli(["corpus", "build", "--dataset", dataset, "--root", str(root), "--out",
                str(data / "corpus.json"), *build_extra]) == 0
    job = tmp_path / "text.yaml"
    job.write_text(yaml.safe_dump({"corpus": {"path": str(data / "corpus.json")},
                                   "out": str(data / "features" / "text.safetensors"),
                                   "model": str(bert_dir), "mode": "frozen", "past": 2,
                                   "batch_size": 8, "device": "cpu"}))
    assert cli(["extract", "text", "--config", str(job), "--no-progress"]) == 0
    run = tmp_path / "run"
    assert cli(["train", "--config", config, "--run-dir", str(run), f"data.root={data}", *TINY_TRAIN,
                *extra]) == 0
    assert cli(["report", str(run)]) == 0
    return run


def test_emorynlp_pipeline_selects_on_weighted_f1(tmp_path, bert_dir, capsys):
    run = pipeline(tmp_path, bert_dir, "emorynlp", write_emorynlp(tmp_path / "raw"), "configs/emorynlp.yaml")
    info = json.loads((run / "run.json").read_text())
    assert info["select_metric"] == "weighted_f1" and info["dataset"] == "emorynlp"
    assert info["labels"] == ["joyful", "mad", "neutral", "peaceful", "powerful", "sad", "scared"]
    header = (run / "report.md").read_text().splitlines()[2]
    assert header.startswith("| run | Joyful | Mad |") and "| w-F1 | Acc | macro-F1 |" in header


def test_dailydialog_pipeline_selects_on_micro_f1_without_no_emotion(tmp_path, bert_dir, capsys):
    run = pipeline(tmp_path, bert_dir, "dailydialog", write_dailydialog(tmp_path / "raw"),
                   "configs/dailydialog.yaml")
    info = json.loads((run / "run.json").read_text())
    assert info["select_metric"] == "micro_f1" and "valid_micro_f1" in info
    report = json.loads((run / "report.json").read_text())
    assert report["scores"]["micro_f1_excludes"] == "no_emotion"
    md = (run / "report.md").read_text()
    assert "| micro-F1 | w-F1 | Acc | macro-F1 |" in md.splitlines()[2]  # the primary metric first
    assert "micro-F1 over every class but 'no_emotion'" in md
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "micro_f1" in metrics[0]["valid"]


def test_own_conversation_file_pipeline(tmp_path, bert_dir, capsys):
    run = pipeline(tmp_path, bert_dir, "conversations", write_conversations_csv(tmp_path / "mine.csv"),
                   "configs/conversations.yaml",
                   extra=["dataset=mine", "model.num_classes=3", "model.num_speakers=3"],
                   build_extra=["--labels", "neutral,joy,anger"])
    corpus = json.loads((tmp_path / "data" / "corpus.json").read_text())
    assert corpus["labels"] == ["neutral", "joy", "anger"]  # declared order, recorded
    info = json.loads((run / "run.json").read_text())
    assert info["select_metric"] == "weighted_f1" and info["num_dialogues"]["test"] == 1
    assert "No paper row: no published table for dataset 'mine'" in (run / "report.md").read_text()


def test_corpus_build_names_bad_input(tmp_path, capsys):
    path = write_conversations_csv(tmp_path / "mine.csv")
    assert cli(["corpus", "build", "--dataset", "conversations", "--root", str(path), "--out",
                str(tmp_path / "c.json"), "--labels", "neutral,joy"]) == 2
    err = capsys.readouterr().err
    assert "mine.csv:3" in err and "anger" in err and not (tmp_path / "c.json").exists()
    assert cli(["corpus", "stats", "--dataset", "emorynlp", "--root", str(tmp_path / "nowhere")]) == 2
    assert "emotion-detection-trn.json" in capsys.readouterr().err
    assert cli(["corpus", "stats", "--dataset", "emorynlp", "--root", str(tmp_path),
                "--labels", "a,b"]) == 2
    assert "--labels is for the conversation file format" in capsys.readouterr().err
