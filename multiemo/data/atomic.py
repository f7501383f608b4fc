"""Atomic file writes: a reader (or a rerun after a kill) never sees a half-written file, and
the file gets the permissions a plain ``open()`` would give it (``0666`` less the umask: 0644
under the common 022), so a group can read what a job wrote.

>>> import tempfile, os
>>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
>>> with atomic_path(target) as tmp:
...     _ = open(tmp, "w").write("done")
>>> open(target).read()
'done'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from multiemo.errors import UserError

__all__ = ["atomic_path", "atomic_write_text", "process_umask", "follow_umask", "OutputError"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else delete it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"{path} cannot be written: {err.strerror or err} (is {path.parent} a "
                          f"writable folder?)") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp makes 0600: give the file what open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutputError(UserError):
    """An output path that cannot be written (a read-only or missing folder, a full disk)."""


def process_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` where Linux reports it (setting it
    to read it back is not thread-safe), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(folder: str | Path) -> None:
    """Give every file under ``folder`` ``0666`` less the umask: for what other libraries write
    with private modes (safetensors and ``save_pretrained`` make 0600 files) or copy with their
    source's modes, inside a folder the toolkit makes (a fine-tuned encoder, a model folder)."""
    mode = 0o666 & ~process_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
