"""Write N synthetic MELD-like clips and their corpus.json, for the media benchmark.

    python benchmarks/make_synthetic_clips.py --out /tmp/multiemo_bench --clips 200

Clips: mp4 (H.264 + stereo AAC at 16 kHz), 25 fps, 640×360, durations uniform in 1.5–4.9 s
(3.2 s mean), speech-like audio (gliding harmonics in syllable bursts), a moving pattern, and in
70% of them a real face (scikit-image's astronaut photo), a keyframe every 12 frames. Files
already there are kept, so a second call is instant. Nothing here is committed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from feature_extraction._synthetic import write_clip
from multiemo.data.corpus import MELD_LABELS, Corpus, Dialogue, Utterance

UTTERANCES_PER_DIALOGUE = 10


def make_clips(out: Path, clips: int, seed: int = 0) -> Corpus:
    """The clips under ``out/clips`` and the corpus over them (80% train dialogues, 20% test)."""
    rng = np.random.default_rng(seed)
    durations = rng.uniform(1.5, 4.9, clips)
    has_face = rng.random(clips) < 0.7
    dialogues = []
    start = time.monotonic()
    for d in range(0, clips, UTTERANCES_PER_DIALOGUE):
        utts = []
        for i in range(d, min(clips, d + UTTERANCES_PER_DIALOGUE)):
            rel = f"clips/dia{d // UTTERANCES_PER_DIALOGUE}_utt{i - d}.mp4"
            path = out / rel
            if not path.exists():
                tmp = path.with_name(".tmp-" + path.name)
                write_clip(tmp, float(durations[i]), fps=25, size=(640, 360), face=bool(has_face[i]),
                           seed=seed + i)
                tmp.replace(path)
            utts.append(Utterance(id=f"dia{d // UTTERANCES_PER_DIALOGUE}_utt{i - d}", speaker="AB"[i % 2],
                                  label=int(rng.integers(len(MELD_LABELS))), audio=rel, video=rel))
        split = "train" if d < 0.8 * clips else "test"
        dialogues.append(Dialogue(f"dia{d // UTTERANCES_PER_DIALOGUE}", split, tuple(utts)))
    corpus = Corpus("synthetic-meld", MELD_LABELS, tuple(dialogues),
                    info={"clips": clips, "mean_duration": float(durations.mean()),
                          "with_face": int(has_face.sum())})
    corpus.save(out / "corpus.json")
    print(f"{clips} clips in {out}/clips ({time.monotonic() - start:.0f} s to write the missing ones)",
          file=sys.stderr)
    return corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/multiemo_bench")
    parser.add_argument("--clips", type=int, default=200)
    args = parser.parse_args(argv)
    make_clips(Path(args.out), args.clips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
