"""Face detectors for VisExtNet, the choice of faces in a frame, and face crops.

Two detectors, by name in the visual config (``faces.detector``):

* ``lbp`` (default, nothing to download): scikit-image's LBP frontal-face cascade
  (``skimage.feature.Cascade`` with ``skimage.data.lbp_frontal_face_cascade_filename()``), run on
  a grey copy of the frame scaled to ``detect_side`` pixels on its longer side. Frontal faces
  only, no confidence score (boxes score 1.0).
* ``yunet``: OpenCV's YuNet CNN (``cv2.FaceDetectorYN``), much stronger on turned and small
  faces, given the path of its ONNX file (``face_detection_yunet_2023mar.onnx`` from the
  opencv_zoo repository) as ``faces.model_path``.

(OpenCV 4.x's Haar cascades are gone from the OpenCV 5 installed here, so they are not offered.)

>>> boxes = [Box(10, 10, 20, 20), Box(100, 50, 60, 60), Box(150, 90, 30, 30)]
>>> select_faces(boxes, width=320, height=180, policy="largest")
[Box(x=100, y=50, w=60, h=60, score=1.0)]
>>> select_faces(boxes, width=320, height=180, policy="central")
[Box(x=150, y=90, w=30, h=30, score=1.0)]
>>> len(select_faces(boxes, 320, 180, "all"))
3
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

import cv2
import numpy as np

__all__ = ["Box", "FaceDetector", "LBPCascadeDetector", "YuNetDetector", "build_detector",
           "select_faces", "crop_face", "iou", "DETECTORS", "POLICIES"]

POLICIES = ("all", "largest", "central")


class Box(NamedTuple):
    """A face box in frame pixels: top-left corner, size, detector confidence."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0


class FaceDetector(Protocol):
    name: str

    def detect(self, frame: np.ndarray, near: Box | None = None) -> list[Box]:
        """Faces in an RGB ``uint8`` frame ``(H, W, 3)``, in its pixel coordinates; with ``near``
        (a face of the previous sampled frame), a detector may search only around it."""
        ...


def _scale_for(width: int, height: int, detect_side: int) -> float:
    return min(1.0, detect_side / max(width, height))


class LBPCascadeDetector:
    """scikit-image's LBP frontal-face cascade (multi-scale sliding window).

    Args:
        detect_side: the frame is scaled down so its longer side is at most this before
            detection (speed; boxes are mapped back to the frame).
        scale_factor: window growth between scales.
        step_ratio: window stride as a fraction of its size (1 is exhaustive, larger is faster).
        min_size: smallest face searched, in pixels of the scaled frame.
        min_neighbours: overlapping detections needed to keep a face (fewer false faces).
    """

    name = "lbp"

    def __init__(self, detect_side: int = 320, scale_factor: float = 1.2, step_ratio: float = 1.5,
                 min_size: int = 24, min_neighbours: int = 4) -> None:
        from skimage import data, feature
        if detect_side < min_size or scale_factor <= 1.0 or step_ratio <= 0 or min_size < 8:
            raise ValueError(f"LBP detector: need detect_side >= min_size >= 8, scale_factor > 1, "
                             f"step_ratio > 0; got detect_side={detect_side}, min_size={min_size}, "
                             f"scale_factor={scale_factor}, step_ratio={step_ratio}")
        self.detect_side, self.scale_factor, self.step_ratio = detect_side, scale_factor, step_ratio
        self.min_size, self.min_neighbours = min_size, min_neighbours
        self._cascade = feature.Cascade(data.lbp_frontal_face_cascade_filename())

    def detect(self, frame: np.ndarray, near: Box | None = None) -> list[Box]:
        """Faces in the frame; with ``near``, only faces of 0.5–2 times its size within one face
        size of it (a few times cheaper: a small region and few scales), with a lower neighbour
        count since a face was there a moment ago (fewer scales give fewer overlapping hits)."""
        height, width = frame.shape[:2]
        scale = _scale_for(width, height, self.detect_side)
        left = top = 0
        min_size, max_size, neighbours = self.min_size, None, self.min_neighbours
        if near is not None:
            pad = max(near.w, near.h)
            left, top = max(0, near.x - pad), max(0, near.y - pad)
            frame = frame[top:min(height, near.y + near.h + pad), left:min(width, near.x + near.w + pad)]
            min_size = max(self.min_size, int(0.5 * min(near.w, near.h) * scale))
            max_size = int(2.0 * max(near.w, near.h) * scale) + 1
            neighbours = max(1, self.min_neighbours - 2)
        h, w = frame.shape[:2]
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                              interpolation=cv2.INTER_AREA)
        side = min(grey.shape) if max_size is None else min(min(grey.shape), max_size)
        if side < min_size:
            return []
        found = self._cascade.detect_multi_scale(
            img=grey.astype(np.float32) / 255.0, scale_factor=self.scale_factor,
            step_ratio=self.step_ratio, min_size=(min_size, min_size),
            max_size=(side, side), min_neighbor_number=neighbours)
        return [Box(left + int(d["c"] / scale), top + int(d["r"] / scale), int(d["width"] / scale),
                    int(d["height"] / scale)) for d in found]


