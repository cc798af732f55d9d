"""Exercises for notebook 11, serving many adapters: the rows of each adapter in a mixed batch, the
gathered LoRA term of a batch, the memory of K merged copies against one base and K adapters, and a
strategy for a workload. Function checks compute the expected value first, then pass copies of
inputs generated from the seeds and shapes listed here; wrong-answer messages never say the value."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import torch

from lora_teach.course.exercises import Incorrect, Question, as_number, call_student, expect_close

BASE = "__base__"

# q1 --------------------------------------------------------------------------------

# (seed, rows, distinct names): each case draws a list of names from a pool that includes "__base__"
GROUP_CASES = [(0, 7, 3), (1, 1, 1), (2, 12, 5), (3, 6, 1), (4, 9, 9)]
POOL = ["code", "prose", BASE, "argparse", "random", "textwrap", "fractions", "functools", "statistics"]


def _names(seed: int, rows: int, distinct: int) -> list[str]:
    rng = random.Random(seed)
    chosen = rng.sample(POOL, distinct)
    names = [rng.choice(chosen) for _ in range(rows)]
    names[: min(rows, distinct)] = rng.sample(chosen, min(rows, distinct))
    return rng.sample(names, len(names))


def _expected_groups(names: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    return groups


def _as_rows(value: Any) -> list[int] | None:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
        return None
    return list(value)


def _check_q1(group_rows: Callable) -> str:
    for seed, rows, distinct in GROUP_CASES:
        names = _names(seed, rows, distinct)
        expected = _expected_groups(names)
        got = call_student(group_rows, list(names), name="group_rows")
        where = f"for a batch of {rows} rows naming {len(expected)} different adapters"
        if not isinstance(got, dict):
            raise Incorrect(
                f"`group_rows` should return a dict {{name: [row, ...]}}, got {type(got).__name__}"
            )
        if set(got) != set(expected):
            extra = "a name no row uses" if set(got) - set(expected) else "not every name of the batch"
            raise Incorrect(f"`group_rows` {where} has {extra} among its keys")
        rows_of = {}
        for name, value in got.items():
            rows_of[name] = _as_rows(value)
            if rows_of[name] is None:
                raise Incorrect(f"`group_rows` should map each name to a list of row numbers (ints) {where}")
        if sorted(i for r in rows_of.values() for i in r) != list(range(rows)):
            raise Incorrect(f"`group_rows` {where} does not list every row exactly once")
        if any(sorted(r) == expected[n] and r != expected[n] for n, r in rows_of.items()):
            raise Incorrect(f"`group_rows` {where} lists rows out of order; keep them ascending")
        if rows_of != expected:
            raise Incorrect(f"`group_rows` {where} puts some rows under another adapter's name")
        if list(got) != list(expected):
            raise Incorrect(
                f"`group_rows` {where} orders its keys differently; keep the order in which names first appear"
            )
    return (
        "each adapter runs once, on its own rows: this grouping is what PEFT's mixed batch and the merged "
        "strategy both start from."
    )


q1 = Question(
    "nb11.q1",
    _check_q1,
    hints=[
        "Walk through the names with enumerate; a dict keeps its keys in the order they were first added.",
        "groups = {}; for i, name in enumerate(adapter_names): groups.setdefault(name, []).append(i)",
    ],
)

# q2 --------------------------------------------------------------------------------

# (seed, rows, tokens, in_features, out_features, r_max, slots)
GATHER_CASES = [(0, 5, 3, 6, 4, 3, 4), (1, 1, 1, 4, 4, 1, 2), (2, 8, 2, 5, 7, 4, 6), (3, 3, 4, 3, 8, 2, 3)]


def _gather_inputs(seed, rows, tokens, d_in, d_out, r_max, slots):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, tokens, d_in, generator=g, dtype=torch.float64)
    stack_A = torch.randn(slots, r_max, d_in, generator=g, dtype=torch.float64)
    stack_B = torch.randn(slots, d_out, r_max, generator=g, dtype=torch.float64)
    stack_A[0], stack_B[0] = 0, 0  # slot 0: no adapter
    stack_A[1, r_max - 1 :], stack_B[1, :, r_max - 1 :] = 0, 0  # slot 1: a smaller rank, zero-padded
    scalings = torch.rand(slots, generator=g, dtype=torch.float64) * 4 + 0.5
    scalings[0] = 0
    slot_of_row = torch.randint(0, slots, (rows,), generator=g)
    return x, stack_A, stack_B, scalings, slot_of_row


def _check_q2(gathered_lora: Callable) -> str:
    for case in GATHER_CASES:
        x, stack_A, stack_B, scalings, slots = _gather_inputs(*case)
        expected = torch.stack(
            [scalings[s] * (x[i] @ stack_A[s].T) @ stack_B[s].T for i, s in enumerate(slots.tolist())]
        )
        inputs = [t.clone() for t in (x, stack_A, stack_B, scalings, slots)]
        got = call_student(gathered_lora, *inputs, name="gathered_lora")
        where = f"for {case[1]} rows of {case[2]} tokens, {case[3]} -> {case[4]}, ranks up to {case[5]}"
        if not isinstance(got, torch.Tensor):
            raise Incorrect(f"`gathered_lora` should return a tensor, got {type(got).__name__}")
        if tuple(got.shape) != tuple(expected.shape):
            raise Incorrect(
                f"`gathered_lora` {where} should return (rows, tokens, out_features), got {tuple(got.shape)}"
            )
        got = got.detach().to(torch.float64)
        unscaled = torch.stack([(x[i] @ stack_A[s].T) @ stack_B[s].T for i, s in enumerate(slots.tolist())])
        if torch.allclose(got, unscaled) and not torch.allclose(got, expected):
            raise Incorrect(f"`gathered_lora` {where} leaves out each row's scaling")
        if not torch.allclose(got, expected, rtol=1e-6, atol=1e-8):
            raise Incorrect(
                f"`gathered_lora` {where} gives other values; row i needs slot slots[i]'s A, B and scaling"
            )
    return (
        "two batched products serve every row at once, whatever its adapter: zero slots and zero padding "
        "add exact zeros."
    )


q2 = Question(
    "nb11.q2",
    _check_q2,
    hints=[
        "Index the stacks with the slots: stack_A[slots] is (rows, r_max, in). torch.bmm multiplies batches of matrices.",
        "A, B = stack_A[slots], stack_B[slots]; "
        "return torch.bmm(torch.bmm(x, A.transpose(1, 2)), B.transpose(1, 2)) * scalings[slots][:, None, None]",
    ],
)

# q3 --------------------------------------------------------------------------------

# Llama 2 7B: 6,738,415,616 parameters, 32 blocks, d = 4096; K adapters of rank r on q_proj and v_proj
PARAMS_7B, BLOCKS_7B, D_7B = 6_738_415_616, 32, 4096
K_ADAPTERS, RANK, BYTES_FP16 = 100, 16, 2
ADAPTER_PARAMS = BLOCKS_7B * 2 * RANK * (D_7B + D_7B)
MERGED_GB = K_ADAPTERS * PARAMS_7B * BYTES_FP16 / 1e9
BANK_GB = (PARAMS_7B + K_ADAPTERS * ADAPTER_PARAMS) * BYTES_FP16 / 1e9


def _gb(name: str, value: Any) -> float:
    value = float(as_number(name, value))
    if not math.isfinite(value) or value <= 0:
        raise Incorrect(f"`{name}` should be a positive number of gigabytes")
    return value


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)


def _check_q3(merged_copies_gb: Any, bank_gb: Any) -> str:
    merged = _gb("merged_copies_gb", merged_copies_gb)
    for wrong, why in [
        (MERGED_GB * 2, "counts 4 bytes per number; the model is stored in fp16 (2 bytes)"),
        (MERGED_GB / 2, "counts 1 byte per number; fp16 takes 2"),
        (MERGED_GB * 1e9 / 2**30, "is in GiB (2^30 bytes); give GB (10^9 bytes)"),
        (MERGED_GB / K_ADAPTERS, "is one model; K merged copies are K whole models"),
        (
            K_ADAPTERS * BLOCKS_7B * 2 * D_7B * D_7B * BYTES_FP16 / 1e9,
            "counts only q_proj and v_proj of each copy",
        ),
    ]:
        if _close(merged, wrong):
            raise Incorrect(f"`merged_copies_gb` {why}")
    expect_close("merged_copies_gb", merged, MERGED_GB, rtol=1e-6, atol=0, context="(K whole models, in GB)")
    bank = _gb("bank_gb", bank_gb)
    for wrong, why in [
        (
            K_ADAPTERS * ADAPTER_PARAMS * BYTES_FP16 / 1e9,
            "leaves out the base model, which the bank holds once",
        ),
        (
            (PARAMS_7B + K_ADAPTERS * ADAPTER_PARAMS / 2) * BYTES_FP16 / 1e9,
            "counts half of each adapter: A and B, on q_proj and on v_proj, in every block",
        ),
        (
            (PARAMS_7B + K_ADAPTERS * ADAPTER_PARAMS) * 4 / 1e9,
            "counts 4 bytes per number; use fp16 (2 bytes)",
        ),
        (PARAMS_7B * BYTES_FP16 / 1e9, "is the base alone; add the K adapters"),
    ]:
        if _close(bank, wrong):
            raise Incorrect(f"`bank_gb` {why}")
    expect_close("bank_gb", bank, BANK_GB, rtol=1e-6, atol=0, context="(one base and K adapters, in GB)")
    return (
        f"K copies grow by a whole model per adapter; the bank by {ADAPTER_PARAMS * BYTES_FP16 / 2**20:.0f} MiB "
        f"per adapter, {PARAMS_7B / ADAPTER_PARAMS:,.0f} times less."
    )


q3 = Question(
    "nb11.q3",
    _check_q3,
    hints=[
        "Bytes = numbers x 2 in fp16. One adapter holds, per adapted d x d matrix, A (r x d) and B (d x r).",
        "merged: 100 * 6,738,415,616 * 2 / 1e9. bank: (6,738,415,616 + 100 * 32 * 2 * 16 * (4096 + 4096)) * 2 / 1e9.",
    ],
)

# q4 --------------------------------------------------------------------------------

# (seed, rows, distinct names, crossover): crossover None means merging never stopped paying
STRATEGY_CASES = [
    (0, 8, 1, 2),
    (1, 8, 2, 2),
    (2, 16, 3, 4),
    (3, 16, 5, 4),
    (4, 8, 3, 3),
    (6, 10, 4, None),
    (5, 5, 1, 1),
]


def _expected_strategy(names: list[str], crossover: int | None) -> str:
    return "merged" if crossover is None or len(set(names)) < crossover else "gather"


def _check_q4(choose_strategy: Callable) -> str:
    for seed, rows, distinct, cross in STRATEGY_CASES:
        names = _names(seed + 10, rows, distinct)
        expected = _expected_strategy(names, cross)
        got = call_student(choose_strategy, list(names), cross, name="choose_strategy")
        where = f"for {len(set(names))} different names and crossover={cross}"
        if got not in ("grouped", "gather", "merged"):
            raise Incorrect(
                f"`choose_strategy` should return 'merged' or 'gather' (a strategy's name), got {got!r}"
            )
        without_base = len({n for n in names if n != BASE})
        if got != expected and BASE in names and ("merged" if without_base < cross else "gather") == got:
            raise Incorrect(
                f"`choose_strategy` {where} leaves out '__base__'; under merging the base's rows are one more "
                "forward pass, so count it like any name"
            )
        if got != expected:
            raise Incorrect(f"`choose_strategy` {where} does not pick the strategy the rule gives")
    return "merge while the batch is one adapter or few; batch the adapters unmerged once it is not."


q4 = Question(
    "nb11.q4",
    _check_q4,
    hints=[
        "Count the different names of the batch with a set; compare the count with the crossover.",
        "return 'merged' if crossover is None or len(set(adapter_names)) < crossover else 'gather'",
    ],
)

__all__ = ["q1", "q2", "q3", "q4"]
