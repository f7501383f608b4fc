"""Fine-tuning a text encoder as an utterance classifier, before extraction (``mode: finetune``).

The classifier is the extraction's own pooled vector → dropout → a linear layer, so what is
learnt is exactly what is extracted. Cross-entropy with optional class weights ∝ (N/n_c)^p
(:func:`multiemo.losses.ce_class_weights`, the trainer's rule), AdamW, linear warm-up then
linear decay, gradient clipping. It learns from the train dialogues of the extraction's
validation rule (``validation``, ``valid_fraction``, ``valid_seed``: the same settings, with the
same meaning, as the training config's ``data`` block, see :mod:`multiemo.data.splits`), never
from the validation or test dialogues, and records those dialogue ids (``learned_from``) in
``finetune.json`` and in the store, where training checks them. After each epoch the validation
weighted-F1 is computed (:mod:`multiemo.metrics`, as in training); the best epoch's encoder (and
tokenizer) is saved with ``save_pretrained`` under ``<finetuned_dir>/encoder`` and its head
under ``head.pt``. ``finetune.json`` (settings, best epoch, per-epoch history, seconds) is
written last: its presence marks a finished fine-tuning, which later runs and shards reuse; a
folder without it is a fine-tuning that was cut short and is started over.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from feature_extraction._text_inputs import ModelInput
from feature_extraction._text_model import TextModel, resolve_model
from multiemo.config import ConfigError, to_dict
from multiemo.data.atomic import follow_umask
from multiemo.data.corpus import Corpus, Utterance, atomic_write_text
from multiemo.data.splits import SplitError, ValidationRule, learned_record
from multiemo.jobs import check_job_identity
from multiemo.losses import ce_class_weights
from multiemo.metrics import classification_scores

__all__ = ["ensure_finetuned", "finetune", "validation_utterances"]


def _settings(cfg: Any) -> dict[str, Any]:
    """What decides the fine-tuned weights (a folder made with other settings is refused)."""
    return {"model": cfg.model, "pooling": cfg.pooling, "past": cfg.past, "future": cfg.future,
            "max_length": cfg.max_length, "speakers": cfg.speakers,
            "speaker_names": dict(cfg.speaker_names), "finetune": to_dict(cfg.finetune),
            "validation": ValidationRule.of(cfg).settings()}


def ensure_finetuned(cfg: Any, corpus: Corpus, device: torch.device, *,
                     allow_training: bool = True, progress: bool = True) -> tuple[str, dict]:
    """The fine-tuned encoder's directory and a summary for the store's metadata.

    Reuses a finished fine-tuning with the same settings; trains one otherwise (unless
    ``allow_training`` is False: sharded runs must not each train their own).
    """
    folder = cfg.finetuned_path
    marker = folder / "finetune.json"  # written by finetune() once it is done
    done = check_job_identity(marker, {"settings": _settings(cfg)}, kind="fine-tuning",
                              names={"settings": "other settings"}, error=ConfigError,
                              remedy=f"delete {folder} or set finetuned_dir to fine-tune again")
    if done is None:
        if not allow_training:
            raise ConfigError(f"no finished fine-tuning at {folder}: run `multiemo extract text "
                             f"--config ... --finetune-only` once before starting shards")
        done = finetune(cfg, corpus, device, folder, progress=progress)
    if "learned_from" not in done:
        raise ConfigError(f"{marker}: made before fine-tunings recorded the dialogues they learned "
                         f"from; delete {folder} to fine-tune again")
    summary = {k: done[k] for k in ("best_epoch", "best_valid_weighted_f1", "valid", "seconds")}
    return str(folder / "encoder"), {**summary, "learned_from": done["learned_from"]}


def validation_utterances(corpus: Corpus, rule: ValidationRule
                          ) -> tuple[list[Utterance], list[Utterance], str]:
    """(train, validation, description) utterances by ``rule``: the same validation dialogues as
    a training run with the same ``data.validation`` settings (never learned from here)."""
    splits = rule.split(corpus)
    train = [u for d in splits["train"] for u in d.utterances]
    valid = [u for d in splits["valid"] for u in d.utterances]
    return train, valid, f"{len(splits['valid'])} dialogues ({rule.describe(corpus)})"


def length_batches(inputs: list[ModelInput], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths: shuffle, sort pools of 50 batches, shuffle batches."""
    order = list(range(len(inputs)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: len(inputs[i].ids))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def finetune(cfg: Any, corpus: Corpus, device: torch.device, folder: Path, *,
             progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``cfg.model`` on the corpus's train split and save the best epoch's encoder."""
    from transformers import get_linear_schedule_with_warmup

    ft = cfg.finetune
    torch.manual_seed(ft.seed)
    rng = random.Random(ft.seed)
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished fine-tuning: start over
    folder.mkdir(parents=True)
    model = TextModel(resolve_model(cfg.model), corpus, cfg, device)
    rule = ValidationRule.of(cfg)
    try:
        train, valid, valid_text = validation_utterances(corpus, rule)
    except SplitError as err:
        raise ConfigError(f"fine-tuning: {err}") from None
    if ft.max_train_utterances and len(train) > ft.max_train_utterances:
        train = rng.sample(train, ft.max_train_utterances)
    dialogue_of = {u.id: d for d in corpus.dialogues for u in d.utterances}
    learned = learned_record("fine-tuned encoder", rule, {dialogue_of[u.id] for u in train}, corpus)
    unlabelled = [u.id for u in train + valid if u.label is None]
    if unlabelled:
        raise ConfigError(f"fine-tuning needs a label on every train and validation utterance; "
                         f"{len(unlabelled)} have none (e.g. {unlabelled[:5]})")
    if not train or not valid:
        raise ConfigError(f"fine-tuning needs train and validation utterances "
                         f"({len(train)} train, {len(valid)} validation from {valid_text})")
    num_classes = len(corpus.labels)
    counts = torch.bincount(torch.tensor([u.label for u in train]), minlength=num_classes)
    weights = ce_class_weights(counts.tolist(), ft.class_weight_power)  # the trainer's rule
    if weights is not None:
        weights = weights.to(device)
    head = nn.Sequential(nn.Dropout(ft.dropout), nn.Linear(model.dim, num_classes)).to(device)
    params = list(model.encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=ft.lr, weight_decay=ft.weight_decay)
    train_inputs = [model.inputs[u.id] for u in train]
    labels = torch.tensor([u.label for u in train], device=device)
    steps = ft.epochs * -(-len(train) // ft.batch_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(ft.warmup_ratio * steps), steps)
    loss_fn = nn.CrossEntropyLoss(weight=weights)

    history, best, start = [], -1.0, time.monotonic()
    for epoch in range(1, ft.epochs + 1):
        epoch_start = time.monotonic()
        model.encoder.train()
        head.train()
        total, batches = 0.0, length_batches(train_inputs, ft.batch_size, rng)
        bar = _bar(len(batches), f"fine-tune epoch {epoch}/{ft.epochs}", progress)
        for batch in batches:
            logits = head(model.encode([train_inputs[i] for i in batch]))  # (B, C)
            loss = loss_fn(logits, labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, ft.max_grad_norm)
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if bar is not None:
            bar.close()
        train_seconds = time.monotonic() - epoch_start
        wf1, acc = _evaluate(model, head, valid, cfg.batch_size, num_classes)
        record = {"epoch": epoch, "train_loss": total / len(train), "valid_weighted_f1": wf1,
                  "valid_accuracy": acc, "train_seconds": round(train_seconds, 1),
                  "seconds": round(time.monotonic() - epoch_start, 1)}
        history.append(record)
        with open(folder / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if progress:
            print(f"epoch {epoch}: loss {record['train_loss']:.4f}, validation weighted-F1 "
                  f"{100 * wf1:.2f} (accuracy {100 * acc:.2f}), {record['seconds']} s",
                  file=sys.stderr)
        if wf1 > best:
            best = wf1
            _save(model, head, folder, epoch)
    best_epoch = max(history, key=lambda r: r["valid_weighted_f1"])["epoch"]
    done = {"settings": json.loads(json.dumps(_settings(cfg))), "best_epoch": best_epoch,
            "best_valid_weighted_f1": best, "valid": valid_text, "train_utterances": len(train),
            "valid_utterances": len(valid), "learned_from": learned,
            "class_weights": None if weights is None
            else weights.tolist(), "history": history,
            "seconds": round(time.monotonic() - start, 1)}
    atomic_write_text(folder / "finetune.json", json.dumps(done, indent=1))
    return done


@torch.no_grad()
def _evaluate(model: Any, head: nn.Module, utts: list[Utterance], batch_size: int,
              num_classes: int) -> tuple[float, float]:
    """Weighted-F1 and accuracy on ``utts`` (:func:`multiemo.metrics.classification_scores`,
    the trainer's scores)."""
    model.encoder.eval()
    head.eval()
    ordered = sorted(utts, key=lambda u: len(model.inputs[u.id].ids))
    preds, gold = [], []
    for i in range(0, len(ordered), batch_size):
        batch = ordered[i:i + batch_size]
        logits = head(model.encode([model.inputs[u.id] for u in batch]))  # (B, C)
        preds += logits.argmax(-1).tolist()
        gold += [u.label for u in batch]
    scores = classification_scores(gold, preds, num_classes)
    return scores["weighted_f1"], scores["accuracy"]


def _save(model: Any, head: nn.Module, folder: Path, epoch: int) -> None:
    """Replace the saved encoder by this epoch's (written beside it, then moved into place)."""
    tmp = folder / f"encoder.epoch{epoch}.tmp"
    model.encoder.save_pretrained(tmp)
    model.tokenizer.save_pretrained(tmp)
    torch.save(head.state_dict(), tmp / "head.pt")
    follow_umask(tmp)  # save_pretrained writes its weights 0600
    target = folder / "encoder"
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _bar(total: int, desc: str, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, file=sys.stderr)
