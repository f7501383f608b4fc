"""Media decoding for the audio and visual extractors: audio tracks and sampled video frames.

Everything here streams: audio is read from the start of the requested segment (``soundfile``
seeks in a wav; PyAV seeks in an mp4/avi) and stops at its end; video frames are decoded one by
one and only the sampled ones are converted to RGB and kept, so a 5-minute IEMOCAP dialogue avi
is never held in memory to cut a 3-second utterance from it.

Times are seconds from the start of the file. A *span* ``(start, end)`` selects a segment (the
corpus's ``audio_span`` / ``video_span``); ``None`` is the whole file. A span that starts at or
after the end of the file, or is empty, is an error; one that runs past the end by at most
:data:`SPAN_TOLERANCE` seconds is clipped to the file (IEMOCAP's last utterance may end a few
frames after its video does).

Every problem with a file is a :class:`MediaError` whose message names the file and what is
wrong with it (missing, empty, unreadable, no audio or video stream, frame size 0, segment
outside the file, longer than the configured limit, truncated), so the job runner can log it
per utterance and carry on. Truncation is one rule for both modalities (:func:`check_complete`):
a file whose decoded data stops more than :func:`truncation_tolerance` before the end of the
span (the header's duration, or the asked segment) is an error, never a vector of half a clip.

>>> import numpy as np, soundfile as sf, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
>>> sf.write(path, np.sin(np.arange(8000 * 2) / 8000 * 2 * np.pi * 220), 8000)
>>> load_audio(path, sample_rate=16000, span=(0.5, 1.5)).shape
(16000,)
>>> load_audio(path, span=(3.0, 4.0))
Traceback (most recent call last):
...
feature_extraction.media.MediaError: ...tone.wav: segment [3.00, 4.00] s starts after the end of the file (2.00 s)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from multiemo.config import resolve_path

__all__ = ["MediaError", "MediaInfo", "FrameSample", "probe", "load_audio", "sample_frames",
           "resolve_media", "check_complete", "SPAN_TOLERANCE"]

SPAN_TOLERANCE = 1.0  # seconds a span may run past the end of its file before it is an error
_SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}


class MediaError(RuntimeError):
    """A media file that cannot give what was asked; the message is ``"<file>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, from its header (no decoding)."""

    path: str
    duration: float | None  # seconds; None when the container does not say
    has_audio: bool
    has_video: bool
    sample_rate: int | None = None
    channels: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None  # as the header says (0 or None when unknown)


@dataclass
class FrameSample:
    """Frames sampled from a video (RGB ``uint8`` arrays ``(H, W, 3)``) and their times.

    ``decoded`` counts the frames the decoder produced to reach them (the cost), ``span`` is the
    segment that was sampled and ``total_frames`` the frames in it at the stream's rate.
    ``reached`` is the time (seconds) up to which the stream's data was read: a file whose data
    stops well before the end of the span is refused by :func:`check_complete`.
    """

    frames: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    decoded: int = 0
    span: tuple[float, float] = (0.0, 0.0)
    total_frames: int = 0
    reached: float = 0.0


def resolve_media(root: str | Path | None, relative: str | None, what: str = "media") -> Path:
    """The path of an utterance's media file under the media root (absolute paths stay; no
    root: the path as the corpus gives it, i.e. relative to the working folder)."""
    if not relative:
        raise MediaError("<none>", f"the utterance has no {what} file in the corpus")
    return Path(relative) if root is None else resolve_path(root, relative)


# -- opening and probing -----------------------------------------------------------------------

def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise MediaError(path, "file does not exist")
    if path.is_dir():
        raise MediaError(path, "is a directory, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty (0 bytes)")
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise MediaError(path, f"not a readable media file ({err})") from None


def _origin(container: av.container.InputContainer) -> float:
    start = container.start_time  # in av.time_base (microseconds)
    return float(start) / av.time_base if start is not None and start > 0 else 0.0


def _stream_duration(container: av.container.InputContainer, stream: av.stream.Stream | None) -> float | None:
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / av.time_base - _origin(container)
    return None


def probe(path: str | Path) -> MediaInfo:
    """Header facts of a media file: duration, streams, sample rate, fps, frame size."""
    path = Path(path)
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        import soundfile as sf
        try:
            info = sf.info(str(path))
            return MediaInfo(str(path), info.frames / info.samplerate if info.samplerate else None,
                             info.frames > 0, False, info.samplerate, info.channels)
        except (sf.LibsndfileError, RuntimeError):
            pass  # let PyAV try (and name the problem)
    with _open(path) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        duration = _stream_duration(container, video or audio)
        fps = (float(video.average_rate or video.guessed_rate or 0) or None) if video else None
        return MediaInfo(
            str(path), duration, audio is not None, video is not None,
            sample_rate=audio.codec_context.sample_rate if audio else None,
            channels=audio.codec_context.channels if audio else None,
            fps=fps,
            width=video.codec_context.width if video else None,
            height=video.codec_context.height if video else None,
            num_frames=video.frames if video else None)


