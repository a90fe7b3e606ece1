"""A study's declared questions (`study.questions`): what it was run to answer, fixed before its numbers exist.

Each question is one comparison on one metric with a predicted direction, in one evaluation:

    - {id: Q1, row: {loss: focal_flsd53}, metric: test/debiased_ece, direction: lower,
       where: {dataset: mnist, trainer.keep: best_val_accuracy}}

- `row`: {config key: value} of the row asked about (as `study.baseline` names a row);
- `baseline`: the row it is compared with, default `study.baseline`; or `against: NUMBER` instead, for a property
  of the row alone (its value against that number, e.g. over-confidence > 0);
- `metric`: a logged test metric (`test/<m>`, `test/<m>_ts` after temperature scaling, for the metrics of
  `xent_lab.calibration.METRICS`), `test/temperature`, or `test/log_temperature` and `test/abs_log_temperature`
  (log T and |log T|); a list of them asks that every one moves the predicted way (an intersection-union test);
- `direction`: lower or higher (than the baseline, or than `against`); not_higher or not_lower with `margin`:
  non-inferiority, the difference below +margin (or above -margin);
- `where`: {key: value} of the stratum: the dataset and any config key, `trainer.keep` for a run's two evaluations;
- `label`: the question in words (optional).

The report (`xent_lab.report.questions`) answers them as one family (Holm over the declared questions only);
everything else it shows is exploratory. Validated when the config is composed (`validate`); `study.*` is not
part of a run's config hash, so declaring questions never changes which runs a study reuses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from xent_lab.calibration import METRICS

KEY = "study.questions"
MAX_QUESTIONS = 8
DIRECTIONS = ("lower", "higher", "not_higher", "not_lower")
NON_INFERIORITY = ("not_higher", "not_lower")
FIELDS = ("id", "row", "metric", "direction", "where", "baseline", "against", "margin", "label")
REQUIRED = ("id", "row", "metric", "direction")
# Derived from test/temperature (fitted on validation: no test-set noise).
LOG_TEMPERATURE, ABS_LOG_TEMPERATURE, TEMPERATURE = (
    "test/log_temperature",
    "test/abs_log_temperature",
    "test/temperature",
)
METRIC_NAMES = (
    *(f"test/{m}" for m in METRICS),
    *(f"test/{m}_ts" for m in METRICS),
    TEMPERATURE,
    LOG_TEMPERATURE,
    ABS_LOG_TEMPERATURE,
)


class Question(NamedTuple):
    id: str
    row: dict[str, str]
    metrics: tuple[str, ...]
    direction: str
    where: dict[str, str]
    baseline: dict[str, str] | None  # None: the study's baseline (or `against`)
    against: float | None  # a property of the row alone: its value against this number
    margin: float
    label: str

    @property
    def threshold(self) -> float:
        """The value the difference (or the row's value) is tested against."""
        base = 0.0 if self.against is None else self.against
        return base + {"not_higher": self.margin, "not_lower": -self.margin}.get(self.direction, 0.0)

    @property
    def predicts_lower(self) -> bool:
        return self.direction in ("lower", "not_higher")


def _text(value: Any) -> str:
    """Config values as the runs' params spell them: true, null, 0.1."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _mapping(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{where}: expected a mapping {{config key: value}}, got {value!r}")
    return {k: _text(v) for k, v in value.items()}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def parse_question(spec: Any, index: int) -> Question:
    """One question from its config mapping; ValueError with a one-line message naming the field."""
    at = f"{KEY}[{index}]"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{at}: expected a mapping with keys {', '.join(REQUIRED)}, got {spec!r}")
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"{at}: unknown key(s) {', '.join(map(str, unknown))}; expected keys among {', '.join(FIELDS)}"
        )
    missing = [key for key in REQUIRED if spec.get(key) is None]
    if missing:
        raise ValueError(f"{at}: missing {', '.join(missing)}")
    qid = spec["id"]
    if not isinstance(qid, str) or not qid.strip():
        raise ValueError(f"{at}.id: expected a short name, e.g. Q1, got {qid!r}")
    metrics = spec["metric"] if isinstance(spec["metric"], Sequence) and not isinstance(spec["metric"], str) else None
    metrics = tuple(metrics) if metrics is not None else (spec["metric"],)
    for metric in metrics:
        if metric not in METRIC_NAMES:
            raise ValueError(
                f"{at}.metric: unknown metric {metric!r}; expected test/<m> or test/<m>_ts for m among "
                f"{', '.join(METRICS)}, or {TEMPERATURE}, {LOG_TEMPERATURE}, {ABS_LOG_TEMPERATURE}"
            )
    direction = spec["direction"]
    if direction not in DIRECTIONS:
        raise ValueError(f"{at}.direction: expected one of {', '.join(DIRECTIONS)}, got {direction!r}")
    margin = _number(spec.get("margin", 0), f"{at}.margin")
    if (direction in NON_INFERIORITY) != (margin > 0):
        raise ValueError(f"{at}.margin: a margin > 0 goes with not_higher or not_lower, and only with them")
    against = spec.get("against")
    if against is not None and spec.get("baseline") is not None:
        raise ValueError(f"{at}: set baseline or against, not both")
    return Question(
        id=qid,
        row=_mapping(spec["row"], f"{at}.row"),
        metrics=metrics,
        direction=direction,
        where=_mapping(spec.get("where") or {}, f"{at}.where"),
        baseline=None if spec.get("baseline") is None else _mapping(spec["baseline"], f"{at}.baseline"),
        against=None if against is None else _number(against, f"{at}.against"),
        margin=margin,
        label=str(spec.get("label") or ""),
    )


def parse_questions(specs: Any) -> tuple[Question, ...]:
    """The declared questions of a study (None or [] for none); ValueError with a one-line message."""
    if specs is None:
        return ()
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise ValueError(f"{KEY}: expected a list of questions, got {specs!r}")
    if len(specs) > MAX_QUESTIONS:
        raise ValueError(
            f"{KEY}: {len(specs)} questions, at most {MAX_QUESTIONS}: each one costs power (Holm runs over them all)"
        )
    questions = tuple(parse_question(spec, i) for i, spec in enumerate(specs))
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{KEY}: question ids must differ, got {', '.join(ids)}")
    return questions
