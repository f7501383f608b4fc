"""The ``multiemo`` command: one argparse tree for every subcommand.

Options are declared here (cheap: nothing heavy is imported); each command's handler, a
``run_command(args)`` function, is imported only when that command runs, so ``multiemo report``
never loads the extractors' libraries. ``key=value`` config overrides may stand anywhere on the
line, before or after options (``multiemo train --config c.yaml data.root=x --run-dir r
train.epochs=3``); every ``--config`` is a file or a shipped config's name (``--config meld``,
:func:`multiemo.config_files.find_config`), resolved here once. One place turns the toolkit's
user errors (:class:`multiemo.errors.UserError`) into a one-line message and exit code 2;
argparse's own usage errors exit 2 too; anything else is a bug and keeps its traceback. Ctrl-C
ends with exit code 130 and a line saying so.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

__all__ = ["build_parser", "main"]

_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=")
_OVERRIDES_HELP = "config overrides, dotted for nesting, anywhere on the line (e.g. train.epochs=5)"


def _shard(text: str) -> tuple[int, int]:
    from feature_extraction.runner import parse_shard  # only when --shard is given
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _at_least(low: int, what: str):
    """An argparse type: an integer of at least ``low`` (``what`` names the range in errors)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive = _at_least(1, "a positive integer")
_threads = _at_least(0, "0 or a positive integer")


def _command(sub, name: str, handler: str, help: str, overrides: bool = False, **kwargs):
    p = sub.add_parser(name, help=help, description=kwargs.pop("description", help), **kwargs)
    p.set_defaults(handler=handler, takes_overrides=overrides, command=name)
    if overrides:
        p.add_argument("overrides", nargs="*", metavar="key=value", help=_OVERRIDES_HELP)
    return p


