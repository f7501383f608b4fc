"""Emotion-trajectory plots: valid PNGs for short and long dialogues, what the figure shows (x axis,
legend, bands) read back from the matplotlib figure, input checks, file names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multiemo.data.corpus import MELD_LABELS
from multiemo.trajectory import (dialogue_figure, dialogue_plot_name, plot_dialogue,
                                  plot_label_distribution)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = list(MELD_LABELS)


def _probs(n_utt: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(len(LABELS)), size=n_utt)


def _read_png(path: Path) -> np.ndarray:
    """The image at ``path`` after checking it is a PNG; (height, width, channels)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= 200 and image.shape[1] >= 300
    assert image.std() > 0.01  # something was drawn
    return image


def _no_temporaries(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def figure():
    """``figure(*args, **kwargs)``: :func:`dialogue_figure`, drawn; every figure closed after."""
    import matplotlib.pyplot as plt

    made = []

    def make(*args, **kwargs):
        fig = dialogue_figure(*args, **kwargs)
        fig.canvas.draw()
        made.append(fig)
        return fig
    yield make
    for fig in made:
        plt.close(fig)


def _bands(ax):
    """The stacked bands (not the marker scatters), in drawing order: first label first."""
    from matplotlib.collections import PathCollection
    return [c for c in ax.collections if not isinstance(c, PathCollection)]


def _band_top(band, x: float) -> float:
    """The upper edge of a stacked band at ``x`` (a vertex of its outline)."""
    vertices = band.get_paths()[0].vertices
    return float(vertices[np.isclose(vertices[:, 0], x), 1].max())


def _markers(ax) -> list[np.ndarray]:
    """The (x, y) centres of each marker scatter: gold dots, then the predicted crosses."""
    from matplotlib.collections import PathCollection
    return [np.asarray(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


# -- plot_dialogue ------------------------------------------------------------------------------

def test_dialogue_plot_with_gold_and_predictions(tmp_path):
    probs = _probs(12)
    speakers = ["Ann", "Bob", "Ann", "Cy", "Bob", "Bob", "Cy", "Ann", "Cy", "Bob", "Ann", "Cy"]
    predicted = [LABELS[i] for i in probs.argmax(axis=1)]
    gold = ["joy", None, "anger", None, "neutral", "fear", "joy", None, "sadness", "disgust",
            None, "surprise"]
    target = tmp_path / "plots" / "dialogues" / dialogue_plot_name("dia 7", 0)  # folders made
    out = plot_dialogue(target, "dia 7", LABELS, probs, speakers, gold=gold, predicted=predicted)
    assert out == target and isinstance(out, Path)
    _read_png(out)
    _no_temporaries(target.parent)


def test_dialogue_of_one_and_of_sixty_utterances(tmp_path):
    one = plot_dialogue(tmp_path / "one.png", "d1", LABELS, _probs(1), ["Ann"], gold=["joy"])
    many = plot_dialogue(str(tmp_path / "many.png"), "d60", LABELS, _probs(60, seed=1),
                         [f"speaker {i % 4}" for i in range(60)], gold=[None] * 60)
    short, long = _read_png(one), _read_png(many)
    assert long.shape[1] > short.shape[1]  # width grows with the dialogue
    assert long.shape[1] <= 3200  # ... up to a cap


def test_dialogue_without_gold_and_with_unnormalised_rows(tmp_path, figure):
    """Rows that do not sum to 1 are drawn as given, not rescaled: a column as high as its row's
    sum, the y axis up to the largest sum, the gold dot in the middle of the unscaled band."""
    probs = np.array([[2.0, 1.0, 0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0, 0, 0]])  # logits-like rows
    speakers = np.array(["A", "B"])  # any sequence of names
    _read_png(plot_dialogue(tmp_path / "x.png", "x", tuple(LABELS), probs.tolist(), speakers))
    ax = figure("x", tuple(LABELS), probs.tolist(), speakers).axes[0]
    assert "gold" not in _legend(ax) and not _markers(ax)  # no gold given: no dots, no entry
    bands = _bands(ax)
    assert len(bands) == len(LABELS)
    # each band's upper edge is the running sum of its row: 2, 3, 3, ... and 0.5, 1, 1, ...
    for position, row in enumerate(probs):
        tops = [_band_top(band, position) for band in bands]
        np.testing.assert_allclose(tops, np.cumsum(row))
    assert ax.get_ylim()[1] == pytest.approx(3.0, rel=0.01)  # the tallest column fits, no more
    gold = [LABELS[0], LABELS[1]]
    ax = figure("x", LABELS, probs, ["A", "B"], gold=gold).axes[0]
    (dots,) = _markers(ax)
    np.testing.assert_allclose(dots, [[0, 1.0], [1, 0.75]])  # middles of [0, 2] and [0.5, 1]
    normalised = figure("n", LABELS, probs / probs.sum(axis=1, keepdims=True), ["A", "B"]).axes[0]
    assert normalised.get_ylim()[1] == pytest.approx(1.0, rel=0.01)


def test_x_axis_shows_the_positions_of_predictions_csv(figure):
    """Positions count from 0, as the ``position`` column of predictions.csv does."""
    probs = _probs(5)
    gold = [None, LABELS[2], None, None, LABELS[0]]
    predicted = [LABELS[i] for i in probs.argmax(axis=1)]
    fig = figure("d", LABELS, probs, ["A", "B", "A", "B", "A"], gold=gold, predicted=predicted)
    ax, strip = fig.axes
    assert [t.get_text() for t in strip.get_xticklabels()] == ["0", "1", "2", "3", "4"]
    assert list(strip.get_xticks()) == [0, 1, 2, 3, 4]
    assert ax.get_xlim() == (-0.5, 4.5) and strip.get_xlabel() == "utterance position"
    dots, crosses, _ = _markers(ax)  # the crosses are drawn twice (white under black)
    assert list(dots[:, 0]) == [1, 4] and list(crosses[:, 0]) == [0, 1, 2, 3, 4]
    assert [t.get_text() for t in strip.texts] == ["A", "B", "A", "B", "A"]
    assert [t.get_position()[0] for t in strip.texts] == [0, 1, 2, 3, 4]
    long = figure("long", LABELS, _probs(70), ["A"] * 70).axes[1]  # a tick every 5th position
    assert [t.get_text() for t in long.get_xticklabels()] == [str(i) for i in range(0, 70, 5)]


def test_legend_follows_the_stack_and_names_gold_only_with_labels(figure):
    """Top band first (the last label is stacked on top), then the markers; "gold" only when
    some gold label is known, "predicted" only with predictions."""
    probs, speakers = _probs(4), ["A", "B", "A", "B"]
    predicted = [LABELS[i] for i in probs.argmax(axis=1)]
    top_first = LABELS[::-1]
    unlabelled = figure("u", LABELS, probs, speakers, gold=[None] * 4, predicted=predicted).axes[0]
    assert _legend(unlabelled) == [*top_first, "predicted"]  # what predict gives unlabelled input
    labelled = figure("l", LABELS, probs, speakers, gold=[None, "joy", None, None],
                      predicted=predicted).axes[0]
    assert _legend(labelled) == [*top_first, "gold", "predicted"]
    assert _legend(figure("b", LABELS, probs, speakers).axes[0]) == top_first
    # the legend's first entry has the colour of the band on top, and so on down the stack
    bands = _bands(labelled)
    handles = labelled.get_legend().legend_handles[:len(LABELS)]
    assert [tuple(h.get_facecolor()) for h in handles] == \
        [tuple(b.get_facecolor()[0]) for b in reversed(bands)]
    assert _band_top(bands[-1], 0) == pytest.approx(probs[0].sum())  # the last band is the top


@pytest.mark.parametrize("probs, speakers, match", [
    (np.ones(7), ["A"], "2-d"),
    (np.ones((2, 6)), ["A", "B"], "6 columns but there are 7 labels"),
    (np.ones((2, 7)), ["A"], "2 rows .* speakers has 1"),
    (np.ones((0, 7)), [], "at least 1 utterance"),
    (np.full((1, 7), np.nan), ["A"], "NaN"),
    (-np.ones((1, 7)), ["A"], "negative"),
])
def test_dialogue_rejects_bad_shapes(tmp_path, probs, speakers, match):
    with pytest.raises(ValueError, match=match):
        plot_dialogue(tmp_path / "bad.png", "bad", LABELS, probs, speakers)
    assert not (tmp_path / "bad.png").exists()


def test_dialogue_rejects_bad_gold_and_predictions(tmp_path):
    probs, speakers = _probs(3), ["A", "B", "A"]
    with pytest.raises(ValueError, match=r"gold\[1\] = 'happy' is not one of the labels"):
        plot_dialogue(tmp_path / "g.png", "g", LABELS, probs, speakers, gold=["joy", "happy", None])
    with pytest.raises(ValueError, match="gold has 2 entries but the dialogue has 3"):
        plot_dialogue(tmp_path / "g.png", "g", LABELS, probs, speakers, gold=["joy", None])
    with pytest.raises(ValueError, match=r"predicted\[2\] = None"):
        plot_dialogue(tmp_path / "g.png", "g", LABELS, probs, speakers,
                      predicted=["joy", "joy", None])
    with pytest.raises(ValueError, match="duplicates"):
        plot_dialogue(tmp_path / "g.png", "g", ["a", "a"], np.ones((3, 2)), speakers)
    assert not list(tmp_path.iterdir())


# -- plot_label_distribution -------------------------------------------------------------------

def test_label_distribution_with_and_without_gold(tmp_path):
    predicted = [400, 50, 10, 80, 160, 20, 100]
    gold = [450, 60, 20, 70, 140, 30, 90]
    alone = plot_label_distribution(tmp_path / "plots" / "pred.png", LABELS, predicted)
    both = plot_label_distribution(tmp_path / "both.png", LABELS, predicted, gold, title="test")
    assert alone == tmp_path / "plots" / "pred.png"
    _read_png(alone)
    _read_png(both)
    empty = plot_label_distribution(tmp_path / "zero.png", ["a", "b"], [0, 0], [0, 0])
    _read_png(empty)
    _no_temporaries(tmp_path)


def test_label_distribution_rejects_bad_counts(tmp_path):
    with pytest.raises(ValueError, match=r"predicted_counts must have one count per label \(7\)"):
        plot_label_distribution(tmp_path / "d.png", LABELS, [1, 2, 3])
    with pytest.raises(ValueError, match="gold_counts must have one count per label"):
        plot_label_distribution(tmp_path / "d.png", LABELS, [1] * 7, [1] * 8)
    with pytest.raises(ValueError, match="negative"):
        plot_label_distribution(tmp_path / "d.png", LABELS, [1, 2, 3, 4, 5, 6, -7])
    assert not (tmp_path / "d.png").exists()


# -- dialogue_plot_name ------------------------------------------------------------------------

def test_dialogue_plot_name_examples():
    assert dialogue_plot_name("d 1/x", 3) == "000003_d_1_x.png"
    assert dialogue_plot_name("dia12_utt3.v-2", 0) == "000000_dia12_utt3.v-2.png"
    assert dialogue_plot_name("../../etc/passwd", 7) == "000007_.._.._etc_passwd.png"
    assert dialogue_plot_name("Ses01F_impro01", 123456) == "123456_Ses01F_impro01.png"
    assert dialogue_plot_name("ça va?", 1) == "000001__a_va_.png"
    assert dialogue_plot_name(42, 2) == "000002_42.png"  # type: ignore[arg-type]
    long = dialogue_plot_name("x" * 200, 5)
    assert long == "000005_" + "x" * 80 + ".png"


def test_dialogue_plot_names_are_safe_and_unique():
    ids = ["a b", "a/b", "a?b", "a_b", "a b", "", "日本語", "a\\b"]
    names = [dialogue_plot_name(d, i) for i, d in enumerate(ids)]
    assert len(set(names)) == len(names)  # same cleaned id, different index
    for name in names:
        assert "/" not in name and "\\" not in name and " " not in name
        assert name.isascii() and name.endswith(".png")
    assert sorted(names) == names  # files sort in input order
    with pytest.raises(ValueError, match="non-negative"):
        dialogue_plot_name("a", -1)
