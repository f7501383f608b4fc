"""Metrics (hand-computed values, sklearn agreement, bootstrap) and reports (files, CLI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from multiemo.data.corpus import IEMOCAP_LABELS, MELD_LABELS
from multiemo.metrics import (bootstrap_interval, classification_scores, confusion,
                              weighted_f1_from_confusion)
from multiemo.report import (PAPER_ROWS, ReportError, aggregate, format_table, main, paper_row,
                             write_report, write_summary)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- metrics ------------------------------------------------------------------------------------

def test_scores_by_hand():
    # true: 0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
    # class 0: tp 2, fp 0, fn 1 -> F1 = 4/5 ; class 1: tp 1, fp 1, fn 1 -> 1/2 ;
    # class 2: tp 1, fp 1, fn 0 -> 2/3 ; weighted = (3*.8 + 2*.5 + 1*2/3) / 6
    s = classification_scores([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], num_classes=4)
    assert s["per_class_f1"] == pytest.approx([0.8, 0.5, 2 / 3, 0.0])
    assert s["weighted_f1"] == pytest.approx((2.4 + 1.0 + 2 / 3) / 6)
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3 + 0.0) / 4)  # unseen class scores 0
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["support"] == [3, 2, 1, 0]
    assert s["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_scores_reject_bad_input():
    with pytest.raises(ValueError, match="outside 0..2"):
        classification_scores([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="2 labels but y_pred has 1"):
        classification_scores([0, 1], [0], num_classes=3)
    with pytest.raises(ValueError, match="integer class indices"):
        classification_scores([0.5, 1.0], [0, 1], num_classes=3)


def test_weighted_f1_from_confusion_matches_sklearn():
    rng = np.random.default_rng(1)
    stack, expected = [], []
    for _ in range(20):
        t = rng.integers(0, 5, 60)
        p = np.where(rng.random(60) < 0.5, t, rng.integers(0, 5, 60))
        stack.append(confusion(t, p, 6))  # class 5 never occurs
        expected.append(f1_score(t, p, labels=range(6), average="weighted", zero_division=0))
    assert weighted_f1_from_confusion(np.stack(stack)) == pytest.approx(expected)


def _noisy(n, k, accuracy, seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, k, n)
    p = np.where(rng.random(n) < accuracy, t, rng.integers(0, k, n))
    return t, p


def test_bootstrap_contains_estimate_narrows_and_is_reproducible():
    t, p = _noisy(400, 4, 0.6, 0)
    groups = np.repeat(np.arange(40), 10)
    point = classification_scores(t, p, 4)["weighted_f1"]
    low, high = bootstrap_interval(t, p, groups, n_resamples=500, seed=3)
    assert low < point < high
    assert (low, high) == bootstrap_interval(t, p, groups, n_resamples=500, seed=3)
    t_big, p_big = _noisy(6400, 4, 0.6, 0)
    low_big, high_big = bootstrap_interval(t_big, p_big, np.repeat(np.arange(640), 10),
                                           n_resamples=500, seed=3)
    assert high_big - low_big < 0.5 * (high - low)  # 16x the data: about 1/4 the width
    # utterance-level resampling also brackets the estimate
    low_u, high_u = bootstrap_interval(t, p, n_resamples=500)
    assert low_u < point < high_u


def test_bootstrap_resamples_whole_dialogues():
    # every dialogue is either all right or all wrong: resampling dialogues gives a much
    # wider interval than pretending the 200 utterances were independent
    t = np.zeros(200, dtype=int)
    t[::2] = 1
    right = np.repeat(np.arange(10) % 2 == 0, 20)
    p = np.where(right, t, 1 - t)
    groups = np.repeat(np.arange(10), 20)
    low_d, high_d = bootstrap_interval(t, p, groups, n_resamples=400)
    low_u, high_u = bootstrap_interval(t, p, n_resamples=400)
    assert (high_d - low_d) > 2 * (high_u - low_u)
    # a perfect predictor has a degenerate interval at 1
    assert bootstrap_interval(t, t, groups, n_resamples=50) == (1.0, 1.0)


# -- paper rows ---------------------------------------------------------------------------------

def test_paper_rows_match_paper_md():
    meld = PAPER_ROWS["meld"]
    assert tuple(meld["labels"]) == MELD_LABELS
    assert [c.lower() for c in meld["columns"]] == list(MELD_LABELS)
    assert meld["rows"]["MultiEMO"]["per_class_f1"] == [79.95, 60.98, 29.67, 41.51, 62.82,
                                                        36.75, 54.41]
    assert meld["rows"]["MultiEMO"]["weighted_f1"] == 66.74
    iemocap = PAPER_ROWS["iemocap"]
    assert [c.lower() for c in iemocap["columns"]] == list(IEMOCAP_LABELS)
    assert iemocap["rows"]["MultiEMO"]["weighted_f1"] == 72.84
    assert iemocap["rows"]["MMGCN"]["per_class_f1"][0] == 42.34
    assert iemocap["rows"]["UniMSE"]["per_class_f1"] == [None] * 6
    for table in PAPER_ROWS.values():
        assert len(table["rows"]) == 7
        assert all(len(r["per_class_f1"]) == len(table["labels"]) for r in table["rows"].values())
    # rows follow the caller's label order; unknown datasets or label sets have none
    permuted = list(reversed(MELD_LABELS))
    assert paper_row("meld", permuted)["per_class_f1"][0] == 54.41  # anger
    assert paper_row("meld", ["a", "b"]) is None
    assert paper_row("toy", ["a", "b"]) is None


# -- one report ---------------------------------------------------------------------------------

def _meld_predictions(n_dialogues=30, per_dialogue=10, seed=0, accuracy=0.6):
    t, p = _noisy(n_dialogues * per_dialogue, 7, accuracy, seed)
    groups = [f"dia{d}" for d in range(n_dialogues) for _ in range(per_dialogue)]
    return t, p, groups


def test_write_report_files(tmp_path):
    t, p, groups = _meld_predictions()
    report = write_report(tmp_path, t, p, MELD_LABELS, "meld", groups=groups,
                          extra={"seed": 2023}, n_resamples=200)
    for name in ("report.md", "report.csv", "report.json"):
        assert (tmp_path / name).stat().st_size > 0
    for name in ("confusion_matrix.png", "per_class_f1.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "report.json").read_text()) == report
    scores = classification_scores(t, p, 7)
    assert report["scores"]["weighted_f1"] == pytest.approx(100 * scores["weighted_f1"])
    assert report["scores"]["per_class_f1"] == pytest.approx([100 * f for f in
                                                              scores["per_class_f1"]])
    ci = report["weighted_f1_ci"]
    assert ci["low"] < report["scores"]["weighted_f1"] < ci["high"]
    assert ci["resampled"] == "dialogues" and report["num_dialogues"] == 30
    assert report["extra"] == {"seed": 2023}
    assert report["paper"]["weighted_f1"] == 66.74

    md = (tmp_path / "report.md").read_text()
    assert "| run | Neutral | Surprise | Fear | Sadness | Joy | Disgust | Anger | w-F1 | Acc " \
           "| macro-F1 |" in md
    ours = next(line for line in md.splitlines() if line.startswith("| ours"))
    assert f"| {100 * scores['weighted_f1']:.2f} |" in ours
    assert ("| MultiEMO (paper, Table 2) | 79.95 | 60.98 | 29.67 | 41.51 | 62.82 | 36.75 | 54.41 "
            "| 66.74 | - | - |") in md
    assert f"[{ci['low']:.2f}, {ci['high']:.2f}]" in md

    rows = list(csv.reader((tmp_path / "report.csv").open()))
    assert rows[0][:8] == ["run", *MELD_LABELS]
    assert float(rows[1][8]) == pytest.approx(report["scores"]["weighted_f1"])
    assert rows[2][0] == "MultiEMO (paper)" and float(rows[2][8]) == 66.74


def test_report_columns_follow_paper_order_whatever_the_label_order(tmp_path):
    labels = list(reversed(IEMOCAP_LABELS))  # frustration = 0 ... happiness = 5
    t = np.array([0, 0, 5, 5, 1, 2, 3, 4])
    p = np.array([0, 0, 5, 0, 1, 2, 3, 4])  # errors only in frustration / happiness
    report = write_report(tmp_path, t, p, labels, "iemocap", n_resamples=50)
    md = (tmp_path / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| run"))
    assert header.startswith("| run | Happiness | Sadness | Neutral | Anger | Excitement | "
                             "Frustration |")
    ours = next(line for line in md.splitlines() if line.startswith("| ours")).split(" | ")
    # happiness: tp 1, fn 1, fp 0 -> 66.67 ; frustration: tp 2, fp 1 -> 80.00
    assert ours[1] == "66.67" and ours[6] == "80.00"
    assert report["weighted_f1_ci"]["resampled"] == "utterances"


def test_unknown_dataset_has_no_paper_row(tmp_path):
    report = write_report(tmp_path, [0, 1, 1], [0, 1, 0], ["neg", "pos"], "toy", n_resamples=20)
    md = (tmp_path / "report.md").read_text()
    assert report["paper"] is None and "paper" not in md.split("\n\n")[1]
    assert "| run | Neg | Pos |" in md


# -- several runs -------------------------------------------------------------------------------

def _fake_report(per_class, weighted, accuracy, macro, dataset="iemocap",
                 labels=IEMOCAP_LABELS):
    return {"dataset": dataset, "split": "test", "labels": list(labels),
            "scores": {"per_class_f1": per_class, "weighted_f1": weighted,
                       "accuracy": accuracy, "macro_f1": macro},
            "weighted_f1_ci": {"low": weighted - 1, "high": weighted + 1}}


def test_aggregate_mean_and_sample_std_exact(tmp_path):
    runs = [_fake_report([60.0, 80, 60, 70, 70, 60], 70.0, 71.0, 66.0),
            _fake_report([62.0, 82, 64, 70, 72, 66], 72.0, 73.0, 68.0),
            _fake_report([64.0, 84, 68, 70, 74, 72], 74.0, 75.0, 70.0)]
    summary = aggregate(runs, ["s1", "s2", "s3"])
    assert summary["num_runs"] == 3 and summary["std_ddof"] == 1
    assert summary["mean"]["weighted_f1"] == pytest.approx(72.0)
    assert summary["std"]["weighted_f1"] == pytest.approx(2.0)  # sqrt(((-2)^2+0+2^2)/2)
    assert summary["mean"]["per_class_f1"] == pytest.approx([62, 82, 64, 70, 72, 66])
    assert summary["std"]["per_class_f1"] == pytest.approx([2, 2, 4, 0, 2, 6])
    table = format_table(runs, ["s1", "s2", "s3"])
    lines = table.splitlines()
    assert [line.split(" | ")[0] for line in lines[2:7]] == [
        "| s1", "| s2", "| s3", "| mean ± std (n=3)", "| MultiEMO (paper, Table 1)"]
    assert lines[5] == ("| mean ± std (n=3) | 62.00 ± 2.00 | 82.00 ± 2.00 | 64.00 ± 4.00 | "
                        "70.00 ± 0.00 | 72.00 ± 2.00 | 66.00 ± 6.00 | 72.00 ± 2.00 | "
                        "73.00 ± 2.00 | 68.00 ± 2.00 |")
    assert "ddof=1" in table
    write_summary(tmp_path, runs, ["s1", "s2", "s3"])
    assert json.loads((tmp_path / "summary.json").read_text())["std"]["weighted_f1"] == \
        pytest.approx(2.0)
    rows = list(csv.reader((tmp_path / "summary.csv").open()))
    assert [r[0] for r in rows] == ["run", "s1", "s2", "s3", "mean", "std"]
    assert (tmp_path / "summary.md").read_text().startswith("| run | Happiness")


def test_aggregate_single_run_and_mixed_runs():
    one = aggregate([_fake_report([1.0] * 6, 1.0, 1.0, 1.0)])
    assert one["std"]["weighted_f1"] is None
    assert "| mean ± std (n=1) | 1.00 |" in format_table([_fake_report([1.0] * 6, 1.0, 1.0, 1.0)])
    meld = _fake_report([1.0] * 7, 1.0, 1.0, 1.0, dataset="meld", labels=MELD_LABELS)
    with pytest.raises(ReportError, match="different dataset"):
        aggregate([_fake_report([1.0] * 6, 1.0, 1.0, 1.0), meld])
    with pytest.raises(ReportError, match="no runs"):
        aggregate([])


# -- the command --------------------------------------------------------------------------------

def _fake_run(run_dir: Path, dataset="meld", labels=MELD_LABELS, seed=0, accuracy=0.6,
              predictions=True):
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"dataset: {dataset}\n")
    (run_dir / "run.json").write_text(json.dumps({"dataset": dataset, "labels": list(labels),
                                                  "seed": seed, "best_epoch": 3}))
    if not predictions:
        return None
    rng = np.random.default_rng(seed)
    t, p = _noisy(120, len(labels), accuracy, seed)
    with (run_dir / "predictions_test.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["utterance_id", "dialogue_id", "label", "prediction"]
                        + [f"p_{name}" for name in labels])
        for i, (a, b) in enumerate(zip(t, p)):
            probs = rng.dirichlet(np.ones(len(labels)))
            writer.writerow([f"dia{i // 6}_utt{i % 6}", f"dia{i // 6}", labels[a], labels[b],
                             *probs.round(4)])
    return classification_scores(t, p, len(labels))


def test_cli_single_run_rescoring(tmp_path, capsys):
    scores = _fake_run(tmp_path / "run")
    out = tmp_path / "out"
    assert main([str(tmp_path / "run"), "--out", str(out), "--n-resamples", "100"]) == 0
    printed = capsys.readouterr().out
    assert f"{100 * scores['weighted_f1']:.2f}" in printed
    assert "MultiEMO (paper, Table 2)" in printed and "20 dialogues" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["scores"]["weighted_f1"] == pytest.approx(100 * scores["weighted_f1"])
    assert report["extra"]["seed"] == 0 and report["extra"]["best_epoch"] == 3
    assert (out / "confusion_matrix.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "summary.md").is_file() and (out / "summary.json").is_file()


def test_cli_expands_seed_folders(tmp_path, capsys):
    parent = tmp_path / "sweep"
    expected = [_fake_run(parent / f"seed-{s}" / "20240101-run", seed=s) for s in (2023, 2024)]
    expected.append(_fake_run(parent / "seed-2025", seed=2025))  # a run directly in seed-*
    out = tmp_path / "out"
    assert main([str(parent), "--out", str(out), "--n-resamples", "50"]) == 0
    printed = capsys.readouterr().out
    assert "| mean ± std (n=3)" in printed
    for name in ("seed-2023", "seed-2024", "seed-2025"):
        assert f"| {name} |" in printed
    summary = json.loads((out / "summary.json").read_text())
    weighted = [100 * s["weighted_f1"] for s in expected]
    assert summary["runs"] == ["seed-2023", "seed-2024", "seed-2025"]
    assert summary["mean"]["weighted_f1"] == pytest.approx(np.mean(weighted))
    assert summary["std"]["weighted_f1"] == pytest.approx(np.std(weighted, ddof=1))


def test_cli_errors(tmp_path, capsys):
    _fake_run(tmp_path / "empty", predictions=False)
    assert main([str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "empty" in err and "predictions_test.csv" in err
    assert main([str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    _fake_run(tmp_path / "meld")
    _fake_run(tmp_path / "iemocap", dataset="iemocap", labels=IEMOCAP_LABELS)
    assert main([str(tmp_path / "meld"), str(tmp_path / "iemocap")]) == 1
    err = capsys.readouterr().err
    assert "different dataset" in err and "iemocap" in err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
