"""Timings are measured ranges, interleaved and paired by round: never a verdict, never a crash on a slow call.
No test asserts how fast anything is (the machine running the tests may be busy)."""

import time

import pytest

from lora_teach.bench.timing import interleaved_ranges


def test_every_round_times_every_function_in_a_rotated_order():
    order = []
    fns = {label: (lambda label=label: order.append(label)) for label in "abc"}
    interleaved_ranges(fns, "a", rounds=3, min_run_time=0.001)
    firsts = []
    for label in order:  # the first call of each new label run marks where a round's block starts
        if not firsts or firsts[-1] != label:
            firsts.append(label)
    assert firsts == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_ratios_are_paired_with_the_reference_round_by_round():
    ranges = interleaved_ranges({"base": lambda: None, "other": lambda: sum(range(50))}, "base", rounds=3)
    assert ranges["base"].ratios == (1.0, 1.0, 1.0)
    other = ranges["other"]
    assert other.ratios == tuple(s / b for s, b in zip(other.seconds, ranges["base"].seconds))
    text = str(other)
    assert "× the reference" in text and "3 rounds" in text
    assert not any(word in text for word in ("faster", "slower", "higher", "lower", "indistinguishable"))


def test_a_call_slower_than_the_block_time_still_gives_a_range():
    # blocked_autorange returns a single block when one call outlasts min_run_time: that raised in compare
    ranges = interleaved_ranges({"slow": lambda: time.sleep(0.02), "fast": lambda: None}, "fast", 2, 0.005)
    assert len(ranges["slow"].seconds) == 2 and min(ranges["slow"].seconds) >= 0.02


@pytest.mark.parametrize("rounds", [1, 0, 2.5, True])
def test_fewer_than_two_rounds_are_refused(rounds):
    with pytest.raises(ValueError, match="rounds must be a whole number of at least 2"):
        interleaved_ranges({"a": lambda: None}, "a", rounds=rounds)


def test_an_unknown_reference_is_refused():
    with pytest.raises(ValueError, match="reference must be one of the labels"):
        interleaved_ranges({"a": lambda: None}, "b")


def test_a_context_is_entered_around_its_label_only():
    import contextlib

    inside = []
    state = {"on": False}

    @contextlib.contextmanager
    def switch():
        state["on"] = True
        yield
        state["on"] = False

    fns = {
        "plain": lambda: inside.append(("plain", state["on"])),
        "ctx": lambda: inside.append(("ctx", state["on"])),
    }
    interleaved_ranges(fns, "plain", rounds=2, min_run_time=0.001, around={"ctx": switch})
    assert {on for label, on in inside if label == "ctx"} == {True}
    assert {on for label, on in inside if label == "plain"} == {False}
    with pytest.raises(ValueError, match="around names labels that are not in fns"):
        interleaved_ranges(fns, "plain", around={"other": switch})
