"""Atomic writes give files the umask's permissions (mkstemp alone would make them 0600)."""

import os
import stat

import pytest

from multiemo.data.atomic import atomic_path, atomic_write_text, process_umask


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
