"""Sweeps and studies through the command line on tiny synthetic data: selection on validation,
resume after SIGKILL, failed trials, studies with paired tests, and every bad input named."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from multiemo.cli import main as cli
from multiemo.data.store import FeatureStore, write_store
from multiemo.synthetic import make_synthetic_corpus

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DIMS = {"text": 12, "audio": 10, "visual": 14}
SMALL = {"model.text_dim": 12, "model.audio_dim": 10, "model.visual_dim": 14, "model.num_classes": 4,
         "model.num_speakers": 3, "model.model_dim": 16, "model.hidden_dim": 32, "model.mlp_hidden": 32,
         "model.num_layers": 1, "train.batch_size": 8, "train.epochs": 2, "runtime.num_threads": 1}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_synthetic_corpus(root, dialogues={"train": 24, "dev": 4, "test": 8}, dims=DIMS,
                          num_classes=4, num_speakers=3, lengths=(1, 6), seed=1)
    return root


def sweep_file(tmp_path, root, name="sweep.yaml", **changes):
    """A sweep YAML over the tiny synthetic corpus; ``key=None`` drops a key."""
    spec = {"base": str(CONFIGS / "meld.yaml"), "overrides": {"data.root": str(root), **SMALL},
            "trials": 3, "sampler": {"name": "random", "seed": 1}, "pruner": {"name": "none"},
            "space": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
                      "loss.temperature": {"choices": [0.5, 1.0]}},
            "final": {"seeds": [1, 2], "top_k": 3}}
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def load_study(study_dir):
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(str(study_dir / "study.journal")))
    return optuna.load_study(study_name=study_dir.name, storage=storage)


def distinct_completed(trials):
    """The completed trials' configurations, asserted pairwise distinct."""
    done = [tuple(sorted(t.params.items())) for t in trials if t.state.name == "COMPLETE"]
    assert len(set(done)) == len(done), done
    return done


