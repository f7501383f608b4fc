"""A small SYNTHETIC corpus of real media files, and tiny local encoders, for the media demo.

``multiemo demo --media`` shows the chain a user runs on MELD (build the corpus → extract text,
audio and visual features with the real extractors → train → export → predict) on data made
here, with no download. This module makes its building blocks:

* :func:`make_media_corpus`: conversations in the conversation file format
  (:mod:`multiemo.data.conversations`) with, for every utterance, a 16 kHz mono wav and a small
  H.264 mp4 (video only) showing a real face (scikit-image's astronaut photo);
* :func:`make_text_encoder`: a tiny random BERT with a WordPiece tokenizer built on the demo's
  vocabulary (``multiemo extract text`` ``model: <dir>``);
* :func:`make_image_encoder`: a tiny random ViT with its image processor (``multiemo extract
  visual`` ``encoder.model: <dir>``).

The encoders are random (seeded), not trained: the features separate the classes only because
the media are made to differ in ways any encoder preserves.

**What each modality carries.** As in :mod:`multiemo.synthetic`, the class index ``c`` of the four
:data:`LABELS` is seen through a different grouping per modality
(:func:`~multiemo.synthetic.modality_groups`), so no single modality tells the four classes
apart and the three together do:

* text sees ``c // 2`` (calm, content | upset, elated): about two thirds of the utterance's 3–6
  words are cue words from a low-arousal vocabulary (``fine``, ``quiet``...) or a high-arousal one
  (``wow``, ``furious``...), six words each, the rest shared filler words;
* audio sees ``c % 2`` (calm, upset | content, elated): a voiced, speech-like signal (harmonics,
  syllable bursts) low, soft and slow (f0 ≈ 120 Hz, 3 syllables/s) or high, loud and fast
  (f0 ≈ 230 Hz, 5 syllables/s), varied per speaker and per utterance; openSMILE's functionals
  (eGeMAPSv02, IS09...) see the pitch and loudness;
* visual sees ``(c + c // 2) % 2`` (calm, elated | content, upset): the astronaut's head and
  shoulders in every frame (one camera shot per speaker: size, position, mirrored or not, a
  slight sway), tinted warm (red up, blue down) or cold, with random strength and brightness;
  the shots are ones in which scikit-image's LBP face detector finds the face, and a random
  ViT's embedding of the face crop keeps the tint.

In every modality a share ``noise`` of the utterances (drawn independently per modality) shows
the other group, so no modality is perfect (on the default corpus, a logistic regression on
each modality's extracted features, fitted on train, gets its group right for 92–94% of the dev
and test utterances, and for all of them against the group the media show). Dialogues have 3–6
utterances and 2–3 named speakers taking turns; a label repeats the previous one with
probability 0.3, else it is drawn uniformly. Everything is deterministic given ``seed``; each
split (and the held-out set) has its own random stream, so changing one split's size leaves the
others' files as they were.

**File layout** written by :func:`make_media_corpus` under ``root``::

    conversations.csv            train/dev/test dialogues (paths relative to root)
    heldout.csv                  further conversations (split "test", labelled), not in the above
    media/<split>/<dialogue>_utt<k>.wav   16 kHz mono PCM, 0.8-1.6 s
    media/<split>/<dialogue>_utt<k>.mp4   H.264 video only, 160x120, 8 fps, the same duration
    (heldout media under media/heldout/; dialogue ids <split>_d<i>, held out: new<i>)

The default corpus (:data:`DEFAULT_DIALOGUES`, 96 / 16 / 24 dialogues, about 625 utterances and
35 MB) is written in about 10 s on 2 CPU cores; its extraction with the settings of the demo
(one thread each: text ``mode: frozen``, ``pooling: mean``, ``past: 2``; audio openSMILE
eGeMAPSv02; visual ``faces`` with the LBP detector and 3 sampled frames) takes about 5, 16 and
15 s, each ``multiemo extract`` process included.

Build the corpus with ``multiemo corpus build --dataset conversations --root
ROOT/conversations.csv --labels calm,content,upset,elated --media-root ROOT --out
DATA/corpus.json``. The numbers a model gets on these data say nothing about MELD or IEMOCAP.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from feature_extraction.runner import quiet_transformers

__all__ = ["LABELS", "DEFAULT_DIALOGUES", "WORDS", "SPEAKERS", "SIZE", "FPS", "SAMPLE_RATE",
           "voice", "make_text_encoder", "make_image_encoder", "make_media_corpus"]

#: the four classes, in index order (the ``--labels`` of ``corpus build``)
LABELS = ("calm", "content", "upset", "elated")
#: split → dialogues of the default corpus
DEFAULT_DIALOGUES = {"train": 96, "dev": 16, "test": 24}
#: the words of the transcripts: text group → cue words, and the shared filler words
WORDS = {
    "calm": ("fine", "okay", "quiet", "relaxed", "gently", "peaceful"),
    "aroused": ("wow", "amazing", "furious", "unbelievable", "shocked", "terrible"),
    "filler": ("i", "you", "it", "is", "was", "that", "the", "we", "so", "just", "really",
               "think", "know", "this", "well", "here", "they", "about"),
}
SPEAKERS = ("Ann", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana")
SIZE = (160, 120)  # video (width, height)
FPS = 8
SAMPLE_RATE = 16000
SECONDS_PER_WORD = 0.22
# audio group → (f0 Hz, peak amplitude, syllables per second)
_VOICES = ((120.0, 0.18, 3.0), (230.0, 0.40, 5.0))
# camera shots (person height in pixels, mirrored, top row): scikit-image's LBP cascade is
# picky about where a face falls on its search grid; in each of these shots it found the face
# (about 50-57 px) at every horizontal offset from -16 to 16 px, for warm and cold tints of 20-35,
# brightness shifts of ±8 and six backgrounds, on a 160x120 frame (tests/test_demo_media.py
# checks a few of these cases)
_SHOTS = ((134, True, 3), (136, True, 2), (136, False, 4), (138, False, 3), (140, True, 4),
          (140, False, 3), (142, True, 4), (144, True, 4), (144, False, 3), (146, True, 3),
          (148, False, 5), (150, True, 4), (150, False, 4), (152, True, 4), (154, False, 3))
_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PUNCTUATION = tuple(".,:;!?'\"-()")


# -- encoders -----------------------------------------------------------------------------------

def _vocabulary() -> list[str]:
    """Specials, punctuation, every word and (lower-cased) name, then single letters and digits
    with their continuation pieces so that any lower-case ASCII text tokenizes."""
    words = [w for group in WORDS.values() for w in group] + [s.lower() for s in SPEAKERS]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = list(_SPECIALS) + list(_PUNCTUATION) + words + chars + [f"##{c}" for c in chars]
    return list(dict.fromkeys(vocab))  # unique, in order


def make_text_encoder(path: Path) -> Path:
    """A tiny random BERT (hidden 64, 2 layers, 128 positions) and a lower-casing WordPiece
    tokenizer whose vocabulary is the demo's words and speaker names (plus letters, so any text
    tokenizes), saved with ``save_pretrained``: a model directory for ``multiemo extract text``.

    Args:
        path: the folder to write (made if missing).

    Returns:
        ``path``. The same files every time (weights seeded; the global torch RNG is untouched).
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path = Path(path)
    vocab = {token: i for i, token in enumerate(_vocabulary())}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=128)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128, max_position_embeddings=128,
                        pad_token_id=vocab["[PAD]"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2023)
        model = BertModel(config)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        fast.save_pretrained(path)
        model.save_pretrained(path)
    return path


