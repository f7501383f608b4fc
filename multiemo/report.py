"""Per-class reports of a run, and of several runs (mean ± std), beside the paper's numbers.

A report scores one split of one run: per-class F1 in the paper's column order (PAPER.md §1),
weighted-F1 (the headline metric), accuracy and macro-F1, all in **percent** with 2 decimals in
tables (the JSON keeps full precision, also in percent), and a 95% bootstrap interval of
weighted-F1 that resamples whole dialogues (utterances of one conversation are not
independent). :func:`write_report` writes ``report.md``, ``report.csv``, ``report.json``,
``confusion_matrix.png`` and ``per_class_f1.png``. :func:`aggregate` / :func:`format_table` /
:func:`write_summary` turn several runs (e.g. seeds) into one table of mean ± std, where std is
the *sample* standard deviation (``ddof=1``; undefined, shown as ``-``, for a single run).

``multiemo report RUN_DIR [RUN_DIR ...]`` re-scores runs offline from their
``predictions_<split>.csv`` (no model needed); a folder holding ``seed-*`` subfolders stands for
all the runs inside them.

>>> row = PAPER_ROWS["meld"]["rows"]["MultiEMO"]
>>> row["weighted_f1"], row["per_class_f1"][:2]
(66.74, [79.95, 60.98])
>>> aggregate([{"dataset": "d", "split": "test", "labels": ["a", "b"],
...             "scores": {"per_class_f1": [50.0, 60.0], "weighted_f1": 55.0, "macro_f1": 55.0,
...                        "accuracy": 56.0}},
...            {"dataset": "d", "split": "test", "labels": ["a", "b"],
...             "scores": {"per_class_f1": [52.0, 64.0], "weighted_f1": 57.0, "macro_f1": 58.0,
...                        "accuracy": 58.0}}])["std"]["weighted_f1"]  # doctest: +ELLIPSIS
1.414...
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from multiemo.data.corpus import IEMOCAP_LABELS, MELD_LABELS, atomic_write_text
from multiemo.metrics import bootstrap_interval, classification_scores

__all__ = ["PAPER_ROWS", "ReportError", "paper_row", "score_report", "write_report",
           "report_markdown", "report_csv", "aggregate", "format_table", "write_summary",
           "load_run", "find_runs", "main"]

REPORT_FORMAT = "multiemo-report"
REPORT_VERSION = 1
SUMMARY_COLUMNS = ("weighted_f1", "accuracy", "macro_f1")
_HEADERS = {"weighted_f1": "w-F1", "accuracy": "Acc", "macro_f1": "macro-F1"}
_N = None  # "-" in the paper's tables: not reported

# PAPER.md §7: the published tables (per-class F1 in label-index order, then weighted-F1), in %.
PAPER_ROWS: dict[str, dict[str, Any]] = {
    "meld": {
        "source": "Shi & Huang, ACL 2023, Table 2 (MELD test)",
        "table": "Table 2",
        "labels": MELD_LABELS,
        "columns": ("Neutral", "Surprise", "Fear", "Sadness", "Joy", "Disgust", "Anger"),
        "rows": {name: {"per_class_f1": f1, "weighted_f1": w} for name, f1, w in (
            ("DialogueRNN", [76.23, 49.59, 0.00, 26.33, 54.55, 0.81, 46.76], 58.73),
            ("MMGCN", [_N] * 7, 58.65),
            ("UniMSE", [_N] * 7, 65.51),
            ("MultiEMO w/o VisExtNet", [79.16, 58.22, 24.80, 37.61, 60.65, 31.73, 52.08], 64.89),
            ("MultiEMO w/o MultiAttn", [77.72, 54.05, 21.76, 33.10, 58.28, 24.80, 49.98], 62.50),
            ("MultiEMO w/o SWFC", [79.51, 56.54, 20.59, 32.96, 58.52, 25.81, 51.23], 63.83),
            ("MultiEMO", [79.95, 60.98, 29.67, 41.51, 62.82, 36.75, 54.41], 66.74),
        )},
    },
    "iemocap": {
        "source": "Shi & Huang, ACL 2023, Table 1 (IEMOCAP test)",
        "table": "Table 1",
        "labels": IEMOCAP_LABELS,
        "columns": ("Happiness", "Sadness", "Neutral", "Anger", "Excitement", "Frustration"),
        "rows": {name: {"per_class_f1": f1, "weighted_f1": w} for name, f1, w in (
            ("DialogueRNN", [33.18, 78.80, 59.21, 65.28, 71.86, 58.91], 62.75),
            ("MMGCN", [42.34, 78.67, 61.73, 69.00, 74.33, 62.32], 66.22),
            ("UniMSE", [_N] * 6, 70.66),
            ("MultiEMO w/o VisExtNet", [65.06, 84.80, 66.13, 67.98, 76.16, 69.66], 71.72),
            ("MultiEMO w/o MultiAttn", [55.18, 78.29, 62.06, 63.84, 73.11, 63.98], 66.57),
            ("MultiEMO w/o SWFC", [59.88, 83.96, 66.57, 67.03, 75.35, 70.04], 71.08),
            ("MultiEMO", [65.77, 85.49, 67.08, 69.88, 77.31, 70.98], 72.84),
        )},
    },
}


class ReportError(ValueError):
    """A run or set of runs that cannot be reported as asked; names the folder or file."""


def paper_row(dataset: str, labels: Sequence[str], model: str = "MultiEMO") -> dict | None:
    """The paper's row for ``model`` with per-class F1 in the order of ``labels``, or None.

    None when the dataset has no published table or ``labels`` is not its class set.
    """
    table = PAPER_ROWS.get(dataset.lower())
    if table is None or sorted(labels) != sorted(table["labels"]):
        return None
    row = table["rows"][model]
    by_name = dict(zip(table["labels"], row["per_class_f1"]))
    return {"model": model, "source": table["source"], "table": table["table"],
            "per_class_f1": [by_name[name] for name in labels],
            "weighted_f1": row["weighted_f1"]}


def _column_order(dataset: str, labels: Sequence[str]) -> tuple[list[int], list[str]]:
    """Label indices in the paper's column order and their headers (label order otherwise)."""
    table = PAPER_ROWS.get(dataset.lower())
    if table is not None and sorted(labels) == sorted(table["labels"]):
        order = [list(labels).index(name) for name in table["labels"]]
        return order, list(table["columns"])
    return list(range(len(labels))), [name.capitalize() for name in labels]


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.2f}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- one run ------------------------------------------------------------------------------------

