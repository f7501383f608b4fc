"""Atomic writes give files the umask's permissions (mkstemp alone would make them 0600)."""

import os
import stat

import pytest

from multiemo.cli import main as cli
from multiemo.data.atomic import OutputError, atomic_path, atomic_write_text, process_umask


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_files_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        assert process_umask() == mask
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "b.bin") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"x")
    finally:
        os.umask(old)
    for name in ("a.json", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "c.txt") as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    """/proc refuses new files even to root (a read-only folder would not stop root)."""
    with pytest.raises(OutputError, match=r"/proc/x/a.json cannot be written"):
        atomic_write_text("/proc/x/a.json", "{}")
    rows = tmp_path / "c.csv"
    rows.write_text("dialogue_id,utterance_index,speaker,text,label,split\nd,0,A,hi,joy,train\n")
    assert cli(["corpus", "build", "--dataset", "conversations", "--root", str(rows),
                "--out", "/proc/multiemo/corpus.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and "/proc/multiemo" in err[0], err