def truncation_tolerance(expected: float) -> float:
    """Seconds of a span that may be missing at its end before the file counts as truncated:
    half a second, or a quarter of the span when that is longer (codec priming, a last frame
    or packet short of a rounded header duration, a damaged last packet)."""
    return max(0.5, 0.25 * expected)


def check_complete(path: str | Path, what: str, start: float, end: float, reached: float,
                   error: BaseException | None = None) -> None:
    """The one rule for media that decodes halfway, shared by audio and video.

    ``reached`` is the time (seconds from the start of the file) at which the decoded data of
    the span ``[start, end]`` stops. When it stops more than :func:`truncation_tolerance`
    before ``end`` (the end the header promises, or the end of the asked segment), the file is
    truncated (or damaged) and this raises a :class:`MediaError`, so no vector is ever made from
    half a clip. ``error`` is the decoding error that stopped the decoder, if any (named in the
    message); a damaged tail within the tolerance is accepted.
    """
    if not math.isfinite(end):
        return
    if end - reached > truncation_tolerance(end - start):
        cause = f"; decoding stopped with: {error}" if error is not None else ""
        raise MediaError(path, f"{what} stops at {max(reached, start):.2f} s, before the {end:.2f} s "
                               f"the header promises (truncated file?){cause}")


def _resolve_span(path: Path, span: tuple[float, float] | None, duration: float | None,
                  max_duration: float | None) -> tuple[float, float]:
    """``(start, end)`` seconds to read, checked against the file and the length limit."""
    if span is None:
        start, end = 0.0, (duration if duration is not None else math.inf)
    else:
        start, end = float(span[0]), float(span[1])
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise MediaError(path, f"segment [{start:.2f}, {end:.2f}] s is not a valid time span")
        if duration is not None:
            if start >= duration:
                raise MediaError(path, f"segment [{start:.2f}, {end:.2f}] s starts after the end of "
                                       f"the file ({duration:.2f} s)")
            if end > duration + SPAN_TOLERANCE:
                raise MediaError(path, f"segment [{start:.2f}, {end:.2f}] s ends after the end of the "
                                       f"file ({duration:.2f} s)")
            end = min(end, duration)
    if max_duration is not None and end - start > max_duration:
        raise MediaError(path, f"{'segment' if span else 'clip'} is {end - start:.1f} s long, over the "
                               f"limit of {max_duration:g} s (max_duration)")
    return start, end


# -- audio -----------------------------------------------------------------------------------

