"""The media demo's building blocks (:mod:`multiemo.demo_media`): a small SYNTHETIC corpus of
real wav/mp4 files and tiny local encoders, run through ``multiemo corpus build`` and the real
text, audio (openSMILE) and visual (LBP faces + ViT) extractors by the CLI; each modality's
features must separate its own group of the label, and every face must be found."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from multiemo.cli import main as cli
from multiemo.data.conversations import read_conversations
from multiemo.data.corpus import Corpus
from multiemo.data.store import FeatureStore
from multiemo.demo_media import (FPS, LABELS, SAMPLE_RATE, SIZE, WORDS, make_image_encoder,
                                 make_media_corpus, make_text_encoder, voice)
from multiemo.synthetic import modality_groups

# noise 0: every utterance shows its label's group, so the check is on what the extractors see
# (the default noise 0.05 would flip one or two of the ~25 utterances scored here)
SMALL = {"train": 14, "dev": 2, "test": 4}
MODALITIES = ("text", "audio", "visual")


def job_configs(folder: Path, data: Path, bert: Path, vit: Path) -> dict[str, Path]:
    """The three extraction jobs of the demo, one thread each."""
    corpus = {"path": str(data / "corpus.json")}
    jobs = {
        "text": {"model": str(bert), "mode": "frozen", "pooling": "mean", "past": 2,
                 "max_length": 128, "batch_size": 64},
        "audio": {"family": "opensmile", "opensmile": {"feature_set": "eGeMAPSv02"},
                  "projection": {"dim": 0}, "batch_size": 16, "num_workers": 1},
        "visual": {"mode": "faces", "sampling": {"num_frames": 3}, "faces": {"detector": "lbp"},
                   "encoder": {"model": str(vit)}, "projection": {"dim": 0}, "batch_size": 16,
                   "num_workers": 1},
    }
    paths = {}
    for modality, job in jobs.items():
        job.update(corpus=corpus, out=str(data / "features" / f"{modality}.safetensors"),
                   device="cpu", num_threads=1)
        paths[modality] = folder / f"{modality}.yaml"
        paths[modality].write_text(yaml.safe_dump(job))
    return paths


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The small corpus, built and extracted once: its folders and the returned summary."""
    base = tmp_path_factory.mktemp("demo_media")
    root, data = base / "root", base / "data"
    made = make_media_corpus(root, SMALL, heldout=1, seed=2023, noise=0.0)
    bert, vit = make_text_encoder(base / "bert"), make_image_encoder(base / "vit")
    assert cli(["corpus", "build", "--dataset", "conversations", "--root", str(root / "conversations.csv"),
                "--labels", ",".join(LABELS), "--media-root", str(root),
                "--out", str(data / "corpus.json")]) == 0
    for modality, config in job_configs(base, data, bert, vit).items():
        assert cli(["extract", modality, "--config", str(config), "--no-progress"]) == 0
    return {"root": root, "data": data, "made": made, "bert": bert}


def features(data: Path, modality: str):
    corpus = Corpus.load(data / "corpus.json")
    utts = [(d.split, u) for d in corpus.dialogues for u in d.utterances]
    vectors, present = FeatureStore(data / "features" / f"{modality}.safetensors").get([u.id for _, u in utts])
    return (vectors, present, np.array([u.label for _, u in utts]),
            np.array([split == "train" for split, _ in utts]))


# -- the files ----------------------------------------------------------------------------------

def test_corpus_files_follow_the_conversation_format(demo):
    root, made = demo["root"], demo["made"]
    corpus = read_conversations(root / "conversations.csv", labels=LABELS)
    assert corpus.labels == LABELS
    assert {s: len(corpus.split(s)) for s in SMALL} == SMALL == {s: made["dialogues"][s] for s in SMALL}
    assert sum(len(d.utterances) for d in corpus.dialogues) == sum(made["utterances"][s] for s in SMALL)
    for d in corpus.dialogues:
        assert 3 <= len(d.utterances) <= 6 and 2 <= len({u.speaker for u in d.utterances}) <= 3
        for u in d.utterances:
            assert 3 <= len(u.text.split()) <= 6
            assert (root / u.audio).is_file() and (root / u.video).is_file()
            assert u.audio.startswith(f"media/{d.split}/") and u.video.endswith(".mp4")
    assert set(range(len(LABELS))) == {u.label for d in corpus.dialogues for u in d.utterances}

    heldout = read_conversations(made["heldout"], labels=LABELS)
    assert made["dialogues"]["heldout"] == len(heldout.dialogues) == 1
    assert {d.split for d in heldout.dialogues} == {"test"}
    assert not {d.id for d in heldout.dialogues} & {d.id for d in corpus.dialogues}
    assert all((root / u.video).is_file() for d in heldout.dialogues for u in d.utterances)
    assert made["modality_noise"] == {m: 0.0 for m in MODALITIES}
    assert json.loads(json.dumps({k: v for k, v in made.items() if isinstance(v, dict)}))  # plain counts


