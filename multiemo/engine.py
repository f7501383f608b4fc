"""The training engine: build a training from a config, fit it, test the chosen checkpoint.

``multiemo train``, ``multiemo evaluate``, ``multiemo sweep`` and the benchmarks all go through
these three steps, so there is one rule for each thing (selection, checkpoints, the test):

- :func:`build_training` makes the data (through a :class:`DataCache`, so a sweep worker reads
  the stores once for many trials), the model, the loss, the optimizer and the scheduler;
- :func:`fit` runs the epochs on train and validation only, keeps ``best.pt`` (the epoch of
  best validation ``train.select_metric``) and ``last.pt`` (for resume), and returns the best
  validation result. It never builds the test split;
- :func:`test` scores a checkpoint once on validation and test and writes the predictions and
  the report.

The test split is read only by :func:`test`: the data of a split is loaded when first asked for.

:func:`opened_run` gives a run folder to train in (its lock, its ``train.log``, its record
written by :func:`start_run`); the run record itself is :mod:`multiemo.run`'s.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from multiemo.config import Config, resolve_device, resolve_path, set_num_threads, to_dict
from multiemo.data.atomic import atomic_path, atomic_write_text
from multiemo.data.corpus import Corpus
from multiemo.data.datasets import excluded_class_index, primary_metric
from multiemo.data.dataset import Batch, DataError, DialogueDataset, collate, open_stores
from multiemo.data.splits import ValidationRule, check_learned_from
from multiemo.errors import UserError
from multiemo.losses import MultiEMOLoss, build_loss
from multiemo.losses.objective import LOSS_TERMS
from multiemo.metrics import classification_scores
from multiemo.model import MultiEMO, build_model, components_of, count_parameters
from multiemo.logs import run_log
from multiemo.run import Resume, RunDir, RunError, ScoredFrom, Stopped

__all__ = ["Prepared", "DataCache", "Training", "build_training", "FitResult",
           "fit", "test", "score_validation", "start_run", "opened_run", "Diverged", "runtime", "loader", "run_epoch", "predict",
           "save_predictions", "load_checkpoint", "save_checkpoint"]

log = logging.getLogger("multiemo")
SPLITS = ("train", "valid", "test")


class Diverged(UserError):
    """The training loss became NaN or inf: the run stops and is marked failed."""


# -- data ---------------------------------------------------------------------------------------

class Prepared:
    """A corpus, its train/valid/test dialogues, and the datasets, each built on first use."""

    def __init__(self, cfg: Config) -> None:
        root = Path(cfg.data.root)
        path = resolve_path(root, cfg.data.corpus)
        self.corpus = Corpus.load(path)
        if len(self.corpus.labels) != cfg.model.num_classes:
            raise DataError(f"{path}: the corpus has {len(self.corpus.labels)} classes "
                            f"{list(self.corpus.labels)} but model.num_classes={cfg.model.num_classes}")
        modalities = cfg.model.modalities
        self.stores = open_stores(root, {m: getattr(cfg.data, m) for m in modalities},
                                  {m: getattr(cfg.model, f"{m}_dim") for m in modalities})
        self.rule = ValidationRule.of(cfg.data)
        self.dialogues = self.rule.split(self.corpus)
        for m, store in self.stores.items():
            _check_upstream(store, self.rule, self.corpus, self.dialogues)
            if not store.present.any():
                log.warning("%s: all %d of its %s vectors are absent (the store marks none present): "
                            "the model gets only zeros for %s; extract the store again, or leave %s "
                            "out of model.modalities", store.path, len(store), m, m, m)
        self.num_speakers, self.missing = cfg.model.num_speakers, cfg.data.missing
        self._datasets: dict[str, DialogueDataset] = {}

    def dataset(self, split: str) -> DialogueDataset:
        if split not in self._datasets:
            self._datasets[split] = DialogueDataset(self.corpus, self.dialogues[split], self.stores,
                                                    self.num_speakers, self.missing)
        return self._datasets[split]

    @property
    def labels(self) -> tuple[str, ...]:
        return self.corpus.labels

    def accounting(self) -> str:
        """Where every dialogue of the corpus went (a line for the log); all are accounted for."""
        total = len(self.corpus.dialogues)
        used = sum(len(d) for d in self.dialogues.values())
        if used != total:  # split_dialogues refuses unknown splits, so this is a bug
            raise RuntimeError(f"{used} of the corpus's {total} dialogues are in a split")
        dev = len(self.corpus.split("dev"))
        folded = self.rule.scheme(self.corpus) == "fraction"
        where = " (its dev split folded into train and valid)" if dev and folded else ""
        return (f"corpus {self.corpus.name!r}: {total} dialogues = train {len(self.dialogues['train'])} + "
                f"valid {len(self.dialogues['valid'])} + test {len(self.dialogues['test'])}{where}")

    def sizes(self) -> dict:
        return {"num_dialogues": {s: len(d) for s, d in self.dialogues.items()},
                "num_utterances": {s: sum(len(d.utterances) for d in ds)
                                   for s, ds in self.dialogues.items()}}


def _check_upstream(store, rule: ValidationRule, corpus: Corpus, splits: dict) -> None:
    """Refuse a store whose fine-tuned encoder or fitted projection learned from validation or
    test dialogues (:func:`multiemo.data.splits.check_learned_from`); warn about a store that
    learned but does not say from what (made before stores recorded it, or imported)."""
    record = store.info.get("learned_from")
    if record:
        check_learned_from(str(store.path), record, rule, corpus, splits)
    elif store.info.get("finetune") or store.info.get("projection"):
        what = "fine-tuned encoder" if store.info.get("finetune") else "projection"
        log.warning("%s does not record which dialogues its %s learned from: if it saw this run's "
                    "validation dialogues, validation scores are optimistic (extract it again to "
                    "have it recorded and checked)", store.path, what)


def _data_key(cfg: Config) -> str:
    m = cfg.model
    return json.dumps([to_dict(cfg.data), list(m.modalities), m.num_classes, m.num_speakers,
                       [getattr(m, f"{x}_dim") for x in m.modalities]])


class DataCache:
    """Prepared data by the config fields that decide it: one read per worker, many trials."""

    def __init__(self) -> None:
        self._cache: dict[str, Prepared] = {}

    def get(self, cfg: Config) -> Prepared:
        key = _data_key(cfg)
        if key not in self._cache:
            self._cache[key] = Prepared(cfg)
        return self._cache[key]


def loader(dataset: DialogueDataset, batch_size: int, shuffle_seed: int | None = None):
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=generator is not None,
                                       generator=generator, collate_fn=collate)


# -- the training -------------------------------------------------------------------------------

@dataclasses.dataclass
class Training:
    cfg: Config
    data: Prepared
    model: MultiEMO
    criterion: MultiEMOLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    device: torch.device
    amp: bool
    metric: str  # the validation metric that picks the epoch (train.select_metric resolved)
    exclude: int | None  # the class micro-F1 leaves out (the dataset's rule), if any


def build_training(cfg: Config, data: Prepared | DataCache | None = None) -> Training:
    """Data (from ``data`` when given), model, loss, Adam and ReduceLROnPlateau for ``cfg``.

    Seeds torch with ``train.seed`` first, so the initial weights depend on the seed only.
    """
    if cfg.train.epochs < 1:
        raise UserError(f"train.epochs must be at least 1, got {cfg.train.epochs}")
    device = resolve_device(cfg.runtime.device)
    amp = cfg.runtime.amp and device.type == "cuda"
    prepared = data.get(cfg) if isinstance(data, DataCache) else data or Prepared(cfg)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device)
    counts = prepared.dataset("train").class_counts(cfg.model.num_classes)
    criterion = build_loss(cfg.loss, counts).to(device)
    _warn_if_hgr_unbounded(cfg)
    # the fused kernel: the same Adam update, several times faster than the per-tensor loop
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr,
                                 weight_decay=cfg.train.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.train.plateau_factor,
        patience=cfg.train.plateau_patience, threshold=cfg.train.plateau_threshold)
    metric = cfg.train.select_metric
    if metric == "auto":
        metric = primary_metric(cfg.dataset)
    exclude = excluded_class_index(cfg.dataset, prepared.labels)
    return Training(cfg, prepared, model, criterion, optimizer, scheduler, device, amp, metric, exclude)


@contextlib.contextmanager
def runtime(cfg: Config) -> Iterator[None]:
    """Threads and CPU determinism for a run; the caller's determinism setting comes back after."""
    set_num_threads(cfg.runtime.num_threads, "runtime.num_threads")
    deterministic = torch.are_deterministic_algorithms_enabled()
    if resolve_device(cfg.runtime.device).type == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)


