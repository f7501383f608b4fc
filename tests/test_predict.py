"""Export a trained run and predict new conversations with it: the model folder, the Python API,
the `multiemo predict` batch job, and bad input. Text-only here (a tiny random encoder); the
three-modality chain from media is in test_demo_media_chain.py."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from multiemo.cli import main as cli
from multiemo.data.corpus import Corpus, Dialogue, Utterance
from multiemo.data.dataset import DataError, DialogueDataset
from multiemo.recognizer import ModelError, Recognizer
from builders import (CONVERSATION_HEADER as HEADER, CONVERSATION_LABELS as LABELS,
                      CONVERSATION_ROWS as ROWS, read_csv, write_csv)

# ``trained`` (conftest.py): a tiny text-only run on ROWS and its exported model folder


def test_export_writes_a_self_contained_model_folder(trained):
    model = trained["model"]
    names = {p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "README.md", "text/encoder/config.json"} <= names
    assert not [n for n in names if n.endswith((".pt", ".pkl", ".bin"))]  # no pickle anywhere
    config = json.loads((model / "config.json").read_text())
    assert config["labels"] == ["neutral", "joy", "anger"] and config["modalities"] == ["text"]
    text = config["features"]["text"]
    assert text["settings"]["past"] == 2 and text["settings"]["pooling"] == "mean"
    assert text["files"] == {"model": "text/encoder"} and text["dim"] == 32
    assert config["speakers"] == {"num_speakers": 3, "vocab": None,
                                  "rule": "first appearance in the dialogue"}
    card = (model / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: multiemo")
    assert "chosen on **validation** weighted_f1" in card and "| run | Neutral | Joy | Anger |" in card
    assert f"Seed: {yaml.safe_load((trained['run'] / 'config.yaml').read_text())['train']['seed']}" in card
    # the copied encoder is used, not the original folder
    assert str(trained["bert"]) not in (model / "config.json").read_text()


def test_predict_reproduces_the_runs_test_predictions(trained, tmp_path, capsys):
    out = tmp_path / "pred"
    assert cli(["predict", "--model", str(trained["model"]), "--input", str(trained["source"]),
                "--out", str(out), "--no-progress"]) == 0
    ours = {r["utterance_id"]: r for r in read_csv(out / "predictions.csv")}
    theirs = read_csv(trained["run"] / "predictions_test.csv")
    assert len(theirs) == 5 and len(ours) == len(ROWS)
    for row in theirs:
        mine = ours[row["utterance_id"]]
        assert mine["prediction"] == row["prediction"] and mine["label"] == row["label"]
        for c in LABELS.split(","):
            assert abs(float(mine[f"p_{c}"]) - float(row[f"p_{c}"])) <= 1e-5
    # labelled input: the per-class report over every row
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == len(ROWS) if "n" in report else True
    assert (out / "report.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["utterances"] == len(ROWS) and summary["present"] == {"text": len(ROWS)}
    assert summary["report"]["labelled_utterances"] == len(ROWS)
    jsonl = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["utterance_id"] for r in jsonl] == list(ours)  # input order
    assert set(jsonl[0]) == {"utterance_id", "dialogue_id", "position", "speaker", "label",
                             "prediction", "probabilities", "present", "notes"}
    assert abs(sum(jsonl[0]["probabilities"].values()) - 1) < 1e-5


def test_python_api_on_unlabelled_rows_and_save_pretrained(trained, tmp_path):
    recognizer = Recognizer.from_pretrained(trained["model"], device="cpu")
    rows = [{"dialogue_id": "d4", "utterance_index": i, "speaker": s, "text": t}
            for i, (s, t) in enumerate([("Cy", "happy love"), ("Ann", "so why"), ("Cy", "fine great")])]
    predictions = recognizer.predict(rows)
    assert [p.utterance_id for p in predictions] == ["d4_utt0", "d4_utt1", "d4_utt2"]
    assert all(p.label is None and p.present == {"text": True} and not p.notes for p in predictions)
    # the same utterances as in the run's test split: the same probabilities
    theirs = {r["utterance_id"]: r for r in read_csv(trained["run"] / "predictions_test.csv")}
    for p, uid in zip(predictions, ["d4_utt0", "d4_utt1", "d4_utt2"]):
        assert np.allclose([p.probabilities[c] for c in recognizer.labels],
                           [float(theirs[uid][f"p_{c}"]) for c in recognizer.labels], atol=1e-5)
    copy = tmp_path / "copy"
    recognizer.save_pretrained(copy)
    again = Recognizer.from_pretrained(copy, device="cpu").predict(rows)
    assert [p.probabilities for p in again] == [p.probabilities for p in predictions]


def test_the_python_api_is_quiet_and_names_no_temporary_file(trained, tmp_path):
    """A library call, in a fresh process (no command line set logging up), prints nothing: no
    progress bar, no runner summary naming the files of its temporary work folder (gone when it
    returns). What it did goes to logging, in lines that name no file of that folder."""
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent(f"""
        import logging
        from multiemo import Recognizer
        recognizer = Recognizer.from_pretrained({str(trained["model"])!r}, device="cpu")
        first = recognizer.predict({str(trained["source"])!r})
        logging.basicConfig(filename={str(tmp_path / "log.txt")!r}, level=logging.DEBUG,
                            format="%(name)s %(message)s")
        again = recognizer.predict({str(trained["source"])!r})
        assert [p.probabilities for p in first] == [p.probabilities for p in again]
        assert len(first) == {len(ROWS)}
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")
    said = (tmp_path / "log.txt").read_text()
    assert f"multiemo text features of {len(ROWS)} utterances: {len(ROWS)} computed, 0 absent, " \
           f"0 failed, 0 reused" in said
    assert "multiemo-predict-" not in said and ".safetensors" not in said