def test_sweep_selects_on_validation_then_tests_the_chosen_config_with_seeds(root, tmp_path, capsys):
    study_dir = tmp_path / "study"
    assert cli(["sweep", "--config", str(sweep_file(tmp_path, root)), "--study-dir", str(study_dir)]) == 0
    study = load_study(study_dir)
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    printed = capsys.readouterr().out  # the sweep's own lines; each run's epochs in its train.log
    assert "trial 2: " in printed and "3/3 done" in printed and "epoch 1/" not in printed
    assert "epoch 1/" in (study_dir / "trials" / "0000" / "train.log").read_text()
    for t in trials:  # every trial is an ordinary run folder holding its sampled values
        folder = study_dir / "trials" / f"{t.number:04d}"
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["train"]["lr"] == pytest.approx(t.params["train.lr"])
        assert config["loss"]["temperature"] == t.params["loss.temperature"]
        assert (folder / "predictions_valid.csv").is_file() and (folder / "metrics.jsonl").is_file()
        assert not (folder / "predictions_test.csv").exists()  # no trial reads test
        assert json.loads((folder / "run.json").read_text())["status"] == "validated"
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["best_trial"] == study.best_trial.number
    chosen = yaml.safe_load((study_dir / "final" / "seed-1" / "config.yaml").read_text())
    assert chosen["train"]["lr"] == pytest.approx(study.best_trial.params["train.lr"])
    assert summary["final"]["num_runs"] == 2 and summary["baseline"]["num_runs"] == 2
    assert 0 < summary["comparison"]["weighted_f1"]["p_value"] <= 1
    md = (study_dir / "summary.md").read_text()
    assert "Top trials" in md and "±" in md and "paired bootstrap" in md.lower()
    for png in ("optimization_history.png", "slice.png"):
        assert (study_dir / png).stat().st_size > 1000
    # every file of the study (journal, trials, final runs, summaries, plots) follows the umask
    from multiemo.data.atomic import process_umask
    modes = {str(p.relative_to(study_dir)): oct(p.stat().st_mode & 0o777)
             for p in study_dir.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    assert {m for m in modes.values()} == {oct(0o666 & ~process_umask())}, modes
    # rerunning the finished sweep changes nothing and runs nothing
    before = (study_dir / "final" / "seed-1" / "predictions_test.csv").read_text()
    assert cli(["sweep", "--config", str(sweep_file(tmp_path, root)), "--study-dir", str(study_dir)]) == 0
    assert len(load_study(study_dir).get_trials()) == 3
    assert (study_dir / "final" / "seed-1" / "predictions_test.csv").read_text() == before


def test_no_trial_reads_the_test_split(root, tmp_path, capsys):
    """Stores without the test utterances: every trial runs; only the final step asks for test."""
    data = tmp_path / "no_test"
    (data / "features").mkdir(parents=True)
    (data / "corpus.json").write_text((root / "corpus.json").read_text())
    for m in DIMS:
        store = FeatureStore(root / "features" / f"{m}.safetensors")
        keep = [i for i in store.ids if not i.startswith("test_")]
        vectors, present = store.get(keep)
        write_store(data / "features" / f"{m}.safetensors", keep, vectors, present, info=store.info)
    spec = sweep_file(tmp_path, root, overrides={"data.root": str(data), **SMALL})
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "test_dia" in err  # the final step names the test utterances it cannot find
    study = load_study(tmp_path / "s")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(root, tmp_path, capsys):
    # model_dim 18 with 4 heads is invalid only in combination; lr 1e6 diverges
    spec = sweep_file(tmp_path, root, trials=6, sampler={"name": "grid", "seed": 0},
                      space={"model.model_dim": {"choices": [16, 18]},
                             "model.num_heads": {"choices": [2, 4]},
                             "train.lr": {"choices": [0.003, 1.0e6]}},
                      overrides={"data.root": str(root), **SMALL, "model.num_heads": 2})
    study_dir = tmp_path / "s"
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(study_dir), "--no-final"]) == 0
    trials = load_study(study_dir).get_trials()
    assert len(trials) == 6
    failed = {t.number: t.user_attrs["error"] for t in trials if t.state.name == "FAIL"}
    errors = " ".join(failed.values())
    assert failed and all(t.state.name in ("COMPLETE", "FAIL") for t in trials)
    for t in trials:
        bad_dims = t.params["model.model_dim"] == 18 and t.params["model.num_heads"] == 4
        diverges = t.params["train.lr"] > 1
        assert (t.state.name == "FAIL") == (bad_dims or diverges), t.params
    assert "not divisible by" in errors
    if any(t.params["train.lr"] > 1 and not (t.params["model.model_dim"] == 18 and t.params["model.num_heads"] == 4)
           for t in trials):
        assert "diverged" in errors


def test_study_runs_every_variant_and_seed_and_tests_against_the_reference(root, tmp_path, capsys):
    spec = sweep_file(tmp_path, root, space=None, trials=None, sampler=None, pruner=None,
                      study={"reference": "full", "seeds": [1, 2],
                             "variants": {"full": {}, "concat": {"model.multiattn": False}}})
    study_dir = tmp_path / "study"
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(study_dir)]) == 0
    trials = load_study(study_dir).get_trials()
    assert sorted((t.params["variant"], t.params["seed"]) for t in trials) == \
        [("concat", 1), ("concat", 2), ("full", 1), ("full", 2)]
    summary = json.loads((study_dir / "summary.json").read_text())
    assert set(summary["variants"]) == {"full", "concat"}
    cmp = summary["comparisons"]["concat"]
    assert 0 < cmp["weighted_f1"]["p_value"] <= 1 and len(cmp["per_class_f1"]["p_value"]) == 4
    mean = summary["variants"]["concat"]["mean"]["weighted_f1"]
    f1 = [json.loads((study_dir / "trials" / f"{t.number:04d}" / "report.json").read_text())["scores"]["weighted_f1"]
          for t in trials if t.params["variant"] == "concat"]
    assert mean == pytest.approx(np.mean(f1))
    assert "| concat | 2 |" in (study_dir / "summary.md").read_text()


