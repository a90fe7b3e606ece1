"""Against the paper: the claims of Mukhoti et al. 2020 ("Calibrating Deep Neural Networks using Focal Loss",
NeurIPS 2020, arXiv 2002.09437v2), each with a verdict computed from the runs' numbers.

`study.claims: focal_calibration` (in the runs' params) adds the section to REPORT.md; null leaves it out. A claim
set (`CLAIM_SETS`) names the presets it compares, by `Row.values()["loss"]`: the CE baseline and the focal rows.
For each dataset and evaluation view (`trainer.keep`: best-validation-accuracy checkpoint, last epoch; one view when
the runs do not log it), each claim is tested on per-seed values d_s (runs matched by seed) with
`stats.paired_test`, and its verdict follows fixed rules (`RULES`, printed in the section): C1 CE over-confident
(confidence - accuracy > 0 and T > 1), C2 focal ECE below CE's, C3 the ECE gap to CE smaller after temperature
scaling, C4 |log T| of focal below CE's.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mlflow.tracking import MlflowClient

from xent_lab import heads
from xent_lab.calibration.binning import top_label
from xent_lab.report import overfit, paper
from xent_lab.report.findings import Row, finished_by_seed, normal_value, rows_of
from xent_lab.report.load import CUSTOM, KEEP_KEY, Groups, Job, ReportError, job_predictions
from xent_lab.report.markdown import NO_VALUE, markdown_table
from xent_lab.report.narrative import signed, span
from xent_lab.report.stats import PairedTest, finished_values, paired_test
from xent_lab.tracking import tags

KEY = "study.claims"
HEADING = "## Against the paper: Mukhoti et al. 2020"
PAPER = (
    'Mukhoti, Kulharia, Sanyal, Golodetz, Torr and Dokania, "Calibrating Deep Neural Networks using Focal Loss", '
    "NeurIPS 2020 (arXiv 2002.09437v2)"
)
VIEWS = {tags.KEEP_BEST: "best-validation-accuracy checkpoint", tags.KEEP_LAST: "last epoch"}  # trainer.keep
FOR, AGAINST, INCONCLUSIVE, NOT_COMPUTED = "for", "against", "inconclusive", "not computed"
HOLDS, DOES_NOT_HOLD, MIXED, NOT_SHOWN, NOT_TESTED = "holds", "does not hold", "mixed", "not shown", "not tested"


class ClaimSet(NamedTuple):
    """The presets a claim set compares: the CE baseline, the focal rows (preset -> label) and the paper's pick."""

    ce: str
    focal: Mapping[str, str]
    best: str


CLAIM_SETS = {
    "focal_calibration": ClaimSet(
        ce="cce",
        focal={
            "focal_gamma1": "focal γ=1",
            "focal": "focal γ=2",
            "focal_gamma3": "focal γ=3",
            "focal_flsd53": "FLSD-53",
        },
        best="focal_flsd53",
    )
}
CLAIMS = {
    "C1": "CE is over-confident after over-fitting",
    "C2": "focal loss, FLSD-53 above all, has a lower ECE than CE before temperature scaling",
    "C3": "temperature scaling narrows the gap between focal loss and CE",
    "C4": "focal loss needs a temperature closer to 1",
}


class Test(NamedTuple):
    """One test of a claim: per-seed values d_s, the side of 0 the claim predicts, or why it was not computed."""

    label: str
    result: PairedTest | None
    claimed: int  # +1: d > 0 claimed, -1: d < 0 claimed
    reason: str = ""  # why not computed
    offset: float = 0.0  # shown values are d + offset (T - 1 is shown as T)

    @property
    def outcome(self) -> str:
        return NOT_COMPUTED if self.result is None else outcome(self.result, self.claimed)


class Verdict(NamedTuple):
    claim: str  # C1..C4
    tests: tuple[Test, ...]
    note: str  # evidence beside the tests, e.g. how many CE runs over-fitted
    needs_all: bool = False  # not tested unless every test was computed

    @property
    def word(self) -> str:
        outcomes = [t.outcome for t in self.tests]
        return NOT_TESTED if self.needs_all and NOT_COMPUTED in outcomes else verdict_word(outcomes)