def test_unlabelled_input_file_gives_predictions_and_no_report(trained, tmp_path, capsys):
    source = write_csv(tmp_path / "new.jsonl.csv", [r[:4] for r in ROWS[7:9]], HEADER[:4])
    out = tmp_path / "pred"
    assert cli(["predict", "--model", str(trained["model"]), "--input", str(source), "--out",
                str(out), "--plots", "--no-progress"]) == 0
    rows = read_csv(out / "predictions.csv")
    assert [r["label"] for r in rows] == ["", ""] and not (out / "report.md").exists()
    assert sorted(p.name for p in (out / "plots" / "dialogues").iterdir()) == ["000000_d3.png"]
    assert (out / "plots" / "label_distribution.png").is_file()


def test_sharded_predict_merges_into_the_unsharded_result(trained, tmp_path, capsys):
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    args = ["predict", "--model", str(trained["model"]), "--input", str(trained["source"]), "--no-progress"]
    assert cli([*args, "--out", str(whole)]) == 0
    assert cli([*args, "--out", str(sharded), "--shard", "1/3"]) == 0
    assert "waiting for shard(s) [0, 2]" in capsys.readouterr().err
    assert cli([*args, "--out", str(sharded), "--merge"]) == 2  # not all shards done
    assert "shard(s) 0/3, 2/3 are not done" in capsys.readouterr().err
    assert cli([*args, "--out", str(sharded), "--shard", "0/3"]) == 0
    assert cli([*args, "--out", str(sharded), "--shard", "2/3"]) == 0  # the last one merges
    # the same rows; probabilities agree to float rounding (other dialogues share the batches)
    a, b = read_csv(sharded / "predictions.csv"), read_csv(whole / "predictions.csv")
    assert [(r["utterance_id"], r["prediction"]) for r in a] == [(r["utterance_id"], r["prediction"]) for r in b]
    for x, y in zip(a, b):
        for c in LABELS.split(","):
            assert abs(float(x[f"p_{c}"]) - float(y[f"p_{c}"])) <= 2e-6
    assert cli([*args, "--out", str(sharded), "--shard", "2/3"]) == 0  # done: skipped
    assert "already done" in capsys.readouterr().err
    # another shard count, model or input in the same folder is refused
    assert cli([*args, "--out", str(sharded), "--shard", "0/2"]) == 2
    assert "another shard count" in capsys.readouterr().err


