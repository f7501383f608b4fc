"""Benchmark: what a sweep and a one-epoch training process spend outside their epochs.

    python benchmarks/bench_sweep.py process              # `multiemo train ... train.epochs=1`, by phase
    python benchmarks/bench_sweep.py overhead --trials 30 # a 30-trial sweep of 3-epoch runs
    python benchmarks/bench_sweep.py workers --trials 8   # 1 worker × 2 threads against 2 workers × 1

Data: synthetic, shaped like MELD (``bench_epoch.make_data``: MELD's dialogue lengths, 13,708
utterances, text 768 / audio 512 / visual 1000), the official MELD recipe.

- ``process`` runs the phases of one ``multiemo train`` process in a fresh interpreter and times
  each: imports, data (corpus, stores, train and valid datasets), model (build, optimizer), the
  epoch, and the report (test data, predictions, report files and plots); then the real command
  end to end.
- ``overhead`` runs a sweep (random sampler over lr, SWFC τ and weight, batch size; no pruner)
  in this process and, per trial, compares the trial's wall time (Optuna's start and end) with the
  sum of its epochs' times (``metrics.jsonl``): the rest is the trial's fixed cost.
- ``workers`` runs the same trials with ``--workers 1`` and ``--workers 2`` (threads split).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
CONFIG = HERE.parent / "configs" / "meld.yaml"

PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
from multiemo.config import Config, load
from multiemo.engine import Prepared, build_training, fit, runtime, start_run, test
from multiemo.run import RunDir
import multiemo.train, multiemo.report
t1 = time.perf_counter()
cfg = load(Config, sys.argv[1], sys.argv[3:])
data = Prepared(cfg); data.dataset("train"); data.dataset("valid")
t2 = time.perf_counter()
run = RunDir(sys.argv[2])
with runtime(cfg):
    t = build_training(cfg, data)
    start_run(t, run, False, [])
    t3 = time.perf_counter()
    fit(t, run)
    t4 = time.perf_counter()
    test(t, run)
    t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "data": t2 - t1, "model": t3 - t2, "epoch": t4 - t3,
                  "report": t5 - t4}))
"""


def data_root(path: str | None) -> Path:
    from bench_epoch import make_data
    root = Path(path or tempfile.mkdtemp(prefix="bench-sweep-"))
    if not (root / "corpus.json").is_file():
        make_data(root)
    return root


def process(root: Path, threads: int) -> None:
    common = [f"data.root={root}", "train.epochs=1", f"runtime.num_threads={threads}", "runtime.device=cpu",
              "data.validation=fraction"]  # the released split: the synthetic data has no dev split
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", PHASES, str(CONFIG), f"{tmp}/phases", *common],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        phases = json.loads(out.stdout.strip().splitlines()[-1])
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "multiemo.cli", "train", "--config", str(CONFIG),
                        "--run-dir", f"{tmp}/cli", *common], capture_output=True, check=True)
        whole = time.perf_counter() - started
    fixed = sum(v for k, v in phases.items() if k != "epoch")
    print("| phase | s |\n| --- | ---: |")
    for name, seconds in phases.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"| outside the epoch (sum) | {fixed:.2f} |")
    print(f"\n`multiemo train ... train.epochs=1` end to end: {whole:.2f} s (interpreter start included)")


def sweep_yaml(root: Path, folder: Path, trials: int, epochs: int) -> Path:
    spec = {"base": str(CONFIG), "overrides": {"data.root": str(root), "train.epochs": epochs,
                                                "runtime.device": "cpu", "data.validation": "fraction"},
            "trials": trials, "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
            "space": {"train.lr": {"low": 3e-5, "high": 1e-3, "log": True},
                      "loss.temperature": {"low": 0.5, "high": 2.0},
                      "loss.swfc_weight": {"low": 0.0, "high": 0.6},
                      "train.batch_size": {"choices": [64, 100]}},
            "final": {"seeds": [0]}}
    path = folder / "bench_sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def overhead(root: Path, trials: int, epochs: int, threads: int) -> None:
    from multiemo.sweep.cli import run_sweep
    from multiemo.sweep.spec import load_spec
    from multiemo.sweep.study import trial_dir

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_spec(sweep_yaml(root, Path(tmp), trials, epochs))
        study_dir = Path(tmp) / "study"
        started = time.perf_counter()
        run_sweep(spec, study_dir, [f"runtime.num_threads={threads}"], final=False)
        wall = time.perf_counter() - started
        import optuna
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        study = optuna.load_study(study_name="study", storage=JournalStorage(
            JournalFileBackend(str(study_dir / "study.journal"))))
        rows = []
        for t in study.get_trials():
            total = (t.datetime_complete - t.datetime_start).total_seconds()
            epochs_s = sum(json.loads(line)["time_s"] for line in
                           (trial_dir(study_dir, t.number) / "metrics.jsonl").read_text().splitlines())
            rows.append((t.number, total, epochs_s, total - epochs_s))
    shares = [100 * (total - ep) / total for _, total, ep, _ in rows]
    print(f"{len(rows)} trials of {epochs} epochs, {threads} threads, whole sweep {wall:.1f} s "
          f"(process start-up and data loading included)\n")
    print("| trial | trial s | epochs s | outside epochs s | outside, % |\n| ---: | ---: | ---: | ---: | ---: |")
    for (number, total, ep, out), share in zip(rows, shares):
        print(f"| {number} | {total:.2f} | {ep:.2f} | {out:.2f} | {share:.1f} |")
    print(f"\noutside the epochs: median {statistics.median(shares):.1f}% of a trial, max {max(shares):.1f}% "
          f"(first trial {shares[0]:.1f}%: it builds the datasets)")


def workers(root: Path, trials: int, epochs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = sweep_yaml(root, Path(tmp), trials, epochs)
        for n in (1, 2):
            started = time.perf_counter()
            extra = ["runtime.num_threads=2"] if n == 1 else []
            subprocess.run([sys.executable, "-m", "multiemo.cli", "sweep", "--config", str(path),
                            "--study-dir", f"{tmp}/w{n}", "--workers", str(n), "--no-final", *extra],
                           check=True, capture_output=True)
            print(f"{trials} trials of {epochs} epochs, {n} worker(s): {time.perf_counter() - started:.1f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("process", "overhead", "workers"))
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", help="folder for the MELD-shaped data (default: temporary)")
    args = parser.parse_args(argv)
    root = data_root(args.data)
    if args.what == "process":
        process(root, args.threads)
    elif args.what == "overhead":
        overhead(root, args.trials, args.epochs, args.threads)
    else:
        workers(root, args.trials, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
