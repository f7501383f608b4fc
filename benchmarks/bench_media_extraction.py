"""Benchmark: audio and visual extraction throughput on synthetic MELD-like clips.

    python benchmarks/bench_media_extraction.py                       # 200 clips, every family, CPU
    python benchmarks/bench_media_extraction.py --families opensmile,faces --device cuda
    python benchmarks/bench_media_extraction.py --resume-check        # + kill a job, rerun, compare

The clips (``make_synthetic_clips.py``: 640×360, 25 fps, 3.2 s mean, speech-like audio, a real
face in 70%) are written once under ``--data``. Each family runs as a real job through the
shared runner (decode included, chunk writes and merge included) and the table gives:

* wall: the whole job, model setup included; clips/s: clips over the time spent in
  ``extract`` (decode + features), i.e. the steady rate a long job sees; CPU s / clip: this
  process's CPU time (all threads) per clip, which other users of a shared machine inflate
  less than wall time (2 free cores give at most 2 / CPU-s clips per second);
* for the visual modes, frames *decoded* per clip next to frames *sampled* and frames in the
  clip: decoding streams forward (seeking when a target is far), and only sampled frames are
  converted to RGB and kept; a ``keyframes_only`` row shows the cheapest decode.

Encoders are random-weight models of realistic size (no download): ``ssl`` is a wav2vec 2.0
*base* layout (95 M parameters, each utterance alone, as wav2vec2-base is used), ``faces`` and
``frames`` a ViT-Tiny layout (12 layers, 192 wide) at 112×112 for face crops / 224 for frames.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_synthetic_clips import make_clips  # noqa: E402

from feature_extraction import audio as audio_mod  # noqa: E402
from feature_extraction import visual as visual_mod  # noqa: E402
from feature_extraction.runner import run_job  # noqa: E402
from multiemo.config import build  # noqa: E402
from multiemo.data.store import FeatureStore  # noqa: E402

FAMILIES = ("opensmile", "librosa", "ssl", "faces", "faces-keyframes", "frames")


def tiny_models(data: Path) -> dict[str, str]:
    """Random-weight encoders of realistic size, saved once under ``data/models``."""
    from transformers import (ViTConfig, ViTImageProcessor, ViTModel, Wav2Vec2Config,
                              Wav2Vec2FeatureExtractor, Wav2Vec2Model)
    models = {"ssl": data / "models" / "wav2vec2-base-random",
              "face": data / "models" / "vit-tiny-112-random",
              "frame": data / "models" / "vit-tiny-224-random"}
    torch.manual_seed(0)
    if not (models["ssl"] / "config.json").exists():
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(models["ssl"])
        Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(models["ssl"])
    for key, side in (("face", 112), ("frame", 224)):
        if not (models[key] / "config.json").exists():
            ViTModel(ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                               intermediate_size=768, image_size=side, patch_size=16)).save_pretrained(models[key])
            ViTImageProcessor(size={"height": side, "width": side}, image_mean=[0.5] * 3,
                              image_std=[0.5] * 3).save_pretrained(models[key])
    return {k: str(v) for k, v in models.items()}


def family_config(family: str, data: Path, models: dict[str, str], device: str):
    corpus = {"path": str(data / "corpus.json"), "media_root": str(data)}
    out = str(data / "stores" / f"{family}.safetensors")
    if family in ("opensmile", "librosa", "ssl"):
        return build(audio_mod.AudioJobConfig, {
            "corpus": corpus, "out": out, "family": family, "opensmile": {"feature_set": "IS10"},
            "ssl": {"model": models["ssl"]}, "batch_size": 8, "device": device})
    mode = "frames" if family == "frames" else "faces"
    return build(visual_mod.VisualJobConfig, {
        "corpus": corpus, "out": out, "mode": mode,
        "sampling": {"num_frames": 8 if mode == "frames" else 20,
                     "keyframes_only": family == "faces-keyframes"},
        "encoder": {"model": models["frame" if mode == "frames" else "face"]},
        "batch_size": 8, "num_workers": 2, "device": device})


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_family(family: str, data: Path, models: dict[str, str], device: str, limit: int | None) -> dict:
    from multiemo.data.corpus import Corpus
    cfg = family_config(family, data, models, device)
    module = audio_mod if family in ("opensmile", "librosa", "ssl") else visual_mod
    extractor = module.build_extractor(cfg)
    corpus = Corpus.load(data / "corpus.json")
    if limit:
        keep, count = [], 0
        for d in corpus.dialogues:
            if count >= limit:
                break
            keep.append(d)
            count += len(d.utterances)
        corpus = Corpus(corpus.name, corpus.labels, tuple(keep))
    out = Path(cfg.out)
    shutil.rmtree(out.with_name(out.name + ".work"), ignore_errors=True)
    out.unlink(missing_ok=True)

    spent = [0.0]
    extract = extractor.extract

    def timed(items):
        t0 = time.perf_counter()
        try:
            return extract(items)
        finally:
            spent[0] += time.perf_counter() - t0
    extractor.extract = timed
    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    summary = run_job(extractor, corpus, out, device=device, progress=False)
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    clips = summary.total
    row = {"family": family, "clips": clips, "wall_s": round(wall, 1),
           "extract_s": round(spent[0], 1), "clips_per_s": round(clips / spent[0], 2),
           "cpu_s_per_clip": round(cpu / clips, 3),
           "done": summary.done, "absent": summary.absent, "failed": summary.failed,
           "dim": FeatureStore(out).dim}
    counters = getattr(getattr(extractor, "frames", None), "counters", None)
    if counters:
        n = max(1, counters["clips"])
        row.update(decoded_per_clip=round(counters["frames_decoded"] / n, 1),
                   sampled_per_clip=round(counters["frames_sampled"] / n, 1),
                   frames_per_clip=round(counters["frames_in_clips"] / n, 1),
                   faces_per_clip=round(counters.get("faces", 0) / n, 1))
    return row


def decode_check(data: Path) -> list[dict]:
    """Frames decoded to sample 20 frames: a MELD-like clip and a 60 s IEMOCAP-like recording."""
    from feature_extraction._synthetic import write_clip
    from feature_extraction.media import sample_frames
    long_clip = data / "long-60s.mp4"
    if not long_clip.exists():
        write_clip(long_clip, 60.0, fps=25, size=(640, 360), face=True, audio=False, seed=99)
    short_clip = next(iter(sorted((data / "clips").glob("*.mp4"))))
    rows = []
    for name, path, span in (("MELD-like clip", short_clip, None),
                             ("60 s recording, whole", long_clip, None),
                             ("60 s recording, 3 s segment at 40 s", long_clip, (40.0, 43.0))):
        for keyframes in (False, True):
            t0 = time.perf_counter()
            sample = sample_frames(path, num_frames=20, span=span, keyframes_only=keyframes)
            rows.append({"clip": name, "keyframes_only": keyframes, "frames_in_span": sample.total_frames,
                         "sampled": len(sample.frames), "decoded": sample.decoded,
                         "ms": round(1000 * (time.perf_counter() - t0), 1)})
    return rows


def resume_check(data: Path) -> dict:
    """Kill an openSMILE job (SIGKILL) once it has written some chunks, rerun it, and compare
    with an uninterrupted run: the rerun must skip what was done and give the same store."""
    import yaml
    results: dict = {}
    for name in ("clean", "killed"):
        out = data / "stores" / f"resume-{name}.safetensors"
        work = out.with_name(f"resume-{name}.raw.safetensors.work")
        shutil.rmtree(work, ignore_errors=True)
        out.unlink(missing_ok=True)
        config = data / f"resume-{name}.yaml"
        config.write_text(yaml.safe_dump({
            "corpus": {"path": str(data / "corpus.json"), "media_root": str(data)}, "out": str(out),
            "family": "opensmile", "opensmile": {"feature_set": "IS10"}, "projection": {"dim": 64},
            "batch_size": 8, "chunk_items": 16}))
        command = [sys.executable, "-m", "multiemo.cli", "extract", "audio", "--config", str(config),
                   "--no-progress"]
        if name == "killed":
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            t0 = time.monotonic()
            while len(list(work.glob("chunk-*"))) < 3 and proc.poll() is None and time.monotonic() - t0 < 300:
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            results["killed_after_s"] = round(time.monotonic() - t0, 1)
            results["chunks_left_by_the_kill"] = len(list(work.glob("chunk-*")))
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        results[f"{name}_run"] = {"seconds": round(time.perf_counter() - t0, 1),
                                  "summary": [line for line in done.stderr.splitlines() if "shard" in line]}
    a, b = FeatureStore(data / "stores" / "resume-clean.safetensors"), \
        FeatureStore(data / "stores" / "resume-killed.safetensors")
    va, pa = a.get(a.ids)
    vb, pb = b.get(a.ids)
    results["identical"] = bool(a.ids == b.ids and (pa == pb).all() and np.array_equal(va, vb))
    results["max_abs_diff"] = float(np.abs(va - vb).max())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/tmp/multiemo_bench")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--ssl-clips", type=int, default=50, help="clips for the (slow) ssl family")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default; 1 is faster on a busy machine)")
    parser.add_argument("--resume-check", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    make_clips(data, args.clips)
    models = tiny_models(data)
    load = os.getloadavg()
    print(f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}, load average before "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, device {args.device}", file=sys.stderr)
    rows = []
    for family in args.families.split(","):
        row = run_family(family, data, models, args.device,
                         args.ssl_clips if family == "ssl" else None)
        row["load_avg_after"] = round(os.getloadavg()[0], 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print("| family | clips | wall s | clips/s (extract) | CPU s / clip | done / absent / failed | "
          "dim | frames decoded / sampled / in clip | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        frames = (f"{r['decoded_per_clip']} / {r['sampled_per_clip']} / {r['frames_per_clip']}"
                  if "decoded_per_clip" in r else "-")
        print(f"| {r['family']} | {r['clips']} | {r['wall_s']} | {r['clips_per_s']} | "
              f"{r['cpu_s_per_clip']} | {r['done']} / {r['absent']} / {r['failed']} | {r['dim']} | {frames} | "
              f"{r['load_avg_after']} |")
    result = {"rows": rows, "decode": decode_check(data)}
    print("\n| clip | keyframes only | frames in span | sampled | decoded | ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in result["decode"]:
        print(f"| {r['clip']} | {r['keyframes_only']} | {r['frames_in_span']} | {r['sampled']} | "
              f"{r['decoded']} | {r['ms']} |")
    if args.resume_check:
        result["resume"] = resume_check(data)
        print("\nresume check:", json.dumps(result["resume"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
