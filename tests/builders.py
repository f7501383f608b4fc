"""Tiny data and models that several test files build: a text corpus and a random encoder for
it, a conversation CSV (and its tiny text-only training overrides), EmoryNLP and DailyDialog
releases, the official model sizes and small ones with a random padded batch.

Test files import these from here (``from builders import ...``; ``tests/`` is on ``sys.path`` under
pytest), never from each other; the pytest fixtures made from them (the encoder, the trained and
exported model) are in ``conftest.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from feature_extraction.runner import Absent
from multiemo.config import ModelConfig
from multiemo.data.corpus import Corpus, Dialogue, Utterance

# -- a text corpus; a tiny random encoder (BERT or RoBERTa) and a tokenizer trained on its words ---

WORDS = ("yes no maybe fine great terrible why what oh wow hey stop ok sure never again "
         "love hate happy sad angry").split()
SPEAKERS = ("Ross", "Rachel", "Joey")


def toy_corpus(seed: int = 0) -> Corpus:
    """Labels follow the words: fine-tuning has something to learn."""
    rng = np.random.default_rng(seed)
    dialogues = []
    for d, split in enumerate(["train"] * 8 + ["dev"] * 3 + ["test"] * 3):
        utts = []
        for u in range(int(rng.integers(2, 7))):
            label = int(rng.integers(0, 3))
            words = [WORDS[label * 5 + int(rng.integers(0, 5))] for _ in range(int(rng.integers(1, 6)))]
            text = "" if (d, u) == (12, 1) else " ".join(words)  # one empty transcript
            utts.append(Utterance(id=f"{split}_d{d}_u{u}", speaker=SPEAKERS[u % 3], label=label,
                                  text=text))
        dialogues.append(Dialogue(f"{split}_d{d}", split, tuple(utts)))
    return Corpus("toy", ("pos", "neg", "neu"), tuple(dialogues))


def make_model_dir(path: Path, kind: str = "bert") -> Path:
    """A tiny random encoder and a tokenizer trained on the toy words, saved as a model dir."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import (BertConfig, BertModel, PreTrainedTokenizerFast, RobertaConfig,
                              RobertaModel)

    texts = [f"{s}: {' '.join(WORDS[i:i + 4])}" for s in SPEAKERS for i in range(len(WORDS))]
    if kind == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=120,
                                                                 special_tokens=specials))
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
        config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=64, pad_token_id=0)
        model = BertModel(config)
    else:
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                       sep_token="</s>", cls_token="<s>", pad_token="<pad>",
                                       unk_token="<unk>", mask_token="<mask>")
        config = RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=66, pad_token_id=1)
        model = RobertaModel(config)
    torch.manual_seed(0)
    model.init_weights()
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(path)
    model.save_pretrained(path)
    return path


# -- a user's conversation file ------------------------------------------------------------------

CONVERSATION_LABELS = "neutral,joy,anger"
CONVERSATION_ROWS = [  # dialogue, index, speaker, text, label, split
    ("d0", 0, "Ann", "I am so happy", "joy", "train"), ("d0", 1, "Bob", "why", "anger", "train"),
    ("d0", 2, "Ann", "fine", "neutral", "train"), ("d1", 0, "Cy", "great", "joy", "train"),
    ("d1", 1, "Ann", "stop", "anger", "train"), ("d2", 0, "Bob", "ok", "neutral", "dev"),
    ("d2", 1, "Cy", "love", "joy", "dev"), ("d3", 0, "Ann", "hate", "anger", "test"),
    ("d3", 1, "Bob", "sure", "neutral", "test"), ("d4", 0, "Cy", "happy love", "joy", "test"),
    ("d4", 1, "Ann", "so why", "anger", "test"), ("d4", 2, "Cy", "fine great", "joy", "test")]
CONVERSATION_HEADER = ["dialogue_id", "utterance_index", "speaker", "text", "label", "split"]


