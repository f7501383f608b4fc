"""``multiemo sweep``: run a sweep or a study, resume it, and end with its summary.

    multiemo sweep --config configs/sweeps/meld.yaml --study-dir studies/meld data.root=data/meld
    multiemo sweep --config configs/sweeps/meld.yaml --study-dir studies/meld --workers 2
    multiemo sweep --config configs/studies/paper_tables_meld.yaml --study-dir studies/tables

The command is its own resume: rerun it after a crash, a SIGKILL or Ctrl-C and the study goes on
(finished trials kept, the trials of dead workers failed and queued again) until it holds the
number of trials asked for; then the chosen configuration is trained with ``final.seeds`` and
scored on test (each seed once), and ``STUDY_DIR/summary.{md,json,csv}`` and the plots are
written. The same command on another machine with the same storage joins the study
(``--no-final`` there, so that one machine makes the final runs).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from optuna.storages.journal import JournalStorage

from multiemo.config import default_threads
from multiemo.data.atomic import atomic_write_text
from multiemo.engine import DataCache
from multiemo.jobs import check_job_identity
from multiemo.run import SeedRuns
from multiemo.sweep.spec import SweepError, SweepSpec, load_spec
from multiemo.sweep.study import (Worker, open_storage, open_study, progress, target_trials, trial_dir,
                                  trial_overrides)

__all__ = ["run_command", "run_sweep"]

log = logging.getLogger("multiemo.sweep")


def run_command(args) -> int:
    """``multiemo sweep`` (the options are declared in :mod:`multiemo.cli`)."""
    spec = load_spec(args.config)
    run_sweep(spec, Path(args.study_dir), args.overrides, workers=args.workers, storage=args.storage,
              final=not args.no_final, trials=not args.summary_only, worker_index=args.worker_index)
    return 0


def run_sweep(spec: SweepSpec, study_dir: Path, extra: list[str], *, workers: int = 1,
              storage: str | None = None, final: bool = True, trials: bool = True,
              worker_index: int | None = None) -> dict | None:
    """Trials (in this process, or ``workers`` processes), then the final runs and the summary."""
    base = spec.base_config(extra)  # a bad override is an error before anything is written
    identity = spec.identity(base)
    name = spec.name or study_dir.resolve().name
    _check_folder(study_dir, identity)
    store = open_storage(study_dir, storage, spec.heartbeat_seconds)
    journal = isinstance(store, JournalStorage)  # no heartbeat: workers detect the dead ones
    study = open_study(spec, name, store, identity)
    if not (study_dir / "sweep.json").is_file():
        atomic_write_text(study_dir / "sweep.json", json.dumps({"study": name, "identity": identity}, indent=1))
    group = f"sweep-{name}" if base.runtime.wandb != "disabled" else None
    cache = DataCache()
    started = time.perf_counter()
    if trials:
        if workers > 1 and worker_index is None:
            _spawn(workers, base, study_dir)
        else:
            done, _ = progress(study)
            log.info("study %r: %d/%d trials finished; worker %d starts", name, done,
                     target_trials(spec), worker_index or 0)
            Worker(spec, study, study_dir, extra, journal, worker_index or 0, group, cache).run()
    if not final or worker_index is not None:
        return None
    info = {"workers": workers, "storage": storage or str(study_dir / "study.journal"),
            "trials_wall_seconds_this_command": round(time.perf_counter() - started, 1)}
    summary = _finish(spec, study, study_dir, extra, cache, info, group)
    return summary


def _check_folder(study_dir: Path, identity: dict) -> None:
    """A study folder of another sweep is refused before anything is opened or written (the
    runner's identity check; ``sweep.json`` is written once the study is open)."""
    check_job_identity(study_dir / "sweep.json", identity, section="identity", kind="sweep",
                       error=SweepError, remedy="use another --study-dir, nothing was changed")


def _spawn(workers: int, base, study_dir: Path) -> None:
    """``workers`` processes of this same command, each a worker; CPU threads split between
    them, CUDA devices assigned round-robin. Ctrl-C reaches them all (same process group)."""
    import torch

    gpus = torch.cuda.device_count() if base.runtime.device in ("auto", "cuda") else 0
    threads = base.runtime.num_threads or max(1, default_threads() // workers)
    argv = [a for a in sys.argv[1:]] if sys.argv[1:2] == ["sweep"] else None
    if argv is None:
        raise SweepError("--workers N needs the multiemo command line (from Python, start the "
                         "workers yourself with worker_index)")
    procs = []
    for i in range(workers):
        extra = [f"runtime.device=cuda:{i % gpus}"] if gpus else [f"runtime.num_threads={threads}"]
        cmd = [sys.executable, "-m", "multiemo.cli", *argv, "--worker-index", str(i), *extra]
        procs.append(subprocess.Popen(cmd))
    log.info("%d workers started (%s)", workers,
             "GPUs round-robin" if gpus else f"{threads} CPU thread(s) each")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    if any(codes):
        raise SweepError(f"worker exit codes {codes}: see their output above; rerun the command to resume")


def _finish(spec: SweepSpec, study, study_dir: Path, extra: list[str], cache: DataCache,
            info: dict, group: str | None) -> dict:
    from optuna.trial import TrialState

    from multiemo.sweep.summary import write_plots, write_study_summary, write_sweep_summary
    from multiemo.train import train_seeds

    done, running = progress(study)
    target = target_trials(spec)
    if done < target:
        raise SweepError(f"the study has {done}/{target} finished trials ({running} running): "
                         f"rerun the command to run the rest before the summary")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SweepError("no trial completed (all failed or were pruned): see trials/*/run.json")
    trials = study.get_trials(deepcopy=False)
    info["line"] = (f"{len(trials)} trials in the storage ({target} asked for), objective: validation "
                    f"{spec.objective}; sampler {spec.sampler}, pruner {spec.pruner}.")
    if spec.is_study:
        runs = {v: [] for v in spec.study.variants}
        for t in sorted(complete, key=lambda t: (t.params["variant"], t.params["seed"])):
            runs[t.params["variant"]].append(trial_dir(study_dir, t.number))
        summary = write_study_summary(study_dir, study, spec, runs, info)
    else:
        best = study.best_trial
        chosen = trial_overrides(spec, best.params)
        info["chosen_overrides"] = chosen
        seeds = list(spec.final.seeds)
        log.info("best trial %d (validation %s %.2f): training it with seeds %s, each scored on "
                 "test once", best.number, spec.objective, best.value, seeds)
        cfg = spec.base_config([*extra, *chosen])
        final = _seed_runs(train_seeds, cfg, study_dir / "final", seeds, chosen, cache, group)
        baseline = []
        if spec.final.baseline:
            log.info("the base config with the same seeds (the reference of the paired test)")
            baseline = _seed_runs(train_seeds, spec.base_config(extra), study_dir / "baseline", seeds,
                                  [], cache, group)
        summary = write_sweep_summary(study_dir, study, spec, best, final, baseline, info)
        for note in write_plots(study_dir, study):
            log.info("%s", note)
    log.info("wrote %s (and .json, .csv)", study_dir / "summary.md")
    print((study_dir / "summary.md").read_text(), flush=True)
    return summary


def _seed_runs(train_seeds, cfg, folder: Path, seeds: list[int], overrides: list[str],
               cache: DataCache, group: str | None) -> list[Path]:
    """Train (or, after a crash, finish) one run per seed: a finished seed is kept."""
    train_seeds(cfg, folder, seeds, resume=True, overrides=overrides, data=cache, echo=False,
                tracker_group=group)
    runs = SeedRuns(folder)
    return [runs.run(s).path for s in seeds]
