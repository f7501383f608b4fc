"""Utterance-level audio features: ``multiemo extract audio --config FILE [key=value ...]``.

Three families, chosen by ``family`` in the config:

* ``opensmile``: openSMILE functionals of the whole utterance (IS09 384-d, IS10 1582-d,
  ComParE 2016 6373-d, eGeMAPS v02 88-d...), as the paper does (docs/method.md §5), usually with
  ``projection.dim: 512`` (PCA fitted on train, see :mod:`feature_extraction._projection`);
* ``ssl``: a self-supervised speech encoder through ``transformers`` (wav2vec 2.0, HuBERT,
  WavLM; hub id or local folder), hidden states mean-pooled over time, one layer or the average
  of several;
* ``librosa``: light descriptors (MFCC, log-mel, pitch, energy statistics).

Audio is the utterance's ``audio`` file (a wav, or the audio track of an mp4/avi) cut to its
``audio_span`` when it has one, mono at ``sample_rate``. A file that cannot be read is a failure
of that utterance (the job goes on); a clip longer than ``max_duration`` is refused (failure,
logged); a silent one (peak below ``min_peak_dbfs``) is absent, never a vector of silence.

    multiemo extract audio --config configs/extract/meld_audio.yaml
    multiemo extract audio --config configs/extract/meld_audio.yaml family=ssl \\
        ssl.model=microsoft/wavlm-base-plus ssl.layers=[6,7,8] out=data/meld/features/audio_wavlm.safetensors
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from feature_extraction._jobs import ProjectionConfig, map_items, media_root_of, run_extraction
from feature_extraction.media import load_audio, resolve_media
from feature_extraction.runner import Absent, CorpusSource
from multiemo.data.corpus import Utterance

__all__ = ["AudioJobConfig", "OpenSmileOptions", "SpeechEncoderOptions", "LibrosaOptions",
           "OpenSmileExtractor", "SpeechEncoderExtractor", "LibrosaExtractor", "build_extractor"]

OPENSMILE_SETS = ("IS09", "IS10", "IS11", "IS12", "IS13", "ComParE_2016", "GeMAPSv01b",
                  "eGeMAPSv02", "emobase")


# -- configuration ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenSmileOptions:
    feature_set: Literal[OPENSMILE_SETS] = "IS10"  # type: ignore[valid-type]


@dataclass(frozen=True)
class SpeechEncoderOptions:
    model: str = "facebook/wav2vec2-base"  # hub id or local folder
    layers: tuple[int, ...] = (-1,)  # hidden states to average (0: the CNN/embedding output)
    max_batch_seconds: float = 120.0  # audio per forward pass (memory bound; CPU or GPU)


@dataclass(frozen=True)
class LibrosaOptions:
    n_mfcc: int = 40
    n_mels: int = 64
    fmin: float = 65.0  # pitch search range, Hz
    fmax: float = 500.0


@dataclass(frozen=True)
class AudioJobConfig:
    """``configs/extract/*_audio.yaml``. Settings that shape the vectors are recorded in the
    store; ``device`` and ``batch_size`` are runtime options that never change them."""

    corpus: CorpusSource = field(default_factory=CorpusSource)
    out: str = "data/meld/features/audio.safetensors"
    family: Literal["opensmile", "ssl", "librosa"] = "opensmile"
    sample_rate: int = 16000
    max_duration: float = 60.0  # seconds; a longer clip or segment is refused (logged)
    min_peak_dbfs: float = -60.0  # quieter than this everywhere: silent, stored as absent
    splits: tuple[str, ...] = ()  # only these splits (default: all)
    opensmile: OpenSmileOptions = field(default_factory=OpenSmileOptions)
    ssl: SpeechEncoderOptions = field(default_factory=SpeechEncoderOptions)
    librosa: LibrosaOptions = field(default_factory=LibrosaOptions)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    batch_size: int = 8
    num_workers: int = 2  # threads decoding (and, for opensmile / librosa, computing) per batch
    device: str = "auto"
    num_threads: int = 0  # torch CPU threads; 0: the CPUs this process may use (default_threads)
    chunk_items: int = 256  # finished items are written to disk every chunk_items items or
    chunk_seconds: float = 60.0  # chunk_seconds seconds: a killed job loses at most that much

    def __post_init__(self) -> None:
        if min(self.sample_rate, self.max_duration, self.batch_size, self.num_workers) <= 0:
            raise ValueError(f"sample_rate, max_duration, batch_size and num_workers must be "
                             f"positive, got {self.sample_rate}, {self.max_duration}, "
                             f"{self.batch_size}, {self.num_workers}")


# -- reading an utterance's audio ---------------------------------------------------------------

class _AudioSource:
    """Loads an utterance's audio as the config says; silent audio raises :class:`Absent`."""

    def __init__(self, media_root: str | None, sample_rate: int, max_duration: float | None,
                 min_peak_dbfs: float, num_workers: int = 1) -> None:
        self.media_root, self.sample_rate = media_root, sample_rate
        self.max_duration, self.min_peak_dbfs = max_duration, min_peak_dbfs
        self.num_workers = num_workers

    def settings(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "max_duration": self.max_duration,
                "min_peak_dbfs": self.min_peak_dbfs}

    def load(self, utt: Utterance) -> np.ndarray:
        path = resolve_media(self.media_root, utt.audio, "audio")
        samples = load_audio(path, sample_rate=self.sample_rate, span=utt.audio_span,
                             max_duration=self.max_duration)
        peak = float(np.abs(samples).max())
        peak_db = 20 * np.log10(peak) if peak > 0 else -np.inf
        if peak_db < self.min_peak_dbfs:
            raise Absent(f"{path}: silent audio (peak {peak_db:.1f} dBFS < min_peak_dbfs="
                         f"{self.min_peak_dbfs:g})")
        return samples

    def load_all(self, items: list[Utterance]) -> list[np.ndarray | Exception]:
        return map_items(self.num_workers, self.load, items)


# -- the three families ------------------------------------------------------------------------

class OpenSmileExtractor:
    """openSMILE functionals of each utterance (one row of the chosen feature set)."""

    def __init__(self, source: _AudioSource, feature_set: str = "IS10", batch_size: int = 8) -> None:
        if feature_set not in OPENSMILE_SETS:
            raise ValueError(f"unknown openSMILE feature set {feature_set!r}; choose from {OPENSMILE_SETS}")
        self.source, self.feature_set, self.batch_size = source, feature_set, batch_size
        self.name = f"opensmile-{feature_set}"
        self._local = threading.local()  # one openSMILE instance per worker thread
        self.dim: int | None = None

    def info(self) -> dict[str, Any]:
        import opensmile
        return {"family": "opensmile", "feature_set": self.feature_set, "level": "functionals",
                "dim": self.dim, "opensmile": opensmile.__version__, **self.source.settings()}

    def _smile(self) -> Any:
        if not hasattr(self._local, "smile"):
            import opensmile
            self._local.smile = opensmile.Smile(
                feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                feature_level=opensmile.FeatureLevel.Functionals)
        return self._local.smile

    def setup(self, device: torch.device) -> None:
        self.dim = len(self._smile().feature_names)

    def describe(self, utt: Utterance) -> np.ndarray:
        """The functionals of one utterance (decoding included)."""
        row = self._smile().process_signal(self.source.load(utt), self.source.sample_rate)
        return row.to_numpy(dtype=np.float32).reshape(-1)

    def extract(self, items: list[Utterance]) -> list[np.ndarray | Exception]:
        return map_items(self.source.num_workers, self.describe, items)


class SpeechEncoderExtractor:
    """Mean-pooled hidden states of a ``transformers`` speech encoder (wav2vec 2.0, HuBERT, WavLM).

    Items are padded into batches (at most ``max_batch_seconds`` of audio each) when the model's
    feature extractor uses an attention mask; models trained without one (wav2vec2-base, HuBERT
    base) see each utterance alone, as their model cards ask, so padding never changes a vector.
    Pooling averages each selected hidden layer over the utterance's own frames only.
    """

    def __init__(self, source: _AudioSource, model: str, layers: tuple[int, ...] = (-1,),
                 batch_size: int = 8, max_batch_seconds: float = 120.0) -> None:
        if not layers:
            raise ValueError("ssl.layers must name at least one hidden layer")
        self.source, self.model_id, self.layers = source, model, tuple(layers)
        self.batch_size, self.max_batch_seconds = batch_size, max_batch_seconds
        self.name = f"ssl-{model.rstrip('/').split('/')[-1]}"
        self._model = self._processor = None
        self.device = torch.device("cpu")
        self.dim: int | None = None

    def info(self) -> dict[str, Any]:
        return {"family": "ssl", "model": self.model_id, "layers": list(self.layers),
                "pooling": "mean over time", "dim": self.dim, **self.source.settings()}

    def setup(self, device: torch.device) -> None:
        from transformers import AutoFeatureExtractor, AutoModel

        from feature_extraction.runner import loading_model
        with loading_model(self.model_id, "ssl.model"):
            self._processor = AutoFeatureExtractor.from_pretrained(self.model_id)
            self._model = AutoModel.from_pretrained(self.model_id).eval().to(device)
        self.device = device
        num_layers = self._model.config.num_hidden_layers
        bad = [i for i in self.layers if not -(num_layers + 1) <= i <= num_layers]
        if bad:
            raise ValueError(f"ssl.layers {bad} out of range for {self.model_id} "
                             f"({num_layers} layers: hidden states 0..{num_layers} or negative)")
        self.dim = int(self._model.config.hidden_size)
        rate = getattr(self._processor, "sampling_rate", self.source.sample_rate)
        if rate != self.source.sample_rate:
            raise ValueError(f"{self.model_id} expects {rate} Hz audio; set sample_rate: {rate}")

    def _groups(self, signals: list[tuple[int, np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
        if not getattr(self._processor, "return_attention_mask", False):
            return [[s] for s in signals]
        groups, current = [], []
        for s in sorted(signals, key=lambda s: s[1].size):
            longest = max(s[1].size, max((c[1].size for c in current), default=0))
            if current and longest * (len(current) + 1) / self.source.sample_rate > self.max_batch_seconds:
                groups.append(current)
                current = []
            current.append(s)
        return groups + ([current] if current else [])

    @torch.inference_mode()
    def _encode(self, signals: list[np.ndarray]) -> np.ndarray:
        batch = self._processor(signals, sampling_rate=self.source.sample_rate, return_tensors="pt",
                                padding=True, return_attention_mask=True)
        lengths = torch.tensor([s.size for s in signals])
        inputs = {"input_values": batch["input_values"].to(self.device)}
        if getattr(self._processor, "return_attention_mask", False):
            inputs["attention_mask"] = batch["attention_mask"].to(self.device)
        hidden = self._model(**inputs, output_hidden_states=True).hidden_states  # L+1 × (B, T, D)
        frames = self._model._get_feat_extract_output_lengths(lengths).to(self.device)  # (B,)
        steps = hidden[0].shape[1]
        mask = (torch.arange(steps, device=self.device)[None, :] < frames[:, None]).float()  # (B, T)
        pooled = [(hidden[i] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
                  for i in self.layers]  # each (B, D)
        return torch.stack(pooled).mean(0).float().cpu().numpy()  # (B, D)

    def extract(self, items: list[Utterance]) -> list[np.ndarray | Exception]:
        assert self._model is not None, "call setup() first"
        out: list[Any] = self.source.load_all(items)
        good = [(i, s) for i, s in enumerate(out) if not isinstance(s, Exception)]
        for group in self._groups(good):
            vectors = self._encode([s for _, s in group])
            for (i, _), vec in zip(group, vectors):
                out[i] = vec
        return out


class LibrosaExtractor:
    """Light descriptors, mean/std over 25 ms frames every 10 ms:

    MFCC and their deltas (4 × n_mfcc), log-mel energies (2 × n_mels), pitch from YIN over the
    voiced frames (frames within 30 dB of the loudest; mean, std, min, max of log2 f0, and the
    voiced fraction: 5), RMS energy in dB (mean, std, min, max: 4) and zero-crossing rate (2).
    """

    def __init__(self, source: _AudioSource, n_mfcc: int = 40, n_mels: int = 64,
                 fmin: float = 65.0, fmax: float = 500.0, batch_size: int = 8) -> None:
        if n_mfcc <= 0 or n_mels < n_mfcc or not 0 < fmin < fmax:
            raise ValueError(f"librosa options: need 0 < n_mfcc <= n_mels and 0 < fmin < fmax, got "
                             f"n_mfcc={n_mfcc}, n_mels={n_mels}, fmin={fmin}, fmax={fmax}")
        self.source, self.batch_size = source, batch_size
        self.n_mfcc, self.n_mels, self.fmin, self.fmax = n_mfcc, n_mels, fmin, fmax
        self.name = "librosa-descriptors"
        self.dim = 4 * n_mfcc + 2 * n_mels + 5 + 4 + 2

    def info(self) -> dict[str, Any]:
        import librosa
        return {"family": "librosa", "n_mfcc": self.n_mfcc, "n_mels": self.n_mels,
                "pitch_range_hz": [self.fmin, self.fmax], "dim": self.dim,
                "librosa": librosa.__version__, **self.source.settings()}

    def setup(self, device: torch.device) -> None:
        # librosa compiles some kernels with numba on first use: pay it once, here
        self.describe(np.random.default_rng(0).standard_normal(self.source.sample_rate).astype(np.float32))

    def describe(self, y: np.ndarray) -> np.ndarray:
        """The descriptor vector of one signal ``(num_samples,)`` → ``(dim,)``."""
        import librosa
        sr = self.source.sample_rate
        win, hop = int(0.025 * sr), int(0.010 * sr)
        n_fft = 1 << (win - 1).bit_length()
        if y.size < n_fft:
            y = np.pad(y, (0, n_fft - y.size))
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, win_length=win,
                                             n_mels=self.n_mels)  # (M, T)
        logmel = librosa.power_to_db(mel, ref=1.0, top_db=None)
        mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=self.n_mfcc)  # (C, T)
        width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))  # odd, at most the frame count
        delta = librosa.feature.delta(mfcc, width=width) if width >= 3 else np.zeros_like(mfcc)
        rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)[0]  # (T,)
        rms_db = 20 * np.log10(np.maximum(rms, 1e-10))
        f0 = librosa.yin(y, fmin=self.fmin, fmax=self.fmax, sr=sr, frame_length=max(n_fft, 2048),
                         hop_length=hop)  # (T',)
        steps = min(f0.size, rms_db.size)
        voiced = rms_db[:steps] > rms_db.max() - 30.0
        logf0 = np.log2(f0[:steps][voiced]) if voiced.any() else np.zeros(1)
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)[0]

        def stats(x: np.ndarray, axis: int = -1) -> list[np.ndarray]:
            return [x.mean(axis), x.std(axis)]

        parts = [*stats(mfcc), *stats(delta), *stats(logmel),
                 np.array([logf0.mean(), logf0.std(), logf0.min(), logf0.max(), voiced.mean()]),
                 np.array([rms_db.mean(), rms_db.std(), rms_db.min(), rms_db.max()]),
                 np.array(stats(zcr))]
        return np.concatenate([np.atleast_1d(p) for p in parts]).astype(np.float32)

    def extract(self, items: list[Utterance]) -> list[np.ndarray | Exception]:
        return map_items(self.source.num_workers, lambda u: self.describe(self.source.load(u)), items)


# -- command ---------------------------------------------------------------------------------

def build_extractor(cfg: AudioJobConfig) -> OpenSmileExtractor | SpeechEncoderExtractor | LibrosaExtractor:
    """The extractor a config asks for (models are loaded later, in ``setup``)."""
    source = _AudioSource(media_root_of(cfg.corpus), cfg.sample_rate, cfg.max_duration,
                          cfg.min_peak_dbfs, cfg.num_workers)
    if cfg.family == "opensmile":
        return OpenSmileExtractor(source, cfg.opensmile.feature_set, cfg.batch_size)
    if cfg.family == "ssl":
        return SpeechEncoderExtractor(source, cfg.ssl.model, cfg.ssl.layers, cfg.batch_size,
                                      cfg.ssl.max_batch_seconds)
    return LibrosaExtractor(source, cfg.librosa.n_mfcc, cfg.librosa.n_mels, cfg.librosa.fmin,
                            cfg.librosa.fmax, cfg.batch_size)


def run_command(args) -> int:
    """``multiemo extract audio`` (the options are declared in :mod:`multiemo.cli`)."""
    return run_extraction(args, config_cls=AudioJobConfig, build=build_extractor)
