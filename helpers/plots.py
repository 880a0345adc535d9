"""The paper's figures, each drawn from data or from the model itself.

Figures are built as plain :class:`matplotlib.figure.Figure` objects, outside pyplot's
state machine, so that a chapter can glue one into the text without Jupyter also
showing it under the cell that made it.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from helpers import paper

sns.set_theme(style="whitegrid", context="notebook")


def _display_figures_as_png() -> None:
    """In Jupyter, show (and glue) a Figure as a PNG image; PNG also reaches the PDF book."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("png")


_display_figures_as_png()


def _show_digit(ax: Axes, image: np.ndarray, title: str | None = None) -> None:
    ax.imshow(image.reshape(16, 16), cmap="gray_r", vmin=float(min(0.0, image.min())), vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=8)


def samples(images: np.ndarray, labels: np.ndarray, per_digit: int = 8) -> Figure:
    """Figure 2: the first ``per_digit`` training images of every digit, one row per digit."""
    fig = Figure(figsize=(per_digit * 0.7, 10 * 0.7), layout="tight")
    axes = fig.subplots(10, per_digit)
    for digit in paper.DIGITS:
        for column, index in enumerate(np.flatnonzero(labels == digit)[:per_digit]):
            _show_digit(axes[digit, column], images[index])
        axes[digit, 0].set_ylabel(str(digit), rotation=0, labelpad=10, fontsize=11)
    return fig


def frequency(labels: np.ndarray, title: str, color: str = "C0") -> Figure:
    """Figures 4 and 5: how many images of each digit a set holds."""
    fig = Figure(figsize=(6.5, 3.2), layout="tight")
    ax = fig.subplots()
    sns.countplot(x=labels, order=list(paper.DIGITS), color=color, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set(xlabel="digit", ylabel="images", title=title)
    return fig


def architecture(rows: Sequence[dict[str, object]]) -> Figure:
    """Figure 1: the network as a chain of layers, from :func:`helpers.model.layer_table`."""
    fig = Figure(figsize=(10, 2.6), layout="tight")
    ax = fig.subplots()
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


def confusion_heatmap(matrix: np.ndarray, title: str = "") -> Figure:
    """Figure 6: the confusion matrix, true digit down, predicted across."""
    fig = Figure(figsize=(6, 5), layout="tight")
    ax = fig.subplots()
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax,
                annot_kws={"fontsize": 8}, square=True)
    ax.set(xlabel="predicted digit", ylabel="true digit", title=title)
    return fig


