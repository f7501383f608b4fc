"""Every command answers a user's mistake with one line and exit code 2, never a traceback.

The walk covers every subcommand of the parser: a new command without a case here fails
``test_every_command_is_walked``.
"""

import argparse

import pytest

from multiemo.cli import build_parser, main as cli

NOWHERE = "nowhere"  # replaced by a path under tmp_path that does not exist

CASES = {
    "demo": ["demo", "--out", "/proc/multiemo-demo"],
    "train": ["train", "--config", "configs/meld.yaml", "--run-dir", "RUN", "model.dropout=1.5"],
    "evaluate": ["evaluate", NOWHERE],
    "report": ["report", NOWHERE],
    "sweep": ["sweep", "--config", NOWHERE + ".yaml", "--study-dir", "RUN"],
    "export": ["export", NOWHERE, "--out", "RUN"],
    "predict": ["predict", "--model", NOWHERE, "--input", NOWHERE + ".csv", "--out", "RUN"],
    "import-official": ["import-official", "--dataset", "meld", "--src", NOWHERE, "--out", "RUN"],
    "configs ls": ["configs", "ls", "data.root=x"],  # takes no overrides
    "configs cp": ["configs", "cp", NOWHERE, "RUN/c.yaml"],
    "corpus stats": ["corpus", "stats", "--dataset", "meld", "--root", NOWHERE],
    "corpus build": ["corpus", "build", "--dataset", "meld", "--root", NOWHERE, "--out", "RUN/c.json"],
    "extract text": ["extract", "text", "--config", "configs/extract/meld_text_minilm.yaml",
                     f"corpus.path={NOWHERE}.json", "--no-progress"],
    "extract audio": ["extract", "audio", "--config", "configs/extract/meld_audio.yaml",
                      f"corpus.path={NOWHERE}.json", "--no-progress"],
    "extract visual": ["extract", "visual", "--config", "configs/extract/meld_visual.yaml",
                       "sampling.num_frames=-3", "--no-progress"],
}


def leaves(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """The names of the runnable commands (``corpus build``, ``extract text``, ``train``...)."""
    found = []
    for action in parser._actions:  # argparse offers no public walk of its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaves(sub, f"{prefix}{name} ") or [f"{prefix}{name}"]
    return found


def test_every_command_is_walked():
    assert sorted(leaves(build_parser())) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_mistake_is_one_line_and_exit_2(name, tmp_path, capsys):
    argv = [a.replace(NOWHERE, str(tmp_path / NOWHERE)).replace("RUN", str(tmp_path / "run"))
            for a in CASES[name]]
    assert cli(argv) == 2, name
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err), name
    errors = [line for line in err if ": error: " in line]
    assert len(errors) == 1 and err[-1] == errors[0] and errors[0].startswith("multiemo"), err
    assert all(": warning: " in line for line in err[:-1]), err  # a warning may come first


def test_a_listing_piped_into_head_ends_without_a_traceback():
    """`multiemo configs ls | head -1`: the reader closes the pipe early; the command stops
    quietly (no BrokenPipeError traceback) with the shell's code for it. (`true` reads nothing
    and exits long before Python has started, so the first write always meets a closed pipe.)"""
    import subprocess
    import sys
    proc = subprocess.run(f"{sys.executable} -m multiemo.cli configs ls | true; echo ${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stdout.strip() == "141"
