"""The report's figures: each drawn by a function of plain inputs (testable without a store), next to the
reader that gets those inputs from the runs of a launch.

- `forest`: each row's difference against its baseline, seed and combined intervals side by side;
- `curves`: validation NLL per epoch, one curve per training, the kept epoch marked;
- `reliability`: a few rows' reliability curves overlaid, over their confidence histograms;
- `temperature`: the fitted temperature against focal γ;
- `recall`: per-class recall, for a study of imbalanced data only.

Built on matplotlib.figure.Figure and saved through the Agg canvas, so no pyplot state and no display are
involved (the report also runs inside the Hydra process).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from xent_lab import atomic
from xent_lab.report.figures.curves import Curve, val_nll_curves, val_nll_figure
from xent_lab.report.figures.forest import ForestRow, forest_figure, forest_rows
from xent_lab.report.figures.layout import DPI, panel_title, row_label
from xent_lab.report.figures.recall import recall_figure
from xent_lab.report.figures.reliability import (
    MIN_COUNT,
    ReliabilityCurve,
    n_bins_of,
    reliability_curves,
    reliability_figure,
)
from xent_lab.report.figures.temperature import TemperaturePoint, temperature_figure, temperature_points
from xent_lab.report.load import Groups, Launch

__all__ = [
    "Curve",
    "Figures",
    "ForestRow",
    "ReliabilityCurve",
    "TemperaturePoint",
    "draw_figures",
    "forest_figure",
    "forest_rows",
    "panel_title",
    "recall_figure",
    "reliability_curves",
    "reliability_figure",
    "row_label",
    "temperature_figure",
    "temperature_points",
    "val_nll_curves",
    "val_nll_figure",
    "write_figures",
]

Figures = dict[str, tuple[str, Figure | None]]  # file name -> (caption, the figure, None when it has no data)


def draw_figures(
    client: MlflowClient,
    launch: Launch,
    groups: Groups,
    forest_rows: Sequence[ForestRow] = (),
    reliability_rows: Sequence[str] | None = None,
) -> Figures:
    """The report's figures, drawn but not yet written. `forest_rows`: the differences the report computed
    (no forest plot without them); `reliability_rows`: the row labels to overlay in each reliability panel
    (default: `reliability.chosen_rows`)."""
    curves, note = val_nll_curves(client, launch.jobs)
    n_bins = n_bins_of(launch.jobs)
    return {
        "forest.png": (
            "Differences against the baseline: seed interval and combined (seeds and test set) interval",
            forest_figure(forest_rows),
        ),
        "val_nll.png": ("Validation NLL per epoch, the kept epoch marked", val_nll_figure(curves, note)),
        "reliability.png": (
            f"Reliability, pooled over seeds ({n_bins} bins; bins under {MIN_COUNT} samples not drawn)",
            reliability_figure(reliability_curves(client, groups, launch.sweep, reliability_rows), n_bins),
        ),
        "temperature.png": ("Fitted temperature against focal γ", temperature_figure(temperature_points(groups))),
        "recall.png": ("Per-class recall", recall_figure(groups, launch.jobs)),
    }


def write_figures(figures: Figures, out_dir: Path) -> dict[str, str]:
    """Saves the figures that have data into `out_dir`, each replaced atomically; returns file name -> caption."""
    written = {}
    for name, (caption, figure) in figures.items():
        if figure is not None:
            with atomic.replacing(out_dir / name) as temporary:
                figure.savefig(temporary, format="png", dpi=DPI)
            written[name] = caption
    return written