class View(NamedTuple):
    dataset: str
    view: str  # the trainer.keep value; "null" when the runs do not log it
    verdicts: tuple[Verdict, ...]


class Claims(NamedTuple):
    name: str
    views: tuple[View, ...]
    settings: tuple[tuple[str, str], ...]  # (setting, our values)


def outcome(result: PairedTest, claimed: int) -> str:
    """for / against / inconclusive: where the 95% interval lies against 0; not computed without an interval."""
    if math.isnan(result.low):
        return NOT_COMPUTED
    if result.low > 0 or result.high < 0:
        return FOR if (result.low > 0) == (claimed > 0) else AGAINST
    return INCONCLUSIVE


def verdict_word(outcomes: Sequence[str]) -> str:
    """Over the computed tests: holds when every one is for; does not hold when some are against and none is for;
    not shown when all are inconclusive (too few seeds or too small an effect to tell); mixed otherwise; not
    tested when none was computed."""
    computed = [o for o in outcomes if o != NOT_COMPUTED]
    if not computed:
        return NOT_TESTED
    supporting, opposing = sum(o == FOR for o in computed), sum(o == AGAINST for o in computed)
    if supporting == len(computed):
        return HOLDS
    if supporting == 0:
        return DOES_NOT_HOLD if opposing else NOT_SHOWN
    return MIXED


def overconfidence(logits: np.ndarray, labels: np.ndarray, head: str) -> float:
    """Mean top-label confidence minus accuracy (> 0: over-confident), as in Guo et al. 2017's reliability gap."""
    confidence, correct = top_label(heads.probabilities(logits, head), labels)
    return float(confidence.mean() - correct.mean())


def claim_set(jobs: Sequence[Job]) -> str | None:
    """`study.claims` as the runs logged it (this launch's runs first); None when null or absent."""
    logged = (job.params.get(KEY) for job in sorted(jobs, key=lambda j: j.reused))
    value = normal_value(next((v for v in logged if v is not None), "null"))
    if value == "null":
        return None
    if value not in CLAIM_SETS:
        raise ReportError(f"invalid {KEY}={value!r} in the runs' params: expected null or one of {sorted(CLAIM_SETS)}")
    return value


def _test(label: str, values: Sequence[float], claimed: int, missing: str, offset: float = 0.0) -> Test:
    if len(values) < 2:
        reason = missing if not values else "1 seed: no interval"
        return Test(label, None, claimed, reason, offset)
    return Test(label, paired_test(values), claimed, offset=offset)


def _pick(rows: Sequence[Row], preset: str) -> Row | None:
    """The row of a preset (`loss` value), custom implementation first."""
    matches = [row for row in rows if row.values().get("loss") == normal_value(preset)]
    return min(matches, key=lambda row: (row.impl != CUSTOM, row.label), default=None)


Paired = Callable[[Job, Job], float | None]  # (focal job, CE job) of one seed -> d_s


def _paired(row: Row, base: Row, value: Paired) -> list[float]:
    mine, theirs = finished_by_seed(row), finished_by_seed(base)
    return [d for seed in sorted(mine.keys() & theirs.keys()) if (d := value(mine[seed], theirs[seed])) is not None]


def _metrics(*pairs: tuple[Job, str]) -> list[float] | None:
    values = [job.metric(name) for job, name in pairs]
    return None if any(v is None for v in values) else values


def _ece_difference(f: Job, ce: Job) -> float | None:
    m = _metrics((f, tags.TEST_ECE), (ce, tags.TEST_ECE))
    return None if m is None else m[0] - m[1]


def _gap_change(f: Job, ce: Job) -> float | None:
    m = _metrics((f, tags.TEST_ECE), (ce, tags.TEST_ECE), (f, tags.TEST_ECE_TS), (ce, tags.TEST_ECE_TS))
    return None if m is None else abs(m[2] - m[3]) - abs(m[0] - m[1])


