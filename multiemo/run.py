"""One object for a run folder: where each file is, and the record that says what made it.

A run folder holds::

    config.yaml          the resolved config (rewritten when a resume changes it)
    run.json             dataset, labels, seed, sizes, status, best epoch, the resumes and
                         the overrides each applied, the checkpoint each report came from
    metrics.jsonl        one line per finished epoch (validation only; test is never in it)
    train.log            the log
    checkpoints/best.pt  the epoch chosen on validation;  checkpoints/last.pt  for resume
    predictions_{valid,test}.csv, report.{md,csv,json}, confusion_matrix.png, per_class_f1.png
    evaluations/<name>/  what ``multiemo evaluate`` wrote (never the run's own report)

Whoever trains or evaluates in a folder holds its lock (``.lock``, an OS file lock that the
kernel releases when the process dies, so a killed run never leaves a stale lock); a second
process gets a :class:`RunError` naming the holder.

>>> import tempfile
>>> run = RunDir(tempfile.mkdtemp())
>>> run.update_info(status="running", seed=1)["status"]
'running'
>>> run.info()["seed"]
1
>>> with run.locked():
...     run.is_locked()
True
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from multiemo.data.atomic import atomic_write_text
from multiemo.errors import UserError

__all__ = ["RunDir", "RunError", "RUN_STATUSES", "lock_held"]

# running → finished (test scored) | validated (a sweep trial: fitted, validation scored, test
# never read) | failed (an error or a diverged loss) | pruned (stopped early by a sweep's pruner)
RUN_STATUSES = ("running", "finished", "validated", "failed", "pruned")


class RunError(UserError):
    """A run folder that cannot be used as asked (not a run, locked, half-made)."""


class RunDir:
    """The files of one run folder. Creating the object touches nothing on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fh = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def info_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def best(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def checkpoint(self, name: str) -> Path:
        return self.path / "checkpoints" / f"{name}.pt"

    def predictions(self, split: str) -> Path:
        return self.path / f"predictions_{split}.csv"

    def evaluation(self, name: str) -> "RunDir":
        """The folder ``multiemo evaluate`` writes into: never the run's own report."""
        return RunDir(self.path / "evaluations" / name)

    # -- state ------------------------------------------------------------------------------
    def exists(self) -> bool:
        """A run was started here (its config is written)."""
        return self.config.is_file()

    def require(self) -> "RunDir":
        if not self.exists():
            raise RunError(f"{self.path} has no config.yaml: not a run folder")
        return self

    def info(self) -> dict[str, Any]:
        if not self.info_path.is_file():
            return {}
        try:
            return json.loads(self.info_path.read_text())
        except json.JSONDecodeError as err:
            raise RunError(f"{self.info_path}: not valid JSON ({err})") from None

    def update_info(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into ``run.json`` (written atomically); returns the new record."""
        if "status" in changes and changes["status"] not in RUN_STATUSES:
            raise ValueError(f"unknown run status {changes['status']!r}")
        info = {**self.info(), **changes}
        atomic_write_text(self.info_path, json.dumps(info, indent=1))
        return info

    def finished(self) -> bool:
        return self.info().get("status") == "finished"

    def history(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def write_history(self, history: list[dict]) -> None:
        atomic_write_text(self.metrics, "".join(json.dumps(h) + "\n" for h in history))

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- the lock ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator["RunDir"]:
        """Hold the folder's lock for the block (re-entrant within one object)."""
        if self._lock_fh is not None:
            yield self
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fh = open(self.path / ".lock", "a+")
        except OSError as err:
            raise RunError(f"cannot write the run folder {self.path}: {err.strerror or err}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunError(f"{self.path} is in use by {holder}: two processes cannot write one "
                           f"run folder (wait for it, or use another --run-dir)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%H:%M:%S')}")
        fh.flush()
        self._lock_fh = fh
        try:
            yield self
        finally:
            self._lock_fh = None
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    def is_locked(self) -> bool:
        """Whether some process (this one included) holds the lock now."""
        return self._lock_fh is not None or lock_held(self.path / ".lock")


def lock_held(path: Path) -> bool:
    """Whether a process holds an OS lock (``flock``) on ``path``; the kernel releases the lock
    of a process that dies, so a dead holder's file reads as free."""
    if not path.is_file():
        return False
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False
