"""Benchmark: torch CPU threads at the default against 1 thread, on an idle and on a busy machine.

    python benchmarks/bench_threads.py                  # predict ~300 utterances, a small epoch
    python benchmarks/bench_threads.py --utterances 600 --dialogues 144 --repeats 3

Two workloads, each timed (best of ``--repeats``) at ``--threads 0`` (the default:
:func:`multiemo.config.default_threads`, the CPUs this process may use) and at 1 thread:

* **predict**: ``multiemo predict --threads N`` in this process on synthetic MELD-like text
  conversations (``bench_predict.text_corpus``) with a model folder of random weights
  (``bench_predict.model_folder``: MELD's text-only MultiEMO) over a small random BERT encoder
  (2 layers, hidden 128; the same extraction settings as the MiniLM model: 8 past utterances, 128
  tokens, mean pooling). Model loading, extraction, the model and the output files are timed.
* **epoch**: one training epoch (train + valid + test, as ``bench_epoch.time_epochs``) of
  ``configs/meld.yaml`` on MELD-shaped synthetic features (``bench_epoch``'s data builder, with
  ``--dialogues`` training dialogues instead of 1152), threads set by ``set_num_threads`` (what
  ``multiemo train`` does with ``runtime.num_threads``).

First on the machine as it is ("idle"), then with one CPU-bound competitor beside it (a
``python -c "while True: pass"`` process, killed at the end). The table's ratio is the seconds
over the same workload's idle default-threads seconds (1.00 = no slower than that).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import make_data, time_epochs  # noqa: E402
from bench_predict import TEXT_SETTINGS, model_folder, text_corpus  # noqa: E402

from multiemo.config import Config, default_threads, load, set_num_threads  # noqa: E402
from multiemo.data.conversations import write_conversations  # noqa: E402

WORDS = "okay so what are you doing here I cannot believe this is happening again".split()


def small_encoder(path: Path, hidden: int = 128) -> Path:
    """A small random BERT and a word-piece tokenizer trained on the benchmark's words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    texts = [f"S{s}: {' '.join(WORDS[i:i + 4])}" for s in range(3) for i in range(len(WORDS))]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=4 * hidden, max_position_embeddings=160,
                                 pad_token_id=0))
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def time_predict(model: Path, source: Path, out: Path, threads: int) -> float:
    from multiemo.cli import main as cli
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    assert cli(["predict", "--model", str(model), "--input", str(source), "--out", str(out),
                "--no-progress", "--device", "cpu", "--threads", str(threads)]) == 0
    return time.perf_counter() - started


def time_epoch(cfg: Config, threads: int) -> float:
    set_num_threads(threads, "runtime.num_threads")
    return time_epochs(cfg, 1)[0]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average %.2f %.2f %.2f" % os.getloadavg()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="working folder (default: temporary, removed)")
    parser.add_argument("--utterances", type=int, default=300, help="predict: about this many")
    parser.add_argument("--dialogues", type=int, default=48, help="epoch: training dialogues")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many")
    args = parser.parse_args(argv)
    import logging
    logging.disable(logging.INFO)  # predict's log lines would bury the table
    data = Path(args.data or tempfile.mkdtemp(prefix="bench-threads-"))
    data.mkdir(parents=True, exist_ok=True)
    print(f"before: {uptime()}", flush=True)
    print(f"cores {os.cpu_count()}, default_threads() {default_threads()}, torch {torch.__version__}",
          flush=True)

    encoder = small_encoder(data / "encoder")
    feature = {"extractor": "text-bench", "settings": {**TEXT_SETTINGS, "model": str(encoder)},
               "files": {}, "projection": None, "dim": 128}
    model = model_folder(data / "model", ("text",), {"text": feature})
    corpus = text_corpus(None, args.utterances)
    source = write_conversations(corpus, data / "input.csv")
    n_utts = sum(len(d.utterances) for d in corpus.dialogues)
    root = data / "meld"
    if not (root / "corpus.json").is_file():
        make_data(root, train=args.dialogues, test=max(1, args.dialogues // 4))
    cfg = load(Config, "configs/meld.yaml", [f"data.root={root}", "runtime.device=cpu",
                                                "data.validation=fraction"])  # synthetic: no dev split
    cases = {"predict": lambda n: time_predict(model, source, data / "out", n),
             "epoch": lambda n: time_epoch(cfg, n)}
    for run in cases.values():  # warm-up (imports, first allocations), not timed
        run(1)

    rows = []
    competitor = None
    try:
        for load_name in ("idle", "busy"):
            if load_name == "busy":
                competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            for case, run in cases.items():
                for threads in (0, 1):
                    best = min(run(threads) for _ in range(args.repeats))
                    shown = f"{default_threads()} (default)" if threads == 0 else "1"
                    rows.append((case, load_name, threads, shown, best))
                    print(f"  {case} {load_name} threads={shown}: {best:.2f} s", file=sys.stderr, flush=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    print(f"after: {uptime()}\n")
    base = {case: s for case, load_name, threads, _, s in rows if load_name == "idle" and threads == 0}
    print(f"predict: {n_utts} utterances; epoch: {args.dialogues} training dialogues of MELD-shaped "
          f"features (train + valid + test)\n")
    print("| case | threads | seconds (best of %d) | ratio |" % args.repeats)
    print("| --- | --- | ---: | ---: |")
    for case, load_name, _, shown, seconds in rows:
        label = f"{case}, {load_name}" + (" (+1 CPU-bound process)" if load_name == "busy" else "")
        print(f"| {label} | {shown} | {seconds:.2f} | {seconds / base[case]:.2f} |")
    if not args.data:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