def _log_t_difference(f: Job, ce: Job) -> float | None:
    m = _metrics((f, tags.TEST_TEMPERATURE), (ce, tags.TEST_TEMPERATURE))
    return None if m is None or min(m) <= 0 else abs(math.log(m[0])) - abs(math.log(m[1]))


class _Reader:
    """The client-side readings of the CE runs: their test predictions and their over-fit histories."""

    def __init__(self, client: MlflowClient, folder: Path) -> None:
        self.client, self.folder = client, folder

    def c1(self, ce: Row) -> Verdict:
        jobs = [job for job in ce.jobs if job.finished]
        gaps = [overconfidence(*p) for job in jobs if (p := job_predictions(self.client, job, self.folder)) is not None]
        temps = [t - 1 for job in jobs if (t := job.metric(tags.TEST_TEMPERATURE)) is not None]
        readings = [o for job in jobs if (o := overfit.job_overfit(self.client, job)) is not None]
        fitted = f"{sum(o.overfitted for o in readings)}/{len(readings)}" if readings else "not logged"
        tests = (
            _test("confidence − accuracy", gaps, +1, "no test predictions logged"),
            _test("fitted T", temps, +1, f"no {tags.TEST_TEMPERATURE} logged", offset=1.0),
        )
        note = f"CE runs over-fitted: {fitted} (train accuracy ≥ 0.99, val NLL past its minimum)"
        return Verdict("C1", tests, note, needs_all=True)


Focal = Mapping[tuple[str, str], Row | None]  # (preset, label) -> its row in the view


def _focal_tests(focal: Focal, ce: Row, value: Paired, missing: str) -> tuple[Test, ...]:
    return tuple(
        Test(f"{label} (`loss={preset}`)", None, -1, "not in this launch")
        if row is None
        else _test(f"{label} (`loss={preset}`)", _paired(row, ce, value), -1, missing)
        for (preset, label), row in focal.items()
    )


def _best_note(chosen: ClaimSet, focal: Focal) -> str:
    """Whether the paper's pick has the lowest mean test ECE of the focal rows present."""
    means = {
        label: float(np.mean(values))
        for (preset, label), row in focal.items()
        if row is not None and (values := finished_values(row.jobs, tags.TEST_ECE))
    }
    best = chosen.focal[chosen.best]
    if best not in means:
        return f"{best}: no ECE logged, not compared"
    lowest = min(means, key=means.get)
    shown = ", ".join(f"{label} {mean:.4f}" for label, mean in means.items())
    verb = "has" if lowest == best else f"does not have ({lowest} has)"
    return f"{best} {verb} the lowest mean ECE of the focal rows: {shown}"


def _view(dataset: str, view: str, rows: Sequence[Row], chosen: ClaimSet, reader: _Reader) -> View:
    ce = _pick(rows, chosen.ce)
    if ce is None:
        reason = f"no `loss={chosen.ce}` row"
        return View(dataset, view, tuple(Verdict(c, (Test("CE", None, 1, reason),), "") for c in CLAIMS))
    focal = {(preset, label): _pick(rows, preset) for preset, label in chosen.focal.items()}
    return View(
        dataset,
        view,
        (
            reader.c1(ce),
            Verdict("C2", _focal_tests(focal, ce, _ece_difference, "no ECE logged"), _best_note(chosen, focal)),
            Verdict("C3", _focal_tests(focal, ce, _gap_change, "no ECE before and after TS"), ""),
            Verdict("C4", _focal_tests(focal, ce, _log_t_difference, "no positive T logged"), ""),
        ),
    )


def compute_claims(client: MlflowClient, groups: Groups) -> Claims | None:
    """The verdicts per dataset and view for the runs' `study.claims`; None when it is null."""
    rows = rows_of(groups)
    jobs = [job for dataset_rows in rows.values() for row in dataset_rows for job in row.jobs]
    name = claim_set(jobs)
    if name is None:
        return None
    views = []
    with tempfile.TemporaryDirectory(prefix="xent-claims-") as tmp:
        reader = _Reader(client, Path(tmp))
        for dataset, dataset_rows in rows.items():
            by_view: dict[str, list[Row]] = {}
            for row in dataset_rows:
                by_view.setdefault(row.values().get(KEEP_KEY, "null"), []).append(row)
            views += [_view(dataset, v, by_view[v], CLAIM_SETS[name], reader) for v in sorted(by_view)]
    labels = [_view_label(v) for v in sorted({v.view for v in views})]
    return Claims(name, tuple(views), paper.our_settings(jobs, labels))