def score_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str],
                 dataset: str, groups: Sequence | None = None, split: str = "test",
                 extra: dict | None = None, *, n_resamples: int = 1000, seed: int = 0) -> dict:
    """The report dict of :func:`write_report`, without writing anything."""
    labels = [str(name) for name in labels]
    s = classification_scores(y_true, y_pred, len(labels))
    low, high = bootstrap_interval(y_true, y_pred, groups, n_resamples=n_resamples, seed=seed,
                                   num_classes=len(labels))
    num_dialogues = len({str(g) for g in groups}) if groups is not None else None
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "unit": "percent",
        "dataset": dataset, "split": split, "labels": labels,
        "num_utterances": int(np.sum(s["support"])),
        "num_dialogues": num_dialogues,
        "scores": {"per_class_f1": [100 * f for f in s["per_class_f1"]],
                   "weighted_f1": 100 * s["weighted_f1"], "macro_f1": 100 * s["macro_f1"],
                   "accuracy": 100 * s["accuracy"], "support": s["support"]},
        "weighted_f1_ci": {"low": 100 * low, "high": 100 * high, "confidence": 0.95,
                           "method": "percentile bootstrap", "n_resamples": n_resamples,
                           "seed": seed, "resampled": "dialogues" if groups is not None
                           else "utterances"},
        "confusion_matrix": s["confusion"],
        "paper": paper_row(dataset, labels),
        "extra": dict(extra or {}),
    }


