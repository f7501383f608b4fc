"""``multiemo evaluate RUN_DIR``: score a run's checkpoint again, into a folder of its own.

Rebuilds the data and the model from the run's ``config.yaml``, loads ``checkpoints/best.pt``
(the checkpoint chosen on validation; ``--checkpoint last`` for the last epoch's) and writes
``predictions_valid.csv``, ``predictions_test.csv`` and the report files into
``RUN_DIR/evaluations/<checkpoint>/`` (``--name`` to choose another sub-folder), with a
``run.json`` that names the checkpoint, its epoch and the overrides. The run's own report, made
from the checkpoint chosen on validation, is never overwritten. Useful after moving the features
(``data.root=...``) or to check that a run's report is what its checkpoint gives.
"""

from __future__ import annotations

import sys
from pathlib import Path

from multiemo.config import Config, load
from multiemo.engine import build_training, runtime, test
from multiemo.run import RunDir

__all__ = ["evaluate_run", "run_command"]


def evaluate_run(run_dir: str | Path, checkpoint: str = "best", overrides: list[str] | None = None,
                 name: str | None = None) -> dict:
    """Score ``run_dir``'s checkpoint into ``run_dir/evaluations/<name>``; returns the test report."""
    run = RunDir(run_dir).require()
    cfg = load(Config, run.config, overrides)
    out = run.evaluation(name or checkpoint)
    with run.locked(), runtime(cfg):
        t = build_training(cfg)
        out.path.mkdir(parents=True, exist_ok=True)
        scored = run.record()
        out.start(dataset=cfg.dataset, labels=t.data.labels, seed=cfg.train.seed,
                  run_dir=str(run.path), overrides=overrides or (),
                  select_metric=scored.select_metric, best_epoch=scored.best_epoch,
                  num_dialogues=scored.num_dialogues, num_utterances=scored.num_utterances)
        report = test(t, run, checkpoint, out=out)
    print((out.path / "report.md").read_text())
    print(f"wrote {out.path}", file=sys.stderr)
    return report


def run_command(args) -> int:
    """``multiemo evaluate`` (the options are declared in :mod:`multiemo.cli`)."""
    evaluate_run(args.run_dir, args.checkpoint, args.overrides, args.name)
    return 0

