"""Synthetic media for tests and benchmarks, written with PyAV: speech-like audio, moving
frames, and optionally a real face (scikit-image's astronaut photo) in every frame.

Nothing here is used by the extractors; it makes files that look enough like MELD clips and
IEMOCAP recordings (mp4 with H.264 + AAC, avi with MPEG-4 Part 2 + PCM, 16 kHz wav) to
exercise decoding, face detection and the encoders without the real corpora.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["speech_like", "face_image", "write_wav", "write_clip"]


def speech_like(duration: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced-sounding signal: harmonics of a gliding 100–250 Hz pitch, syllable-rate
    amplitude bursts and a little noise; float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = 150 + 60 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
    signal = 0.25 * envelope * voiced + 0.01 * rng.standard_normal(n)
    return np.clip(signal, -1, 1).astype(np.float32)


def face_image(height: int) -> np.ndarray:
    """The astronaut's head and shoulders (a real face, frontal), RGB, ``height`` pixels tall."""
    import cv2
    from skimage import data
    crop = data.astronaut()[0:260, 110:330]  # (260, 220, 3): the face is near the top middle
    width = max(2, int(round(crop.shape[1] * height / crop.shape[0])))
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def _frames(num: int, width: int, height: int, face: bool, seed: int):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)),
                     np.full_like(xx, 96)], axis=-1).astype(np.uint8)
    person = face_image(int(height * 0.8)) if face else None
    for i in range(num):
        frame = np.roll(base, 3 * i, axis=1).copy()
        frame[(yy // 40 + xx // 40 + i // 5) % 7 == 0] = rng.integers(0, 255, 3, dtype=np.uint8)
        if person is not None:
            ph, pw = person.shape[:2]
            top = height - ph
            left = int((width - pw) / 2 + 0.05 * width * np.sin(i / 10))
            left = min(max(left, 0), width - pw)
            frame[top:top + ph, left:left + pw] = person
        yield frame


def write_wav(path: str | Path, duration: float = 2.0, sample_rate: int = 16000, seed: int = 0,
              silent: bool = False) -> Path:
    """A mono 16-bit wav of speech-like sound (or silence)."""
    import soundfile as sf
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = speech_like(duration, sample_rate, seed)
    sf.write(str(path), signal * 0 if silent else signal, sample_rate, subtype="PCM_16")
    return path


def write_clip(path: str | Path, duration: float = 2.0, *, fps: int = 25, size: tuple[int, int] = (320, 180),
               face: bool = False, audio: bool = True, video: bool = True, sample_rate: int = 16000,
               silent: bool = False, gop: int = 12, seed: int = 0, faststart: bool = False) -> Path:
    """Write an mp4 (H.264 + AAC) or avi (MPEG-4 + PCM) clip; the suffix chooses.

    Args:
        path: output file, ``.mp4``, ``.mkv`` or ``.avi``.
        duration: seconds.
        fps: video frame rate.
        size: ``(width, height)``, even numbers.
        face: paste the astronaut's face into every frame.
        audio / video: include the audio / video stream.
        sample_rate: audio rate (stereo for mp4, like MELD; mono for avi).
        silent: write an all-zero audio track.
        gop: keyframe interval in frames.
        seed: randomness of sound and pattern.
        faststart: (mp4) put the index before the data, as streaming-ready files do; such a
            file cut short still opens and promises its full duration (a truncated download).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (audio or video):
        raise ValueError("a clip needs audio or video")
    avi = path.suffix.lower() == ".avi"
    width, height = size
    options = {"movflags": "faststart"} if faststart and not avi else {}
    with av.open(str(path), mode="w", options=options) as container:
        vstream = astream = None
        if video:
            vstream = container.add_stream("mpeg4" if avi else "libx264", rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.codec_context.gop_size = gop
            if not avi:
                vstream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        if audio:
            astream = container.add_stream("pcm_s16le" if avi else "aac", rate=sample_rate)
            astream.layout = "mono" if avi else "stereo"
        if vstream is not None:
            for frame in _frames(int(round(duration * fps)), width, height, face, seed):
                for packet in vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
        if astream is not None:
            signal = speech_like(duration, sample_rate, seed) * (0.0 if silent else 1.0)
            channels = 1 if avi else 2
            pcm = (np.clip(signal, -1, 1) * 32767).astype(np.int16)
            chunk = 1024
            for i, offset in enumerate(range(0, pcm.size, chunk)):
                piece = np.repeat(pcm[offset:offset + chunk][None, :], channels, axis=0)
                frame = av.AudioFrame.from_ndarray(piece.T.reshape(1, -1).copy(), format="s16",
                                                   layout="mono" if avi else "stereo")
                frame.sample_rate = sample_rate
                frame.pts = offset
                frame.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path