def write_report(out_dir: str | Path, y_true: Sequence[int], y_pred: Sequence[int],
                 labels: Sequence[str], dataset: str, groups: Sequence | None = None,
                 split: str = "test", extra: dict | None = None, *, n_resamples: int = 1000,
                 seed: int = 0) -> dict:
    """Score one split and write ``report.{md,csv,json}``, ``confusion_matrix.png`` and
    ``per_class_f1.png`` into ``out_dir``.

    Args:
        out_dir: folder to write into (created).
        y_true, y_pred: class indices into ``labels``.
        labels: class names in index order.
        dataset: ``meld`` / ``iemocap`` put the paper's MultiEMO row beside ours and the columns
            in the paper's order; any other name reports in label order without a paper row.
        groups: dialogue id per utterance; the bootstrap then resamples dialogues.
        split: name of the split, for titles.
        extra: anything to keep in the JSON under ``"extra"`` (run name, seed, best epoch...).
        n_resamples, seed: of the bootstrap.

    Returns:
        The JSON dict (scores in percent).
    """
    report = score_report(y_true, y_pred, labels, dataset, groups, split, extra,
                          n_resamples=n_resamples, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "report.md", report_markdown(report) + "\n")
    atomic_write_text(out / "report.csv", report_csv(report))
    _plot_confusion(report, out / "confusion_matrix.png")
    _plot_per_class(report, out / "per_class_f1.png")
    return report


def _row_cells(report: dict) -> list[str]:
    order, _ = _column_order(report["dataset"], report["labels"])
    s = report["scores"]
    return [_fmt(s["per_class_f1"][i]) for i in order] + [_fmt(s[c]) for c in SUMMARY_COLUMNS]


def _paper_cells(dataset: str, labels: Sequence[str]) -> tuple[str, list[str]] | None:
    row = paper_row(dataset, labels)
    if row is None:
        return None
    order, _ = _column_order(dataset, labels)
    cells = [_fmt(row["per_class_f1"][i]) for i in order] + [_fmt(row["weighted_f1"]), "-", "-"]
    return f"MultiEMO (paper, {row['table']})", cells


def _header(dataset: str, labels: Sequence[str]) -> list[str]:
    _, columns = _column_order(dataset, labels)
    return ["run"] + columns + [_HEADERS[c] for c in SUMMARY_COLUMNS]


def report_markdown(report: dict, name: str = "ours") -> str:
    """The Markdown of one report: our row, the paper's row, the CI and the class counts."""
    dataset, labels = report["dataset"], report["labels"]
    rows = [[name] + _row_cells(report)]
    paper = _paper_cells(dataset, labels)
    if paper is not None:
        rows.append([paper[0]] + paper[1])
    order, columns = _column_order(dataset, labels)
    ci = report["weighted_f1_ci"]
    units = (f"{report['num_dialogues']} dialogues" if ci["resampled"] == "dialogues"
             else f"{report['num_utterances']} utterances")
    support = ", ".join(f"{columns[j]} {report['scores']['support'][i]}"
                        for j, i in enumerate(order))
    lines = [f"## {dataset} — {report['split']} split: {report['num_utterances']} utterances"
             + (f" in {report['num_dialogues']} dialogues" if report["num_dialogues"] else ""),
             "",
             _markdown(_header(dataset, labels), rows),
             "",
             f"Weighted-F1 {_fmt(report['scores']['weighted_f1'])}, "
             f"{int(100 * ci['confidence'])}% bootstrap interval "
             f"[{_fmt(ci['low'])}, {_fmt(ci['high'])}] ({ci['n_resamples']} resamples of the "
             f"{units}, {ci['method']}).",
             "",
             f"All scores in %. Per-class F1 and w-F1 (weighted-F1) as in the paper; Acc = "
             f"accuracy; macro-F1 = unweighted mean of the per-class F1. Class counts: {support}."]
    if paper is None:
        lines.append(f"No published row for dataset {dataset!r} with these classes.")
    else:
        lines.append("The paper's row is its reported test-set result.")
    return "\n".join(lines)