def load_audio(path: str | Path, *, sample_rate: int = 16000, span: tuple[float, float] | None = None,
               max_duration: float | None = None) -> np.ndarray:
    """Mono float32 samples in [-1, 1] of a wav file or of the audio track of an mp4/avi.

    Args:
        path: the media file. ``.wav``/``.flac``/``.ogg`` are read with soundfile (seeking to the
            segment), anything else with PyAV (FFmpeg).
        sample_rate: output rate; channels are averaged and the signal resampled (soxr).
        span: ``(start, end)`` seconds to cut; ``None`` reads the whole file.
        max_duration: longest segment accepted, in seconds; ``None`` for no limit.

    Returns:
        ``(num_samples,)`` float32 array at ``sample_rate``.

    Raises:
        MediaError: missing, empty, unreadable or truncated file, no audio stream, a segment
            outside the file, a segment longer than ``max_duration``, no samples decoded, or
            NaN / infinite samples.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        samples = _load_soundfile(path, sample_rate, span, max_duration)
    else:
        samples = _load_av_audio(path, sample_rate, span, max_duration)
    if samples.size == 0:
        raise MediaError(path, "no audio samples in the file or segment (zero-length audio)")
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:  # a float wav can hold them; never let them pass as silence or reach a vector
        raise MediaError(path, f"NaN samples: {bad} of {samples.size} audio samples are NaN or "
                               f"infinite (damaged file?)")
    return samples


def _resample(samples: np.ndarray, orig: int, target: int) -> np.ndarray:
    if orig == target:
        return samples
    import soxr  # librosa's resampler; imported directly to avoid loading librosa for this
    return soxr.resample(samples, orig, target, quality="HQ").astype(np.float32, copy=False)


def _load_soundfile(path: Path, sample_rate: int, span: tuple[float, float] | None,
                    max_duration: float | None) -> np.ndarray:
    import soundfile as sf
    if not path.exists():
        raise MediaError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as fh:
            rate, total = fh.samplerate, fh.frames
            start, end = _resolve_span(path, span, total / rate, max_duration)
            first = int(round(start * rate))
            last = min(total, int(round(end * rate)))
            fh.seek(first)
            data = fh.read(max(last - first, 0), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        if isinstance(err, MediaError):
            raise
        raise MediaError(path, f"not a readable audio file ({err})") from None
    return _resample(data.mean(axis=1).astype(np.float32), rate, sample_rate)


def _load_av_audio(path: Path, sample_rate: int, span: tuple[float, float] | None,
                   max_duration: float | None) -> np.ndarray:
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "has no audio stream")
        stream = container.streams.audio[0]
        duration = _stream_duration(container, stream)
        start, end = _resolve_span(path, span, duration, max_duration)
        origin = _origin(container)
        if start > 0 and stream.time_base:
            container.seek(int((origin + start) / stream.time_base), stream=stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        error: av.error.FFmpegError | None = None
        try:
            for frame in container.decode(stream):
                t = frame.time - origin if frame.time is not None else None
                if first_time is None:
                    first_time = t if t is not None else 0.0
                if t is not None and t > end:
                    break
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except av.error.FFmpegError as err:
            if not chunks:
                raise MediaError(path, f"audio decoding failed ({err})") from None
            error = err  # a damaged or cut tail: check_complete decides on what was decoded
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    offset = max(0, int(round((start - (first_time or 0.0)) * sample_rate)))
    samples = samples[offset:]
    if math.isfinite(end):
        samples = samples[:int(round((end - start) * sample_rate))]
        if samples.size:
            check_complete(path, "audio", start, end, start + samples.size / sample_rate, error)
    return samples.astype(np.float32, copy=False)


# -- video -----------------------------------------------------------------------------------

def _target_times(start: float, end: float, fps: float, num_frames: int | None,
                  stride: int | None) -> list[float]:
    """Times to sample: ``num_frames`` evenly over the span (centres of equal parts) or every
    ``stride``-th frame from its start."""
    if num_frames is not None:
        step = (end - start) / num_frames
        return [start + (i + 0.5) * step for i in range(num_frames)]
    assert stride is not None
    count = max(1, int(math.floor((end - start) * fps / stride + 1e-6)))
    return [start + i * stride / fps for i in range(count)]


def sample_frames(path: str | Path, *, num_frames: int | None = None, stride: int | None = None,
                  span: tuple[float, float] | None = None, max_duration: float | None = None,
                  max_side: int | None = None, keyframes_only: bool = False,
                  seek_threshold: float = 1.0) -> FrameSample:
    """Sample RGB frames from a video without decoding more of it than needed.

    The decoder seeks to the start of the span (and to a later target whenever it is more than
    ``seek_threshold`` seconds ahead), then decodes forward; only the frame nearest to each
    target time is converted to RGB and kept. Frames decoded per clip are therefore bounded by
    the span (plus one keyframe interval), never by the file's length, and memory by the frames
    kept. With ``keyframes_only`` the decoder skips every non-key frame (cheapest; each sampled
    frame is then the first keyframe at or after its target, duplicates removed, so a short clip
    gives as many frames as it has keyframes).

    Args:
        path: video file (mp4, avi, mkv...).
        num_frames: frames to take, evenly over the span (the centre of each of ``num_frames``
            equal parts). Give this or ``stride``; neither means 8 frames.
        stride: take every ``stride``-th frame of the span instead.
        span: ``(start, end)`` seconds; ``None`` is the whole file.
        max_duration: longest span accepted, in seconds; ``None`` for no limit.
        max_side: downscale kept frames so that their longer side is at most this (aspect kept).
        keyframes_only: decode keyframes only.
        seek_threshold: seek instead of decoding forward when the next target is further ahead
            than this many seconds.

    Returns:
        The frames, their times, and how many frames were decoded.

    Raises:
        MediaError: missing, empty, unreadable or truncated file (:func:`check_complete`), no
            video stream, frame size 0, a span outside the file or over ``max_duration``, or no
            frame decoded.
    """
    path = Path(path)
    if num_frames is not None and stride is not None:
        raise ValueError(f"give num_frames or stride, not both (got {num_frames} and {stride})")
    if num_frames is None and stride is None:
        num_frames = 8
    if (num_frames is not None and num_frames <= 0) or (stride is not None and stride <= 0):
        raise ValueError(f"num_frames and stride must be positive, got {num_frames} and {stride}")
    if max_side is not None and max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise MediaError(path, f"video frame size is {width}x{height}")
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        duration = _stream_duration(container, stream)
        if duration is None and stream.frames:
            duration = stream.frames / fps
        start, end = _resolve_span(path, span, duration, max_duration)
        if not math.isfinite(end):
            raise MediaError(path, "the video's duration is unknown; give a span")
        targets = _target_times(start, end, fps, num_frames, stride)
        size = _scaled_size(width, height, max_side)
        stream.thread_type = "AUTO"
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        sample = FrameSample(span=(start, end), total_frames=max(1, int(round((end - start) * fps))))
        error: av.error.FFmpegError | None = None
        try:
            _decode_targets(container, stream, targets, fps, _origin(container), size, sample,
                            seek_threshold, end - truncation_tolerance(end - start))
        except av.error.FFmpegError as err:
            if not sample.frames:
                raise MediaError(path, f"video decoding failed ({err})") from None
            error = err  # a damaged or cut tail: check_complete decides on what was read
    if not sample.frames:
        if sample.reached > 0:
            check_complete(path, "video", start, end, sample.reached, error)
        raise MediaError(path, f"no video frame decoded in [{start:.2f}, {end:.2f}] s "
                               f"(truncated or corrupt file?)")
    check_complete(path, "video", start, end, sample.reached, error)  # the same rule as audio
    return sample


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # even sizes keep swscale's chroma handling exact
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _decode_targets(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    targets: list[float], fps: float, origin: float, size: tuple[int, int],
                    sample: FrameSample, seek_threshold: float, must_reach: float) -> None:
    """Fill ``sample`` with the first decoded frame at (or within half a frame before) each
    target, decoding forward and seeking ahead; with the decoder skipping non-key frames, that
    is the first keyframe at or after the target. ``sample.reached`` follows the packets read;
    once the targets are kept, packets are read on (not decoded) until it passes ``must_reach``
    or the stream ends, so that a file cut after the last target is still seen as cut."""
    half = 0.5 / fps
    width, height = size

    def note(packet: av.Packet) -> None:
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is not None and packet.time_base:
            t = float((stamp + (packet.duration or 0)) * packet.time_base) - origin
            sample.reached = max(sample.reached, t)

    def frames_from(at: float | None) -> Iterator[tuple[float, av.VideoFrame]]:
        if at is not None and at > 0 and stream.time_base:
            container.seek(int((origin + at) / stream.time_base), stream=stream)
        index = 0
        for packet in container.demux(stream):
            note(packet)
            for frame in packet.decode():
                sample.decoded += 1
                t = frame.time - origin if frame.time is not None else (at or 0.0) + index / fps
                index += 1
                sample.reached = max(sample.reached, t + 1.0 / fps)
                yield t, frame

    if not _keep_targets(frames_from, targets, half, seek_threshold, sample, width, height):
        return  # the stream ended before the last target
    if sample.reached < must_reach:
        for packet in container.demux(stream):
            note(packet)
            if sample.reached >= must_reach:
                break


def _keep_targets(frames_from: Callable[[float | None], Iterator[tuple[float, av.VideoFrame]]],
                  targets: list[float], half: float, seek_threshold: float, sample: FrameSample,
                  width: int, height: int) -> bool:
    """The target loop of :func:`_decode_targets`; False when the stream ends before the last."""

    def keep(t: float, frame: av.VideoFrame) -> None:
        sample.frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
        sample.times.append(t)

    current: float | None = None  # time of the last decoded frame
    frames: Iterator[tuple[float, av.VideoFrame]] | None = None
    can_seek = True
    for target in targets:
        if current is not None and target <= current + half:
            continue  # the frame just kept is the nearest to this target too (stride < 1 frame)
        behind = (current if current is not None else 0.0)
        if frames is None or (can_seek and target - behind > seek_threshold):
            seek_to = target - half if target - half > seek_threshold or current is not None else None
            frames = frames_from(seek_to)
            landed = None
            for t, frame in frames:
                if landed is None:
                    landed = t
                    # a seek that went back to a keyframe already passed gains nothing: stop seeking
                    if current is not None and t <= current:
                        can_seek = False
                if t >= target - half:
                    current = t
                    keep(t, frame)
                    break
            else:
                return False  # end of stream
            continue
        for t, frame in frames:
            if t >= target - half:
                current = t
                keep(t, frame)
                break
        else:
            return False
    return True