def make_image_encoder(path: Path) -> Path:
    """A tiny random ViT image classifier (hidden 32, 1 layer, 32x32 input, 8x8 patches; no
    pooler weights, so the extractor reads its [CLS] token) and its ``ViTImageProcessor``, saved
    with ``save_pretrained``: a model directory for ``multiemo extract visual``.

    Args:
        path: the folder to write (made if missing).

    Returns:
        ``path``. The same files every time (weights seeded; the global torch RNG is untouched).
    """
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    path = Path(path)
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8, num_labels=len(LABELS),
                       id2label=dict(enumerate(LABELS)),
                       label2id={name: i for i, name in enumerate(LABELS)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2023)
        model = ViTForImageClassification(config)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():  # "ViTImageProcessor requires torchvision" (the extractor uses PIL)
        from transformers import ViTImageProcessor
        model.save_pretrained(path)
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


# -- media --------------------------------------------------------------------------------------

def voice(duration: float, f0: float, *, loudness: float = 0.25, rate: float = 4.0,
          sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like signal (after :func:`feature_extraction._synthetic.speech_like`, with
    the pitch, loudness and syllable rate as parameters): harmonics of a pitch that glides ±8%
    around ``f0`` and falls slightly over the utterance, bursts at ``rate`` syllables per second,
    a little noise, 20 ms fades.

    Args:
        duration: seconds.
        f0: mean fundamental frequency, Hz.
        loudness: peak amplitude of the voiced part (full scale is 1).
        rate: syllables per second.
        sample_rate: samples per second.
        seed: randomness of the glide, the syllable phase and the noise.

    Returns:
        float32 samples in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    glide = 1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 2 * np.pi))
    pitch = f0 * glide * (1.05 - 0.1 * t / max(duration, 1e-6))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 9)) / 2.0  # peak about 1
    syllables = np.sin(np.pi * rate * t + rng.uniform(0, np.pi)) ** 2
    envelope = 0.15 + 0.85 * syllables
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02) if n else t
    signal = loudness * envelope * fade * voiced + 0.004 * rng.standard_normal(n)
    return np.clip(signal, -1, 1).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _person(height: int, mirrored: bool) -> np.ndarray:
    """The astronaut's head and shoulders (a real, frontal face), ``height`` pixels tall, float32."""
    import cv2
    from skimage import data
    crop = data.astronaut()[20:260, 130:310]  # (240, 180, 3): the face is near the top middle
    width = int(round(crop.shape[1] * height / crop.shape[0]))
    image = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    image = image[:, ::-1] if mirrored else image
    image.setflags(write=False)
    return image


