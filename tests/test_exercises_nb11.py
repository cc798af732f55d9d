"""Notebook 11's exercises: the reference answers pass, typical mistakes are named, blanks and junk are
handled, and no wrong-answer message gives the expected value away."""

from __future__ import annotations

import pytest
import torch

from lora_teach.course.exercises import ____, nb11
from lora_teach.serving import AdapterBank


def _out(capsys) -> str:
    return capsys.readouterr().out


# q1: grouping the rows ------------------------------------------------------------


def test_q1_the_banks_own_grouping_passes(capsys):
    assert nb11.q1.check(AdapterBank.groups)
    assert _out(capsys).startswith("Correct (nb11.q1")


def _sorted_keys(names):
    groups = AdapterBank.groups(names)
    return {k: groups[k] for k in sorted(groups)}


def _reversed_rows(names):
    return {k: v[::-1] for k, v in AdapterBank.groups(names).items()}


def _sets(names):
    return {k: set(v) for k, v in AdapterBank.groups(names).items()}


def _without_base(names):
    return {k: v for k, v in AdapterBank.groups(names).items() if k != "__base__"}


def _shifted(names):
    groups = AdapterBank.groups(names)
    keys = list(groups)
    return {k: groups[keys[(i + 1) % len(keys)]] for i, k in enumerate(keys)}


