"""One logging setup for every command; the library logs quietly; lines reach a file at once."""

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from multiemo.logs import run_log, setup_logging

REPO = Path(__file__).resolve().parent.parent


def python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_importing_and_calling_the_library_configures_no_logging():
    done = python("""
import logging, optuna, pathlib, tempfile
verbosity = optuna.logging.get_verbosity()
import multiemo, multiemo.cli, multiemo.engine, multiemo.train, multiemo.evaluate, multiemo.predict
import multiemo.sweep.cli, multiemo.sweep.study, feature_extraction.runner, feature_extraction._jobs
from multiemo.logs import run_log
for name in ("", "multiemo", "feature_extraction"):
    assert logging.getLogger(name).handlers == [], name
assert logging.getLogger("multiemo").level == logging.NOTSET
assert optuna.logging.get_verbosity() == verbosity
log = pathlib.Path(tempfile.mkdtemp()) / "train.log"
with run_log(log):  # a run from Python (train, a sweep trial): its train.log, no console
    logging.getLogger("multiemo").info("epoch 1/1")
    logging.getLogger("multiemo").warning("careful")
assert "epoch 1/1" in log.read_text() and "warning: careful" in log.read_text()
assert logging.getLogger("multiemo").handlers == []
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_log_lines_are_in_the_output_file_while_the_command_still_runs(tmp_path):
    out, err, ready = tmp_path / "out.txt", tmp_path / "err.txt", tmp_path / "ready"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([sys.executable, "-c", f"""
import logging, pathlib, time
from multiemo.logs import setup_logging
setup_logging()
logging.getLogger("multiemo").info("epoch 1/30  loss 1.2")
logging.getLogger("feature_extraction").warning("a store is empty")
pathlib.Path({str(ready)!r}).touch()
time.sleep(60)
"""], cwd=REPO, stdout=fo, stderr=fe,  # buffered, as a plain run writing to a file is
                                env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})
        try:
            deadline = time.time() + 60
            while not ready.exists() and time.time() < deadline:
                time.sleep(0.1)
            assert ready.exists()
            assert re.fullmatch(r"\d\d:\d\d:\d\d epoch 1/30  loss 1.2\n", out.read_text())
            assert re.fullmatch(r"\d\d:\d\d:\d\d warning: a store is empty\n", err.read_text())
        finally:
            proc.kill()
            proc.wait()


def test_a_run_that_does_not_echo_logs_to_its_file_only(tmp_path, capsys):
    setup_logging()
    setup_logging()  # again: still one console handler
    log = logging.getLogger("multiemo")
    with run_log(tmp_path / "quiet.log", echo=False):
        log.info("trial epoch")
        log.warning("trial warning")
    with run_log(tmp_path / "loud.log"):
        log.info("run epoch")
    log.info("after the runs")
    printed = capsys.readouterr()
    assert "trial epoch" not in printed.out and "warning: trial warning" in printed.err
    assert printed.out.count("run epoch") == 1 and "after the runs" in printed.out
    assert "trial epoch" in (tmp_path / "quiet.log").read_text()
    assert "after the runs" not in (tmp_path / "loud.log").read_text()


def test_no_module_sets_up_logging_but_multiemo_logs():
    setups = re.compile(r"basicConfig|\.addHandler\(|\.propagate\s*=|set_verbosity\(optuna")
    offenders = [f"{p.relative_to(REPO)}:{n}" for package in ("multiemo", "feature_extraction")
                 for p in (REPO / package).rglob("*.py") if p.name != "logs.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if setups.search(line)]
    assert offenders == []