# --------------------------------------------------------------------------- REPORT.md


def _view_label(view: str) -> str:
    if view == "null":
        return "one evaluation per run (no `trainer.keep` logged)"
    return VIEWS.get(view, f"`{KEEP_KEY}={view}`")


def _shown(test: Test) -> tuple[str, str]:
    """Mean and interval as the claim reads them: signed differences, or T itself."""
    r = test.result
    if r is None:
        return NO_VALUE, NO_VALUE
    if not test.offset:
        return signed(r.mean), span(r.low, r.high)
    o = test.offset
    return f"{r.mean + o:.3f}", f"[{r.low + o:.3f}, {r.high + o:.3f}]"


def _why(verdict: Verdict) -> str:
    counts = {o: sum(t.outcome == o for t in verdict.tests) for o in (FOR, AGAINST, INCONCLUSIVE, NOT_COMPUTED)}
    text = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    missing = sorted({t.reason for t in verdict.tests if t.reason})
    return text + (f" ({'; '.join(missing)})" if missing else "")


def _view_lines(view: View) -> list[str]:
    verdicts, tests = [], []
    for v in view.verdicts:
        verdicts.append([v.claim, CLAIMS[v.claim], f"**{v.word}**", _why(v), v.note or NO_VALUE])
        for t in v.tests:
            r = t.result
            tests.append([v.claim, t.label, NO_VALUE if r is None else r.n, *_shown(t), t.outcome])
    return [
        f"### {view.dataset}: {_view_label(view.view)}",
        "",
        *markdown_table(["claim", "statement", "verdict", "tests", "evidence"], verdicts),
        "",
        *markdown_table(["claim", "test", "seeds", "mean", "95% t interval", "outcome"], tests),
        "",
    ]


RULES = [
    "Each test is over per-seed values d_s, runs matched by seed (`stats.paired_test`: mean, 95% Student-t "
    "interval). Outcome: **for** when the interval lies on the side the claim predicts, **against** on the other "
    "side, **inconclusive** when it contains 0, **not computed** with fewer than 2 seeds or a value not logged. "
    "Verdict over the computed tests: **holds** when all are for, **does not hold** when some are against and "
    "none is for, **not shown** when all are inconclusive, **mixed** otherwise, **not tested** when none was "
    "computed.",
    "",
    "- **C1:** over the CE runs, d_s = mean test confidence − test accuracy (from the logged test predictions), "
    "claimed > 0; and the fitted T, claimed > 1; not tested unless both are computed. The evidence column says how "
    "many CE runs over-fitted.",
    "- **C2:** per focal row present, d_s = ECE_focal − ECE_CE (`test/ece`), claimed < 0; the evidence column says "
    "whether FLSD-53 has the lowest mean ECE of the focal rows.",
    "- **C3:** per focal row, d_s = |ECE_focal − ECE_CE| after temperature scaling (`test/ece_ts`) − the same "
    "before (`test/ece`), claimed < 0.",
    "- **C4:** per focal row, d_s = |log T_focal| − |log T_CE|, claimed < 0.",
    "",
]


def claims_section(claims: Claims) -> list[str]:
    """The whole section: rules, one verdict table and one test table per dataset and view, the paper, settings."""
    lines = [
        HEADING,
        "",
        f"The claims of {PAPER}, tested on our runs (`{KEY}: {claims.name}`). Generated from the numbers: a "
        "rerun that changes them changes the verdicts.",
        "",
        *RULES,
    ]
    for view in claims.views:
        lines += _view_lines(view)
    return lines + paper.paper_lines(claims.settings)
