"""``multiemo evaluate RUN_DIR``: score a run's checkpoint again and rewrite its report.

Rebuilds the data and the model from the run's ``config.yaml``, loads ``checkpoints/best.pt``
(the checkpoint chosen on validation; ``--checkpoint last`` for the last epoch's) and writes
``predictions_valid.csv``, ``predictions_test.csv`` and the report files. Useful after moving the
features (``data.root=...``) or to check that a run's report is what its checkpoint gives.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multiemo.config import Config, ConfigError, load, resolve_device
from multiemo.data.dataset import DataError
from multiemo.model import build_model
from multiemo.train import load_checkpoint, prepare_data, score_and_report

__all__ = ["evaluate_run", "main"]


def evaluate_run(run_dir: str | Path, checkpoint: str = "best", overrides: list[str] | None = None) -> dict:
    """Score ``run_dir``'s checkpoint; returns the test report dict."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    ckpt_path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml: not a run directory")
    if not ckpt_path.is_file():
        raise ConfigError(f"{ckpt_path} does not exist (has the run finished an epoch?)")
    cfg = load(Config, cfg_path, overrides)
    device = resolve_device(cfg.runtime.device)
    amp = cfg.runtime.amp and device.type == "cuda"
    data = prepare_data(cfg)
    model = build_model(cfg.model).to(device)
    state = load_checkpoint(ckpt_path)
    model.load_state_dict(state["model"])
    extra = {"checkpoint": checkpoint, "epoch": state["epoch"], "seed": cfg.train.seed}
    report = score_and_report(run_dir, cfg, model, data, device, amp, extra)
    print((run_dir / "report.md").read_text())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multiemo evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run directory written by multiemo train")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="e.g. data.root=/new/place/of/the/features")
    args = parser.parse_args(argv)
    try:
        evaluate_run(args.run_dir, args.checkpoint, args.overrides)
    except (ConfigError, DataError, ValueError) as err:
        print(f"multiemo evaluate: error: {err}", file=sys.stderr)
        return 2
    return 0