class YuNetDetector:
    """OpenCV's YuNet face detector from its ONNX model file.

    Args:
        model_path: ``face_detection_yunet_*.onnx``.
        detect_side: the frame is scaled so its longer side is at most this before detection.
        score_threshold: minimum confidence of a face.
        nms_threshold: overlap above which the weaker of two boxes is dropped.
    """

    name = "yunet"

    def __init__(self, model_path: str, detect_side: int = 640, score_threshold: float = 0.7,
                 nms_threshold: float = 0.3) -> None:
        if not model_path or not Path(model_path).is_file():
            raise ValueError(f"faces.detector=yunet needs faces.model_path, the YuNet ONNX file "
                             f"(opencv_zoo: face_detection_yunet_2023mar.onnx); got {model_path!r}")
        self.detect_side = detect_side
        self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold,
                                              nms_threshold, 5000)

    def detect(self, frame: np.ndarray, near: Box | None = None) -> list[Box]:
        """Faces in the whole frame (YuNet is fast enough not to need ``near``)."""
        height, width = frame.shape[:2]
        scale = _scale_for(width, height, self.detect_side)
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            bgr = cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))),
                             interpolation=cv2.INTER_AREA)
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._net.detect(bgr)
        if faces is None:
            return []
        return [Box(int(f[0] / scale), int(f[1] / scale), int(f[2] / scale), int(f[3] / scale),
                    float(f[-1])) for f in faces]


DETECTORS = {"lbp": LBPCascadeDetector, "yunet": YuNetDetector}


def build_detector(kind: str, *, model_path: str = "", detect_side: int = 320) -> FaceDetector:
    """A detector by name (``lbp`` or ``yunet``)."""
    if kind == "lbp":
        return LBPCascadeDetector(detect_side=detect_side)
    if kind == "yunet":
        return YuNetDetector(model_path, detect_side=detect_side)
    raise ValueError(f"unknown face detector {kind!r}; choose from {sorted(DETECTORS)}")


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    h = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = w * h
    return inter / float(a.w * a.h + b.w * b.h - inter) if inter else 0.0


def select_faces(boxes: list[Box], width: int, height: int, policy: str) -> list[Box]:
    """The faces of a frame to keep: ``all``, the ``largest``, or the most ``central``."""
    if policy not in POLICIES:
        raise ValueError(f"unknown face policy {policy!r}; choose from {POLICIES}")
    boxes = [b for b in boxes if b.w > 0 and b.h > 0]
    if policy == "all" or len(boxes) <= 1:
        return boxes
    if policy == "largest":
        return [max(boxes, key=lambda b: (b.w * b.h, b.score))]
    cx, cy = width / 2, height / 2
    return [min(boxes, key=lambda b: (b.x + b.w / 2 - cx) ** 2 + (b.y + b.h / 2 - cy) ** 2)]


def crop_face(frame: np.ndarray, box: Box, size: int, margin: float = 0.2) -> np.ndarray:
    """A square ``(size, size, 3)`` crop around ``box``, grown by ``margin`` of its side on every
    side, padded with the edge pixels where it leaves the frame."""
    height, width = frame.shape[:2]
    side = int(round(max(box.w, box.h) * (1 + 2 * margin)))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + side, y0 + side
    crop = frame[max(0, y0):min(height, y1), max(0, x0):min(width, x1)]
    pad = ((max(0, -y0), max(0, y1 - height)), (max(0, -x0), max(0, x1 - width)), (0, 0))
    if any(p for pair in pad[:2] for p in pair):
        crop = np.pad(crop, pad, mode="edge")
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
