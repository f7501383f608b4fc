"""One object for a run folder: where each file is, and the record that says what made it.

A run folder holds::

    config.yaml          the resolved config (rewritten when a resume changes it)
    run.json             the run record (:class:`RunRecord`): dataset, labels, seed, sizes,
                         status, best epoch, the resumes and the overrides each applied, the
                         checkpoint each report came from
    metrics.jsonl        one line per finished epoch (validation only; test is never in it)
    train.log            the log
    checkpoints/best.pt  the epoch chosen on validation;  checkpoints/last.pt  for resume
    predictions_{valid,test}.csv, report.{md,csv,json}, confusion_matrix.png, per_class_f1.png
    evaluations/<name>/  what ``multiemo evaluate`` wrote (never the run's own report)

**The run record** has one schema, :class:`RunRecord` (typed, frozen, versioned by
:data:`RECORD_VERSION`), and this module is the only code that reads or writes ``run.json``:
:meth:`RunDir.start` writes a fresh record, :meth:`RunDir.update` changes fields of it, and
:meth:`RunDir.record` reads it. A field that is not in the schema, or a value of the wrong type,
is a programming error (``TypeError`` naming the field); a damaged file is a :class:`RunError`
naming it. Records of earlier versions (no ``version`` key) read as they are. Adding a field
means adding it to :class:`RunRecord` and setting it where it is known, nowhere else.

A folder of one run per seed (``multiemo train --seeds``) is a :class:`SeedRuns`: its
``seeds.json`` lists the seeds, each run is in ``seed-<seed>/``.

Whoever trains or evaluates in a folder holds its lock (``.lock``, an OS file lock that the
kernel releases when the process dies, so a killed run never leaves a stale lock); a second
process gets a :class:`RunError` naming the holder.

>>> import tempfile
>>> run = RunDir(tempfile.mkdtemp())
>>> run.start(dataset="meld", seed=1, status="running").status
'running'
>>> run.update(best_epoch=3).best_epoch, run.record().seed
(3, 1)
>>> run.update(best_epoc=3)
Traceback (most recent call last):
...
TypeError: run.json has no field 'best_epoc' (the fields are RunRecord's)
>>> run.update(status="done")
Traceback (most recent call last):
...
TypeError: run.json field 'status': expected one of ('running', 'finished', 'validated', 'failed', 'pruned'), got 'done'
>>> with run.locked():
...     run.is_locked()
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
import types
import typing
from pathlib import Path
from typing import Any, Iterator, Literal

from multiemo.config import plain_data
from multiemo.data.atomic import atomic_write_text
from multiemo.errors import UserError

__all__ = ["RunDir", "RunError", "RunRecord", "RunStatus", "RUN_STATUSES", "RECORD_VERSION",
           "Stopped", "ScoredFrom", "Resume", "SeedRuns", "lock_held"]

#: the version of ``run.json`` this code writes. 1: the records of earlier versions, which have
#: no ``version`` key (the same fields, so they read unchanged); 2: ``version`` is written.
RECORD_VERSION = 2

# running → finished (test scored) | validated (a sweep trial: fitted, validation scored, test
# never read) | failed (an error or a diverged loss) | pruned (stopped early by a sweep's pruner)
RunStatus = Literal["running", "finished", "validated", "failed", "pruned"]
RUN_STATUSES = typing.get_args(RunStatus)


class RunError(UserError):
    """A run folder that cannot be used as asked (not a run, locked, half-made, damaged)."""


class _Typed:
    """A frozen dataclass whose fields are checked against their types when it is made."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _checked(f.name, hints[f.name], getattr(self, f.name)))


@dataclasses.dataclass(frozen=True)
class Stopped(_Typed):
    """Why and when :func:`multiemo.engine.fit` stopped, and the rule it applied."""

    reason: Literal["patience", "max_epochs"]
    epoch: int  # the last epoch trained
    best_epoch: int
    patience: int
    min_epochs: int
    max_epochs: int