def test_a_changed_input_or_a_damaged_job_file_is_refused_naming_it(trained, tmp_path, capsys):
    """predict.json goes through the runner's identity check: a refusal names the record, the
    field that differs and what to do; a damaged record is one line, on --merge too."""
    source = write_csv(tmp_path / "in.csv", ROWS[7:9])
    out = tmp_path / "pred"
    args = ["predict", "--model", str(trained["model"]), "--input", str(source), "--out", str(out),
            "--no-progress"]
    assert cli(args) == 0
    capsys.readouterr()
    write_csv(source, ROWS[7:10])  # the same file name, other contents
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out / 'predict.json'}: made by a different " \
        f"prediction job, with another input file (or the file changed) (input.sha256: " in err
    assert err.endswith(f"write to another --out, or delete {out}")
    (out / "predict.json").write_text("{")
    assert cli([*args, "--merge"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out / 'predict.json'}: not a readable job file" in err


def test_text_only_model_ignores_media_and_says_so_once(trained, tmp_path, caplog):
    rows = [(*r[:4], f"{r[0]}_{r[1]}.wav") for r in ROWS[7:]]
    source = write_csv(tmp_path / "media.csv", rows, HEADER[:4] + ["audio"])
    with caplog.at_level(logging.WARNING, logger="multiemo"):
        assert cli(["predict", "--model", str(trained["model"]), "--input", str(source), "--out",
                    str(tmp_path / "pred"), "--no-progress"]) == 0
    said = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert said == ["the model uses text only: the audio paths of the input are ignored"]
    assert not any(r["notes"] for r in read_csv(tmp_path / "pred" / "predictions.csv"))


@pytest.mark.parametrize("rows,header,message", [
    ([("d3", 0, "Ann", "hate")], ["dialogue_id", "utterance_index", "text", "label"],
     "in.csv:1: missing column(s) ['speaker']"),
    ([("d3", 0, "Ann", "hate", "fear")], HEADER[:5], "in.csv:2: unknown label 'fear'"),
    ([("d3", 0, "Ann", "hate", "x1"), ("d3", 1, "Bob", "ok", "x1")], HEADER[:4] + ["utterance_id"],
     "in.csv:3: duplicate utterance_id 'x1' (also on line 2)"),
    ([("d9", i, name, "hi") for i, name in enumerate(["A", "B", "C", "D"])], HEADER[:4],
     "dialogue 'd9' has 4 speakers (A, B, C, D) but the model's speaker vector holds 3"),
])
def test_bad_input_is_one_line_naming_file_line_or_dialogue(trained, tmp_path, capsys, rows, header, message):
    source = write_csv(tmp_path / "in.csv", rows, header)
    out = tmp_path / "pred"
    assert cli(["predict", "--model", str(trained["model"]), "--input", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing started


def test_empty_input_rows_are_refused(trained):
    recognizer = Recognizer.from_pretrained(trained["model"], device="cpu")
    with pytest.raises(Exception, match="no rows"):
        recognizer.read([])


@pytest.mark.parametrize("damage,message", [
    (lambda m: (m / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda m: (m / "config.json").unlink(), "no config.json: not a multiemo model folder"),
    (lambda m: __import__("shutil").rmtree(m / "text" / "encoder"),
     "text/encoder is missing from the model folder"),
    (lambda m: (m / "config.json").write_text((m / "config.json").read_text().replace(
        '"model_dim": 16', '"model_dim": 32')), "the weights do not fit the model of config.json"),
    (lambda m: (m / "config.json").write_text("{"), "config.json: not valid JSON"),
])
def test_a_damaged_model_folder_is_named(trained, tmp_path, capsys, damage, message):
    import shutil
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    damage(model)
    assert cli(["predict", "--model", str(model), "--input", str(trained["source"]), "--out",
                str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert cli(["predict", "--model", str(tmp_path / "nowhere" / "model"), "--input",
                str(trained["source"]), "--out", str(tmp_path / "pred")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_export_refuses_what_cannot_make_a_model(trained, tmp_path, capsys):
    assert cli(["export", str(trained["run"]), "--out", str(trained["model"])]) == 2
    assert "exists: choose another --out" in capsys.readouterr().err
    # a store that does not record how it was made (e.g. the authors' pickles, synthetic data)
    from multiemo.demo import demo_config
    from multiemo.synthetic import make_synthetic_corpus
    from multiemo.train import train
    root = tmp_path / "synthetic"
    make_synthetic_corpus(root, dialogues={"train": 12, "dev": 4, "test": 4}, dims={"text": 32, "audio": 24, "visual": 40},
                          num_classes=4, num_speakers=3, lengths=(2, 4), noise=1.0, seed=0)
    train(demo_config(root, ("text",), 1, 0), tmp_path / "run")
    assert cli(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "does not record the extraction settings" in err and not (tmp_path / "m").exists()
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps({**info, "status": "running"}))
    assert cli(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m")]) == 2
    assert "status 'running'; export a finished run" in capsys.readouterr().err


def test_training_refuses_unlabelled_utterances():
    corpus = Corpus("c", ("a", "b"), (Dialogue("d", "train", (Utterance("u0", "A", 0),
                                                              Utterance("u1", "B", None))),))
    with pytest.raises(DataError, match=r"1 utterance\(s\) have no label \(e.g. \['u1'\]\)"):
        DialogueDataset(corpus, corpus.dialogues, {}, 2)
    assert Corpus.from_dict(corpus.to_dict()) == corpus  # unlabelled round-trips


def test_a_hub_id_that_cannot_be_fetched_is_one_error():
    with pytest.raises(ModelError, match="cannot load it from the Hugging Face hub or the local cache"):
        Recognizer.from_pretrained("someone-who-does-not-exist/emotion-model", local_files_only=True)


def test_a_corpus_json_is_an_input_too_and_an_empty_dialogue_is_named(trained, tmp_path, capsys):
    corpus = json.loads((trained["data"] / "corpus.json").read_text())
    out = tmp_path / "pred"
    assert cli(["predict", "--model", str(trained["model"]), "--input", str(trained["data"] / "corpus.json"),
                "--out", str(out), "--no-progress"]) == 0
    assert len(read_csv(out / "predictions.csv")) == len(ROWS)
    corpus["dialogues"].append({"id": "empty", "split": "test", "utterances": []})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(corpus))
    assert cli(["predict", "--model", str(trained["model"]), "--input", str(bad), "--out",
                str(tmp_path / "pred2")]) == 2
    assert "bad.json: dialogue 'empty' has no utterances" in capsys.readouterr().err


def test_a_hub_id_loads_from_the_local_hugging_face_cache(trained, tmp_path):
    """A model pushed to the hub and downloaded once: the cache layout huggingface_hub writes
    (models--owner--name/snapshots/<commit>/, refs/main), read with no network."""
    import shutil
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--someone--multiemo-mine"
    shutil.copytree(trained["model"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    recognizer = Recognizer.from_pretrained("someone/multiemo-mine", cache_dir=tmp_path / "cache",
                                            local_files_only=True, device="cpu")
    assert recognizer.folder == repo / "snapshots" / commit and recognizer.labels == ("neutral", "joy", "anger")
    assert [p.prediction for p in recognizer.predict([{"dialogue_id": "d", "utterance_index": 0,
                                                        "speaker": "A", "text": "hate"}])]


def test_export_of_a_seeds_folder_names_its_runs(trained, tmp_path, capsys):
    import shutil
    seeds = tmp_path / "seeds"
    shutil.copytree(trained["run"], seeds / "seed-2023")
    assert cli(["export", str(seeds), "--out", str(tmp_path / "m")]) == 2
    assert "is a folder of seed runs (seed-2023): export one of them" in capsys.readouterr().err


def test_every_file_written_follows_the_umask(trained, tmp_path):
    """Corpus, stores, run folder, checkpoints, model folder and predictions: what a plain open()
    gives under the process's umask (0644 under 022), so a group can read them."""
    import stat

    from multiemo.data.atomic import process_umask
    out = tmp_path / "pred"
    assert cli(["predict", "--model", str(trained["model"]), "--input", str(trained["source"]),
                "--out", str(out), "--no-progress"]) == 0
    expected = 0o666 & ~process_umask()
    wrong = {}
    for folder in (trained["data"], trained["run"], trained["model"], out):
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.endswith(".lock"):
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode != expected:
                    wrong[str(path.relative_to(folder.parent))] = oct(mode)
    assert not wrong, f"expected {oct(expected)}: {wrong}"
