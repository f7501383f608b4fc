"""The shipped configs, addressable by name: ``meld``, ``sweeps/meld``, ``extract/meld_text``.

The repository's ``configs/`` folder is the one source. A wheel carries it as the package data
``multiemo/configs`` (``pyproject.toml`` maps the folder there at build time); a source checkout
or an editable install reads ``configs/`` itself. A name is the file's path under that folder
without ``.yaml``; ``configs/`` in front and ``.yaml`` behind are accepted too, so the README's
``--config configs/meld.yaml`` works from any folder once the package is installed.

Every ``--config`` of the command line goes through :func:`find_config`: **a path that exists
wins**; otherwise the words are a shipped name; an unknown name is a one-line error listing the
close names. A sweep or study file's ``base:`` follows the same rule, relative to its own file.
``multiemo configs ls`` lists the names, ``multiemo configs cp NAME FILE`` copies one out to
edit (as torchtune's ``tune ls`` / ``tune cp``); a copied sweep or study names its training
config by its shipped name (``base: meld``), so the copy still finds it wherever it is put.

>>> find_config("sweeps/meld") == shipped_dir() / "sweeps" / "meld.yaml"
True
>>> describe("meld")
'MultiEMO on MELD: the official recipe.'
>>> find_config("meldd")
Traceback (most recent call last):
...
multiemo.config.ConfigError: config 'meldd': no such file, nor a shipped config of that name; close names: meld (all: multiemo configs ls)
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import yaml

from multiemo.config import ConfigError, resolve_path

__all__ = ["shipped_dir", "names", "find_config", "copy_config", "describe", "run_command"]

SUFFIX = ".yaml"
# what each top folder of the shipped configs is for (the command that reads it)
KINDS = {"": "training (multiemo train --config NAME)",
         "extract": "feature extraction (multiemo extract MODALITY --config NAME)",
         "sweeps": "hyperparameter sweeps (multiemo sweep --config NAME)",
         "studies": "studies of variants (multiemo sweep --config NAME)"}


def shipped_dir() -> Path:
    """The folder of the shipped configs: ``multiemo/configs`` in an installed wheel, the
    repository's ``configs/`` in a checkout (and an editable install)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "configs", here.parent / "configs"):
        if (folder / f"meld{SUFFIX}").is_file():
            return folder
    raise ConfigError(f"no shipped configs beside {here}: the installation is incomplete "
                      f"(reinstall multiemo)")


def names() -> list[str]:
    """Every shipped config's name, sorted (training configs first, then each folder's)."""
    root = shipped_dir()
    found = [p.relative_to(root).with_suffix("").as_posix() for p in root.rglob(f"*{SUFFIX}")]
    return sorted(found, key=lambda n: (n.count("/"), n))


def _as_name(ref: str) -> str | None:
    """``ref`` as a shipped name (``configs/`` and ``.yaml`` dropped), or None if it cannot be one."""
    name = ref.strip().replace("\\", "/").removeprefix("./").removeprefix("configs/")
    name = name.removesuffix(SUFFIX).removesuffix(".yml")
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    return name


def find_config(ref: str | Path, relative_to: str | Path | None = None) -> Path:
    """The config file ``ref`` names: an existing file (relative to ``relative_to`` when given,
    else to the working folder), else the shipped config of that name.

    Raises:
        ConfigError: neither a file nor a shipped name (one line, with the close names).
    """
    path = resolve_path(relative_to, ref) if relative_to is not None else Path(ref)
    if path.is_file():
        return path
    name = _as_name(str(ref))
    shipped = _shipped(name)
    if shipped is not None:
        return shipped
    raise _unknown(str(ref), name, relative_to)


def _shipped(name: str | None) -> Path | None:
    """The shipped config file of ``name`` (from :func:`_as_name`), or None if there is none."""
    if name is None:
        return None
    path = shipped_dir() / f"{name}{SUFFIX}"
    return path if path.is_file() else None


def _unknown(ref: str, name: str | None, relative_to: str | Path | None = None) -> ConfigError:
    close = difflib.get_close_matches(name or ref, names(), n=4, cutoff=0.6)
    where = f" (relative to {relative_to})" if relative_to is not None else ""
    hint = f"; close names: {', '.join(close)}" if close else ""
    return ConfigError(f"config {ref!r}{where}: no such file, nor a shipped config of that "
                       f"name{hint} (all: multiemo configs ls)")


def describe(name: str, width: int = 72) -> str:
    """A shipped config's one-line description: the first sentence of its opening comment
    without the parentheses, cut to ``width`` characters at a word."""
    lines = []
    for line in (shipped_dir() / f"{name}{SUFFIX}").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    while re.search(r"\([^()]*\)", text):
        text = re.sub(r"\s*\([^()]*\)", "", text)
    end = re.search(r"[.;](\s|$)", text)
    text = text[:end.start()] if end else text
    if len(text) > width:
        text = text[:width].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text + ("" if text.endswith("…") else ".")


def _shipped_name(path: Path) -> str | None:
    """The shipped name of ``path``, or None if it is not a shipped config."""
    try:
        return path.resolve().relative_to(shipped_dir().resolve()).with_suffix("").as_posix()
    except ValueError:
        return None


def copy_config(name: str, dest: str | Path, force: bool = False) -> Path:
    """Copy the shipped config ``name`` to ``dest`` (a file, or a folder to copy into) to edit.

    A sweep's or study's ``base:`` (a path beside the shipped file) becomes the shipped name of
    that training config, which :func:`find_config` finds from anywhere.

    Raises:
        ConfigError: an unknown name, or ``dest`` exists and ``force`` is False.
    """
    key = _as_name(name)
    src = _shipped(key)
    if src is None:
        raise _unknown(name, key)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / src.name
    if dest.exists() and not force:
        raise ConfigError(f"{dest} exists: choose another file, or add --force to overwrite it")
    text = src.read_text(encoding="utf-8")
    base = (yaml.safe_load(text) or {}).get("base")
    if isinstance(base, str) and not Path(base).is_absolute():
        base_name = _shipped_name(src.parent / base)
        if base_name is not None:
            text, count = re.subn(r"^base:[ \t]*\S+[^\n]*$",
                                  f"base: {base_name}  # a shipped config's name (multiemo configs ls) "
                                  f"or a path relative to this file", text, count=1, flags=re.M)
            if count != 1 or yaml.safe_load(text).get("base") != base_name:
                raise ConfigError(f"{src}: could not rewrite its base: line for the copy")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    return dest


def _list() -> None:
    groups: dict[str, list[str]] = {folder: [] for folder in KINDS}
    every = names()
    for name in every:
        folder = name.split("/")[0] if "/" in name else ""
        groups.setdefault(folder, []).append(name)
    width = max(len(n) for n in every)
    for folder, members in groups.items():
        if not members:
            continue
        print(KINDS.get(folder, f"{folder}/"))
        for name in members:
            print(f"  {name:<{width}}  {describe(name)}")
    print(f"\n(shipped in {shipped_dir()}; `multiemo configs cp NAME FILE` copies one out to edit)")


def run_command(args) -> int:
    """``multiemo configs ls`` / ``multiemo configs cp NAME DEST [--force]``."""
    if args.action == "ls":
        _list()
        return 0
    dest = copy_config(args.name, args.dest, force=args.force)
    print(f"copied {args.name} to {dest}", file=sys.stderr)
    return 0
