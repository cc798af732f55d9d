"""Exercises for notebook 01, rank and matrix decomposition."""

from __future__ import annotations

import math

import torch

from lora_teach.course.exercises import (
    Incorrect,
    Question,
    as_number,
    call_student,
    expect_close,
    expect_equal,
    miss,
    returned_number,
)
from lora_teach.linalg import low_rank_approximation

# q1: the rank of a small integer matrix

Q1_MATRIX = torch.tensor(
    [
        [1.0, 2.0, 0.0, 3.0, 1.0],
        [2.0, 4.0, 1.0, 7.0, 2.0],
        [0.0, 0.0, 1.0, 1.0, 0.0],
        [3.0, 6.0, 1.0, 10.0, 3.0],
    ]
)


def _check_q1(rank_of_M) -> str:
    rank_of_M = as_number("rank_of_M", rank_of_M)
    if rank_of_M == 4 or rank_of_M == 5:
        raise Incorrect(
            f"`rank_of_M` should count independent rows, not all rows or columns; you gave {rank_of_M}"
        )
    expect_equal("rank_of_M", rank_of_M, 2)
    return "row 2 = 2 * row 1 + row 3, and row 4 = row 1 + row 2, so only 2 rows are independent."


q1 = Question(
    "q1 rank",
    _check_q1,
    hints=[
        "Look for rows that are sums or multiples of other rows.",
        "torch.linalg.matrix_rank(M) counts the independent rows; `.item()` turns it into an int.",
    ],
)

# q2: counting parameters of a full update and of a rank-r factorization


def _check_q2(full_params, lora_params) -> str:
    d, k, r = 512, 768, 8
    expect_equal("full_params", full_params, d * k, context="for a 512 x 768 matrix")
    if lora_params == 2 * d * r or lora_params == 2 * k * r:
        raise Incorrect("`lora_params` uses one side twice; B is (d, r) and A is (r, k), so count d*r + r*k")
    if lora_params == r * r:
        raise Incorrect("`lora_params` should count the entries of B (d, r) and A (r, k), not r * r")
    expect_equal("lora_params", lora_params, r * (d + k), context="for r = 8")
    return f"{r * (d + k):,} instead of {d * k:,}, that is {100 * r * (d + k) / (d * k):.1f} % of the full count."


q2 = Question(
    "q2 parameter count",
    _check_q2,
    hints=[
        "The full matrix has d * k entries. The factors are B with shape (d, r) and A with shape (r, k).",
        "full_params = 512 * 768 and lora_params = 512 * 8 + 8 * 768.",
    ],
)

# q3: the error of the best rank-r approximation from the singular values alone


def _q3_number(got) -> float:
    """The returned value as a float: any real number or one-element tensor, never a string."""
    return float(returned_number("error_from_singular_values", got))


# Typical slips, each a formula that a wrong answer matches on every case, and what to say about it.
_Q3_SLIPS = [
    (
        lambda S, r: S[r:].sum(),
        "adds the discarded singular values; the Frobenius error is the square root of the sum of their squares",
    ),
    (
        lambda S, r: (S[r:] ** 2).sum(),
        "returns the sum of the squared discarded values; take its square root",
    ),
    (
        lambda S, r: S[r] if r < len(S) else S.new_zeros(()),
        "returns the largest discarded singular value, which is the spectral-norm error; "
        "the Frobenius error uses all discarded values",
    ),
    (
        lambda S, r: (S[r + 1 :] ** 2).sum().sqrt(),
        "skips one value too many: S is indexed from 0, so the first discarded value is S[r]",
    ),
    (
        lambda S, r: (S[:r] ** 2).sum().sqrt(),
        "uses the r kept singular values; the error comes from the ones thrown away",
    ),
    (
        lambda S, r: (S[r:] ** 2).sum().sqrt() / S.norm(),
        "divides by the norm of M; the exercise asks for the absolute error, not the relative one",
    ),
]


def _check_q3(error_from_singular_values) -> str:
    cases = [
        (torch.tensor([5.0, 3.0, 2.0, 1.0], dtype=torch.float64), 1),
        (torch.tensor([5.0, 3.0, 2.0, 1.0], dtype=torch.float64), 2),
        (torch.tensor([7.0, 4.0, 4.0, 0.5, 0.25], dtype=torch.float64), 1),
        (torch.tensor([4.0, 4.0, 4.0], dtype=torch.float64), 0),
        (torch.tensor([9.0, 2.0], dtype=torch.float64), 2),
    ]
    expected = [math.sqrt((S[r:] ** 2).sum().item()) for S, r in cases]
    answers = []
    for S, r in cases:
        got = call_student(error_from_singular_values, S, r, name="error_from_singular_values")
        answers.append(_q3_number(got))
    if all(math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-9) for a, e in zip(answers, expected)):
        return "the Frobenius error is sqrt(s_{r+1}^2 + s_{r+2}^2 + ...), known before computing M_r."
    for slip, message in _Q3_SLIPS:
        slipped = [float(slip(S, r)) for S, r in cases]
        if all(math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-9) for a, e in zip(answers, slipped)):
            raise Incorrect(f"`error_from_singular_values` {message}")
    for (S, r), a, e in zip(cases, answers, expected):
        if not math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-9):
            direction = miss(a, e)
            raise Incorrect(
                f"`error_from_singular_values(S, {r})` for S={S.tolist()} is {direction}; "
                "which singular values does the best rank-r approximation throw away? See .hint()"
            )
    raise AssertionError("unreachable")  # pragma: no cover


q3 = Question(
    "q3 error from singular values",
    _check_q3,
    hints=[
        "Which singular values are thrown away when you keep the r largest? S is sorted largest first.",
        "Square the discarded values S[r:], add them up, and take the square root.",
    ],
)

# q4: the best rank-r approximation from the SVD


def _check_q4(best_rank_r) -> str:
    generator = torch.Generator().manual_seed(3)
    for m, n, r in [(6, 4, 2), (5, 9, 1), (8, 8, 3), (7, 3, 3), (4, 6, 0)]:
        M = torch.randn(m, n, generator=generator, dtype=torch.float64)
        expected = low_rank_approximation(M, r)
        got = call_student(best_rank_r, M, r, name="best_rank_r")
        if not isinstance(got, torch.Tensor):
            raise Incorrect(f"`best_rank_r` should return a tensor, got {type(got).__name__}")
        if got.shape != M.shape and got.shape in ((m, r), (r, n)):
            raise Incorrect(
                "`best_rank_r` returned one factor; multiply U_r * S_r by Vh_r to get an (m, n) matrix"
            )
        expect_close(
            "best_rank_r(M, r)", got, expected, rtol=1e-4, atol=1e-6, context=f"for M {m}x{n}, r={r}"
        )
    return "keeping the r largest singular triples is the best rank-r approximation (Eckart-Young)."


q4 = Question(
    "q4 best rank-r approximation",
    _check_q4,
    hints=[
        "torch.linalg.svd(M, full_matrices=False) gives U, S, Vh with M = U @ diag(S) @ Vh, S sorted largest first.",
        "Keep the first r columns of U, the first r values of S and the first r rows of Vh: "
        "(U[:, :r] * S[:r]) @ Vh[:r].",
    ],
)

__all__ = ["Q1_MATRIX", "q1", "q2", "q3", "q4"]
