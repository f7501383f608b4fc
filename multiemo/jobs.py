"""The one job-identity check of the toolkit's batch jobs, and their error.

A job (an extraction, ``multiemo predict``, a sweep, a text encoder's fine-tuning) records what
decides its outputs in a JSON file of its folder; :func:`check_job_identity` lets the same job
resume there and refuses any other one. It needs no torch and no extraction code, so the sweep
and predict use it without depending on :mod:`feature_extraction.runner`, which re-exports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from multiemo.data.atomic import atomic_write_text
from multiemo.errors import UserError

__all__ = ["JobError", "check_job_identity", "read_record"]


class JobError(UserError, RuntimeError):
    """A job that cannot run or merge as asked (mixed settings, missing items); names the files."""


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)


def read_record(record: Path, kind: str, remedy: str, fmt: str | None,
                error: type[UserError]) -> dict[str, Any] | None:
    """The parsed JSON ``record`` (None when there is none); a damaged one, or one of another
    format, is an ``error`` naming it."""
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{record}: not a readable job file ({err}); {remedy}") from None
    if not isinstance(data, dict):
        raise error(f"{record}: not a record of a {kind} (a JSON {type(data).__name__}); {remedy}")
    if fmt is not None and data.get("format") != fmt:
        raise error(f"{record}: not a record of a {kind} (format {data.get('format')!r}, "
                    f"expected {fmt!r}); {remedy}")
    return data


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists, other objects as strings)."""
    return json.loads(_canonical(value))


def _shown(value: Any, limit: int = 160) -> str:
    if isinstance(value, list) and len(value) > 5:
        return f"{len(value)} entries"
    text = _canonical(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _differences(old: Any, new: Any, path: str) -> list[str]:
    """``"a.b: old, now new"`` for each leaf where two JSON values differ (dicts are walked)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in [*new, *(k for k in old if k not in new)]
                for line in _differences(old.get(key), new.get(key), f"{path}.{key}")]
    return [] if old == new else [f"{path}: {_shown(old)}, now {_shown(new)}"]


def check_job_identity(record: str | Path | Mapping[str, Any], identity: Mapping[str, Any], *,
                       kind: str, remedy: str, names: Mapping[str, str] | None = None,
                       section: str | None = None, fmt: str | None = None,
                       create: Mapping[str, Any] | None = None, place: str | None = None,
                       error: type[UserError] = JobError) -> dict[str, Any] | None:
    """The one job-identity check: a folder that a job made is reused by that same job only.

    A job records its identity (what decides its outputs: settings, items, model, input, shard
    count) in a JSON file of its folder. A rerun of the same job then resumes from what is there,
    and any other job is refused before it reads or writes anything, so two jobs never mix their
    outputs. Its users: the extraction runner (``job.json``), ``multiemo predict``
    (``predict.json``), a sweep's folder (``sweep.json``) and its Optuna study (the record is
    the study's user attributes, given as a mapping), and a fine-tuned text encoder
    (``finetune.json``, written by the fine-tuning once it is done).

    Args:
        record: the JSON file, or a record already read (then ``place`` names it).
        identity: field → value, compared as JSON values (a tuple equals a list).
        kind: what writes such records, for the messages ("extraction job", "sweep").
        remedy: what the user can do; it ends every message ("delete OUT or ...").
        names: field → how a difference in it is said ("other settings"); default
            "another <field>".
        section: the record keeps the identity under this key (all of it is compared, a field
            recorded but no longer given included); default: its fields at the record's top level
            (other fields of the record, e.g. a path kept for information, are not compared).
        fmt: the record's ``format`` must be this (a file of another kind is refused).
        create: when there is no record, write one (atomically) with these fields besides
            ``format`` and the identity; None leaves writing it to the caller (a record written
            once the job is done).
        place: how messages name a record given as a mapping.
        error: the :class:`~multiemo.errors.UserError` subclass raised.

    Returns:
        The record as read (or as written), or None when there was none and ``create`` is None.

    Raises:
        error: a record that is not readable JSON, is of another ``format``, or holds another
            identity; one line naming the record, the fields that differ (recorded, now) and
            ``remedy``.

    >>> import tempfile
    >>> record = Path(tempfile.mkdtemp()) / "job.json"
    >>> check_job_identity(record, {"shards": 2}, kind="prediction job", remedy="use another --out",
    ...                    create={"version": 1})
    {'version': 1, 'shards': 2}
    >>> check_job_identity(record, {"shards": 2}, kind="prediction job", remedy="use another --out")
    {'version': 1, 'shards': 2}
    >>> check_job_identity(record, {"shards": 3}, kind="prediction job", remedy="use another --out",
    ...                    names={"shards": "another shard count"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    multiemo.jobs.JobError: /.../job.json: made by a different prediction job, with another shard count (shards: 2, now 3); use another --out
    """
    if isinstance(record, Mapping):
        where, path, data = place or "the record", None, dict(record)
        if not (data.get(section) if section else data):
            data = None
    else:
        path = Path(record)
        where, data = str(path), read_record(path, kind, remedy, fmt, error)
    if data is None:
        if create is None or path is None:
            return None
        fields = _plain(identity)
        data = {**({"format": fmt} if fmt else {}), **create,
                **({section: fields} if section else fields)}
        atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
        return data
    recorded = data.get(section) if section else data
    recorded = recorded if isinstance(recorded, dict) else {}
    keys = list(identity) + ([k for k in recorded if k not in identity] if section else [])
    changed = [k for k in keys if recorded.get(k) != identity.get(k)  # fast on a million ids
               and _plain(recorded.get(k)) != _plain(identity.get(k))]
    if changed:
        names = names or {}
        said = " and ".join(dict.fromkeys(names.get(k, f"another {k}") for k in changed))
        lines = [line for k in changed
                 for line in _differences(_plain(recorded.get(k)), _plain(identity.get(k)), k)]
        shown = "; ".join(lines[:4]) + (f"; ... ({len(lines) - 4} more)" if len(lines) > 4 else "")
        raise error(f"{where}: made by a different {kind}, with {said} ({shown}); {remedy}")
    return data
