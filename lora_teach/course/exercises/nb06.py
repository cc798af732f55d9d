"""Exercises for notebook 06, rank, alpha and forgetting: learning versus forgetting,
the scaling rules, how many directions an update needs, and the subspace similarity phi."""

from __future__ import annotations

import math

import torch

from lora_teach.course.exercises import Incorrect, Question, as_number, call_student, expect_close
from lora_teach.linalg import subspace_similarity
from lora_teach.train import Evaluation

# q1: a function. Percentage points learned on the fine-tuned digits and forgotten on the rest.


def _fake_evaluation(wrong_counts: list[int], totals: list[int]) -> Evaluation:
    """An Evaluation with the given per-digit wrong counts (the confusion matrix is not used)."""
    return Evaluation(
        correct=sum(totals) - sum(wrong_counts),
        total=sum(totals),
        wrong_counts=list(wrong_counts),
        digit_totals=list(totals),
        confusion=torch.zeros(10, 10, dtype=torch.int64),
    )


def _reference_q1(before: Evaluation, after: Evaluation, digits) -> tuple[float, float]:
    others = [d for d in range(10) if d not in digits]
    learned = 100 * (after.accuracy_on(digits) - before.accuracy_on(digits))
    forgotten = 100 * (before.accuracy_on(others) - after.accuracy_on(others))
    return learned, forgotten


def _q1_cases():
    totals = [100] * 10
    before = _fake_evaluation([5, 2, 30, 25, 4, 35, 6, 8, 40, 30], totals)
    after = _fake_evaluation([15, 12, 10, 5, 24, 5, 16, 18, 10, 10], totals)
    uneven = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    before2 = _fake_evaluation([20, 15, 200, 150, 30, 250, 25, 40, 300, 180], uneven)
    after2 = _fake_evaluation([22, 15, 150, 160, 31, 120, 26, 90, 200, 100], uneven)
    return [(before, after, [2, 3, 5, 8, 9]), (before2, after2, [2, 3, 5, 8, 9]), (before2, after2, [7])]


def _check_q1(learning_and_forgetting) -> str:
    for before, after, digits in _q1_cases():
        expected = _reference_q1(before, after, digits)
        got = call_student(learning_and_forgetting, before, after, digits, name="learning_and_forgetting")
        call = f"learning_and_forgetting(before, after, {digits})"
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Incorrect(f"`{call}` should return two numbers (learned, forgotten), got {got!r}")
        learned, forgotten = (float(as_number(f"{call}[{i}]", v)) for i, v in enumerate(got))
        if abs(learned - expected[0] / 100) < 1e-9 and abs(forgotten - expected[1] / 100) < 1e-9:
            raise Incorrect(f"`{call}` returned fractions; multiply by 100 for percentage points")
        if abs(forgotten + expected[1]) < 1e-9 and abs(expected[1]) > 1e-9:
            raise Incorrect(
                f"`{call}` has the sign of `forgotten` flipped: accuracy lost on the other digits "
                "is before minus after"
            )
        expect_close(f"{call}[0] (learned)", learned, expected[0], rtol=1e-6, atol=1e-6)
        expect_close(f"{call}[1] (forgotten)", forgotten, expected[1], rtol=1e-6, atol=1e-6)
    return "learning is measured on the fine-tuned digits, forgetting on all the others."


q1 = Question(
    "q1 learned and forgotten",
    _check_q1,
    hints=[
        "Evaluation.accuracy_on(digits) gives the fraction correct on some digits; the other "
        "digits are those of range(10) not in `digits`.",
        "others = [d for d in range(10) if d not in digits]; learned is 100 * (after - before) "
        "on `digits`, forgotten is 100 * (before - after) on `others`.",
    ],
)

# q2: two numbers. The scaling of an r = 64 adapter with lora_alpha = 16 under both rules.


def _check_q2(scaling_paper, scaling_rslora) -> str:
    scaling_paper = as_number("scaling_paper", scaling_paper)
    scaling_rslora = as_number("scaling_rslora", scaling_rslora)
    if scaling_paper == 64 / 16:
        raise Incorrect("`scaling_paper` is r / lora_alpha; the paper divides lora_alpha by r")
    expect_close(
        "scaling_paper", scaling_paper, 16 / 64, context="(lora_alpha / r with r = 64, lora_alpha = 16)"
    )
    if scaling_rslora == 16 / 64:
        raise Incorrect("`scaling_rslora` equals the paper's scaling; rsLoRA divides by the square root of r")
    if scaling_rslora == 64 / math.sqrt(16):
        raise Incorrect("`scaling_rslora` is r / sqrt(lora_alpha); rsLoRA divides lora_alpha by sqrt(r)")
    expect_close(
        "scaling_rslora", scaling_rslora, 16 / math.sqrt(64), context="(lora_alpha / sqrt(r), r = 64)"
    )
    return "0.25 against 2.0: at r = 64 the paper's rule scales the update 8 times (sqrt(64)) less."


q2 = Question(
    "q2 two scaling rules",
    _check_q2,
    hints=[
        "The paper multiplies B @ A by lora_alpha / r; rsLoRA by lora_alpha / sqrt(r).",
        "scaling_paper = 16 / 64 and scaling_rslora = 16 / math.sqrt(64)",
    ],
)

# q3: a function. How many singular directions hold a given fraction of a matrix's energy.


def _reference_q3(S: torch.Tensor, fraction: float) -> int:
    energy = torch.cumsum(S.double() ** 2, dim=0) / (S.double() ** 2).sum()
    return int((energy < fraction - 1e-12).sum().item()) + 1


