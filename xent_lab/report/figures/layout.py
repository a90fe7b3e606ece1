"""What the report's figures share: the grid of panels, the colours of the rows, the labels of variants."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xent_lab.tracking import tags

DPI = 100
N_COLS = 3  # panels per row of a grid
# Keys a panel's title already names, left out of a row's label.
PANEL_KEYS = ("dataset", "trainer.keep")
EVALUATION_NAMES = {tags.KEEP_BEST: "kept epoch (best val. accuracy)", tags.KEEP_LAST: "last epoch"}
# tab10 without its grey: a row keeps its colour across the panels of a figure.
COLORS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
# Rough text widths, inches per character: the figure-level title (12 pt) and legend (8 pt) fit the figure.
TITLE_INCH_PER_CHAR, LEGEND_INCH_PER_CHAR = 0.105, 0.07


def grid(n_panels: int, panel: tuple[float, float], n_cols: int = N_COLS) -> tuple[Figure, list[Axes]]:
    """A figure of `n_panels` axes, `n_cols` a row (spare cells left empty), each about `panel` inches."""
    n_cols = max(1, min(n_cols, n_panels))
    n_rows = max(1, math.ceil(n_panels / n_cols))
    figure = Figure(figsize=(max(6.0, panel[0] * n_cols), panel[1] * n_rows), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False).flat
    for spare in list(axes)[n_panels:]:
        figure.delaxes(spare)
    return figure, list(figure.axes)


def row_label(variant: str, impl: str, impls: Iterable[str] = ()) -> str:
    """A variant as a figure's row reads it: without the keys its panel names, in `short` form, and `[impl]` only
    where the rows have more than one implementation."""
    text = short(part for part in variant.split(", ") if part.split("=", 1)[0] not in PANEL_KEYS) or variant
    return f"{text} [{impl}]" if len(set(impls)) > 1 else text


def short(parts: Iterable[str]) -> str:
    """`trainer.optimizer.learning_rate=0.1` -> `learning_rate=0.1`, `loss=cce` -> `cce`."""
    out = []
    for part in parts:
        key, _, value = part.partition("=")
        out.append(value if key == "loss" else f"{key.rsplit('.', 1)[-1]}={value}")
    return ", ".join(out)


def panel_title(dataset: str, evaluation: str | None = None) -> str:
    """`imdb`, or `imdb: last epoch` for one of a run's two evaluations."""
    if evaluation is None:
        return dataset
    return f"{dataset}: {EVALUATION_NAMES.get(evaluation, evaluation)}"


def colors(labels: Sequence[str]) -> dict[str, str]:
    """One colour per distinct label, in order of first appearance (cycling past ten)."""
    distinct = list(dict.fromkeys(labels))
    return {label: COLORS[i % len(COLORS)] for i, label in enumerate(distinct)}


def markers(labels: Sequence[str]) -> dict[str, str]:
    """One marker per distinct label, so rows are told apart in grey print too."""
    distinct = list(dict.fromkeys(labels))
    return {label: MARKERS[i % len(MARKERS)] for i, label in enumerate(distinct)}


def title(figure: Figure, text: str) -> None:
    """The figure's title, wrapped to its width."""
    width = figure.get_figwidth()
    figure.suptitle(textwrap.fill(text, max(20, int(width / TITLE_INCH_PER_CHAR))))


def legend(figure: Figure, handles: Sequence, labels: Sequence[str], note: str = "") -> None:
    """One legend for the figure, under its panels, in as many columns as its width holds; `note` as its title."""
    longest = max((len(label) for label in labels), default=1)
    fit = int(figure.get_figwidth() / (LEGEND_INCH_PER_CHAR * longest + 0.6))
    ncols = max(1, min(len(labels), fit))
    figure.legend(
        handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, title=note or None, title_fontsize=8
    )
