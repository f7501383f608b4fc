"""``multiemo corpus ...``: read a raw corpus, print its statistics or write its ``corpus.json``.

    multiemo corpus stats --dataset meld --root data/raw/meld [--json]
    multiemo corpus build --dataset iemocap --root IEMOCAP_full_release --out data/iemocap/corpus.json

``--skip-bad-rows`` skips (and counts) bad rows instead of stopping at the first one;
``--media-root`` (MELD) checks the clips and writes their paths relative to it.
"""

from __future__ import annotations

import json
import sys

from multiemo.data.corpus import Corpus
from multiemo.data.datasets import read_dataset

__all__ = ["run_command", "format_stats"]


def format_stats(corpus: Corpus) -> str:
    """A plain-text table: dialogues, utterances and label counts per split, then the notes."""
    stats = corpus.stats()
    splits = list(stats["splits"])
    rows = [("dialogues", [stats["splits"][s]["dialogues"] for s in splits]),
            ("utterances", [stats["splits"][s]["utterances"] for s in splits]),
            ("max length", [stats["splits"][s]["max_dialogue_length"] for s in splits])]
    rows += [(f"  {name}", [stats["splits"][s]["labels"][name] for s in splits])
             for name in corpus.labels]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{corpus.name}: " + ", ".join(f"{k}={v}" for k, v in corpus.info.items()
                                            if k not in ("missing_media_ids",) and v not in ({}, None)),
             " " * width + "".join(f"{s:>10}" for s in splits)]
    lines += [f"{name:<{width}}" + "".join(f"{v:>10}" for v in values) for name, values in rows]
    return "\n".join(lines)


def run_command(args) -> int:
    """``multiemo corpus stats|build`` (the options are declared in :mod:`multiemo.cli`)."""
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    corpus = read_dataset(args.dataset, args.root, media_root=args.media_root,
                          skip_bad_rows=args.skip_bad_rows, labels=labels,
                          default_split=args.default_split)
    if args.action == "stats":
        if args.json:
            print(json.dumps({**corpus.stats(), "info": corpus.info}, indent=1, ensure_ascii=False))
        else:
            print(format_stats(corpus))
    else:
        corpus.save(args.out)
        print(f"wrote {args.out}: {sum(1 for _ in corpus.utterances())} utterances in "
              f"{len(corpus.dialogues)} dialogues", file=sys.stderr)
    return 0
