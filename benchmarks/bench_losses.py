"""Benchmark: SWFC forward + backward, vectorised vs the released per-anchor loop.

    python benchmarks/bench_losses.py                      # 1000 utterances × 256 dims, 2 threads
    python benchmarks/bench_losses.py --device cuda        # on a GPU

Prints a Markdown table: median and best wall time of forward + backward (after warm-up), and
memory. "Held for backward" counts the distinct tensors autograd saves between forward and
backward (exact, any device). The peak column is, on CPU, the rise of the peak resident set
size (``VmHWM``, reset first) over the resident size before one forward + backward, in a fresh
process per implementation so that one does not hide the other (Linux only; coarse: it also
sees the allocator's and BLAS's first-call buffers); on CUDA, ``torch.cuda.max_memory_allocated``
above the inputs. The size of one ``N × N`` float32 matrix is printed too.

The released loop takes seconds per run and ~2 GB at N = 1000; ``--loop-repeats 0`` skips it.

``released_swfc_loop`` below is a faithful re-implementation, for comparison only, of
``SampleWeightedFocalContrastiveLoss.forward`` in the authors' repository (TaoShi1998/MultiEMO,
``Loss/SampleWeightedFocalContrastiveLoss.py``): a Python loop over anchors, each building the
N − 1 other rows with ``torch.cat`` and a softmax over them. It is not part of the library.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from multiemo.losses import SWFCLoss, soft_hgr_loss, swfc_class_weights

# MELD training label counts (train + dev, the official recipe's training set).
MELD_TRAIN_COUNTS = [5180, 1336, 298, 762, 1949, 292, 1260]


# -- the released loop, re-implemented for comparison only (NOT the library implementation) ------

def released_swfc_loop(features, labels, class_weights, temperature, gamma):
    """The released per-anchor SWFC loop (TaoShi1998/MultiEMO), same arithmetic, for timing."""
    num_samples, feature_dim = features.shape
    features = F.normalize(features, dim=-1)
    batch_sample_weights = torch.tensor([class_weights[label] for label in labels.tolist()],
                                        device=features.device)
    total_loss = 0.0
    for i in range(num_samples):
        current_feature = features[i]
        current_label = labels[i]
        feature_sets = torch.cat((features[:i], features[i + 1:]), dim=0)
        label_sets = torch.cat((labels[:i], labels[i + 1:]), dim=0)
        expanded = current_feature.expand(num_samples - 1, feature_dim)
        similarity = torch.sum(expanded * feature_sets, dim=-1)
        similarity_probs = torch.softmax(similarity / temperature, dim=0)
        positive = similarity_probs[label_sets == current_label]
        if len(positive) > 0:
            pair_loss = torch.mean(torch.log(positive) * ((1 - positive) ** gamma), dim=0)
            total_loss += pair_loss * batch_sample_weights[i]
    return -total_loss / num_samples


# ------------------------------------------------------------------------------------------------

def _inputs(n, dim, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, dim, generator=g).to(device)
    labels = torch.randint(0, len(MELD_TRAIN_COUNTS), (n,), generator=g).to(device)
    return z, labels


def _make(name, device, temperature=1.4, gamma=2.0, alpha=1.2):
    weights = swfc_class_weights(MELD_TRAIN_COUNTS, alpha)
    if name == "vectorised":
        loss = SWFCLoss(weights, temperature, gamma).to(device)
        return lambda z, labels: loss(z, labels)
    if name == "released loop":
        weights = weights.to(device)
        return lambda z, labels: released_swfc_loop(z, labels, weights, temperature, gamma)
    if name.startswith("soft-hgr"):
        variant = name.split()[-1]
        return lambda z, labels: soft_hgr_loss([z, z.roll(1, 0), z.roll(2, 0)], variant)
    raise ValueError(name)


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fwd_bwd(fn, z, labels, device, repeats, warmup):
    z = z.clone().requires_grad_(True)
    times = []
    for k in range(warmup + repeats):
        z.grad = None
        _sync(device)
        start = time.perf_counter()
        fn(z, labels).backward()
        _sync(device)
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return times


def saved_for_backward_bytes(fn, z, labels):
    """Bytes of the distinct tensors autograd keeps for backward (the memory a loss holds
    between forward and backward), counted with ``saved_tensors_hooks``."""
    z = z.clone().requires_grad_(True)
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn(z, labels)
    seen.pop(z.untyped_storage().data_ptr(), None)  # the input itself is not the loss's
    loss.backward()
    return sum(seen.values())


def _peak_worker(name, n, dim, device, threads, queue):
    torch.set_num_threads(threads)
    z, labels = _inputs(n, dim, device)
    z.requires_grad_(True)
    fn = _make(name, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(z, labels).backward()
        torch.cuda.synchronize()
        queue.put(torch.cuda.max_memory_allocated() - base)
    else:
        base = _status_kib("VmRSS")
        try:  # reset the peak (VmHWM) to the current RSS; Linux only
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        fn(z, labels).backward()
        queue.put((_status_kib("VmHWM") - base) * 1024)


def _status_kib(key):
    """A ``kB`` field of ``/proc/self/status`` (Linux). Not ``ru_maxrss``: that survives the
    ``exec`` of a spawned process and would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def peak_memory(name, n, dim, device, threads):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_worker, args=(name, n, dim, device, threads, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="utterances in the batch")
    parser.add_argument("--dim", type=int, default=256, help="feature size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--loop-repeats", type=int, default=2,
                        help="runs of the released loop (0: skip it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    z, labels = _inputs(args.n, args.dim, args.device)

    fast = _make("vectorised", args.device)(z, labels)
    cases = [("vectorised", args.repeats, args.warmup),
             ("released loop", args.loop_repeats, 0),
             ("soft-hgr official", args.repeats, args.warmup),
             ("soft-hgr paper", args.repeats, args.warmup)]
    if args.loop_repeats == 0:
        del cases[1]
    rows = []
    for name, repeats, warmup in cases:
        times = time_fwd_bwd(_make(name, args.device), z, labels, args.device, repeats, warmup)
        peak = peak_memory(name, args.n, args.dim, args.device, args.threads)
        saved = saved_for_backward_bytes(_make(name, args.device), z, labels)
        rows.append((name, statistics.median(times), min(times), len(times), saved, peak))

    print(f"SWFC and Soft-HGR forward + backward, N = {args.n}, D = {args.dim}, "
          f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"Python {sys.version.split()[0]}")
    print(f"vectorised SWFC = {fast.item():.6f}; one N × N float32 matrix = "
          f"{args.n * args.n * 4 / 2**20:.1f} MiB")
    if args.loop_repeats:
        slow = _make("released loop", args.device)(z, labels)
        print(f"released loop = {slow.item():.6f}, |difference| = "
              f"{abs(fast.item() - slow.item()):.2e}")
    print()
    peak_name = "peak CUDA MiB" if args.device.startswith("cuda") else "peak RSS rise MiB"
    print(f"| loss | median ms | best ms | runs | held for backward MiB | {peak_name} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, median, best, runs, saved, peak in rows:
        print(f"| {name} | {median * 1e3:.2f} | {best * 1e3:.2f} | {runs} | "
              f"{saved / 2**20:.1f} | {peak / 2**20:.1f} |")
    if args.loop_repeats:
        vec, loop = rows[0][1], rows[1][1]
        print(f"\nspeed-up of the vectorised SWFC over the released loop (medians): "
              f"{loop / vec:.0f}×")


if __name__ == "__main__":
    main()
