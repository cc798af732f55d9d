"""The rule behind every comparing sentence: a difference counts only beyond its 95 % t interval."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lora_teach.stats import compare, spread, t_critical, t_tail

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


def test_spread_uses_the_sample_standard_deviation():
    s = spread([1.0, 2.0, 3.0])
    assert s.mean == 2.0
    assert s.std == pytest.approx(1.0)  # ddof=1; ddof=0 would give 0.816
    assert s.sem == pytest.approx(1 / math.sqrt(3))
    assert s.format(1, "%") == "2.0 ± 1.0 % (3 seeds: 1.0, 2.0, 3.0)"


def test_clearly_separated_values_get_a_verdict():
    assert compare([10.0, 10.1, 9.9], [5.0, 5.1, 4.9]).verdict == "higher"
    assert compare([5.0, 5.1, 4.9], [10.0, 10.1, 9.9]).verdict == "lower"


def test_overlapping_values_are_indistinguishable():
    result = compare([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])
    assert result.verdict == "indistinguishable"
    assert "indistinguishable here" in result.sentence("A", "B", "accuracy")


def test_paired_comparison_uses_the_spread_of_the_differences():
    a = [1.0, 5.0, 9.0]
    b = [0.9, 4.9, 8.9]  # each seed 0.1 lower: unpaired the spreads swamp it, paired it is clear
    assert compare(a, b).verdict == "indistinguishable"
    assert compare(a, b, paired=True).verdict == "higher"


@given(st.lists(finite, min_size=2, max_size=8), st.lists(finite, min_size=2, max_size=8))
def test_verdict_is_antisymmetric(a, b):
    flip = {"higher": "lower", "lower": "higher", "indistinguishable": "indistinguishable"}
    assert compare(b, a).verdict == flip[compare(a, b).verdict]


@given(st.lists(finite, min_size=2, max_size=8), finite)
def test_adding_a_constant_to_both_changes_nothing(a, shift):
    b = [v * 0.5 for v in a]
    before, after = compare(a, b), compare([v + shift for v in a], [v + shift for v in b])
    if abs(abs(before.difference) - before.uncertainty) > 1e-6 * (1 + abs(shift)):
        assert before.verdict == after.verdict


@pytest.mark.parametrize("values", [[1.0], [], [1.0, float("nan")], [1.0, float("inf")]])
def test_too_few_or_non_finite_values_are_refused(values):
    with pytest.raises(ValueError, match="needs at least two values|not finite"):
        compare(values, [1.0, 2.0])


def test_paired_with_different_lengths_is_refused():
    with pytest.raises(ValueError, match="paired=True needs as many values"):
        compare([1.0, 2.0], [1.0, 2.0, 3.0], paired=True)


def test_numpy_arrays_are_accepted():
    assert compare(np.array([3.0, 3.1]), np.array([1.0, 1.1])).verdict == "higher"


def test_format_names_what_the_values_vary_over():
    from lora_teach.stats import spread

    assert spread([1.0, 3.0]).format(1, "ms", over="repeats") == "2.0 ± 1.4 ms (2 repeats: 1.0, 3.0)"
    assert spread([1.0, 3.0]).format(1).endswith("(2 seeds: 1.0, 3.0)")


# Two-sided 95 % critical values of Student's t, from any printed table.
TABLE = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    9: 2.262,
    10: 2.228,
    20: 2.086,
    30: 2.042,
}


@pytest.mark.parametrize("df, value", sorted(TABLE.items()))
def test_critical_value_matches_the_printed_table(df, value):
    assert t_critical(df) == pytest.approx(value, abs=5e-4)


def test_critical_value_tends_to_the_normal_one():
    assert t_critical(math.inf) == pytest.approx(1.95996, abs=1e-5)
    assert t_critical(1e7) == pytest.approx(1.95996, abs=1e-5)


@given(st.floats(min_value=0.5, max_value=1e4))
def test_critical_value_leaves_two_and_a_half_percent_in_each_tail(df):
    t = t_critical(df)
    assert t_tail(t, df) == pytest.approx(0.025, rel=1e-6)
    assert t > 1.959


@given(st.floats(min_value=0.5, max_value=500), st.floats(min_value=0.01, max_value=5))
def test_critical_value_falls_as_degrees_of_freedom_grow(df, more):
    assert t_critical(df + more) < t_critical(df)


@given(st.floats(min_value=0.5, max_value=1e3))
def test_critical_value_agrees_with_scipy(df):
    stats = pytest.importorskip("scipy.stats")
    assert t_critical(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-7)


def test_bad_degrees_of_freedom_are_refused():
    with pytest.raises(ValueError, match="df must be positive"):
        t_critical(0)


def test_paired_rule_uses_n_minus_one_degrees_of_freedom():
    # differences 1, 2, 3: mean 2, standard error 1/sqrt(3) = 0.577; t(2) * 0.577 = 2.48 > 2, while
    # the old two-standard-errors rule (1.15) would have called it "higher".
    result = compare([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], paired=True)
    assert result.df == 2
    assert result.uncertainty == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert result.verdict == "indistinguishable"
    assert compare([1.0, 2.0, 3.0, 2.0, 2.0], [0.0] * 5, paired=True).verdict == "higher"


def test_unpaired_rule_uses_welch_degrees_of_freedom():
    stats = pytest.importorskip("scipy.stats")
    a, b = [3.0, 4.5, 5.0, 7.0], [1.0, 1.2, 0.9]
    result = compare(a, b)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert result.df == pytest.approx(welch.df, rel=1e-9)
    # the verdict is the 5 % two-sided Welch t-test's
    assert (result.verdict != "indistinguishable") == (welch.pvalue < 0.05)


def test_pure_noise_gets_a_verdict_about_five_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials = 4000
    called = sum(
        compare(*rng.normal(size=(2, 3)), paired=True).verdict != "indistinguishable" for _ in range(trials)
    )
    assert 0.035 < called / trials < 0.065  # two standard errors at 3 seeds would call about 18 %


def _comparison(verdict_sign: int):
    """A paired comparison that says higher (1), lower (-1) or indistinguishable (0)."""
    base = [1.0, 2.0, 3.0, 4.0]
    if verdict_sign == 0:
        return compare(base, [1.1, 1.9, 3.1, 3.9], paired=True)
    return compare([b + verdict_sign * (1 + 0.01 * i) for i, b in enumerate(base)], base, paired=True)


def test_agreed_verdict_and_sentence_state_a_verdict_only_where_every_way_agrees():
    from lora_teach.stats import agreed_sentence, agreed_verdict

    up, down, tie = _comparison(1), _comparison(-1), _comparison(0)
    assert (up.verdict, down.verdict, tie.verdict) == ("higher", "lower", "indistinguishable")
    assert agreed_verdict([up, up]) == "higher"
    assert agreed_verdict([tie, tie, tie]) == "indistinguishable"
    assert agreed_verdict([up, tie]) == "depends"
    agreed = agreed_sentence([("on base 0", up), ("on base 1", up)], "LoRA", "full", "forgetting", 1, "pp")
    assert (
        agreed.startswith("LoRA is higher than full on forgetting") and "the same on base 1: +1.0" in agreed
    )
    split = agreed_sentence([("on base 0", up), ("on base 1", tie)], "LoRA", "full", "forgetting")
    assert "depends on the data: higher on base 0" in split and "indistinguishable on base 1" in split
    assert "no verdict is claimed" in split and "LoRA is higher" not in split


def test_agreed_sentence_and_verdict_refuse_no_comparisons():
    from lora_teach.stats import agreed_sentence, agreed_verdict

    with pytest.raises(ValueError, match="comparisons needs at least one"):
        agreed_verdict([])
    with pytest.raises(ValueError, match="comparisons needs at least one"):
        agreed_sentence([], "a", "b", "q")
