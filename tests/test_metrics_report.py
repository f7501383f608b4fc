"""Metrics (hand-computed values, sklearn agreement, bootstrap) and reports (files, CLI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from multiemo.cli import main as cli_main
from multiemo.data.corpus import IEMOCAP_LABELS, MELD_LABELS
from multiemo.metrics import (bootstrap_interval, classification_scores, confusion,
                              paired_bootstrap, weighted_f1_from_confusion)
from multiemo.report import (PAPER_ROWS, ReportError, aggregate, choose_paper_row, compare_groups,
                             compare_runs, format_comparison, format_table, paper_row,
                             write_report, write_summary)


def main(argv: list[str]) -> int:
    """`multiemo report ...` as a user types it."""
    return cli_main(["report", *argv])


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


def test_classification_scores_match_sklearn():
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(2)
    for _ in range(20):
        t = rng.integers(0, 5, 80)
        p = np.where(rng.random(80) < 0.4, t, rng.integers(0, 5, 80))
        s = classification_scores(t, p, 6)  # class 5 never occurs
        for average in ("weighted", "macro"):
            assert s[f"{average}_f1"] == pytest.approx(
                f1_score(t, p, labels=range(6), average=average, zero_division=0))
        assert s["per_class_f1"] == pytest.approx(
            f1_score(t, p, labels=range(6), average=None, zero_division=0).tolist())
        assert s["accuracy"] == pytest.approx(accuracy_score(t, p))
        assert s["micro_f1"] == pytest.approx(accuracy_score(t, p))
        for left_out in (0, 5):  # DailyDialog's micro-F1 leaves "no emotion" out
            assert classification_scores(t, p, 6, exclude=left_out)["micro_f1"] == pytest.approx(
                f1_score(t, p, labels=[c for c in range(6) if c != left_out], average="micro",
                         zero_division=0))


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

METHOD_MD = Path(__file__).resolve().parents[1] / "docs" / "method.md"


def _method_md_tables(text: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The Markdown tables of docs/method.md §7, keyed by the "**Table N**" caption above each:
    ``{caption: (header cells, rows of cells)}``."""
    section = text.split("\n## 7.", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    caption = None
    for line in section.splitlines():
        if line.startswith("**Table "):
            caption = line[2:].split("**", 1)[0]
        elif line.startswith("|") and caption is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if caption not in tables:
                tables[caption] = (cells, [])
            elif not set("".join(cells)) <= set("-: "):
                tables[caption][1].append(cells)
        elif not line.strip() == "" and caption in tables:
            caption = None  # prose after a table ends it
    return tables


def _number(cell: str) -> float | None:
    return None if cell == "-" else float(cell)


def test_paper_rows_match_method_md():
    """Every published row in multiemo.report equals docs/method.md §7, cell by cell, and no
    table or row is in one and not the other."""
    doc = _method_md_tables(METHOD_MD.read_text(encoding="utf-8"))
    ours = {}  # (table, row) -> {column header: value}, from PAPER_ROWS
    for dataset, tables in PAPER_ROWS.items():
        for table, content in tables["tables"].items():
            for name, row in content["rows"].items():
                if table == "Table 3":  # one table for both datasets: a column per dataset
                    ours.setdefault((table, name), {})[dataset.upper()] = row["weighted_f1"]
                else:
                    ours[(table, name)] = {**dict(zip(tables["columns"], row["per_class_f1"])),
                                           "w-F1": row["weighted_f1"]}
    from_doc = {}
    for table, (header, rows) in doc.items():
        for cells in rows:
            from_doc[(table, cells[0])] = {column: _number(cell)
                                           for column, cell in zip(header[1:], cells[1:])}
    assert from_doc and ours.keys() == from_doc.keys()
    for key, values in ours.items():
        assert values == from_doc[key], key
    # the label order behind the columns
    assert tuple(PAPER_ROWS["meld"]["labels"]) == MELD_LABELS
    assert tuple(PAPER_ROWS["iemocap"]["labels"]) == IEMOCAP_LABELS
    for tables in PAPER_ROWS.values():
        assert [c.lower() for c in tables["columns"]] == list(tables["labels"])


def test_paper_row_order_and_absence():
    permuted = list(reversed(MELD_LABELS))
    assert paper_row("meld", permuted)["per_class_f1"][0] == 54.41  # anger
    assert paper_row("meld", MELD_LABELS, "MultiEMO w/o SWFC")["weighted_f1"] == 63.83
    assert paper_row("iemocap", IEMOCAP_LABELS, "MultiEMO")["table"] == "Table 1"
    assert paper_row("meld", ["a", "b"]) is None
    assert paper_row("toy", ["a", "b"]) is None
    assert paper_row("meld", MELD_LABELS, "audio+visual", "Table 3") is None


@pytest.mark.parametrize("config, model, table, weighted", [
    ({}, "MultiEMO", "Table 2", 66.74),  # every default: the full model
    ({"model": {"modalities": ["text"]}}, "MultiEMO, text", "Table 3", 61.23),
    ({"model": {"modalities": ["visual", "text"]}}, "MultiEMO, text+visual", "Table 3", 63.78),
    ({"model": {"modalities": ["audio"], "multiattn": False}}, "MultiEMO, audio", "Table 3", 33.55),
    ({"model": {"multiattn": False}}, "MultiEMO w/o MultiAttn", "Table 2", 62.50),
    ({"model": {"fusion": "concat"}}, "MultiEMO w/o MultiAttn", "Table 2", 62.50),
    ({"model": {"fusion": "multiattn"}, "loss": {"swfc_weight": 0.0}}, "MultiEMO w/o SWFC",
     "Table 2", 63.83),
])
def test_paper_row_follows_the_runs_modalities_and_ablation(config, model, table, weighted):
    row, note = choose_paper_row("meld", MELD_LABELS, {"dataset": "meld", **config})
    assert (row["model"], row["table"], row["weighted_f1"]) == (model, table, weighted)
    assert table in row["source"] and "ACL 2023" in row["source"]


@pytest.mark.parametrize("config, why", [
    ({"model": {"modalities": ["audio", "visual"]}}, "no row for the modalities audio+visual"),
    ({"model": {"modalities": ["text", "audio"], "fusion": "concat"}}, "concat fusion"),
    ({"model": {"modalities": ["text"]}, "loss": {"swfc_weight": 0}}, "no SWFC"),
    ({"model": {"multiattn": False}, "loss": {"swfc_weight": 0}}, "without both"),
    ({"model": {"fusion": "gated"}}, "model.fusion=gated"),
    ({"model": {"context": "transformer"}}, "context encoder transformer"),
    ({"model": {"context": {"text": "none", "audio": "dialoguernn"}}}, "context encoder none"),
])
def test_no_paper_row_where_none_is_published(config, why):
    row, note = choose_paper_row("meld", MELD_LABELS, config)
    assert row is None and why in note
    assert choose_paper_row("meld", MELD_LABELS, None)[0] is None  # unknown config: no guess
    assert "no published table" in choose_paper_row("toy", ["a", "b"], {})[1]


# -- one report ---------------------------------------------------------------------------------

def _meld_predictions(n_dialogues=30, per_dialogue=10, seed=0, accuracy=0.6):
    t, p = _noisy(n_dialogues * per_dialogue, 7, accuracy, seed)
    groups = [f"dia{d}" for d in range(n_dialogues) for _ in range(per_dialogue)]
    return t, p, groups


def test_write_report_files(tmp_path):
    t, p, groups = _meld_predictions()
    report = write_report(tmp_path, t, p, MELD_LABELS, "meld", groups=groups,
                          extra={"seed": 2023}, n_resamples=200, config={"dataset": "meld"})
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
    assert rows[2][0] == "MultiEMO (paper, Table 2)" and float(rows[2][8]) == 66.74
    assert "Table 2 (MELD test)" in md


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
                 labels=IEMOCAP_LABELS, config=None):
    paper, note = choose_paper_row(dataset, labels, {} if config is None else config)
    return {"dataset": dataset, "split": "test", "labels": list(labels),
            "paper": paper, "paper_note": note,
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


def test_aggregate_prints_a_paper_row_only_when_every_run_has_it():
    text = {"model": {"modalities": ["text"]}}
    runs = [_fake_report([1.0] * 6, 1.0, 1.0, 1.0, config=text) for _ in range(2)]
    table = format_table(runs)
    assert "| MultiEMO, text (paper, Table 3) | - | - | - | - | - | - | 64.48 | - | - |" in table
    assert "72.84" not in table and "Table 3 (MultiEMO by modalities" in table
    mixed = runs + [_fake_report([1.0] * 6, 1.0, 1.0, 1.0)]
    assert aggregate(mixed)["paper"] is None
    assert "(paper" not in format_table(mixed) and "different paper rows" in format_table(mixed)
    old = {k: v for k, v in runs[0].items() if k != "paper_note"}  # a report.json of before
    old["paper"] = paper_row("iemocap", IEMOCAP_LABELS)
    assert aggregate([old])["paper"] is None and "rescore" in format_table([old])


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


def test_cli_prints_the_paper_row_of_the_runs_modalities(tmp_path, capsys):
    """A text-only run stands beside the paper's text-only row (Table 3), never the full
    model's 66.74; a run with no published counterpart gets no row and a reason."""
    _fake_run(tmp_path / "text")
    (tmp_path / "text" / "config.yaml").write_text("dataset: meld\nmodel:\n  modalities: [text]\n")
    out = tmp_path / "out"
    assert main([str(tmp_path / "text"), "--out", str(out), "--n-resamples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "| MultiEMO, text (paper, Table 3) | - | - | - | - | - | - | - | 61.23 | - | - |" in printed
    assert "66.74" not in printed and "(paper, Table 2)" not in printed
    assert json.loads((out / "report.json").read_text())["paper"]["weighted_f1"] == 61.23
    rows = list(csv.reader((out / "report.csv").open()))
    assert rows[2][0] == "MultiEMO, text (paper, Table 3)" and float(rows[2][8]) == 61.23
    _fake_run(tmp_path / "av")
    (tmp_path / "av" / "config.yaml").write_text(
        "dataset: meld\nmodel:\n  modalities: [audio, visual]\n")
    assert main([str(tmp_path / "av"), "--n-resamples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "(paper" not in printed
    assert "No paper row: the paper's Table 3 has no row for the modalities audio+visual." in printed


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
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "predictions_test.csv" in err
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    _fake_run(tmp_path / "meld")
    _fake_run(tmp_path / "iemocap", dataset="iemocap", labels=IEMOCAP_LABELS)
    assert main([str(tmp_path / "meld"), str(tmp_path / "iemocap")]) == 2
    err = capsys.readouterr().err
    assert "different dataset" in err and "iemocap" in err
    assert main(["--help"]) == 0


# -- paired comparison --------------------------------------------------------------------------

def _predict(t, k, accuracy, seed):
    """Right on about ``accuracy`` of the items, else a wrong class."""
    rng = np.random.default_rng(seed)
    wrong = (t + rng.integers(1, k, t.size)) % k
    return np.where(rng.random(t.size) < accuracy, t, wrong)


def _two_systems(n_dialogues=200, per_dialogue=5, k=4, acc_a=0.5, acc_b=0.9, seed=0):
    t = np.random.default_rng(seed).integers(0, k, n_dialogues * per_dialogue)
    return (t, _predict(t, k, acc_a, seed + 1), _predict(t, k, acc_b, seed + 2),
            np.repeat(np.arange(n_dialogues), per_dialogue))


def test_paired_bootstrap_identical_predictions_have_p_one():
    t, a, _, groups = _two_systems(n_dialogues=50)
    result = paired_bootstrap(t, a, a, groups, n_resamples=500)
    assert result["weighted_f1"]["diff"] == 0.0 and result["weighted_f1"]["p_value"] == 1.0
    assert result["weighted_f1"]["ci_low"] == result["weighted_f1"]["ci_high"] == 0.0
    assert result["per_class_f1"]["p_value"] == [1.0] * 4
    assert result["resampled"] == "dialogues" and result["num_units"] == 50


def test_paired_bootstrap_detects_a_clearly_better_system():
    t, a, b, groups = _two_systems()
    result = paired_bootstrap(t, a, b, groups, n_resamples=2000, seed=1)
    w = result["weighted_f1"]
    assert w["diff"] > 0.3 and 0 < w["ci_low"] <= w["diff"] <= w["ci_high"]
    assert w["p_value"] < 0.01 and w["p_value"] == pytest.approx(1 / 2001)
    assert all(low > 0 for low in result["per_class_f1"]["ci_low"])
    # B against A is the mirror image
    back = paired_bootstrap(t, b, a, groups, n_resamples=2000, seed=1)
    assert back["weighted_f1"]["diff"] == pytest.approx(-w["diff"])
    assert back["weighted_f1"]["ci_high"] == pytest.approx(-w["ci_low"])
    # no difference in truth: a large p most of the time (here: for this seed)
    a2 = _predict(t, 4, 0.5, seed=7)
    assert paired_bootstrap(t, a, a2, groups, n_resamples=500)["weighted_f1"]["p_value"] > 0.05


def test_paired_bootstrap_observed_values_match_sklearn_and_are_reproducible():
    t, a, b, groups = _two_systems(n_dialogues=40, k=5, acc_b=0.7)
    result = paired_bootstrap(t, a, b, groups, num_classes=6, n_resamples=300, seed=4)
    for side, pred in (("a", a), ("b", b)):
        assert result["weighted_f1"][side] == pytest.approx(
            f1_score(t, pred, labels=range(6), average="weighted", zero_division=0))
        assert result["per_class_f1"][side] == pytest.approx(
            f1_score(t, pred, labels=range(6), average=None, zero_division=0))
    assert result["per_class_f1"]["diff"] == pytest.approx(
        np.subtract(result["per_class_f1"]["b"], result["per_class_f1"]["a"]))
    assert result["per_class_f1"]["p_value"][5] == 1.0  # class 5 never occurs
    assert result == paired_bootstrap(t, a, b, groups, num_classes=6, n_resamples=300, seed=4)
    assert result != paired_bootstrap(t, a, b, groups, num_classes=6, n_resamples=300, seed=5)
    utterances = paired_bootstrap(t, a, b, num_classes=6, n_resamples=300)
    assert utterances["resampled"] == "utterances" and utterances["num_units"] == t.size


def test_paired_bootstrap_averages_several_runs_a_side():
    t, a, b, groups = _two_systems(n_dialogues=40)
    a2, b2 = _predict(t, 4, 0.5, seed=5), _predict(t, 4, 0.9, seed=6)
    result = paired_bootstrap(t, np.stack([a, a2]), [b, b2, b], groups, n_resamples=200)
    expected_a = np.mean([f1_score(t, p, average="weighted") for p in (a, a2)])
    expected_b = np.mean([f1_score(t, p, average="weighted") for p in (b, b2, b)])
    assert result["weighted_f1"]["a"] == pytest.approx(expected_a)
    assert result["weighted_f1"]["b"] == pytest.approx(expected_b)
    assert (result["runs_a"], result["runs_b"]) == (2, 3)
    # one run given as (1, N) is the single-run case
    assert paired_bootstrap(t, a[None], b, groups, n_resamples=50) == \
        paired_bootstrap(t, a, b, groups, n_resamples=50)


def test_paired_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="y_true has 3 labels but pred_b has 2"):
        paired_bootstrap([0, 1, 1], [0, 1, 0], [0, 1])
    with pytest.raises(ValueError, match="n_resamples must be at least 1, got 0"):
        paired_bootstrap([0, 1], [0, 1], [0, 1], n_resamples=0)
    with pytest.raises(ValueError, match="groups has 1 entries for 2 labels"):
        paired_bootstrap([0, 1], [0, 1], [0, 1], groups=["d0"])
    with pytest.raises(ValueError, match="pred_a holds class indices outside 0..1"):
        paired_bootstrap([0, 1], [0, 2], [0, 1], num_classes=2)


def _write_predictions(run_dir: Path, rows, labels=("neutral", "joy", "anger"), dataset="meld"):
    """rows: (utterance_id, dialogue_id, gold, predicted) with class names."""
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"dataset": dataset, "labels": list(labels)}))
    with (run_dir / "predictions_test.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["utterance_id", "dialogue_id", "label", "prediction"]
                        + [f"p_{name}" for name in labels])
        for uid, dia, gold, pred in rows:
            writer.writerow([uid, dia, gold, pred] + [1.0 if name == pred else 0.0
                                                      for name in labels])


def _toy_rows(n_dialogues=30, per_dialogue=4, accuracy=0.5, seed=0,
              labels=("neutral", "joy", "anger")):
    """Same gold labels whatever ``seed``, which draws the predictions."""
    t = np.random.default_rng(0).integers(0, len(labels), n_dialogues * per_dialogue)
    p = _predict(t, len(labels), accuracy, seed + 1)
    return [(f"dia{i // per_dialogue}_utt{i % per_dialogue}", f"dia{i // per_dialogue}",
             labels[g], labels[q]) for i, (g, q) in enumerate(zip(t, p))]


def test_compare_runs_pairs_by_utterance_id(tmp_path):
    rows_a = _toy_rows(accuracy=0.5)
    rows_b = [(uid, dia, gold, gold if i % 10 else pred)  # B: right on 90%
              for i, (uid, dia, gold, pred) in enumerate(rows_a)]
    _write_predictions(tmp_path / "a", rows_a)
    _write_predictions(tmp_path / "b", rows_b[::-1])  # another row order
    cmp = compare_runs(tmp_path / "a", tmp_path / "b", n_resamples=500)
    assert json.loads(json.dumps(cmp)) == cmp
    assert (cmp["name_a"], cmp["name_b"], cmp["dataset"]) == ("a", "b", "meld")
    assert (cmp["num_utterances"], cmp["num_dialogues"]) == (120, 30)
    gold = [r[2] for r in rows_a]
    for side, rows in (("a", rows_a), ("b", rows_b)):
        expected = f1_score(gold, [r[3] for r in rows], average="weighted")
        assert cmp["weighted_f1"][side] == pytest.approx(100 * expected)
    w = cmp["weighted_f1"]
    assert w["diff"] > 20 and w["ci_low"] > 0 and w["p_value"] < 0.01
    same = compare_runs(tmp_path / "a", tmp_path / "a", n_resamples=100)
    assert same["weighted_f1"]["p_value"] == 1.0 and same["weighted_f1"]["diff"] == 0.0

    table = format_comparison(cmp)
    lines = table.splitlines()
    assert lines[0] == "| run | Neutral | Joy | Anger | w-F1 |"
    assert [line.split(" | ")[0] for line in lines[2:6]] == [
        "| A: a", "| B: b", "| B − A (95% CI)", "| p (two-sided)"]
    assert f"{w['diff']:+.2f} [{w['ci_low']:+.2f}, {w['ci_high']:+.2f}]" in lines[4]
    assert "paired bootstrap over dialogues (500 resamples" in table.lower()


def test_compare_groups_and_paper_column_order(tmp_path):
    labels = MELD_LABELS
    for side, accuracies in (("a", (0.4, 0.5)), ("b", (0.8, 0.9))):
        for s, acc in enumerate(accuracies):
            _write_predictions(tmp_path / side / f"seed-{s}",
                               _toy_rows(accuracy=acc, seed=s, labels=labels), labels)
    runs_a = [tmp_path / "a" / "seed-0", tmp_path / "a" / "seed-1"]
    runs_b = [tmp_path / "b" / "seed-0", tmp_path / "b" / "seed-1"]
    cmp = compare_groups(runs_a, runs_b, n_resamples=300)
    assert (cmp["name_a"], cmp["name_b"]) == ("a (n=2)", "b (n=2)")
    assert cmp["test"]["runs_averaged"] == [2, 2]
    singles = [compare_runs(a, b, n_resamples=10) for a, b in zip(runs_a, runs_b)]
    assert cmp["weighted_f1"]["a"] == pytest.approx(np.mean([c["weighted_f1"]["a"]
                                                             for c in singles]))
    assert cmp["weighted_f1"]["p_value"] < 0.01
    table = format_comparison(cmp)
    assert table.startswith("| run | Neutral | Surprise | Fear | Sadness | Joy | Disgust | "
                            "Anger | w-F1 |")
    assert "mean over its runs (A 2, B 2)" in table


def test_compare_runs_rejects_runs_on_different_utterances(tmp_path):
    rows = _toy_rows()
    _write_predictions(tmp_path / "full", rows)
    _write_predictions(tmp_path / "short", rows[:57] + rows[58:])
    with pytest.raises(ReportError, match=r"1 only in .*full \(e.g. 'dia14_utt1'\)") as err:
        compare_runs(tmp_path / "full", tmp_path / "short", n_resamples=10)
    assert "short" in str(err.value)
    relabelled = [(u, d, "joy" if i == 3 else g, p) for i, (u, d, g, p) in enumerate(rows)]
    _write_predictions(tmp_path / "relabelled", relabelled)
    with pytest.raises(ReportError, match="gold label of 1 utterance.*'dia0_utt3'"):
        compare_runs(tmp_path / "full", tmp_path / "relabelled", n_resamples=10)
    _write_predictions(tmp_path / "iemocap", rows, dataset="iemocap")
    with pytest.raises(ReportError, match="different datasets"):
        compare_runs(tmp_path / "full", tmp_path / "iemocap", n_resamples=10)
    _write_predictions(tmp_path / "classes", [(u, d, g, g) for u, d, g, _ in rows],
                       labels=("neutral", "joy", "anger", "sadness"))
    with pytest.raises(ReportError, match="different classes"):
        compare_runs(tmp_path / "full", tmp_path / "classes", n_resamples=10)


def test_compare_runs_maps_labels_by_name(tmp_path):
    rows = _toy_rows(accuracy=0.7)
    _write_predictions(tmp_path / "a", rows)
    _write_predictions(tmp_path / "b", rows, labels=("anger", "neutral", "joy"))
    cmp = compare_runs(tmp_path / "a", tmp_path / "b", n_resamples=50)
    assert cmp["weighted_f1"]["diff"] == pytest.approx(0.0)
    assert cmp["per_class_f1"]["a"] == pytest.approx(cmp["per_class_f1"]["b"])