@dataclasses.dataclass(frozen=True)
class ScoredFrom(_Typed):
    """The checkpoint a folder's predictions and report were made from."""

    checkpoint: str  # "best" or "last"
    epoch: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Resume(_Typed):
    """One ``multiemo train --resume``: when, and the overrides it applied."""

    at: str  # local time, ISO 8601 to the second
    overrides: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RunRecord(_Typed):
    """What ``run.json`` holds. Every field is optional: a record grows as the run goes on, and
    a field that is not known (yet) is left out of the file.

    A training run sets the first group in :func:`multiemo.engine.start_run`, the second as it
    goes (:func:`~multiemo.engine.fit`, :func:`~multiemo.engine.test`); a sweep trial also
    sets ``trial`` and ``study``; the folder of ``multiemo evaluate`` sets ``run_dir`` (the run
    it scored again) and what it copied from that run's record.
    """

    # what was trained, on what
    dataset: str | None = None
    labels: tuple[str, ...] = ()  # class names in index order
    seed: int | None = None
    modalities: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # the key=value overrides the run was started with
    device: str | None = None
    amp: bool | None = None
    num_parameters: int | None = None
    num_dialogues: dict[str, int] = dataclasses.field(default_factory=dict)  # per split
    num_utterances: dict[str, int] = dataclasses.field(default_factory=dict)  # per split
    train_class_counts: tuple[int, ...] = ()
    # where it stands
    status: RunStatus | None = None
    error: str | None = None  # why it failed
    select_metric: str | None = None  # the validation metric that chose the epoch
    best_epoch: int | None = None
    valid_score: float | None = None  # validation select_metric of best_epoch (a fraction)
    stopped: Stopped | None = None
    resumes: tuple[Resume, ...] = ()
    scored_from: ScoredFrom | None = None
    num_utterances_test: int | None = None  # rows of predictions_test.csv
    # a sweep trial
    trial: int | None = None
    study: str | None = None
    # an evaluation folder
    run_dir: str | None = None  # the run whose checkpoint was scored again
    # keys of the file that are not fields (written by hand); kept as they are, never written
    # by this code
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    version: int = RECORD_VERSION  # as read: the file's (1 for a record without one)

    @property
    def valid_key(self) -> str | None:
        """The file's key of :attr:`valid_score`: ``valid_<select_metric>`` (as in earlier versions)."""
        return f"valid_{self.select_metric}" if self.select_metric else None

    def to_json(self) -> dict[str, Any]:
        """The record as ``run.json`` holds it: ``version`` first, unset fields left out,
        :attr:`valid_score` under :attr:`valid_key`."""
        out: dict[str, Any] = {"version": RECORD_VERSION}
        for name in _fields():
            if name in ("version", "extra"):
                continue
            value = getattr(self, name)
            if value is None or value == () or value == {}:
                continue
            if name == "valid_score":
                if self.valid_key is None:
                    raise TypeError("run.json field 'valid_score' needs select_metric (its key is "
                                    "valid_<select_metric>)")
                name = self.valid_key
            out[name] = plain_data(value)
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "run.json") -> "RunRecord":
        """Read a record of any version up to :data:`RECORD_VERSION`; a damaged one is a
        :class:`RunError` naming ``source`` and the key."""
        if not isinstance(data, dict):
            raise RunError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("version", 1)
        if version not in range(1, RECORD_VERSION + 1):
            raise RunError(f"{source}: record version {version!r}; this multiemo reads versions "
                           f"1 to {RECORD_VERSION} (upgrade multiemo to read it)")
        metric = data.get("select_metric")
        if isinstance(metric, str) and f"valid_{metric}" in data:
            data["valid_score"] = data.pop(f"valid_{metric}")
        fields = _fields()
        known = {k: v for k, v in data.items() if k in fields and k not in ("version", "extra")}
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            return cls(**known, extra=extra, version=version)
        except TypeError as err:
            raise RunError(f"{source}: {str(err).removeprefix('run.json ')}") from None

    def replace(self, **changes: Any) -> "RunRecord":
        """A copy with ``changes``; an unknown field or a wrong type is a ``TypeError``."""
        fields = _fields()
        for name in changes:
            if name not in fields or name in ("version", "extra"):
                raise TypeError(f"run.json has no field {name!r} (the fields are RunRecord's)")
        return dataclasses.replace(self, **changes)


# -- the schema's types --------------------------------------------------------------------------

