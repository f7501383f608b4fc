"""Per-class reports of a run, and of several runs (mean ± std), beside the paper's numbers.

A report scores one split of one run: per-class F1 in the paper's column order (docs/method.md §1),
weighted-F1 (the headline metric), accuracy and macro-F1, all in **percent** with 2 decimals in
tables (the JSON keeps full precision, also in percent), and a 95% bootstrap interval of
weighted-F1 that resamples whole dialogues (utterances of one conversation are not
independent). :func:`write_report` writes ``report.md``, ``report.csv``, ``report.json``,
``confusion_matrix.png`` and ``per_class_f1.png``. :func:`aggregate` / :func:`format_table` /
:func:`write_summary` turn several runs (e.g. seeds) into one table of mean ± std, where std is
the *sample* standard deviation (``ddof=1``; undefined, shown as ``-``, for a single run).
:func:`compare_runs` / :func:`compare_groups` test one run (or the mean of several seeds) against
another on the same utterances, paired by id, with a paired bootstrap over dialogues;
:func:`format_comparison` puts the result in a table.

``multiemo report RUN_DIR [RUN_DIR ...]`` re-scores runs offline from their
``predictions_<split>.csv`` (no model needed); a folder holding ``seed-*`` subfolders stands for
all the runs inside them.

The paper row beside a run is the published row for the run's own modalities and ablation
(:func:`choose_paper_row`, from the tables of docs/method.md §7 in :data:`PAPER_ROWS`), named
with the table it comes from; a run that no published row matches gets none, and the report
says why.

>>> row = PAPER_ROWS["meld"]["tables"]["Table 2"]["rows"]["MultiEMO"]
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

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from multiemo.data.corpus import IEMOCAP_LABELS, MELD_LABELS, atomic_write_text
from multiemo.data.datasets import excluded_class_index, primary_metric
from multiemo.config import MODALITIES, LossConfig
from multiemo.errors import UserError
from multiemo.metrics import bootstrap_interval, classification_scores, paired_bootstrap
from multiemo.plots import pyplot

__all__ = ["PAPER_ROWS", "ReportError", "paper_row", "choose_paper_row", "score_report", "write_report", "summary_columns",
           "column_order", "report_markdown", "report_csv", "aggregate", "format_table", "write_summary",
           "load_run", "find_runs", "compare_groups", "compare_runs", "format_comparison",
           "run_command"]

REPORT_FORMAT = "multiemo-report"
REPORT_VERSION = 1
SUMMARY_COLUMNS = ("weighted_f1", "accuracy", "macro_f1")
_HEADERS = {"weighted_f1": "w-F1", "accuracy": "Acc", "macro_f1": "macro-F1", "micro_f1": "micro-F1"}


def summary_columns(dataset: str, labels: Sequence[str]) -> tuple[str, ...]:
    """The score columns of a report: the dataset's primary metric first (its papers' headline:
    weighted-F1, or DailyDialog's micro-F1 without "no emotion"), then the others.

    >>> summary_columns("dailydialog", ["no_emotion", "anger"])
    ('micro_f1', 'weighted_f1', 'accuracy', 'macro_f1')
    """
    columns = list(SUMMARY_COLUMNS)
    if excluded_class_index(dataset, labels) is not None:
        columns.append("micro_f1")
    primary = primary_metric(dataset)
    return tuple([primary] + [c for c in columns if c != primary])
_N = None  # "-" in the paper's tables: not reported
_CITE = "Shi & Huang, ACL 2023"


def _rows(*rows: tuple[str, list, float]) -> dict[str, dict]:
    return {name: {"per_class_f1": f1, "weighted_f1": w} for name, f1, w in rows}


# The published tables of docs/method.md §7, the one place the code holds them (per-class F1 in
# label-index order, then weighted-F1, in %). tests/test_metrics_report.py parses docs/method.md
# §7 and checks that the two agree.
PAPER_ROWS: dict[str, dict[str, Any]] = {
    "meld": {
        "labels": MELD_LABELS,
        "columns": ("Neutral", "Surprise", "Fear", "Sadness", "Joy", "Disgust", "Anger"),
        "tables": {
            "Table 2": {"caption": "MELD test", "rows": _rows(
                ("DialogueRNN", [76.23, 49.59, 0.00, 26.33, 54.55, 0.81, 46.76], 58.73),
                ("MMGCN", [_N] * 7, 58.65),
                ("UniMSE", [_N] * 7, 65.51),
                ("MultiEMO w/o VisExtNet", [79.16, 58.22, 24.80, 37.61, 60.65, 31.73, 52.08], 64.89),
                ("MultiEMO w/o MultiAttn", [77.72, 54.05, 21.76, 33.10, 58.28, 24.80, 49.98], 62.50),
                ("MultiEMO w/o SWFC", [79.51, 56.54, 20.59, 32.96, 58.52, 25.81, 51.23], 63.83),
                ("MultiEMO", [79.95, 60.98, 29.67, 41.51, 62.82, 36.75, 54.41], 66.74))},
            "Table 3": {"caption": "MultiEMO by modalities, MELD test weighted-F1", "rows": _rows(
                ("text", [_N] * 7, 61.23),
                ("audio", [_N] * 7, 33.55),
                ("visual", [_N] * 7, 33.16),
                ("text+audio", [_N] * 7, 64.21),
                ("text+visual", [_N] * 7, 63.78),
                ("text+audio+visual", [_N] * 7, 66.74))},
        },
    },
    "iemocap": {
        "labels": IEMOCAP_LABELS,
        "columns": ("Happiness", "Sadness", "Neutral", "Anger", "Excitement", "Frustration"),
        "tables": {
            "Table 1": {"caption": "IEMOCAP test", "rows": _rows(
                ("DialogueRNN", [33.18, 78.80, 59.21, 65.28, 71.86, 58.91], 62.75),
                ("MMGCN", [42.34, 78.67, 61.73, 69.00, 74.33, 62.32], 66.22),
                ("UniMSE", [_N] * 6, 70.66),
                ("MultiEMO w/o VisExtNet", [65.06, 84.80, 66.13, 67.98, 76.16, 69.66], 71.72),
                ("MultiEMO w/o MultiAttn", [55.18, 78.29, 62.06, 63.84, 73.11, 63.98], 66.57),
                ("MultiEMO w/o SWFC", [59.88, 83.96, 66.57, 67.03, 75.35, 70.04], 71.08),
                ("MultiEMO", [65.77, 85.49, 67.08, 69.88, 77.31, 70.98], 72.84))},
            "Table 3": {"caption": "MultiEMO by modalities, IEMOCAP test weighted-F1", "rows": _rows(
                ("text", [_N] * 6, 64.48),
                ("audio", [_N] * 6, 38.89),
                ("visual", [_N] * 6, 35.37),
                ("text+audio", [_N] * 6, 69.18),
                ("text+visual", [_N] * 6, 67.86),
                ("text+audio+visual", [_N] * 6, 72.84))},
        },
    },
}
_MODALITY_TABLE = "Table 3"  # the table of modality subsets; the other one holds the ablations


class ReportError(UserError):
    """A run or set of runs that cannot be reported as asked; names the folder or file."""


def _published(dataset: str, labels: Sequence[str]) -> dict | None:
    """The paper's tables of ``dataset`` (its :data:`PAPER_ROWS` entry), or None when it has
    none or ``labels`` is not its class set (in any order)."""
    tables = PAPER_ROWS.get(dataset.lower())
    if tables is None or sorted(labels) != sorted(tables["labels"]):
        return None
    return tables


def paper_row(dataset: str, labels: Sequence[str], model: str = "MultiEMO",
              table: str | None = None) -> dict | None:
    """The paper's row ``model`` (of ``table``, default the first table that has it) with
    per-class F1 in the order of ``labels``, or None.

    None when the dataset has no published table, ``labels`` is not its class set, or no table
    has the row.

    >>> row = paper_row("meld", MELD_LABELS, "text", "Table 3")
    >>> row["model"], row["table"], row["weighted_f1"], row["per_class_f1"][0]
    ('MultiEMO, text', 'Table 3', 61.23, None)
    """
    tables = _published(dataset, labels)
    if tables is None:
        return None
    name = next((t for t in ([table] if table else tables["tables"])
                 if model in tables["tables"].get(t, {}).get("rows", {})), None)
    if name is None:
        return None
    found = tables["tables"][name]
    row = found["rows"][model]
    by_name = dict(zip(tables["labels"], row["per_class_f1"]))
    return {"model": f"MultiEMO, {model}" if name == _MODALITY_TABLE else model,
            "table": name, "source": f"{_CITE}, {name} ({found['caption']})",
            "per_class_f1": [by_name[label] for label in labels],
            "weighted_f1": row["weighted_f1"]}


def choose_paper_row(dataset: str, labels: Sequence[str],
                     config: dict | None) -> tuple[dict | None, str]:
    """The published row that compares like with like with a run, and why (or why none).

    ``config`` is the run's resolved configuration as a plain dict (its ``config.yaml``); keys it
    lacks take the training config's defaults. The row follows the run's modalities and
    ablation (docs/method.md §7): all three modalities give MultiEMO, "w/o MultiAttn"
    (``model.fusion: concat``, or the older ``model.multiattn: false``) or "w/o SWFC"
    (``loss.swfc_weight: 0``) of the dataset's main table; a subset of the modalities with
    MultiAttn and SWFC gives its weighted-F1 row of Table 3. Nothing else has a published row.

    >>> choose_paper_row("meld", MELD_LABELS, {"model": {"modalities": ["text"]}})[0]["weighted_f1"]
    61.23
    >>> choose_paper_row("meld", MELD_LABELS, {"model": {"multiattn": False}})[0]["model"]
    'MultiEMO w/o MultiAttn'
    >>> choose_paper_row("meld", MELD_LABELS, {"model": {"modalities": ["audio", "visual"]}})[1]
    "the paper's Table 3 has no row for the modalities audio+visual"
    """
    if _published(dataset, labels) is None:
        return None, f"no published table for dataset {dataset!r} with these classes"
    if config is None:
        return None, ("the run's configuration is unknown (no config.yaml), so no row can be "
                      "matched to its modalities and ablation")
    model = config.get("model") or {}
    loss = config.get("loss") or {}
    modalities = [m for m in MODALITIES if m in model.get("modalities", MODALITIES)]
    fusion = model.get("fusion") or ("multiattn" if model.get("multiattn", True) else "concat")
    swfc = float(loss.get("swfc_weight", LossConfig.swfc_weight)) > 0
    subset = "+".join(modalities)
    if fusion not in ("multiattn", "concat"):
        return None, f"the paper has no row for model.fusion={fusion}"
    context = model.get("context")
    other = sorted({c for c in (context.values() if isinstance(context, dict) else [context])
                    if c not in (None, "dialoguernn")})
    if other:  # the paper's context encoder is DialogueRNN
        return None, f"the paper has no row for the context encoder {', '.join(other)} (model.context)"
    if model.get("classifier", "mlp") != "mlp":
        return None, f"the paper has no row for model.classifier={model['classifier']}"
    if len(modalities) == len(MODALITIES):
        name = {("multiattn", True): "MultiEMO", ("concat", True): "MultiEMO w/o MultiAttn",
                ("multiattn", False): "MultiEMO w/o SWFC"}.get((fusion, swfc))
        if name is None:
            return None, "the paper has no row without both MultiAttn and SWFC"
        how = "MultiAttn" if fusion == "multiattn" else "concatenation"
        return paper_row(dataset, labels, name), \
            f"{subset} with {how} fusion and SWFC " + ("on" if swfc else "off (loss.swfc_weight=0)")
    if (len(modalities) > 1 and fusion != "multiattn") or not swfc:
        what = "concat fusion" if fusion != "multiattn" else "no SWFC (loss.swfc_weight=0)"
        return None, f"the paper's Table 3 row for {subset} uses MultiAttn and SWFC; this run has {what}"
    row = paper_row(dataset, labels, subset, _MODALITY_TABLE)
    if row is None:
        return None, f"the paper's {_MODALITY_TABLE} has no row for the modalities {subset}"
    return row, f"{subset} alone (the paper gives weighted-F1 only)"


def column_order(dataset: str, labels: Sequence[str]) -> tuple[list[int], list[str]]:
    """Label indices in the paper's column order and their headers (label order otherwise).

    >>> column_order("mine", ["joy", "anger"])
    ([0, 1], ['Joy', 'Anger'])
    """
    table = _published(dataset, labels)
    if table is not None:
        order = [list(labels).index(name) for name in table["labels"]]
        return order, list(table["columns"])
    return list(range(len(labels))), [name.capitalize() for name in labels]


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.2f}"


def mean_std(mean: float, std: float | None) -> str:
    """A table cell: ``mean ± std`` with 2 decimals, the mean alone where std is undefined."""
    return _fmt(mean) if std is None else f"{mean:.2f} ± {std:.2f}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- one run ------------------------------------------------------------------------------------

def score_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str],
                 dataset: str, groups: Sequence | None = None, split: str = "test",
                 extra: dict | None = None, *, n_resamples: int = 1000, seed: int = 0,
                 config: dict | None = None) -> dict:
    """The report dict of :func:`write_report`, without writing anything."""
    labels = [str(name) for name in labels]
    exclude = excluded_class_index(dataset, labels)
    s = classification_scores(y_true, y_pred, len(labels), exclude)
    low, high = bootstrap_interval(y_true, y_pred, groups, n_resamples=n_resamples, seed=seed,
                                   num_classes=len(labels))
    num_dialogues = len({str(g) for g in groups}) if groups is not None else None
    paper, paper_note = choose_paper_row(dataset, labels, config)
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "unit": "percent",
        "dataset": dataset, "split": split, "labels": labels,
        "num_utterances": int(np.sum(s["support"])),
        "num_dialogues": num_dialogues,
        "scores": {"per_class_f1": [100 * f for f in s["per_class_f1"]],
                   "weighted_f1": 100 * s["weighted_f1"], "macro_f1": 100 * s["macro_f1"],
                   "accuracy": 100 * s["accuracy"], "support": s["support"],
                   **({"micro_f1": 100 * s["micro_f1"], "micro_f1_excludes": labels[exclude]}
                      if exclude is not None else {})},
        "weighted_f1_ci": {"low": 100 * low, "high": 100 * high, "confidence": 0.95,
                           "method": "percentile bootstrap", "n_resamples": n_resamples,
                           "seed": seed, "resampled": "dialogues" if groups is not None
                           else "utterances"},
        "confusion_matrix": s["confusion"],
        "paper": paper, "paper_note": paper_note,
        "extra": dict(extra or {}),
    }


def write_report(out_dir: str | Path, y_true: Sequence[int], y_pred: Sequence[int],
                 labels: Sequence[str], dataset: str, groups: Sequence | None = None,
                 split: str = "test", extra: dict | None = None, *, n_resamples: int = 1000,
                 seed: int = 0, config: dict | None = None) -> dict:
    """Score one split and write ``report.{md,csv,json}``, ``confusion_matrix.png`` and
    ``per_class_f1.png`` into ``out_dir``.

    Args:
        out_dir: folder to write into (created).
        y_true, y_pred: class indices into ``labels``.
        labels: class names in index order.
        dataset: ``meld`` / ``iemocap`` put the columns in the paper's order and a paper row
            beside ours (see ``config``); any other name reports in label order without one.
        groups: dialogue id per utterance; the bootstrap then resamples dialogues.
        split: name of the split, for titles.
        extra: anything to keep in the JSON under ``"extra"`` (run name, seed, best epoch...).
        n_resamples, seed: of the bootstrap.
        config: the run's resolved configuration (a plain dict, as in its ``config.yaml``):
            picks the paper row of the same modalities and ablation
            (:func:`choose_paper_row`); without it there is no paper row.

    Returns:
        The JSON dict (scores in percent).
    """
    report = score_report(y_true, y_pred, labels, dataset, groups, split, extra,
                          n_resamples=n_resamples, seed=seed, config=config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "report.md", report_markdown(report) + "\n")
    atomic_write_text(out / "report.csv", report_csv(report))
    _plot_confusion(report, out / "confusion_matrix.png")
    _plot_per_class(report, out / "per_class_f1.png")
    return report


def _row_cells(report: dict) -> list[str]:
    order, _ = column_order(report["dataset"], report["labels"])
    s = report["scores"]
    return [_fmt(s["per_class_f1"][i]) for i in order] + \
        [_fmt(s[c]) for c in summary_columns(report["dataset"], report["labels"])]


def _paper_name(row: dict) -> str:
    return f"{row['model']} (paper, {row['table']})"


def _paper_cells(row: dict | None, dataset: str, labels: Sequence[str]) -> tuple[str, list[str]] | None:
    """The paper row's name and table cells (weighted-F1 in its column, "-" elsewhere)."""
    if row is None:
        return None
    order, _ = column_order(dataset, labels)
    columns = summary_columns(dataset, labels)
    cells = [_fmt(row["per_class_f1"][i]) for i in order] + \
        [_fmt(row["weighted_f1"]) if c == "weighted_f1" else "-" for c in columns]
    return _paper_name(row), cells