def _q3_cases() -> list[tuple[torch.Tensor, float]]:
    cases = [
        (torch.tensor([3.0, 4.0]), 0.5),  # 9 + 16: the first holds 36 %, so 2
        (torch.tensor([4.0, 3.0]), 0.5),  # the first holds 64 %, so 1
        (torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0]), 0.5),  # 4 of 8: exactly half with one
        (torch.tensor([10.0, 5.0, 1.0, 0.5, 0.1]), 0.99),
        (torch.tensor([1.0, 1.0, 1.0, 1.0]), 0.9),
        (torch.tensor([3.0, 2.0, 1.0]), 0.6),  # squares hold 64 % with one, plain values 50 %
    ]
    generator = torch.Generator().manual_seed(6)
    S = torch.linalg.svdvals(torch.randn(30, 20, generator=generator))
    return cases + [(S, 0.9), (S, 0.5)]


def _count(share: torch.Tensor, fraction: float, inclusive: bool = False) -> int:
    """Directions before the running share reaches ``fraction`` (``<=`` when inclusive), plus one."""
    below = share <= fraction + 1e-12 if inclusive else share < fraction - 1e-12
    return int(below.sum().item()) + 1


def _check_q3(directions_for_energy) -> str:
    answers, expected, plain_sum, inclusive = [], [], [], []
    for S, fraction in _q3_cases():
        expected.append(_reference_q3(S, fraction))
        plain_sum.append(_count(torch.cumsum(S, 0) / S.sum(), fraction))
        inclusive.append(_count(torch.cumsum(S**2, 0) / (S**2).sum(), fraction, inclusive=True))
        got = call_student(directions_for_energy, S, fraction, name="directions_for_energy")
        call = f"directions_for_energy({[round(v, 3) for v in S.tolist()][:5]}..., {fraction})"
        answers.append(as_number(call, got))
    if answers == expected:
        return (
            "the squared singular values are the energy; their running sum says how many directions matter."
        )
    # name the mistake from the whole pattern of answers, so that one case cannot mislead
    if answers == plain_sum:
        raise Incorrect(
            "`directions_for_energy` sums the singular values; the energy is the sum of their squares"
        )
    if answers == inclusive:
        raise Incorrect(
            "`directions_for_energy` counts one direction too many when the running share lands exactly "
            "on `fraction` (e.g. S = [2, 1, 1, 1, 1], fraction 0.5): that direction already reaches it; "
            "count the shares strictly below `fraction` (`<`, not `<=`), then add one"
        )
    if all(a == e - 1 for a, e in zip(answers, expected)):
        raise Incorrect(
            "`directions_for_energy` gives one too few directions: count the one that crosses the fraction"
        )
    for (S, fraction), got, want in zip(_q3_cases(), answers, expected):
        if got != want:
            call = f"directions_for_energy({[round(v, 3) for v in S.tolist()][:5]}..., {fraction})"
            if not math.isfinite(got):
                raise Incorrect(f"`{call}` gave {got!r}, not a whole number of directions")
            size = "too many" if got > want else "too few"
            raise Incorrect(f"`{call}` gave {got!r}, {size} directions; see nb06.q3.hint()")
    raise Incorrect("`directions_for_energy` gave an unexpected answer; see nb06.q3.hint()")


q3 = Question(
    "q3 directions for a share of the energy",
    _check_q3,
    hints=[
        "The energy of M is ||M||_F^2 = sum of S**2. Take the running sum of S**2 (S is sorted, "
        "largest first), divide by the total, and find where it first reaches `fraction`.",
        "share = torch.cumsum(S**2, 0) / (S**2).sum(); return int((share < fraction).sum()) + 1",
    ],
)

# q4: a function. The LoRA paper's subspace similarity phi(A1, A2, i, j).


def _check_q4(phi) -> str:
    generator = torch.Generator().manual_seed(4)
    A1 = torch.randn(2, 40, generator=generator, dtype=torch.float64)
    A2 = torch.randn(8, 40, generator=generator, dtype=torch.float64)
    A2[0] = 3 * A1[0] + 0.1 * A2[0]  # one shared direction, so phi is far from random
    for i, j in [(1, 1), (1, 8), (2, 8), (2, 3), (1, 4)]:
        expected = subspace_similarity(A1, A2, i, j)
        U1 = torch.linalg.svd(A1, full_matrices=False).Vh[:i].T
        U2 = torch.linalg.svd(A2, full_matrices=False).Vh[:j].T
        overlap = torch.linalg.matrix_norm(U1.T @ U2).item()
        got = call_student(phi, A1, A2, i, j, name="phi")
        call = f"phi(A1 (2, 40), A2 (8, 40), {i}, {j})"
        got = as_number(call, got)
        if abs(got - overlap / min(i, j)) < 1e-9 and abs(got - expected) > 1e-9:
            raise Incorrect(f"`{call}` gave {got:.4f}: square the Frobenius norm before dividing")
        if abs(got - overlap**2) < 1e-9 and abs(got - expected) > 1e-9:
            raise Incorrect(f"`{call}` gave {got:.4f}: divide by min(i, j)")
        if abs(got - overlap**2 / max(i, j)) < 1e-9 and abs(got - expected) > 1e-9:
            raise Incorrect(f"`{call}` gave {got:.4f}: divide by min(i, j), not max(i, j)")
        expect_close(call, got, expected, rtol=1e-5, atol=1e-7)
    return "phi is 1 when one subspace lies inside the other, and about max(i, j) / in for random subspaces."


q4 = Question(
    "q4 subspace similarity",
    _check_q4,
    hints=[
        "The right-singular vectors of A (r, in) are the rows of Vh in "
        "torch.linalg.svd(A, full_matrices=False); take the top i of A1 and the top j of A2.",
        "U1 = svd(A1).Vh[:i].T; U2 = svd(A2).Vh[:j].T; return ||U1.T @ U2||_F ** 2 / min(i, j)",
    ],
)
