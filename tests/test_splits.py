"""multiemo.data.splits: the one validation rule (auto | dev | fraction), the record of what an
upstream learner learned from, and the refusal of a store that learned from validation or test."""

import logging

import pytest

from multiemo.data.corpus import Corpus, Dialogue, Utterance
from multiemo.data.dataset import split_dialogues
from multiemo.data.splits import (LeakError, SplitError, ValidationRule, check_learned_from,
                                  learned_record)


def dia(split, i):
    return Dialogue(f"{split}{i}", split, (Utterance(f"{split}{i}_0", "A", 0),
                                           Utterance(f"{split}{i}_1", "B", 1)))


def toy(train=20, dev=4, test=3):
    return Corpus("toy", ("neg", "pos"), tuple([dia("train", i) for i in range(train)] +
                                               [dia("dev", i) for i in range(dev)] +
                                               [dia("test", i) for i in range(test)]))


def ids(dialogues):
    return [d.id for d in dialogues]


def assert_partition(corpus, splits):
    assert list(splits) == ["train", "valid", "test"]
    every = [i for part in splits.values() for i in ids(part)]
    assert len(every) == len(set(every))  # no dialogue twice
    assert sorted(every) == sorted(ids(corpus.dialogues))  # none dropped


# -- auto, dev, fraction -------------------------------------------------------------------------

def test_auto_is_dev_with_a_dev_split_and_fraction_without_one():
    with_dev, no_dev = toy(), toy(dev=0)
    rule = ValidationRule("auto", 0.1, 7)
    assert rule.scheme(with_dev) == "dev" and rule.scheme(no_dev) == "fraction"
    assert rule.settings(with_dev) == {"validation": "dev"}
    assert rule.settings(no_dev) == {"validation": "fraction", "valid_fraction": 0.1, "valid_seed": 7}

    splits = rule.split(with_dev)
    assert splits == ValidationRule("dev").split(with_dev)
    assert ids(splits["train"]) == ids(with_dev.split("train"))
    assert ids(splits["valid"]) == ids(with_dev.split("dev"))
    assert ids(splits["test"]) == ids(with_dev.split("test"))

    splits = rule.split(no_dev)
    assert splits == ValidationRule("fraction", 0.1, 7).split(no_dev)
    assert len(splits["valid"]) == 2 and len(splits["train"]) == 18  # round(0.1 · 20)
    assert all(d.split == "train" for d in splits["valid"])


@pytest.mark.parametrize("rule", [ValidationRule("auto"), ValidationRule("dev"),
                                  ValidationRule("fraction", 0.3, 5), ValidationRule("auto", 0.5, 1)])
@pytest.mark.parametrize("dev", [0, 4])
def test_the_three_splits_partition_every_dialogue(rule, dev):
    corpus = toy(dev=dev)
    if rule.scheme(corpus) == "dev" and not dev:
        with pytest.raises(SplitError, match="validation=dev but corpus 'toy' has no dev split"):
            rule.split(corpus)
        return
    splits = rule.split(corpus)
    assert_partition(corpus, splits)
    assert ids(splits["test"]) == ids(corpus.split("test"))  # test is never drawn from
    assert all(split for split in splits.values())


def test_fraction_is_reproducible_differs_by_seed_and_folds_dev_into_the_pool():
    corpus = toy(train=20, dev=4)
    a = ValidationRule("fraction", 0.25, 3).split(corpus)
    assert ValidationRule("fraction", 0.25, 3).split(corpus) == a  # same seed, same split
    b = ValidationRule("fraction", 0.25, 4).split(corpus)
    assert set(ids(a["valid"])) != set(ids(b["valid"]))  # another seed, another draw
    for splits in (a, b):
        assert_partition(corpus, splits)
        assert len(splits["valid"]) == 6  # round(0.25 · 24): dev counts in the pool
        pool = ids(splits["train"]) + ids(splits["valid"])
        assert sorted(pool) == sorted(ids(corpus.split("train")) + ids(corpus.split("dev")))
    # dev dialogues are trained on under fraction: 6 held out of 24, the 4 dev cannot all be held
    assert any(d.split == "dev" for d in a["train"])
    # the function training and extraction call is the same rule
    for args in (("fraction", 0.25, 3), ("fraction", 0.25, 4), ("dev", 0.05, 2023), ("auto", 0.1, 9)):
        assert split_dialogues(corpus, *args) == ValidationRule(*args).split(corpus)


