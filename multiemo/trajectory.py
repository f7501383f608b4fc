"""Emotion-trajectory plots of predicted dialogues: how the model's belief moves utterance by utterance.

``multiemo predict --plots`` writes one PNG per dialogue under ``OUT/plots/dialogues/`` (named by
:func:`dialogue_plot_name`, so files sort in input order) and one corpus-level
``OUT/plots/label_distribution.png``:

* :func:`plot_dialogue`: the utterances along the x axis, at their positions ``0..U-1`` in the
  dialogue (the ``position`` column of ``predictions.csv``), and the model's class probabilities
  stacked above them: one coloured band per class, the first label at the bottom, so each column
  sums to the probability mass of that utterance, normally 1 (rows that do not sum to 1 are drawn
  as given, not rescaled, and the y axis grows to the largest sum). The legend lists the classes
  in the order of the stack as it is read, top band first, then the markers. A strip under the
  plot gives each utterance's speaker (one colour per speaker, the name written in the cell).
  Where the gold label is known, a black dot sits in the middle of the gold class's band: a dot in
  a wide band is an utterance the model got right with confidence, a dot on a hairline band one it
  missed; the legend has a "gold" entry only when at least one gold label is known. Predicted
  labels, when given, are marked with a cross in the middle of their band (a cross on a dot: a
  correct prediction). The title is the dialogue id. :func:`dialogue_figure` returns the same
  figure unsaved, for callers that want to add to it.
* :func:`plot_label_distribution`: a bar per class with the number of utterances predicted as that
  class, beside a bar with the gold count when the gold labels are known.

matplotlib is imported inside the functions (with the ``Agg`` backend: files only, never a window),
so importing this module is cheap; every PNG is written atomically (a reader never sees half a file).

>>> dialogue_plot_name("d 1/x", 3)
'000003_d_1_x.png'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from multiemo.data.atomic import atomic_path
from multiemo.plots import pyplot

__all__ = ["plot_dialogue", "dialogue_figure", "plot_label_distribution", "dialogue_plot_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NAME_CHARS = 80  # of the id, in a file name
_SPEAKER_CHARS = 12  # of a speaker's name, in the speaker strip
_INCH_PER_UTTERANCE = 0.3
_MAX_WIDTH = 32.0  # inches (3200 px at dpi 100): ~100 utterances still get ~0.3 in each
_DPI = 100

# Intuitive colours for the emotion names of the supported corpora (MELD, IEMOCAP, DailyDialog,
# EmoryNLP); a label set with any other name gets matplotlib's qualitative palette instead.
_EMOTION_COLOURS = {
    "neutral": "#b0b0b0", "no_emotion": "#b0b0b0",
    "joy": "#f2c12e", "joyful": "#f2c12e", "happiness": "#f2c12e",
    "excitement": "#f28e2b", "surprise": "#f28e2b", "powerful": "#f28e2b",
    "peaceful": "#8cd17d",
    "sadness": "#4e79a7", "sad": "#4e79a7",
    "fear": "#9c6ade", "scared": "#9c6ade",
    "disgust": "#59a14f",
    "anger": "#e15759", "mad": "#e15759",
    "frustration": "#9d4d3c",
}


def _class_colours(plt, labels: Sequence[str]) -> list:
    """One colour per class: the emotion colours when every name has a distinct one, else tab10/tab20."""
    named = [_EMOTION_COLOURS.get(str(label).lower()) for label in labels]
    if None not in named and len(set(named)) == len(named):
        return named
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(len(labels))]


def _save(fig, plt, path: Path) -> Path:
    # the temporary file ends in ".tmp": name the format, matplotlib cannot guess it from the suffix
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=_DPI, format="png")
    finally:
        plt.close(fig)
    return path


def _check_label_list(values: Sequence[str | None], name: str, labels: Sequence[str], n: int,
                      allow_none: bool) -> list[int | None]:
    """``values`` as class indices into ``labels`` (None kept where allowed), after checking them."""
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but the dialogue has {n} utterances")
    index = {label: i for i, label in enumerate(labels)}
    out: list[int | None] = []
    for i, value in enumerate(values):
        if value is None and allow_none:
            out.append(None)
        elif isinstance(value, str) and value in index:
            out.append(index[value])
        else:
            raise ValueError(f"{name}[{i}] = {value!r} is not one of the labels {list(labels)}")
    return out


def _check_dialogue(labels: Sequence[str], probabilities: np.ndarray,
                    speakers: Sequence[str]) -> np.ndarray:
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels has duplicates: {labels}")
    probs = np.asarray(probabilities, dtype=float)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be 2-d (utterances, classes), got shape {probs.shape}")
    if probs.shape[0] < 1:
        raise ValueError("probabilities has no rows: a dialogue needs at least 1 utterance")
    if probs.shape[1] != len(labels):
        raise ValueError(f"probabilities has {probs.shape[1]} columns but there are "
                         f"{len(labels)} labels")
    if probs.shape[0] != len(speakers):
        raise ValueError(f"probabilities has {probs.shape[0]} rows (utterances) but speakers has "
                         f"{len(speakers)} entries")
    if not np.isfinite(probs).all():
        raise ValueError("probabilities holds NaN or infinite values")
    if (probs < 0).any():
        raise ValueError("probabilities holds negative values")
    return probs


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def plot_dialogue(path, dialogue_id: str, labels: Sequence[str], probabilities: np.ndarray,
                  speakers: Sequence[str], gold: Sequence[str | None] | None = None,
                  predicted: Sequence[str] | None = None) -> Path:
    """Draw one dialogue's emotional trajectory as a PNG: :func:`dialogue_figure`, saved.

    Args:
        path: the PNG to write (parent folders are created; written atomically).
        dialogue_id, labels, probabilities, speakers, gold, predicted: as :func:`dialogue_figure`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: a shape that does not fit, or a gold / predicted label not in ``labels``.
    """
    fig = dialogue_figure(dialogue_id, labels, probabilities, speakers, gold, predicted)
    return _save(fig, pyplot(), Path(path))


def dialogue_figure(dialogue_id: str, labels: Sequence[str], probabilities: np.ndarray,
                    speakers: Sequence[str], gold: Sequence[str | None] | None = None,
                    predicted: Sequence[str] | None = None):
    """One dialogue's emotional trajectory as a matplotlib figure (the caller closes it).

    The class probabilities are stacked over the utterance positions ``0..U-1`` (the ``position``
    column of ``predictions.csv``), the first label at the bottom; the legend, right of the plot,
    lists the classes top band first (the order in which the stack is read), then "gold" (only when
    some gold label is known) and "predicted" (when ``predicted`` is given). A strip below names
    each utterance's speaker (one colour per speaker); a black dot marks the gold class's band
    where the gold label is known, a cross the predicted class's band. Rows are drawn as given:
    a row that does not sum to 1 makes a column of that height, and the y axis reaches the largest
    row sum. The figure grows ~0.3 inch per utterance (capped at 32 inches, readable up to ~100
    utterances).

    Args:
        dialogue_id: the plot's title.
        labels: class names in column order of ``probabilities``.
        probabilities: ``(U, C)`` non-negative class probabilities, ``C == len(labels)``, one row
            per utterance in dialogue order, ``U >= 1``.
        speakers: the speaker of each utterance (``U`` entries).
        gold: ``U`` gold labels (names from ``labels``), ``None`` where unknown; or None.
        predicted: ``U`` predicted labels (names from ``labels``, e.g. the argmax); or None.

    Returns:
        The :class:`matplotlib.figure.Figure`: the stacked axes first, then the speaker strip.

    Raises:
        ValueError: a shape that does not fit, or a gold / predicted label not in ``labels``.
    """
    probs = _check_dialogue(labels, probabilities, speakers)
    labels = [str(label) for label in labels]
    n_utt = probs.shape[0]
    gold_idx = None if gold is None else _check_label_list(gold, "gold", labels, n_utt, True)
    pred_idx = (None if predicted is None
                else _check_label_list(predicted, "predicted", labels, n_utt, False))
    speakers = ["" if s is None else str(s) for s in speakers]

    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    colours = _class_colours(plt, labels)
    width = min(_MAX_WIDTH, 3.0 + max(5.0, _INCH_PER_UTTERANCE * n_utt))
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(width, 4.6), sharex=True,
                                    gridspec_kw={"height_ratios": [4.0, 1.0], "hspace": 0.05})
    x = np.arange(n_utt)  # the utterances' positions, as predictions.csv counts them
    # Each row is held flat half an utterance beyond the first and the last one, so that the bands
    # fill the axes (and a 1-utterance dialogue still shows a column).
    xs = np.concatenate([[-0.5], x, [n_utt - 0.5]])
    ys = np.concatenate([probs[:1], probs, probs[-1:]]).T
    ax.stackplot(xs, ys, colors=colours, labels=labels, edgecolor="white", linewidth=0.4)
    lower = np.cumsum(probs, axis=1) - probs  # bottom of each class's band, per utterance

    # The legend reads like the stack, top band first (the last label is drawn on top).
    handles = [Patch(facecolor=c, edgecolor="white", label=label)
               for c, label in reversed(list(zip(colours, labels)))]
    known = [] if gold_idx is None else [(i, g) for i, g in enumerate(gold_idx) if g is not None]
    if known:  # unlabelled input (every gold label None) gets no "gold" entry
        ax.scatter([i for i, _ in known], [lower[i, g] + probs[i, g] / 2 for i, g in known],
                   s=36, c="black", edgecolors="white", linewidths=0.8, zorder=4)
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=6, color="black",
                              markeredgecolor="white", label="gold"))
    if pred_idx is not None:
        ax.scatter(x, [lower[i, p] + probs[i, p] / 2 for i, p in enumerate(pred_idx)], s=30,
                   marker="x", c="white", linewidths=1.6, zorder=5)
        ax.scatter(x, [lower[i, p] + probs[i, p] / 2 for i, p in enumerate(pred_idx)], s=30,
                   marker="x", c="black", linewidths=0.6, zorder=6)
        handles.append(Line2D([], [], linestyle="", marker="x", markersize=6, color="black",
                              label="predicted"))

    top = max(1.0, float(probs.sum(axis=1).max()))
    ax.set_xlim(-0.5, n_utt - 0.5)
    ax.set_ylim(0.0, top * 1.001)
    ax.set_ylabel("probability")
    ax.set_title(_short(str(dialogue_id), 120), fontsize=11)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False, borderaxespad=0.0)
    ax.tick_params(axis="x", bottom=False)

    # Speaker strip: one coloured cell per utterance, the speaker's name written inside.
    order = list(dict.fromkeys(speakers))
    palette = plt.get_cmap("Set3" if len(order) > 8 else "Pastel2")
    speaker_colour = {s: palette(k % palette.N) for k, s in enumerate(order)}
    strip.bar(x, np.ones(n_utt), width=1.0, color=[speaker_colour[s] for s in speakers],
              edgecolor="white", linewidth=0.8)
    fontsize = 8 if n_utt <= 40 else 7
    for i, speaker in enumerate(speakers):
        strip.text(i, 0.5, _short(speaker, _SPEAKER_CHARS), rotation=90, ha="center",
                   va="center", fontsize=fontsize, clip_on=True)
    strip.set_ylim(0.0, 1.0)
    strip.set_yticks([])
    strip.set_ylabel("speaker", rotation=0, ha="right", va="center", fontsize=9)
    for side in ("top", "right", "left"):
        strip.spines[side].set_visible(False)
    step = 1 if n_utt <= 60 else 5
    ticks = [int(t) for t in x if t % step == 0]
    strip.set_xticks(ticks, [str(t) for t in ticks], fontsize=fontsize)
    strip.set_xlabel("utterance position")
    fig.subplots_adjust(left=1.0 / width, right=1.0 - 1.5 / width, top=0.92, bottom=0.13)
    return fig


def _check_counts(counts: Sequence[int], name: str, labels: Sequence[str]) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 1 or arr.shape[0] != len(labels):
        raise ValueError(f"{name} must have one count per label ({len(labels)}), "
                         f"got shape {arr.shape}")
    if arr.size and (not np.isfinite(arr.astype(float)).all() or (arr < 0).any()):
        raise ValueError(f"{name} holds negative or non-finite counts")
    return arr.astype(float)


def plot_label_distribution(path, labels: Sequence[str], predicted_counts: Sequence[int],
                            gold_counts: Sequence[int] | None = None, title: str = "") -> Path:
    """Draw a corpus's label distribution: a bar of predicted utterances per class (and of gold ones).

    Args:
        path: the PNG to write (parent folders are created; written atomically).
        labels: class names, the order of the bars.
        predicted_counts: how many utterances were predicted as each class (``len(labels)``).
        gold_counts: how many utterances carry each gold label, drawn as a second bar per class;
            or None.
        title: the plot's title ("label distribution" when empty).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no labels, or counts that do not have one entry per label.
    """
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("labels is empty")
    predicted = _check_counts(predicted_counts, "predicted_counts", labels)
    gold = None if gold_counts is None else _check_counts(gold_counts, "gold_counts", labels)

    plt = pyplot()
    colours = _class_colours(plt, labels)
    x = np.arange(len(labels))
    bar = 0.4 if gold is not None else 0.7
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(labels), 3.5))
    bars = ax.bar(x - (bar / 2 if gold is not None else 0), predicted, bar, label="predicted",
                  color=colours, edgecolor="black", linewidth=0.5)
    ax.bar_label(bars, [f"{int(v)}" for v in predicted], fontsize=7, padding=1)
    if gold is not None:
        gbars = ax.bar(x + bar / 2, gold, bar, label="gold", color="white", edgecolor="black",
                       linewidth=0.5, hatch="///")
        ax.bar_label(gbars, [f"{int(v)}" for v in gold], fontsize=7, padding=1)
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(facecolor="0.7", edgecolor="black", linewidth=0.5,
                                 label="predicted (class colour)"),
                           Patch(facecolor="white", edgecolor="black", linewidth=0.5, hatch="///",
                                 label="gold")], loc="upper right", fontsize=8)
    peak = max(float(predicted.max()), 0.0 if gold is None else float(gold.max()))
    ax.set_ylim(0, peak * 1.15 if peak > 0 else 1.0)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("utterances")
    total = int(predicted.sum())
    ax.set_title(title or f"label distribution ({total} utterances)", fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, Path(path))


def dialogue_plot_name(dialogue_id: str, index: int) -> str:
    """A safe, unique PNG file name for a dialogue: its position in the input, then its id.

    Every character of the id outside ``[A-Za-z0-9._-]`` becomes ``_`` and the id is cut to 80
    characters; the 0-based ``index`` of the dialogue in the input, zero-padded to 6 digits, comes
    first, so two ids that differ only in replaced characters still get different names and the
    files sort in input order.

    Args:
        dialogue_id: the dialogue's id.
        index: the dialogue's 0-based position in the input (``>= 0``).

    Returns:
        The file name, e.g. ``"000003_d_1_x.png"`` for ``("d 1/x", 3)``.

    >>> dialogue_plot_name("dia12_utt3", 0), dialogue_plot_name("../évé", 12)
    ('000000_dia12_utt3.png', '000012_..__v_.png')
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    safe = _UNSAFE.sub("_", str(dialogue_id))[:_NAME_CHARS]
    return f"{int(index):06d}_{safe}.png"
