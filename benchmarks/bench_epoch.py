"""Benchmark: one MultiEMO training epoch on synthetic data shaped exactly like MELD.

    python benchmarks/bench_epoch.py                   # ours, 3 epochs, CPU, 2 threads
    python benchmarks/bench_epoch.py --baseline        # also a released-style epoch, same machine
    python benchmarks/bench_epoch.py --device cuda     # on a GPU (bf16 autocast)
    git worktree add /tmp/old 55f6d61                  # another version of the code, then:
    python benchmarks/bench_epoch.py --compare /tmp/old --rounds 3 --epochs 2   # both, in turns
    python benchmarks/bench_epoch.py --compare /tmp/old --batches 2             # quicker: 2 training batches

Data: 1152 train+valid dialogues and 280 test dialogues whose lengths follow MELD's real
distribution (13,708 utterances in all), text 768 / audio 512 / visual 1000, 7 classes, MELD's
class balance; the official MELD recipe (configs/meld.yaml: 2 MultiAttn layers, batch 100,
all three losses). One epoch = training on the train split + scoring validation + scoring test,
as the issue defines it. Peak memory is the process's peak resident set (CPU) or
``torch.cuda.max_memory_allocated`` (GPU).

``--compare DIR`` times the checkout at DIR (its ``multiemo`` package and ``configs/meld.yaml``)
beside this one on the same data: each round runs one process per version, in alternating
order, each timing ``--epochs`` epochs after building its training; the table gives each
version's best epoch and the ratio, so a slowdown of a few percent shows above the machine's
drift.

``--baseline`` times the same epoch computed the way the released code computes it, for a
same-machine comparison, with our modules' parameters: DialogueRNN stepping over every padded
position with GRU_p run for all 9 parties and the attention re-run over the whole history each
step (``released_dialoguernn_forward``); projections, MultiAttn and the classifier on every padded
position, with PyTorch's standard multi-head attention (``F.multi_head_attention_forward``,
what ``nn.MultiheadAttention`` runs) attending to padded keys (the release has no padding mask;
``released_multiemo_forward``), so the baseline shares none of our fast paths; SWFC as the released per-anchor Python loop
(``bench_losses.released_swfc_loop``); Adam's per-tensor loop. These are re-implementations for
timing only (the tests hold our DialogueRNN equal to the released cell); data loading, the other
losses and the metrics are ours.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from multiemo.config import Config, load  # noqa: E402
from multiemo.losses import SWFCLoss  # noqa: E402
from multiemo.model import MultiEMO, MultiEMOOutput  # noqa: E402
from multiemo.model.attention import MultiHeadAttention, Packing  # noqa: E402
from multiemo.model.dialoguernn import DialogueRNN  # noqa: E402
from multiemo.model.multiattn import MultiAttn  # noqa: E402
from multiemo.synthetic import MELD_DIALOGUE_LENGTHS, make_synthetic_corpus  # noqa: E402
from multiemo.engine import build_training, loader, run_epoch  # noqa: E402

MELD_PRIOR = [0.47, 0.12, 0.03, 0.07, 0.17, 0.03, 0.11]  # MELD train+dev class shares


def released_dialoguernn_forward(self: DialogueRNN, u, speaker, lengths):
    """DialogueRNN as the released code runs it: every step incl. padding, GRU_p for all 9
    parties, attention over the whole history at each step. Same parameters as ours."""
    B, U, D = u.shape
    P = 9
    party = F.one_hot(speaker, P).to(u.dtype)  # (B, U, P)
    q = u.new_zeros(B, P, D)
    g_hist, outputs = [], []
    e = u.new_zeros(B, D)
    rows = torch.arange(B)
    for t in range(U):
        idx = speaker[:, t]
        q_s = q[rows, idx]
        g = self.dropout(self.g_cell(torch.cat([u[:, t], q_s], 1), g_hist[-1] if g_hist else u.new_zeros(B, D)))
        if g_hist:
            hist = torch.stack(g_hist)  # (t, B, D)
            alpha = torch.softmax(self.attention(hist), dim=0)  # (t, B, 1)
            c = (alpha * hist).sum(0)
        else:
            c = u.new_zeros(B, D)
        u_c = torch.cat([u[:, t], c], 1).unsqueeze(1).expand(-1, P, -1)
        qs = self.dropout(self.p_cell(u_c.reshape(-1, 2 * D), q.reshape(-1, D)).view(B, P, D))
        m = party[:, t].unsqueeze(2)
        q = q * (1 - m) + qs * m
        e = self.dropout(self.e_cell(q[rows, idx], e))
        g_hist.append(g)
        outputs.append(e)
    return torch.stack(outputs, 1)


def released_mha(attn: MultiHeadAttention, query, key_value):
    """``torch.nn.MultiheadAttention``'s computation (as the release uses it: no padding mask)
    with our module's parameters, on padded ``(B, U, D)`` sequences."""
    q, kv = query.transpose(0, 1), key_value.transpose(0, 1)  # (U, B, D)
    out, _ = F.multi_head_attention_forward(
        q, kv, kv, q.shape[-1], attn.num_heads, None,
        torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]), None, None, False, 0.0,
        attn.out_proj.weight, attn.out_proj.bias, training=attn.training, need_weights=False,
        use_separate_proj_weight=True, q_proj_weight=attn.q_proj.weight,
        k_proj_weight=attn.k_proj.weight, v_proj_weight=attn.v_proj.weight)
    return out.transpose(0, 1)


