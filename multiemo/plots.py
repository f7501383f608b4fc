"""Matplotlib for writing figures to files, the one way every plot of the toolkit gets it."""

from __future__ import annotations

__all__ = ["pyplot"]


def pyplot():
    """``matplotlib.pyplot`` on the ``Agg`` backend: files only, never a window (a training
    node or a CI runner has no display). Imported on first use: matplotlib costs a command that
    draws nothing about a second."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