def report_csv(report: dict, name: str = "ours") -> str:
    """CSV of one report: a header, our row, the paper's row (numbers in %, full precision)."""
    dataset, labels = report["dataset"], report["labels"]
    order, _ = _column_order(dataset, labels)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run"] + [labels[i] for i in order] + list(SUMMARY_COLUMNS)
                    + ["weighted_f1_ci_low", "weighted_f1_ci_high"])
    s = report["scores"]
    ci = report["weighted_f1_ci"]
    writer.writerow([name] + [s["per_class_f1"][i] for i in order]
                    + [s[c] for c in SUMMARY_COLUMNS] + [ci["low"], ci["high"]])
    paper = paper_row(dataset, labels)
    if paper is not None:
        writer.writerow(["MultiEMO (paper)"] + ["" if paper["per_class_f1"][i] is None
                                                 else paper["per_class_f1"][i] for i in order]
                        + [paper["weighted_f1"], "", "", "", ""])
    return buf.getvalue()


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; never opens a window
    import matplotlib.pyplot as plt
    return plt


def _plot_confusion(report: dict, path: Path) -> None:
    plt = _pyplot()
    order, columns = _column_order(report["dataset"], report["labels"])
    counts = np.asarray(report["confusion_matrix"], dtype=float)[np.ix_(order, order)]
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    k = len(order)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * k, 0.8 + 0.7 * k))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), columns, rotation=45, ha="right")
    ax.set_yticks(range(k), columns)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{report['dataset']} {report['split']}: counts, colour = row share")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_per_class(report: dict, path: Path) -> None:
    plt = _pyplot()
    order, columns = _column_order(report["dataset"], report["labels"])
    ours = [report["scores"]["per_class_f1"][i] for i in order]
    paper = paper_row(report["dataset"], report["labels"])
    x = np.arange(len(order))
    width = 0.4 if paper else 0.7
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(order), 3.5))
    ax.bar(x - (width / 2 if paper else 0), ours, width, label="ours")
    if paper is not None:
        values = [paper["per_class_f1"][i] for i in order]
        ax.bar(x + width / 2, [np.nan if v is None else v for v in values], width,
               label="MultiEMO (paper)", color="tab:gray")
    ax.set_xticks(x, columns, rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("F1 (%)")
    ax.set_title(f"{report['dataset']} {report['split']}: per-class F1, "
                 f"w-F1 {report['scores']['weighted_f1']:.2f}")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- several runs -------------------------------------------------------------------------------

def _check_same(reports: Sequence[dict], names: Sequence[str]) -> None:
    first = reports[0]
    for report, name in zip(reports[1:], names[1:]):
        for key in ("dataset", "labels", "split"):
            if report[key] != first[key]:
                raise ReportError(f"cannot put runs of different {key} in one table: "
                                  f"{names[0]} has {first[key]!r}, {name} has {report[key]!r}")


def aggregate(reports: Sequence[dict], names: Sequence[str] | None = None) -> dict:
    """Mean and sample standard deviation (``ddof=1``) over runs of every column, in %.

    Per-class F1 are in label-index order. ``std`` is None for a single run.

    Raises:
        ReportError: no reports, or reports of different datasets, labels or splits.
    """
    if not reports:
        raise ReportError("no runs to aggregate")
    names = list(names) if names is not None else [f"run {i + 1}" for i in range(len(reports))]
    if len(names) != len(reports):
        raise ReportError(f"{len(names)} names for {len(reports)} runs")
    _check_same(reports, names)
    columns = {"per_class_f1": np.array([r["scores"]["per_class_f1"] for r in reports], float)}
    columns.update({c: np.array([r["scores"][c] for r in reports], float)
                    for c in SUMMARY_COLUMNS})
    n = len(reports)

    def std(values: np.ndarray) -> Any:
        if n < 2:
            return None if values.ndim == 1 else [None] * values.shape[1]
        out = values.std(axis=0, ddof=1)
        return out.tolist() if values.ndim > 1 else float(out)

    first = reports[0]
    return {
        "format": "multiemo-summary", "version": 1, "unit": "percent", "std_ddof": 1,
        "dataset": first["dataset"], "split": first["split"], "labels": list(first["labels"]),
        "num_runs": n, "runs": names,
        "mean": {c: (v.mean(axis=0).tolist() if v.ndim > 1 else float(v.mean()))
                 for c, v in columns.items()},
        "std": {c: std(v) for c, v in columns.items()},
        "per_run": {c: v.tolist() for c, v in columns.items()},
        "weighted_f1_ci": [[r["weighted_f1_ci"]["low"], r["weighted_f1_ci"]["high"]]
                           for r in reports if "weighted_f1_ci" in r],
        "paper": paper_row(first["dataset"], first["labels"]),
    }


def format_table(reports: Sequence[dict], names: Sequence[str] | None = None) -> str:
    """Markdown: one row per run, then ``mean ± std (n=K)``, then the paper's MultiEMO row."""
    summary = aggregate(reports, names)
    dataset, labels = summary["dataset"], summary["labels"]
    order, _ = _column_order(dataset, labels)
    rows = [[name] + _row_cells(r) for name, r in zip(summary["runs"], reports)]

    def pm(mean: float, sd: float | None) -> str:
        return _fmt(mean) if sd is None else f"{mean:.2f} ± {sd:.2f}"

    mean, sd = summary["mean"], summary["std"]
    rows.append([f"mean ± std (n={summary['num_runs']})"]
                + [pm(mean["per_class_f1"][i], sd["per_class_f1"][i]) for i in order]
                + [pm(mean[c], sd[c]) for c in SUMMARY_COLUMNS])
    paper = _paper_cells(dataset, labels)
    if paper is not None:
        rows.append([paper[0]] + paper[1])
    note = (f"{dataset} {summary['split']} split, {summary['num_runs']} run(s); all in %; "
            f"std is the sample standard deviation (ddof=1) over runs"
            + ("" if summary["num_runs"] > 1 else ", undefined for one run") + ".")
    return _markdown(_header(dataset, labels), rows) + "\n\n" + note


def write_summary(out_dir: str | Path, reports: Sequence[dict],
                  names: Sequence[str] | None = None) -> dict:
    """Write ``summary.md``, ``summary.json`` and ``summary.csv`` (one row per run, then mean
    and std) into ``out_dir``; returns the :func:`aggregate` dict."""
    summary = aggregate(reports, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.md", format_table(reports, summary["runs"]) + "\n")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    order, _ = _column_order(summary["dataset"], summary["labels"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run"] + [summary["labels"][i] for i in order] + list(SUMMARY_COLUMNS))
    per_run = summary["per_run"]
    for k, name in enumerate(summary["runs"]):
        writer.writerow([name] + [per_run["per_class_f1"][k][i] for i in order]
                        + [per_run[c][k] for c in SUMMARY_COLUMNS])
    for stat in ("mean", "std"):
        values = summary[stat]
        writer.writerow([stat] + ["" if values["per_class_f1"][i] is None
                                  else values["per_class_f1"][i] for i in order]
                        + ["" if values[c] is None else values[c] for c in SUMMARY_COLUMNS])
    atomic_write_text(out / "summary.csv", buf.getvalue())
    return summary