def _job_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="extraction config: a YAML file or a shipped "
                   "config's name (extract/meld_text; multiemo configs ls)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N",
                   help="run shard K of N (0 <= K < N); default 0/1")
    p.add_argument("--merge", action="store_true",
                   help="only merge the finished shards into the consolidated store")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default: the config's, else auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from multiemo.data.datasets import DATASETS  # the one table of datasets
    parser = argparse.ArgumentParser(prog="multiemo", description="MultiEMO for multimodal emotion "
                                     "recognition in conversations. `multiemo COMMAND --help` "
                                     "gives each command's options.")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = _command(sub, "demo", "multiemo.demo:run_command",
                 "train on a small synthetic corpus and print the per-class table (--media: the "
                 "whole chain from media files to predictions)")
    p.add_argument("--media", action="store_true", help="the chain from media: write synthetic "
                   "wav/mp4/text conversations, extract, train, export, predict a held-out one")
    p.add_argument("--out", help="folder for the synthetic data and the runs (default: a temporary folder)")
    p.add_argument("--epochs", type=_positive, default=None,
                   help="training epochs (default 8; with --media 20)")
    p.add_argument("--seed", type=int, default=2023)
    p.add_argument("--verbose", action="store_true", help="print every epoch")

    p = _command(sub, "train", "multiemo.train:run_command",
                 "train MultiEMO from a YAML config and feature stores", overrides=True,
                 description="Train MultiEMO; the best epoch is chosen on validation and only "
                 "that checkpoint is scored on test.")
    p.add_argument("--config", help="training config: a YAML file or a shipped config's name "
                   "(meld, iemocap; multiemo configs ls)")
    p.add_argument("--run-dir", help="folder for this run (created)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (overrides "
                   "given here are applied and recorded in its run.json)")
    p.add_argument("--seeds", help="comma-separated seeds: one run each, then mean ± std")

    p = _command(sub, "evaluate", "multiemo.evaluate:run_command",
                 "score a run's checkpoint again, into RUN_DIR/evaluations/<checkpoint>/",
                 overrides=True)
    p.add_argument("run_dir", help="a run directory written by multiemo train")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--name", help="sub-folder of RUN_DIR/evaluations (default: the checkpoint's name)")

    p = _command(sub, "report", "multiemo.report:run_command",
                 "per-class tables of runs (mean ± std), or a paired test of two runs",
                 description="Re-score runs from their predictions_<split>.csv and print the "
                 "per-class table beside the paper's MultiEMO row (several runs: mean ± std); "
                 "--compare A B: a paired bootstrap test of B against A.")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="run folders, or folders holding seed-* run folders")
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                   help="paired test of RUN_B against RUN_A on the same utterances (run folders, "
                   "or folders of seed-* runs: then the mean over seeds is compared)")
    p.add_argument("--out", metavar="DIR", help="write summary.{md,json,csv} here (and, for a "
                   "single run, its full report with plots; with --compare, compare.{md,json})")
    p.add_argument("--split", default="test", help="predictions_<split>.csv to score (default: test)")
    p.add_argument("--n-resamples", type=_positive, default=None,
                   help="bootstrap resamples (default: 1000 for intervals, 10000 for --compare)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")

    p = _command(sub, "sweep", "multiemo.sweep.cli:run_command",
                 "hyperparameter search or ablation study on Optuna, chosen on validation",
                 overrides=True)
    p.add_argument("--config", required=True, help="sweep or study: a YAML file or a shipped "
                   "config's name (sweeps/meld, studies/paper_tables_meld; multiemo configs ls)")
    p.add_argument("--study-dir", required=True, help="folder of the study (created; rerun to resume)")
    p.add_argument("--workers", type=_positive, default=1,
                   help="worker processes on this machine (default 1): CPU threads are split "
                   "between them; with CUDA they take the visible GPUs round-robin (--workers "
                   "2×GPUs puts two on each)")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--storage", help="Optuna storage URL (default: a journal file in the study "
                   "folder), e.g. postgresql://user@host/db for a cluster")
    p.add_argument("--no-final", action="store_true", help="run the trials only: no final "
                   "seeds on test, no summary (a worker that joins another machine's study)")
    p.add_argument("--summary-only", action="store_true",
                   help="no new trials: retrain the best and write the summary")

    p = _command(sub, "export", "multiemo.export:run_command",
                 "a finished run as a self-contained model folder (safetensors, config, card)",
                 description="Write a finished run as a model folder: the weights of the checkpoint "
                 "chosen on validation (safetensors), config.json with the labels, the model config "
                 "and each modality's extraction settings, the fine-tuned text encoder and any "
                 "projection, and a model card (README.md). Recognizer.from_pretrained and "
                 "`multiemo predict` read it.")
    p.add_argument("run_dir", help="a finished run folder written by multiemo train")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="the model folder to write "
                   "(must not exist)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint (default: best, the one chosen on validation)")

    p = _command(sub, "predict", "multiemo.predict:run_command",
                 "per-utterance emotions of new conversations with an exported model (a batch job)",
                 description="Extract the model's features from the conversations of --input (text, "
                 "audio, video; the same extractors and settings as the training features), run the "
                 "model, and write OUT/predictions.{csv,jsonl} (and, when the input has labels, the "
                 "per-class report). A batch job: --shard K/N splits the dialogues, a rerun resumes.")
    p.add_argument("--model", required=True, help="a model folder (multiemo export) or a hub id")
    p.add_argument("--input", required=True, help="conversation file (.csv or .jsonl; labels "
                   "optional) or a corpus.json")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (rerun to resume)")
    p.add_argument("--media-root", help="folder the audio / video paths are relative to "
                   "(default: the input file's folder)")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="predict shard K of N: the dialogues i with i %% N == K (default 0/1)")
    p.add_argument("--merge", action="store_true",
                   help="only merge the finished shards into OUT/predictions.* (the shard count "
                   "is the job's)")
    p.add_argument("--plots", action="store_true", help="one emotion-trajectory PNG per dialogue "
                   "and the predicted label distribution, under OUT/plots/")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip and count bad input rows instead of stopping at the first")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--threads", type=_threads, default=0, metavar="N",
                   help="torch CPU threads (default 0: the CPUs this process may use: affinity, "
                   "cgroup quota, OMP_NUM_THREADS, SLURM_CPUS_PER_TASK; 1 is fastest on a busy "
                   "machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = _command(sub, "import-official", "multiemo.data.official:run_command",
                 "convert the released feature pickles to stores",
                 description="Convert the feature pickles released with the official MultiEMO "
                 "code (Speakers.pkl, TextFeatures.pkl, AudioFeatures.pkl, VisualFeatures.pkl) "
                 "into OUT/corpus.json and OUT/features/{text,audio,visual}.safetensors. "
                 "Unpickling runs code: use only pickles from a trusted source.")
    p.add_argument("--dataset", required=True, metavar="NAME",  # checked by the table of datasets
                   help="meld or iemocap: the datasets of multiemo/data/datasets.py whose "
                        "features were released as pickles")
    p.add_argument("--src", required=True, metavar="DIR", help="folder holding the released pickles (e.g. Data/MELD)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write corpus.json and features/")

    configs = sub.add_parser("configs", help="list the shipped configs, or copy one out to edit",
                             description="The configs shipped with multiemo. Any --config takes "
                             "a file or one of these names (a path that exists wins).")
    configs_sub = configs.add_subparsers(title="configs commands", metavar="ACTION", required=True)
    p = _command(configs_sub, "ls", "multiemo.config_files:run_command",
                 "list the shipped configs by name, with what each is for")
    p.set_defaults(command="configs ls", action="ls")
    p = _command(configs_sub, "cp", "multiemo.config_files:run_command",
                 "copy a shipped config to a file to edit (a sweep's base: stays found)")
    p.set_defaults(command="configs cp", action="cp")
    p.add_argument("name", help="a shipped config's name (multiemo configs ls), e.g. meld or sweeps/meld")
    p.add_argument("dest", metavar="FILE", help="the file to write (or a folder to copy into)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    corpus = sub.add_parser("corpus", help="read a raw corpus: stats, or build corpus.json",
                            description="Read a raw corpus release (MELD CSVs, IEMOCAP).")
    corpus_sub = corpus.add_subparsers(title="corpus commands", metavar="ACTION", required=True)
    for name, text in (("stats", "print dialogues, utterances and label counts per split"),
                       ("build", "write the corpus.json that extraction and training read")):
        p = _command(corpus_sub, name, "multiemo.data.cli:run_command", text)
        p.set_defaults(command=f"corpus {name}", action=name)
        p.add_argument("--dataset", required=True, choices=list(DATASETS),
                       help="; ".join(d.description for d in DATASETS.values()))
        p.add_argument("--root", required=True, help="the raw release (MELD: the CSV folder; "
                       "conversations: the .csv or .jsonl file)")
        p.add_argument("--media-root", default=None, help="MELD: the folder of the clip folders")
        p.add_argument("--skip-bad-rows", action="store_true",
                       help="skip and count bad rows instead of stopping at the first")
        p.add_argument("--labels", help="conversations: the class names in index order, "
                       "comma-separated (default: the sorted names found in the file)")
        p.add_argument("--default-split", choices=("train", "dev", "test"), metavar="SPLIT",
                       help="conversations: the split (train, dev or test) of rows that give none "
                       "(no 'split' column or an empty cell); default: such a row is an error")
        if name == "stats":
            p.add_argument("--json", action="store_true", help="print JSON")
        else:
            p.add_argument("--out", required=True, help="corpus.json to write")

    extract = sub.add_parser("extract", help="batch feature extraction: text, audio or visual",
                             description="Batch feature extraction jobs (shardable, resumable).")
    extract_sub = extract.add_subparsers(title="modalities", metavar="MODALITY", required=True)
    for name, text in (("text", "context-aware transformer utterance features (frozen or fine-tuned)"),
                       ("audio", "utterance-level audio features into a feature store"),
                       ("visual", "utterance-level visual features (VisExtNet faces or whole frames)")):
        p = _command(extract_sub, name, f"feature_extraction.{name}:run_command", text, overrides=True)
        p.set_defaults(command=f"extract {name}")
        _job_arguments(p)
        if name == "text":
            p.add_argument("--finetune-only", action="store_true",
                           help="only fine-tune (mode: finetune), e.g. before starting N shards")
    return parser


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """``key=value`` words apart from the rest, so they may stand anywhere on the line."""
    rest, overrides = [], []
    for word in argv:
        (overrides if _OVERRIDE.match(word) else rest).append(word)
    return rest, overrides


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    rest, overrides = split_overrides(argv)
    try:
        args = parser.parse_args(rest)
    except SystemExit as stop:  # --help (0) or a usage error (2)
        return int(stop.code or 0)
    if args.version:
        from multiemo import __version__
        print(__version__)
        return 0
    if not hasattr(args, "handler"):
        parser.print_help()
        return 0
    if overrides and not args.takes_overrides:
        print(f"multiemo {args.command}: error: unexpected argument(s) {' '.join(overrides)} "
              f"(this command takes no key=value overrides)", file=sys.stderr)
        return 2
    if args.takes_overrides:
        args.overrides = [*args.overrides, *overrides]
    from multiemo.errors import UserError
    from multiemo.logs import setup_logging

    module, function = args.handler.split(":")
    try:
        if getattr(args, "config", None):  # a file, else a shipped config's name
            from multiemo.config_files import find_config
            args.config = str(find_config(args.config))
        handler = getattr(importlib.import_module(module), function)
        setup_logging()  # the one logging setup of every command (the library logs quietly)
        return int(handler(args) or 0)
    except UserError as err:
        print(f"multiemo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"multiemo {args.command}: interrupted; what was finished is kept (rerun to resume)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `multiemo configs ls | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # 128 + SIGPIPE, what a shell reports for a killed writer


if __name__ == "__main__":
    sys.exit(main())