def _paper_line(row: dict | None, note: str) -> str:
    """The sentence under a table that says where the paper row came from, or why there is none."""
    if row is None:
        return f"No paper row: {note}."
    return f"The paper's row is its reported test result, {row['source']}, for {note}."


def _report_paper(report: dict) -> tuple[dict | None, str]:
    """A report's paper row and note; a report.json from before rows followed the run's
    modalities has no note, and its row (always the full model's) is not trusted."""
    if "paper_note" not in report:
        return None, ("this report was written before the paper row followed the run's "
                      "modalities: rescore it with `multiemo report`")
    return report.get("paper"), report["paper_note"]


def _header(dataset: str, labels: Sequence[str]) -> list[str]:
    _, columns = column_order(dataset, labels)
    return ["run"] + columns + [_HEADERS[c] for c in summary_columns(dataset, labels)]


def report_markdown(report: dict, name: str = "ours") -> str:
    """The Markdown of one report: our row, the paper's row, the CI and the class counts."""
    dataset, labels = report["dataset"], report["labels"]
    rows = [[name] + _row_cells(report)]
    row, note = _report_paper(report)
    paper = _paper_cells(row, dataset, labels)
    if paper is not None:
        rows.append([paper[0]] + paper[1])
    order, columns = column_order(dataset, labels)
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
             "All scores in %. Per-class F1 and w-F1 (weighted-F1) as in the paper; Acc = "
             "accuracy; macro-F1 = unweighted mean of the per-class F1"
             + (f"; micro-F1 over every class but {report['scores']['micro_f1_excludes']!r} "
                "(the dataset's primary metric)" if "micro_f1" in report["scores"] else "")
             + f". Class counts: {support}."]
    lines.append(_paper_line(row, note))
    return "\n".join(lines)