def _background(rng: np.random.Generator) -> np.ndarray:
    """A room: a vertical two-colour gradient, float32 ``(H, W, 3)``."""
    width, height = SIZE
    top, bottom = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    mix = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - mix) + bottom * mix, (height, width, 3)).astype(np.float32)


def _frames(num: int, background: np.ndarray, shot: dict[str, Any], tint: float, brightness: float,
            seed: int):
    """RGB frames of one utterance: the tinted person on the background, swaying slightly."""
    rng = np.random.default_rng(seed)
    height, width = background.shape[:2]
    person = _person(shot["height"], shot["mirrored"])
    shift = np.array([tint, 0.1 * abs(tint), -tint], np.float32) + brightness
    person = np.clip(person + shift, 0, 255)
    ph, pw = person.shape[:2]
    phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5)
    for i in range(num):
        frame = background.copy()
        left = (width - pw) // 2 + shot["dx"] + int(round(2 * np.sin(phase + speed * i)))
        top = shot["top"]
        x0, x1 = max(0, left), min(width, left + pw)
        y1 = min(height, top + ph)
        frame[top:y1, x0:x1] = person[:y1 - top, x0 - left:x1 - left]
        yield frame.astype(np.uint8)


def _write_mp4(path: Path, frames) -> None:
    import av
    width, height = SIZE
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 2 * FPS
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_wav(path: Path, signal: np.ndarray) -> None:
    import soundfile as sf
    sf.write(str(path), signal, SAMPLE_RATE, subtype="PCM_16")