@pytest.mark.parametrize("changes,message", [
    ({"space": {"model.sise": {"low": 1, "high": 2}}}, "space.model.sise: unknown key 'model.sise'"),
    ({"space": {"train.lr": {"low": 0.1, "high": 0.01}}}, "space.train.lr: low=0.1 is greater than high=0.01"),
    ({"space": {"train.lr": {"low": 0.0, "high": 0.01, "log": True}}}, "a log range needs low > 0"),
    ({"space": {"model.multiattn": {"choices": [True, "maybe"]}}}, "space.model.multiattn: key 'model.multiattn'"),
    ({"space": {"train.batch_size": {"choices": [8, 2.5]}}}, "space.train.batch_size"),
    ({"final": {"seeds": []}}, "final.seeds is empty"),
    ({"objective": "test_weighted_f1"}, "objective must be auto (the dataset's primary metric)"),
])
def test_bad_sweep_files_are_named(root, tmp_path, capsys, changes, message):
    spec = sweep_file(tmp_path, root, **changes)
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # nothing written


def test_a_study_folder_of_another_sweep_is_refused(root, tmp_path, capsys):
    study_dir = tmp_path / "s"
    assert cli(["sweep", "--config", str(sweep_file(tmp_path, root, trials=1)), "--study-dir",
                str(study_dir), "--no-final"]) == 0
    journal = (study_dir / "study.journal").read_bytes()
    other = sweep_file(tmp_path, root, name="other.yaml", trials=1,
                       space={"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    assert cli(["sweep", "--config", str(other), "--study-dir", str(study_dir)]) == 2
    err = capsys.readouterr().err
    assert "different sweep" in err and "space" in err
    assert cli(["sweep", "--config", str(sweep_file(tmp_path, root, trials=1)), "--study-dir",
                str(study_dir), "--no-final", "model.num_layers=2"]) == 2  # another base config
    assert "base_config" in capsys.readouterr().err
    assert (study_dir / "study.journal").read_bytes() == journal  # nothing overwritten


def test_missing_data_is_one_error_before_any_trial(root, tmp_path, capsys):
    spec = sweep_file(tmp_path, root, overrides={"data.root": str(tmp_path / "nowhere"), **SMALL})
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert f"corpus file {tmp_path / 'nowhere' / 'corpus.json'} does not exist" in err
    assert load_study(tmp_path / "s").get_trials() == []  # no trial was spent on it


def test_an_unreachable_storage_is_named(root, tmp_path, capsys):
    spec = sweep_file(tmp_path, root, trials=1)
    url = "postgresql+psycopg2://nobody:secret@127.0.0.1:9/nothing"
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(tmp_path / "s"), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:9/nothing cannot be reached" in err and "secret" not in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # nothing written


def _multiemo(*args, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # SIGINT as in a terminal, also where the test runner was started with it ignored (a
    # background job of a non-interactive shell): Python then installs its Ctrl-C handler
    return subprocess.Popen([sys.executable, "-m", "multiemo.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def wait_for_epochs(study_dir, trial, epochs, timeout=120):
    """Until trial ``trial`` of a running sweep has finished ``epochs`` epochs."""
    metrics = study_dir / "trials" / f"{trial:04d}" / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= epochs:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{metrics}: fewer than {epochs} epochs after {timeout} s")


def test_sigkill_then_rerun_continues_the_study(root, tmp_path):
    spec = sweep_file(tmp_path, root, trials=4,
                      overrides={"data.root": str(root), **SMALL, "train.epochs": 40})
    study_dir = tmp_path / "s"
    proc = _multiemo("sweep", "--config", str(spec), "--study-dir", str(study_dir), "--no-final")
    wait_for_epochs(study_dir, trial=1, epochs=2)  # kill in the middle of the second trial
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    states = [t.state.name for t in load_study(study_dir).get_trials()]
    assert states[:2] == ["COMPLETE", "RUNNING"]
    rerun = _multiemo("sweep", "--config", str(spec), "--study-dir", str(study_dir), "--no-final")
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "marked failed and queued again" in out
    trials = load_study(study_dir).get_trials()
    assert trials[1].state.name == "FAIL" and "error" not in trials[1].user_attrs
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == trials[1].params and retry[0].state.name == "COMPLETE"
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4  # the target is still reached
    assert len(distinct_completed(trials)) == 4  # the rerun draws anew, not trial 0's values again
    statuses = {t.number: json.loads((study_dir / "trials" / f"{t.number:04d}" / "run.json").read_text())
                for t in trials}
    assert all(info["status"] != "running" for info in statuses.values()), statuses
    assert statuses[1]["status"] == "failed"
    assert statuses[1]["error"] == f"its worker died (killed, or its node was lost); re-queued as trial {retry[0].number}"


def test_two_sweep_commands_at_once_on_one_folder_draw_distinct_configs(root, tmp_path):
    # the same command twice (as on two machines sharing the folder), no worker index
    spec = sweep_file(tmp_path, root, trials=4)
    args = ("sweep", "--config", str(spec), "--study-dir", str(tmp_path / "s"), "--no-final")
    procs = [_multiemo(*args) for _ in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    trials = load_study(tmp_path / "s").get_trials()
    assert len(distinct_completed(trials)) >= 4


def test_an_uninterrupted_sweep_is_reproducible_from_its_seed(root, tmp_path):
    spec = sweep_file(tmp_path, root, trials=3, sampler={"name": "tpe", "seed": 5})
    runs = []
    for folder in ("a", "b"):
        assert cli(["sweep", "--config", str(spec), "--study-dir", str(tmp_path / folder), "--no-final"]) == 0
        runs.append([t.params for t in load_study(tmp_path / folder).get_trials()])
    assert runs[0] == runs[1] and len(runs[0]) == 3
    assert len({tuple(sorted(p.items())) for p in runs[0]}) == 3


def test_two_worker_processes_share_one_study(root, tmp_path):
    spec = sweep_file(tmp_path, root, trials=4)
    proc = _multiemo("sweep", "--config", str(spec), "--study-dir", str(tmp_path / "s"),
                     "--workers", "2", "--no-final")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    trials = load_study(tmp_path / "s").get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # both processes ran trials
    assert "2 workers started (1 CPU thread(s) each)" in out
    assert len(distinct_completed(trials)) == 4


def test_a_grid_sweep_with_two_workers_visits_each_point_once(root, tmp_path):
    # seed 2: with the old seeding (seed + worker index) the workers' shuffled grids collide
    spec = sweep_file(tmp_path, root, trials=10, sampler={"name": "grid", "seed": 2},
                      space={"train.lr": {"choices": [0.003, 0.01]},
                             "loss.temperature": {"choices": [0.5, 1.0]}})
    proc = _multiemo("sweep", "--config", str(spec), "--study-dir", str(tmp_path / "s"),
                     "--workers", "2", "--no-final")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    trials = load_study(tmp_path / "s").get_trials()
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials
    assert sorted(distinct_completed(trials)) == sorted(
        (("loss.temperature", t), ("train.lr", lr)) for lr in (0.003, 0.01) for t in (0.5, 1.0))


def test_shipped_sweep_and_study_configs_load():
    from multiemo.sweep.spec import load_spec

    files = sorted((CONFIGS / "sweeps").glob("*.yaml")) + sorted((CONFIGS / "studies").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        spec = load_spec(path)
        spec.base_config()
        assert spec.objective in ("weighted_f1", "macro_f1")


@pytest.mark.slow
def test_postgresql_storage_two_workers_and_a_dead_worker(root, tmp_path):
    """A real PostgreSQL server (started and stopped by the test): two worker processes share
    one study; a SIGKILLed worker's running trial is failed by Optuna's heartbeat and re-queued."""
    from pg_server import postgres_available, postgres_server

    if postgres_available() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    with postgres_server() as url:
        spec = sweep_file(tmp_path, root, trials=4, heartbeat_seconds=1)
        proc = _multiemo("sweep", "--config", str(spec), "--study-dir", str(tmp_path / "a"),
                         "--storage", url, "--workers", "2", "--no-final")
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        trials = optuna.load_study(study_name="a", storage=url).get_trials()
        assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
        assert len({t.user_attrs["worker"] for t in trials}) == 2
        assert len(distinct_completed(trials)) == 4

        slow = sweep_file(tmp_path, root, name="slow.yaml", trials=3, heartbeat_seconds=1,
                          overrides={"data.root": str(root), **SMALL, "train.epochs": 40})
        study_dir = tmp_path / "b"
        proc = _multiemo("sweep", "--config", str(slow), "--study-dir", str(study_dir),
                         "--storage", url, "--no-final")
        wait_for_epochs(study_dir, trial=1, epochs=2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(3)  # past the grace period (2 heartbeats) of the dead worker's trial
        rerun = _multiemo("sweep", "--config", str(slow), "--study-dir", str(study_dir),
                          "--storage", url, "--no-final")
        out, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, out
        trials = optuna.load_study(study_name="b", storage=url).get_trials()
        assert trials[1].state.name == "FAIL"
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
        assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
        assert sum(t.state.name == "COMPLETE" for t in trials) == 3
        assert len(distinct_completed(trials)) == 3
        info = json.loads((study_dir / "trials" / "0001" / "run.json").read_text())
        assert info["status"] == "failed" and \
            info["error"].endswith(f"re-queued as trial {retried[0].number}"), info


def test_wandb_offline_puts_trials_and_final_runs_in_one_group(root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec = sweep_file(tmp_path, root, trials=1, final={"seeds": [1], "baseline": False})
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(tmp_path / "w"),
                "runtime.wandb=offline"]) == 0
    for folder in (tmp_path / "w" / "trials" / "0000", tmp_path / "w" / "final" / "seed-1"):
        logs = list((folder / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(logs) == 1, folder
        assert b"sweep-w" in logs[0].read_bytes()  # the group name is in the run's record


def test_the_pruner_stops_hopeless_trials(root, tmp_path, capsys):
    # grid seed 2 runs the learning rates in the order 0.003, 0.003, 0.01, 1e-9, 1e-9, 0.01
    spec = sweep_file(tmp_path, root, trials=6, sampler={"name": "grid", "seed": 2},
                      pruner={"name": "median", "warmup_epochs": 1, "startup_trials": 2},
                      space={"train.lr": {"choices": [0.01, 0.003, 1.0e-9]},
                             "loss.temperature": {"choices": [0.5, 1.0]}},
                      overrides={"data.root": str(root), **SMALL, "train.epochs": 6})
    study_dir = tmp_path / "s"
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(study_dir), "--no-final"]) == 0
    trials = load_study(study_dir).get_trials()
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert len(trials) == 6 and pruned  # pruned trials count towards the target
    for t in pruned:
        info = json.loads((study_dir / "trials" / f"{t.number:04d}" / "run.json").read_text())
        assert info["status"] == "pruned" and len(t.intermediate_values) < 6
    assert "pruned at epoch" in capsys.readouterr().out


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(root, tmp_path):
    spec = sweep_file(tmp_path, root, trials=3,
                      overrides={"data.root": str(root), **SMALL, "train.epochs": 40})
    study_dir = tmp_path / "s"
    proc = _multiemo("sweep", "--config", str(spec), "--study-dir", str(study_dir), "--no-final")
    wait_for_epochs(study_dir, trial=0, epochs=2)  # Ctrl-C in the middle of the first trial
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in out and "Traceback" not in out
    trials = load_study(study_dir).get_trials()
    assert trials[0].state.name == "FAIL" and trials[1].state.name == "WAITING"  # queued again
    rerun = _multiemo("sweep", "--config", str(spec), "--study-dir", str(study_dir), "--no-final")
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    trials = load_study(study_dir).get_trials()
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3


def test_report_compare_through_the_cli(root, tmp_path, capsys):
    spec = sweep_file(tmp_path, root, trials=1, final={"seeds": [1, 2], "baseline": True})
    study_dir = tmp_path / "s"
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(study_dir)]) == 0
    capsys.readouterr()
    assert cli(["report", "--compare", str(study_dir / "baseline"), str(study_dir / "final"),
                "--out", str(tmp_path / "cmp"), "--n-resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "B − A (95% CI)" in out and "p (two-sided)" in out
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["test"]["n_resamples"] == 500 and saved["test"]["runs_averaged"] == [2, 2]
    assert cli(["report", "--compare", str(study_dir / "final" / "seed-1"),
                str(study_dir / "trials" / "0000")]) == 2  # a trial has no test predictions
    assert "predictions_test.csv" in capsys.readouterr().err


def test_keep_checkpoints_keeps_them_and_still_scores_validation(root, tmp_path):
    spec = sweep_file(tmp_path, root, trials=1, keep_checkpoints=True)
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(tmp_path / "s"), "--no-final"]) == 0
    trial = tmp_path / "s" / "trials" / "0000"
    assert (trial / "checkpoints" / "best.pt").is_file() and (trial / "checkpoints" / "last.pt").is_file()
    assert (trial / "predictions_valid.csv").is_file()


# -- a store whose upstream learner saw validation or test dialogues ------------------------------

def learned_store(root, path, dialogue_ids):
    """A copy of the text store whose metadata says a fine-tuned encoder learned from
    ``dialogue_ids`` (as multiemo.data.splits.learned_record writes it)."""
    store = FeatureStore(root / "features" / "text.safetensors")
    vectors, present = store.get(store.ids)
    ids = sorted(dialogue_ids)
    info = {**store.info, "finetune": {"best_epoch": 1},
            "learned_from": {"what": "fine-tuned encoder", "rule": {"validation": "dev"},
                             "num_dialogues": len(ids), "dialogues": ids}}
    write_store(path, store.ids, vectors, present, info=info)
    assert FeatureStore(path).info["learned_from"]["dialogues"] == ids
    return path


def corpus_ids(root, split):
    from multiemo.data.corpus import Corpus
    return [d.id for d in Corpus.load(root / "corpus.json").split(split)]


@pytest.mark.parametrize("split,word", [("dev", "validation"), ("test", "test")])
def test_a_store_that_learned_from_validation_or_test_is_refused_before_any_trial(
        root, tmp_path, capsys, split, word):
    held = corpus_ids(root, split)
    assert len(held) >= 4
    leaked = held[:2] + corpus_ids(root, "train")[:3]  # 2 of the held-out dialogues
    text = learned_store(root, tmp_path / "leaky_text.safetensors", leaked)
    spec = sweep_file(tmp_path, root, trials=2,
                      overrides={"data.root": str(root), **SMALL, "train.epochs": 1,
                                 "data.validation": "dev", "data.text": str(text)})
    study_dir = tmp_path / "s"
    capsys.readouterr()
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(study_dir), "--no-final"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert str(text) in err[0]
    assert f"learned from 2 of this run's {len(held)} {word} dialogues" in err[0], err[0]
    # refused before any trial: none in the study, no trial folder with a run.json
    assert load_study(study_dir).get_trials() == []
    assert not list(study_dir.glob("trials/*/run.json"))


def test_a_store_that_learned_from_train_only_is_swept(root, tmp_path, capsys):
    text = learned_store(root, tmp_path / "clean_text.safetensors", corpus_ids(root, "train"))
    spec = sweep_file(tmp_path, root, trials=1,
                      overrides={"data.root": str(root), **SMALL, "train.epochs": 1,
                                 "data.validation": "dev", "data.text": str(text)})
    study_dir = tmp_path / "s"
    assert cli(["sweep", "--config", str(spec), "--study-dir", str(study_dir), "--no-final"]) == 0
    assert "learned from" not in capsys.readouterr().err
    trials = load_study(study_dir).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"]
    info = json.loads((study_dir / "trials" / "0000" / "run.json").read_text())
    assert info["status"] == "validated"