def report_csv(report: dict, name: str = "ours") -> str:
    """CSV of one report: a header, our row, the paper's row (numbers in %, full precision)."""
    dataset, labels = report["dataset"], report["labels"]
    order, _ = column_order(dataset, labels)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    score_columns = summary_columns(dataset, labels)
    writer.writerow(["run"] + [labels[i] for i in order] + list(score_columns)
                    + ["weighted_f1_ci_low", "weighted_f1_ci_high"])
    s = report["scores"]
    ci = report["weighted_f1_ci"]
    writer.writerow([name] + [s["per_class_f1"][i] for i in order]
                    + [s[c] for c in score_columns] + [ci["low"], ci["high"]])
    paper, _ = _report_paper(report)
    if paper is not None:
        writer.writerow([_paper_name(paper)] + ["" if paper["per_class_f1"][i] is None
                                                 else paper["per_class_f1"][i] for i in order]
                        + [paper["weighted_f1"] if c == "weighted_f1" else "" for c in score_columns]
                        + ["", ""])
    return buf.getvalue()


def _plot_confusion(report: dict, path: Path) -> None:
    plt = pyplot()
    order, columns = column_order(report["dataset"], report["labels"])
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
    plt = pyplot()
    order, columns = column_order(report["dataset"], report["labels"])
    ours = [report["scores"]["per_class_f1"][i] for i in order]
    paper, _ = _report_paper(report)
    if paper is not None and all(v is None for v in paper["per_class_f1"]):
        paper = None  # a weighted-F1-only row (Table 3) has no bars to draw
    x = np.arange(len(order))
    width = 0.4 if paper else 0.7
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(order), 3.5))
    ax.bar(x - (width / 2 if paper else 0), ours, width, label="ours")
    if paper is not None:
        values = [paper["per_class_f1"][i] for i in order]
        ax.bar(x + width / 2, [np.nan if v is None else v for v in values], width,
               label=_paper_name(paper), color="tab:gray")
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
                    for c in summary_columns(reports[0]["dataset"], reports[0]["labels"])})
    n = len(reports)

    def std(values: np.ndarray) -> Any:
        if n < 2:
            return None if values.ndim == 1 else [None] * values.shape[1]
        out = values.std(axis=0, ddof=1)
        return out.tolist() if values.ndim > 1 else float(out)

    first = reports[0]
    papers = [_report_paper(r) for r in reports]
    paper, paper_note = papers[0]
    if any(p != papers[0] for p in papers[1:]):
        paper, paper_note = None, "the runs match different paper rows (their modalities or ablations differ)"
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
        "paper": paper, "paper_note": paper_note,
    }


