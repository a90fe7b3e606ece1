"""Declared questions: their config, the one verdict rule, the two-level interval (hand-computed cases and its
coverage by simulation), directional wording, the runs that did not learn, the best recalibration method on
validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
from scipy import special, stats

from tests.helpers.e2e import CONF_DIR
from xent_lab import calibration, config
from xent_lab.errors import ConfigError
from xent_lab.questions import KEY, parse_questions
from xent_lab.report import findings as F
from xent_lab.report import questions as Q
from xent_lab.report import tables
from xent_lab.report.learned import did_not_learn
from xent_lab.report.load import Job
from xent_lab.report.narrative import _twins_lines, direction
from xent_lab.report.stats import TwoLevel, paired_test, two_level
from xent_lab.tracking import tags as T

# --------------------------------------------------------------------------- the config


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize(
    "question,message",
    [
        (
            "{id:Q1,row:{loss:cce},metric:test/foo,direction:lower}",
            r"invalid config value study.questions\[0\].metric: unknown metric 'test/foo'; expected test/<m> or",
        ),
        (
            "{id:Q1,row:{loss:cce},metric:test/ece,direction:lower,stratum:{dataset:mnist}}",
            r"invalid config value study.questions\[0\]: unknown key\(s\) stratum; expected keys among id, row,",
        ),
        (
            "{id:Q1,row:{loss:cce},metric:test/ece,direction:down}",
            r"study.questions\[0\].direction: expected one of lower, higher, not_higher, not_lower, got 'down'",
        ),
        (
            "{id:Q1,row:{loss:cce},metric:test/ece,direction:lower,margin:0.01}",
            r"study.questions\[0\].margin: a margin > 0 goes with not_higher or not_lower, and only with them",
        ),
    ],
)
def test_a_bad_question_is_a_one_line_error_at_composition(question, message):
    cfg = _compose(f"study.questions=[{question}]")
    with pytest.raises(ConfigError, match=message) as raised:
        config.validate(cfg)
    assert "\n" not in str(raised.value)


def test_questions_parse_with_their_threshold():
    (q1, q2) = parse_questions(
        [
            {
                "id": "Q1",
                "row": {"loss": "focal", "loss.class_weight": None},
                "metric": "test/ece",
                "direction": "lower",
            },
            {"id": "Q2", "row": {"loss": "focal"}, "metric": "test/ece_ts", "direction": "not_higher", "margin": 0.005},
        ]
    )
    assert q1.row == {"loss": "focal", "loss.class_weight": "null"} and q1.threshold == 0 and q1.predicts_lower
    assert q2.threshold == 0.005 and q2.predicts_lower
    with pytest.raises(ValueError, match="at most 8"):
        parse_questions([{"id": f"Q{i}", "row": {}, "metric": "test/ece", "direction": "lower"} for i in range(9)])
    with pytest.raises(ValueError, match="ids must differ"):
        parse_questions([{"id": "Q", "row": {}, "metric": "test/ece", "direction": "lower"}] * 2)


# --------------------------------------------------------------------------- the verdict rule


def _interval(mean: float, se: float, df: float = 2.0) -> TwoLevel:
    half = stats.t.ppf(0.975, df) * se
    return TwoLevel(3, mean, se, df, mean - half, mean + half, se, 0.0)


def _question(direction: str, margin: float = 0.0, against: float | None = None):
    spec = {"id": "Q", "row": {"loss": "focal"}, "metric": "test/ece", "direction": direction, "margin": margin}
    return parse_questions([spec if against is None else {**spec, "against": against}])[0]


def test_verdict_rule_on_hand_computed_cases():
    # t = 0.2 / 0.05 = 4 with 2 df: p = 1 - t / sqrt(2 + t^2) = 1 - 4 / sqrt(18) = 0.05719.
    p, side = Q.decide([_interval(-0.2, 0.05)], _question("lower"))
    assert p == pytest.approx(1 - 4 / math.sqrt(18)) and side
    assert Q.verdict(p, side) == Q.UNDECIDED  # p_Holm = p when it is the only question: not below 0.05
    assert Q.verdict(0.01, True) == Q.SUPPORTED and Q.verdict(0.01, False) == Q.CONTRADICTED
    assert Q.verdict(math.nan, True) == Q.NOT_TESTED
    # The same numbers, predicted higher: on the other side.
    assert Q.decide([_interval(-0.2, 0.05)], _question("higher")) == (pytest.approx(p), False)
    # Non-inferiority: d = +0.002 is "not higher" than a 0.005 margin; t = 0.003 / 0.0005 = 6.
    p, side = Q.decide([_interval(0.002, 0.0005)], _question("not_higher", margin=0.005))
    assert p == pytest.approx(1 - 6 / math.sqrt(38)) and side
    # Several metrics: all on the predicted side, p is the largest; one on the other side, p is its own.
    both = [_interval(0.3, 0.05), _interval(0.2, 0.05)]
    assert Q.decide(both, _question("higher", against=0)) == (pytest.approx(1 - 4 / math.sqrt(18)), True)
    split = [_interval(0.3, 0.05), _interval(-0.2, 0.05)]
    assert Q.decide(split, _question("higher", against=0)) == (pytest.approx(1 - 4 / math.sqrt(18)), False)
    assert math.isnan(Q.decide([None], _question("lower"))[0])


def test_directional_words_only_where_the_interval_excludes_the_threshold():
    assert direction(-0.1, -0.01) == "lower" and direction(0.01, 0.2) == "higher"
    assert direction(-0.0001, 0.0001) == "interval spans 0"  # a printed Δ of -0.0000 gets no direction
    assert direction(0.001, 0.004, 0.005) == "lower" and direction(math.nan, math.nan) == "no interval"


# --------------------------------------------------------------------------- the two-level interval


def test_two_level_interval_on_hand_computed_cases():
    # d = 1, 2, 3: var 1, seed part 1/3. Resampled seed means 1.9, 2.1, 1.9, 2.1: var 0.04/3. Welch-Satterthwaite:
    # df = 2 (se^2 / (1/3))^2.
    resampled = np.array([[0.9, 1.1, 0.9, 1.1], [1.9, 2.1, 1.9, 2.1], [2.9, 3.1, 2.9, 3.1]])
    found = two_level([1.0, 2.0, 3.0], resampled)
    se2 = 1 / 3 + 0.04 / 3
    df = 2 * (se2 / (1 / 3)) ** 2
    assert (found.se, found.df, found.mean) == pytest.approx((math.sqrt(se2), df, 2.0))
    half = stats.t.ppf(0.975, df) * math.sqrt(se2)
    assert (found.low, found.high) == pytest.approx((2 - half, 2 + half))
    # Without resamples it is the seeds' Student-t interval.
    alone, t = two_level([1.0, 2.0, 3.0]), paired_test([1.0, 2.0, 3.0])
    assert (alone.low, alone.high, alone.p()) == pytest.approx((t.low, t.high, t.p))
    # Seeds that agree exactly: the test set's noise alone, a normal interval (df infinite).
    flat = two_level([0.5, 0.5, 0.5], np.array([[0.4, 0.6]] * 3))
    assert flat.df == math.inf and flat.se == pytest.approx(math.sqrt(0.02))
    assert flat.high - flat.mean == pytest.approx(1.959964 * math.sqrt(0.02), rel=1e-6)
    # A constant nonzero shift with no noise at all is not tested; exact zeros are no difference.
    assert math.isnan(two_level([0.1, 0.1, 0.1]).low) and math.isnan(two_level([0.1, 0.1, 0.1]).p())
    assert two_level([0.0, 0.0]).p() == 1.0 and math.isnan(two_level([0.3]).se)


def _coverage(n: int, sd_seed: float, sd_test: float, sd_pair: float, sims: int = 1000, seed: int = 0):
    """Coverage of 0 by two_level and by the percentile bootstrap that resamples seeds and test samples.

    d_s on a test set of N samples: a seed effect u_s, a per-sample effect e_i shared by every seed (one test set)
    and a seed-by-sample effect g_si; each with mean 0. Resamples of the test samples are shared by the seeds."""
    rng = np.random.default_rng(seed)
    samples, resamples = 100, 200
    weights = rng.multinomial(samples, np.full(samples, 1 / samples), size=resamples).T / samples  # (N, B)
    x = (
        rng.normal(0, sd_seed, (sims, n, 1))
        + rng.normal(0, sd_test, (sims, 1, samples))
        + rng.normal(0, sd_pair, (sims, n, samples))
    )
    observed, resampled = x.mean(axis=2), x @ weights  # (sims, n), (sims, n, B)
    ours = np.mean([(i := two_level(o, r)).low <= 0 <= i.high for o, r in zip(observed, resampled, strict=True)])
    picks = rng.multinomial(n, np.full(n, 1 / n), size=(sims, resamples)) / n  # (sims, B, n)
    values = np.einsum("sbn,snb->sb", picks, resampled)
    low, high = np.quantile(values, [0.025, 0.975], axis=1)
    return float(ours), float(np.mean((low <= 0) & (high >= 0)))


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("noise", [(1.0, 0.0, 0.0), (1.0, 3.0, 1.0), (0.2, 3.0, 0.5), (1.0, 1.0, 3.0)])
def test_two_level_interval_covers_at_least_nominal_by_simulation(n, noise):
    ours, percentile = _coverage(n, *noise)
    assert 0.92 <= ours <= 0.99, (ours, percentile)
    if noise[1:] == (0.0, 0.0):  # the seeds alone: resampling 3 or 5 seeds is far too narrow
        assert percentile < (0.78 if n == 3 else 0.86), percentile


def test_paired_resamples_are_the_paired_bootstrap_and_a_single_model_alone():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    a, b = (special.softmax(3 * np.eye(3)[labels] + rng.normal(0, 2, (300, 3)), axis=1) for _ in range(2))
    found = calibration.paired_resamples(a, b, labels, ("ece", "nll"), n_resamples=50, seed=1)
    boot = calibration.paired_bootstrap(a, b, labels, ("ece", "nll"), n_resamples=50, seed=1)
    for name in ("ece", "nll"):
        observed, values = found[name]
        assert observed == pytest.approx(boot[name].difference)
        assert (np.quantile(values, 0.025), np.quantile(values, 0.975)) == pytest.approx(boot[name][1:])
    alone = calibration.paired_resamples(None, b, labels, ("ece",), n_resamples=50, seed=1)["ece"]
    assert alone[0] == pytest.approx(calibration.ece(b, labels)) and alone[1].shape == (50,)


# --------------------------------------------------------------------------- runs that did not learn


def _job(run_id: str, seed: int, metrics: dict[str, float], classes: int = 2) -> Job:
    info = RunInfo(run_id, "0", "", "FINISHED", 0, 1, "active", run_name=run_id)
    metrics = {**metrics, **{f"{T.TEST_RECALL_PREFIX}{k}": 0.5 for k in range(classes)}}
    run_tags = [RunTag(T.IMPL, "custom"), RunTag(T.SEED, str(seed)), RunTag(T.LOSS, "mmce")]
    return Job(Run(info, RunData([Metric(k, v, 0, 0) for k, v in metrics.items()], [], run_tags)), reused=False)


def test_a_run_at_chance_or_at_the_uniform_nll_did_not_learn_and_is_kept_out():
    # Binary: chance 0.5, ln 2 = 0.6931, 0.99 ln 2 = 0.6862.
    at_chance = _job("a", 0, {"test/accuracy": 0.505, "val/nll": 0.5})
    uniform = _job("b", 1, {"test/accuracy": 0.8, "val/nll": 0.692})
    learned = _job("c", 2, {"test/accuracy": 0.8, "val/nll": 0.685})
    assert did_not_learn(at_chance) == "test accuracy 0.5050, chance 1/2 = 0.5000"
    assert did_not_learn(uniform).startswith("validation NLL 0.6920 ≥ 0.99 ln 2 = 0.6862")
    assert did_not_learn(learned) is None
    # Over-fitted past ln 2 by its last epoch, but the weights it kept had learned: it learned.
    assert did_not_learn(_job("f", 0, {"test/accuracy": 0.8, "val/nll": 0.9, T.KEPT_VAL_NLL: 0.4})) is None
    assert did_not_learn(_job("d", 0, {"test/accuracy": 0.105}, classes=10)) is not None  # 1/10 + 0.01
    assert did_not_learn(_job("e", 0, {"test/accuracy": 0.2}, classes=10)) is None
    row = F.Row("imdb", "loss=mmce", "custom", (at_chance, uniform, learned))
    assert list(F.finished_by_seed(row)) == ["2"]


# --------------------------------------------------------------------------- the best recalibration method


def test_the_best_recalibration_method_is_chosen_on_validation_not_on_test():
    # Test ECE favours temperature (0.010 < 0.020); validation favours isotonic: isotonic is shown.
    jobs = [
        _job(f"r{s}", s, {T.recal_metric("temperature", "ece"): 0.01, T.recal_metric("isotonic", "ece"): 0.02})
        for s in (0, 1)
    ]
    val = {"r0": {"temperature": 0.03, "isotonic": 0.02}, "r1": {"temperature": 0.03, "isotonic": 0.025}}
    lines = tables.recalibration_section({"loss=mmce": {"custom": jobs}}, val)
    assert next(line for line in lines if line.startswith("| loss=mmce")).endswith("| isotonic |")
    assert "| – |" in next(line for line in tables.recalibration_section({"x": {"custom": jobs}}) if "| x |" in line)


def test_cross_fitted_validation_ece_scores_each_method_on_samples_it_was_not_fitted_on():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    logits = 3.0 * (2 * np.eye(4)[labels] + rng.normal(0, 1.5, (2000, 4)))  # over-confident by a factor ~3
    predictions = calibration.Predictions(logits, labels, "softmax")
    found = tables.cross_fitted_ece(predictions, ["temperature", "isotonic"], 15)
    before = calibration.ece(calibration.probabilities(logits, "softmax"), labels)
    assert set(found) == {"temperature", "isotonic"} and max(found.values()) < before / 2
    assert (
        tables.cross_fitted_ece(calibration.Predictions(logits[:30], labels[:30], "softmax"), ["temperature"], 15) == {}
    )


# --------------------------------------------------------------------------- custom against built-in


def test_a_built_in_row_with_a_custom_twin_goes_to_the_equivalence_table():
    custom = F.Row("mnist", "loss=focal", "custom", (_job("c", 0, {}),))
    builtin = custom._replace(impl="builtin")
    alone = F.Row("mnist", "loss=bce", "builtin", (_job("b", 0, {}),))
    assert F.twin_of(builtin, [custom, builtin, alone]) is custom
    assert F.twin_of(alone, [custom, builtin, alone]) is None and F.twin_of(custom, [custom, builtin]) is None
    compared = F.COMPARED[0]  # accuracy, margin 0.001
    inside = F.Comparison(builtin, custom, compared, paired_test([0.0, 0.0]), None, two_level([0.0002, 0.0001, 0.0003]))
    wide = inside._replace(primary=two_level([0.002, -0.001, 0.0]))
    lines = "\n".join(_twins_lines([inside, wide]))
    assert "| mnist | loss=focal | accuracy | 3 | +0.0002 |" in lines
    assert lines.count("| equivalent within ±0.001 |") == 1 and "| not shown equivalent within ±0.001 |" in lines


def test_the_launchs_questions_come_before_those_a_reused_run_carries():
    q = "[{'id': 'Q9', 'row': {'loss': 'focal'}, 'metric': 'test/nll', 'direction': 'lower'}]"
    old = "[{'id': 'Q1', 'row': {'loss': 'focal'}, 'metric': 'test/ece', 'direction': 'lower'}]"
    info = RunInfo("p", "0", "", "RUNNING", 0, None, "active", run_name="p")
    reused = Job(Run(info, RunData([], [Param(KEY, old)], [])), reused=True)
    parent = Run(info, RunData([], [], [RunTag(T.QUESTIONS, q)]))
    assert [x.id for x in Q.declared([reused], parent)] == ["Q9"]
    assert [x.id for x in Q.declared([reused])] == ["Q1"]  # a store from before the tag
    assert Q.declared([reused], Run(info, RunData([], [], [RunTag(T.QUESTIONS, "[]")]))) == ()