def released_multiattn_forward(self: MultiAttn, unimodal):
    """MultiAttn over every padded position, attending to padded keys, with standard MHA."""
    fused = {}
    for m in self.modalities:
        others = [o for o in self.modalities if o != m]
        x = unimodal[m]
        for layer in self.stacks[m]:
            for attend, norm, o in zip(layer.cross, layer.cross_norms, others):
                x = norm(x + layer.dropout(released_mha(attend, x, unimodal[o])))
            x = layer.ffn_norm(x + layer.dropout(layer.ffn(x)))
        fused[m] = x
    return fused


def released_multiemo_forward(self: MultiEMO, features, speaker_mask, mask, present=None):
    """MultiEMO as the released code runs it: every padded position is computed and attended to."""
    speaker = speaker_mask.argmax(dim=-1)
    lengths = mask.sum(dim=1)
    unimodal = {}
    for m in self.modalities:
        x = self.projections[m](features[m])  # (B, U, D), padding included
        if m in self.context:
            x = torch.relu(released_dialoguernn_forward(self.context[m].forward_rnn, x, speaker, lengths))
        unimodal[m] = x
    fused = released_multiattn_forward(self.fusion, unimodal)
    logits, z = self.classifier(torch.cat([fused[m] for m in self.modalities], dim=-1))
    packing = Packing(mask)  # the losses read the real utterances
    return MultiEMOOutput(packing, packing.pack(logits), packing.pack(z), {m: packing.pack(x) for m, x in fused.items()})


def released_swfc_forward(self: SWFCLoss, z, labels):
    from bench_losses import released_swfc_loop
    return released_swfc_loop(z.float(), labels, self.class_weights.tolist(), self.temperature, self.gamma)


def make_data(root: Path, seed: int = 0, *, train: int = 1152, test: int = 280) -> None:
    """MELD-shaped synthetic features (see the module docstring) in ``root``: ``train``
    train+valid dialogues and ``test`` test dialogues."""
    make_synthetic_corpus(root, dialogues={"train": train, "test": test},
                          dims={"text": 768, "audio": 512, "visual": 1000}, num_classes=7,
                          num_speakers=9, lengths=MELD_DIALOGUE_LENGTHS, class_prior=MELD_PRIOR,
                          noise=2.0, seed=seed)


