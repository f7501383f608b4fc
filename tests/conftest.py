"""Fixtures shared by several test files: a tiny random text encoder, and a tiny text-only run
trained on a conversation file and exported as a model folder.

Both are built once per session and read only: a test that damages or extends one works on a
copy (``shutil.copytree``). The plain builders behind them are in ``builders.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builders import (CONVERSATION_LABELS, CONVERSATION_ROWS, TINY_TRAIN, make_model_dir,
                      write_csv)
from multiemo.cli import main as cli


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    """A tiny random BERT (32-d) and a tokenizer trained on the toy words, as a model folder."""
    return make_model_dir(tmp_path_factory.mktemp("bert"), "bert")


@pytest.fixture(scope="session")
def trained(tmp_path_factory, bert_dir) -> dict[str, Path]:
    """A finished text-only run on a conversation file, and its exported model folder.

    Keys: ``source`` (the conversation CSV of :data:`builders.CONVERSATION_ROWS`), ``bert`` (the
    encoder: the session's ``bert_dir``), ``data`` (corpus and text store), ``run`` (the run
    folder), ``model`` (the export), ``tmp`` (the folder holding all but the encoder).
    """
    tmp = tmp_path_factory.mktemp("trained")
    bert = bert_dir
    data = tmp / "data"
    source = write_csv(tmp / "mine.csv", CONVERSATION_ROWS)
    assert cli(["corpus", "build", "--dataset", "conversations", "--root", str(source), "--out",
                str(data / "corpus.json"), "--labels", CONVERSATION_LABELS]) == 0
    job = tmp / "text.yaml"
    job.write_text(yaml.safe_dump({"corpus": {"path": str(data / "corpus.json")},
                                   "out": str(data / "features" / "text.safetensors"),
                                   "model": str(bert), "mode": "frozen", "past": 2, "pooling": "mean",
                                   "batch_size": 8, "device": "cpu"}))
    assert cli(["extract", "text", "--config", str(job), "--no-progress"]) == 0
    run = tmp / "run"
    assert cli(["train", "--config", "configs/emorynlp.yaml", "--run-dir", str(run), f"data.root={data}",
                *TINY_TRAIN, "train.lr=3e-3", "dataset=mine", "model.num_classes=3",
                "model.num_speakers=3"]) == 0
    model = tmp / "model"
    assert cli(["export", str(run), "--out", str(model)]) == 0
    return {"tmp": tmp, "run": run, "model": model, "source": source, "bert": bert, "data": data}
