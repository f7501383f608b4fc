"""Optional experiment tracking (wandb) of a run: the config, each epoch's metrics, the test table.

``runtime.wandb=disabled`` (the default) makes :class:`Tracker` do nothing and never imports
wandb; ``offline`` or ``online`` need ``pip install multiemo[tracking]``. A sweep passes a
``group`` so that its trials and final runs are one wandb group.
"""

from __future__ import annotations

from pathlib import Path

from multiemo.config import Config, to_dict

__all__ = ["Tracker"]


class Tracker:
    """Logs one run to wandb; does nothing when ``runtime.wandb=disabled``.

    ``group`` puts runs of one sweep in one wandb group (each trial and each final seed a run).
    """

    def __init__(self, cfg: Config, run_dir: Path, group: str | None = None,
                 name: str | None = None) -> None:
        self.run = None
        if cfg.runtime.wandb == "disabled":
            return
        import wandb  # an optional dependency: pip install multiemo[tracking]

        self.wandb = wandb
        self.run = wandb.init(project=cfg.runtime.wandb_project, mode=cfg.runtime.wandb,
                              dir=str(run_dir), config=to_dict(cfg), name=name or run_dir.name,
                              group=group, reinit="finish_previous")

    def log_epoch(self, record: dict) -> None:
        """One epoch's metrics record (as in ``metrics.jsonl``), flattened: ``train/loss``..."""
        if self.run is not None:
            flat = {"epoch": record["epoch"], "lr": record["lr"]}
            for split in ("train", "valid"):
                flat.update({f"{split}/{k}": v for k, v in record[split].items()})
            self.run.log(flat, step=record["epoch"])

    def finish(self, report: dict | None, run_dir: Path) -> None:
        """End the wandb run; with the test ``report``, log its per-class table and confusion matrix."""
        if self.run is None:
            return
        if report is not None:
            scores = report["scores"]
            table = self.wandb.Table(columns=["class", "f1"],
                                     data=[[c, f] for c, f in zip(report["labels"], scores["per_class_f1"])])
            self.run.log({"test/per_class_f1": table, "test/weighted_f1": scores["weighted_f1"],
                          "test/confusion_matrix": self.wandb.Image(str(run_dir / "confusion_matrix.png"))})
        self.run.finish()