def time_epochs(cfg: Config, epochs: int, fused_adam: bool = True, batches: int = 0) -> list[float]:
    """Epoch times of the training that ``multiemo train`` builds (``multiemo.engine``); with
    ``batches`` > 0, of that many training batches only (a quick comparison)."""
    t = build_training(cfg)
    if not fused_adam:  # the released code's per-tensor Adam loop
        t.optimizer = torch.optim.Adam(t.model.parameters(), lr=cfg.train.lr,
                                       weight_decay=cfg.train.weight_decay, foreach=False)
    splits = {s: t.data.dataset(s) for s in ("train", "valid", "test")}
    times = []
    for epoch in range(epochs):
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        train = loader(splits["train"], cfg.train.batch_size, epoch)
        if batches:
            train = list(itertools.islice(train, batches))
        run_epoch(t.model, t.criterion, train, t.device, t.amp, t.optimizer)
        if not batches:
            run_epoch(t.model, t.criterion, loader(splits["valid"], cfg.train.batch_size), t.device, t.amp)
            run_epoch(t.model, t.criterion, loader(splits["test"], cfg.train.batch_size), t.device, t.amp)
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def _worker_times(checkout: Path, root: Path, args) -> list[float]:
    """Epoch times of the code at ``checkout``, timed by this script in a process of its own."""
    import os
    import subprocess
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "--data", str(root),
                           "--device", args.device, "--threads", str(args.threads), "--epochs", str(args.epochs),
                           "--batches", str(args.batches)],
                          cwd=checkout, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(root: Path, other: Path, args) -> int:
    """This checkout against ``other``, in turns (see the module docstring)."""
    here = Path(__file__).resolve().parent.parent
    versions = {f"this checkout ({here})": here, f"--compare ({other})": other.resolve()}
    times: dict[str, list[float]] = {name: [] for name in versions}
    for r in range(args.rounds):
        order = list(versions) if r % 2 == 0 else list(reversed(versions))
        for name in order:
            times[name] += _worker_times(versions[name], root, args)
            print(f"round {r + 1}/{args.rounds}: {name}: {', '.join(f'{t:.2f}' for t in times[name][-args.epochs:])} s",
                  flush=True)
    what = f"{args.batches} training batches" if args.batches else "One MELD-shaped epoch"
    print(f"\n{what}, device {args.device}, {args.threads} CPU threads, torch {torch.__version__}, "
          f"{args.rounds} rounds × {args.epochs} epochs each\n")
    print("| version | epoch times, s | best, s | median, s |")
    print("| --- | --- | ---: | ---: |")
    for name, ts in times.items():
        print(f"| {name} | {', '.join(f'{t:.2f}' for t in ts)} | {min(ts):.2f} | {statistics.median_high(ts):.2f} |")
    mine, theirs = times.values()
    print(f"\nthis / --compare: best {min(mine) / min(theirs):.3f}, median "
          f"{statistics.median_high(mine) / statistics.median_high(theirs):.3f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--baseline", action="store_true", help="also time a released-style epoch")
    parser.add_argument("--compare", metavar="DIR", help="also time the checkout at DIR, in turns with this one")
    parser.add_argument("--rounds", type=int, default=3, help="--compare: rounds of one process per version")
    parser.add_argument("--batches", type=int, default=0,
                        help="time this many training batches per epoch only (0: the whole epoch)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # print epoch times as JSON
    parser.add_argument("--data", help="folder for the synthetic MELD-shaped data (default: temporary)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.data or tempfile.mkdtemp(prefix="bench-epoch-"))
    if not (root / "corpus.json").is_file():
        make_data(root)
    if args.compare:
        return compare(root, Path(args.compare), args)
    cfg = load(Config, "configs/meld.yaml", [f"data.root={root}", f"runtime.device={args.device}",
                                            "data.validation=fraction"])  # the released split: no dev here
    if args.worker:
        print(json.dumps(time_epochs(cfg, args.epochs, batches=args.batches)))
        return 0
    rows = []
    ours = time_epochs(cfg, args.epochs, batches=args.batches)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    rows.append(("MultiEMO (this toolkit)", ours, peak))
    if args.baseline:
        MultiEMO.forward = released_multiemo_forward
        SWFCLoss.forward = released_swfc_forward
        base = time_epochs(cfg, 1, fused_adam=False)
        rows.append(("released-style computation (see --help)", base, None))
    print(f"\nOne MELD-shaped epoch (train 1094 + valid 58 + test 280 dialogues, 13,708 utterances), "
          f"device {args.device}, {args.threads} CPU threads, torch {torch.__version__}\n")
    print("| implementation | epoch time, s (each epoch) | best, s | peak memory, MiB |")
    print("| --- | --- | ---: | ---: |")
    for name, times, mem in rows:
        print(f"| {name} | {', '.join(f'{t:.2f}' for t in times)} | {min(times):.2f} | "
              f"{'-' if mem is None else f'{mem:.0f}'} |")
    if args.baseline:
        print(f"\nspeed-up: {min(rows[1][1]) / min(ours):.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
