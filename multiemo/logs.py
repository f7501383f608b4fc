"""The one logging setup of the command line, and a run's ``train.log``.

The packages (``multiemo``, ``feature_extraction``) log through :mod:`logging` and configure
nothing when imported or called: from Python they are quiet (Python's own last-resort handler
shows warnings only) unless the caller sets logging up. Every ``multiemo`` command calls
:func:`setup_logging` once (in :func:`multiemo.cli.main`), so train, evaluate, sweep, predict
and the extract commands all log alike:

- information (epochs, trials, progress notes) to standard output, warnings and errors to
  standard error, each line ``HH:MM:SS message`` (a warning says ``warning:``);
- each line is written and flushed as it comes, so it shows at once when the output goes to a
  file or a pipe;
- Optuna, when the command has imported it (``multiemo sweep``), logs errors only: the sweep
  prints its own line per trial.

:func:`run_log` adds a run folder's ``train.log`` for the time a run trains in it; with
``echo=False`` (a sweep's trials) the run's information lines go to its ``train.log`` only,
and the console keeps the sweep's own lines.

>>> import logging, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with run_log(folder / "train.log", echo=False):
...     logging.getLogger("multiemo").info("epoch 1")
>>> (folder / "train.log").read_text().split(" ", 1)[1]
'epoch 1\\n'
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from pathlib import Path
from typing import Iterator

__all__ = ["setup_logging", "run_log", "LOGGERS"]

#: the loggers of the packages (every module logs under one of them)
LOGGERS = ("multiemo", "feature_extraction")
_FORMAT = "%(asctime)s %(message)s"
_DATE = "%H:%M:%S"
_muted: contextvars.ContextVar[bool] = contextvars.ContextVar("multiemo_console_muted", default=False)


class _LineFormatter(logging.Formatter):
    """``HH:MM:SS message``; a warning or an error says so."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        if record.levelno >= logging.WARNING:
            stamp, _, message = line.partition(" ")
            line = f"{stamp} {record.levelname.lower()}: {message}"
        return line


class _ConsoleHandler(logging.StreamHandler):
    """Information to standard output, warnings and errors to standard error: the streams in
    force when the line is written (so a redirected or captured stream gets it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and _muted.get():
            return  # a run that does not echo (a sweep's trial): its train.log has the line
        self.stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        super().emit(record)  # StreamHandler flushes after each line


def setup_logging(level: int = logging.INFO) -> None:
    """Log the packages' lines to the console (see the module's docstring); called once by the
    command line. Calling it again replaces the handler, never adds a second one."""
    handler = _ConsoleHandler()
    handler.setFormatter(_LineFormatter(_FORMAT, _DATE))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
    optuna = sys.modules.get("optuna")  # imported by the sweep's module only (never imported here)
    if optuna is not None:  # our own line per trial; no Optuna line nor traceback per failed trial
        optuna.logging.set_verbosity(optuna.logging.ERROR)


@contextlib.contextmanager
def run_log(path: str | Path, echo: bool = True) -> Iterator[None]:
    """Also log ``multiemo``'s lines (information and up) to the file ``path`` for the block;
    ``echo=False`` keeps the block's information lines off the console."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("multiemo")
    handler = logging.FileHandler(path)
    handler.setFormatter(_LineFormatter(_FORMAT, _DATE))
    handler.setLevel(logging.INFO)
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    token = _muted.set(not echo)
    try:
        yield
    finally:
        _muted.reset(token)
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)