@pytest.mark.parametrize(
    "answer, words",
    [
        (_sorted_keys, "orders its keys differently"),
        (_reversed_rows, "out of order"),
        (_sets, "list of row numbers"),
        (_without_base, "not every name of the batch"),
        (lambda names: list(AdapterBank.groups(names).items()), "should return a dict"),
        (lambda names: {n: [i] for i, n in enumerate(names)}, "does not list every row exactly once"),
        (lambda names: None, "returned None"),
        (lambda names: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_q1_mistakes_are_named(capsys, answer, words):
    assert not nb11.q1.check(answer)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb11.q1") and words in out


def test_q1_swapped_rows_are_named(capsys):
    assert not nb11.q1.check(_shifted)
    assert "under another adapter's name" in _out(capsys)


def test_q1_a_function_that_changes_its_input_cannot_change_the_expected_value(capsys):
    def greedy(names):
        groups = AdapterBank.groups(names)
        names.clear()
        return groups

    assert nb11.q1.check(greedy)
    assert _out(capsys).startswith("Correct")


def test_q1_blank_and_not_implemented(capsys):
    assert not nb11.q1.check(____)
    assert _out(capsys).startswith("Not attempted yet")

    def todo(names):
        raise NotImplementedError

    assert not nb11.q1.check(todo)
    assert _out(capsys).startswith("Not attempted yet")


# q3: the memory of K merged copies --------------------------------------------------

MERGED = 100 * 6_738_415_616 * 2 / 1e9
BANK = (6_738_415_616 + 100 * 32 * 2 * 16 * (4096 + 4096)) * 2 / 1e9


def test_q3_reference_answer_passes(capsys):
    assert nb11.q3.check(MERGED, BANK)
    assert _out(capsys).startswith("Correct (nb11.q3")


@pytest.mark.parametrize(
    "merged, bank, words",
    [
        (2 * MERGED, BANK, "4 bytes"),
        (MERGED / 100, BANK, "one model"),
        (MERGED * 1e9 / 2**30, BANK, "GiB"),
        (100 * 32 * 2 * 4096 * 4096 * 2 / 1e9, BANK, "only q_proj and v_proj"),
        (MERGED * 1.1, BANK, "`merged_copies_gb` (K whole models, in GB) is too high"),
        (round(MERGED, 1), BANK, "`merged_copies_gb` (K whole models, in GB) is too high"),
        (MERGED, BANK - 6_738_415_616 * 2 / 1e9, "leaves out the base"),
        (MERGED, 6_738_415_616 * 2 / 1e9, "the base alone"),
        (MERGED, (6_738_415_616 + 50 * 32 * 2 * 16 * 8192) * 2 / 1e9, "half of each adapter"),
        (MERGED, 2 * BANK, "4 bytes"),
        (MERGED, BANK * 0.95, "`bank_gb` (one base and K adapters, in GB) is too low"),
        ("1347", BANK, "should be a number"),
        (MERGED, -1, "positive number"),
        (MERGED, float("inf"), "positive number"),
    ],
)
def test_q3_mistakes_are_named_without_the_answer(capsys, merged, bank, words):
    assert not nb11.q3.check(merged, bank)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb11.q3") and words in out
    assert f"{MERGED:.0f}" not in out and f"{BANK:.1f}" not in out


def test_q3_blank_is_not_attempted(capsys):
    assert not nb11.q3.check(____, ____)
    assert _out(capsys).startswith("Not attempted yet")


# q2: the gathered LoRA term ---------------------------------------------------------


def reference_gathered(x, stack_A, stack_B, scalings, slots):
    A, B = stack_A[slots], stack_B[slots]
    return torch.bmm(torch.bmm(x, A.transpose(1, 2)), B.transpose(1, 2)) * scalings[slots][:, None, None]


def test_q2_reference_and_an_einsum_pass(capsys):
    assert nb11.q2.check(reference_gathered)
    assert _out(capsys).startswith("Correct (nb11.q2")

    def einsum(x, stack_A, stack_B, scalings, slots):
        h = torch.einsum("btd,brd->btr", x, stack_A[slots])
        return torch.einsum("btr,bor->bto", h, stack_B[slots]) * scalings[slots].view(-1, 1, 1)

    assert nb11.q2.check(einsum)
    assert _out(capsys).startswith("Correct (nb11.q2")


@pytest.mark.parametrize(
    "answer, words",
    [
        (
            lambda x, A, B, s, slots: torch.bmm(
                torch.bmm(x, A[slots].transpose(1, 2)), B[slots].transpose(1, 2)
            ),
            "leaves out each row's scaling",
        ),
        (lambda x, A, B, s, slots: reference_gathered(x, A, B, s, torch.zeros_like(slots)), "other values"),
        (
            lambda x, A, B, s, slots: reference_gathered(x, A, B, s, slots)[:, 0],
            "(rows, tokens, out_features)",
        ),
        (lambda x, A, B, s, slots: reference_gathered(x, A, B, s, slots).tolist(), "should return a tensor"),
        (lambda x, A, B, s, slots: torch.bmm(x, A[slots]), "raised RuntimeError"),
    ],
)
def test_q2_mistakes_are_named(capsys, answer, words):
    assert not nb11.q2.check(answer)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb11.q2") and words in out


def test_q2_in_place_changes_to_the_inputs_do_not_change_the_expected_value(capsys):
    def vandal(x, stack_A, stack_B, scalings, slots):
        out = reference_gathered(x, stack_A, stack_B, scalings, slots)
        x.zero_(), stack_A.zero_(), scalings.zero_()
        return out

    assert nb11.q2.check(vandal)
    assert _out(capsys).startswith("Correct")


# q4: a strategy for a workload ------------------------------------------------------


def reference_choice(adapter_names, crossover):
    return "merged" if crossover is None or len(set(adapter_names)) < crossover else "gather"


def test_q4_reference_answer_passes(capsys):
    assert nb11.q4.check(reference_choice)
    assert _out(capsys).startswith("Correct (nb11.q4")


@pytest.mark.parametrize(
    "answer, words",
    [
        (
            lambda names, c: "merged" if c is None or len(set(names) - {"__base__"}) < c else "gather",
            "leaves out '__base__'",
        ),
        (lambda names, c: "merged" if c is None or len(set(names)) <= c else "gather", "does not pick"),
        (lambda names, c: "gather", "does not pick"),
        (lambda names, c: "merge", "should return 'merged' or 'gather'"),
        (lambda names, c: "merged" if len(set(names)) < c else "gather", "TypeError"),
    ],
)
def test_q4_mistakes_are_named(capsys, answer, words):
    assert not nb11.q4.check(answer)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb11.q4") and words in out
