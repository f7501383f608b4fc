"""The ``multiemo`` command: a thin dispatcher to each subcommand's ``main(argv)``.

Subcommands are imported lazily, so ``multiemo report`` never loads the extractors' libraries.
"""

from __future__ import annotations

import importlib
import sys

# command → (module, one-line help). "extract" takes a second word (text, audio, visual).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("multiemo.demo", "train on a small synthetic corpus and print the per-class table"),
    "train": ("multiemo.train", "train MultiEMO from a YAML config and feature stores"),
    "evaluate": ("multiemo.evaluate", "score a run's best checkpoint on test and write its report"),
    "report": ("multiemo.report", "per-class tables of one or more runs (mean ± std over runs)"),
    "import-official": ("multiemo.data.official", "convert the released feature pickles to stores"),
    "corpus": ("multiemo.data.cli", "read a raw corpus: `multiemo corpus stats ...`"),
}
EXTRACTORS: dict[str, str] = {
    "text": "feature_extraction.text",
    "audio": "feature_extraction.audio",
    "visual": "feature_extraction.visual",
}


def _usage() -> str:
    lines = ["usage: multiemo COMMAND [ARGS...]", "", "commands:"]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<16} {text}")
    lines.append(f"  {'extract':<16} batch feature extraction: multiemo extract "
                 f"{{{','.join(EXTRACTORS)}}} --config FILE [key=value ...] [--shard K/N]")
    lines.append("")
    lines.append("`multiemo COMMAND --help` gives each command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from multiemo import __version__
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name == "extract":
        if not rest or rest[0] not in EXTRACTORS:
            print(f"usage: multiemo extract {{{','.join(EXTRACTORS)}}} --config FILE ...",
                  file=sys.stderr)
            return 2
        module, rest = EXTRACTORS[rest[0]], rest[1:]
    elif name in COMMANDS:
        module = COMMANDS[name][0]
    else:
        print(f"multiemo: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return int(importlib.import_module(module).main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
