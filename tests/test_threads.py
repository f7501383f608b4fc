"""One thread setting everywhere: ``default_threads`` (affinity, cgroup quota, OMP_NUM_THREADS,
SLURM_CPUS_PER_TASK), ``set_num_threads`` (0 is that default), ``multiemo predict --threads`` and
``Recognizer.from_pretrained(..., num_threads=N)`` reaching torch."""

import os

import pytest
import torch

from multiemo import config
from multiemo.cli import main as cli
from multiemo.config import ConfigError, default_threads, set_num_threads
from multiemo.recognizer import Recognizer


@pytest.fixture
def box(monkeypatch, tmp_path):
    """An 8-CPU affinity mask, no cgroup files, no thread variables; returns the cgroup paths."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    paths = {"v2": tmp_path / "cpu.max", "quota": tmp_path / "cpu.cfs_quota_us",
             "period": tmp_path / "cpu.cfs_period_us"}
    monkeypatch.setattr(config, "CGROUP_CPU_MAX", paths["v2"])
    monkeypatch.setattr(config, "CGROUP_V1_QUOTA", paths["quota"])
    monkeypatch.setattr(config, "CGROUP_V1_PERIOD", paths["period"])
    for name in config.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return paths


@pytest.fixture
def torch_threads():
    """Torch's thread count restored after the test (it is the process's)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_is_the_affinity_mask(box, monkeypatch):
    assert default_threads() == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert default_threads() == 1


def test_default_without_affinity_is_the_cpu_count(box, monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert default_threads() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_threads() == 1


@pytest.mark.parametrize("text, expected", [("150000 100000\n", 2), ("400000 100000", 4),
                                            ("50000 100000", 1), ("max 100000\n", 8),
                                            ("2000000 100000", 8), ("garbage", 8), ("", 8)])
def test_the_cgroup_v2_quota_caps_the_default(box, text, expected):
    box["v2"].write_text(text)
    assert default_threads() == expected


def test_the_cgroup_v1_quota_caps_the_default(box):
    box["quota"].write_text("300000\n")
    box["period"].write_text("100000\n")
    assert default_threads() == 3
    box["quota"].write_text("-1\n")  # no limit
    assert default_threads() == 8
    box["v2"].write_text("max 100000")  # v2 says no limit: v1 is not read
    box["quota"].write_text("100000\n")
    assert default_threads() == 8


@pytest.mark.parametrize("omp, slurm, expected", [("3", None, 3), (None, "5", 5), ("4", "2", 2),
                                                  ("16", None, 8), ("0", None, 8), ("abc", "-2", 8),
                                                  (" 2 ", None, 2)])
def test_thread_variables_cap_the_default(box, monkeypatch, omp, slurm, expected):
    for name, value in (("OMP_NUM_THREADS", omp), ("SLURM_CPUS_PER_TASK", slurm)):
        if value is not None:
            monkeypatch.setenv(name, value)
    assert default_threads() == expected


def test_the_smallest_limit_wins(box, monkeypatch):
    box["v2"].write_text("600000 100000")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert default_threads() == 6
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_threads() == 2


def test_set_num_threads_zero_is_the_default(box, monkeypatch, torch_threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    set_num_threads(0)
    assert torch.get_num_threads() == 3
    set_num_threads(1)
    assert torch.get_num_threads() == 1
    with pytest.raises(ConfigError, match="runtime.num_threads must be 0"):
        set_num_threads(-1, "runtime.num_threads")


def test_predict_threads_reach_torch(trained, tmp_path, box, monkeypatch, torch_threads):
    args = ["predict", "--model", str(trained["model"]), "--input", str(trained["source"]),
            "--no-progress", "--device", "cpu"]
    torch.set_num_threads(2)
    assert cli([*args, "--out", str(tmp_path / "one"), "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert cli([*args, "--out", str(tmp_path / "default")]) == 0  # 0: the default
    assert torch.get_num_threads() == 3
    assert (tmp_path / "one" / "predictions.csv").read_text() == \
        (tmp_path / "default" / "predictions.csv").read_text()


@pytest.mark.parametrize("value", ["-1", "two"])
def test_predict_threads_must_be_a_count(trained, tmp_path, capsys, value):
    assert cli(["predict", "--model", str(trained["model"]), "--input", str(trained["source"]),
                "--out", str(tmp_path / "p"), "--threads", value]) == 2
    assert "--threads: expected 0 or a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_recognizer_threads_reach_torch(trained, box, monkeypatch, torch_threads):
    torch.set_num_threads(2)
    recognizer = Recognizer.from_pretrained(trained["model"], device="cpu", num_threads=1)
    assert torch.get_num_threads() == 1 and recognizer.num_threads == 1
    assert [p.prediction for p in recognizer.predict(trained["source"])]
    assert torch.get_num_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    Recognizer.from_pretrained(str(trained["model"]), device="cpu")
    assert torch.get_num_threads() == 3
    with pytest.raises(ConfigError, match="num_threads must be 0"):
        Recognizer.from_pretrained(trained["model"], device="cpu", num_threads=-1)