def _sentence(rng: np.random.Generator, group: int) -> str:
    n = int(rng.integers(3, 7))
    cues = int(rng.integers((n + 1) // 2, n))  # 2 of 3 words, ... 3 to 5 of 6
    vocab = WORDS["calm" if group == 0 else "aroused"]
    words = [str(rng.choice(vocab)) for _ in range(cues)] + \
            [str(rng.choice(WORDS["filler"])) for _ in range(n - cues)]
    order = rng.permutation(n)
    text = " ".join("I" if words[i] == "i" else words[i] for i in order)
    return text[0].upper() + text[1:] + str(rng.choice([".", "?", ".", "!"]))


def _dialogues(rng: np.random.Generator, plan: list[tuple[str, str]], noise: float,
               persistence: float) -> list[dict[str, Any]]:
    """Draw every dialogue's speakers, labels, transcripts and media settings (no media yet)."""
    from multiemo.synthetic import modality_groups
    groups = {m: modality_groups(m, len(LABELS)) for m in ("text", "audio", "visual")}
    out = []
    for dialogue_id, split in plan:
        names = [str(s) for s in rng.choice(SPEAKERS, int(rng.integers(2, 4)), replace=False)]
        # one camera shot and one voice per speaker in this dialogue
        shots = {}
        for s in names:
            height, mirrored, top = _SHOTS[int(rng.integers(len(_SHOTS)))]
            shots[s] = {"height": height, "mirrored": mirrored, "top": top,
                        "dx": int(rng.integers(-14, 15))}
        pitch = {s: float(rng.uniform(0.88, 1.12)) for s in names}
        background_seed = int(rng.integers(2**31))
        n = int(rng.integers(3, 7))
        utterances, speaker, label = [], None, None
        for k in range(n):
            speaker = str(rng.choice([s for s in names if s != speaker]))
            if label is None or rng.random() >= persistence:
                label = int(rng.integers(len(LABELS)))
            seen = {m: int(g[label]) ^ int(rng.random() < noise) for m, g in groups.items()}
            text = _sentence(rng, seen["text"])
            duration = round(float(np.clip(SECONDS_PER_WORD * (len(text.split()) + 1)
                                           + rng.uniform(-0.1, 0.2), 0.8, 1.6)), 3)
            f0, loudness, rate = _VOICES[seen["audio"]]
            utterances.append({
                "speaker": speaker, "label": label, "text": text, "duration": duration,
                "seen": seen, "seed": int(rng.integers(2**31)),
                "f0": f0 * pitch[speaker] * float(rng.uniform(0.92, 1.08)),
                "loudness": loudness * float(rng.uniform(0.8, 1.2)),
                "rate": rate * float(rng.uniform(0.85, 1.15)),
                "tint": (1 if seen["visual"] == 0 else -1) * float(rng.uniform(20, 35)),
                "brightness": float(rng.uniform(-8, 8)), "shot": shots[speaker]})
        out.append({"id": dialogue_id, "split": split, "background_seed": background_seed,
                    "utterances": utterances})
    return out


def _write_dialogues(root: Path, folder: str, drawn: list[dict[str, Any]]) -> list:
    """Write the media of drawn dialogues under ``root/media/<folder>/``; the corpus dialogues."""
    from multiemo.data.corpus import Dialogue, Utterance
    media = root / "media" / folder
    media.mkdir(parents=True, exist_ok=True)
    dialogues = []
    for d in drawn:
        background = _background(np.random.default_rng(d["background_seed"]))
        utts, clock = [], 0.0
        for k, u in enumerate(d["utterances"]):
            uid = f"{d['id']}_utt{k}"
            wav, mp4 = media / f"{uid}.wav", media / f"{uid}.mp4"
            _write_wav(wav, voice(u["duration"], u["f0"], loudness=u["loudness"], rate=u["rate"],
                                  seed=u["seed"]))
            num = max(1, int(round(u["duration"] * FPS)))
            _write_mp4(mp4, _frames(num, background, u["shot"], u["tint"], u["brightness"],
                                    u["seed"]))
            start, clock = clock, round(clock + u["duration"], 3)
            utts.append(Utterance(id=uid, speaker=u["speaker"], label=u["label"], text=u["text"],
                                  start=start, end=clock, audio=wav.relative_to(root).as_posix(),
                                  video=mp4.relative_to(root).as_posix()))
            clock = round(clock + 0.3, 3)
        dialogues.append(Dialogue(d["id"], d["split"], tuple(utts)))
    return dialogues


def make_media_corpus(root: Path, dialogues: Mapping[str, int] | None = None, heldout: int = 1,
                      seed: int = 2023, noise: float = 0.05, persistence: float = 0.3) -> dict:
    """Write the SYNTHETIC media corpus (see the module docstring for what each modality carries).

    Args:
        root: folder to write: ``conversations.csv``, ``heldout.csv`` and ``media/``.
        dialogues: split → number of dialogues (default :data:`DEFAULT_DIALOGUES`: 96 / 16 / 24).
        heldout: further conversations written to ``heldout.csv`` (split ``test``, labelled, ids
            ``new<k>``, media under ``media/heldout/``), not in ``conversations.csv``: the input
            of the "predict a new conversation" step. 0 writes no ``heldout.csv``.
        seed: random seed; the same seed gives the same files.
        noise: share of utterances whose modality shows the other group (per modality).
        persistence: chance that an utterance repeats the previous label.

    Returns:
        ``{"root", "conversations", "heldout", "media"}`` (paths; ``heldout`` None when 0),
        ``"labels"``, ``"dialogues"`` and ``"utterances"`` (split → count, ``heldout`` included),
        ``"seed"``, and ``"modality_noise"``: modality → share of utterances showing the other
        group (as drawn).

    Raises:
        ValueError: an unknown split, a negative count, no dialogue at all, or noise outside
            [0, 0.5).
    """
    from multiemo.data.conversations import write_conversations
    from multiemo.data.corpus import Corpus
    from multiemo.synthetic import modality_groups

    root = Path(root)
    dialogues = dict(DEFAULT_DIALOGUES if dialogues is None else dialogues)
    unknown = set(dialogues) - {"train", "dev", "test"}
    if unknown or any(int(n) < 0 for n in dialogues.values()) or heldout < 0:
        raise ValueError(f"dialogues: counts >= 0 of train/dev/test; got {dialogues}, heldout={heldout}")
    if not sum(dialogues.values()):
        raise ValueError("make_media_corpus: no dialogue to write")
    if not 0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5); got {noise}")
    # one random stream per split (and one for the held-out conversations): a split's dialogues
    # do not change when another split's count does
    streams = {"train": 0, "dev": 1, "test": 2}
    drawn = [d for split, count in dialogues.items()
             for d in _dialogues(np.random.default_rng([seed, streams[split]]),
                                 [(f"{split}_d{i}", split) for i in range(int(count))], noise,
                                 persistence)]
    drawn_new = _dialogues(np.random.default_rng([seed, 3]),
                           [(f"new{i}", "test") for i in range(heldout)], noise, persistence)

    root.mkdir(parents=True, exist_ok=True)
    corpus_dialogues = []
    for split in dialogues:
        corpus_dialogues += _write_dialogues(root, split, [d for d in drawn if d["split"] == split])
    info = {"synthetic": True, "seed": seed}
    conversations = write_conversations(Corpus("demo_media", LABELS, tuple(corpus_dialogues), info=info),
                                        root / "conversations.csv")
    heldout_path, new_dialogues = None, []
    if heldout:
        new_dialogues = _write_dialogues(root, "heldout", drawn_new)
        heldout_path = write_conversations(Corpus("demo_media_heldout", LABELS, tuple(new_dialogues),
                                                  info=info), root / "heldout.csv")
    every = [u for d in drawn + drawn_new for u in d["utterances"]]
    flipped = {m: float(np.mean([u["seen"][m] != modality_groups(m, len(LABELS))[u["label"]]
                                 for u in every])) for m in ("text", "audio", "visual")}
    counts = {split: sum(d.split == split for d in corpus_dialogues) for split in dialogues}
    utt_counts = {split: sum(len(d.utterances) for d in corpus_dialogues if d.split == split)
                  for split in dialogues}
    counts["heldout"] = len(new_dialogues)
    utt_counts["heldout"] = sum(len(d.utterances) for d in new_dialogues)
    return {"root": root, "conversations": conversations, "heldout": heldout_path,
            "media": root / "media", "labels": LABELS, "dialogues": counts, "utterances": utt_counts,
            "seed": seed, "modality_noise": flipped}
