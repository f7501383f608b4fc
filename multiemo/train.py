"""``multiemo train``: train MultiEMO on feature stores, select on validation, test once.

:func:`train` reads as the steps of the engine (:mod:`multiemo.engine`): open the run folder
(:func:`~multiemo.engine.opened_run`), fit on train and validation
(:func:`~multiemo.engine.fit`: the epochs, ``best.pt`` chosen on validation, ``last.pt`` for
resume, ``train.patience``), then score the best checkpoint on test once
(:func:`~multiemo.engine.test`). ``--resume RUN_DIR`` continues from ``last.pt`` to the same
result an uninterrupted run gives. ``--seeds`` trains one run per seed
(:func:`train_seeds`) and writes their mean ± std.

Run directory::

    config.yaml  run.json  metrics.jsonl  train.log
    checkpoints/best.pt  checkpoints/last.pt
    predictions_valid.csv  predictions_test.csv
    report.md  report.csv  report.json  confusion_matrix.png  per_class_f1.png
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from multiemo.config import SEED_MAX, Config, ConfigError, build, load, read_yaml, to_dict
from multiemo.engine import DataCache, Prepared, fit, opened_run, test
from multiemo.run import RunDir, RunError, SeedRuns
from multiemo.tracking import Tracker

__all__ = ["train", "train_seeds", "parse_seeds", "run_command"]

log = logging.getLogger("multiemo")


def train(cfg: Config, run_dir: str | Path, resume: bool = False, echo: bool = True,
          overrides: list[str] | None = None, data: Prepared | DataCache | None = None,
          tracker_group: str | None = None) -> dict:
    """Train one seed into ``run_dir`` (build → fit → test once); returns the test report.

    The log goes to ``run_dir/train.log`` and, with ``echo``, to the console when one is set up
    (:mod:`multiemo.logs`; the command line does). ``overrides`` are recorded in ``run.json``
    (and, on resume, in its list of resumes). ``data`` reuses already loaded stores (a sweep
    worker's cache).
    """
    with opened_run(cfg, run_dir, resume=resume, overrides=overrides, data=data, echo=echo) as (run, t):
        tracker = Tracker(cfg, run.path, tracker_group)
        try:
            result = fit(t, run, resume=resume, on_epoch=tracker.log_epoch)
        except KeyboardInterrupt:
            log.info("interrupted: finished epochs are kept; continue with "
                     "multiemo train --resume %s", run.path)
            raise
        report = test(t, run)
        tracker.finish(report, run.path)
        if result.stop_reason == "patience":
            stopped = (f"stopped at epoch {result.stopped_epoch} of at most {cfg.train.epochs} (no "
                       f"validation improvement for {result.stopped_epoch - result.best_epoch} epochs)")
        else:
            stopped = f"stopped at epoch {result.stopped_epoch} (train.epochs={cfg.train.epochs})"
        log.info("best epoch %d (validation %s %.2f); %s; test weighted-F1 %.2f\n%s", result.best_epoch,
                 result.metric, 100 * result.best_score, stopped, report["scores"]["weighted_f1"],
                 (run.path / "report.md").read_text())
    return report


# -- several seeds and the command line -----------------------------------------------------

def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` → ``[1, 2, 3]``; an empty list, a non-integer or a repeat is an error.

    >>> parse_seeds("7, 8")
    [7, 8]
    >>> parse_seeds("7,7")
    Traceback (most recent call last):
    ...
    multiemo.config.ConfigError: --seeds repeats 7: each seed is one run (a repeat would count one run twice in the mean ± std)
    """
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ConfigError(f"--seeds names no seed: {text!r}")
    for s in seeds:
        if not 0 <= s <= SEED_MAX:
            raise ConfigError(f"--seeds: each seed must be in [0, {SEED_MAX}], got {s}")
        if seeds.count(s) > 1:
            raise ConfigError(f"--seeds repeats {s}: each seed is one run (a repeat would count "
                              f"one run twice in the mean ± std)")
    return seeds


def train_seeds(cfg: Config, run_dir: Path, seeds: list[int], resume: bool = False,
                overrides: list[str] | None = None, data: Prepared | DataCache | None = None,
                echo: bool = True, tracker_group: str | None = None) -> dict:
    """One run per seed under ``run_dir/seed-<seed>``, then ``summary.{md,json,csv}``.

    The data is loaded once for all seeds. A finished seed is kept on resume.
    """
    from multiemo.report import format_table, write_summary

    runs = SeedRuns(run_dir)
    runs.write(seeds)
    data = data or DataCache()
    reports = []
    for seed in seeds:
        seed_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        seed_run = runs.run(seed)
        if resume and seed_run.finished() and (seed_run.path / "report.json").is_file():
            reports.append(json.loads((seed_run.path / "report.json").read_text()))
            continue
        reports.append(train(seed_cfg, seed_run.path, resume=resume and seed_run.exists(),
                             overrides=overrides, data=data, echo=echo, tracker_group=tracker_group))
    names = [f"seed {s}" for s in seeds]
    summary = write_summary(run_dir, reports, names)
    print(f"\n{len(seeds)} seeds ({', '.join(map(str, seeds))}), mean ± std:\n"
          f"{format_table(reports, names)}", flush=True)
    return summary


#: model fields that change no weight's shape (a resume may change them)
_SHAPELESS = ("dropout", "dropout_rec")


def _resume_config(run: RunDir, overrides: list[str]) -> Config:
    """The config ``run`` was started with, ``overrides`` applied. A resume whose overrides change
    the model (its sizes, modalities, context encoders) cannot load the checkpoint: refuse it,
    naming the overrides, before anything is touched."""
    saved = read_yaml(run.config)
    now = build(Config, saved, overrides, str(run.config))
    before, after = to_dict(build(Config, saved, None, str(run.config)).model), to_dict(now.model)
    changed = [f"model.{key}={after[key]} (was {before[key]})" for key in after
               if key not in _SHAPELESS and after[key] != before[key]]
    if changed:
        raise RunError(f"--resume {run.path}: {', '.join(changed)} would change the model's shapes, "
                       f"and its checkpoints hold the weights of the model it was started with; "
                       f"start a new run with --run-dir instead")
    return now


def run_command(args) -> int:
    """``multiemo train`` (the options are declared in :mod:`multiemo.cli`)."""
    if args.resume:
        if args.config or args.run_dir or args.seeds:
            raise ConfigError("--resume RUN_DIR continues a run with the config it was started "
                              "with: drop --config/--run-dir/--seeds (key=value overrides, such as "
                              "train.epochs=30, are applied and recorded)")
        run_dir = Path(args.resume)
        runs = SeedRuns(run_dir)
        if runs.exists():  # a multi-seed parent: its config is in the first seed's folder
            seeds = list(runs.seeds())
            first = runs.run(seeds[0]).require()
            cfg = _resume_config(first, args.overrides)
            train_seeds(cfg, run_dir, seeds, resume=True, overrides=args.overrides)
            return 0
        run = RunDir(run_dir).require()
        if not run.last.is_file():
            raise RunError(f"{run.last} does not exist: the run never finished an epoch; start it "
                           f"again with --run-dir (after removing {run.path})")
        cfg = _resume_config(run, args.overrides)
        train(cfg, run.path, resume=True, overrides=args.overrides)
        return 0
    if not args.run_dir:
        raise ConfigError("--run-dir is required (or --resume RUN_DIR)")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    cfg = load(Config, args.config, args.overrides)
    run_dir = Path(args.run_dir)
    if RunDir(run_dir).last.is_file() or SeedRuns(run_dir).exists():
        raise ConfigError(f"{run_dir} already holds a run: use --resume {run_dir} or another --run-dir")
    if seeds is not None:
        train_seeds(cfg, run_dir, seeds, overrides=args.overrides)
    else:
        train(cfg, run_dir, overrides=args.overrides)
    return 0

