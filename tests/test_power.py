"""The seed sizing of `report.power` against textbook values, and the calculations the study files state."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest

from xent_lab.report import power

STUDIES = Path(__file__).resolve().parents[1] / "experiments"
# A study file's stated calculation: `#   seeds_needed(effect=0.005, sd=0.0029, questions=8) = 9`.
STATED = re.compile(r"#\s+(seeds_needed|detectable_effect)\(([^)]*)\) = ([0-9.]+)")


def test_power_matches_textbook_values():
    # One-sample t-test, d = 0.5, alpha 0.05 two-sided: 34 subjects give power 0.8078 (G*Power's table; Cohen
    # 1988), 33 fall short. R's power.t.test(n = 10, delta = 1, sd = 1, type = "one.sample") = 0.8031.
    assert power.power(0.5, 1.0, 34) == pytest.approx(0.8078, abs=5e-5)
    assert power.power(0.5, 1.0, 33) < 0.8
    assert power.seeds_needed(0.5, 1.0) == 34
    assert power.power(1.0, 1.0, 10) == pytest.approx(0.8031, abs=5e-5)
    # d = 0.8 needs 15 (Cohen's table for the one-sample test), and the sign of the effect does not matter.
    assert power.seeds_needed(-0.8, 1.0) == 15


def test_power_scales_with_effect_over_sd_and_is_the_level_without_an_effect():
    assert power.power(0.01, 0.02, 12) == pytest.approx(power.power(0.5, 1.0, 12))
    # No true difference: the test rejects at its level.
    assert power.power(0.0, 1.0, 7, alpha=0.05) == pytest.approx(0.05, abs=1e-12)
    assert power.power(1.0, 1.0, 1) == 0.0


def test_holm_worst_case_asks_for_more_seeds():
    # At alpha / 8 = 0.00625 the same d = 0.5 needs more subjects than at 0.05.
    one, eight = power.seeds_needed(0.5, 1.0), power.seeds_needed(0.5, 1.0, questions=8)
    assert eight > one
    assert power.power(0.5, 1.0, eight, 0.05 / 8) >= 0.8 > power.power(0.5, 1.0, eight - 1, 0.05 / 8)
    assert power.seeds_needed(1e-6, 1.0) is None  # beyond MAX_SEEDS


def test_detectable_effect_inverts_power():
    effect = power.detectable_effect(1.0, 34)
    assert power.power(effect, 1.0, 34) == pytest.approx(0.8, abs=1e-9)
    assert effect == pytest.approx(0.495, abs=5e-4)  # just below 0.5, which 34 subjects detect with 0.8078
    assert power.detectable_effect(1.0, 1) == math.inf


def test_sd_from_interval_by_hand():
    # 3 seeds, mean 0, sd 1: half width t_{0.975, 2} / sqrt(3) = 4.302653 / 1.732051 = 2.484138.
    assert power.sd_from_interval(-2.484138, 2.484138, 3) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        power.sd_from_interval(0.0, 1.0, 1)


def _stated(path: Path) -> list[tuple[str, dict[str, float], float, str]]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := STATED.match(line.strip()):
            arguments = {
                k.strip(): ast.literal_eval(v.strip()) for k, v in (part.split("=") for part in m.group(2).split(","))
            }
            found.append((m.group(1), arguments, float(m.group(3)), m.group(3)))
    return found


def _seeds(path: Path) -> int:
    (line,) = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip().startswith("seed:")]
    seeds = [int(s) for s in line.split(":", 1)[1].split(",")]
    assert seeds == list(range(len(seeds)))
    return len(seeds)


@pytest.mark.parametrize("study", sorted(p.stem for p in STUDIES.glob("[!_]*.yaml")))
def test_each_study_states_a_true_power_calculation_and_runs_its_seeds(study):
    path = STUDIES / f"{study}.yaml"
    stated = _stated(path)
    assert stated, f"{path.name} states no power calculation"
    seeds = _seeds(path)
    for function, arguments, value, shown in stated:
        computed = getattr(power, function)(**arguments)
        if function == "seeds_needed":
            assert computed == value, f"{path.name}: {function}({arguments}) = {computed}, the file says {shown}"
        else:
            digits = len(shown.split(".")[1])
            assert round(computed, digits) == value, f"{path.name}: {function}({arguments}) = {computed:.4g}"
            assert arguments["n"] == seeds, f"{path.name}: the calculation is for {arguments['n']} seeds, not {seeds}"
    needed = [value for function, _, value, _ in stated if function == "seeds_needed"]
    if needed:
        assert seeds == max(needed), f"{path.name} runs {seeds} seeds; its calculation asks for {max(needed)}"