def write_csv(path: Path, rows, header=CONVERSATION_HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# overrides of a shipped config for a tiny text-only model (32-d text features) and 2 epochs
TINY_TRAIN = ["model.text_dim=32", "model.model_dim=16", "model.hidden_dim=32",
              "model.mlp_hidden=16", "train.epochs=2", "train.batch_size=4", "runtime.num_threads=1"]


# -- EmoryNLP and DailyDialog releases in their official layouts ----------------------------------

def utt(uid, speakers, transcript, emotion):
    return {"utterance_id": uid, "speakers": speakers, "transcript": transcript,
            "tokens": [transcript.split()], "emotion": emotion}


def emorynlp_release() -> dict[str, dict]:
    """Two episodes over the three files; scenes with a two-speaker and a no-speaker utterance."""
    train = {"episodes": [
        {"episode_id": "s01_e01", "scenes": [
            {"scene_id": "s01_e01_c01", "utterances": [
                utt("s01_e01_c01_u001", ["Monica Geller"], "There’s nothing to tell!", "Neutral"),
                utt("s01_e01_c01_u002", ["Ross Geller", "Rachel Green"], "Hi!", "Joyful"),
                utt("s01_e01_c01_u003", ["Joey Tribbiani"], "C'mon,   you're going out", "MAD"),
            ]},
            {"scene_id": "s01_e01_c02", "utterances": [
                utt("s01_e01_c02_u001", [], "(crowd noise)", "scared"),
                utt("s01_e01_c02_u002", ["Chandler Bing"], "", "Peaceful"),
            ]},
        ]},
        {"episode_id": "s01_e02", "scenes": [
            {"scene_id": "s01_e02_c01", "utterances": [
                utt("s01_e02_c01_u001", ["Phoebe Buffay"], "Oh.", "Sad")]},
        ]},
    ]}
    dev = {"episodes": [{"episode_id": "s02_e01", "scenes": [
        {"scene_id": "s02_e01_c01", "utterances": [
            utt("s02_e01_c01_u001", ["Ross Geller"], "Hey.", "Powerful"),
            utt("s02_e01_c01_u002", ["Rachel Green"], "Hi.", "Neutral")]}]}]}
    test = {"episodes": [{"episode_id": "s03_e01", "scenes": [
        {"scene_id": "s03_e01_c01", "utterances": [
            utt("s03_e01_c01_u001", ["Monica Geller"], "Ok.", "Neutral")]}]}]}
    return {"trn": train, "dev": dev, "tst": test}


def write_emorynlp(root: Path, release: dict[str, dict] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for part, data in (release or emorynlp_release()).items():
        (root / f"emotion-detection-{part}.json").write_text(json.dumps(data, indent=2),
                                                             encoding="utf-8")
    return root


DD_DEFAULT = {
    "train": (["Say , Jim , how about going for a few beers after dinner ? __eou__ "
               "You know that is tempting but is really not good for our fitness . __eou__ "
               "What do you mean ? __eou__",
               "Can you do push-ups ? __eou__ Of course I can . It’s a piece of cake ! __eou__",
               "Hello ! __eou__"],
              ["0 0 1", "0 4", "6"]),
    "validation": (["Good morning , sir . __eou__ Morning . __eou__"], ["0 0"]),
    "test": (["Hey man , you wanna buy some weed ? __eou__ Some what ? __eou__ "
              "Weed ! You know ? __eou__ Oh , umm , no thanks . __eou__",
              "I'm so sad . __eou__"],
             ["0 6 0 2", "5"]),
}


def write_dailydialog(root: Path, splits: dict | None = None) -> Path:
    for folder, (texts, emotions) in (splits or DD_DEFAULT).items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"dialogues_{folder}.txt").write_text(
            "".join(line + "\n" for line in texts), encoding="utf-8")
        (root / folder / f"dialogues_emotion_{folder}.txt").write_text(
            "".join(line + " \n" for line in emotions), encoding="utf-8")  # as released: "0 0 \n"
    return root


# -- models: the official sizes, small ones, a random padded batch ----------------------------------

MELD = ModelConfig()  # the official MELD sizes are the defaults
IEMOCAP = ModelConfig(num_layers=6, mlp_hidden=256, num_classes=6, num_speakers=2,
                      bidirectional_context=True, text_context=True)


def small(cfg: ModelConfig, **kw) -> ModelConfig:
    """``cfg`` with tiny sizes (features 12 / 10 / 14, model 16, 4 heads)."""
    from dataclasses import replace
    return replace(cfg, text_dim=12, audio_dim=10, visual_dim=14, model_dim=16, num_heads=4,
                   hidden_dim=32, mlp_hidden=24, **kw)


def random_batch(B, U, lengths, num_speakers=3, seed=0):
    """Features of :func:`small` sizes, one-hot speakers and the mask, zero past each length."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(U)[None] < torch.tensor(lengths)[:, None]  # (B, U)
    feats = {m: torch.randn(B, U, d, generator=g) * mask[..., None]
             for m, d in (("text", 12), ("audio", 10), ("visual", 14))}
    speaker = nn.functional.one_hot(torch.randint(0, num_speakers, (B, U), generator=g),
                                    num_speakers).float()  # (B, U, S)
    return feats, speaker * mask[..., None], mask


# -- the batch-job runner's toy corpus and extractor -----------------------------------------------

def runner_corpus(num_dialogues: int = 5, length: int = 7) -> Corpus:
    dialogues = []
    for d in range(num_dialogues):
        split = ("train", "dev", "test")[d % 3]
        utts = tuple(Utterance(id=f"d{d}_u{u}", speaker="AB"[u % 2], label=u % 3,
                               text="x" * (1 + (d * 7 + u) % 11))
                     for u in range(length))
        dialogues.append(Dialogue(f"d{d}", split, utts))
    return Corpus("toy", ("a", "b", "c"), tuple(dialogues))


def vector_of(utt: Utterance) -> np.ndarray:
    seed = sum(map(ord, utt.id))
    return np.random.default_rng(seed).standard_normal(4).astype(np.float32)


class ToyExtractor:
    """The runner's toy extractor (tests/test_runner.py): Vectors from the id; ``absent`` ids have no vector, ``broken`` ids make the batch raise."""

    name = "toy"

    def __init__(self, batch_size: int = 4, absent=(), broken=(), returned_errors=(),
                 setting: int = 1) -> None:
        self.batch_size = batch_size
        self.absent, self.broken, self.returned_errors = set(absent), set(broken), set(returned_errors)
        self.setting = setting
        self.calls: list[list[str]] = []
        self.device = None

    def info(self) -> dict:
        return {"setting": self.setting, "dim": 4}

    def setup(self, device) -> None:
        self.device = device

    def extract(self, items):
        self.calls.append([u.id for u in items])
        if any(u.id in self.broken for u in items):
            raise RuntimeError("unreadable clip")
        out = []
        for u in items:
            if u.id in self.absent:
                out.append(Absent("no face"))
            elif u.id in self.returned_errors:
                out.append(ValueError("bad sample rate"))
            else:
                out.append(vector_of(u))
        return out