# -- run folders --------------------------------------------------------------------------------

def find_runs(paths: Sequence[str | Path], split: str = "test") -> list[tuple[str, Path]]:
    """``(name, folder)`` of every run: a folder with ``predictions_<split>.csv``, or a folder
    whose ``seed-*`` subfolders hold runs (directly or one level down)."""
    found: list[tuple[str, Path]] = []
    target = f"predictions_{split}.csv"
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise ReportError(f"run folder {path} does not exist")
        if (path / target).is_file():
            found.append((path.resolve().name, path))
            continue
        seeds = sorted(p for p in path.glob("seed-*") if p.is_dir())
        if not seeds:
            raise ReportError(f"{path}: no {target} (is it a run folder? a multi-seed folder "
                              f"needs seed-* subfolders)")
        for seed_dir in seeds:
            if (seed_dir / target).is_file():
                found.append((seed_dir.name, seed_dir))
                continue
            inner = sorted(p for p in seed_dir.iterdir() if p.is_dir() and (p / target).is_file())
            if not inner:
                raise ReportError(f"{seed_dir}: no {target} in it or in its subfolders")
            found += [(seed_dir.name if len(inner) == 1 else f"{seed_dir.name}/{p.name}", p)
                      for p in inner]
    names = [name for name, _ in found]
    if len(set(names)) != len(names):  # same folder names from different parents
        found = [(str(p), p) for _, p in found]
    return found


