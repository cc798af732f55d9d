"""The rule behind every comparing sentence: a difference counts only beyond two standard errors."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lora_teach.stats import compare, spread

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
