"""Utterance-level visual features: ``multiemo extract visual --config FILE [key=value ...]``.

Two modes, chosen by ``mode`` in the config:

* ``faces``: VisExtNet (docs/method.md §5). Frames are sampled from the utterance's clip (its
  ``video`` file, cut to ``video_span``: IEMOCAP's dialogue avi), faces are detected in each
  (:mod:`feature_extraction.faces`: scikit-image's LBP cascade by default, YuNet given its model
  file; between full searches every ``track_every`` frames, only around the previous frame's
  faces), the kept faces (``all``, the ``largest`` or the most ``central`` per frame) are cropped
  square with a margin and embedded by an image encoder; a frame's faces are averaged, and the
  frame vectors are averaged over at most ``max_face_frames`` (20) frames with faces, taken at
  an even stride. The paper's VGGFace2 ResNet-101 was never released: the encoder is any
  ``transformers`` image model (a ViT fine-tuned on facial expressions, CLIP's vision tower...).
  A clip in which no face is found is *absent* (``present=0``), never a zero vector.
* ``frames``: the same encoders on whole sampled frames, averaged (or a video model such as
  VideoMAE on the clip), for the "w/o VisExtNet" ablation or clips without faces.

Decoding, detection and cropping run in ``num_workers`` threads (PyAV, OpenCV and scikit-image
release the GIL for the heavy parts); the face crops of a whole batch of clips are embedded
together, ``encode_batch_size`` at a time (batched on the GPU when there is one).

    multiemo extract visual --config configs/extract/meld_visual.yaml
    multiemo extract visual --config configs/extract/meld_visual.yaml mode=frames \\
        encoder.model=openai/clip-vit-base-patch32 out=data/meld/features/visual_frames.safetensors
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch

from feature_extraction._image_encoder import ImageEncoder
from feature_extraction._jobs import ProjectionConfig, map_items, media_root_of, run_extraction
from feature_extraction.faces import Box, FaceDetector, build_detector, crop_face, iou, select_faces
from feature_extraction.media import FrameSample, resolve_media, sample_frames
from feature_extraction.runner import Absent, CorpusSource
from multiemo.data.corpus import Utterance

__all__ = ["VisualJobConfig", "SamplingOptions", "FaceOptions", "EncoderOptions",
           "FaceExtractor", "FrameExtractor", "build_extractor"]


# -- configuration ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplingOptions:
    """Which frames of a clip are decoded and looked at."""

    num_frames: int = 20  # evenly over the clip; 0: use stride
    stride: int = 0  # every stride-th frame instead (1: every frame, as the paper's MTCNN pass)
    max_side: int = 640  # decoded frames are scaled so their longer side is at most this
    keyframes_only: bool = False  # decode keyframes only (fastest; the frames are then keyframes)

    def __post_init__(self) -> None:
        if (self.num_frames > 0) == (self.stride > 0) or self.num_frames < 0 or self.stride < 0:
            raise ValueError(f"sampling: set exactly one of num_frames and stride to a positive "
                             f"number, got num_frames={self.num_frames}, stride={self.stride}")
        if self.max_side <= 0:
            raise ValueError(f"sampling.max_side (frame size) must be positive, got {self.max_side}")


@dataclass(frozen=True)
class FaceOptions:
    detector: Literal["lbp", "yunet"] = "lbp"
    model_path: str = ""  # YuNet's ONNX file (face_detection_yunet_2023mar.onnx)
    detect_side: int = 320  # detection runs on the frame scaled to this longer side
    policy: Literal["all", "largest", "central"] = "largest"
    margin: float = 0.2  # crop grows by this fraction of the face's side on every side
    max_face_frames: int = 20  # frames with faces averaged, at an even stride (docs/method.md §5)
    track_every: int = 5  # search around the previous frame's faces, with a full search every
    #                        track_every-th sampled frame and whenever that finds none (1: always full)

    def __post_init__(self) -> None:
        if self.detect_side <= 0 or self.max_face_frames <= 0 or self.margin < 0 or self.track_every <= 0:
            raise ValueError(f"faces: detect_side, max_face_frames and track_every must be positive "
                             f"and margin >= 0, got {self.detect_side}, {self.max_face_frames}, "
                             f"{self.track_every}, {self.margin}")


@dataclass(frozen=True)
class EncoderOptions:
    model: str = "trpakov/vit-face-expression"  # hub id or local folder
    pooling: Literal["auto", "cls", "mean", "pooler"] = "auto"


@dataclass(frozen=True)
class VisualJobConfig:
    """``configs/extract/*_visual.yaml``. ``batch_size`` (clips per call), ``encode_batch_size``
    (images per forward pass), ``num_workers`` and ``device`` are runtime options: they never
    change the vectors and are not recorded as settings."""

    corpus: CorpusSource = field(default_factory=CorpusSource)
    out: str = "data/meld/features/visual.safetensors"
    mode: Literal["faces", "frames"] = "faces"
    max_duration: float = 60.0  # seconds; a longer clip or segment is refused (logged)
    splits: tuple[str, ...] = ()
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    faces: FaceOptions = field(default_factory=FaceOptions)
    encoder: EncoderOptions = field(default_factory=EncoderOptions)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    batch_size: int = 8
    encode_batch_size: int = 64
    num_workers: int = 2
    device: str = "auto"
    num_threads: int = 0  # torch CPU threads; 0: the CPUs this process may use (default_threads)
    chunk_items: int = 256  # finished items are written to disk every chunk_items items or
    chunk_seconds: float = 60.0  # chunk_seconds seconds: a killed job loses at most that much

    def __post_init__(self) -> None:
        if min(self.max_duration, self.batch_size, self.encode_batch_size, self.num_workers) <= 0:
            raise ValueError("max_duration, batch_size, encode_batch_size and num_workers must be "
                             "positive")


# -- extractors -----------------------------------------------------------------------------------

class _FrameSource:
    """Samples an utterance's frames as configured (and counts decoding work)."""

    def __init__(self, media_root: str | None, sampling: SamplingOptions, max_duration: float | None) -> None:
        self.media_root, self.sampling, self.max_duration = media_root, sampling, max_duration
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        s = self.sampling
        return {"num_frames": s.num_frames or None, "stride": s.stride or None,
                "max_side": s.max_side, "keyframes_only": s.keyframes_only,
                "max_duration": self.max_duration}

    def sample(self, utt: Utterance) -> tuple[str, FrameSample]:
        path = resolve_media(self.media_root, utt.video, "video")
        s = self.sampling
        sample = sample_frames(path, num_frames=s.num_frames or None, stride=s.stride or None,
                               span=utt.video_span, max_duration=self.max_duration,
                               max_side=s.max_side, keyframes_only=s.keyframes_only)
        with self._lock:
            self.counters.update(clips=1, frames_decoded=sample.decoded,
                                 frames_sampled=len(sample.frames), frames_in_clips=sample.total_frames)
        return str(path), sample


class FaceExtractor:
    """VisExtNet: face crops of sampled frames, embedded and averaged per clip."""

    def __init__(self, frames: _FrameSource, encoder: ImageEncoder,
                 make_detector: Callable[[], FaceDetector], detector_name: str, options: FaceOptions,
                 batch_size: int = 8, num_workers: int = 2) -> None:
        self.frames, self.encoder, self.options = frames, encoder, options
        self.make_detector, self.detector_name = make_detector, detector_name
        self.batch_size, self.num_workers = batch_size, num_workers
        self.name = f"visextnet-{encoder.model_id.rstrip('/').split('/')[-1]}"
        self._local = threading.local()  # one detector per worker thread
        make_detector()  # fail early on a bad detector setting (missing YuNet file)

    def info(self) -> dict[str, Any]:
        o = self.options
        return {"mode": "faces", **self.encoder.info(), "detector": self.detector_name,
                "detector_model": o.model_path or None, "detect_side": o.detect_side,
                "policy": o.policy, "margin": o.margin, "max_face_frames": o.max_face_frames,
                "track_every": o.track_every,
                **self.frames.settings()}

    def setup(self, device: torch.device) -> None:
        self.encoder.setup(device)

    def _detector(self) -> FaceDetector:
        if not hasattr(self._local, "detector"):
            self._local.detector = self.make_detector()
        return self._local.detector

    def faces_of(self, utt: Utterance) -> list[list[np.ndarray]]:
        """Face crops per kept frame (at most ``max_face_frames`` frames); Absent if none."""
        path, sample = self.frames.sample(utt)
        size = self.encoder.input_size[0]
        detector = self._detector()
        per_frame = []
        previous: list[Box] = []
        for index, frame in enumerate(sample.frames):
            height, width = frame.shape[:2]
            found: list[Box] = []
            if previous and index % self.options.track_every:
                for box in (b for p in previous for b in detector.detect(frame, near=p)):
                    if all(iou(box, other) < 0.5 for other in found):
                        found.append(box)
            if not found:
                found = detector.detect(frame)
            previous = boxes = select_faces(found, width, height, self.options.policy)
            if boxes:
                per_frame.append([crop_face(frame, b, size, self.options.margin) for b in boxes])
        if not per_frame:
            raise Absent(f"{path}: no face in {len(sample.frames)} sampled frames")
        if len(per_frame) > self.options.max_face_frames:
            keep = np.linspace(0, len(per_frame) - 1, self.options.max_face_frames).round().astype(int)
            per_frame = [per_frame[i] for i in keep]
        with self.frames._lock:
            self.frames.counters.update(faces=sum(map(len, per_frame)), face_frames=len(per_frame))
        return per_frame

    def extract(self, items: list[Utterance]) -> list[np.ndarray | Exception]:
        found = map_items(self.num_workers, self.faces_of, items)
        crops = [crop for f in found if not isinstance(f, Exception) for frame in f for crop in frame]
        vectors = iter(self.encoder.embed(crops)) if crops else iter(())
        out: list[np.ndarray | Exception] = []
        for f in found:
            if isinstance(f, Exception):
                out.append(f)
                continue
            frame_vectors = [np.mean([next(vectors) for _ in frame], axis=0) for frame in f]  # faces of a frame
            out.append(np.mean(frame_vectors, axis=0).astype(np.float32))  # over frames
        return out


class FrameExtractor:
    """Whole sampled frames embedded and averaged (or a video model on the clip)."""

    def __init__(self, frames: _FrameSource, encoder: ImageEncoder, batch_size: int = 8,
                 num_workers: int = 2) -> None:
        self.frames, self.encoder = frames, encoder
        self.batch_size, self.num_workers = batch_size, num_workers
        self.name = f"frames-{encoder.model_id.rstrip('/').split('/')[-1]}"

    def info(self) -> dict[str, Any]:
        return {"mode": "frames", **self.encoder.info(), **self.frames.settings()}

    def setup(self, device: torch.device) -> None:
        self.encoder.setup(device)

    def extract(self, items: list[Utterance]) -> list[np.ndarray | Exception]:
        samples = map_items(self.num_workers, lambda u: self.frames.sample(u)[1], items)
        if self.encoder.is_video:
            return [s if isinstance(s, Exception) else self.encoder.embed_clip(s.frames) for s in samples]
        good = [s for s in samples if not isinstance(s, Exception)]
        vectors = iter(self.encoder.embed([f for s in good for f in s.frames])) if good else iter(())
        return [s if isinstance(s, Exception) else
                np.mean([next(vectors) for _ in s.frames], axis=0).astype(np.float32) for s in samples]


# -- command ----------------------------------------------------------------------------------

def build_extractor(cfg: VisualJobConfig) -> FaceExtractor | FrameExtractor:
    """The extractor a config asks for (the encoder is loaded later, in ``setup``)."""
    frames = _FrameSource(media_root_of(cfg.corpus), cfg.sampling, cfg.max_duration)
    encoder = ImageEncoder(cfg.encoder.model, cfg.encoder.pooling, cfg.encode_batch_size)
    if cfg.mode == "frames":
        return FrameExtractor(frames, encoder, cfg.batch_size, cfg.num_workers)
    f = cfg.faces

    def make_detector() -> FaceDetector:
        return build_detector(f.detector, model_path=f.model_path, detect_side=f.detect_side)
    return FaceExtractor(frames, encoder, make_detector, f.detector, f, cfg.batch_size,
                         cfg.num_workers)


def run_command(args) -> int:
    """``multiemo extract visual`` (the options are declared in :mod:`multiemo.cli`)."""
    return run_extraction(args, config_cls=VisualJobConfig, build=build_extractor)