# -- one pass -----------------------------------------------------------------------------------

def forward_losses(model: MultiEMO, criterion: MultiEMOLoss, batch: Batch, amp: bool):
    """Forward a batch; losses over its real utterances. Returns (total, parts, logits, labels)."""
    with torch.autocast(device_type=batch.mask.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(features=batch.features, speaker_mask=batch.speaker_mask, mask=batch.mask,
                    present=batch.present)
    labels = batch.labels[batch.mask]  # (N,), the order of the packed outputs
    logits = out.packed_logits.float()  # (N, C)
    total, parts = criterion(logits, out.packed_z, [out.packed_fused[m] for m in model.modalities], labels)
    return total, parts, logits, labels


def run_epoch(model, criterion, data, device, amp, optimizer=None, exclude: int | None = None) -> dict:
    """Train (with ``optimizer``) or score one pass. Losses are utterance-weighted means;
    ``exclude`` is the class micro-F1 leaves out (see :func:`multiemo.metrics.classification_scores`)."""
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
    scores = classification_scores(y_true, y_pred, criterion.num_classes, exclude)
    return {**{k: v / count for k, v in sums.items()},
            **{k: scores[k] for k in ("weighted_f1", "macro_f1", "micro_f1", "accuracy")}}


# -- checkpoints --------------------------------------------------------------------------------

def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file and rename: a kill never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's state dict; an unreadable or truncated file is a :class:`RunError`."""
    if not Path(path).is_file():
        raise RunError(f"{path} does not exist (has the run finished an epoch?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise RunError(f"{path} cannot be read (empty or truncated?): {err}") from None


# -- fit ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class FitResult:
    best_epoch: int
    best_score: float  # validation train.select_metric of the best epoch (a fraction)
    metric: str
    history: list[dict]
    best_state: dict | None = None  # the best weights, when fit kept them in memory
    stopped_epoch: int = 0  # the last epoch trained (the run's, resumed epochs included)
    stop_reason: str = "max_epochs"  # "patience" (train.patience) or "max_epochs" (train.epochs)


def _patience_spent(train_cfg, epoch: int, best_epoch: int) -> bool:
    """The early stop rule after ``epoch``: ``train.patience`` epochs without a new best, no
    sooner than ``train.min_epochs``, and only before ``train.epochs`` (which stops anyway)."""
    return (train_cfg.patience > 0 and train_cfg.min_epochs <= epoch < train_cfg.epochs
            and epoch - best_epoch >= train_cfg.patience)



def _warn_if_hgr_unbounded(cfg: Config) -> None:
    """The released Soft-HGR (docs/method.md §3.2) is not bounded below. MultiAttn's outputs are
    layer-normalised and DialogueRNN's are GRU states, so it levels off; concatenation hands it
    a modality's bare linear projection when that modality has no context encoder, and there it
    can fall without end while cross-entropy stalls (measured: experiments/model_components)."""
    components = components_of(cfg.model)
    bare = [m for m, name in components["context"].items() if name == "none"]
    if (components["fusion"] == "concat" and cfg.loss.hgr_weight > 0 and cfg.loss.hgr_variant == "official"
            and len(cfg.model.modalities) > 1 and bare):
        log.warning("concat fusion with the released Soft-HGR (loss.hgr_weight=%g) on unnormalised %s "
                    "vectors: the term is not bounded below and can swamp cross-entropy (on the demo's "
                    "synthetic corpus it fell to -51 and the model learned little); watch 'hgr' in the "
                    "epoch lines, or set loss.hgr_weight=0", cfg.loss.hgr_weight, "/".join(bare))


def fit(t: Training, run: RunDir, resume: bool = False,
        on_epoch: Callable[[dict], None] | None = None, checkpoints: bool = True) -> FitResult:
    """Train ``t`` for ``train.epochs`` into ``run``; select on validation; never touch test.

    With ``train.patience`` > 0, training stops once the validation selection metric has not
    improved for that many epochs (not before ``train.min_epochs``); ``run.json`` records why
    and when under ``stopped``. A resumed run whose restored state already meets the rule
    trains no further epoch, so it stops where an uninterrupted run does.

    With ``checkpoints=False`` (sweep trials, which are re-run from the start if they die) no
    checkpoint is written: the best weights are kept in memory and returned.

    ``on_epoch(record)`` gets each epoch's metrics record after its checkpoints are written (a
    sweep reports ``record["valid"]`` to its pruner there; an exception it raises ends the fit).

    Raises:
        Diverged: a non-finite training loss (the run is marked failed).
    """
    cfg, metric = t.cfg, t.metric
    seed = cfg.train.seed
    history: list[dict] = []
    best = {"epoch": 0, "score": -1.0}
    best_state = None
    start_epoch = 1
    if resume and run.last.is_file():
        state = load_checkpoint(run.last)
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        history, best = json.loads(state["history"]), json.loads(state["best"])
        start_epoch = state["epoch"] + 1
        log.info("resuming %s after epoch %d", run.path, state["epoch"])
    run.write_history(history)  # mirrors the checkpointed history, whatever a kill left behind
    train_set, valid_set = t.data.dataset("train"), t.data.dataset("valid")
    run.update(status="running", best_epoch=best["epoch"], select_metric=metric)
    log.info("%s; test is read only after the last epoch", t.data.accounting())
    valid_loader = loader(valid_set, cfg.train.batch_size)
    last_epoch = start_epoch - 1
    stopping = last_epoch > 0 and _patience_spent(cfg.train, last_epoch, best["epoch"])
    for epoch in range(start_epoch, cfg.train.epochs + 1):
        if stopping:
            break
        started = time.perf_counter()
        train_loader = loader(train_set, cfg.train.batch_size, shuffle_seed=seed * 100_003 + epoch)
        train_metrics = run_epoch(t.model, t.criterion, train_loader, t.device, t.amp, t.optimizer, t.exclude)
        if not math.isfinite(train_metrics["loss"]):
            run.update(status="failed", error=f"training loss {train_metrics['loss']} at epoch {epoch}")
            raise Diverged(f"{run.path}: the training loss is {train_metrics['loss']} at epoch {epoch}: "
                           f"the run diverged and is marked failed (try a lower train.lr)")
        valid_metrics = run_epoch(t.model, t.criterion, valid_loader, t.device, t.amp, exclude=t.exclude)
        t.scheduler.step(valid_metrics["loss"])
        record = {"epoch": epoch, "lr": t.optimizer.param_groups[0]["lr"], "train": train_metrics,
                  "valid": valid_metrics, "time_s": round(time.perf_counter() - started, 3)}
        history.append(record)
        improved = valid_metrics[metric] > best["score"]
        if improved:
            best = {"epoch": epoch, "score": valid_metrics[metric]}
            if checkpoints:
                save_checkpoint({"model": t.model.state_dict(), "epoch": epoch}, run.best)
            else:
                best_state = {"model": {k: v.detach().clone() for k, v in t.model.state_dict().items()},
                              "epoch": epoch}
        if checkpoints:
            save_checkpoint({"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
                             "scheduler": t.scheduler.state_dict(), "rng": torch.get_rng_state(),
                             "epoch": epoch, "history": json.dumps(history), "best": json.dumps(best)},
                            run.last)
        run.append_metrics(record)
        terms = " ".join(f"{name} {train_metrics.get(name, 0.0):.4f}" for name in LOSS_TERMS)
        log.info("epoch %d/%d  loss %.4f (%s)  valid loss %.4f w-F1 %.2f "
                 "macro-F1 %.2f acc %.2f%s  %.1fs", epoch, cfg.train.epochs, train_metrics["loss"],
                 terms, valid_metrics["loss"],
                 100 * valid_metrics["weighted_f1"], 100 * valid_metrics["macro_f1"],
                 100 * valid_metrics["accuracy"], "  *best*" if improved else "", record["time_s"])
        if on_epoch is not None:
            on_epoch(record)
        last_epoch = epoch
        stopping = _patience_spent(cfg.train, epoch, best["epoch"])
    reason = "patience" if stopping else "max_epochs"
    if stopping:
        log.info("stopping after epoch %d: validation %s has not improved for %d epochs (best %.2f "
                 "at epoch %d)", last_epoch, metric, last_epoch - best["epoch"], 100 * best["score"],
                 best["epoch"])
    run.update(best_epoch=best["epoch"], valid_score=best["score"],
               stopped=Stopped(reason, last_epoch, best["epoch"], patience=cfg.train.patience,
                               min_epochs=cfg.train.min_epochs, max_epochs=cfg.train.epochs))
    return FitResult(best["epoch"], best["score"], metric, history, best_state,
                     stopped_epoch=last_epoch, stop_reason=reason)


# -- test ---------------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: MultiEMO, data, device: torch.device, amp: bool):
    """Per utterance: (utterance ids, dialogue ids, gold labels, class probabilities)."""
    model.eval()
    uids, dids, golds, probs = [], [], [], []
    for batch in data:
        batch = batch.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(features=batch.features, speaker_mask=batch.speaker_mask, mask=batch.mask,
                        present=batch.present)
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


def score_validation(t: Training, run: RunDir, state: dict) -> None:
    """``predictions_valid.csv`` of the weights in ``state`` (a sweep trial: test is not read)."""
    t.model.load_state_dict(state["model"])
    uids, dids, golds, probs = predict(t.model, loader(t.data.dataset("valid"), t.cfg.train.batch_size),
                                       t.device, t.amp)
    save_predictions(run.predictions("valid"), t.data.labels, uids, dids, golds, probs)


def test(t: Training, run: RunDir, checkpoint: str = "best", out: RunDir | None = None) -> dict:
    """Score ``run``'s checkpoint on validation and test, once; write predictions and report.

    ``out`` (default: the run itself) receives ``predictions_{valid,test}.csv`` and the report;
    its ``run.json`` records which checkpoint and epoch they came from. Returns the test report.
    """
    from multiemo.report import write_report  # matplotlib only when a report is written

    out = out or run
    state = load_checkpoint(run.checkpoint(checkpoint))
    try:
        t.model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise RunError(f"{run.checkpoint(checkpoint)} does not fit the model of the config "
                       f"({str(err).splitlines()[0]})") from None
    labels = t.data.labels
    for split in ("valid", "test"):
        uids, dids, golds, probs = predict(t.model, loader(t.data.dataset(split), t.cfg.train.batch_size),
                                           t.device, t.amp)
        save_predictions(out.predictions(split), labels, uids, dids, golds, probs)
    scored = {"checkpoint": checkpoint, "epoch": state["epoch"], "seed": t.cfg.train.seed}
    report = write_report(out.path, golds, probs.argmax(1), labels, t.cfg.dataset, groups=dids,
                          extra={**scored, "best_epoch": state["epoch"] if checkpoint == "best" else None,
                                 **_valid_score(run.record())},
                          config=to_dict(t.cfg))  # picks the paper row of the run's modalities
    out.update(scored_from=ScoredFrom(**scored), num_utterances_test=len(uids),
               **({"status": "finished"} if out is run else {}))
    return report


# -- the run record -----------------------------------------------------------------------------

def _valid_score(record) -> dict:
    """``{"valid_<select_metric>": score}`` of a run record, for its report (empty before fit ends)."""
    return {record.valid_key: record.valid_score} if record.valid_score is not None else {}


def start_run(t: Training, run: RunDir, resume: bool, overrides: list[str]) -> None:
    """Write (or, on resume, update) ``config.yaml`` and ``run.json`` for ``t``."""
    cfg = t.cfg
    run.path.mkdir(parents=True, exist_ok=True)
    if resume and run.exists():
        resume_entry = Resume(time.strftime("%Y-%m-%dT%H:%M:%S"), tuple(overrides))
        _write_config(cfg, run)  # the config now in force, overrides of the resume included
        run.update(resumes=(*run.record().resumes, resume_entry))
        return
    _write_config(cfg, run)
    run.start(dataset=cfg.dataset, labels=t.data.labels, seed=cfg.train.seed, device=str(t.device),
              amp=t.amp, num_parameters=count_parameters(t.model), modalities=cfg.model.modalities,
              overrides=overrides, **t.data.sizes(),
              train_class_counts=t.data.dataset("train").class_counts(cfg.model.num_classes),
              status="running", best_epoch=0)


@contextlib.contextmanager
def opened_run(cfg: Config, run_dir: str | Path, *, resume: bool = False,
               overrides: list[str] | None = None, data: Prepared | DataCache | None = None,
               echo: bool = True) -> Iterator[tuple[RunDir, Training]]:
    """A run folder ready to train in, and its training: the folder's lock held, its
    ``train.log`` written (:func:`multiemo.logs.run_log`; ``echo=False`` keeps its lines off the
    console), threads and determinism set, the training built (``data`` reuses already loaded
    stores) and ``config.yaml``/``run.json`` written, the ``overrides`` recorded.
    ``multiemo train`` and a sweep trial both start here. A folder this call made is removed
    again when the training cannot be built (a missing corpus, a store that does not fit): a
    failed start leaves nothing behind."""
    run = RunDir(run_dir)
    made_here = not run.path.exists()
    try:
        with run.locked(), run_log(run.log, echo), runtime(cfg):
            t = build_training(cfg, data)
            start_run(t, run, resume, overrides or [])
            log.info("MultiEMO on %s: %s parameters (all used in the forward pass); modalities %s; "
                     "device %s%s", cfg.dataset, f"{run.record().num_parameters:,}",
                     ",".join(cfg.model.modalities), t.device, " (bf16 autocast)" if t.amp else "")
            yield run, t
    except BaseException:
        if made_here and not run.has_record():
            shutil.rmtree(run.path, ignore_errors=True)
        raise


def _write_config(cfg: Config, run: RunDir) -> None:
    import yaml
    atomic_write_text(run.config, yaml.safe_dump(to_dict(cfg), sort_keys=False))
