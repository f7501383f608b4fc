"""Image and video encoders from ``transformers`` (hub id or local folder), for the visual
extractor: a batch of RGB images (or one clip of frames) → one vector each.

Preprocessing is the model's own image processor, loaded with the PIL backend (the default
backend needs torchvision, which this project never installs). Images are first brought to the
processor's input size with OpenCV (resize of the shorter side, then a centre crop), so the
processor's own resize is a no-op and PIL never sees a full frame.

Pooling (``pooling``):

* ``auto``: image-text models (CLIP, SigLIP) give their image embedding
  (``get_image_features``); a model with a pooler *whose weights the checkpoint holds* gives its
  pooler output (ResNet, ConvNeXt, Swin, DINOv2...); otherwise the first token (ViT's [CLS],
  which a ViT image classifier reads) of a sequence output, or the spatial mean of a feature map.
  A fine-tuned ``ViTForImageClassification`` checkpoint has no pooler weights, so ``auto`` never
  uses the randomly initialised pooler that ``AutoModel`` would add to it.
* ``cls``, ``mean`` (over tokens or positions), ``pooler``: forced.

Video models (VideoMAE, TimeSformer, ViViT) take ``config.num_frames`` frames as one clip and
give the mean of their output tokens.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

__all__ = ["ImageEncoder", "POOLINGS", "VIDEO_MODEL_TYPES"]

POOLINGS = ("auto", "cls", "mean", "pooler")
VIDEO_MODEL_TYPES = ("videomae", "timesformer", "vivit")


def _input_size(processor: Any, config: Any) -> tuple[int, int]:
    """``(height, width)`` the model is fed: the processor's crop, else its size, else the config's."""
    for attr in ("crop_size", "size"):
        if attr == "crop_size" and not getattr(processor, "do_center_crop", False):
            continue
        size = getattr(processor, attr, None)
        if size is None:
            continue
        get = size.get if isinstance(size, dict) else (lambda k, s=size: getattr(s, k, None))
        if get("height") and get("width"):
            return int(get("height")), int(get("width"))
        if get("shortest_edge"):
            return int(get("shortest_edge")), int(get("shortest_edge"))
    side = getattr(config, "image_size", None) or 224
    side = side[0] if isinstance(side, (list, tuple)) else side
    return int(side), int(side)


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the shorter side to cover ``size`` = (H, W), then crop the centre: ``(H, W, 3)``."""
    height, width = size
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return image[top:top + height, left:left + width]


class ImageEncoder:
    """A ``transformers`` image (or video) model that embeds RGB ``uint8`` images.

    Args:
        model: hub id or local folder (with ``config.json`` and ``preprocessor_config.json``).
        pooling: how a vector is read from the model's outputs (see the module docstring).
        batch_size: images per forward pass.
    """

    def __init__(self, model: str, pooling: str = "auto", batch_size: int = 64) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model_id, self.pooling, self.batch_size = model, pooling, batch_size
        self._model = self._processor = None
        self.device = torch.device("cpu")
        self.input_size: tuple[int, int] = (224, 224)
        self.dim: int | None = None
        self.is_video = False
        self.num_frames = 1
        self._pooler_loaded = False

    def info(self) -> dict[str, Any]:
        return {"model": self.model_id, "pooling": self.pooling, "input_size": list(self.input_size),
                "video_model": self.is_video, "dim": self.dim}

    def setup(self, device: torch.device) -> None:
        from transformers import AutoImageProcessor, AutoModel

        from feature_extraction.runner import loading_model
        with loading_model(self.model_id, "encoder.model"):
            self._processor = AutoImageProcessor.from_pretrained(self.model_id, backend="pil")
            model, loading = AutoModel.from_pretrained(self.model_id, output_loading_info=True)
        self._model = model.eval().to(device)
        self.device = device
        config = self._model.config
        self.is_video = config.model_type in VIDEO_MODEL_TYPES
        self.num_frames = int(getattr(config, "num_frames", 1)) if self.is_video else 1
        vision = getattr(config, "vision_config", None) or config
        self.input_size = _input_size(self._processor, vision)
        self._pooler_loaded = hasattr(self._model, "pooler") and self._model.pooler is not None and \
            not any(k.startswith("pooler.") for k in loading.get("missing_keys", ()))
        if self.pooling == "pooler" and not hasattr(self._model, "get_image_features") and \
                not self._pooler_loaded:
            raise ValueError(f"pooling=pooler: {self.model_id} has no trained pooler "
                             f"(its checkpoint lacks the pooler weights); use cls or mean")
        blank = np.zeros((*self.input_size, 3), np.uint8)
        self.dim = int(self.embed_clip([blank] * self.num_frames).shape[0]) if self.is_video \
            else int(self.embed([blank]).shape[1])

    def _pool(self, pixel_values: torch.Tensor) -> torch.Tensor:
        model = self._model
        if hasattr(model, "get_image_features") and self.pooling in ("auto", "pooler"):
            out = model.get_image_features(pixel_values=pixel_values)
            return out if isinstance(out, torch.Tensor) else out.pooler_output  # (B, D)
        out = model(pixel_values=pixel_values)
        if self.pooling == "pooler" or (self.pooling == "auto" and self._pooler_loaded and
                                        getattr(out, "pooler_output", None) is not None):
            return out.pooler_output.flatten(1)  # (B, D[, 1, 1]) → (B, D)
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # (B, C, H, W) feature map
            return hidden.mean(dim=(2, 3))
        if self.pooling == "mean" or self.is_video:
            return hidden.mean(dim=1)  # (B, T, D) → (B, D)
        return hidden[:, 0]  # (B, D): the [CLS] token

    @torch.inference_mode()
    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """``N`` RGB images (any size) → ``(N, D)`` float32."""
        assert self._model is not None, "call setup() first"
        if self.is_video:
            raise ValueError(f"{self.model_id} is a video model: use embed_clip")
        vectors = []
        for first in range(0, len(images), self.batch_size):
            batch = [fit_image(im, self.input_size) for im in images[first:first + self.batch_size]]
            pixels = self._processor(images=batch, return_tensors="pt")["pixel_values"]
            vectors.append(self._pool(pixels.to(self.device)).float().cpu().numpy())
        return np.concatenate(vectors) if vectors else np.zeros((0, self.dim or 0), np.float32)

    @torch.inference_mode()
    def embed_clip(self, frames: list[np.ndarray]) -> np.ndarray:
        """A video model's vector of one clip: ``num_frames`` frames (repeated or thinned to
        that count, evenly) → ``(D,)`` float32."""
        assert self._model is not None, "call setup() first"
        pick = np.linspace(0, len(frames) - 1, self.num_frames).round().astype(int)
        clip = [fit_image(frames[i], self.input_size) for i in pick]
        pixels = self._processor(images=[clip], return_tensors="pt")["pixel_values"]  # (1, T, C, H, W)
        return self._pool(pixels.to(self.device)).float().cpu().numpy()[0]
