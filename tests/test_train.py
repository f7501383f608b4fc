"""Training through the command line on tiny synthetic stores: selection, resume, seeds, errors."""

import json
from pathlib import Path

import numpy as np
import yaml
import pytest
from safetensors.numpy import save_file

from multiemo.cli import main as cli
from multiemo.data.corpus import Corpus, Dialogue, Utterance
from multiemo.data.dataset import DataError, collate, DialogueDataset, split_dialogues
from multiemo.data.store import FeatureStore
from multiemo.synthetic import make_synthetic_corpus
from multiemo import engine as train_module

DIMS = {"text": 12, "audio": 10, "visual": 14}
SMALL = ["model.text_dim=12", "model.audio_dim=10", "model.visual_dim=14", "model.num_classes=4",
         "model.num_speakers=3", "model.model_dim=16", "model.hidden_dim=32", "model.mlp_hidden=32",
         "train.batch_size=8", "train.lr=0.003"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_synthetic_corpus(root, dialogues={"train": 30, "dev": 4, "test": 10}, dims=DIMS,
                          num_classes=4, num_speakers=3, lengths=(1, 8), seed=1)
    return root


def run(root, run_dir, *extra):
    return cli(["train", "--config", "configs/meld.yaml", "--run-dir", str(run_dir),
                f"data.root={root}", *SMALL, *extra])


def read_metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_train_selects_on_validation_and_writes_the_run_folder(root, tmp_path, capsys):
    assert run(root, tmp_path / "r", "train.epochs=3") == 0
    r = tmp_path / "r"
    printed = capsys.readouterr()  # the epochs on standard output and in train.log, alike
    assert "epoch 3/3" in printed.out and "epoch 3/3" in (r / "train.log").read_text()
    assert printed.err == ""
    for name in ("config.yaml", "run.json", "metrics.jsonl", "train.log", "checkpoints/best.pt",
                 "checkpoints/last.pt", "predictions_valid.csv", "predictions_test.csv",
                 "report.md", "report.csv", "report.json", "confusion_matrix.png", "per_class_f1.png"):
        assert (r / name).is_file(), name
    metrics = read_metrics(r)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert {"loss", "ce", "swfc", "hgr", "weighted_f1"} <= set(metrics[0]["train"])
    assert "test" not in metrics[0]  # test is never scored during training
    run_info = json.loads((r / "run.json").read_text())
    best = max(metrics, key=lambda m: m["valid"]["weighted_f1"])  # first maximum wins
    assert run_info["best_epoch"] == best["epoch"] and run_info["status"] == "finished"
    report = json.loads((r / "report.json").read_text())
    assert report["extra"]["best_epoch"] == best["epoch"]
    assert "parameters" in (r / "train.log").read_text()
    # the report is what the best checkpoint gives: evaluate reproduces it, in its own folder
    first = (r / "predictions_test.csv").read_text()
    assert cli(["evaluate", str(r)]) == 0
    assert (r / "evaluations" / "best" / "predictions_test.csv").read_text() == first
    # the last checkpoint's scores never overwrite the run's report
    report = (r / "report.json").read_text()
    assert cli(["evaluate", str(r), "--checkpoint", "last"]) == 0
    assert (r / "report.json").read_text() == report
    last = json.loads((r / "evaluations" / "last" / "run.json").read_text())
    assert last["scored_from"] == {"checkpoint": "last", "epoch": 3, "seed": 2023}
    assert cli(["report", str(r / "evaluations" / "last")]) == 0  # an evaluation re-scores offline


def test_same_seed_same_metrics_and_resume_reaches_the_same_result(root, tmp_path, monkeypatch):
    assert run(root, tmp_path / "a", "train.epochs=3") == 0
    assert run(root, tmp_path / "b", "train.epochs=3") == 0
    strip = lambda ms: [{k: v for k, v in m.items() if k != "time_s"} for m in ms]
    assert strip(read_metrics(tmp_path / "a")) == strip(read_metrics(tmp_path / "b"))

    # kill a third run in the middle of epoch 2, then resume it
    real_run_epoch = train_module.run_epoch
    calls = {"n": 0}

    def dying_run_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # train of epoch 2 (each epoch: train, valid)
            raise KeyboardInterrupt
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_epoch", dying_run_epoch)
    assert run(root, tmp_path / "c", "train.epochs=3") == 130  # Ctrl-C: a clean stop
    assert f"multiemo train --resume {tmp_path / 'c'}" in (tmp_path / "c" / "train.log").read_text()
    monkeypatch.setattr(train_module, "run_epoch", real_run_epoch)
    assert [m["epoch"] for m in read_metrics(tmp_path / "c")] == [1]  # the finished epoch is kept
    assert run(root, tmp_path / "c") == 2  # refuses to start over an existing run
    assert cli(["train", "--resume", str(tmp_path / "c")]) == 0
    assert strip(read_metrics(tmp_path / "c")) == strip(read_metrics(tmp_path / "a"))
    assert (tmp_path / "c" / "predictions_test.csv").read_text() == \
        (tmp_path / "a" / "predictions_test.csv").read_text()


def test_several_seeds_give_mean_and_std(root, tmp_path):
    assert run(root, tmp_path / "s", "train.epochs=1", "--seeds", "1,2") == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    f1 = [json.loads((tmp_path / "s" / f"seed-{s}" / "report.json").read_text())["scores"]["weighted_f1"]
          for s in (1, 2)]
    assert summary["mean"]["weighted_f1"] == pytest.approx(np.mean(f1))
    assert summary["std"]["weighted_f1"] == pytest.approx(np.std(f1, ddof=1))
    assert "±" in (tmp_path / "s" / "summary.md").read_text()


def test_single_modality_and_iemocap_style_config_train(root, tmp_path):
    assert cli(["train", "--config", "configs/iemocap.yaml", "--run-dir", str(tmp_path / "t"),
                f"data.root={root}", *SMALL, "model.num_layers=1", "train.epochs=1",
                "model.modalities=text"]) == 0
    assert json.loads((tmp_path / "t" / "run.json").read_text())["modalities"] == ["text"]


@pytest.mark.parametrize("override,message", [
    ("model.sise=3", "unknown key 'model.sise'"),
    ("train.epochs=two", "expected an integer"),
    ("model.audio_dim=11", "audio vectors have dimension 10 but the config says model.audio_dim=11"),
    ("model.num_classes=5", "has 4 classes"),
    ("model.num_speakers=2", "has 3 speakers but the speaker vector holds 2"),
])
def test_bad_configuration_is_a_clear_error(root, tmp_path, capsys, override, message):
    assert run(root, tmp_path / "x", "train.epochs=1", override) == 2
    assert message in capsys.readouterr().err


def test_nan_in_a_store_names_the_utterances(root, tmp_path, capsys):
    store = FeatureStore(root / "features" / "audio.safetensors")
    vectors, present = store.get(store.ids)
    vectors[3, 0] = np.nan
    header = {"format": "multiemo-feature-store", "format_version": "1",
              "ids": json.dumps(store.ids), "info": json.dumps(store.info)}
    bad = tmp_path / "bad_audio.safetensors"
    save_file({"features": vectors, "present": present.astype(np.uint8)}, str(bad), metadata=header)
    assert run(root, tmp_path / "x", "train.epochs=1", f"data.audio={bad}") == 2
    err = capsys.readouterr().err
    assert "NaN or inf" in err and store.ids[3] in err


def test_empty_split_and_missing_dev_are_errors():
    utts = lambda d: (Utterance(f"{d}_0", "A", 0),)
    corpus = Corpus("c", ("x", "y"), tuple(Dialogue(f"d{i}", "train", utts(f"d{i}")) for i in range(5)))
    with pytest.raises(DataError, match="test split of corpus 'c' is empty"):
        split_dialogues(corpus)
    with pytest.raises(DataError, match="has no dev split"):
        split_dialogues(corpus, validation="dev")


def test_validation_split_is_reproducible_and_disjoint(root):
    corpus = Corpus.load(root / "corpus.json")
    a, b = split_dialogues(corpus, valid_seed=7), split_dialogues(corpus, valid_seed=7)
    assert [d.id for d in a["valid"]] == [d.id for d in b["valid"]]
    assert not {d.id for d in a["valid"]} & {d.id for d in a["train"]}
    assert len(a["train"]) + len(a["valid"]) == 34  # dev folded into train (official recipe)


def test_collate_pads_and_marks_speakers_by_first_appearance():
    utts = (Utterance("u0", "Ross", 0), Utterance("u1", "Rachel", 1), Utterance("u2", "Ross", 1))
    corpus = Corpus("c", ("x", "y"), (Dialogue("d0", "train", utts),
                                      Dialogue("d1", "train", (Utterance("v0", "Joey", 1),))))

    class Store:  # the two methods the dataset uses
        dim, path = 2, "mem"
        def get(self, ids, missing="error"):
            return np.arange(2 * len(ids), dtype=np.float32).reshape(-1, 2), np.array([True, False] * 2)[:len(ids)]

    data = DialogueDataset(corpus, corpus.dialogues, {"text": Store()}, num_speakers=3)
    batch = collate([data[0], data[1]])
    assert batch.mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.speaker_mask[0].argmax(-1).tolist() == [0, 1, 0]
    assert batch.speaker_mask[1, 1:].abs().sum() == 0 and batch.labels[1, 1:].tolist() == [-100, -100]
    assert batch.present["text"][0].tolist() == [True, False, True]


def test_wandb_offline_logs_the_run(root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert run(root, tmp_path / "w", "train.epochs=1", "runtime.wandb=offline") == 0
    assert list((tmp_path / "w" / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_demo_fusion_beats_every_single_modality(tmp_path):
    """`multiemo demo`'s claim, at its full size (four trainings on 300 dialogues): slow. The
    default suite trains through the CLI end to end in the tests above, on tiny stores."""
    from multiemo.demo import run_demo

    results = run_demo(tmp_path, epochs=6)
    fused = results.pop("text+audio+visual")
    assert fused > max(results.values()) + 20


def test_overrides_anywhere_on_the_line_and_one_cli_tree(root, tmp_path, capsys):
    r = tmp_path / "o"
    assert cli(["train", "--config", "configs/meld.yaml", f"data.root={root}", "--run-dir", str(r),
                *SMALL, "train.epochs=1"]) == 0
    assert yaml.safe_load((r / "config.yaml").read_text())["train"]["epochs"] == 1
    for words in (["--help"], ["extract", "--help"], ["extract", "text", "--help"],
                  ["sweep", "--help"], ["corpus", "build", "--help"]):
        assert cli(words) == 0, words
    assert "--shard K/N" in capsys.readouterr().out
    assert cli(["nonsense"]) == 2
    assert cli(["report", "x=1", str(r)]) == 2  # report takes no overrides: named, exit 2
    assert "x=1" in capsys.readouterr().err


def test_a_run_folder_is_locked_and_resume_records_its_overrides(root, tmp_path, capsys):
    from multiemo.run import RunDir

    r = tmp_path / "l"
    assert run(root, r, "train.epochs=1") == 0
    with RunDir(r).locked():  # as if another process were training in it
        assert cli(["train", "--resume", str(r), "train.epochs=2"]) == 2
        assert "is in use by pid" in capsys.readouterr().err
        assert cli(["evaluate", str(r)]) == 2
    assert cli(["train", "--resume", str(r), "train.epochs=2"]) == 0
    info = json.loads((r / "run.json").read_text())
    assert info["resumes"][-1]["overrides"] == ["train.epochs=2"]
    assert yaml.safe_load((r / "config.yaml").read_text())["train"]["epochs"] == 2
    assert [m["epoch"] for m in read_metrics(r)] == [1, 2]
    assert cli(["train", "--resume", str(r), "--config", "configs/meld.yaml"]) == 2
    assert "drop --config" in capsys.readouterr().err


def test_resume_refuses_overrides_that_change_the_models_shapes(root, tmp_path, capsys):
    r = tmp_path / "shapes"
    assert run(root, r, "train.epochs=1") == 0
    before = (r / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    for override in ("model.model_dim=32", "model.modalities=[text,audio]", "model.text_context=true"):
        assert cli(["train", "--resume", str(r), "train.epochs=2", override]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        key = override.split("=")[0]
        assert f"{key}=" in err[0] and "would change the model's shapes" in err[0]
    assert (r / "checkpoints" / "last.pt").read_bytes() == before  # nothing touched
    assert "resumes" not in json.loads((r / "run.json").read_text())
    # a shapeless change (dropout) resumes
    assert cli(["train", "--resume", str(r), "train.epochs=2", "model.dropout=0.1"]) == 0


@pytest.mark.parametrize("seeds,message", [("7,7", "repeats 7"), (" , ", "names no seed"),
                                           ("a,b", "comma-separated integers"),
                                           ("1,-1", "each seed must be in [0, 4294967295], got -1")])
def test_bad_seed_lists_are_refused_before_anything_is_written(root, tmp_path, capsys, seeds, message):
    assert run(root, tmp_path / "s", "train.epochs=1", "--seeds", seeds) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_a_diverged_loss_fails_the_run_without_a_report(root, tmp_path, capsys):
    assert run(root, tmp_path / "d", "train.epochs=2", "train.lr=1e6") == 2
    assert "diverged" in capsys.readouterr().err
    assert json.loads((tmp_path / "d" / "run.json").read_text())["status"] == "failed"
    assert not (tmp_path / "d" / "report.json").exists()


@pytest.mark.parametrize("override,message", [
    ("train.epochs=0", "train.epochs must be at least 1, got 0"),
    ("runtime.device=gpu", "device='gpu' is not a device"),
    ("runtime.num_threads=-2", "runtime.num_threads must be 0"),
])
def test_runtime_and_epoch_mistakes_are_one_line(root, tmp_path, capsys, override, message):
    assert run(root, tmp_path / "x", override) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_truncated_checkpoints_are_named(root, tmp_path, capsys):
    r = tmp_path / "t"
    assert run(root, r, "train.epochs=1") == 0
    (r / "checkpoints" / "best.pt").write_bytes((r / "checkpoints" / "best.pt").read_bytes()[:100])
    assert cli(["evaluate", str(r)]) == 2
    assert "best.pt cannot be read (empty or truncated?)" in capsys.readouterr().err
    (r / "checkpoints" / "last.pt").write_bytes(b"")
    assert cli(["train", "--resume", str(r), "train.epochs=2"]) == 2
    assert "last.pt cannot be read" in capsys.readouterr().err


def test_unknown_split_names_are_an_error_and_every_dialogue_is_logged(root, tmp_path, capsys):
    data = json.loads((root / "corpus.json").read_text())
    for d in data["dialogues"]:
        if d["split"] == "dev":
            d["split"] = "validation"
    (tmp_path / "corpus.json").write_text(json.dumps(data))
    assert run(root, tmp_path / "u", "train.epochs=1", f"data.corpus={tmp_path / 'corpus.json'}") == 2
    err = capsys.readouterr().err
    assert "split(s) {'validation': 4}" in err and "dropped" in err
    assert run(root, tmp_path / "ok", "train.epochs=1", "data.validation=fraction") == 0
    assert "44 dialogues = train 32 + valid 2 + test 10 (its dev split folded" in \
        (tmp_path / "ok" / "train.log").read_text()
    assert run(root, tmp_path / "dev", "train.epochs=1") == 0  # configs/meld.yaml: the dev split
    assert "44 dialogues = train 30 + valid 4 + test 10; test" in \
        (tmp_path / "dev" / "train.log").read_text()


def test_report_refuses_partial_or_undecodable_predictions(root, tmp_path, capsys):
    r = tmp_path / "p"
    assert run(root, r, "train.epochs=1") == 0
    lines = (r / "predictions_test.csv").read_text().splitlines(keepends=True)
    (r / "predictions_test.csv").write_text("".join(lines[:-3]))
    assert cli(["report", str(r)]) == 2
    assert "refusing to score part of a split" in capsys.readouterr().err
    (r / "predictions_test.csv").write_bytes("".join(lines).encode("utf-16"))
    assert cli(["report", str(r)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert cli(["report", str(r), "--n-resamples", "0"]) == 2


def test_two_processes_cannot_train_into_one_run_folder(root, tmp_path, capsys):
    import signal
    import subprocess
    import sys
    import time

    r = tmp_path / "busy"
    first = subprocess.Popen([sys.executable, "-m", "multiemo.cli", "train", "--config", "configs/meld.yaml",
                              "--run-dir", str(r), f"data.root={root}", *SMALL, "train.epochs=400",
                              "runtime.num_threads=1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (r / "metrics.jsonl").is_file() or not (r / "metrics.jsonl").read_text():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.05)
        before = (r / "checkpoints" / "last.pt").read_bytes()
        first.send_signal(signal.SIGSTOP)  # hold it still, its lock still held
        assert cli(["train", "--resume", str(r)]) == 2
        assert f"is in use by pid {first.pid}" in capsys.readouterr().err
        assert (r / "checkpoints" / "last.pt").read_bytes() == before  # nothing of it touched
    finally:
        first.kill()
        first.wait()
    assert cli(["train", "--resume", str(r), "train.epochs=2"]) == 0  # a dead holder's lock is free


def test_an_output_folder_that_cannot_be_written_is_named(root, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert run(root, blocker / "run", "train.epochs=1") == 2
    assert f"cannot write the run folder {blocker / 'run'}" in capsys.readouterr().err
    assert run(root, tmp_path / "ok", "train.epochs=1") == 0
    assert cli(["report", str(tmp_path / "ok"), "--out", str(blocker / "out")]) == 2
    assert "cannot write the output folder" in capsys.readouterr().err
    assert cli(["sweep", "--config", "configs/sweeps/meld.yaml", "--study-dir", str(blocker / "s"),
                f"data.root={root}"]) == 2
    assert "cannot be opened" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


# -- early stopping (train.patience, train.min_epochs) --------------------------------------------

# a higher learning rate: validation (two dialogues) peaks within a few epochs and then stalls
EARLY = ["train.lr=0.01", "train.epochs=12", "runtime.num_threads=1"]


def strip_time(ms):
    return [{k: v for k, v in m.items() if k != "time_s"} for m in ms]


def first_best_epoch(ms):
    return max(ms, key=lambda m: m["valid"]["weighted_f1"])["epoch"]  # first maximum wins


def expected_stop(ms, patience, min_epochs=0):
    """(stop epoch, best epoch then) by the rule, read off a run that trained every epoch."""
    best, score = 0, -1.0
    for m in ms:
        if m["valid"]["weighted_f1"] > score:
            best, score = m["epoch"], m["valid"]["weighted_f1"]
        if m["epoch"] >= min_epochs and m["epoch"] - best >= patience:
            return m["epoch"], best
    return ms[-1]["epoch"], best


@pytest.fixture(scope="module")
def no_stop(root, tmp_path_factory):
    """All 12 epochs without early stopping: the trajectory every early stop must cut."""
    r = tmp_path_factory.mktemp("early") / "all"
    assert run(root, r, *EARLY) == 0
    return r


def test_patience_zero_runs_every_epoch(no_stop):
    ms = read_metrics(no_stop)
    assert [m["epoch"] for m in ms] == list(range(1, 13))
    stopped = json.loads((no_stop / "run.json").read_text())["stopped"]
    assert stopped == {"reason": "max_epochs", "epoch": 12, "best_epoch": first_best_epoch(ms),
                       "patience": 0, "min_epochs": 0, "max_epochs": 12}
    assert "stopping after" not in (no_stop / "train.log").read_text()


def test_patience_stops_where_validation_stopped_improving(root, no_stop, tmp_path, capsys):
    full = read_metrics(no_stop)
    stop, best = expected_stop(full, 3)
    assert stop == best + 3 < 12  # the data stall early, or this test would mean nothing
    r = tmp_path / "p"
    assert run(root, r, *EARLY, "train.patience=3") == 0
    ms = read_metrics(r)
    assert len(ms) == best + 3  # stopped 3 epochs after the best, not at train.epochs=12
    assert strip_time(ms) == strip_time(full[:best + 3])  # the same epochs the full run trained
    info = json.loads((r / "run.json").read_text())
    assert info["stopped"] == {"reason": "patience", "epoch": best + 3, "best_epoch": best,
                               "patience": 3, "min_epochs": 0, "max_epochs": 12}
    assert info["best_epoch"] == best and info["scored_from"]["epoch"] == best
    assert json.loads((r / "report.json").read_text())["extra"]["best_epoch"] == best
    log_text = (r / "train.log").read_text()
    assert (f"stopping after epoch {best + 3}: validation weighted_f1 has not improved for 3 epochs "
            f"(best {100 * full[best - 1]['valid']['weighted_f1']:.2f} at epoch {best})") in log_text
    assert (f"stopped at epoch {best + 3} of at most 12 (no validation improvement for 3 epochs)"
            in capsys.readouterr().out)


def test_min_epochs_delays_the_stop(root, no_stop, tmp_path):
    full = read_metrics(no_stop)
    assert expected_stop(full, 2)[0] < 10  # patience alone would stop before min_epochs
    stop, best = expected_stop(full, 2, min_epochs=10)
    assert stop == 10
    r = tmp_path / "m"
    assert run(root, r, *EARLY, "train.patience=2", "train.min_epochs=10") == 0
    assert [m["epoch"] for m in read_metrics(r)] == list(range(1, 11))
    assert json.loads((r / "run.json").read_text())["stopped"] == {
        "reason": "patience", "epoch": 10, "best_epoch": best, "patience": 2, "min_epochs": 10,
        "max_epochs": 12}


def test_resume_stops_at_the_same_epoch_as_an_uninterrupted_run(root, tmp_path, monkeypatch):
    from multiemo.tracking import Tracker

    assert run(root, tmp_path / "a", *EARLY, "train.patience=3") == 0
    whole = read_metrics(tmp_path / "a")
    stopped = json.loads((tmp_path / "a" / "run.json").read_text())["stopped"]
    assert stopped["reason"] == "patience"

    # killed in the train pass of epoch 3, then resumed
    real_run_epoch = train_module.run_epoch
    calls = {"n": 0}

    def dying_run_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # each epoch: train, valid
            raise KeyboardInterrupt
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_epoch", dying_run_epoch)
    assert run(root, tmp_path / "b", *EARLY, "train.patience=3") == 130
    monkeypatch.setattr(train_module, "run_epoch", real_run_epoch)
    assert [m["epoch"] for m in read_metrics(tmp_path / "b")] == [1, 2]
    assert cli(["train", "--resume", str(tmp_path / "b")]) == 0
    assert strip_time(read_metrics(tmp_path / "b")) == strip_time(whole)
    assert json.loads((tmp_path / "b" / "run.json").read_text())["stopped"] == stopped
    assert (tmp_path / "b" / "predictions_test.csv").read_text() == \
        (tmp_path / "a" / "predictions_test.csv").read_text()

    # killed once the stop epoch is checkpointed, before the stop is recorded: resume trains no
    # more epochs (nor does resuming the finished run)
    def dying_log_epoch(self, record):
        if record["epoch"] == stopped["epoch"]:
            raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, "log_epoch", dying_log_epoch)
    assert run(root, tmp_path / "c", *EARLY, "train.patience=3") == 130
    monkeypatch.undo()
    assert "stopped" not in json.loads((tmp_path / "c" / "run.json").read_text())

    def no_epoch(*args, **kwargs):
        raise AssertionError("an epoch was trained after the stop")

    monkeypatch.setattr(train_module, "run_epoch", no_epoch)
    for _ in range(2):
        assert cli(["train", "--resume", str(tmp_path / "c")]) == 0
        assert strip_time(read_metrics(tmp_path / "c")) == strip_time(whole)
        info = json.loads((tmp_path / "c" / "run.json").read_text())
        assert info["stopped"] == stopped and info["status"] == "finished"
    assert (tmp_path / "c" / "predictions_test.csv").read_text() == \
        (tmp_path / "a" / "predictions_test.csv").read_text()


@pytest.mark.parametrize("overrides,message", [
    (["train.patience=-1"], "train.patience must be 0 or more, got -1"),
    (["train.min_epochs=-3"], "train.min_epochs must be 0 or more, got -3"),
    (["train.min_epochs=500", "train.epochs=10"], "train.min_epochs=500 is more than train.epochs=10"),
])
def test_bad_early_stopping_values_are_one_line(root, tmp_path, capsys, overrides, message):
    assert run(root, tmp_path / "x", *overrides) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_run_that_cannot_start_leaves_no_folder_and_keeps_a_users_folder(tmp_path, capsys):
    """A missing corpus is one line, exit 2; the run folder the command made is gone again (no
    lock file or empty log to puzzle over), while a folder that was there before stays."""
    config = ["--config", "configs/meld.yaml", f"data.root={tmp_path / 'nowhere'}"]
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), *config]) == 2
    assert "corpus.json does not exist" in capsys.readouterr().err
    assert not run.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    assert cli(["train", "--run-dir", str(mine), *config]) == 2
    assert mine.is_dir()
