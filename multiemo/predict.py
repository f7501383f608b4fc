"""``multiemo predict``: per-utterance emotions of new conversations, as a resumable batch job.

    multiemo predict --model MODEL_DIR --input conversations.csv --out OUT [--media-root DIR]
                     [--shard K/N] [--merge] [--plots] [--device cuda] [--threads N]
                     [--skip-bad-rows]

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
need them; the runner's :func:`~feature_extraction.runner.shard_items`). ``predict.json`` is
checked by :func:`multiemo.jobs.check_job_identity`, as an extraction's
``job.json``; each shard's extraction is a runner job (chunks, failure log, resume). What is
predict's own: a shard's ``predictions.jsonl`` (the model's rows for whole dialogues, with their
notes, not one vector per item as in the runner's chunks) and the merge of those rows in input
order. When the last shard finishes, it merges (or ``--merge`` does). A kill at any moment
loses at most the batch in flight; a rerun skips finished shards and finished chunks, so labelling
a million-utterance corpus on many machines is the same command as labelling one conversation.

A row per utterance: ``utterance_id, dialogue_id, position, speaker, label`` (the gold label, or
empty), ``prediction``, ``p_<class>`` for every class, ``present_<modality>`` (1/0), ``notes``
(which modality was missing and why: the utterance was predicted from the others).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from feature_extraction.runner import shard_items
from multiemo.data.atomic import atomic_path, atomic_write_text
from multiemo.data.corpus import Corpus
from multiemo.errors import UserError
from multiemo.jobs import check_job_identity
from multiemo.recognizer import CONFIG_NAME, WEIGHTS_NAME, Recognizer, file_digest

__all__ = ["run_command", "predict_shard", "merge", "PredictError"]

log = logging.getLogger("multiemo")
JOB_FORMAT = "multiemo-predict-job"


class PredictError(UserError):
    """A prediction job that cannot run or merge as asked; names the folder or file."""


def _shard_dir(out: Path, k: int, n: int) -> Path:
    return out / "shards" / f"s{k}of{n}"


def _claim_out(out: Path, recognizer: Recognizer, input_path: Path, media_root: Path, n: int) -> None:
    """Write ``predict.json``, or check that the one there is this job (the runner's identity
    check: another model, input, shard count or media root is refused)."""
    # the model is known by its files' digests (a copy of the folder elsewhere is the same model)
    identity = {"shards": n,
                "model": {name: file_digest(recognizer.folder / name) for name in (CONFIG_NAME, WEIGHTS_NAME)},
                "input": {"path": str(input_path.resolve()), "sha256": file_digest(input_path)},
                "media_root": str(media_root.resolve())}
    check_job_identity(out / "predict.json", identity, kind="prediction job", fmt=JOB_FORMAT,
                       create={"version": 1, "model_path": str(recognizer.folder.resolve())},
                       names={"model": "another model", "shards": "another shard count",
                              "input": "another input file (or the file changed)",
                              "media_root": "another media root"},
                       remedy=f"write to another --out, or delete {out}", error=PredictError)


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
    picked = shard_items(list(enumerate(corpus.dialogues)), shard)  # whole dialogues
    sub = Corpus(corpus.name, corpus.labels, tuple(d for _, d in picked), corpus.speaker_vocab,
                 corpus.info) if picked else None
    utterances = sum(len(d.utterances) for _, d in picked)
    log.info("predict shard %d/%d: %d dialogues, %d utterances; modalities %s", k, n, len(picked),
             utterances, "+".join(recognizer.modalities))
    timings: dict[str, float] = {}
    predictions = []
    if sub is not None:
        stores = recognizer.extract(sub, folder / "features", media_root=media_root,
                                    progress=progress, report=True, timings=timings)
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
    with atomic_path(done) as tmp, open(tmp, "w", encoding="utf-8") as fh:  # appears whole, last
        for p in predictions:
            fh.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
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


def _csv_header(labels: tuple[str, ...], modalities: tuple[str, ...]) -> list[str]:
    return ["utterance_id", "dialogue_id", "position", "speaker", "label", "prediction",
            *[f"p_{c}" for c in labels], *[f"present_{m}" for m in modalities], "notes"]


def _csv_row(r: dict[str, Any], labels: tuple[str, ...], modalities: tuple[str, ...]) -> list:
    return [r["utterance_id"], r["dialogue_id"], r["position"], r["speaker"], r["label"] or "",
            r["prediction"], *[f"{r['probabilities'][c]:.6f}" for c in labels],
            *[int(r["present"][m]) for m in modalities], "; ".join(r["notes"])]


def merge(out: Path, recognizer: Recognizer, corpus: Corpus, n: int, *, plots: bool = False) -> Path:
    """Join the shards' predictions in input order into ``OUT/predictions.{csv,jsonl}``, the
    summary, and (for labelled input) the report; returns the CSV.

    The shards' files are read in step, a line at a time (shard ``K`` holds the dialogues
    ``i % N == K`` in input order), and the outputs written as they go: memory does not grow
    with the corpus, beyond the labels the report needs.
    """
    missing = [k for k in range(n) if not (_shard_dir(out, k, n) / "predictions.jsonl").is_file()]
    if missing:
        raise PredictError(f"{out}: shard(s) {', '.join(f'{k}/{n}' for k in missing)} are not done "
                           f"yet; run them first (then --merge)")
    labels, modalities = recognizer.labels, recognizer.modalities
    index = {c: i for i, c in enumerate(labels)}
    counts: Counter = Counter()
    present: Counter = Counter()
    with_notes = total = 0
    gold, predicted, groups = [], [], []
    files = [(_shard_dir(out, k, n) / "predictions.jsonl").open(encoding="utf-8") for k in range(n)]
    try:
        with atomic_path(out / "predictions.jsonl") as tmp_jsonl, \
                atomic_path(out / "predictions.csv") as tmp_csv, \
                open(tmp_jsonl, "w", encoding="utf-8") as jsonl, \
                open(tmp_csv, "w", encoding="utf-8", newline="") as csv_file:
            writer = csv.writer(csv_file, lineterminator="\n")
            writer.writerow(_csv_header(labels, modalities))
            for j, d in enumerate(corpus.dialogues):
                shard = files[j % n]
                for u in d.utterances:
                    line = shard.readline()
                    row = json.loads(line) if line.strip() else None
                    if row is None or row.get("utterance_id") != u.id:
                        raise PredictError(
                            f"{shard.name}: expected the prediction of utterance {u.id!r} (dialogue "
                            f"{d.id!r}), found {None if row is None else row.get('utterance_id')!r}; "
                            f"delete {out / 'shards'} and rerun")
                    jsonl.write(line if line.endswith("\n") else line + "\n")
                    writer.writerow(_csv_row(row, labels, modalities))
                    total += 1
                    counts[row["prediction"]] += 1
                    present.update(m for m in modalities if row["present"][m])
                    with_notes += bool(row["notes"])
                    if row["label"] is not None:
                        gold.append(index[row["label"]])
                        predicted.append(index[row["prediction"]])
                        groups.append(row["dialogue_id"])
            extra = [f.name for f in files if f.readline().strip()]
            if extra:
                raise PredictError(f"{extra[0]}: more predictions than the input has utterances; "
                                   f"delete {out / 'shards'} and rerun")
    finally:
        for f in files:
            f.close()

    seconds: Counter = Counter()
    for k in range(n):
        seconds.update(json.loads((_shard_dir(out, k, n) / "summary.json").read_text())["seconds"])
    elapsed = sum(seconds.values())
    summary = {"utterances": total, "dialogues": len(corpus.dialogues), "shards": n,
               "model": str(recognizer.folder), "modalities": list(modalities),
               "predicted": {c: counts.get(c, 0) for c in labels},
               "present": {m: present.get(m, 0) for m in modalities},
               "with_notes": with_notes,
               "seconds": {key: round(v, 3) for key, v in seconds.items()},
               "utterances_per_second": round(total / elapsed, 2) if elapsed else None}
    if gold:
        from multiemo.report import write_report
        report = write_report(out, gold, predicted, labels,
                              # never a dataset's name: the paper's test row is not this input's
                              f"{corpus.name} (predict input)", groups=groups, split="input",
                              extra={"model": str(recognizer.folder), "labelled": len(gold),
                                     "utterances": total})
        summary["report"] = {"labelled_utterances": len(gold),
                             "weighted_f1": report["scores"]["weighted_f1"]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    if plots:
        from multiemo.trajectory import plot_label_distribution
        gold_counts = Counter(gold)
        plot_label_distribution(out / "plots" / "label_distribution.png", labels,
                                [counts.get(c, 0) for c in labels],
                                [gold_counts.get(i, 0) for i in range(len(labels))] if gold else None,
                                title=f"{corpus.name}: {total} utterances")
    shown = ", ".join(f"{m} {summary['present'][m]}/{total}" for m in modalities)
    print(f"predictions of {total} utterances in {len(corpus.dialogues)} dialogues → "
          f"{out / 'predictions.csv'} (present: {shown}; {with_notes} with notes)"
          + (f"; weighted-F1 on the {len(gold)} labelled utterances "
             f"{summary['report']['weighted_f1']:.2f} ({out / 'report.md'})" if gold else ""),
          file=sys.stderr, flush=True)
    return out / "predictions.csv"


def run_command(args) -> int:
    """``multiemo predict`` (the options are declared in :mod:`multiemo.cli`)."""
    out = Path(args.out)
    recorded = None
    if args.shard is None and args.merge:  # the shard count of the job there (nothing compared)
        recorded = check_job_identity(out / "predict.json", {}, kind="prediction job",
                                      fmt=JOB_FORMAT, remedy=f"delete {out} and rerun the shards",
                                      error=PredictError)
    if recorded is not None:
        k, n = 0, int(recorded.get("shards", 1))
    else:
        k, n = args.shard or (0, 1)
    recognizer = Recognizer.from_pretrained(args.model, device=args.device,
                                            num_threads=getattr(args, "threads", 0))
    input_path = Path(args.input)
    corpus = recognizer.read(input_path, skip_bad_rows=args.skip_bad_rows)
    skipped = corpus.info.get("skipped")
    if skipped:
        log.warning("%s: skipped bad rows: %s", input_path, skipped)
    media_root = Path(args.media_root) if args.media_root else input_path.resolve().parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        _claim_out(out, recognizer, input_path, media_root, n)
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
