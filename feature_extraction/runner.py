"""The batch-job runner that every extractor (text, audio, visual) shares.

An extractor is only a function from a batch of utterances to a batch of vectors; the runner
does the rest: sharding, resume, atomic writes, progress, failure log, summary and merge.
Its batch-job parts serve every batch job of the toolkit: ``multiemo predict``
(:mod:`multiemo.predict`) runs each shard's extraction as jobs of this runner and shares its shard
rule (:func:`shard_items`, :func:`parse_shard`) and its identity check
(:func:`multiemo.jobs.check_job_identity`, also used by a sweep's folder and a fine-tuned encoder's
folder).

The extractor contract::

    class Extractor(Protocol):
        name: str            # "text-minilm", "opensmile-IS10", ...
        batch_size: int
        def info(self) -> dict: ...                 # settings, model id, dim (store metadata)
        def setup(self, device: torch.device) -> None: ...   # load models, once per process
        def extract(self, items: list[Utterance]) -> list[np.ndarray | Absent | Exception]: ...

``extract`` returns one outcome per item: a 1-d vector (done), an :class:`Absent` (computed fine
but there is no vector, e.g. no face in the clip: stored with ``present=0``), or an exception
(that item failed). When the whole call raises, the runner retries the batch's items one by one,
so one bad clip cannot sink its batch; an item whose own call raises :class:`Absent` is absent,
any other exception is a failure.

:func:`run_job` lays its files out next to the consolidated store ``out``::

    features/text.safetensors            the consolidated store (written by the merge)
    features/text.safetensors.work/
        job.json                         extractor info + the ordered ids of the whole job
        chunk-s0of2-<time>-<pid>.safetensors   finished items (a small store; atomic rename)
        failures-s0of2.jsonl             one line per failed attempt: id, error, traceback tail

Every file appears by atomic rename, so a job killed at any moment leaves only whole chunks;
a rerun skips every id that some chunk already holds (whatever shard wrote it), retries the
failed ones, and a merge keeps one row per id, so a shard run twice never duplicates items.
Shard ``K/N`` (``0 <= K < N``) takes the job's items ``i`` with ``i % N == K`` in corpus order,
so N machines sharing the folder split the corpus without talking to each other.

When every id of the job is either done, absent or failed in its latest attempt, the run merges
the chunks into ``out``: rows in corpus order, failed items with ``present=0`` and their error
in the store's ``info["failed"]`` (absent items' reasons in ``info["absent"]``). ``merge_job(out)``
(``--merge`` on the command line) does the merge on its own, e.g. after the last shard of a
cluster job. The work folder is kept (a rerun is then a no-op that merges again); delete it to
start afresh. A job whose settings (``info()``) or items differ from those recorded in
``job.json`` is refused rather than mixed (:func:`multiemo.jobs.check_job_identity`).

Ctrl-C belongs to the runner: while items are computed it handles SIGINT itself (libraries such
as openSMILE swallow the ``KeyboardInterrupt`` inside their callbacks), stops at the next batch
boundary with ``KeyboardInterrupt``, keeps every finished chunk and never logs the batch in
flight (nor any error caused by an interrupt) as failed; a rerun resumes. Faults of the job
itself are one-line :class:`JobError` messages naming the file: a damaged ``job.json``, a
corrupt chunk (an error that says to delete that chunk: the runner does not delete or skip data
on its own; the rerun then recomputes its items), an output folder that cannot be written, a
model missing from the local cache while the hub is offline (:func:`loading_model`). A merged
store in which every vector is absent is logged as a warning.

The options of every extraction command (``--config``, ``key=value`` overrides, ``--shard
K/N``, ``--merge``, ``--device``, ``--no-progress``) are declared once in :mod:`multiemo.cli`;
here are :class:`CorpusSource` (the ``corpus:`` block of every extraction config) and
:func:`load_corpus` (the ``corpus.json`` that ``multiemo corpus build`` wrote; a raw release is
refused with that command).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np
import torch

from multiemo.config import ConfigError, resolve_device
from multiemo.data.corpus import Corpus, Utterance, atomic_write_text
from multiemo.data.store import FeatureStore, write_store
from multiemo.errors import UserError
from multiemo.jobs import JobError, check_job_identity, read_record

__all__ = ["Absent", "Extractor", "JobError", "JobSummary", "CorpusSource", "run_job", "check_splits",
           "merge_job", "job_status", "parse_shard", "shard_items", "check_job_identity", "resolve_device",
           "load_corpus", "work_dir", "loading_model", "quiet_transformers"]

JOB_FORMAT = "multiemo-extraction-job"
log = logging.getLogger("feature_extraction")


class Absent(Exception):
    """Raised (or returned) for an item computed fine but with no vector (e.g. no face found).

    Stored with ``present=0`` and counted as absent, not as a failure. The message, if any, is
    kept as the reason in the store's metadata.
    """


@runtime_checkable
class Extractor(Protocol):
    name: str
    batch_size: int

    def info(self) -> dict[str, Any]: ...

    def setup(self, device: torch.device) -> None: ...

    def extract(self, items: list[Utterance]) -> list[np.ndarray | Absent | Exception]: ...


@dataclass
class JobSummary:
    """What one :func:`run_job` call did (counts are of this shard's items)."""

    shard: tuple[int, int]
    total: int  # items of this shard
    done: int = 0  # computed now, with a vector
    absent: int = 0  # computed now, without a vector
    failed: int = 0
    skipped: int = 0  # already done by an earlier run
    seconds: float = 0.0  # extraction time (after the extractor's setup, before the merge)
    merged: Path | None = None  # the consolidated store, when this run completed the job
    failures: dict[str, str] = field(default_factory=dict)  # id → error, of this run

    @property
    def rate(self) -> float:
        """Items computed per second in this run (done + absent + failed)."""
        return (self.done + self.absent + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        k, n = self.shard
        text = (f"shard {k}/{n}: {self.total} items: {self.done} done, {self.absent} absent, "
                f"{self.failed} failed, {self.skipped} skipped (already done) "
                f"in {self.seconds:.1f} s ({self.rate:.1f} items/s)")
        if self.failures:
            shown = list(self.failures.items())[:5]
            text += "\nfailures: " + "; ".join(f"{i}: {e}" for i, e in shown)
            if len(self.failures) > 5:
                text += f"; ... ({len(self.failures) - 5} more in the failure log)"
        text += f"\nmerged into {self.merged}" if self.merged else "\njob not complete: not merged yet"
        return text


# -- small helpers ------------------------------------------------------------------------------

def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)``, with ``0 <= K < N``.

    >>> parse_shard("1/4")
    (1, 4)
    >>> parse_shard("4/4")
    Traceback (most recent call last):
    ...
    ValueError: shard '4/4': expected K/N with 0 <= K < N (shards count from 0)
    """
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ValueError(f"shard {text!r}: expected K/N, e.g. 0/4") from None
    return _check_shard(k, n, shown=repr(text))


def _check_shard(k: int, n: int, shown: str | None = None) -> tuple[int, int]:
    """``(k, n)`` if ``0 <= k < n``, else a ValueError naming the shard as ``shown`` (default
    ``k/n``): the one range check of :func:`parse_shard` and :func:`shard_items`."""
    if not 0 <= k < n:
        raise ValueError(f"shard {shown or f'{k}/{n}'}: expected K/N with 0 <= K < N (shards count from 0)")
    return k, n


T = TypeVar("T")


def shard_items(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """The items of shard ``K/N``: those at positions ``i % N == K``, in order. The one sharding
    rule of every batch job (the runner shards utterances, ``multiemo predict`` whole dialogues),
    so N machines split a job without talking to each other.

    >>> shard_items("abcdefg", (1, 3))
    ['b', 'e']
    """
    k, n = _check_shard(*shard)
    return [item for i, item in enumerate(items) if i % n == k]


def work_dir(out: str | Path) -> Path:
    """The folder of a job's chunks and logs, next to its consolidated store."""
    out = Path(out)
    return out.with_name(out.name + ".work")


def _short_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _hub_offline() -> bool:
    flags = [os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")]
    if any(f.strip().lower() in {"1", "on", "yes", "true"} for f in flags):
        return True
    try:
        from huggingface_hub import constants
        return bool(getattr(constants, "HF_HUB_OFFLINE", False))
    except ImportError:  # pragma: no cover - transformers depends on it
        return False


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """``transformers``' warnings and progress bars off, restored after: loading prints a bar per
    model and a "LOAD REPORT" of unused head weights (an image classifier's classifier, a text
    model's pooler) that the extractors never read (the visual encoder checks for a trained
    pooler itself)."""
    from transformers.utils import logging as hf_logging
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def loading_model(model_id: str, what: str = "model") -> Iterator[None]:
    """Turn the ``OSError`` of ``transformers``' ``from_pretrained`` into a one-line
    :class:`JobError` naming the model: a hub id missing from the local cache while the hub is
    offline (``HF_HUB_OFFLINE=1``) says so at once, a local folder that holds no model says that.

    >>> import tempfile
    >>> with loading_model(tempfile.mkdtemp()):  # doctest: +ELLIPSIS
    ...     raise OSError("no config.json in the folder")
    Traceback (most recent call last):
    ...
    multiemo.jobs.JobError: model /...: cannot load it from that folder (no config.json in the folder)
    """
    try:
        with quiet_transformers():
            yield
    except OSError as err:
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        if Path(model_id).expanduser().exists():
            raise JobError(f"{what} {model_id}: cannot load it from that folder ({detail})") from None
        if _hub_offline():
            raise JobError(f"{what} {model_id!r} is not in the local Hugging Face cache and the hub "
                           f"is offline (HF_HUB_OFFLINE=1): download it once with network access, "
                           f"or give a local folder") from None
        raise JobError(f"{what} {model_id!r}: cannot load it from the Hugging Face hub or the "
                       f"local cache ({detail})") from None


# -- the work folder ------------------------------------------------------------------------------

def _read_job(job_file: Path) -> dict[str, Any]:
    """The parsed ``job.json``; a damaged one is a :class:`JobError` naming it."""
    remedy = f"delete {job_file.parent} to start the job afresh"
    job = read_record(job_file, "multiemo extraction job", remedy, JOB_FORMAT, JobError)
    if job is None or not isinstance(job.get("ids"), list):
        raise JobError(f"{job_file}: not a multiemo extraction job file; {remedy}")
    return job


def _chunk_error(chunk: Path, err: BaseException) -> JobError:
    detail = str(err).removeprefix(f"{chunk}: ")
    return JobError(f"{chunk}: corrupt chunk of the extraction job ({detail}); delete this file and "
                    f"rerun to recompute its items (the other chunks are kept)")


def _open_chunk(chunk: Path) -> FeatureStore:
    """A chunk as a store; a damaged one (e.g. cut short by a full disk) is a :class:`JobError`
    that names it and says to delete it. It is not skipped and recomputed on its own: chunks
    appear by atomic rename, so a bad one means the disk or a person changed it, and the user
    should see that rather than have the runner delete data."""
    try:
        store = FeatureStore(chunk)
        store.ids, store.info  # noqa: B018 - reads the header
    except UserError as err:  # StoreError: not a readable store
        raise _chunk_error(chunk, err) from None
    return store


def _claim_work(work: Path, info: dict[str, Any], ids: list[str]) -> None:
    """Create ``job.json``, or check that the one there is the same job (settings and items)."""
    check_job_identity(work / "job.json", {"info": info, "ids": ids}, kind="extraction job",
                       fmt=JOB_FORMAT, create={"version": 1},
                       names={"info": "other settings", "ids": "other utterances"},
                       remedy=f"delete {work} or write to another output to start a new job")


def _read_chunks(work: Path) -> tuple[dict[str, tuple[Path, int]], dict[str, str]]:
    """id → (chunk file, row) of every finished item, and id → reason of the absent ones."""
    rows: dict[str, tuple[Path, int]] = {}
    absent: dict[str, str] = {}
    for chunk in sorted(work.glob("chunk-*.safetensors")):
        store = _open_chunk(chunk)
        reasons = store.info.get("absent", {})
        for row, uid in enumerate(store.ids):
            if uid not in rows:  # a shard run twice: the first copy wins
                rows[uid] = (chunk, row)
                if uid in reasons:
                    absent[uid] = reasons[uid]
    return rows, absent


def _read_failures(work: Path) -> dict[str, str]:
    """id → error of the latest failed attempt of every item in the failure logs."""
    failures: dict[str, tuple[float, str]] = {}
    for log in sorted(work.glob("failures-*.jsonl")):
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            old = failures.get(rec["id"])
            if old is None or rec.get("time", 0) >= old[0]:
                failures[rec["id"]] = (rec.get("time", 0), rec["error"])
    return {uid: err for uid, (_, err) in failures.items()}


def job_status(out: str | Path) -> dict[str, Any]:
    """Counts of a job's items: total, done, absent, failed (latest attempt), missing."""
    work = work_dir(out)
    job_file = work / "job.json"
    if not job_file.exists():
        raise JobError(f"no extraction job at {work} (no job.json)")
    ids = _read_job(job_file)["ids"]
    rows, absent = _read_chunks(work)
    failures = {k: v for k, v in _read_failures(work).items() if k not in rows}
    missing = [i for i in ids if i not in rows and i not in failures]
    return {"total": len(ids), "done": sum(i in rows for i in ids) - len(absent),
            "absent": len(absent), "failed": len(failures), "missing": len(missing)}


class _ChunkWriter:
    """Buffers finished items and writes them as one small store per chunk, atomically."""

    def __init__(self, work: Path, shard: tuple[int, int], info: dict[str, Any],
                 chunk_items: int, chunk_seconds: float) -> None:
        self.work, self.shard, self.info = work, shard, info
        self.chunk_items, self.chunk_seconds = chunk_items, chunk_seconds
        self.ids: list[str] = []
        self.vectors: list[np.ndarray | None] = []  # None: absent
        self.absent: dict[str, str] = {}
        self.dim: int | None = info.get("dim") if isinstance(info.get("dim"), int) else None
        self.last_flush = time.monotonic()
        self.failure_log = work / f"failures-s{shard[0]}of{shard[1]}.jsonl"

    def add(self, uid: str, vector: np.ndarray | None, reason: str = "") -> None:
        self.ids.append(uid)
        self.vectors.append(vector)
        if vector is None:
            self.absent[uid] = reason
        elif self.dim is None:
            self.dim = int(vector.shape[0])
        if len(self.ids) >= self.chunk_items or \
                time.monotonic() - self.last_flush >= self.chunk_seconds:
            self.flush()

    def fail(self, uid: str, err: BaseException) -> None:
        tb = traceback.extract_tb(err.__traceback__)[-3:]
        record = {"id": uid, "error": _short_error(err), "time": time.time(),
                  "traceback": [f"{f.filename}:{f.lineno} in {f.name}" for f in tb]}
        with open(self.failure_log, "a", encoding="utf-8") as fh:  # one short line per append
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        count = min(len(self.ids), len(self.vectors))  # an add cut short by a second Ctrl-C
        self.ids, self.vectors = self.ids[:count], self.vectors[:count]
        if not self.ids:
            return
        dim = self.dim or 0
        features = np.zeros((len(self.ids), dim), dtype=np.float32)  # (n, D)
        present = np.zeros(len(self.ids), dtype=bool)
        for row, vec in enumerate(self.vectors):
            if vec is not None:
                features[row] = vec
                present[row] = True
        name = f"chunk-s{self.shard[0]}of{self.shard[1]}-{time.time_ns()}-{os.getpid()}.safetensors"
        write_store(self.work / name, self.ids, features, present,
                    info={"chunk_of": self.info.get("extractor"), "absent": self.absent})
        self.ids, self.vectors, self.absent = [], [], {}


def _interrupted_by(err: BaseException) -> bool:
    """Whether ``err`` is, or was raised while handling / because of, a ``KeyboardInterrupt``
    (a library that catches Ctrl-C and raises its own error instead): such an item did not fail,
    it was stopped, and is never logged as a failure."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class _Interrupt:
    """The runner's own Ctrl-C: while a job runs, SIGINT only sets :attr:`requested`.

    Extraction libraries with C callbacks (openSMILE's audio callback) swallow the
    ``KeyboardInterrupt`` Python's default handler raises wherever it lands, and turn it into
    an item error or nothing at all; so the runner takes the signal itself and stops at the next
    batch boundary, where nothing is half-done. A second Ctrl-C raises at once (the way out of
    an extractor that hangs). Outside the main thread signals cannot be handled: nothing changes.
    """

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupted: stopping after the current batch (finished chunks are kept; "
              "Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def installed(self) -> Iterator["_Interrupt"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def _outcomes(extractor: Extractor, batch: list[Utterance],
              interrupt: _Interrupt | None = None) -> list[Any]:
    """One outcome per item; a failed batch call is retried item by item.

    Raises ``KeyboardInterrupt`` (never returns failures) when the batch was interrupted: a
    Ctrl-C noted by ``interrupt`` during the call, or an error caused by a ``KeyboardInterrupt``.
    """
    interrupt = interrupt or _Interrupt()
    try:
        results = list(extractor.extract(batch))
        if len(results) != len(batch):
            raise JobError(f"extractor {extractor.name!r} returned {len(results)} results for "
                           f"{len(batch)} items")
    except Exception as batch_err:  # retry alone: one bad item must not sink its batch
        interrupt.check()
        if _interrupted_by(batch_err):
            raise KeyboardInterrupt from batch_err
        if len(batch) == 1:
            return [batch_err]
        results = []
        for item in batch:
            try:
                (result,) = extractor.extract([item])
            except Exception as err:  # noqa: BLE001 - any per-item error is logged, not fatal
                result = err
            interrupt.check()
            results.append(result)
    interrupt.check()  # outcomes computed while Ctrl-C was pending are not trusted: redo them
    for result in results:
        if isinstance(result, BaseException) and _interrupted_by(result):
            raise KeyboardInterrupt from result
    return results


# -- the job --------------------------------------------------------------------------------------

def check_splits(corpus: Corpus, splits: Sequence[str] | None) -> None:
    """A ConfigError (naming the ``splits`` key) for a split the corpus does not have."""
    unknown = set(splits or ()) - set(corpus.splits)
    if unknown:
        raise ConfigError(f"splits {sorted(unknown)} are not in corpus {corpus.name!r} "
                          f"(it has {list(corpus.splits)})")


def run_job(extractor: Extractor, corpus: Corpus, out: str | Path, *,
            shard: tuple[int, int] = (0, 1), device: str = "auto",
            splits: Sequence[str] | None = None,
            order: Callable[[Utterance], float] | None = None, progress: bool = True,
            chunk_items: int = 512, chunk_seconds: float = 60.0,
            settings: dict[str, Any] | None = None, report: bool = True) -> JobSummary:
    """Run (or resume) one shard of an extraction job, and merge when the job is complete.

    Args:
        extractor: what computes the vectors (see the module docstring).
        corpus: the corpus whose utterances are the job's items.
        out: the consolidated ``.safetensors`` store; the work folder is ``<out>.work``.
        shard: ``(K, N)``: this run takes items ``i % N == K`` of the job, ``0 <= K < N``.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``.
        splits: only utterances of these splits (default: all).
        order: sort key of this run's items before batching (text: length, to keep padding low).
        progress: show a progress bar (rate, ETA) on stderr.
        chunk_items, chunk_seconds: write a chunk after this many items or seconds, whichever
            first (a kill loses at most one chunk's work).
        settings: the job config's settings that shape the vectors (recorded in ``job.json`` and
            the store as ``info["settings"]``; part of the job's identity, as ``info()``).
        report: print the summary (counts, failures, the merged store) on stderr, with or
            without the bar, and warn when every merged vector is absent. A caller whose work
            folder is temporary (:meth:`multiemo.recognizer.Recognizer.predict`) turns it off
            and says what it did in its own words: these files are gone when it returns.

    Returns:
        The :class:`JobSummary` of this run.

    Raises:
        JobError: the work folder holds another job (other settings or items).
        KeyboardInterrupt: Ctrl-C (SIGINT). While the items are computed the runner handles the
            signal itself: it finishes the batch in flight, discards its outcomes (an extractor
            may have turned the interrupt into item errors: those are never logged as
            failures), writes the finished items and raises at that batch boundary; a rerun
            resumes from there. A second Ctrl-C raises at once. The previous handler is put
            back when the job stops.
    """
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard {k}/{n}: expected 0 <= K < N")
    check_splits(corpus, splits)
    out = Path(out)
    work = work_dir(out)
    if out.is_dir():
        raise JobError(f"output {out} is a directory; give the path of a .safetensors file")
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = work / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise JobError(f"cannot write the output folder {work} (for {out}): "
                       f"{err.strerror or err}") from None
    wanted = None if splits is None else set(splits)
    items = [u for d in corpus.dialogues if wanted is None or d.split in wanted
             for u in d.utterances]
    ids = [u.id for u in items]

    extractor.setup(resolve_device(device))
    info = {"extractor": extractor.name, **extractor.info()}
    if settings is not None:
        info["settings"] = settings
    _claim_work(work, info, ids)
    start = time.monotonic()  # the rate is of extraction, not of model loading

    mine = shard_items(items, shard)
    done_rows, _ = _read_chunks(work)
    todo = [u for u in mine if u.id not in done_rows]
    summary = JobSummary(shard=shard, total=len(mine), skipped=len(mine) - len(todo))
    if order is not None:
        todo.sort(key=order)

    writer = _ChunkWriter(work, shard, info, chunk_items, chunk_seconds)
    interrupt = _Interrupt()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc=f"{extractor.name} {k}/{n}", unit="utt",
                   dynamic_ncols=True, file=sys.stderr)
    with interrupt.installed():  # Ctrl-C stops at the next batch boundary
        try:
            for first in range(0, len(todo), max(1, extractor.batch_size)):
                interrupt.check()
                batch = todo[first:first + max(1, extractor.batch_size)]
                for item, result in zip(batch, _outcomes(extractor, batch, interrupt)):
                    if isinstance(result, Absent):
                        writer.add(item.id, None, str(result))
                        summary.absent += 1
                        continue
                    if not isinstance(result, BaseException):
                        vec = np.asarray(result, dtype=np.float32).reshape(-1)
                        if writer.dim is not None and vec.shape[0] != writer.dim:
                            result = JobError(f"vector of dimension {vec.shape[0]}, expected "
                                              f"{writer.dim}")
                        elif not np.isfinite(vec).all():
                            result = JobError("NaN or inf in the vector")
                        else:
                            writer.add(item.id, vec)
                            summary.done += 1
                            continue
                    writer.fail(item.id, result)
                    summary.failures[item.id] = _short_error(result)
                    summary.failed += 1
                if bar is not None:
                    bar.update(len(batch))
            interrupt.check()  # a Ctrl-C while the last batch was recorded still stops the job
        finally:
            writer.flush()  # also on Ctrl-C: what is finished is kept
            if bar is not None:
                bar.close()

    summary.seconds = time.monotonic() - start
    if job_status(out)["missing"] == 0:
        summary.merged = merge_job(out, report=report)
    if report:
        print(summary.format(), file=sys.stderr)  # with or without the bar
    return summary


def merge_job(out: str | Path, *, allow_incomplete: bool = False, report: bool = True) -> Path:
    """Merge a job's chunks into the consolidated store ``out`` (atomically) and return it.

    Rows follow the job's id order; failed items (and, with ``allow_incomplete``, items no run
    has reached yet) are stored with ``present=0`` and their error in ``info["failed"]``.
    With ``report``, a store in which every vector is absent is logged as a warning.

    Raises:
        JobError: no job at ``<out>.work``, or items not yet attempted (unless
            ``allow_incomplete``).
    """
    out = Path(out)
    work = work_dir(out)
    job_file = work / "job.json"
    if not job_file.exists():
        raise JobError(f"no extraction job at {work} (no job.json): run the extraction first")
    job = _read_job(job_file)
    ids: list[str] = job["ids"]
    rows, absent = _read_chunks(work)
    failures = {k: v for k, v in _read_failures(work).items() if k not in rows}
    missing = [i for i in ids if i not in rows and i not in failures]
    if missing and not allow_incomplete:
        raise JobError(f"{work}: {len(missing)} of {len(ids)} items have not been attempted yet "
                       f"(e.g. {missing[:5]}); run the remaining shards first")
    for uid in missing:
        failures[uid] = "not attempted"

    stores = {chunk: _open_chunk(chunk) for chunk in {c for c, _ in rows.values()}}
    dims = {s.dim for s in stores.values() if s.present.any()}
    if len(dims) > 1:
        raise JobError(f"{work}: chunks disagree on the dimension ({sorted(dims)})")
    dim = dims.pop() if dims else int(job["info"].get("dim", 0))
    features = np.zeros((len(ids), dim), dtype=np.float32)  # (N, D)
    present = np.zeros(len(ids), dtype=bool)
    for i, uid in enumerate(ids):
        if uid in rows:
            chunk, row = rows[uid]
            store = stores[chunk]
            try:
                if store.present[row]:
                    vectors, _ = store.get([uid])
                    features[i] = vectors[0]
                    present[i] = True
            except UserError as err:  # the header was fine, the data is not
                raise _chunk_error(chunk, err) from None
    info = dict(job["info"])
    info.update(dim=dim, absent={k: v for k, v in absent.items()},
                failed={k: failures[k] for k in ids if k in failures},
                num_absent=len(absent), num_failed=sum(k in failures for k in ids))
    try:
        write_store(out, ids, features, present, info=info)
    except OSError as err:
        raise JobError(f"cannot write the store {out}: {err.strerror or err}") from None
    if report and ids and not present.any():
        log.warning("%s: every one of its %d vectors is absent (%d failed, %d absent): check the "
                    "media paths (corpus.media_root) and the failure log in %s", out, len(ids),
                    info["num_failed"], len(absent), work)
    return out


# -- command-line helpers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CorpusSource:
    """The ``corpus:`` block of an extraction config: the ``corpus.json`` the job reads.

    Extraction reads a corpus built once by ``multiemo corpus build`` (so every job of a corpus
    and the trainer read the same file, and no job rewrites it). ``media_root`` is where the
    utterances' media paths are resolved (audio / visual extractors); when empty, the
    ``media_root`` the corpus recorded when it was built (IEMOCAP: its release folder; MELD: the
    ``--media-root`` given to ``corpus build``). ``dataset`` and ``root`` are refused with the
    ``corpus build`` command that replaces them.
    """

    path: str = "data/meld/corpus.json"
    media_root: str = ""
    dataset: str = ""  # refused: build the corpus with `multiemo corpus build`
    root: str = ""  # refused, as dataset


def load_corpus(source: CorpusSource) -> Corpus:
    """The corpus an extraction config names (``corpus.path``)."""
    if source.dataset or source.root:
        raise JobError(f"extraction reads corpus.path only: build it once with `multiemo corpus "
                       f"build --dataset {source.dataset or 'NAME'} --root {source.root or 'RELEASE'} "
                       f"--out {source.path}`, then drop corpus.dataset and corpus.root")
    return Corpus.load(source.path)
