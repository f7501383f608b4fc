"""Media decoding on files the tests write with PyAV: audio tracks, segments, sampled frames,
and the errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from feature_extraction._synthetic import speech_like, write_clip, write_wav
from feature_extraction.media import MediaError, load_audio, probe, sample_frames


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    return {
        "wav": write_wav(root / "utt.wav", duration=2.0, sample_rate=16000, seed=1),
        "mp4": write_clip(root / "clip.mp4", duration=2.0, size=(160, 96), seed=2),
        "avi": write_clip(root / "dialog.avi", duration=12.0, size=(160, 96), seed=3),
        "video_only": write_clip(root / "mute.mp4", duration=1.0, size=(160, 96), audio=False),
        "audio_only": write_clip(root / "sound.mp4", duration=1.0, video=False),
        "root": root,
    }


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.size, b.size)
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def test_probe_reports_streams_and_sizes(media):
    info = probe(media["mp4"])
    assert info.has_audio and info.has_video
    assert (info.width, info.height, info.fps) == (160, 96, 25.0)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    wav = probe(media["wav"])
    assert (wav.sample_rate, wav.has_video) == (16000, False)


def test_wav_is_read_whole_resampled_and_cut(media):
    reference = speech_like(2.0, 16000, seed=1)
    whole = load_audio(media["wav"])
    assert whole.dtype == np.float32 and whole.shape == (32000,)
    np.testing.assert_allclose(whole, reference, atol=1e-4)  # 16-bit quantisation only
    cut = load_audio(media["wav"], span=(0.5, 1.25))
    np.testing.assert_allclose(cut, reference[8000:20000], atol=1e-4)
    assert load_audio(media["wav"], sample_rate=8000).shape == (16000,)


def test_mp4_audio_track_is_mono_at_the_asked_rate(media):
    samples = load_audio(media["mp4"], sample_rate=16000)
    assert samples.ndim == 1 and abs(samples.size - 32000) <= 1024
    assert _corr(samples, speech_like(2.0, 16000, seed=2)) > 0.9  # AAC is lossy, not wrong


def test_iemocap_style_avi_segment_is_cut_by_time(media):
    reference = speech_like(12.0, 16000, seed=3)
    cut = load_audio(media["avi"], span=(7.0, 9.5))
    assert cut.shape == (40000,)
    np.testing.assert_allclose(cut, reference[112000:152000], atol=1e-3)  # PCM in the avi

    sample = sample_frames(media["avi"], num_frames=5, span=(7.0, 9.5))
    assert len(sample.frames) == 5 and sample.span == (7.0, 9.5)
    assert all(7.0 <= t <= 9.5 for t in sample.times)
    assert sample.decoded < 0.3 * 300  # seeks to the segment, never decodes the whole dialogue


def test_frames_sampled_by_count_and_by_stride(media):
    by_count = sample_frames(media["mp4"], num_frames=10)
    assert len(by_count.frames) == 10 and by_count.frames[0].shape == (96, 160, 3)
    assert by_count.frames[0].dtype == np.uint8
    assert by_count.times == sorted(by_count.times)
    assert by_count.decoded <= by_count.total_frames  # 50 frames at 25 fps
    by_stride = sample_frames(media["mp4"], stride=10, max_side=80)
    assert len(by_stride.frames) == 5 and by_stride.frames[0].shape == (48, 80, 3)
    np.testing.assert_allclose(np.diff(by_stride.times), 0.4, atol=1e-6)


def test_sparse_sampling_seeks_instead_of_decoding_everything(media):
    sample = sample_frames(media["avi"], num_frames=4)  # 300 frames, one keyframe every 12
    assert len(sample.frames) == 4
    assert sample.decoded < 60
    keys = sample_frames(media["avi"], num_frames=4, keyframes_only=True)
    assert len(keys.frames) == 4 and keys.decoded <= 300 // 12 + 1  # keyframes only


@pytest.mark.parametrize("kind, call, reason", [
    ("missing", "audio", "does not exist"),
    ("empty", "audio", "empty (0 bytes)"),
    ("garbage", "video", "not a readable media file"),
    ("truncated", "video", "not a readable media file"),
    ("video_only", "audio", "has no audio stream"),
    ("audio_only", "video", "has no video stream"),
])
def test_bad_files_raise_media_error_naming_file_and_reason(media, kind, call, reason):
    root = media["root"]
    if kind == "missing":
        path = root / "nowhere.mp4"
    elif kind == "empty":
        path = root / "empty.mp4"
        path.write_bytes(b"")
    elif kind == "garbage":
        path = root / "garbage.avi"
        path.write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        path = root / "truncated.mp4"
        data = media["mp4"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path = media[kind]
    with pytest.raises(MediaError) as err:
        load_audio(path) if call == "audio" else sample_frames(path, num_frames=4)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_a_clip_cut_short_is_refused_by_audio_and_video_alike(media):
    """Issue 9 item 5: an mp4 whose index (at the front) says 4 s but whose data stops at ~2 s
    opens fine; both modalities must refuse it with the same "truncated" error, never sample
    half of it. The part the data still covers stays readable, and an intact file passes."""
    root = media["root"]
    whole = write_clip(root / "streamable.mp4", duration=4.0, size=(160, 96), seed=5, faststart=True)
    cut = root / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert probe(cut).duration == pytest.approx(4.0, abs=0.05)  # the header still promises 4 s
    with pytest.raises(MediaError, match="truncated"):  # its one target is past the cut
        sample_frames(cut, num_frames=1)
    for call in (lambda: load_audio(cut), lambda: sample_frames(cut, num_frames=8),
                 lambda: sample_frames(cut, num_frames=1, span=(0.0, 3.0)),  # target before the cut
                 lambda: sample_frames(cut, stride=5, keyframes_only=True),
                 lambda: load_audio(cut, span=(0.5, 3.5))):
        with pytest.raises(MediaError, match=r"cut\.mp4: (audio|video) stops at 1\.\d+ s, before "
                                             r"the \d\.\d\d s the header promises \(truncated file\?\)"):
            call()
    assert load_audio(cut, span=(0.2, 1.2)).shape == (16000,)
    assert len(sample_frames(cut, num_frames=4, span=(0.0, 1.5)).frames) == 4
    assert load_audio(whole).size == pytest.approx(64000, abs=1024)
    assert len(sample_frames(whole, num_frames=8).frames) == 8
    assert len(sample_frames(whole, num_frames=1).frames) == 1


def test_corrupt_wav_and_zero_length_wav(media):
    root = media["root"]
    bad = root / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(MediaError, match="bad.wav"):
        load_audio(bad)
    zero = root / "zero.wav"
    sf.write(str(zero), np.zeros(0, np.float32), 16000)
    with pytest.raises(MediaError, match="zero-length"):
        load_audio(zero)


@pytest.mark.parametrize("span, reason", [
    ((20.0, 21.0), "starts after the end of the file"),
    ((5.0, 30.0), "ends after the end of the file"),
    ((3.0, 2.0), "not a valid time span"),
])
def test_segments_outside_the_file_are_errors(media, span, reason):
    for call in (lambda: load_audio(media["avi"], span=span),
                 lambda: sample_frames(media["avi"], span=span)):
        with pytest.raises(MediaError, match=reason):
            call()


def test_a_segment_just_past_the_end_is_clipped(media):
    assert load_audio(media["avi"], span=(11.0, 12.4)).shape == (16000,)


def test_clips_over_the_length_limit_are_refused(media):
    with pytest.raises(MediaError, match=r"12.0 s long, over the limit of 10 s"):
        load_audio(media["avi"], max_duration=10)
    with pytest.raises(MediaError, match="over the limit"):
        sample_frames(media["avi"], max_duration=10)
    assert load_audio(media["avi"], span=(0, 5), max_duration=10).shape == (80000,)


def test_a_video_stream_with_frame_size_zero_is_an_error(media, monkeypatch):
    """No encoder writes a 0×0 stream, so the container is faked: the check names the size."""
    from types import SimpleNamespace
    import feature_extraction.media as media_module

    class ZeroSizeContainer:
        streams = SimpleNamespace(video=[SimpleNamespace(codec_context=SimpleNamespace(width=0, height=0))])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(media_module, "_open", lambda path: ZeroSizeContainer())
    with pytest.raises(MediaError, match="video frame size is 0x0"):
        sample_frames(media["mp4"], num_frames=2)
