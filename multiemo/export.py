"""``multiemo export RUN_DIR --out MODEL_DIR``: a finished run as a self-contained model folder.

The folder (layout in :mod:`multiemo.recognizer`) holds the weights of the run's checkpoint
chosen on validation as safetensors, ``config.json`` (model config, labels, dataset, modalities,
speaker handling, and per modality the extraction settings read from the metadata of the feature
stores the run trained on), the files those settings need (the fine-tuned text encoder, a PCA
projection, local encoders) and a model card (``README.md``) with the data, the selection, the
test per-class table, the seed, the encoders and the limitations.

Refused, with the reason: a run that is not finished (no test report: the card needs it); a
feature store without recorded extraction settings (made before the toolkit recorded them, or
imported from the authors' pickles: no extractor of this toolkit can remake such features from
media, so the model cannot run on new conversations); a file the settings name that is not there.
The folder appears whole (written beside ``--out`` and renamed) and an existing ``--out`` is never
overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from multiemo.config import (Config, ModelConfig, build, get_dotted, read_yaml, resolve_path,
                             set_dotted, to_dict)
from multiemo.data.atomic import follow_umask
from multiemo.data.corpus import Corpus
from multiemo.data.splits import ValidationRule
from multiemo.data.store import FeatureStore, StoreError
from multiemo.errors import UserError
from multiemo.recognizer import (CONFIG_NAME, MODEL_FORMAT, MODEL_VERSION, WEIGHTS_NAME,
                                 FeatureSpec, ModelError)
from multiemo.run import RunDir, RunError

__all__ = ["export_run", "run_command"]

# settings keys (dotted) of each modality that may name a local model folder or file
LOCAL_FILES = {"text": ("model",), "audio": ("ssl.model",),
               "visual": ("encoder.model", "faces.model_path")}


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.tmp", ".write-test-*"))
    else:
        shutil.copy2(src, dst)


def _feature_spec(modality: str, cfg: Config, tmp: Path) -> tuple[FeatureSpec, list[str]]:
    """The spec of ``modality`` from its training store, copying the files it needs into
    ``tmp``; and the encoders it names (for the card)."""
    store_path = resolve_path(cfg.data.root, getattr(cfg.data, modality))
    try:
        store = FeatureStore(store_path)
    except StoreError as err:
        raise ModelError(f"{err} (the run's {modality} features)") from None
    info = store.info
    settings = info.get("settings")
    if not isinstance(settings, dict):
        made = info.get("source") or info.get("extractor") or "unknown"
        raise ModelError(
            f"{store_path}: the store does not record the extraction settings that made it "
            f"(made by {made!r}): a model trained on it cannot extract the same {modality} "
            f"features from new conversations. Re-run its extraction job with this version "
            f"(`multiemo extract {modality} ...`; delete {store_path.name}.work first), retrain, "
            f"and export that run")
    settings = json.loads(json.dumps(settings))
    files: dict[str, str] = {}
    encoders: list[str] = []
    if modality == "text":
        # the encoder that made the vectors: the fine-tuned copy, or the model as configured
        encoder = info.get("encoder_path") if settings.get("mode") == "finetune" else settings.get("model")
        settings["model"] = encoder
        encoders.append(f"text: {info.get('model', settings.get('model'))}"
                        f"{' (fine-tuned on the training split)' if settings.get('mode') == 'finetune' else ''}")
    for key in LOCAL_FILES[modality]:
        value = get_dotted(settings, key)
        if not value or str(value).startswith("pkg:"):
            continue
        src = Path(str(value)).expanduser()
        if not src.exists():
            if modality == "text" and settings.get("mode") == "finetune":
                raise ModelError(f"{store_path}: the fine-tuned text encoder {src} that made these "
                                 f"features is not there (run the export where the extraction ran)")
            if key == "faces.model_path":
                raise ModelError(f"{store_path}: the face detector file {src} is not there")
            continue  # a hub id: stays a reference
        target = f"{modality}/{'encoder' if src.is_dir() else src.name}"
        _copy(src, tmp / target)
        files[key] = target
        settings = set_dotted(settings, key, target)  # inside the model folder, not this machine's path
    if modality != "text":
        encoders.append(f"{modality}: {info.get('extractor', '?')}")
    projection = None
    if info.get("projection"):
        params = store_path.parent / info["projection"]["params"]
        if not params.is_file():
            raise ModelError(f"{store_path}: its projection {params} is not there")
        projection = f"{modality}/projection.safetensors"
        _copy(params, tmp / projection)
    return FeatureSpec(modality, str(info.get("extractor", "")), settings, files, projection,
                       store.dim), encoders


def _seeds_line(run: RunDir, seed: int) -> str:
    """The seed, and the spread over the sibling seed runs when the run is one of ``--seeds``."""
    summary = run.path.parent / "summary.json"
    if run.path.name.startswith("seed-") and summary.is_file():
        try:
            data = json.loads(summary.read_text())
            mean, std, n = data["mean"]["weighted_f1"], data["std"]["weighted_f1"], data["num_runs"]
            return (f"- Seed: {seed}, one of {n} seeds trained with the same configuration: test "
                    f"weighted-F1 over the {n} seeds {mean:.2f} ± {std:.2f} (mean ± std); this "
                    f"folder holds the seed-{seed} model.")
        except (ValueError, KeyError, TypeError):
            pass
    return (f"- Seed: {seed}. One run: the spread over seeds is not in this card (train with "
            f"`--seeds` to see it).")


def _model_card(cfg: Config, run: RunDir, info: dict[str, Any], corpus: Corpus,
                config: dict[str, Any], encoders: list[str]) -> str:
    report_md = run.path / "report.md"
    table = report_md.read_text(encoding="utf-8").strip() if report_md.is_file() else "(no report)"
    sizes = info.get("num_utterances", {})
    dialogues = info.get("num_dialogues", {})
    metric = info.get("select_metric", cfg.train.select_metric)
    valid = info.get(f"valid_{metric}")
    speakers = config["speakers"]
    lines = [
        "---",
        "library_name: multiemo",
        "tags: [emotion-recognition, emotion-recognition-in-conversation, multimodal, multiemo]",
        "---",
        "",
        f"# MultiEMO on {cfg.dataset} ({'+'.join(cfg.model.modalities)})",
        "",
        f"A MultiEMO model (Shi and Huang, ACL 2023; {_components_line(config['components'])}) exported "
        "by `multiemo export` from a training run of the multiemo toolkit. It labels each utterance "
        "of a conversation with one of: " + ", ".join(config["labels"]) + ".",
        "",
        "## Use",
        "",
        "```bash",
        "multiemo predict --model MODEL_DIR --input conversations.csv --out predictions/",
        "```",
        "",
        "```python",
        "from multiemo import Recognizer",
        "recognizer = Recognizer.from_pretrained(\"MODEL_DIR\")",
        "predictions = recognizer.predict(\"conversations.csv\")",
        "```",
        "",
        "The input is a conversation file (CSV or JSONL, one row per utterance: dialogue_id, "
        "utterance_index or start, speaker, text, and the audio / video paths the model's "
        "modalities need; see the toolkit's README).",
        "",
        "## Training data",
        "",
        f"- Corpus `{corpus.name}` (dataset `{cfg.dataset}`): train {dialogues.get('train', '?')} "
        f"dialogues / {sizes.get('train', '?')} utterances, validation {dialogues.get('valid', '?')} / "
        f"{sizes.get('valid', '?')}, test {dialogues.get('test', '?')} / {sizes.get('test', '?')}.",
        f"- Validation: `data.validation={cfg.data.validation}`"
        + (f" ({cfg.data.valid_fraction:.0%} of the training dialogues, drawn with seed "
           f"{cfg.data.valid_seed})" if ValidationRule.of(cfg.data).scheme(corpus) == "fraction"
           else " (the corpus's dev split)")
        + ".",
        "",
        "## Selection and result",
        "",
        f"- The epoch was chosen on **validation** {metric}: epoch {info.get('best_epoch')} of "
        f"{cfg.train.epochs}" + (f", validation {metric} {100 * valid:.2f}" if isinstance(valid, float) else "")
        + ". The test split was scored once, with that checkpoint.",
        _seeds_line(run, cfg.train.seed),
        "",
        table,
        "",
        "## Features",
        "",
        *[f"- {e}" for e in encoders],
        "- Each modality's extraction settings (encoder, pooling, context window, projection) are in "
        "`config.json` under `features`; `multiemo predict` runs the same extractors with them.",
        "",
        "## Speakers",
        "",
        (f"- Speakers are the model's vocabulary {speakers['vocab']}: an input speaker outside it is an error."
         if speakers.get("vocab") else
         f"- Speakers are indexed by their first appearance in each dialogue; the speaker vector holds "
         f"{speakers['num_speakers']}: a dialogue with more speakers is an error."),
        "",
        "## Limitations",
        "",
        f"- Trained on {corpus.name} only; conversations of another domain, language or recording "
        "setup may be labelled much worse than the test table says.",
        "- Utterances whose media is missing or unreadable are predicted from the modalities they "
        "have; the prediction files say which.",
        "- The class set is fixed: " + ", ".join(config["labels"]) + ".",
        "",
        f"Exported {time.strftime('%Y-%m-%d %H:%M:%S')} from run `{run.path.name}` "
        f"(checkpoint `{config['training']['checkpoint']}`).",
    ]
    return "\n".join(lines) + "\n"


def _components_line(parts: dict) -> str:
    """``context: text none, audio dialoguernn; fusion: multiattn; classifier: mlp`` for the card,
    from the model folder's ``components`` record."""
    context = ", ".join(f"{m} {name}" for m, name in parts["context"].items())
    return f"context: {context}; fusion: {parts['fusion']}; classifier: {parts['classifier']}"


