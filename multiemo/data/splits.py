"""One validation split for the whole chain, and the record of what learned from which dialogues.

Whatever learns before the classifier (a fine-tuned text encoder, a PCA projection of audio or
visual features) must never see the dialogues the classifier is later validated (or tested) on,
or every choice made on validation (the best epoch, a sweep's best trial) is optimistic. So one
rule, :class:`ValidationRule`, draws the validation dialogues for fine-tuning, for fitting a
projection and for training alike, from the same three settings (``validation``,
``valid_fraction``, ``valid_seed``, named the same in the training config's ``data`` block and
in every extraction config):

- ``dev``: the corpus's own dev split validates; train is the train split;
- ``fraction``: any dev split is folded into train, and ``round(valid_fraction · n)`` of those
  dialogues (at least one), drawn with ``valid_seed``, validate (the released MultiEMO recipe);
- ``auto``: ``dev`` when the corpus has a dev split, ``fraction`` otherwise (IEMOCAP).

A store whose vectors came from something that learned records it in ``info["learned_from"]``
(:func:`learned_record`: what learned, the rule, and the ids of the dialogues it learned from),
and training refuses a store that learned from any of its validation or test dialogues
(:func:`check_learned_from`).

>>> from multiemo.data.corpus import Corpus, Dialogue, Utterance
>>> def dia(i, split):
...     return Dialogue(f"{split}{i}", split, (Utterance(f"{split}{i}_0", "A", 0),))
>>> corpus = Corpus("toy", ("x",), tuple([dia(i, "train") for i in range(18)] +
...                 [dia(i, "dev") for i in range(2)] + [dia(0, "test")]))
>>> rule = ValidationRule("dev")
>>> [len(v) for v in rule.split(corpus).values()]
[18, 2, 1]
>>> [len(v) for v in ValidationRule("fraction", 0.1, 7).split(corpus).values()]
[18, 2, 1]
>>> record = learned_record("fine-tuned encoder", rule, rule.split(corpus)["train"])
>>> record["num_dialogues"], record["rule"]["validation"]
(18, 'dev')
>>> check_learned_from("text.safetensors", record, ValidationRule("fraction", 0.1, 7), corpus)
Traceback (most recent call last):
...
multiemo.data.splits.LeakError: text.safetensors: its fine-tuned encoder learned from 2 of this run's 2 validation dialogues (it was made with validation=dev; this run has validation=fraction, valid_fraction=0.1, valid_seed=7): train with data.validation=dev, or extract again with validation=fraction valid_fraction=0.1 valid_seed=7
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable

from multiemo.config import check_open_unit
from multiemo.data.corpus import Corpus, Dialogue
from multiemo.errors import UserError

__all__ = ["ValidationRule", "DataError", "SplitError", "LeakError", "learned_record",
           "check_learned_from", "SCHEMES"]

SCHEMES = ("auto", "dev", "fraction")


class DataError(UserError):
    """Corpus and stores that cannot be joined as the config asks."""


class SplitError(DataError):
    """A corpus that cannot be split as asked (no dev split, too few dialogues, unknown split)."""


class LeakError(DataError):
    """A feature store whose upstream learner saw this run's validation or test dialogues."""


