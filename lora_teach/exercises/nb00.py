"""Exercises for notebook 00, welcome and setup: two warm-ups that show how checks work."""

from __future__ import annotations

from lora_teach.exercises import Incorrect, Question, as_number, call_student, expect_equal

# q1: a number. A 100 x 100 matrix written as B (100 x 5) times A (5 x 100).


def _check_q1(lora_numbers) -> str:
    lora_numbers = as_number("lora_numbers", lora_numbers)
    if lora_numbers == 100 * 100:
        raise Incorrect(
            "`lora_numbers` counts the full 100 x 100 matrix; count the entries of B and A instead"
        )
    if lora_numbers == 5 * 5:
        raise Incorrect("`lora_numbers` should count B (100 x 5) and A (5 x 100), not a 5 x 5 block")
    expect_equal("lora_numbers", lora_numbers, 100 * 5 + 5 * 100, context="for B (100 x 5) and A (5 x 100)")
    return "1,000 numbers instead of 10,000: a tenth of the full matrix."


q1 = Question(
    "q1 count the numbers",
    _check_q1,
    hints=[
        "B holds 100 * 5 numbers. How many does A hold?",
        "lora_numbers = 100 * 5 + 5 * 100",
    ],
    solution="lora_numbers = 100 * 5 + 5 * 100  # B (100 x 5) plus A (5 x 100)",
)

# q2: a function. The same count for any shape and rank.


def _check_q2(count_lora_numbers) -> str:
    for d, k, r in [(100, 100, 5), (784, 256, 2), (3, 7, 1), (10, 20, 10)]:
        got = call_student(count_lora_numbers, d, k, r, name="count_lora_numbers")
        got = as_number(f"count_lora_numbers({d}, {k}, {r})", got)
        if got == d * k:
            raise Incorrect(
                f"`count_lora_numbers({d}, {k}, {r})` gave {got}, the size of the full d x k matrix; "
                "count B (d x r) and A (r x k)"
            )
        expect_equal(f"count_lora_numbers({d}, {k}, {r})", got, r * (d + k))
    return "r * (d + k) numbers: it grows with d + k, not with d * k."


q2 = Question(
    "q2 a counting function",
    _check_q2,
    hints=[
        "B has shape (d, r) and A has shape (r, k); add their sizes.",
        "return d * r + r * k",
    ],
    solution="def count_lora_numbers(d, k, r):\n    return d * r + r * k  # = r * (d + k)",
)
