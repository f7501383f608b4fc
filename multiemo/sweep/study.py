"""The Optuna study of a sweep: storage, trials as run folders, workers, crash recovery.

- **Storage**: a journal file ``STUDY_DIR/study.journal`` by default (many processes, and many
  machines on a shared file system), or any Optuna RDB URL (``postgresql://...``) for a cluster,
  with Optuna's heartbeat: a dead worker's running trial is marked failed and re-queued.
- **Workers**: each worker process loads the data once (:class:`~multiemo.engine.DataCache`) and
  runs trials until the study holds ``trials`` finished ones (completed, pruned, or failed with
  an error), counting the trials other workers are running.
- **Dead workers with a journal file** (which has no heartbeat): a worker holds an OS lock on
  ``STUDY_DIR/workers/<id>.lock`` while it lives and tags its trials with its id. Before each
  trial, a worker (under ``STUDY_DIR/workers/recover.lock``) marks failed every running trial
  whose worker's lock is free, and re-queues its parameters. A dead worker's trial (either
  storage) says so in its ``run.json``: status ``failed``, ``error`` naming the trial that re-runs it.
- **Distinct draws**: each trial samples from its own stream, seeded from the sampler seed and
  the trial's number (:class:`PerTrialSeed`; a grid: the first trial numbers are the grid's
  points), so no two trials draw alike, whether from workers, machines or a rerun after a
  crash; an uninterrupted single-worker sweep stays reproducible from the seed.
- A trial that raises is recorded failed with its error (user attribute ``error``) and the
  sweep goes on; a diverged loss is such a failure. Ctrl-C re-queues the trial in flight.
- **Trials never read the test split**: a sweep trial fits on train, is scored on validation,
  writes ``predictions_valid.csv`` and no checkpoint. In a *study* (named variants, nothing is
  chosen between them) every (variant, seed) is a full run, scored on test once, because each
  variant is a row of the final table.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

import optuna
from optuna.trial import TrialState

from multiemo.config import Config
from multiemo.engine import DataCache, fit, load_checkpoint, opened_run, score_validation
from multiemo.jobs import check_job_identity
from multiemo.run import RunDir, RunError, lock_held
from multiemo.sweep.spec import Param, SweepError, SweepSpec, override_value
from multiemo.tracking import Tracker
from multiemo.sweep.urls import masked_url, scrub, unencoded_userinfo

__all__ = ["open_storage", "open_study", "Worker", "progress", "trial_overrides", "trial_dir"]

log = logging.getLogger("multiemo.sweep")  # the sweep's own lines (a trial's go to its train.log)


# -- storage and study --------------------------------------------------------------------------

def open_storage(study_dir: Path, url: str | None, heartbeat_seconds: int):
    """The study's storage: a journal file in ``study_dir`` or an RDB URL (checked now)."""
    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        path = Path(url.removeprefix("journal:")) if url else study_dir / "study.journal"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise SweepError(f"journal storage {path} cannot be opened: {err}") from None
    import warnings

    import sqlalchemy
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    try:
        if unencoded_userinfo(url):
            raise ValueError("raw @ or % in the user info")
        sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise SweepError(f"storage URL {masked_url(url)} cannot be parsed: percent-encode special "
                         f"characters of the user name and password (@ as %40, : as %3A, / as %2F, "
                         f"% as %25)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=heartbeat_seconds, grace_period=2 * heartbeat_seconds,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                              engine_kwargs={"pool_pre_ping": True})
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SweepError(f"storage {masked_url(url)} cannot be reached: {scrub(first, url)}") from None


def open_study(spec: SweepSpec, name: str, storage, identity: dict) -> optuna.Study:
    """Create the study (first time: queue a study's (variant, seed) grid) or load it and check
    that it is the same sweep (base config, space, objective, sampler, variants)."""
    sampler = _sampler(spec)
    pruner = _pruner(spec)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    recorded = check_job_identity(study.user_attrs, identity, section="identity", kind="sweep",
                                  place=f"study {name!r} in this storage", error=SweepError,
                                  remedy="use another --study-dir or study name, nothing was changed")
    if recorded is None:
        study.set_user_attr("identity", identity)
        if spec.is_study:
            for variant in spec.study.variants:
                for seed in spec.study.seeds:
                    study.enqueue_trial({"variant": variant, "seed": seed})
    return study


def _sampler(spec: SweepSpec):
    """The study's sampler. Draws are seeded per trial from (sampler seed, trial number) (see
    :class:`PerTrialSeed`), so every trial of a study, from any worker, process, machine or
    rerun, draws from its own stream; the worker is not part of the seed (trial numbers already
    tell workers apart)."""
    if spec.sampler == "grid" and not spec.is_study:
        # the grid's order is shuffled with the seed and a trial's point is an index into it, so
        # every worker needs the same seed; the first len(grid) trial numbers are the points
        return optuna.samplers.GridSampler({p.path: p.grid() for p in spec.space.values()},
                                           seed=spec.sampler_seed)
    if spec.is_study or spec.sampler == "random":  # a study: every trial is queued, nothing is drawn
        return PerTrialSeed(lambda seed: optuna.samplers.RandomSampler(seed=seed), spec.sampler_seed)
    return PerTrialSeed(lambda seed: optuna.samplers.TPESampler(seed=seed), spec.sampler_seed)


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s draws in a sweep seeded ``seed`` (below 2**32)."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class PerTrialSeed(optuna.samplers.BaseSampler):
    """A sampler that draws each trial from a fresh inner sampler ``make(trial_seed(seed, n))``.

    Trial numbers are unique in a study (the storage assigns them), so no two trials share a
    random stream: not two workers, not two machines running the same command, not a rerun after
    a crash (its trials get new numbers). An uninterrupted single worker gets the numbers 0..N-1
    every time, so its sweep is reproducible from the seed. TPE and random sampling recompute
    everything from the study's history, so a fresh inner sampler per trial loses nothing. A
    queued trial (a re-queued one, a study's variant) keeps its fixed values: Optuna does not ask
    the sampler for them."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self.make, self.seed = make, seed
        self._inner: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, trial) -> optuna.samplers.BaseSampler:
        inner = self._inner.get(trial.number)
        if inner is None:
            inner = self._inner[trial.number] = self.make(trial_seed(self.seed, trial.number))
        return inner

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        inner = self._for(trial)
        self._inner.pop(trial.number, None)
        inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        pass  # each trial's stream is fixed by its number


def _pruner(spec: SweepSpec):
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials,
                                           n_warmup_steps=spec.warmup_epochs)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec.warmup_epochs)
    return optuna.pruners.NopPruner()


def target_trials(spec: SweepSpec) -> int:
    if spec.is_study:
        return len(spec.study.variants) * len(spec.study.seeds)
    if spec.sampler == "grid":
        size = 1
        for p in spec.space.values():
            size *= len(p.grid())
        return min(spec.trials, size)
    return spec.trials


def progress(study: optuna.Study) -> tuple[int, int]:
    """(finished, running): finished counts completed, pruned and failed-with-an-error trials;
    a trial failed because its worker died (or by Ctrl-C) is not counted: it is re-queued."""
    done = running = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or \
                (t.state == TrialState.FAIL and "error" in t.user_attrs):
            done += 1
        elif t.state == TrialState.RUNNING:
            running += 1
    return done, running


def trial_dir(study_dir: Path, number: int) -> Path:
    return study_dir / "trials" / f"{number:04d}"


def trial_overrides(spec: SweepSpec, params: dict) -> list[str]:
    """The config overrides of a trial's parameters (a study: the variant's set and the seed)."""
    if spec.is_study:
        changes = dict(spec.study.variants[params["variant"]])
        return [f"{k}={override_value(v)}" for k, v in changes.items()] + [f"train.seed={params['seed']}"]
    return [f"{path}={override_value(value)}" for path, value in params.items()]


def _suggest(trial: optuna.Trial, param: Param):
    if param.kind == "categorical":
        return trial.suggest_categorical(param.path, list(param.choices))
    if param.kind == "int":
        return trial.suggest_int(param.path, int(param.low), int(param.high), log=param.log,
                                 step=int(param.step or 1))
    return trial.suggest_float(param.path, param.low, param.high, log=param.log, step=param.step)


# -- workers ------------------------------------------------------------------------------------

class Worker:
    """One process's share of a sweep: data loaded once, trials until the target is reached."""

    def __init__(self, spec: SweepSpec, study: optuna.Study, study_dir: Path, extra: list[str],
                 journal: bool, index: int = 0, group: str | None = None,
                 cache: DataCache | None = None) -> None:
        self.spec, self.study, self.study_dir, self.extra = spec, study, study_dir, extra
        self.journal, self.index, self.group = journal, index, group
        self.cache = cache or DataCache()
        self.id = f"{socket.gethostname()}-{os.getpid()}"
        self.target = target_trials(spec)

    def run(self) -> None:
        # the base config's data, loaded once here: a missing corpus or a store that does not
        # fit is one error before any trial, not a failed trial each; trials reuse it
        data = self.cache.get(self.spec.base_config(self.extra))
        data.dataset("train"), data.dataset("valid")
        with self._alive():
            while True:
                self._recover()
                done, running = progress(self.study)
                if done + running >= self.target:
                    break
                self.study.optimize(self._objective, n_trials=1, catch=(Exception,))

    # a trial ---------------------------------------------------------------------------------
    def _objective(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", self.id)
        if self.spec.is_study:
            params = {"variant": trial.suggest_categorical("variant", list(self.spec.study.variants)),
                      "seed": trial.suggest_categorical("seed", list(self.spec.study.seeds))}
        else:
            params = {p.path: _suggest(trial, p) for p in self.spec.space.values()}
        overrides = trial_overrides(self.spec, params)
        run = RunDir(trial_dir(self.study_dir, trial.number))
        started = time.perf_counter()
        try:
            cfg = self.spec.base_config([*self.extra, *overrides])
            value = self._fit(trial, cfg, run, overrides)
        except optuna.TrialPruned as pruned:
            run.update(status="pruned")
            log.info("trial %d %s (%.1f s)", trial.number, pruned, time.perf_counter() - started)
            raise
        except KeyboardInterrupt:
            self.study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
            raise
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            trial.set_user_attr("error", message)
            if run.path.is_dir():
                run.update(status="failed", error=message)
            log.info("trial %d failed: %s", trial.number, message)
            raise
        done, _ = progress(self.study)
        best = max((t.value for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
                   default=value)
        log.info("trial %d: %s → validation %s %.2f (best so far %.2f); %.1f s; %d/%d done",
                 trial.number, _brief(params), self.spec.objective, value, max(best, value),
                 time.perf_counter() - started, done + 1, self.target)
        return value

    def _fit(self, trial: optuna.Trial, cfg: Config, run: RunDir, overrides: list[str]) -> float:
        from multiemo.train import train

        if self.spec.is_study:  # a full run: each variant is a row of the final table
            train(cfg, run.path, echo=False, overrides=overrides, data=self.cache,
                  tracker_group=self.group)
            return 100 * run.record().valid_score
        with opened_run(cfg, run.path, overrides=overrides, data=self.cache, echo=False) as (run, t):
            run.update(trial=trial.number, study=self.study.study_name)
            tracker = Tracker(cfg, run.path, self.group, name=f"trial-{trial.number}")

            def report(record: dict) -> None:
                tracker.log_epoch(record)
                trial.report(100 * record["valid"][t.metric], record["epoch"])
                if trial.should_prune():
                    tracker.finish(None, run.path)
                    raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

            result = fit(t, run, on_epoch=report, checkpoints=self.spec.keep_checkpoints)
            score_validation(t, run, result.best_state or load_checkpoint(run.best))
            run.update(status="validated")
            tracker.finish(None, run.path)
        return 100 * result.best_score

    # liveness --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _alive(self) -> Iterator[None]:
        folder = self.study_dir / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{self.id}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        (folder / f"{self.id}.lock").unlink(missing_ok=True)

    def _recover(self) -> None:
        """Fail and re-queue the running trials of dead workers (see the module's docstring)."""
        if not self.journal:
            optuna.storages.fail_stale_trials(self.study)  # heartbeat + retry callback (RDB)
            self._record_stale_trials()
            return
        folder = self.study_dir / "workers"
        with open(folder / "recover.lock", "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                worker = t.user_attrs.get("worker")
                if worker is None or worker == self.id or lock_held(folder / f"{worker}.lock"):
                    continue
                try:  # Optuna's public way to finish a trial of another process
                    self.study.tell(t.number, state=TrialState.FAIL)
                except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                    continue  # it finished meanwhile ("Cannot tell a COMPLETE trial")
                self.study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
                retry = next((r.number for r in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                              if r.user_attrs.get("retry_of") == t.number), None)
                self._record_dead(t.number, retry)
                log.info("trial %d was running in worker %s, which is gone: marked failed and "
                         "queued again", t.number, worker)

    def _record_stale_trials(self) -> None:
        """The run folders of the trials Optuna's heartbeat failed (RDB): each is re-queued by
        :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` as a trial whose
        ``retry_history`` ends with its number, or not at all once its retries are spent."""
        trials = self.study.get_trials(deepcopy=False)
        retries = {r.system_attrs["retry_history"][-1]: r.number for r in trials
                   if r.system_attrs.get("retry_history")}
        interrupted = {r.user_attrs["retry_of"] for r in trials if "retry_of" in r.user_attrs}  # Ctrl-C
        for t in trials:
            if t.state == TrialState.FAIL and "error" not in t.user_attrs and t.number not in interrupted:
                self._record_dead(t.number, retries.get(t.number))

    def _record_dead(self, number: int, retry: int | None) -> None:
        """Trial ``number``'s run folder says it failed because its worker died (it said running)."""
        run = RunDir(trial_dir(self.study_dir, number))
        try:
            if run.record().status != "running":
                return
            then = f"re-queued as trial {retry}" if retry is not None else "not re-queued (retries spent)"
            run.update(status="failed", error=f"its worker died (killed, or its node was lost); {then}")
        except (OSError, RunError) as err:
            log.warning("trial %d: its run folder could not record its dead worker: %s", number, err)


def _brief(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
