"""The paper's figures, each drawn from data or from the model itself.

Figures are built as plain :class:`matplotlib.figure.Figure` objects, outside pyplot's
state machine, so that a chapter can place one in the text without Jupyter also
showing it under the cell that made it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import NullLocator

from helpers import paper

sns.set_theme(style="whitegrid", context="notebook")
try:  # in Jupyter, show a Figure as a PNG image; PNG also reaches the PDF book
    from IPython import get_ipython
    from matplotlib_inline.backend_inline import set_matplotlib_formats
except ImportError:
    pass
else:
    if get_ipython() is not None:
        set_matplotlib_formats("png")


def _figure(width: float, height: float, rows: int = 1, columns: int = 1, layout: str = "tight") -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout=layout)
    return fig, fig.subplots(rows, columns)


def _show_digit(ax: Axes, image: np.ndarray, title: str | None = None, fontsize: float = 8) -> None:
    ax.imshow(image.reshape(16, 16), cmap="gray_r", vmin=float(min(0.0, image.min())), vmax=1.0)
    ax.set(xticks=[], yticks=[])
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=fontsize)


def samples(images: np.ndarray, labels: np.ndarray, per_digit: int = 8) -> Figure:
    """Figure 2: the first ``per_digit`` training images of every digit, one row per digit."""
    fig, axes = _figure(per_digit * 0.7, 10 * 0.7, 10, per_digit)
    for digit in paper.DIGITS:
        for column, index in enumerate(np.flatnonzero(labels == digit)[:per_digit]):
            _show_digit(axes[digit, column], images[index])
        axes[digit, 0].set_ylabel(str(digit), rotation=0, labelpad=10, fontsize=11)
    return fig


def frequencies(sets: Sequence[tuple[np.ndarray, str, str]]) -> Figure:
    """Figures 4 and 5: how many images of each digit each set holds, a panel per ``(labels, title, colour)``."""
    fig, axes = _figure(4 * len(sets), 2.7, 1, len(sets))
    for ax, (labels, title, color) in zip(np.atleast_1d(axes), sets):
        sns.countplot(x=labels, order=list(paper.DIGITS), color=color, ax=ax)
        for container in ax.containers:
            ax.bar_label(container, fontsize=8)
        ax.set(xlabel="digit", ylabel="images", title=title)
        ax.margins(y=0.12)  # room for the counts above the tallest bar
    return fig


def architecture(rows: Sequence[dict[str, object]]) -> Figure:
    """Figure 1: the network as a chain of layers, from :func:`helpers.model.layer_table`."""
    fig, ax = _figure(10, 2.6)
    width, gap = 1.25, 0.3
    for i, row in enumerate(rows):
        x = i * (width + gap)
        ax.add_patch(FancyBboxPatch((x, 0), width, 1, boxstyle="round,pad=0.04",
                                    facecolor=matplotlib.colormaps["Blues"](0.2 + 0.08 * i), edgecolor="0.3"))
        ax.text(x + width / 2, 0.72, str(row["type"]).replace("MaxPooling2D", "MaxPool2D"),
                ha="center", fontsize=8.5, weight="bold")
        ax.text(x + width / 2, 0.45, str(row["output shape"]), ha="center", fontsize=8)
        ax.text(x + width / 2, 0.18, f"{row['parameters']:,} params", ha="center", fontsize=7.5)
        if i:
            ax.annotate("", (x - 0.04, 0.5), (x - gap + 0.04, 0.5),
                        arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.set_xlim(-0.1, len(rows) * (width + gap))
    ax.set_ylim(-0.15, 1.15)
    ax.axis("off")
    return fig


def confusion_heatmap(matrix: np.ndarray) -> Figure:
    """Figure 6: the confusion matrix, true digit down, predicted across."""
    fig, ax = _figure(4.6, 4.2)
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax,
                annot_kws={"fontsize": 9}, square=True)
    ax.set(xlabel="predicted digit", ylabel="true digit")
    return fig


def curves(history: dict[str, list[float]]) -> Figure:
    """Figure 7: training and validation loss and accuracy per epoch."""
    fig, (left, right) = _figure(10, 3.2, 1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in ((left, "loss"), (right, "accuracy")):
        ax.plot(epochs, history[metric], label=f"training {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label=f"validation (test set) {metric}")
        ax.set(xlabel="epoch", ylabel=metric)
        ax.legend()
    right.set_ylim(max(0.8, min(history["accuracy"] + history.get("val_accuracy", [])) - 0.01), 1.0)
    return fig


def digit_grid(images: np.ndarray, titles: Sequence[str], columns: int = 10, fontsize: float = 8) -> Figure:
    """Figure 9: a grid of digits with a caption each (e.g. true and predicted label); on a wide grid,
    short captions in a larger ``fontsize`` stay readable when the page scales the figure down."""
    rows = max(1, math.ceil(len(images) / columns))
    fig = Figure(figsize=(columns * 0.95, rows * 1.1), layout="tight")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.axis("on")
        _show_digit(ax, image, title, fontsize)
    return fig


def ensemble_curve(table: "pd.DataFrame", reference: float) -> Figure:  # noqa: F821
    """Test error against ensemble size: mean over subsets and the range."""
    fig, ax = _figure(6.5, 3.4)
    sizes = table.index.to_numpy()
    ax.plot(sizes, table["mean error rate (%)"], marker="o", label="mean over subsets")
    ax.fill_between(sizes, table["min error rate (%)"], table["max error rate (%)"], alpha=0.2,
                    label="range over subsets")
    ax.axhline(reference, color="C3", linestyle="--", label="the paper (one run)")
    ax.set(xlabel="models averaged", ylabel="test error (%)", xticks=sizes)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    return fig


def sweep_plot(summary: "pd.DataFrame", label: str) -> Figure:  # noqa: F821
    """Test error (mean and std over seeds) and training time against a swept setting (log2 axis)."""
    fig, (left, right) = _figure(10, 3.4, 1, 2)
    x = summary.index.to_numpy()
    std = summary["std (%)"].fillna(0).to_numpy()
    left.errorbar(x, summary["mean error rate (%)"], yerr=std, marker="o", capsize=4)
    left.set(xlabel=label, ylabel="test error (%)")
    right.plot(x, summary["seconds per run"], marker="o", color="C1")
    right.set(xlabel=label, ylabel="training time per run (s)")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
    return fig


def ladder_plot(table: "pd.DataFrame", paper_error: float, human_error: float) -> Figure:  # noqa: F821
    """Test error per ladder rung (mean and std over seeds), with reference lines."""
    fig, ax = _figure(8, 0.42 * len(table) + 1.3)
    colors = ["C0" if kept == "yes" else "0.7" for kept in table["kept"]]
    ax.barh(table.index, table["test error (%) mean"], xerr=table["std"].fillna(0), color=colors, capsize=3)
    ax.axvline(paper_error, color="C3", linestyle="--", label="the paper (one run)")
    ax.axvline(human_error, color="C2", linestyle=":", label="human")
    ax.invert_yaxis()
    ax.set_xlabel("test error (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    return fig


def _seed_rows(ax: Axes, errors: dict[str, Sequence[float]], size: float) -> None:
    """One row per entry of ``errors``: a dot per seed and an orange bar at the mean."""
    for row, values in enumerate(errors.values()):
        ax.scatter(values, [row] * len(values), color="C0", zorder=3, s=size)
        ax.plot([np.mean(values)] * 2, [row - 0.3, row + 0.3], color="C1", linewidth=2.5)
    ax.set_yticks(range(len(errors)), list(errors))
    ax.set_xlabel("test error (%): one dot per seed, the orange bar is the mean")


def readings_plot(errors: dict[str, Sequence[float]], paper_error: float) -> Figure:
    """Test error of every seed of every reading of the recipe (dots) and their mean (bar)."""
    fig, ax = _figure(8, 0.4 * len(errors) + 1.0)
    _seed_rows(ax, errors, 22)
    ax.axvline(paper_error, color="C3", linestyle="--", label="the paper (one run)")
    ax.set_ylim(len(errors) - 0.5, -0.5)
    ax.legend(loc="lower right", fontsize=9)
    return fig


def digit_error_heatmap(table: "pd.DataFrame") -> Figure:  # noqa: F821
    """Errors per true digit (columns) for every run (rows), as a heat map."""
    fig, ax = _figure(7.5, 0.28 * len(table) + 1.4)
    labels = [f"{name[:34]}, seed {seed}" if seed != "" else name for name, seed in table.index]
    sns.heatmap(table.to_numpy(), annot=True, fmt="d", cmap="Reds", cbar=False, ax=ax, annot_kws={"fontsize": 7},
                xticklabels=list(table.columns), yticklabels=labels)
    ax.set(xlabel="true digit", ylabel="")
    ax.tick_params(axis="y", labelsize=7)
    return fig


def standings_plot(errors: dict[str, Sequence[float]], human: tuple[float, float], best_published: float) -> Figure:
    """Test error of each model on the way, with the band of human readers and the best published result."""
    fig, ax = _figure(8, 0.36 * len(errors) + 1.6)
    ax.axvspan(*human, color="C2", alpha=0.25, label="human readers")
    ax.axvline(best_published, color="C3", linestyle="--", label="best published")
    _seed_rows(ax, errors, 20)
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return fig


def findings_plot(rows: Sequence["Row"], paper_error: float, best_published: float) -> Figure:  # noqa: F821
    """Every result on one axis (:func:`helpers.findings.points`): one row per result, grouped under a
    bold heading (a group of one row: in its label), one dot per run and a bar at the mean (a diamond
    for a single number), its mean written at the right; the human band shaded, the paper's error and
    the best published result as lines. Sized to stay readable at the width of a page or a slide."""
    colors = {"the paper": "C3", "our reproduction": "C0", "readings of the recipe": "#2a8a9e",
              "classical baselines": "0.45", "the ladder (kept rungs)": "C1", "the standings": "C4",
              "published on this split": "0.15"}  # any other group: grey
    groups: dict[str, list] = {}
    for row in rows:
        if not row.band:
            groups.setdefault(row.group, []).append(row)
    labels: list[tuple[str, bool]] = []  # (text, bold): a group of several rows gets a bold heading
    placed = []  # (y, row)
    for group, members in groups.items():
        if len(members) > 1:
            labels.append((group, True))
        for row in members:
            placed.append((len(labels), row))
            labels.append((row.label, False) if len(members) > 1 else (f"{group}: {row.label}", True))
    fig, ax = _figure(9, 0.25 * len(labels) + 1.7, layout="constrained")  # 18 pt a row: 10 pt labels do not touch
    for row in rows:
        if row.band:
            ax.axvspan(min(row.errors), max(row.errors), color="C2", alpha=0.22, zorder=0,
                       label=f"{row.label} ({min(row.errors):g}–{max(row.errors):g} %)")
    ax.axvline(paper_error, color="C3", linestyle="--", linewidth=1.2, zorder=1,
               label=f"the paper's error ({paper_error:g} %)")
    ax.axvline(best_published, color="0.15", linestyle=":", linewidth=1.4, zorder=1,
               label=f"best published ({best_published:g} %)")
    for y, row in placed:
        color = colors.get(row.group, "0.5")
        values = np.asarray(row.errors, dtype=float)
        if len(values) > 1:
            ax.scatter(values, [y] * len(values), color=color, alpha=0.55, s=24, zorder=3, linewidths=0)
            ax.plot([values.mean()] * 2, [y - 0.34, y + 0.34], color=color, linewidth=3, zorder=4)
        else:
            ax.scatter(values, [y], color=color, marker="D", s=40, zorder=4)
        ax.text(values.max() * 1.015, y, f"{values.mean():.2f}", va="center", ha="left", fontsize=9, color="0.2",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.6}, zorder=5)
    ax.set_yticks(range(len(labels)), [text for text, _ in labels], fontsize=10)
    for tick, (_, heading) in zip(ax.get_yticklabels(), labels):
        tick.set_fontweight("bold" if heading else "normal")
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(len(labels) - 0.4, -0.6)
    # A log axis: the results from 2 % to 4 % are the story; the weakest baseline sits near 8 %.
    ax.set_xscale("log")
    low, high = min(min(r.errors) for r in rows) / 1.08, max(max(r.errors) for r in rows) * 1.15
    ax.set_xlim(low, high)
    ticks = [t for t in (1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 20) if low <= t <= high]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("test error (%, log scale)")
    markers = [Line2D([], [], color="0.4", marker="o", linestyle="", alpha=0.55, label="one run (seed)"),
               Line2D([], [], color="0.4", marker="|", markersize=12, markeredgewidth=3, linestyle="",
                      label="mean over the runs"),
               Line2D([], [], color="0.4", marker="D", linestyle="", label="a single result")]
    handles, names = ax.get_legend_handles_labels()
    fig.legend(markers + handles, [m.get_label() for m in markers] + names, loc="outside lower center", ncol=3,
               frameon=False, fontsize=9.5)
    return fig


def noise_curves(table: "pd.DataFrame", reference: str) -> Figure:  # noqa: F821
    """Test error (%, log scale) against the noise's standard deviation, a line per column, ``reference`` dashed."""
    fig, ax = _figure(7, 3.3)
    for i, column in enumerate(table.columns):
        ax.plot(table.index, table[column], marker="o", label=column, color=f"C{i}",
                linestyle="--" if column == reference else "-")
    ax.set(yscale="log", xlabel="pixel noise: standard deviation (pixels in [0, 1])", ylabel="test error (%)")
    ax.set_yticks([1, 2, 5, 10, 20, 50, 100], ["1", "2", "5", "10", "20", "50", "100"])
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return fig
