"""``multiemo predict``: per-utterance emotions of new conversations, as a resumable batch job.

    multiemo predict --model MODEL_DIR --input conversations.csv --out OUT [--media-root DIR]
                     [--shard K/N] [--merge] [--plots] [--device cuda] [--skip-bad-rows]

The input is a conversation file (``.csv`` / ``.jsonl``, :mod:`multiemo.data.conversations`;
labels optional) or a ``corpus.json``. For each of the model's modalities the extractor that made
its training features runs with the recorded settings (:class:`multiemo.recognizer.Recognizer`),
as a job of the shared runner (:mod:`feature_extraction.runner`: chunks, failure log, progress
bar, summary), then the model runs over whole dialogues. Layout::

    OUT/predict.json                    the job: model and input (with their sha256), shard count
    OUT/shards/s<K>of<N>/features/      the extraction jobs of shard K (resumable chunks, failure
                                        logs under <modality>.safetensors.work/)
    OUT/shards/s<K>of<N>/predictions.jsonl   shard K's predictions (appears whole, when done)
    OUT/shards/s<K>of<N>/summary.json   its counts and timings (extraction per modality, model)
    OUT/predictions.csv, predictions.jsonl   all utterances, in input order (after the merge)
    OUT/summary.json                    counts, absent modalities, timings, throughput
    OUT/report.{md,json,csv}, *.png     the per-class report, when the input has labels
    OUT/plots/dialogues/<i>_<id>.png    with --plots: each dialogue's emotional trajectory
    OUT/plots/label_distribution.png    with --plots: predicted (and gold) label counts

Shard ``K/N`` takes the dialogues ``i % N == K`` (whole dialogues: the model and the text context
need them). When the last shard finishes, it merges (or ``--merge`` does). A kill at any moment
loses at most the batch in flight; a rerun skips finished shards and finished chunks, so labelling
a million-utterance corpus on many machines is the same command as labelling one conversation.

A row per utterance: ``utterance_id, dialogue_id, position, speaker, label`` (the gold label, or
empty), ``prediction``, ``p_<class>`` for every class, ``present_<modality>`` (1/0), ``notes``
(which modality was missing and why: the utterance was predicted from the others).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from multiemo.data.atomic import atomic_write_text
from multiemo.data.corpus import Corpus
from multiemo.errors import UserError
from multiemo.recognizer import CONFIG_NAME, WEIGHTS_NAME, Recognizer, file_digest

__all__ = ["run_command", "predict_shard", "merge", "PredictError", "main"]

log = logging.getLogger("multiemo")
JOB_FORMAT = "multiemo-predict-job"


class PredictError(UserError):
    """A prediction job that cannot run or merge as asked; names the folder or file."""


def _shard_dir(out: Path, k: int, n: int) -> Path:
    return out / "shards" / f"s{k}of{n}"


def _init_job(out: Path, recognizer: Recognizer, input_path: Path, media_root: Path, n: int) -> None:
    """Write ``predict.json``, or check that the one there is this job."""
    job = {"format": JOB_FORMAT, "version": 1, "shards": n,
           "model": {"path": str(recognizer.folder.resolve()),
                     "sha256": {name: file_digest(recognizer.folder / name)
                                for name in (CONFIG_NAME, WEIGHTS_NAME)}},
           "input": {"path": str(input_path.resolve()), "sha256": file_digest(input_path)},
           "media_root": str(media_root.resolve())}
    path = out / "predict.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise PredictError(f"{path}: not a readable job file ({err}); delete {out} to start "
                               f"afresh") from None
        for key, what in (("model", "another model"), ("input", "another input file (or the file "
                          "changed)"), ("shards", "another shard count"), ("media_root", "another media root")):
            mine = job[key] if key != "model" else job[key]["sha256"]
            theirs = old.get(key) if key != "model" else (old.get(key) or {}).get("sha256")
            if mine != theirs:
                raise PredictError(f"{out} holds predictions of {what} ({key}: {theirs!r}, now "
                                   f"{mine!r}); write to another --out, or delete {out}")
        return
    atomic_write_text(path, json.dumps(job, indent=1) + "\n")


def _row(p) -> dict[str, Any]:
    return p.to_dict()


def predict_shard(recognizer: Recognizer, corpus: Corpus, out: Path, shard: tuple[int, int], *,
                  media_root: Path, plots: bool = False, progress: bool = True) -> dict[str, Any]:
    """Predict shard ``K/N`` of ``corpus`` into ``out/shards/s<K>of<N>/`` (skipped when done);
    returns its summary."""
    k, n = shard
    folder = _shard_dir(out, k, n)
    done = folder / "predictions.jsonl"
    if done.is_file():
        summary = json.loads((folder / "summary.json").read_text())
        print(f"predict shard {k}/{n}: already done ({summary['utterances']} utterances)",
              file=sys.stderr, flush=True)
        return summary
    picked = [(j, d) for j, d in enumerate(corpus.dialogues) if j % n == k]
    sub = Corpus(corpus.name, corpus.labels, tuple(d for _, d in picked), corpus.speaker_vocab,
                 corpus.info) if picked else None
    utterances = sum(len(d.utterances) for _, d in picked)
    log.info("predict shard %d/%d: %d dialogues, %d utterances; modalities %s", k, n, len(picked),
             utterances, "+".join(recognizer.modalities))
    timings: dict[str, float] = {}
    predictions = []
    if sub is not None:
        stores = recognizer.extract(sub, folder / "features", media_root=media_root,
                                    progress=progress, timings=timings)
        started = time.perf_counter()
        predictions = recognizer.classify(sub, stores)
        timings["model"] = time.perf_counter() - started
    if plots and picked:
        _plot_dialogues(out, recognizer, picked, predictions)
    absent = Counter(m for p in predictions for m, here in p.present.items() if not here)
    extraction = sum(v for key, v in timings.items() if key != "model")
    summary = {"shard": [k, n], "dialogues": len(picked), "utterances": utterances,
               "absent": dict(absent), "seconds": {key: round(v, 3) for key, v in timings.items()},
               "extraction_seconds": round(extraction, 3)}
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(done, "".join(json.dumps(_row(p), ensure_ascii=False) + "\n" for p in predictions))
    rate = utterances / (extraction + timings.get("model", 0.0)) if utterances and timings else 0.0
    print(f"predict shard {k}/{n}: {utterances} utterances in {len(picked)} dialogues; absent: "
          f"{dict(absent) or 'none'}; extraction {extraction:.1f} s, model "
          f"{timings.get('model', 0.0):.2f} s ({rate:.1f} utterances/s)", file=sys.stderr, flush=True)
    return summary


def _plot_dialogues(out: Path, recognizer: Recognizer, picked, predictions) -> None:
    import numpy as np

    from multiemo.trajectory import dialogue_plot_name, plot_dialogue
    log.info("writing %d emotion-trajectory plots to %s (about 0.15 s each)", len(picked),
             out / "plots" / "dialogues")
    by_dialogue: dict[str, list] = {}
    for p in predictions:
        by_dialogue.setdefault(p.dialogue_id, []).append(p)
    for j, d in picked:
        rows = by_dialogue[d.id]
        plot_dialogue(out / "plots" / "dialogues" / dialogue_plot_name(d.id, j), d.id,
                      recognizer.labels,
                      np.array([[r.probabilities[c] for c in recognizer.labels] for r in rows]),
                      [r.speaker for r in rows], gold=[r.label for r in rows],
                      predicted=[r.prediction for r in rows])


def _csv_text(rows: list[dict[str, Any]], labels: tuple[str, ...], modalities: tuple[str, ...]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["utterance_id", "dialogue_id", "position", "speaker", "label", "prediction",
                     *[f"p_{c}" for c in labels], *[f"present_{m}" for m in modalities], "notes"])
    for r in rows:
        writer.writerow([r["utterance_id"], r["dialogue_id"], r["position"], r["speaker"],
                         r["label"] or "", r["prediction"],
                         *[f"{r['probabilities'][c]:.6f}" for c in labels],
                         *[int(r["present"][m]) for m in modalities], "; ".join(r["notes"])])
    return text.getvalue()


def merge(out: Path, recognizer: Recognizer, corpus: Corpus, n: int, *, plots: bool = False) -> Path:
    """Join the shards' predictions in input order into ``OUT/predictions.{csv,jsonl}``, the
    summary, and (for labelled input) the report; returns the CSV."""
    missing = [k for k in range(n) if not (_shard_dir(out, k, n) / "predictions.jsonl").is_file()]
    if missing:
        raise PredictError(f"{out}: shard(s) {', '.join(f'{k}/{n}' for k in missing)} are not done "
                           f"yet; run them first (then --merge)")
    rows: dict[str, dict[str, Any]] = {}
    summaries = []
    for k in range(n):
        folder = _shard_dir(out, k, n)
        for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            rows[row["utterance_id"]] = row
        summaries.append(json.loads((folder / "summary.json").read_text()))
    ordered = []
    for u in corpus.utterances():
        if u.id not in rows:
            raise PredictError(f"{out}: no prediction for utterance {u.id!r} in the shards' files; "
                               f"delete {out / 'shards'} and rerun")
        ordered.append(rows[u.id])
    labels, modalities = recognizer.labels, recognizer.modalities
    atomic_write_text(out / "predictions.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    atomic_write_text(out / "predictions.csv", _csv_text(ordered, labels, modalities))

    seconds: Counter = Counter()
    for s in summaries:
        seconds.update(s["seconds"])
    extraction = sum(v for key, v in seconds.items() if key != "model")
    total = extraction + seconds.get("model", 0.0)
    counts = Counter(r["prediction"] for r in ordered)
    summary = {"utterances": len(ordered), "dialogues": len(corpus.dialogues), "shards": n,
               "model": str(recognizer.folder), "modalities": list(modalities),
               "predicted": {c: counts.get(c, 0) for c in labels},
               "present": {m: sum(r["present"][m] for r in ordered) for m in modalities},
               "with_notes": sum(1 for r in ordered if r["notes"]),
               "seconds": {key: round(v, 3) for key, v in seconds.items()},
               "utterances_per_second": round(len(ordered) / total, 2) if total else None}
    labelled = [r for r in ordered if r["label"] is not None]
    if labelled:
        from multiemo.report import write_report
        index = {c: i for i, c in enumerate(labels)}
        report = write_report(out, [index[r["label"]] for r in labelled],
                              [index[r["prediction"]] for r in labelled], labels,
                              # never a dataset's name: the paper's test row is not this input's
                              f"{corpus.name} (predict input)",
                              groups=[r["dialogue_id"] for r in labelled], split="input",
                              extra={"model": str(recognizer.folder),
                                     "labelled": len(labelled), "utterances": len(ordered)})
        summary["report"] = {"labelled_utterances": len(labelled),
                             "weighted_f1": report["scores"]["weighted_f1"]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    if plots:
        from multiemo.trajectory import plot_label_distribution
        gold = Counter(r["label"] for r in labelled)
        plot_label_distribution(out / "plots" / "label_distribution.png", labels,
                                [counts.get(c, 0) for c in labels],
                                [gold.get(c, 0) for c in labels] if labelled else None,
                                title=f"{corpus.name}: {len(ordered)} utterances")
    present = ", ".join(f"{m} {summary['present'][m]}/{len(ordered)}" for m in modalities)
    print(f"predictions of {len(ordered)} utterances in {len(corpus.dialogues)} dialogues → "
          f"{out / 'predictions.csv'} (present: {present}; {summary['with_notes']} with notes)"
          + (f"; weighted-F1 on the {len(labelled)} labelled utterances "
             f"{summary['report']['weighted_f1']:.2f} ({out / 'report.md'})" if labelled else ""),
          file=sys.stderr, flush=True)
    return out / "predictions.csv"


def run_command(args) -> int:
    """``multiemo predict`` (the options are declared in :mod:`multiemo.cli`)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    if args.shard is None and args.merge and (out / "predict.json").is_file():
        k, n = 0, int(json.loads((out / "predict.json").read_text()).get("shards", 1))
    else:
        k, n = args.shard or (0, 1)
    recognizer = Recognizer.from_pretrained(args.model, device=args.device)
    input_path = Path(args.input)
    corpus = recognizer.read(input_path, skip_bad_rows=args.skip_bad_rows)
    skipped = corpus.info.get("skipped")
    if skipped:
        log.warning("%s: skipped bad rows: %s", input_path, skipped)
    media_root = Path(args.media_root) if args.media_root else input_path.resolve().parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        _init_job(out, recognizer, input_path, media_root, n)
    except OSError as err:
        raise PredictError(f"cannot write the output folder {out}: {err.strerror or err}") from None
    if not args.merge:
        predict_shard(recognizer, corpus, out, (k, n), media_root=media_root, plots=args.plots,
                      progress=not args.no_progress)
    pending = [j for j in range(n) if not (_shard_dir(out, j, n) / "predictions.jsonl").is_file()]
    if pending and not args.merge:
        print(f"shard {k}/{n} done; waiting for shard(s) {pending} (the last one merges, or "
              f"--merge)", file=sys.stderr)
        return 0
    merge(out, recognizer, corpus, n, plots=args.plots)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``multiemo predict ...`` from Python."""
    from multiemo.cli import main as cli_main
    return cli_main(["predict", *(sys.argv[1:] if argv is None else argv)])