def export_run(run_dir: str | Path, out: str | Path, checkpoint: str = "best") -> Path:
    """Write the model folder of a finished run to ``out`` (which must not exist)."""
    from safetensors.torch import save_file

    from multiemo.engine import load_checkpoint
    from multiemo.model import build_model, components_of

    run = RunDir(run_dir)
    seeds = sorted(p.name for p in Path(run_dir).glob("seed-*") if (p / "config.yaml").is_file())
    if not run.exists() and seeds:
        raise RunError(f"{run_dir} is a folder of seed runs ({', '.join(seeds[:5])}): export one "
                       f"of them, e.g. `multiemo export {Path(run_dir) / seeds[0]} --out ...`")
    run.require()
    out = Path(out)
    if out.exists():
        raise ModelError(f"{out} exists: choose another --out, or delete it first")
    record = run.record()
    if record.status != "finished":
        raise RunError(f"{run.path}: status {record.status or 'unknown'!r}; export a finished run "
                       f"(its test report goes into the model card)")
    info = record.to_json()
    cfg = build(Config, read_yaml(run.config), source=str(run.config))
    corpus = Corpus.load(resolve_path(cfg.data.root, cfg.data.corpus))
    state = load_checkpoint(run.checkpoint(checkpoint))
    network = build_model(cfg.model)
    try:
        network.load_state_dict(state["model"])
    except RuntimeError as err:
        raise RunError(f"{run.checkpoint(checkpoint)} does not fit the run's config "
                       f"({str(err).splitlines()[0]})") from None

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        features, encoders = {}, []
        for m in cfg.model.modalities:
            spec, named = _feature_spec(m, cfg, tmp)
            if spec.dim != getattr(cfg.model, f"{m}_dim"):
                raise ModelError(f"the {m} store has dimension {spec.dim} but the run's model reads "
                                 f"{getattr(cfg.model, f'{m}_dim')}")
            features[m] = spec.to_config()
            encoders += named
        save_file({k: v.detach().contiguous() for k, v in network.state_dict().items()},
                  str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        scores = {}
        report_json = run.path / "report.json"
        if report_json.is_file():
            scores = json.loads(report_json.read_text()).get("scores", {})
        config = {
            "format": MODEL_FORMAT, "version": MODEL_VERSION, "dataset": cfg.dataset,
            "corpus": corpus.name, "labels": list(corpus.labels),
            "modalities": list(cfg.model.modalities), "model": to_dict(cfg.model),
            "components": components_of(cfg.model),
            "speakers": {"num_speakers": cfg.model.num_speakers,
                         "vocab": list(corpus.speaker_vocab) if corpus.speaker_vocab else None,
                         "rule": "vocabulary" if corpus.speaker_vocab else "first appearance in the dialogue"},
            "features": features,
            "training": {"run": str(run.path.resolve()), "checkpoint": checkpoint,
                         "epoch": state.get("epoch"), "seed": cfg.train.seed,
                         "select_metric": info.get("select_metric"),
                         "best_epoch": info.get("best_epoch"),
                         "valid_score": info.get(f"valid_{info.get('select_metric')}"),
                         "test_scores": scores, "num_dialogues": info.get("num_dialogues"),
                         "num_utterances": info.get("num_utterances"),
                         "loss": to_dict(cfg.loss), "train": to_dict(cfg.train)},
        }
        build(ModelConfig, config["model"])  # the config reads back
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
        (tmp / "README.md").write_text(_model_card(cfg, run, info, corpus, config, encoders),
                                       encoding="utf-8")
        follow_umask(tmp)  # safetensors writes 0600; copies keep their sources' modes
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def run_command(args) -> int:
    """``multiemo export`` (the options are declared in :mod:`multiemo.cli`)."""
    try:
        out = export_run(args.run_dir, args.out, args.checkpoint)
    except OSError as err:
        raise UserError(f"cannot write the model folder {args.out}: {err.strerror or err}") from None
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"exported {args.run_dir} → {out} ({size / 1e6:.1f} MB): "
          f"{', '.join(sorted(p.name for p in out.iterdir()))}", file=sys.stderr)
    return 0
