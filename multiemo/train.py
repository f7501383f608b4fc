"""``multiemo train``: train MultiEMO on feature stores, select on validation, test once.

The loop (:func:`train`) is kept in plain sight: every epoch trains, scores the validation
split, writes a metrics line and an atomic ``last.pt``, and replaces ``best.pt`` when the
validation weighted-F1 improves. The test split is scored once, after the last epoch, with the
best checkpoint. ``--resume RUN_DIR`` continues from ``last.pt`` to the same result an
uninterrupted run gives (the shuffling of each epoch is seeded from the seed and the epoch, and
the RNG state travels in the checkpoint).

Run directory::

    config.yaml  run.json  metrics.jsonl  train.log
    checkpoints/best.pt  checkpoints/last.pt
    predictions_valid.csv  predictions_test.csv
    report.md  report.csv  report.json  confusion_matrix.png  per_class_f1.png
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import sys
import time
from pathlib import Path

import torch

from multiemo.config import Config, ConfigError, dump_yaml, load, resolve_device, to_dict
from multiemo.data.atomic import atomic_path, atomic_write_text
from multiemo.data.corpus import Corpus
from multiemo.data.dataset import (Batch, DataError, DialogueDataset, collate, open_stores,
                                   split_dialogues)
from multiemo.losses import MultiEMOLoss, build_loss
from multiemo.metrics import classification_scores
from multiemo.model import MultiEMO, build_model, count_parameters

__all__ = ["train", "train_seeds", "main", "prepare_data", "predict", "resolve_device",
           "save_predictions", "score_and_report", "load_checkpoint", "Prepared"]

log = logging.getLogger("multiemo")


# -- data -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Prepared:
    corpus: Corpus
    datasets: dict[str, DialogueDataset]  # train, valid, test


def prepare_data(cfg: Config) -> Prepared:
    """Load the corpus and the stores of the configured modalities; split; check against the config."""
    root = Path(cfg.data.root)
    corpus_path = Path(cfg.data.corpus) if Path(cfg.data.corpus).is_absolute() else root / cfg.data.corpus
    corpus = Corpus.load(corpus_path)
    if len(corpus.labels) != cfg.model.num_classes:
        raise DataError(f"{corpus_path}: the corpus has {len(corpus.labels)} classes "
                        f"{list(corpus.labels)} but model.num_classes={cfg.model.num_classes}")
    paths = {m: getattr(cfg.data, m) for m in cfg.model.modalities}
    dims = {m: getattr(cfg.model, f"{m}_dim") for m in cfg.model.modalities}
    stores = open_stores(root, paths, dims)
    splits = split_dialogues(corpus, cfg.data.validation, cfg.data.valid_fraction, cfg.data.valid_seed)
    datasets = {name: DialogueDataset(corpus, dialogues, stores, cfg.model.num_speakers, cfg.data.missing)
                for name, dialogues in splits.items()}
    return Prepared(corpus, datasets)


def loader(dataset: DialogueDataset, batch_size: int, shuffle_seed: int | None = None):
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=generator is not None,
                                       generator=generator, collate_fn=collate)


# -- one pass ---------------------------------------------------------------------------------

def forward_losses(model: MultiEMO, criterion: MultiEMOLoss, batch: Batch, amp: bool):
    """Forward a batch; losses over its real utterances. Returns (total, parts, logits, labels)."""
    with torch.autocast(device_type=batch.mask.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(batch.features, batch.speaker_mask, batch.mask, batch.present)
    labels = batch.labels[batch.mask]  # (N,), the order of the packed outputs
    logits = out.packed_logits.float()  # (N, C)
    total, parts = criterion(logits, out.packed_z, [out.packed_fused[m] for m in model.modalities], labels)
    return total, parts, logits, labels


def run_epoch(model, criterion, data, device, amp, optimizer=None) -> dict:
    """Train (with ``optimizer``) or score one pass. Losses are utterance-weighted means."""
    training = optimizer is not None
    model.train(training)
    sums: dict[str, float] = {}
    count = 0
    preds, golds = [], []
    with torch.set_grad_enabled(training):
        for batch in data:
            batch = batch.to(device)
            total, parts, logits, labels = forward_losses(model, criterion, batch, amp)
            if training:
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
            n = labels.numel()
            count += n
            for key, value in {"loss": total.detach(), **parts}.items():
                sums[key] = sums.get(key, 0.0) + float(value) * n
            preds.append(logits.argmax(-1).cpu())
            golds.append(labels.cpu())
    y_pred, y_true = torch.cat(preds).numpy(), torch.cat(golds).numpy()
    scores = classification_scores(y_true, y_pred, criterion.num_classes)
    return {**{k: v / count for k, v in sums.items()}, "weighted_f1": scores["weighted_f1"],
            "macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"]}


@torch.no_grad()
def predict(model: MultiEMO, data, device: torch.device, amp: bool):
    """Per utterance: (utterance ids, dialogue ids, gold labels, class probabilities)."""
    model.eval()
    uids, dids, golds, probs = [], [], [], []
    for batch in data:
        batch = batch.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(batch.features, batch.speaker_mask, batch.mask, batch.present)
        probs.append(torch.softmax(out.packed_logits.float(), -1).cpu())
        golds.append(batch.labels[batch.mask].cpu())
        for did, ids in zip(batch.dialogue_ids, batch.utterance_ids):
            uids.extend(ids)
            dids.extend([did] * len(ids))
    return uids, dids, torch.cat(golds).numpy(), torch.cat(probs).numpy()


def save_predictions(path: Path, labels: tuple[str, ...], uids, dids, golds, probs) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # quotes any id that holds a comma
    writer.writerow(["utterance_id", "dialogue_id", "label", "prediction"] + [f"p_{c}" for c in labels])
    for uid, did, gold, p in zip(uids, dids, golds, probs):
        writer.writerow([uid, did, labels[gold], labels[int(p.argmax())]] + [f"{x:.6f}" for x in p])
    atomic_write_text(path, text.getvalue())


def score_and_report(run_dir: Path, cfg: Config, model: MultiEMO, data: Prepared,
                     device: torch.device, amp: bool, extra: dict) -> dict:
    """Predictions on valid and test (``predictions_<split>.csv``) and the test report."""
    from multiemo.report import write_report  # matplotlib only when a report is written

    for split in ("valid", "test"):
        uids, dids, golds, probs = predict(model, loader(data.datasets[split], cfg.train.batch_size),
                                           device, amp)
        save_predictions(run_dir / f"predictions_{split}.csv", data.corpus.labels, uids, dids, golds, probs)
    return write_report(run_dir, golds, probs.argmax(1), data.corpus.labels, cfg.dataset,
                        groups=dids, extra=extra)


# -- checkpoints ------------------------------------------------------------------------------

def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file and rename: a kill never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# -- the loop ---------------------------------------------------------------------------------

def train(cfg: Config, run_dir: str | Path, resume: bool = False, echo: bool = True) -> dict:
    """Train one seed into ``run_dir``; returns the test report (a dict).

    The log goes to ``run_dir/train.log`` and, with ``echo``, to standard output.
    """
    run_dir = Path(run_dir)
    _setup_logging(run_dir, echo)
    if cfg.runtime.num_threads:
        torch.set_num_threads(cfg.runtime.num_threads)
    device = resolve_device(cfg.runtime.device)
    amp = cfg.runtime.amp and device.type == "cuda"
    deterministic = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        return _train(cfg, run_dir, resume, device, amp)
    finally:
        torch.use_deterministic_algorithms(deterministic)  # leave the caller's process as it was


def _train(cfg: Config, run_dir: Path, resume: bool, device: torch.device, amp: bool) -> dict:
    """The loop of :func:`train`, once logging, device and determinism are set."""
    ckpt_dir = run_dir / "checkpoints"
    seed = cfg.train.seed
    torch.manual_seed(seed)
    data = prepare_data(cfg)
    labels = data.corpus.labels
    train_set, valid_set, test_set = (data.datasets[s] for s in ("train", "valid", "test"))
    model = build_model(cfg.model).to(device)
    num_params = count_parameters(model)
    criterion = build_loss(cfg.loss, train_set.class_counts(cfg.model.num_classes)).to(device)
    # the fused kernel: the same Adam update, several times faster than the per-tensor loop
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                 fused=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.train.plateau_factor, patience=cfg.train.plateau_patience,
        threshold=cfg.train.plateau_threshold)

    history: list[dict] = []
    best = {"epoch": 0, "weighted_f1": -1.0}
    start_epoch = 1
    if resume and (ckpt_dir / "last.pt").is_file():
        state = load_checkpoint(ckpt_dir / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        history, best = json.loads(state["history"]), json.loads(state["best"])
        start_epoch = state["epoch"] + 1
        log.info("resuming %s after epoch %d", run_dir, state["epoch"])
    else:
        dump_yaml(cfg, run_dir / "config.yaml")
    # metrics.jsonl always mirrors the checkpointed history, whatever a kill left behind
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    run_info = {"dataset": cfg.dataset, "labels": list(labels), "seed": seed, "device": str(device),
                "amp": amp, "num_parameters": num_params, "modalities": list(cfg.model.modalities),
                "num_dialogues": {s: len(d) for s, d in data.datasets.items()},
                "num_utterances": {s: int(len(d.labels)) for s, d in data.datasets.items()},
                "train_class_counts": train_set.class_counts(cfg.model.num_classes),
                "best_epoch": best["epoch"], "finished": False}
    atomic_write_text(run_dir / "run.json", json.dumps(run_info, indent=1))
    log.info("MultiEMO on %s: %s parameters (all used in the forward pass); modalities %s; device %s%s",
             cfg.dataset, f"{num_params:,}", ",".join(cfg.model.modalities), device, " (bf16 autocast)" if amp else "")
    log.info("dialogues train/valid/test: %d/%d/%d", len(train_set), len(valid_set), len(test_set))
    tracker = _Tracker(cfg, run_dir)

    valid_loader = loader(valid_set, cfg.train.batch_size)
    for epoch in range(start_epoch, cfg.train.epochs + 1):
        started = time.perf_counter()
        train_loader = loader(train_set, cfg.train.batch_size, shuffle_seed=seed * 100_003 + epoch)
        train_metrics = run_epoch(model, criterion, train_loader, device, amp, optimizer)
        valid_metrics = run_epoch(model, criterion, valid_loader, device, amp)
        scheduler.step(valid_metrics["loss"])
        record = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train": train_metrics,
                  "valid": valid_metrics, "time_s": round(time.perf_counter() - started, 3)}
        history.append(record)
        improved = valid_metrics["weighted_f1"] > best["weighted_f1"]
        if improved:
            best = {"epoch": epoch, "weighted_f1": valid_metrics["weighted_f1"]}
            save_checkpoint({"model": model.state_dict(), "epoch": epoch}, ckpt_dir / "best.pt")
        save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                         "epoch": epoch, "history": json.dumps(history), "best": json.dumps(best)},
                        ckpt_dir / "last.pt")
        with open(run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        tracker.log_epoch(record)
        log.info("epoch %d/%d  loss %.4f (ce %.4f swfc %.4f hgr %.4f)  valid loss %.4f w-F1 %.2f acc %.2f%s  %.1fs",
                 epoch, cfg.train.epochs, train_metrics["loss"], train_metrics.get("ce", 0.0),
                 train_metrics.get("swfc", 0.0), train_metrics.get("hgr", 0.0), valid_metrics["loss"],
                 100 * valid_metrics["weighted_f1"], 100 * valid_metrics["accuracy"],
                 "  *best*" if improved else "", record["time_s"])

    # test, once, with the checkpoint chosen on validation
    model.load_state_dict(load_checkpoint(ckpt_dir / "best.pt")["model"])
    report = score_and_report(run_dir, cfg, model, data, device, amp,
                              extra={"best_epoch": best["epoch"], "seed": seed,
                                     "valid_weighted_f1": best["weighted_f1"]})
    run_info.update(best_epoch=best["epoch"], finished=True)
    atomic_write_text(run_dir / "run.json", json.dumps(run_info, indent=1))
    tracker.finish(report, run_dir)
    log.info("best epoch %d (validation weighted-F1 %.2f); test weighted-F1 %.2f\n%s", best["epoch"],
             100 * best["weighted_f1"], report["scores"]["weighted_f1"], (run_dir / "report.md").read_text())
    return report


class _Tracker:
    """Optional wandb logging; does nothing when ``runtime.wandb=disabled``."""

    def __init__(self, cfg: Config, run_dir: Path) -> None:
        self.run = None
        if cfg.runtime.wandb == "disabled":
            return
        import wandb  # an optional dependency: pip install multiemo[tracking]

        self.wandb = wandb
        self.run = wandb.init(project=cfg.runtime.wandb_project, mode=cfg.runtime.wandb,
                              dir=str(run_dir), config=to_dict(cfg), name=run_dir.name,
                              reinit="finish_previous")

    def log_epoch(self, record: dict) -> None:
        if self.run is not None:
            flat = {"epoch": record["epoch"], "lr": record["lr"]}
            for split in ("train", "valid"):
                flat.update({f"{split}/{k}": v for k, v in record[split].items()})
            self.run.log(flat, step=record["epoch"])

    def finish(self, report: dict, run_dir: Path) -> None:
        if self.run is None:
            return
        scores = report["scores"]
        table = self.wandb.Table(columns=["class", "f1"],
                                 data=[[c, f] for c, f in zip(report["labels"], scores["per_class_f1"])])
        self.run.log({"test/per_class_f1": table, "test/weighted_f1": scores["weighted_f1"],
                      "test/confusion_matrix": self.wandb.Image(str(run_dir / "confusion_matrix.png"))})
        self.run.finish()


def _setup_logging(run_dir: Path, echo: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    handlers = [logging.FileHandler(run_dir / "train.log")]
    if echo:
        handlers.append(logging.StreamHandler(sys.stdout))
    for handler in handlers:
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.propagate = False


# -- several seeds and the command line -----------------------------------------------------

def train_seeds(cfg: Config, run_dir: Path, seeds: list[int], resume: bool = False) -> dict:
    """One run per seed under ``run_dir/seed-<seed>``, then ``summary.md``/``summary.json``."""
    from multiemo.report import aggregate, format_table

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "seeds.json", json.dumps({"seeds": seeds}))
    reports = []
    for seed in seeds:
        seed_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        seed_dir = run_dir / f"seed-{seed}"
        done = (seed_dir / "report.json").is_file() and json.loads((seed_dir / "run.json").read_text()).get("finished")
        if resume and done:
            reports.append(json.loads((seed_dir / "report.json").read_text()))
            continue
        reports.append(train(seed_cfg, seed_dir, resume=resume))
    names = [f"seed {s}" for s in seeds]
    summary = aggregate(reports, names)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    table = format_table(reports, names)
    atomic_write_text(run_dir / "summary.md", table + "\n")
    print(f"\n{len(seeds)} seeds ({', '.join(map(str, seeds))}), mean ± std:\n{table}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="multiemo train", description="Train MultiEMO; the best epoch is chosen on validation "
        "weighted-F1 and only that checkpoint is scored on test.")
    parser.add_argument("--config", help="YAML config (configs/meld.yaml, configs/iemocap.yaml)")
    parser.add_argument("--run-dir", help="folder for this run (created)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--seeds", help="comma-separated seeds: one run each, then mean ± std")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=data/meld train.epochs=5")
    args = parser.parse_args(argv)
    try:
        if args.resume:
            run_dir = Path(args.resume)
            cfg_path = run_dir / "config.yaml"
            seeds_file = run_dir / "seeds.json"
            if seeds_file.is_file():  # a multi-seed parent: its config is in the first seed's folder
                seeds = json.loads(seeds_file.read_text())["seeds"]
                cfg_path = run_dir / f"seed-{seeds[0]}" / "config.yaml"
                cfg = load(Config, cfg_path, args.overrides)
                train_seeds(cfg, run_dir, seeds, resume=True)
                return 0
            if not cfg_path.is_file():
                raise ConfigError(f"{run_dir} has no config.yaml: not a run directory")
            train(load(Config, cfg_path, args.overrides), run_dir, resume=True)
            return 0
        if not args.run_dir:
            raise ConfigError("--run-dir is required (or --resume RUN_DIR)")
        cfg = load(Config, args.config, args.overrides)
        run_dir = Path(args.run_dir)
        if (run_dir / "checkpoints" / "last.pt").is_file() or (run_dir / "seeds.json").is_file():
            raise ConfigError(f"{run_dir} already holds a run: use --resume {run_dir} or another --run-dir")
        if args.seeds:
            try:
                seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
            except ValueError:
                raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
            train_seeds(cfg, run_dir, seeds)
        else:
            train(cfg, run_dir)
    except (ConfigError, DataError, ValueError) as err:
        print(f"multiemo train: error: {err}", file=sys.stderr)
        return 2
    return 0