@pytest.mark.parametrize("kwargs,message", [
    ({"validation": "random"}, "unknown validation scheme 'random'"),
    ({"validation": "Dev"}, "unknown validation scheme 'Dev'"),
    ({"valid_fraction": 0.0}, "valid_fraction must be in (0, 1), got 0.0"),
    ({"valid_fraction": 1.0}, "valid_fraction must be in (0, 1), got 1.0"),
    ({"valid_fraction": -0.1}, "valid_fraction must be in (0, 1), got -0.1"),
    ({"valid_fraction": 1.5}, "valid_fraction must be in (0, 1), got 1.5"),
])
def test_an_unknown_scheme_or_a_fraction_outside_0_1_is_a_split_error(kwargs, message):
    with pytest.raises(SplitError) as err:
        ValidationRule(**kwargs)
    assert message in str(err.value)


# -- check_learned_from ----------------------------------------------------------------------------

def test_no_record_or_a_record_of_train_dialogues_passes():
    corpus = toy()
    for rule in (ValidationRule("dev"), ValidationRule("fraction", 0.25, 3)):
        check_learned_from("x.safetensors", None, rule, corpus)
        check_learned_from("x.safetensors", {}, rule, corpus)
        train = rule.split(corpus)["train"]
        check_learned_from("x.safetensors", learned_record("fine-tuned encoder", rule, train, corpus),
                           rule, corpus)
    # given splits are used as they are
    dev = ValidationRule("dev")
    splits = dev.split(corpus)
    check_learned_from("x.safetensors", learned_record("PCA projection", dev, splits["train"]), dev,
                       corpus, splits)


def test_a_record_overlapping_validation_names_the_count_and_the_settings_to_change():
    corpus = toy(train=20, dev=4)
    made = ValidationRule("fraction", 0.25, 11)  # learned from 18 of train + dev: 2 of the 4 dev
    learned = made.split(corpus)["train"]
    record = learned_record("fine-tuned encoder", made, learned, corpus)
    assert record["rule"] == {"validation": "fraction", "valid_fraction": 0.25, "valid_seed": 11}
    assert record["num_dialogues"] == 18 and record["dialogues"] == sorted(ids(learned))
    overlap = sum(d.split == "dev" for d in learned)
    assert overlap == 2
    with pytest.raises(LeakError) as err:
        check_learned_from("text.safetensors", record, ValidationRule("dev"), corpus)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"text.safetensors: its fine-tuned encoder learned from {overlap} of "
                              f"this run's 4 validation dialogues")
    assert ("train with data.validation=fraction data.valid_fraction=0.25 data.valid_seed=11"
            in message)
    assert message.endswith("or extract again with validation=dev")

    # the other way round: made on dev, run on a fraction that validates on train dialogues
    dev_record = learned_record("PCA projection", ValidationRule("dev"), corpus.split("train"))
    run = ValidationRule("fraction", 0.25, 11)
    held = run.split(corpus)["valid"]
    overlap = sum(d.split == "train" for d in held)
    assert overlap == 4 and len(held) == 6  # the 2 held-out dev dialogues it never saw
    with pytest.raises(LeakError) as err:
        check_learned_from("audio.safetensors", dev_record, run, corpus)
    message = str(err.value)
    assert (f"its PCA projection learned from {overlap} of this run's {len(held)} validation "
            f"dialogues" in message)
    assert "train with data.validation=dev" in message
    assert "extract again with validation=fraction valid_fraction=0.25 valid_seed=11" in message


def test_a_record_overlapping_test_is_refused_as_test():
    corpus = toy()
    rule = ValidationRule("dev")
    learned = corpus.split("train") + corpus.split("test")[:2]
    record = learned_record("fine-tuned encoder", rule, learned)
    with pytest.raises(LeakError) as err:
        check_learned_from("text.safetensors", record, rule, corpus)
    message = str(err.value)
    assert "\n" not in message
    assert ("its fine-tuned encoder learned from 2 of this run's 3 test dialogues (e.g. "
            "['test0', 'test1'])" in message)
    assert "would not be test scores" in message


