"""Exercises for notebook 07, adapters in practice: adapter size, reading an adapter's ranks,
and combining two adapters as one low-rank product."""

from __future__ import annotations

import torch

from lora_teach.course.exercises import Incorrect, Question, as_number, call_student, expect_equal

DIGITSNET_LAYERS = {"linear1": (784, 256), "linear2": (256, 128), "linear3": (128, 10)}  # (in, out)


ADAPTED = (
    "linear1",
    "linear2",
)  # q1's adapter: not the three layers the notebook trains, so its count is new


def _check_adapter_size(adapter_floats, adapter_bytes) -> str:
    r = 8
    floats = sum(r * sum(DIGITSNET_LAYERS[name]) for name in ADAPTED)
    adapter_floats = as_number("adapter_floats", adapter_floats)
    adapter_bytes = as_number("adapter_bytes", adapter_bytes)
    if adapter_floats == sum(n_in * n_out for n_in, n_out in (DIGITSNET_LAYERS[n] for n in ADAPTED)):
        raise Incorrect("`adapter_floats` counts the full weight matrices; count only lora_A and lora_B")
    if adapter_floats == sum(r * (n_in + n_out) for n_in, n_out in DIGITSNET_LAYERS.values()):
        raise Incorrect("`adapter_floats` counts linear3 too; this adapter is on linear1 and linear2 only")
    expect_equal("adapter_floats", adapter_floats, floats, "(r = 8 on linear1 and linear2)")
    if adapter_bytes == floats:
        raise Incorrect("`adapter_bytes` equals the number of floats; each float32 takes 4 bytes")
    expect_equal("adapter_bytes", adapter_bytes, 4 * floats, "(float32)")
    return f"{floats:,} numbers, {4 * floats / 1000:.1f} KB before file overhead"


q1 = Question(
    "q1 adapter size",
    _check_adapter_size,
    hints=[
        "A layer with weight (out, in) gets lora_A of shape (r, in) and lora_B of shape (out, r).",
        "Per layer that is r * (in + out) numbers; add linear1 (784 -> 256) and linear2 (256 -> 128), "
        "then multiply by 4 bytes per float32.",
    ],
)


def _example_state(ranks: dict[str, int], lora_alpha: float) -> dict[str, torch.Tensor]:
    state = {}
    for name, r in ranks.items():
        n_in, n_out = DIGITSNET_LAYERS[name]
        state[f"{name}.lora_A"] = torch.zeros(r, n_in)
        state[f"{name}.lora_B"] = torch.zeros(n_out, r)
        state[f"{name}.scaling"] = torch.tensor(lora_alpha / r)
    return state


# lora_alpha is neither 1 nor the rank, so no formula on the scaling (1 / scaling, alpha / scaling
# with a guessed alpha) gives the rank: only the shapes do.
_EXAMPLES = (({"linear1": 4, "linear2": 4, "linear3": 4}, 16.0), ({"linear1": 2, "linear3": 8}, 3.0))


def _check_adapter_ranks(adapter_ranks) -> None:
    for ranks, lora_alpha in _EXAMPLES:
        state = _example_state(ranks, lora_alpha)
        got = call_student(adapter_ranks, state, name="adapter_ranks")
        if not isinstance(got, dict):
            raise Incorrect(f"`adapter_ranks(state)` should return a dict, got {type(got).__name__}")
        got = {k: as_number(f"adapter_ranks(state)[{k!r}]", v) for k, v in got.items()}
        if set(got) != set(ranks):
            raise Incorrect(
                f"`adapter_ranks(state)` should have one key per adapted layer {sorted(ranks)}, "
                f"got {sorted(got)} (strip the '.lora_A' suffix from the key)"
            )
        wrong_dim = {name: DIGITSNET_LAYERS[name][0] for name in ranks}
        if got == wrong_dim:
            raise Incorrect("`adapter_ranks(state)` returned in_features; r is the first dimension of lora_A")
        if got != ranks:
            raise Incorrect(
                "`adapter_ranks(state)` gives a wrong rank for some layer; r is lora_A.shape[0] "
                f"(your answer for this state: {got})"
            )


q2 = Question(
    "q2 read the rank of each layer from an adapter",
    _check_adapter_ranks,
    hints=[
        "lora_A has shape (r, in_features): its first dimension is the rank.",
        "Loop over state.items(), keep the keys ending in '.lora_A', and map "
        "key.removesuffix('.lora_A') to value.shape[0].",
    ],
)


def _check_combine_factors(combine_factors) -> str:
    generator = torch.Generator().manual_seed(7)
    B1, A1 = torch.randn(5, 2, generator=generator), torch.randn(2, 6, generator=generator)
    B2, A2 = torch.randn(5, 3, generator=generator), torch.randn(3, 6, generator=generator)
    w1, w2 = 0.7, -1.5
    B1, A1, B2, A2 = (t.double() for t in (B1, A1, B2, A2))  # float32 or float64 answers compare alike
    expected, unweighted = w1 * B1 @ A1 + w2 * B2 @ A2, B1 @ A1 + B2 @ A2
    given = [t.float() for t in (B1, A1, B2, A2)]
    got = call_student(combine_factors, *given, w1, w2, name="combine_factors")
    if (
        not isinstance(got, (tuple, list))
        or len(got) != 2
        or not all(isinstance(t, torch.Tensor) for t in got)
    ):
        raise Incorrect("`combine_factors(...)` should return a pair of tensors (B, A)")
    B, A = (t.detach().to(torch.float64) if t.is_floating_point() else t for t in got)
    if tuple(B.shape) != (5, 5) or tuple(A.shape) != (5, 6):
        raise Incorrect(
            f"`combine_factors(...)` with ranks 2 and 3 should give B of shape (5, 5) and A of shape (5, 6), "
            f"got {tuple(B.shape)} and {tuple(A.shape)}; stack B side by side (dim=1), A on top (dim=0)"
        )
    if not (B.is_floating_point() and A.is_floating_point()):
        raise Incorrect("`combine_factors(...)` should return floating-point tensors")
    if torch.allclose(B @ A, unweighted, atol=1e-5):
        raise Incorrect("`combine_factors(...)`: B @ A ignores the weights w1 and w2")
    if not torch.allclose(B @ A, expected, atol=1e-5):
        raise Incorrect("`combine_factors(...)`: B @ A should equal w1 * B1 @ A1 + w2 * B2 @ A2")
    return "the weighted sum of two rank-2 and rank-3 updates is one adapter of rank at most 5"


q3 = Question(
    "q3 two adapters as one",
    _check_combine_factors,
    hints=[
        "A block product: [B1 B2] @ [[A1], [A2]] = B1 @ A1 + B2 @ A2.",
        "Put the weights on one side: B = torch.cat([w1 * B1, w2 * B2], dim=1), "
        "A = torch.cat([A1, A2], dim=0).",
    ],
)

__all__ = ["q1", "q2", "q3"]
