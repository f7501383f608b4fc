"""MELD corpora whose train split has the size of another corpus's (a proxy for corpora that are
not available here): N train dialogues drawn with a seed, MELD's dev and test kept whole.

    python experiments/presets_convergence/subsets.py CORPUS_JSON OUT_DIR NAME=N [NAME=N ...]

writes OUT_DIR/NAME/corpus.json for each (e.g. emorynlp=659 iemocap=120).
"""

import random
import sys
from pathlib import Path

from multiemo.data.corpus import Corpus


def subset(corpus: Corpus, num_train: int, seed: int = 2023) -> Corpus:
    train = corpus.split("train")
    keep = {d.id for d in random.Random(seed).sample(train, num_train)}
    dialogues = tuple(d for d in corpus.dialogues if d.split != "train" or d.id in keep)
    return Corpus(corpus.name, corpus.labels, dialogues, corpus.speaker_vocab,
                  {**corpus.info, "subset": f"{num_train} train dialogues, seed {seed}"})


def main(argv: list[str]) -> None:
    corpus, out = Corpus.load(argv[0]), Path(argv[1])
    for item in argv[2:]:
        name, size = item.split("=")
        sub = subset(corpus, int(size))
        (out / name).mkdir(parents=True, exist_ok=True)
        sub.save(out / name / "corpus.json")
        counts = {s: len(sub.split(s)) for s in ("train", "dev", "test")}
        print(f"{out / name / 'corpus.json'}: {counts}")


if __name__ == "__main__":
    main(sys.argv[1:])