# -- the training engine ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from multiemo.synthetic import make_synthetic_corpus

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_corpus(root, dialogues={"train": 6, "dev": 2, "test": 2}, dims={"text": 8},
                          num_classes=3, num_speakers=2, lengths=(1, 3), seed=0)
    return root


def prepared(root, text):
    from multiemo.config import Config, build
    from multiemo.engine import Prepared

    cfg = build(Config, {"data": {"root": str(root), "text": str(text), "validation": "dev"},
                         "model": {"modalities": ["text"], "text_dim": 8, "num_classes": 3,
                                   "num_speakers": 2}})
    return Prepared(cfg)


def store_with(root, path, **extra):
    from multiemo.data.store import FeatureStore, write_store

    store = FeatureStore(root / "features" / "text.safetensors")
    vectors, present = store.get(store.ids)
    write_store(path, store.ids, vectors, present, info={**store.info, **extra})
    return path


@pytest.mark.parametrize("key,what", [("finetune", "fine-tuned encoder"), ("projection", "projection")])
def test_a_store_that_learned_without_a_record_is_trained_on_with_a_warning(synthetic, tmp_path,
                                                                            caplog, key, what):
    text = store_with(synthetic, tmp_path / "text.safetensors", **{key: {"epochs": 1}})
    with caplog.at_level(logging.WARNING, logger="multiemo"):
        data = prepared(synthetic, text)
    warnings = [r for r in caplog.records if r.name == "multiemo" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    message = warnings[0].getMessage()
    assert f"{text} does not record which dialogues its {what} learned from" in message
    assert len(data.dialogues["valid"]) == 2  # trained on all the same


def test_frozen_or_recorded_stores_give_no_warning(synthetic, tmp_path, caplog):
    from multiemo.data.corpus import Corpus

    train = Corpus.load(synthetic / "corpus.json").split("train")
    record = learned_record("fine-tuned encoder", ValidationRule("dev"), train)
    recorded = store_with(synthetic, tmp_path / "recorded.safetensors", finetune={"epochs": 1},
                          learned_from=record)
    with caplog.at_level(logging.WARNING, logger="multiemo"):
        prepared(synthetic, synthetic / "features" / "text.safetensors")
        prepared(synthetic, recorded)
    assert not [r for r in caplog.records if "does not record" in r.getMessage()]
    # and the engine checks the record: one of the dev dialogues makes it refuse the store
    dev = Corpus.load(synthetic / "corpus.json").split("dev")
    leaky = store_with(synthetic, tmp_path / "leaky.safetensors", finetune={"epochs": 1},
                       learned_from=learned_record("fine-tuned encoder", ValidationRule("dev"),
                                                   train + dev[:1]))
    with pytest.raises(LeakError, match="learned from 1 of this run's 2 validation dialogues"):
        prepared(synthetic, leaky)


def test_a_store_with_every_vector_absent_is_trained_on_with_a_warning(synthetic, tmp_path, caplog):
    import numpy as np
    from multiemo.data.store import FeatureStore, write_store

    store = FeatureStore(synthetic / "features" / "text.safetensors")
    vectors, _ = store.get(store.ids)
    empty = tmp_path / "empty.safetensors"
    write_store(empty, store.ids, vectors, np.zeros(len(store.ids), bool), info=store.info)
    with caplog.at_level(logging.WARNING, logger="multiemo"):
        data = prepared(synthetic, empty)
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "multiemo" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"{empty}: all {len(store.ids)} of its text vectors are absent" in warnings[0]
    assert len(data.dialogues["train"]) == 6  # trained on all the same
    caplog.clear()
    one = tmp_path / "one.safetensors"  # a single present vector: no warning
    write_store(one, store.ids, vectors, np.arange(len(store.ids)) == 0, info=store.info)
    with caplog.at_level(logging.WARNING, logger="multiemo"):
        prepared(synthetic, one)
    assert not [r for r in caplog.records if "are absent" in r.getMessage()]
