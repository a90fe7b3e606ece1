"""The paper's own numbers beside ours: the authors' CIFAR-10 table and their text scripts' temperatures
(`paper_numbers`, each with its file and commit), our runs' numbers in the same units, and our settings beside
theirs, one value per dataset where ours differ."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xent_lab.report import paper_numbers as P
from xent_lab.report.headline import view_title
from xent_lab.report.load import CUSTOM, KEEP_KEY, Groups, Job, seed_order
from xent_lab.report.markdown import NO_VALUE, markdown_table
from xent_lab.report.stats import finished_values
from xent_lab.tracking import tags

HEADING = "## The paper's numbers beside ours"
SETTINGS = (
    ("training examples", "dataset.limit.train"),
    ("model", "model.name"),
    ("epochs", "trainer.epochs"),
    ("optimiser", "trainer.optimizer._target_"),
    ("learning rate", "trainer.optimizer.learning_rate"),
    ("ECE bins", "calibration.n_bins"),
)
# Our presets of the paper's losses, in the order the tables list them.
PRESETS = ("cce", "brier", "mmce", "cce_smoothed05", "focal_gamma1", "focal", "focal_gamma3", "focal_flsd53")


def _setting(finished: Sequence[Job], key: str) -> str:
    """The runs' value of `key`: one value if all datasets share it, else "dataset: value" per dataset
    (a null dataset.limit reads "all")."""
    per_dataset: dict[str, set[str]] = {}
    for job in finished:
        if key in job.params:
            value = job.params[key]
            per_dataset.setdefault(job.dataset, set()).add("all" if value == "None" else value)
    spelled = {dataset: "/".join(sorted(values)) for dataset, values in sorted(per_dataset.items())}
    if len(set(spelled.values())) == 1:
        return next(iter(spelled.values()))
    return "; ".join(f"{dataset}: {value}" for dataset, value in spelled.items()) or NO_VALUE


def our_settings(jobs: Sequence[Job], views: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(setting, the runs' values) for the comparison table; `views`: the evaluations shown, as labels."""
    finished = [job for job in jobs if job.finished]
    ours = [("data", ", ".join(sorted({job.dataset for job in finished})) or NO_VALUE)]
    ours += [(name, _setting(finished, key)) for name, key in SETTINGS]
    ours.append(("seeds", ", ".join(sorted({job.seed for job in finished}, key=seed_order)) or NO_VALUE))
    ours.append(("checkpoint evaluated", "; ".join(views)))
    return tuple(ours)


def cifar_lines() -> list[str]:
    """The authors' CIFAR-10 table: per loss and architecture, test error %, ECE % and ECE % after temperature
    scaling with its T."""
    archs = list(P.CIFAR_ERROR)
    rows = []
    for index, (name, preset) in enumerate(P.CIFAR_LOSSES):
        cells = []
        for arch in archs:
            c = P.CIFAR_ECE[arch][index]
            cells.append(f"{P.CIFAR_ERROR[arch][index]} · {c.ece} → {c.ece_ts} (T {c.temperature:g})")
        rows.append([f"{name} (`{preset}`)", *cells])
    return [
        f"Mukhoti et al.'s CIFAR-10 results, quoted from {P.CIFAR_SOURCE.cite()}. Each cell: test error % · "
        "ECE % → ECE % after temperature scaling (the T they used).",
        "",
        *markdown_table(["loss", *archs], rows),
        "",
    ]


def _views(groups: Groups) -> dict[str, dict[str, list[Job]]]:
    """ "dataset, evaluation" -> preset -> the custom jobs of that preset."""
    found: dict[str, dict[str, list[Job]]] = {}
    for dataset, variants in groups.items():
        for by_impl in variants.values():
            for job in by_impl.get(CUSTOM, []):
                label = view_title(dataset, job.overrides.get(KEEP_KEY))
                preset = job.overrides.get("loss", job.tags.get(tags.LOSS, ""))
                found.setdefault(label, {}).setdefault(preset, []).append(job)
    return found


def _ours(jobs: Sequence[Job]) -> str:
    """Our runs in the table's units: test error % · ECE % → ECE % after temperature scaling (mean T), over seeds."""
    means = [finished_values(jobs, metric) for metric in (tags.TEST_ACCURACY, tags.TEST_ECE, tags.TEST_ECE_TS)]
    temperature = finished_values(jobs, tags.TEST_TEMPERATURE)
    if not all(means) or not temperature:
        return NO_VALUE
    error, ece, ece_ts = 100 * (1 - np.mean(means[0])), 100 * np.mean(means[1]), 100 * np.mean(means[2])
    return f"{error:.2f} · {ece:.2f} → {ece_ts:.2f} (T {np.mean(temperature):.2f})"


def _temperature(table: Sequence[P.TextTemperature], preset: str) -> str:
    return next((f"{t.temperature:g}" for t in table if t.preset == preset), NO_VALUE)


def ours_lines(groups: Groups) -> list[str]:
    """Our runs of the paper's losses in the CIFAR table's units, beside the temperatures of their text scripts."""
    views = _views(groups)
    present = [p for p in PRESETS if any(p in by_preset for by_preset in views.values())]
    if not present:
        return ["Our runs train none of the paper's losses.", ""]
    rows = [
        [
            f"`{preset}`",
            _temperature(P.NEWSGROUPS_TEMPERATURES, preset),
            _temperature(P.SST_TEMPERATURES, preset),
            *(_ours(by_preset.get(preset, [])) for by_preset in views.values()),
        ]
        for preset in present
    ]
    return [
        "Their temperatures for the text tasks, quoted from the `--temp` of each model's line in "
        f"{P.NEWSGROUPS_SOURCE.cite()} (20 Newsgroups) and {P.SST_SOURCE.cite()} (SST Binary), beside our runs "
        "in the CIFAR table's units (mean over seeds, custom implementation): test error % · ECE % → ECE % after "
        "temperature scaling (mean fitted T). Their scripts also scale losses we do not train: "
        + "; ".join(
            f"{t.model} T {t.temperature:g}"
            for t in (*P.NEWSGROUPS_TEMPERATURES, *P.SST_TEMPERATURES)
            if t.preset is None
        )
        + " (20 Newsgroups first, then SST).",
        "",
        *markdown_table(["loss", "their T, 20 Newsgroups", "their T, SST", *(f"ours: {v}" for v in views)], rows),
        "",
    ]


def paper_lines(settings: Sequence[tuple[str, str]], groups: Groups) -> list[str]:
    """The section: their CIFAR-10 table, their text temperatures beside our numbers, our settings and theirs."""
    rows = [(name, ours, P.THEIR_SETTINGS.get(name, "not read here")) for name, ours in settings]
    rows += [(name, NO_VALUE, theirs) for name, theirs in P.THEIR_SETTINGS.items() if name not in dict(settings)]
    return [
        HEADING,
        "",
        *cifar_lines(),
        *ours_lines(groups),
        "### Our settings and theirs",
        "",
        "Where the settings differ, our numbers test the direction of the paper's claims in our regime; they do "
        "not reproduce its values.",
        "",
        *markdown_table(["setting", "ours (from the runs' config)", "Mukhoti et al. 2020 (their repository)"], rows),
        "",
    ]
