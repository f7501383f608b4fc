"""Audio extractors on media the tests write: openSMILE, a tiny random wav2vec 2.0, librosa
descriptors; bad inputs; the CLI job with resume and the train-only PCA projection."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import yaml

from feature_extraction._projection import load_projection, apply_projection
import soundfile as sf

from feature_extraction._synthetic import speech_like, write_clip, write_wav
from feature_extraction.audio import (AudioJobConfig, LibrosaExtractor, OpenSmileExtractor,
                                      SpeechEncoderExtractor, _AudioSource)
from feature_extraction.media import MediaError
from feature_extraction.runner import Absent
from multiemo.cli import main as cli_main
from multiemo.config import build
from multiemo.data.corpus import Corpus, Dialogue, Utterance
from multiemo.data.store import FeatureStore


def main(argv: list[str]) -> int:
    """`multiemo extract audio ...` as a user types it."""
    return cli_main(["extract", "audio", *argv])


CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio_media")
    for i in range(6):
        write_wav(root / f"utt{i}.wav", duration=1.0 + 0.2 * i, seed=i)
    write_wav(root / "silent.wav", duration=1.0, silent=True)
    write_clip(root / "clip.mp4", duration=1.5, size=(64, 48), seed=7)
    write_clip(root / "mute.mp4", duration=1.0, size=(64, 48), audio=False)
    write_clip(root / "dialog.avi", duration=6.0, size=(64, 48), seed=8)
    data = (root / "clip.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "empty.wav").write_bytes(b"")
    whole = write_clip(root / "streamable.mp4", duration=3.0, size=(64, 48), seed=9, faststart=True)
    data = whole.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # index says 3 s, data stops at ~1.5 s
    damaged = speech_like(1.0, 16000, seed=10)
    damaged[4000:4100] = np.nan
    sf.write(str(root / "nan.wav"), damaged, 16000, subtype="FLOAT")  # NaN, not silence
    return root


def utt(uid: str, audio: str | None, span=None) -> Utterance:
    return Utterance(id=uid, speaker="A", label=0, audio=audio, audio_span=span)


GOOD = [utt("wav", "utt0.wav"), utt("mp4", "clip.mp4"), utt("avi", "dialog.avi", (2.0, 3.5))]
BAD = {  # id → (utterance, what the error says)
    "missing": (utt("missing", "nowhere.wav"), "does not exist"),
    "empty": (utt("empty", "empty.wav"), "empty (0 bytes)"),
    "truncated": (utt("truncated", "truncated.mp4"), "not a readable media file"),
    "mute": (utt("mute", "mute.mp4"), "has no audio stream"),
    "outside": (utt("outside", "dialog.avi", (7.0, 8.0)), "starts after the end"),
    "long": (utt("long", "dialog.avi"), "over the limit of 5 s"),
    "no_audio_path": (utt("no_audio_path", None), "no audio file"),
}


def source(root, max_duration=5.0) -> _AudioSource:
    return _AudioSource(str(root), 16000, max_duration, -60.0, num_workers=2)


def check_outcomes(extractor, root, dim):
    items = GOOD + [u for u, _ in BAD.values()] + [utt("silent", "silent.wav")]
    out = extractor.extract(items)
    assert len(out) == len(items)
    for vec in out[:3]:
        assert isinstance(vec, np.ndarray) and vec.shape == (dim,) and np.isfinite(vec).all()
    for (u, reason), err in zip(BAD.values(), out[3:-1]):
        assert isinstance(err, MediaError), (u.id, err)
        assert reason in str(err), (u.id, str(err))
    assert isinstance(out[-1], Absent) and "silent" in str(out[-1])


def test_opensmile_functionals_and_bad_inputs(media):
    extractor = OpenSmileExtractor(source(media), "IS09")
    extractor.setup(CPU)
    assert extractor.info()["dim"] == 384 and extractor.name == "opensmile-IS09"
    check_outcomes(extractor, media, 384)
    # the same audio from a wav gives the same functionals twice (deterministic)
    a, b = extractor.extract([GOOD[0], GOOD[0]])
    np.testing.assert_array_equal(a, b)


def test_unknown_opensmile_set_is_refused(media):
    with pytest.raises(ValueError, match="unknown openSMILE feature set 'IS99'"):
        OpenSmileExtractor(source(media), "IS99")


def test_librosa_descriptors(media, tmp_path):
    extractor = LibrosaExtractor(source(media), n_mfcc=13, n_mels=32)
    extractor.setup(CPU)
    check_outcomes(extractor, media, 4 * 13 + 2 * 32 + 11)
    # the pitch statistics follow a pure 200 Hz tone
    import soundfile as sf
    t = np.arange(16000) / 16000
    sf.write(str(tmp_path / "tone.wav"), 0.5 * np.sin(2 * np.pi * 200 * t), 16000)
    vec = LibrosaExtractor(source(tmp_path), n_mfcc=13, n_mels=32).describe(
        0.5 * np.sin(2 * np.pi * 200 * t).astype(np.float32))
    pitch_mean = vec[4 * 13 + 2 * 32]
    assert pitch_mean == pytest.approx(np.log2(200), abs=0.05)


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
    path = tmp_path_factory.mktemp("tiny_w2v2")
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                            conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                            do_stable_layer_norm=True)
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(path)
    return str(path)


def test_speech_encoder_pools_layers_and_batching_does_not_change_vectors(media, tiny_wav2vec2):
    extractor = SpeechEncoderExtractor(source(media), tiny_wav2vec2, layers=(0, -1))
    extractor.setup(CPU)
    assert extractor.info()["dim"] == 32
    check_outcomes(extractor, media, 32)
    batched = extractor.extract(GOOD)
    alone = [extractor.extract([u])[0] for u in GOOD]
    for a, b in zip(batched, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # the average of layers 0 and -1 is the mean of the two single-layer vectors
    first = SpeechEncoderExtractor(source(media), tiny_wav2vec2, layers=(0,))
    last = SpeechEncoderExtractor(source(media), tiny_wav2vec2, layers=(2,))
    for e in (first, last):
        e.setup(CPU)
    np.testing.assert_allclose(batched[0], (first.extract(GOOD[:1])[0] + last.extract(GOOD[:1])[0]) / 2,
                               atol=1e-5)


def test_speech_encoder_rejects_a_missing_layer(media, tiny_wav2vec2):
    with pytest.raises(ValueError, match=r"ssl.layers \[5\] out of range"):
        SpeechEncoderExtractor(source(media), tiny_wav2vec2, layers=(5,)).setup(CPU)


# -- the command: job, failures, resume, projection ---------------------------------------------

def job_corpus(root) -> Corpus:
    def dialogue(did, split, names):
        return Dialogue(did, split, tuple(utt(f"{did}_{n}", f) for n, f in names))
    return Corpus("toy", ("neutral", "joy"), (
        dialogue("d0", "train", [("a", "utt0.wav"), ("b", "utt1.wav"), ("c", "utt2.wav")]),
        dialogue("d1", "train", [("a", "utt3.wav"), ("b", "clip.mp4"), ("c", "silent.wav")]),
        dialogue("d2", "test", [("a", "utt4.wav"), ("b", "truncated.mp4"), ("c", "nowhere.mp4"),
                                ("d", "utt5.wav"), ("e", "cut.mp4"), ("f", "nan.wav")]),
        dialogue("d3", "dev", [("a", "utt0.wav")]),  # validates: a projection never learns from it
    ))


def write_config(tmp_path, media, **fields) -> str:
    corpus_path = tmp_path / "corpus.json"
    job_corpus(media).save(corpus_path)
    config = {"corpus": {"path": str(corpus_path), "media_root": str(media)},
              "out": str(tmp_path / "features" / "audio.safetensors"), "family": "opensmile",
              "opensmile": {"feature_set": "eGeMAPSv02"}, "batch_size": 2, **fields}
    path = tmp_path / "audio.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_cli_job_records_failures_resumes_and_projects_on_train_only(media, tmp_path, caplog):
    config = write_config(tmp_path, media, projection={"dim": 3})
    out = tmp_path / "features" / "audio.safetensors"
    # half the job (shard 0 of 2), then the whole: the second run skips what the first did
    assert main(["--config", config, "--shard", "0/2", "--no-progress"]) == 0
    assert not out.exists()
    with caplog.at_level(logging.WARNING):
        assert main(["--config", config, "--no-progress"]) == 0
    store = FeatureStore(out)
    raw = FeatureStore(tmp_path / "features" / "audio.raw.safetensors")
    ids = [u.id for u in job_corpus(media).utterances()]
    assert store.ids == ids and store.dim == 3 and raw.dim == 88
    present = dict(zip(ids, store.present))
    assert [i for i in ids if not present[i]] == ["d1_c", "d2_b", "d2_c", "d2_e", "d2_f"]
    assert set(store.info["failed"]) == {"d2_b", "d2_c", "d2_e", "d2_f"}
    assert "nan.wav: NaN samples: 100 of 16000" in store.info["failed"]["d2_f"]  # not "silent"
    assert "4 item(s) failed" in caplog.text
    assert "cut.mp4: audio stops at" in store.info["failed"]["d2_e"]  # the rule video applies too
    assert "(truncated file?)" in store.info["failed"]["d2_e"]
    assert "not a readable media file" in store.info["failed"]["d2_b"]
    assert "does not exist" in store.info["failed"]["d2_c"]
    assert "silent" in store.info["absent"]["d1_c"]
    projection = store.info["projection"]
    assert projection["fit_rows"] == 5 and projection["fit_dialogues"] == "validation=dev train"
    # fitted on the train dialogues only, and the store says so (training checks it)
    corpus = job_corpus(media)
    assert store.info["learned_from"]["dialogues"] == sorted(d.id for d in corpus.split("train"))
    assert store.info["learned_from"]["what"] == "PCA projection"
    # the saved projection reproduces the store from the raw vectors
    params, meta = load_projection(tmp_path / "features" / "audio.projection.safetensors")
    assert meta["dim"] == 3
    raw_vectors, raw_present = raw.get(ids)
    np.testing.assert_allclose(apply_projection(raw_vectors[raw_present], params),
                               store.get(ids)[0][raw_present], rtol=1e-5, atol=1e-4)
    # rerun: nothing recomputed, same vectors
    before = store.get(ids)[0]
    assert main(["--config", config, "--no-progress"]) == 0
    np.testing.assert_array_equal(FeatureStore(out).get(ids)[0], before)


def test_projection_ignores_the_test_split(media, tmp_path):
    """Changing a test vector must not move the projection (it is fitted on train only)."""
    from feature_extraction._projection import project_store
    from multiemo.data.store import write_store
    corpus = job_corpus(media)
    ids = [u.id for u in corpus.utterances()]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(ids), 6)).astype(np.float32)
    write_store(tmp_path / "a.safetensors", ids, x, info={"extractor": "toy"})
    y = x.copy()
    y[-1] += 100.0  # a test row
    write_store(tmp_path / "b.safetensors", ids, y, info={"extractor": "toy"})
    project_store(tmp_path / "a.safetensors", tmp_path / "pa.safetensors", corpus, 2)
    project_store(tmp_path / "b.safetensors", tmp_path / "pb.safetensors", corpus, 2)
    pa = FeatureStore(tmp_path / "pa.safetensors").get(ids)[0]
    pb = FeatureStore(tmp_path / "pb.safetensors").get(ids)[0]
    np.testing.assert_allclose(pa[:-1], pb[:-1], atol=1e-5)
    with pytest.raises(ValueError, match="needs at least 7 present fitting rows"):
        project_store(tmp_path / "a.safetensors", tmp_path / "pc.safetensors", corpus, 7)


def test_config_errors_name_the_key():
    from multiemo.config import ConfigError
    with pytest.raises(ConfigError, match="family"):
        build(AudioJobConfig, {"family": "mfcc"})
    with pytest.raises(ConfigError, match="feature_set"):
        build(AudioJobConfig, {"opensmile": {"feature_set": "IS99"}})
    assert build(AudioJobConfig, {}, ["ssl.layers=[6,7,8]"]).ssl.layers == (6, 7, 8)


def test_shipped_audio_configs_load():
    from pathlib import Path
    from multiemo.config import load
    from feature_extraction.audio import build_extractor
    configs = sorted((Path(__file__).parents[1] / "configs" / "extract").glob("*_audio.yaml"))
    assert {p.name for p in configs} >= {"meld_audio.yaml", "iemocap_audio.yaml"}
    for path in configs:
        cfg = load(AudioJobConfig, path)
        build_extractor(cfg)  # no model is loaded before setup()


@pytest.mark.slow
def test_killed_job_resumes_without_recomputation_and_gives_the_same_store(media, tmp_path):
    """SIGKILL a real ``multiemo extract audio`` once chunks are on disk, rerun, compare."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from multiemo.data.corpus import Corpus, Dialogue
    corpus = Corpus("toy", ("neutral", "joy"), tuple(
        Dialogue(f"d{d}", "train" if d < 8 else "test",
                 tuple(utt(f"d{d}_u{u}", f"utt{(d + u) % 6}.wav") for u in range(10)))
        for d in range(10)))
    corpus.save(tmp_path / "corpus.json")
    stores = {}
    for name in ("clean", "killed"):
        out = tmp_path / name / "audio.safetensors"
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "corpus": {"path": str(tmp_path / "corpus.json"), "media_root": str(media)},
            "out": str(out), "family": "librosa", "batch_size": 2, "chunk_items": 4,
            "num_workers": 1}))
        command = [sys.executable, "-m", "multiemo.cli", "extract", "audio", "--config", str(config),
                   "--no-progress"]
        if name == "killed":
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            work = out.with_name(out.name + ".work")
            deadline = time.monotonic() + 120
            while len(list(work.glob("chunk-*"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            assert not out.exists() and list(work.glob("chunk-*"))
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        if name == "killed":
            import re
            skipped = int(re.search(r"(\d+) skipped", done.stderr).group(1))
            assert skipped >= 8, done.stderr  # at least the two chunks of four items
        stores[name] = FeatureStore(out)
    a, b = stores["clean"], stores["killed"]
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.get(a.ids)[0], b.get(a.ids)[0])


# -- faults of the job itself: one-line errors (issue 9) ---------------------------------------------

def _cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()[-1] if err.strip() else ""


def test_job_faults_are_one_line_errors_and_lose_nothing(media, tmp_path, capsys):
    config = write_config(tmp_path, media, chunk_items=2)
    out = tmp_path / "features" / "audio.safetensors"
    work = out.with_name(out.name + ".work")
    assert main(["--config", config, "--shard", "0/2", "--no-progress"]) == 0
    capsys.readouterr()
    # --merge before every shard is done
    code, line = _cli(["--config", config, "--merge", "--no-progress"], capsys)
    assert code == 2 and line.startswith("multiemo extract audio: error: ")
    assert str(work) in line and "have not been attempted yet" in line
    assert "run the remaining shards first" in line and not out.exists()
    # settings changed against job.json
    code, line = _cli(["--config", config, "--no-progress", "sample_rate=8000"], capsys)
    assert code == 2 and str(work / "job.json") in line and "other settings" in line
    # a corrupt chunk: named, with what to do; the other chunks are left alone
    chunks = sorted(work.glob("chunk-*.safetensors"))
    assert len(chunks) >= 2
    kept = {c: c.read_bytes() for c in chunks[1:]}
    chunks[0].write_bytes(chunks[0].read_bytes()[:40])
    code, line = _cli(["--config", config, "--no-progress"], capsys)
    assert code == 2 and str(chunks[0]) in line and "corrupt chunk" in line
    assert "delete this file" in line
    assert all(c.read_bytes() == data for c, data in kept.items())
    chunks[0].unlink()  # as the message says: the rerun recomputes its items and completes
    assert main(["--config", config, "--no-progress"]) == 0
    ids = [u.id for u in job_corpus(media).utterances()]
    assert FeatureStore(out).ids == ids and FeatureStore(out).present.sum() == len(ids) - 5
    capsys.readouterr()
    # a corpus file that does not exist
    code, line = _cli(["--config", config, "--no-progress", f"corpus.path={tmp_path / 'none.json'}"],
                      capsys)
    assert code == 2 and str(tmp_path / "none.json") in line and "does not exist" in line
    # an output folder that cannot be written (its parent is a file)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, line = _cli(["--config", config, "--no-progress", f"out={blocker / 'audio.safetensors'}"],
                      capsys)
    assert code == 2 and "cannot write the output folder" in line and str(blocker) in line
    assert blocker.read_text() == "not a folder"
    code, line = _cli(["--config", config, "--no-progress", "num_threads=-1"], capsys)
    assert code == 2 and "num_threads must be 0" in line


def test_a_model_missing_from_the_cache_while_offline_is_named_at_once(media, tmp_path, capsys,
                                                                       monkeypatch):
    import time
    from huggingface_hub import constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty cache
    config = write_config(tmp_path, media, family="ssl", ssl={"model": "no-such-org/no-such-model"})
    start = time.monotonic()
    code, line = _cli(["--config", config, "--no-progress"], capsys)
    assert time.monotonic() - start < 30  # no minute of retries
    assert code == 2 and "'no-such-org/no-such-model' is not in the local Hugging Face cache" in line
    assert "offline" in line
    assert not (tmp_path / "features" / "audio.safetensors").exists()


@pytest.mark.slow
def test_ctrl_c_during_opensmile_stops_the_job_and_a_rerun_resumes(media, tmp_path):
    """Issue 9 item 6 with the real library: SIGINT to ``multiemo extract audio`` (openSMILE)
    once chunks are on disk stops it with exit 130, logs no failure, and the rerun completes
    with the vectors of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time
    corpus = Corpus("toy", ("neutral", "joy"), tuple(
        Dialogue(f"d{d}", "train", tuple(utt(f"d{d}_u{u}", f"utt{(d + u) % 6}.wav")
                                         for u in range(10)))
        for d in range(30)))
    corpus.save(tmp_path / "corpus.json")
    stores = {}
    for name in ("clean", "interrupted"):
        out = tmp_path / name / "audio.safetensors"
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "corpus": {"path": str(tmp_path / "corpus.json"), "media_root": str(media)},
            "out": str(out), "family": "opensmile", "opensmile": {"feature_set": "ComParE_2016"},
            "batch_size": 2, "chunk_items": 4, "num_workers": 1}))
        command = [sys.executable, "-m", "multiemo.cli", "extract", "audio", "--config",
                   str(config), "--no-progress"]
        if name == "interrupted":
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            work = out.with_name(out.name + ".work")
            deadline = time.monotonic() + 120
            while len(list(work.glob("chunk-*"))) < 2 and proc.poll() is None and \
                    time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 130, err
            assert time.monotonic() - sent < 10 and "interrupted" in err
            assert not out.exists()
            failures = list(work.glob("failures-*.jsonl"))
            assert all(not f.read_text().strip() for f in failures)  # nothing logged as failed
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        stores[name] = FeatureStore(out)
        assert stores[name].info["failed"] == {}, done.stderr
    a, b = stores["clean"], stores["interrupted"]
    assert a.ids == b.ids and a.present.all()
    np.testing.assert_array_equal(a.get(a.ids)[0], b.get(a.ids)[0])