def _run_meta(run_dir: Path) -> dict:
    meta: dict[str, Any] = {}
    run_json = run_dir / "run.json"
    if run_json.is_file():
        try:
            meta = json.loads(run_json.read_text())
        except json.JSONDecodeError as err:
            raise ReportError(f"{run_json}: not valid JSON ({err})") from err
    if "dataset" not in meta and (run_dir / "config.yaml").is_file():
        import yaml
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        if isinstance(config, dict) and "dataset" in config:
            meta["dataset"] = config["dataset"]
    return meta


def load_run(run_dir: str | Path, split: str = "test") -> dict:
    """Read a run's predictions: ``{"dataset", "labels", "y_true", "y_pred", "groups", "meta"}``.

    Labels come from ``run.json`` (class names in index order), else from the ``p_<class>``
    columns of the predictions file; the dataset from ``run.json`` or ``config.yaml``.
    """
    run_dir = Path(run_dir)
    path = run_dir / f"predictions_{split}.csv"
    if not path.is_file():
        raise ReportError(f"{run_dir}: no predictions file {path.name}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        missing = [c for c in ("dialogue_id", "label", "prediction") if c not in fields]
        if missing:
            raise ReportError(f"{path}: missing column(s) {missing}")
        rows = list(reader)
    meta = _run_meta(run_dir)
    labels = meta.get("labels") or [c[2:] for c in fields if c.startswith("p_")]
    if not labels:
        raise ReportError(f"{run_dir}: no class names (run.json has no 'labels' and {path.name} "
                          f"no p_<class> columns)")
    index = {name: i for i, name in enumerate(labels)}
    y_true, y_pred = [], []
    for line, row in enumerate(rows, start=2):
        for column, out in (("label", y_true), ("prediction", y_pred)):
            if row[column] not in index:
                raise ReportError(f"{path}, line {line}: {column} {row[column]!r} is not one of "
                                  f"the classes {labels}")
            out.append(index[row[column]])
    if not rows:
        raise ReportError(f"{path}: no predictions")
    return {"dataset": str(meta.get("dataset", "unknown")), "labels": list(labels),
            "y_true": y_true, "y_pred": y_pred, "groups": [row["dialogue_id"] for row in rows],
            "meta": meta}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="multiemo report",
        description="Re-score runs from their predictions_<split>.csv and print the per-class "
                    "table beside the paper's MultiEMO row (several runs: mean ± std).")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run folders, or folders holding seed-* run folders")
    parser.add_argument("--out", metavar="DIR", help="write summary.{md,json,csv} here (and, "
                        "for a single run, its full report with plots)")
    parser.add_argument("--split", default="test", help="predictions_<split>.csv to score "
                        "(default: test)")
    parser.add_argument("--n-resamples", type=int, default=1000,
                        help="bootstrap resamples for the weighted-F1 interval (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        runs = find_runs(args.runs, args.split)
        loaded = [load_run(path, args.split) for _, path in runs]
        names = [name for name, _ in runs]
        for (name, _), run in zip(runs[1:], loaded[1:]):
            for key in ("dataset", "labels"):
                if run[key] != loaded[0][key]:
                    raise ReportError(f"cannot report runs of different {key} together: "
                                      f"{names[0]} has {loaded[0][key]!r}, {name} has "
                                      f"{run[key]!r}")
        reports = []
        for (name, path), run in zip(runs, loaded):
            extra = {"run": name, "run_dir": str(path),
                     **{k: run["meta"][k] for k in ("seed", "best_epoch") if k in run["meta"]}}
            kwargs = dict(groups=run["groups"], split=args.split, extra=extra,
                          n_resamples=args.n_resamples, seed=args.seed)
            if args.out and len(runs) == 1:
                reports.append(write_report(args.out, run["y_true"], run["y_pred"],
                                            run["labels"], run["dataset"], **kwargs))
            else:
                reports.append(score_report(run["y_true"], run["y_pred"], run["labels"],
                                            run["dataset"], **kwargs))
    except ReportError as err:
        print(f"multiemo report: error: {err}", file=sys.stderr)
        return 1
    if len(reports) == 1:
        print(report_markdown(reports[0], names[0]))
    else:
        print(format_table(reports, names))
    if args.out:
        write_summary(args.out, reports, names)
        print(f"\nwrote {Path(args.out) / 'summary.md'} (and .json, .csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