def curves(history: dict[str, list[float]]) -> Figure:
    """Figure 7: training and validation loss and accuracy per epoch."""
    fig = Figure(figsize=(10, 3.6), layout="tight")
    left, right = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in ((left, "loss"), (right, "accuracy")):
        ax.plot(epochs, history[metric], label=f"training {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label=f"validation (test set) {metric}")
        ax.set(xlabel="epoch", ylabel=metric)
        ax.legend()
    right.set_ylim(max(0.8, min(history["accuracy"] + history.get("val_accuracy", [])) - 0.01), 1.0)
    return fig


def digit_grid(images: np.ndarray, titles: Sequence[str], columns: int = 10) -> Figure:
    """Figure 9: a grid of digits with a caption each (e.g. true and predicted label)."""
    rows = max(1, math.ceil(len(images) / columns))
    fig = Figure(figsize=(columns * 0.95, rows * 1.1), layout="tight")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.axis("on")
        _show_digit(ax, image, title)
    return fig


def bars(labels: Sequence[str], values: Sequence[float], xlabel: str,
         reference: float | None = None, reference_label: str = "") -> Figure:
    """A horizontal bar chart, optionally with a dashed reference line."""
    fig = Figure(figsize=(7, 0.35 * len(labels) + 1.2), layout="tight")
    ax = fig.subplots()
    ax.barh(list(labels), list(values), color="C0")
    if reference is not None:
        ax.axvline(reference, color="C3", linestyle="--", label=reference_label)
        ax.legend(loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    return fig


def ensemble_curve(table: "pd.DataFrame", reference: float | None = None) -> Figure:  # noqa: F821
    """Test error against ensemble size: mean over subsets and the range."""
    fig = Figure(figsize=(6.5, 3.4), layout="tight")
    ax = fig.subplots()
    sizes = table.index.to_numpy()
    ax.plot(sizes, table["mean error rate (%)"], marker="o", label="mean over subsets")
    ax.fill_between(sizes, table["min error rate (%)"], table["max error rate (%)"], alpha=0.2,
                    label="range over subsets")
    if reference is not None:
        ax.axhline(reference, color="C3", linestyle="--", label="the paper (one run)")
    ax.set(xlabel="models averaged", ylabel="test error (%)", xticks=sizes)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    return fig


def sweep_plot(summary: "pd.DataFrame", field: str, label: str, log: bool = True) -> Figure:  # noqa: F821
    """Test error (mean and std over seeds) and training time against a swept setting."""
    fig = Figure(figsize=(10, 3.4), layout="tight")
    left, right = fig.subplots(1, 2)
    x = summary.index.to_numpy()
    std = summary["std (%)"].fillna(0).to_numpy()
    left.errorbar(x, summary["mean error rate (%)"], yerr=std, marker="o", capsize=4)
    left.set(xlabel=label, ylabel="test error (%)")
    right.plot(x, summary["seconds per run"], marker="o", color="C1")
    right.set(xlabel=label, ylabel="training time per run (s)")
    for ax in (left, right):
        if log:
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [str(v) for v in x])
    return fig


def ladder_plot(table: "pd.DataFrame", paper_error: float, human_error: float) -> Figure:  # noqa: F821
    """Test error per ladder rung (mean and std over seeds), with reference lines."""
    fig = Figure(figsize=(8, 0.5 * len(table) + 1.6), layout="tight")
    ax = fig.subplots()
    colors = ["C0" if kept == "yes" else "0.7" for kept in table["kept"]]
    ax.barh(table.index, table["test error (%) mean"], xerr=table["std"].fillna(0), color=colors, capsize=3)
    ax.axvline(paper_error, color="C3", linestyle="--", label="the paper (one run)")
    ax.axvline(human_error, color="C2", linestyle=":", label="human")
    ax.invert_yaxis()
    ax.set_xlabel("test error (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    return fig


def readings_plot(errors: dict[str, Sequence[float]], paper_error: float) -> Figure:
    """Test error of every seed of every reading of the recipe (dots) and their mean (bar)."""
    fig = Figure(figsize=(8, 0.55 * len(errors) + 1.6), layout="tight")
    ax = fig.subplots()
    for row, (name, values) in enumerate(errors.items()):
        ax.scatter(values, [row] * len(values), color="C0", zorder=3, s=22)
        ax.plot([np.mean(values)] * 2, [row - 0.3, row + 0.3], color="C1", linewidth=2.5)
    ax.axvline(paper_error, color="C3", linestyle="--", label="the paper (one run)")
    ax.set_yticks(range(len(errors)), list(errors))
    ax.invert_yaxis()
    ax.set_xlabel("test error (%): one dot per seed, the orange bar is the mean")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    return fig


def digit_error_heatmap(table: "pd.DataFrame") -> Figure:  # noqa: F821
    """Errors per true digit (columns) for every run (rows), as a heat map."""
    fig = Figure(figsize=(7.5, 0.28 * len(table) + 1.4), layout="tight")
    ax = fig.subplots()
    labels = [f"{name[:34]}, seed {seed}" if seed != "" else name for name, seed in table.index]
    sns.heatmap(table.to_numpy(), annot=True, fmt="d", cmap="Reds", cbar=False, ax=ax, annot_kws={"fontsize": 7},
                xticklabels=list(table.columns), yticklabels=labels)
    ax.set(xlabel="true digit", ylabel="")
    ax.tick_params(axis="y", labelsize=7)
    return fig


def standings_plot(errors: dict[str, Sequence[float]], human: tuple[float, float], best_published: float) -> Figure:
    """Test error of each model on the way (one dot per seed, a bar at the mean), with the band of
    human readers and the best published result."""
    fig = Figure(figsize=(8, 0.5 * len(errors) + 1.8), layout="tight")
    ax = fig.subplots()
    ax.axvspan(*human, color="C2", alpha=0.25, label="human readers")
    ax.axvline(best_published, color="C3", linestyle="--", label="best published")
    for row, (name, values) in enumerate(errors.items()):
        ax.scatter(values, [row] * len(values), color="C0", zorder=3, s=20)
        ax.plot([np.mean(values)] * 2, [row - 0.3, row + 0.3], color="C1", linewidth=2.5)
    ax.set_yticks(range(len(errors)), list(errors))
    ax.invert_yaxis()
    ax.set_xlabel("test error (%): one dot per seed, the orange bar is the mean")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return fig
