"""The end of a sweep or study: the tables a paper needs, from run folders, and the plots.

Sweep: ``summary.{md,json,csv}`` hold the top-k trials (sampled values, validation score), the
chosen configuration's test table over ``final.seeds`` (per-class F1, mean ± std, beside the
paper's row), the base recipe's table over the same seeds, and a paired bootstrap test of the
chosen configuration against the base (over dialogues, mean over seeds on each side). PNGs:
``optimization_history.png``, ``param_importances.png``, ``slice.png`` (Optuna's matplotlib
plots). Study: one row per variant (per-class F1 and weighted-F1, mean ± std over seeds) and,
per variant, the paired test against the reference variant (per class and weighted-F1).
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from multiemo.data.atomic import atomic_write_text
from multiemo.report import (aggregate, column_order, compare_groups, format_comparison,
                             format_table, mean_std)
from multiemo.sweep.spec import SweepSpec

__all__ = ["trials_table", "write_sweep_summary", "write_study_summary", "write_plots"]


def trials_table(study: optuna.Study, spec: SweepSpec, k: int) -> tuple[str, list[dict]]:
    """Markdown of the top-``k`` completed trials by validation score, and their records."""
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                  key=lambda t: -t.value)[:k]
    records = [{"number": t.number, "value": t.value, "params": t.params,
                "epochs": len(t.intermediate_values)} for t in done]
    names = list(spec.space) if not spec.is_study else ["variant", "seed"]
    header = ["trial", f"valid {spec.objective}"] + names
    lines = ["| " + " | ".join(header) + " |", "| ---: | ---: |" + " --- |" * len(names)]
    for r in records:
        values = [_short(r["params"].get(n)) for n in names]
        lines.append(f"| {r['number']} | {r['value']:.2f} | " + " | ".join(values) + " |")
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    note = (f"{counts['complete']} completed, {counts['pruned']} pruned, {counts['fail']} failed "
            f"trials; scores in % on the validation split (the test split is read by no trial).")
    return "\n".join(lines) + "\n\n" + note, records


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _reports(folders: list[Path]) -> list[dict]:
    return [json.loads((f / "report.json").read_text()) for f in folders]


def write_sweep_summary(study_dir: Path, study: optuna.Study, spec: SweepSpec, best: optuna.trial.FrozenTrial,
                        final: list[Path], baseline: list[Path], info: dict) -> dict:
    top, records = trials_table(study, spec, spec.final.top_k)
    seeds = ", ".join(str(s) for s in spec.final.seeds)
    md = [f"# Sweep {study.study_name}", "", info["line"], "", "## Top trials (validation)", "", top, "",
          f"## Chosen configuration: trial {best.number}, scored on test with seeds {seeds}", "",
          "Overrides: `" + " ".join(info["chosen_overrides"]) + "`", "",
          format_table(_reports(final), [f"seed {s}" for s in spec.final.seeds]), ""]
    summary = {"format": "multiemo-sweep-summary", "version": 1, "study": study.study_name,
               "objective": spec.objective, "trials": records, "best_trial": best.number,
               "best_params": best.params, "best_validation": best.value, **info,
               "final": aggregate(_reports(final), [f"seed {s}" for s in spec.final.seeds])}
    if baseline:
        cmp = compare_groups(baseline, final, names=("base config", f"trial {best.number}"))
        md += ["## Base config (no sampled value), same seeds", "",
               format_table(_reports(baseline), [f"seed {s}" for s in spec.final.seeds]), "",
               "## Chosen against base: paired bootstrap on the test utterances", "",
               format_comparison(cmp), ""]
        summary["baseline"] = aggregate(_reports(baseline), [f"seed {s}" for s in spec.final.seeds])
        summary["comparison"] = cmp
    _write(study_dir, "\n".join(md), summary, _final_csv(summary))
    return summary


def write_study_summary(study_dir: Path, study: optuna.Study, spec: SweepSpec,
                        runs: dict[str, list[Path]], info: dict) -> dict:
    """One row per variant (mean ± std over its seeds) and the paired test against the reference."""
    reference = spec.study.reference
    missing = {v: len(spec.study.seeds) - len(r) for v, r in runs.items() if len(r) < len(spec.study.seeds)}
    rows, comparisons = {}, {}
    for variant, folders in runs.items():
        if folders:
            rows[variant] = aggregate(_reports(folders), [f.name for f in folders])
        if variant != reference and folders and runs.get(reference):
            comparisons[variant] = compare_groups(runs[reference], folders, names=(reference, variant))
    first = next(iter(rows.values()))
    dataset, labels = first["dataset"], first["labels"]
    order, columns = column_order(dataset, labels)
    header = ["variant", "n"] + columns + ["w-F1", f"Δ w-F1 vs {reference}", "p"]
    lines = ["| " + " | ".join(header) + " |", "| --- | ---: |" + " ---: |" * (len(header) - 2)]
    for variant, agg in rows.items():
        mean, std = agg["mean"], agg["std"]
        cells = [mean_std(mean["per_class_f1"][i], std["per_class_f1"][i]) for i in order]
        cmp = comparisons.get(variant)
        delta = "-" if cmp is None else f"{cmp['weighted_f1']['diff']:+.2f}"
        p = "-" if cmp is None else f"{cmp['weighted_f1']['p_value']:.4f}"
        lines.append(f"| {variant} | {agg['num_runs']} | " + " | ".join(cells)
                     + f" | {mean_std(mean['weighted_f1'], std['weighted_f1'])} | {delta} | {p} |")
    md = [f"# Study {study.study_name}", "", info["line"], "", "\n".join(lines), "",
          f"Test split, all in %, mean ± sample std over seeds {list(spec.study.seeds)}. Δ and p: paired "
          f"bootstrap over test dialogues of the variant's mean over seeds against {reference!r}'s "
          f"(10000 resamples, two-sided); per-class tests below and in summary.json.", ""]
    if missing:
        md += [f"**Missing runs** (failed trials): {missing}", ""]
    for variant, cmp in comparisons.items():
        md += [f"## {variant} against {reference}", "", format_comparison(cmp), ""]
    summary = {"format": "multiemo-study-summary", "version": 1, "study": study.study_name,
               "reference": reference, "seeds": list(spec.study.seeds), "variants": rows,
               "comparisons": comparisons, "missing_runs": missing, **info}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["variant", "n"] + [labels[i] for i in order] + ["weighted_f1", "weighted_f1_std",
                                                                     "delta_weighted_f1", "p_value"])
    for variant, agg in rows.items():
        cmp = comparisons.get(variant)
        writer.writerow([variant, agg["num_runs"]] + [agg["mean"]["per_class_f1"][i] for i in order]
                        + [agg["mean"]["weighted_f1"], agg["std"]["weighted_f1"],
                           "" if cmp is None else cmp["weighted_f1"]["diff"],
                           "" if cmp is None else cmp["weighted_f1"]["p_value"]])
    _write(study_dir, "\n".join(md), summary, buf.getvalue())
    return summary


def _final_csv(summary: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    labels = summary["final"]["labels"]
    writer.writerow(["row", "n"] + labels + ["weighted_f1", "macro_f1", "accuracy"])
    for name in ("final", "baseline"):
        if name in summary:
            agg = summary[name]
            for stat in ("mean", "std"):
                values = agg[stat]
                writer.writerow([f"{name} {stat}", agg["num_runs"]] + list(values["per_class_f1"])
                                + [values["weighted_f1"], values["macro_f1"], values["accuracy"]])
    return buf.getvalue()


def _write(study_dir: Path, md: str, summary: dict, csv_text: str) -> None:
    atomic_write_text(study_dir / "summary.md", md)
    atomic_write_text(study_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(study_dir / "summary.csv", csv_text)


def write_plots(study_dir: Path, study: optuna.Study) -> list[str]:
    """Optuna's optimisation history, parameter importances and slice plots as PNGs; returns
    the notes of the plots that could not be made (e.g. importances need two completed trials)."""
    from optuna.visualization import matplotlib as ovm

    from multiemo.plots import pyplot
    plt = pyplot()

    notes = []
    for name, plot in (("optimization_history", ovm.plot_optimization_history),
                       ("param_importances", ovm.plot_param_importances), ("slice", ovm.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study)
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
                figure.set_size_inches(max(6.0, figure.get_size_inches()[0]), 4.5)
                figure.tight_layout()
                figure.savefig(study_dir / f"{name}.png", dpi=100)
            plt.close(figure)
        except (ValueError, RuntimeError, ImportError) as err:
            notes.append(f"{name}.png not made: {err}")
    return notes