def format_table(reports: Sequence[dict], names: Sequence[str] | None = None) -> str:
    """Markdown: one row per run, then ``mean ± std (n=K)``, then the runs' paper row (if any)."""
    summary = aggregate(reports, names)
    dataset, labels = summary["dataset"], summary["labels"]
    order, _ = column_order(dataset, labels)
    rows = [[name] + _row_cells(r) for name, r in zip(summary["runs"], reports)]

    mean, sd = summary["mean"], summary["std"]
    rows.append([f"mean ± std (n={summary['num_runs']})"]
                + [mean_std(mean["per_class_f1"][i], sd["per_class_f1"][i]) for i in order]
                + [mean_std(mean[c], sd[c]) for c in summary_columns(dataset, labels)])
    paper = _paper_cells(summary["paper"], dataset, labels)
    if paper is not None:
        rows.append([paper[0]] + paper[1])
    note = (f"{dataset} {summary['split']} split, {summary['num_runs']} run(s); all in %; "
            f"std is the sample standard deviation (ddof=1) over runs"
            + ("" if summary["num_runs"] > 1 else ", undefined for one run") + ". "
            + _paper_line(summary["paper"], summary["paper_note"]))
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
    order, _ = column_order(summary["dataset"], summary["labels"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    score_columns = summary_columns(summary["dataset"], summary["labels"])
    writer.writerow(["run"] + [summary["labels"][i] for i in order] + list(score_columns))
    per_run = summary["per_run"]
    for k, name in enumerate(summary["runs"]):
        writer.writerow([name] + [per_run["per_class_f1"][k][i] for i in order]
                        + [per_run[c][k] for c in score_columns])
    for stat in ("mean", "std"):
        values = summary[stat]
        writer.writerow([stat] + ["" if values["per_class_f1"][i] is None
                                  else values["per_class_f1"][i] for i in order]
                        + ["" if values[c] is None else values[c] for c in score_columns])
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


def _run_meta(run_dir: Path, config: dict | None) -> dict:
    """The run's record (``run.json``), its dataset taken from ``config`` (the run's
    ``config.yaml``, see :func:`_run_config`) where the record has none."""
    from multiemo.run import RunDir  # the run record's one reader (any version of run.json)

    run = RunDir(run_dir)
    meta: dict[str, Any] = run.record().to_json() if run.has_record() else {}
    if "dataset" not in meta and config is not None and "dataset" in config:
        meta["dataset"] = config["dataset"]
    return meta


def load_run(run_dir: str | Path, split: str = "test") -> dict:
    """Read a run's predictions: ``{"dataset", "labels", "y_true", "y_pred", "groups", "ids",
    "meta", "config"}``.

    ``ids`` are the utterance ids (the ``utterance_id`` column), None when the file has none;
    ``config`` is the run's ``config.yaml`` as a dict (None without one, see :func:`_run_config`).
    Labels come from ``run.json`` (class names in index order), else from the ``p_<class>``
    columns of the predictions file; the dataset from ``run.json`` or ``config.yaml``.
    """
    run_dir = Path(run_dir)
    path = run_dir / f"predictions_{split}.csv"
    if not path.is_file():
        raise ReportError(f"{run_dir}: no predictions file {path.name}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            missing = [c for c in ("dialogue_id", "label", "prediction") if c not in fields]
            if missing:
                raise ReportError(f"{path}: missing column(s) {missing}")
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise ReportError(f"{path}: not UTF-8 text (byte {err.start}): predictions files are "
                          f"written as UTF-8") from None
    config = _run_config(run_dir)
    meta = _run_meta(run_dir, config)
    _check_against_record(path, rows, meta, split)
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
            "ids": [row["utterance_id"] for row in rows] if "utterance_id" in fields else None,
            "meta": meta, "config": config}


def _run_config(run_dir: Path) -> dict | None:
    """The run's resolved ``config.yaml`` as a dict (None when it has none): it decides which
    paper row the report prints."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    import yaml
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not a readable YAML file ({err})") from None
    return config if isinstance(config, dict) else None


def _check_against_record(path: Path, rows: list[dict], meta: dict, split: str) -> None:
    """A predictions file must hold every utterance the run recorded for the split, once each:
    a report of part of a split is refused, not scored."""
    ids = [row.get("utterance_id") for row in rows]
    if ids and None not in ids and len(set(ids)) != len(ids):
        seen: set = set()
        dup = next(uid for uid in ids if uid in seen or seen.add(uid))
        raise ReportError(f"{path}: utterance {dup!r} is predicted more than once")
    expected = (meta.get("num_utterances") or {}).get(split)
    if expected is not None and expected != len(rows):
        raise ReportError(f"{path} has {len(rows)} predictions but the run recorded {expected} "
                          f"{split} utterances (run.json): refusing to score part of a split")


# -- comparing runs -----------------------------------------------------------------------------

def _run_ids(run: dict, name: str) -> dict[str, int]:
    """Row index of every utterance id of a loaded run."""
    if run["ids"] is None:
        raise ReportError(f"{name}: its predictions have no utterance_id column, so they cannot "
                          f"be paired with another run's")
    return {uid: i for i, uid in enumerate(run["ids"])}  # unique: load_run refuses repeats


def _align(run: dict, name: str, ref: dict, ref_name: str) -> np.ndarray:
    """``run``'s predictions in ``ref``'s row order and label indices, after checking both runs
    score the same dataset, classes, utterances, gold labels and dialogues."""
    if run["dataset"] != ref["dataset"]:
        raise ReportError(f"cannot compare runs of different datasets: {ref_name} has "
                          f"{ref['dataset']!r}, {name} has {run['dataset']!r}")
    if sorted(run["labels"]) != sorted(ref["labels"]):
        raise ReportError(f"cannot compare runs with different classes: {ref_name} has "
                          f"{ref['labels']}, {name} has {run['labels']}")
    ref_ids, ids = _run_ids(ref, ref_name), _run_ids(run, name)
    if ids.keys() != ref_ids.keys():
        parts = [f"{len(only)} only in {who} (e.g. {sorted(only)[0]!r})"
                 for only, who in ((ref_ids.keys() - ids.keys(), ref_name),
                                   (ids.keys() - ref_ids.keys(), name)) if only]
        raise ReportError(f"{ref_name} and {name} do not cover the same utterances: "
                          + ", ".join(parts))
    rows = np.array([ids[uid] for uid in ref["ids"]])
    to_ref = np.array([ref["labels"].index(label) for label in run["labels"]])
    for key, mine, theirs in (("gold label", to_ref[np.asarray(run["y_true"])[rows]],
                               np.asarray(ref["y_true"])),
                              ("dialogue", np.asarray(run["groups"])[rows],
                               np.asarray(ref["groups"]))):
        differ = np.flatnonzero(mine != theirs)
        if differ.size:
            raise ReportError(f"{ref_name} and {name} disagree on the {key} of {differ.size} "
                              f"utterance(s) (e.g. {ref['ids'][differ[0]]!r})")
    return to_ref[np.asarray(run["y_pred"])[rows]]


def _group_name(paths: Sequence[str | Path]) -> str:
    """A run's folder name, or the common folder of several runs and their number."""
    resolved = [str(Path(p).resolve()) for p in paths]
    if len(resolved) == 1:
        return Path(resolved[0]).name
    return f"{Path(os.path.commonpath(resolved)).name or 'runs'} (n={len(resolved)})"


def compare_groups(runs_a: Sequence[str | Path], runs_b: Sequence[str | Path],
                   split: str = "test", n_resamples: int = 10000, seed: int = 0, *,
                   names: tuple[str, str] | None = None) -> dict:
    """Paired bootstrap test of runs B against runs A on the same utterances (e.g. seeds of a
    variant against seeds of a reference), in percent.

    Predictions are paired by utterance id (row order does not matter). Each side's score is the
    mean over its runs of each metric (per-class F1, weighted-F1), recomputed on every resample
    of the dialogues; see :func:`multiemo.metrics.paired_bootstrap`.

    Args:
        runs_a, runs_b: run folders (each with ``predictions_<split>.csv``), at least one a side.
        split: which predictions to compare.
        n_resamples, seed: of the bootstrap.
        names: the two sides' names; default their folder names (several runs: the folder they
            share and their number).

    Returns:
        ``{"format", "version", "unit", "dataset", "split", "labels", "name_a", "name_b",
        "runs_a", "runs_b", "num_utterances", "num_dialogues", "weighted_f1": {"a", "b",
        "diff", "ci_low", "ci_high", "p_value"}, "per_class_f1": {the same, lists in label
        order}, "test": {...}}``: scores, ``diff`` (B - A) and its interval in %, p-values as
        fractions.

    Raises:
        ReportError: a side without runs, a run that cannot be read, or runs that differ in
            dataset, classes, utterance ids, gold labels or dialogues (naming both runs).
    """
    if not runs_a or not runs_b:
        raise ReportError(f"need at least one run a side, got {len(runs_a)} and {len(runs_b)}")
    paths = [str(p) for p in list(runs_a) + list(runs_b)]
    loaded = [load_run(path, split) for path in paths]
    ref, ref_name = loaded[0], paths[0]
    preds = [_align(run, name, ref, ref_name) for run, name in zip(loaded, paths)]
    n_a = len(runs_a)
    test = paired_bootstrap(ref["y_true"], np.stack(preds[:n_a]), np.stack(preds[n_a:]),
                            ref["groups"], num_classes=len(ref["labels"]),
                            n_resamples=n_resamples, seed=seed)

    def percent(scores: dict) -> dict:
        return {key: value if key == "p_value" else
                ([100 * v for v in value] if isinstance(value, list) else 100 * value)
                for key, value in scores.items()}

    name_a, name_b = names if names is not None else (_group_name(runs_a), _group_name(runs_b))
    return {
        "format": "multiemo-comparison", "version": 1, "unit": "percent",
        "dataset": ref["dataset"], "split": split, "labels": list(ref["labels"]),
        "name_a": name_a, "name_b": name_b, "runs_a": paths[:n_a], "runs_b": paths[n_a:],
        "num_utterances": len(ref["y_true"]), "num_dialogues": test["num_units"],
        "weighted_f1": percent(test["weighted_f1"]),
        "per_class_f1": percent(test["per_class_f1"]),
        "test": {"method": "paired bootstrap", "resampled": "dialogues",
                 "alternative": "two-sided", "n_resamples": test["n_resamples"],
                 "seed": seed, "confidence": test["confidence"],
                 "p_value": "(1 + #{|d* - d| >= |d|}) / (1 + R)",
                 "runs_averaged": [test["runs_a"], test["runs_b"]]},
    }


def compare_runs(run_a: str | Path, run_b: str | Path, split: str = "test",
                 n_resamples: int = 10000, seed: int = 0) -> dict:
    """Paired bootstrap test of run B against run A: :func:`compare_groups` with one run a
    side (same dict, in percent)."""
    return compare_groups([run_a], [run_b], split, n_resamples, seed)


def _fmt_p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def format_comparison(cmp: dict) -> str:
    """Markdown of a :func:`compare_runs` / :func:`compare_groups` dict: rows A, B, the
    difference B - A with its interval, and the p-value; columns per-class F1 in the paper's
    order, then weighted-F1; then a line saying how the test was made."""
    order, columns = column_order(cmp["dataset"], cmp["labels"])

    def values(key: str) -> list[float]:  # per-class in column order, then weighted-F1
        return [cmp["per_class_f1"][key][i] for i in order] + [cmp["weighted_f1"][key]]

    test = cmp["test"]
    confidence = int(round(100 * test["confidence"]))
    rows = [[f"A: {cmp['name_a']}"] + [_fmt(v) for v in values("a")],
            [f"B: {cmp['name_b']}"] + [_fmt(v) for v in values("b")],
            [f"B − A ({confidence}% CI)"]
            + [f"{d:+.2f} [{low:+.2f}, {high:+.2f}]"
               for d, low, high in zip(values("diff"), values("ci_low"), values("ci_high"))],
            ["p (two-sided)"] + [_fmt_p(v) for v in values("p_value")]]
    averaged = test.get("runs_averaged", [1, 1])
    means = ("" if averaged == [1, 1] else
             f"; each side is the mean over its runs (A {averaged[0]}, B {averaged[1]}), "
             f"recomputed on every resample")
    note = (f"{cmp['dataset']} {cmp['split']} split, {cmp['num_utterances']} utterances in "
            f"{cmp['num_dialogues']} dialogues; F1 in %. Paired bootstrap over dialogues "
            f"({test['n_resamples']} resamples, seed {test['seed']}): both sides are scored on "
            f"the same resampled dialogues{means}; {confidence}% percentile interval of the "
            f"difference d = B − A, two-sided p = (1 + #{{|d* − d| ≥ |d|}}) / (1 + R) for "
            f"no difference.")
    return _markdown(["run"] + columns + [_HEADERS["weighted_f1"]], rows) + "\n\n" + note


def run_command(args) -> int:
    """``multiemo report`` (the options are declared in :mod:`multiemo.cli`)."""
    if args.out:
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ReportError(f"cannot write the output folder {args.out}: {err.strerror or err}") from None
    if args.compare:
        if args.runs:
            raise ReportError("--compare RUN_A RUN_B takes no other run folders")
        a, b = ([path for _, path in find_runs([x], args.split)] for x in args.compare)
        cmp = compare_groups(a, b, args.split, n_resamples=args.n_resamples or 10000, seed=args.seed,
                             names=list(args.compare))
        text = format_comparison(cmp)
        print(text)
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "compare.md", text + "\n")
            atomic_write_text(out / "compare.json", json.dumps(cmp, indent=1) + "\n")
            print(f"\nwrote {out / 'compare.md'} (and .json)")
        return 0
    if not args.runs:
        raise ReportError("name at least one run folder (or --compare RUN_A RUN_B)")
    runs = find_runs(args.runs, args.split)
    loaded = [load_run(path, args.split) for _, path in runs]
    names = [name for name, _ in runs]
    for (name, _), run in zip(runs[1:], loaded[1:]):
        for key in ("dataset", "labels"):
            if run[key] != loaded[0][key]:
                raise ReportError(f"cannot report runs of different {key} together: "
                                  f"{names[0]} has {loaded[0][key]!r}, {name} has {run[key]!r}")
    reports = []
    for (name, path), run in zip(runs, loaded):
        extra = {"run": name, "run_dir": str(path),
                 **{k: run["meta"][k] for k in ("seed", "best_epoch") if k in run["meta"]}}
        kwargs = dict(groups=run["groups"], split=args.split, extra=extra,
                      n_resamples=args.n_resamples or 1000, seed=args.seed,
                      config=run["config"])
        if args.out and len(runs) == 1:
            reports.append(write_report(args.out, run["y_true"], run["y_pred"],
                                        run["labels"], run["dataset"], **kwargs))
        else:
            reports.append(score_report(run["y_true"], run["y_pred"], run["labels"],
                                        run["dataset"], **kwargs))
    if len(reports) == 1:
        print(report_markdown(reports[0], names[0]))
    else:
        print(format_table(reports, names))
    if args.out:
        write_summary(args.out, reports, names)
        print(f"\nwrote {Path(args.out) / 'summary.md'} (and .json, .csv)")
    return 0
