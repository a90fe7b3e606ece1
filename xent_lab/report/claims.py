"""Against the paper: the claims of Mukhoti et al. 2020 ("Calibrating Deep Neural Networks using Focal Loss",
NeurIPS 2020, arXiv 2002.09437v2), answered by the study's declared questions.

`study.claims: focal_calibration` (in the runs' params) adds the section to REPORT.md; null leaves it out. A claim
set (`CLAIM_SETS`) names the presets it compares, by `Row.values()["loss"]`: the CE baseline and the focal rows.
For each dataset and evaluation view (`trainer.keep`: best-validation-accuracy checkpoint, last epoch; one view when
the runs do not log it), each claim shows:

- its verdict: that of the declared question (`study.questions`) whose id starts with the claim's name (C1-imdb
  answers C1 on imdb) and whose row is in this dataset and view, by `questions.verdict`, the rule and the numbers
  of the Findings; "exploratory" where no question was declared for it;
- its tests, exploratory: per focal row, d_s per seed (runs matched by seed) with the two-level interval
  (`stats.two_level`) and the seeds' t interval, no verdict.

C1 CE over-confident (confidence - accuracy > 0 and log T > 0), C2 focal ECE below CE's before scaling, C3 focal ECE
after temperature scaling not above CE's after scaling (compared directly; the declared question states its
non-inferiority margin), C4 |log T| of focal below CE's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mlflow.tracking import MlflowClient

from xent_lab.questions import ABS_LOG_TEMPERATURE, LOG_TEMPERATURE
from xent_lab.report import overfit, paper
from xent_lab.report.findings import Row, finished_by_seed, normal_value, rows_of
from xent_lab.report.load import CUSTOM, KEEP_KEY, Groups, Job, ReportError
from xent_lab.report.markdown import NO_VALUE, markdown_table
from xent_lab.report.narrative import direction, p_text, signed, span
from xent_lab.report.paired import Measured, Paired, resampled_name
from xent_lab.report.questions import Answer
from xent_lab.report.stats import TwoLevel, finished_values, paired_test
from xent_lab.tracking import tags

KEY = "study.claims"
HEADING = "## Against the paper: Mukhoti et al. 2020"
PAPER = (
    'Mukhoti, Kulharia, Sanyal, Golodetz, Torr and Dokania, "Calibrating Deep Neural Networks using Focal Loss", '
    "NeurIPS 2020 (arXiv 2002.09437v2)"
)
VIEWS = {tags.KEEP_BEST: "best-validation-accuracy checkpoint", tags.KEEP_LAST: "last epoch"}  # trainer.keep
EXPLORATORY = "exploratory"


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
    "C3": "after temperature scaling, focal loss has an ECE no higher than CE's",
    "C4": "focal loss needs a temperature closer to 1",
}
# The metric of each claim's tests: d_s = focal - CE (C1: CE's own value).
CLAIM_METRICS = {
    "C1": (tags.test_metric("overconfidence"), LOG_TEMPERATURE),
    "C2": (tags.TEST_ECE,),
    "C3": (tags.TEST_ECE_TS,),
    "C4": (ABS_LOG_TEMPERATURE,),
}


class Test(NamedTuple):
    """One exploratory test of a claim: d_s over seeds, or why it was not computed."""

    label: str
    metric: str
    measured: Measured | None
    reason: str = ""

    @property
    def primary(self) -> TwoLevel | None:
        return None if self.measured is None else self.measured.primary


class Verdict(NamedTuple):
    claim: str  # C1..C4
    answer: Answer | None  # the declared question that answers it here; None: exploratory
    tests: tuple[Test, ...]
    note: str  # evidence beside the tests, e.g. how many CE runs over-fitted

    @property
    def word(self) -> str:
        return EXPLORATORY if self.answer is None else self.answer.verdict


class View(NamedTuple):
    dataset: str
    view: str  # the trainer.keep value; "null" when the runs do not log it
    verdicts: tuple[Verdict, ...]


class Claims(NamedTuple):
    name: str
    views: tuple[View, ...]
    settings: tuple[tuple[str, str], ...]  # (setting, our values)


def claim_set(jobs: Sequence[Job]) -> str | None:
    """`study.claims` as the runs logged it (this launch's runs first); None when null or absent."""
    logged = (job.params.get(KEY) for job in sorted(jobs, key=lambda j: j.reused))
    value = normal_value(next((v for v in logged if v is not None), "null"))
    if value == "null":
        return None
    if value not in CLAIM_SETS:
        raise ReportError(f"invalid {KEY}={value!r} in the runs' params: expected null or one of {sorted(CLAIM_SETS)}")
    return value


def _pick(rows: Sequence[Row], preset: str) -> Row | None:
    """The row of a preset (`loss` value), custom implementation first."""
    matches = [row for row in rows if row.values().get("loss") == normal_value(preset)]
    return min(matches, key=lambda row: (row.impl != CUSTOM, row.label), default=None)


def _answer_for(claim: str, dataset: str, view: str, answers: Sequence[Answer]) -> Answer | None:
    """The declared question that answers `claim` in this dataset and view (its id starts with the claim's name)."""
    for answer in answers:
        where = answer.question.where
        if answer.row is not None:
            place = (answer.row.dataset, answer.row.values().get(KEEP_KEY, "null"))
        else:
            place = (where.get("dataset"), normal_value(where.get(KEEP_KEY, "null")))
        if answer.question.id.startswith(claim) and place == (dataset, view):
            return answer
    return None


def _overfit_note(client: MlflowClient, ce: Row) -> str:
    readings = [o for job in ce.jobs if job.finished and (o := overfit.job_overfit(client, job)) is not None]
    fitted = f"{sum(o.overfitted for o in readings)}/{len(readings)}" if readings else "not logged"
    return f"CE runs over-fitted: {fitted} ({overfit.RULE})"


def _tests(claim: str, focal: Mapping[tuple[str, str], Row | None], ce: Row, paired: Paired) -> tuple[Test, ...]:
    ce_jobs = finished_by_seed(ce)
    if claim == "C1":
        return tuple(
            Test(f"CE `{metric}`", metric, paired.measure(ce_jobs, None, metric), "not logged")
            for metric in CLAIM_METRICS[claim]
        )
    (metric,) = CLAIM_METRICS[claim]
    return tuple(
        Test(f"{label} (`loss={preset}`)", metric, None, "not in this launch")
        if row is None
        else Test(
            f"{label} (`loss={preset}`)", metric, paired.measure(finished_by_seed(row), ce_jobs, metric), "no value"
        )
        for (preset, label), row in focal.items()
    )


def _best_note(chosen: ClaimSet, focal: Mapping[tuple[str, str], Row | None]) -> str:
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


def _view(dataset: str, view: str, rows: Sequence[Row], chosen: ClaimSet, context: tuple) -> View:
    client, paired, answers = context
    ce = _pick(rows, chosen.ce)
    if ce is None:
        missing = (Test("CE", "", None, f"no `loss={chosen.ce}` row"),)
        return View(dataset, view, tuple(Verdict(c, None, missing, "") for c in CLAIMS))
    focal = {(preset, label): _pick(rows, preset) for preset, label in chosen.focal.items()}
    notes = {"C1": _overfit_note(client, ce), "C2": _best_note(chosen, focal)}
    return View(
        dataset,
        view,
        tuple(
            Verdict(c, _answer_for(c, dataset, view, answers), _tests(c, focal, ce, paired), notes.get(c, ""))
            for c in CLAIMS
        ),
    )


def compute_claims(client: MlflowClient, groups: Groups, answers: Sequence[Answer] = ()) -> Claims | None:
    """The claims per dataset and view for the runs' `study.claims`, with the verdicts of the declared questions
    `answers`; None when it is null."""
    rows = rows_of(groups)
    jobs = [job for dataset_rows in rows.values() for row in dataset_rows for job in row.jobs]
    name = claim_set(jobs)
    if name is None:
        return None
    views = []
    metrics = [n for ms in CLAIM_METRICS.values() for m in ms if (n := resampled_name(m)) is not None]
    with tempfile.TemporaryDirectory(prefix="xent-claims-") as tmp:
        context = (client, Paired(client, Path(tmp), metrics), answers)
        for dataset, dataset_rows in rows.items():
            by_view: dict[str, list[Row]] = {}
            for row in dataset_rows:
                by_view.setdefault(row.values().get(KEEP_KEY, "null"), []).append(row)
            views += [_view(dataset, v, by_view[v], CLAIM_SETS[name], context) for v in sorted(by_view)]
    labels = [_view_label(v) for v in sorted({v.view for v in views})]
    return Claims(name, tuple(views), paper.our_settings(jobs, labels))


# --------------------------------------------------------------------------- REPORT.md


def _view_label(view: str) -> str:
    if view == "null":
        return "one evaluation per run (no `trainer.keep` logged)"
    return VIEWS.get(view, f"`{KEEP_KEY}={view}`")


def _answered(verdict: Verdict) -> str:
    a = verdict.answer
    if a is None:
        return "no declared question: the tests are exploratory"
    return f"{a.question.id}, p_Holm {p_text(a.p_holm)}" + (f" ({a.reason})" if a.reason else "")


def _view_lines(view: View) -> list[str]:
    verdicts, tests = [], []
    for v in view.verdicts:
        verdicts.append([v.claim, CLAIMS[v.claim], f"**{v.word}**", _answered(v), v.note or NO_VALUE])
        for t in v.tests:
            p, m = t.primary, t.measured
            seeds = NO_VALUE if m is None else paired_test(list(m.observed)) if len(m.observed) else None
            tests.append(
                [
                    v.claim,
                    t.label,
                    NO_VALUE if p is None else p.n,
                    NO_VALUE if p is None else signed(p.mean),
                    t.reason if p is None else span(p.low, p.high),
                    NO_VALUE if p is None else direction(p.low, p.high),
                    NO_VALUE if seeds in (None, NO_VALUE) else span(seeds.low, seeds.high),
                ]
            )
    header = ["claim", "test", "seeds", "mean", "95% interval (seeds + test)", "reads", "95% t interval (seeds)"]
    return [
        f"### {view.dataset}: {_view_label(view.view)}",
        "",
        *markdown_table(["claim", "statement", "verdict", "answered by", "evidence"], verdicts),
        "",
        *markdown_table(header, tests),
        "",
    ]


RULES = [
    "**Verdict:** that of the declared question that answers the claim in this dataset and evaluation (its id "
    "starts with the claim's name), by the Findings' rule on the same numbers: **supported**, **contradicted**, "
    "**undecided** or **not tested**; **exploratory** where no question was declared (the other evaluation, the "
    "other focal γ values). **Tests:** exploratory, per-seed values d_s, runs matched by seed, with the two-level "
    'interval (seeds + test set) and the seeds\' Student-t interval; "reads" names a direction only where the '
    "interval excludes 0.",
    "",
    "- **C1:** over the CE runs, d_s = mean test confidence − test accuracy (`test/overconfidence`) and log T "
    "(`test/log_temperature`), each claimed > 0. The evidence column says how many CE runs over-fitted.",
    "- **C2:** per focal row present, d_s = ECE_focal − ECE_CE (`test/ece`), claimed < 0 (the declared question "
    "may use the debiased ECE); the evidence column says whether FLSD-53 has the lowest mean ECE of the focal rows.",
    "- **C3:** per focal row, d_s = ECE_focal − ECE_CE after temperature scaling (`test/ece_ts`), claimed not "
    "above the declared question's margin: the ECEs after scaling compared directly, not a change of gaps.",
    "- **C4:** per focal row, d_s = |log T_focal| − |log T_CE|, claimed < 0.",
    "",
]


def claims_section(claims: Claims) -> list[str]:
    """The whole section: rules, one verdict table and one test table per dataset and view."""
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
    return lines