@dataclass(frozen=True)
class ValidationRule:
    """Which dialogues validate: ``validation`` (auto, dev, fraction), ``valid_fraction``,
    ``valid_seed`` (the last two are used by ``fraction`` only)."""

    validation: str = "auto"
    valid_fraction: float = 0.05
    valid_seed: int = 2023

    def __post_init__(self) -> None:
        if self.validation not in SCHEMES:
            raise SplitError(f"unknown validation scheme {self.validation!r} ({', '.join(SCHEMES)})")
        try:
            check_open_unit(self, "", ("valid_fraction",))
        except ValueError as err:
            raise SplitError(str(err)) from None

    @classmethod
    def of(cls, cfg: Any) -> "ValidationRule":
        """The rule of a config with ``validation``, ``valid_fraction`` and ``valid_seed`` fields
        (the training config's ``data`` block, or an extraction config)."""
        return cls(cfg.validation, cfg.valid_fraction, cfg.valid_seed)

    def scheme(self, corpus: Corpus) -> str:
        """``dev`` or ``fraction``: what ``auto`` means for ``corpus``."""
        if self.validation != "auto":
            return self.validation
        return "dev" if corpus.split("dev") else "fraction"

    def settings(self, corpus: Corpus | None = None) -> dict[str, Any]:
        """The settings as written in a config (``auto`` resolved when ``corpus`` is given)."""
        scheme = self.scheme(corpus) if corpus is not None else self.validation
        if scheme == "dev":
            return {"validation": "dev"}
        return {"validation": scheme, "valid_fraction": self.valid_fraction,
                "valid_seed": self.valid_seed}

    def describe(self, corpus: Corpus | None = None) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings(corpus).items())

    def split(self, corpus: Corpus) -> dict[str, list[Dialogue]]:
        """``{"train", "valid", "test"}`` → dialogues, in corpus order.

        Raises:
            SplitError: an empty split, ``dev`` on a corpus without one, or a split name other
                than train, dev and test (its dialogues would be dropped).
        """
        unknown = sorted(set(corpus.splits) - {"train", "dev", "test"})
        if unknown:
            counts = {name: len(corpus.split(name)) for name in unknown}
            raise SplitError(f"corpus {corpus.name!r} has dialogues in split(s) {counts} that "
                             f"training does not know (train, dev, test): rename them in the "
                             f"corpus file, e.g. validation → dev; no dialogue is dropped without "
                             f"a word")
        train, dev, test = corpus.split("train"), corpus.split("dev"), corpus.split("test")
        if self.scheme(corpus) == "dev":
            if not dev:
                raise SplitError(f"validation=dev but corpus {corpus.name!r} has no dev split (its "
                                 f"splits: {corpus.splits}); use validation=fraction or auto")
            splits = {"train": train, "valid": dev, "test": test}
        else:
            pool = train + dev
            n_valid = max(1, round(self.valid_fraction * len(pool)))
            if n_valid >= len(pool):
                raise SplitError(f"corpus {corpus.name!r} has {len(pool)} training dialogue(s): "
                                 f"too few to hold out {n_valid} for validation")
            held = set(random.Random(self.valid_seed).sample(range(len(pool)), n_valid))
            splits = {"train": [d for i, d in enumerate(pool) if i not in held],
                      "valid": [d for i, d in enumerate(pool) if i in held], "test": test}
        for name, dialogues in splits.items():
            if not dialogues:
                raise SplitError(f"the {name} split of corpus {corpus.name!r} is empty")
        return splits


def learned_record(what: str, rule: ValidationRule, dialogues: Iterable[Dialogue],
                   corpus: Corpus | None = None) -> dict[str, Any]:
    """``info["learned_from"]`` of a store: what learned (``"fine-tuned encoder"``, ``"PCA
    projection"``), the rule (``auto`` resolved with ``corpus``), and the ids of the dialogues it
    learned from (sorted)."""
    ids = sorted({d.id for d in dialogues})
    return {"what": what, "rule": rule.settings(corpus), "num_dialogues": len(ids),
            "dialogues": ids}


def check_learned_from(store: str, record: dict[str, Any] | None, rule: ValidationRule,
                       corpus: Corpus, splits: dict[str, list[Dialogue]] | None = None) -> None:
    """Refuse ``store`` if what made it learned from any validation or test dialogue of a run
    that splits ``corpus`` by ``rule``. A store without a record (frozen features) passes.

    Raises:
        LeakError: one line: how many dialogues overlap and the setting to change.
    """
    if not record:
        return
    splits = splits or rule.split(corpus)
    learned = set(record.get("dialogues", ()))
    what = record.get("what", "upstream model")
    made_rule = record.get("rule", {})
    valid = {d.id for d in splits["valid"]}
    overlap = valid & learned
    if overlap:
        made = ", ".join(f"{k}={v}" for k, v in made_rule.items()) or "an unknown rule"
        fix = "train with " + " ".join(f"data.{k}={v}" for k, v in made_rule.items()) + ", or " \
            if made_rule else ""
        again = "extract again with " + " ".join(f"{k}={v}" for k, v in rule.settings(corpus).items())
        raise LeakError(f"{store}: its {what} learned from {len(overlap)} of this run's {len(valid)} "
                        f"validation dialogues (it was made with {made}; this run has "
                        f"{rule.describe(corpus)}): {fix}{again}")
    test = {d.id for d in splits["test"]}
    overlap = test & learned
    if overlap:
        raise LeakError(f"{store}: its {what} learned from {len(overlap)} of this run's "
                        f"{len(test)} test dialogues (e.g. {sorted(overlap)[:3]}): its scores "
                        f"would not be test scores; extract again from a corpus whose test "
                        f"split it never saw")
