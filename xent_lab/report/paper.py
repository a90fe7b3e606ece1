"""Against the paper, the part that is not a verdict: what its own numbers would be (not quoted: not readable
here) and our runs' settings beside the paper's, one value per dataset where they differ."""

from __future__ import annotations

from collections.abc import Sequence

from xent_lab.report.load import Job
from xent_lab.report.markdown import NO_VALUE, markdown_table

SETTINGS = (
    ("training examples", "dataset.limit.train"),
    ("model", "model.name"),
    ("epochs", "trainer.epochs"),
    ("optimiser", "trainer.optimizer._target_"),
    ("learning rate", "trainer.optimizer.learning_rate"),
    ("ECE bins", "calibration.n_bins"),
)


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
    ours.append(("seeds", ", ".join(sorted({job.seed for job in finished})) or NO_VALUE))
    ours.append(("checkpoint evaluated", "; ".join(views)))
    return tuple(ours)


PAPER_TABLE = [
    "### The paper's own numbers",
    "",
    "Not quoted: the paper's text could not be read on this offline machine (the stored copies of arXiv "
    "2002.09437 are searchable only by their opening passage), so no number of it appears here. The numbers to put "
    "beside ours are the 20 Newsgroups (global-pooling CNN) and SST Binary (Tree-LSTM) rows of its tables of test "
    "error and of ECE before and after temperature scaling with the optimal T (Tables 1 and 2; "
    "read them in the paper itself before quoting any).",
    "",
]
THEIRS = {
    "data": "20 Newsgroups; SST Binary (text tasks)",
    "model": "global-pooling CNN; Tree-LSTM",
    "checkpoint evaluated": "best validation accuracy for the text models",
}


def paper_lines(settings: Sequence[tuple[str, str]]) -> list[str]:
    """The paper's numbers (or why they are not quoted), then our settings and theirs."""
    rows = [(name, ours, THEIRS.get(name, "not read here")) for name, ours in settings]
    return [
        *PAPER_TABLE,
        "### Our settings and theirs",
        "",
        *markdown_table(["setting", "ours (from the runs' config)", "Mukhoti et al. 2020"], rows),
        "",
    ]