def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(RunRecord)}


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _checked(key: str, hint: Any, value: Any) -> Any:
    """``value`` as field ``key`` of type ``hint`` holds it (a list as a tuple, a JSON object as
    a nested record); a value of another type is a ``TypeError`` naming the field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _checked(key, option, value)
            except TypeError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise TypeError(f"run.json field {key!r}: expected one of {args}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"run.json field {key!r}: expected a list, got {value!r}")
        return tuple(_checked(f"{key}[{i}]", args[0], v) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"run.json field {key!r}: expected an object, got {value!r}")
        return {k: _checked(f"{key}.{k}", args[1], v) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"run.json field {key!r}: expected {hint.__name__}, got {value!r}")
        names = {f.name for f in dataclasses.fields(hint)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise TypeError(f"run.json field {key!r}: unknown key(s) {unknown} for {hint.__name__}")
        try:
            values = {k: _checked(f"{key}.{k}", _hints(hint)[k], v) for k, v in value.items()}
            return hint(**values)
        except TypeError as err:
            if str(err).startswith("run.json"):
                raise
            raise TypeError(f"run.json field {key!r}: {err}") from None
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise TypeError(f"run.json field {key!r}: expected int, got {value!r}")
    if isinstance(value, hint):
        return value
    raise TypeError(f"run.json field {key!r}: expected {hint.__name__}, got {value!r}")


# -- the folder ----------------------------------------------------------------------------------

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
    def record_path(self) -> Path:
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

    # -- the record -------------------------------------------------------------------------
    def has_record(self) -> bool:
        return self.record_path.is_file()

    def record(self) -> RunRecord:
        """The folder's :class:`RunRecord` (an empty one when there is no ``run.json``)."""
        if not self.record_path.is_file():
            return RunRecord()
        try:
            data = json.loads(self.record_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunError(f"{self.record_path}: not valid JSON ({err})") from None
        return RunRecord.from_json(data, str(self.record_path))

    def start(self, **fields: Any) -> RunRecord:
        """Write a fresh record of ``fields`` (whatever ``run.json`` held before is replaced)."""
        return self._write(RunRecord().replace(**fields))

    def update(self, **changes: Any) -> RunRecord:
        """Change fields of the record (written atomically); returns the new record. An unknown
        field or a value of the wrong type is a ``TypeError`` and nothing is written."""
        return self._write(self.record().replace(**changes))

    def _write(self, record: RunRecord) -> RunRecord:
        record = dataclasses.replace(record, version=RECORD_VERSION)
        atomic_write_text(self.record_path, json.dumps(record.to_json(), indent=1))
        return record

    def finished(self) -> bool:
        return self.record().status == "finished"

    # -- metrics ----------------------------------------------------------------------------
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


class SeedRuns:
    """A folder of one run per seed: ``seeds.json`` (``{"version": 1, "seeds": [...]}``; earlier
    versions wrote no version) and ``seed-<seed>/`` run folders.

    >>> import tempfile
    >>> runs = SeedRuns(tempfile.mkdtemp())
    >>> runs.exists(), runs.write([7, 8]), runs.seeds(), runs.run(7).path.name
    (False, None, (7, 8), 'seed-7')
    """

    VERSION = 1

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def record_path(self) -> Path:
        return self.path / "seeds.json"

    def exists(self) -> bool:
        return self.record_path.is_file()

    def write(self, seeds: list[int] | tuple[int, ...]) -> None:
        seeds = _checked("seeds", tuple[int, ...], seeds)
        atomic_write_text(self.record_path, json.dumps({"version": self.VERSION, "seeds": list(seeds)}))

    def seeds(self) -> tuple[int, ...]:
        try:
            data = json.loads(self.record_path.read_text())
            if not isinstance(data, dict) or data.get("version", 1) != self.VERSION:
                raise TypeError(f"version {data.get('version') if isinstance(data, dict) else None!r}")
            seeds = _checked("seeds", tuple[int, ...], data.get("seeds"))
        except OSError as err:
            raise RunError(f"{self.record_path} cannot be read: {err.strerror or err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
            raise RunError(f"{self.record_path}: not a list of seeds "
                           f"({str(err).removeprefix('run.json field ')})") from None
        if not seeds:
            raise RunError(f"{self.record_path}: names no seed")
        return seeds

    def run(self, seed: int) -> RunDir:
        return RunDir(self.path / f"seed-{seed}")


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