def test_media_are_short_16k_mono_wavs_and_small_h264_clips(demo):
    import av
    import soundfile as sf
    corpus = read_conversations(demo["root"] / "conversations.csv", labels=LABELS)
    u = corpus.dialogues[0].utterances[0]
    info = sf.info(str(demo["root"] / u.audio))
    assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1) and 0.7 < info.duration < 1.7
    with av.open(str(demo["root"] / u.video)) as container:
        assert not container.streams.audio
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.name == "h264"
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    assert abs(len(frames) - info.duration * FPS) <= 1


def test_same_seed_same_files_and_splits_drawn_apart(tmp_path):
    a = make_media_corpus(tmp_path / "a", {"train": 2, "dev": 1}, heldout=1, seed=7)
    b = make_media_corpus(tmp_path / "b", {"train": 2, "dev": 1}, heldout=1, seed=7)
    files = sorted(p.relative_to(a["root"]) for p in a["root"].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b["root"]) for p in b["root"].rglob("*") if p.is_file())
    assert all((a["root"] / f).read_bytes() == (b["root"] / f).read_bytes() for f in files)
    c = make_media_corpus(tmp_path / "c", {"train": 3, "dev": 1}, heldout=1, seed=7)
    for name in ("media/dev/dev_d0_utt0.mp4", "media/heldout/new0_utt0.wav"):  # other splits' streams
        assert (a["root"] / name).read_bytes() == (c["root"] / name).read_bytes()
    with pytest.raises(ValueError, match="train/dev/test"):
        make_media_corpus(tmp_path / "d", {"valid": 2})


def test_encoders_are_seeded_and_know_every_demo_word(tmp_path, demo):
    from transformers import AutoTokenizer
    again = make_text_encoder(tmp_path / "bert")
    assert (again / "model.safetensors").read_bytes() == (demo["bert"] / "model.safetensors").read_bytes()
    vit_a, vit_b = make_image_encoder(tmp_path / "vit_a"), make_image_encoder(tmp_path / "vit_b")
    assert (vit_a / "model.safetensors").read_bytes() == (vit_b / "model.safetensors").read_bytes()
    tokenizer = AutoTokenizer.from_pretrained(str(again))
    words = [w for group in WORDS.values() for w in group]
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    assert len(ids) == len(words) and tokenizer.unk_token_id not in ids


def test_the_lbp_detector_finds_the_face_in_every_camera_shot():
    from feature_extraction.faces import LBPCascadeDetector
    from multiemo.demo_media import _SHOTS, _background, _frames
    detector = LBPCascadeDetector()
    for i, (height, mirrored, top) in enumerate(_SHOTS):
        background = _background(np.random.default_rng(i))
        for dx, tint, brightness in ((-14, 35, 8), (-5, 20, -8), (5, -20, 8), (14, -35, 0)):
            shot = {"height": height, "mirrored": mirrored, "top": top, "dx": dx}
            frame = next(_frames(1, background, shot, tint, brightness, seed=i))
            assert detector.detect(frame), (shot, tint, brightness)


def test_voice_pitch_follows_f0():
    for f0 in (120.0, 230.0):
        signal = voice(1.0, f0, seed=3)
        spectrum = np.abs(np.fft.rfft(signal))
        peak = np.argmax(spectrum[50:400]) + 50  # 1 Hz bins
        assert abs(peak - f0) < 0.15 * f0 and np.abs(signal).max() <= 1


# -- what the real extractors see -----------------------------------------------------------------

def test_every_utterance_has_all_three_vectors(demo):
    for modality in MODALITIES:
        vectors, present, _, _ = features(demo["data"], modality)
        assert present.all(), f"{modality}: absent {np.flatnonzero(~present).tolist()}"
        assert np.isfinite(vectors).all() and vectors.std(axis=0).max() > 0
    store = FeatureStore(demo["data"] / "features" / "visual.safetensors")
    assert store.info["extractor"].startswith("visextnet")


@pytest.mark.parametrize("modality", MODALITIES)
def test_each_modality_separates_its_own_group_of_the_label(demo, modality):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    vectors, _, labels, train = features(demo["data"], modality)
    groups = modality_groups(modality, len(LABELS))[labels]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(vectors[train], groups[train])
    accuracy = model.score(vectors[~train], groups[~train])
    assert accuracy >= 0.8, f"{modality}: group accuracy {accuracy:.2f} on {int((~train).sum())} utterances"
