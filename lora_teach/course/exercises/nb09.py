"""Exercises for notebook 09, LoRA on a tiny transformer: the share of the parameters that attention holds,
the parameter count r (d + k) per target set, and sampling with a temperature. Wrong-answer messages
say what went wrong, never the expected value."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lora_teach.course.exercises import Incorrect, Question, as_number, call_student

D, LAYERS, HIDDEN = 128, 4, 512  # TinyGPT: d_model, blocks, MLP width
QV_R8 = LAYERS * 2 * 8 * (D + D)  # q_proj and v_proj, r = 8
ALL_R2 = LAYERS * 2 * (4 * (D + D) + 2 * (D + HIDDEN))  # the six linear layers of each block, r = 2
ATTENTION = LAYERS * 4 * D * D
TOTAL = 832_512


def _number(name: str, value: Any) -> float:
    """The answer as a float (numpy and 0-d tensors accepted), or an Incorrect that says what it is instead."""
    value = as_number(name, value)
    if not math.isfinite(value):
        raise Incorrect(f"`{name}` should be a finite number, got {value}")
    return float(value)


# q1 --------------------------------------------------------------------------------


def _check_q1(attention_share: Any, attention_is_the_biggest_chunk: Any) -> str:
    share = _number("attention_share", attention_share)
    if share > 1:
        raise Incorrect(
            "`attention_share` is more than 1; give a fraction of all parameters (between 0 and 1)"
        )
    if math.isclose(share, 2 * ATTENTION / TOTAL, rel_tol=1e-3):
        raise Incorrect(
            "`attention_share` counts the MLP's up_proj and down_proj; attention is q, k, v and o_proj"
        )
    if math.isclose(share, ATTENTION / 2 / TOTAL, rel_tol=1e-3):
        raise Incorrect("`attention_share` counts only q_proj and v_proj; attention has four projections")
    if not math.isclose(share, ATTENTION / TOTAL, rel_tol=1e-3):
        raise Incorrect(
            "`attention_share` is not the share of q, k, v and o_proj in all of TinyGPT's parameters; "
            "sum p.numel() over parameters whose name contains '.attn.', divide by the total"
        )
    flag = attention_is_the_biggest_chunk
    if isinstance(flag, np.bool_) or (
        isinstance(flag, torch.Tensor) and flag.dtype == torch.bool and flag.numel() == 1
    ):
        attention_is_the_biggest_chunk = bool(flag)  # a comparison of numpy or torch numbers
    if not isinstance(attention_is_the_biggest_chunk, bool):
        raise Incorrect("`attention_is_the_biggest_chunk` should be True or False")
    if attention_is_the_biggest_chunk:
        raise Incorrect(
            "compare `attention_share` with the MLP's share: which of the two holds more of the parameters?"
        )
    return (
        f"attention holds {ATTENTION / TOTAL:.1%}, the MLP {2 * ATTENTION / TOTAL:.1%}: with the usual 4x MLP a block "
        "keeps twice as much in its MLP (8 d^2 against 4 d^2), so the review's sentence does not hold here."
    )


q1 = Question(
    "nb09.q1",
    _check_q1,
    hints=[
        "Loop over model.named_parameters(); the attention matrices are the ones whose name contains '.attn.'.",
        "Each block: 4 attention matrices of 128 x 128 and MLP matrices 128 x 512 and 512 x 128. Divide by 832,512.",
    ],
)

# q2 --------------------------------------------------------------------------------


def _check_q2(qv_r8: Any, all_linear_r2: Any) -> str:
    qv = _number("qv_r8", qv_r8)
    if qv == QV_R8 / LAYERS:
        raise Incorrect("`qv_r8` counts one block; TinyGPT has four")
    if qv == QV_R8 / 2:
        raise Incorrect(
            "`qv_r8` is half the count: either one matrix per block (q_proj and v_proj are two) or only A "
            "of each adapter (B adds r * d_out more)"
        )
    if qv == LAYERS * 2 * D * D:
        raise Incorrect("`qv_r8` counts the frozen matrices d * k; the adapter holds r * (d + k) per matrix")
    if qv != QV_R8:
        raise Incorrect(
            "`qv_r8` is not the adapter's count; add r * (d_in + d_out) over every adapted matrix"
        )
    both = _number("all_linear_r2", all_linear_r2)
    if both == LAYERS * 6 * 2 * (D + D):
        raise Incorrect(
            "`all_linear_r2` treats up_proj and down_proj as 128 x 128; they are 128 x 512 and 512 x 128"
        )
    if both == ALL_R2 / LAYERS:
        raise Incorrect("`all_linear_r2` counts one block; TinyGPT has four")
    if both != ALL_R2:
        raise Incorrect(
            "`all_linear_r2` is not the adapter's count; r * (d_in + d_out) for each of the six matrices of a block"
        )
    return (
        f"{QV_R8:,} against {ALL_R2:,}: rank 2 on every linear layer costs about what rank 8 on q and v does, "
        "which is why the notebook compares the two."
    )


q2 = Question(
    "nb09.q2",
    _check_q2,
    hints=[
        "A rank-r adapter on a d_out x d_in matrix holds A (r x d_in) and B (d_out x r). Which matrices, how many blocks?",
        "qv_r8 = 4 blocks * 2 matrices * 8 * (128 + 128); all linear adds o_proj, k_proj (128 x 128), "
        "up_proj (128 -> 512) and down_proj (512 -> 128), each at r = 2.",
    ],
)

# q3 --------------------------------------------------------------------------------


def _check_q3(next_char_probs: Callable) -> str:
    generator = torch.Generator().manual_seed(9)
    logits = torch.randn(7, generator=generator, dtype=torch.float64) * 2
    for temperature in (1.0, 0.5, 2.0):
        expected = torch.softmax(logits / temperature, -1)
        got = call_student(next_char_probs, logits, temperature, name="next_char_probs")
        if not isinstance(got, torch.Tensor):
            raise Incorrect(f"`next_char_probs` should return a tensor, got {type(got).__name__}")
        got = got.detach().to(torch.float64)
        if got.shape != logits.shape:
            raise Incorrect(
                f"`next_char_probs` should return one probability per logit, got shape {tuple(got.shape)}"
            )
        if not torch.isfinite(got).all() or (got < 0).any() or abs(got.sum().item() - 1) > 1e-4:
            raise Incorrect(
                f"`next_char_probs` at temperature {temperature} does not return probabilities summing to 1"
            )
        if temperature != 1.0 and torch.allclose(got, torch.softmax(logits, -1), atol=1e-6):
            raise Incorrect("`next_char_probs` ignores the temperature")
        if temperature != 1.0 and torch.allclose(got, torch.softmax(logits * temperature, -1), atol=1e-6):
            raise Incorrect("`next_char_probs` multiplies the logits by the temperature; divide them")
        if not torch.allclose(got, expected, atol=1e-6):
            raise Incorrect(
                f"`next_char_probs` at temperature {temperature} gives other probabilities than the expected "
                "ones; check how the temperature enters"
            )
    return (
        "a low temperature sharpens the distribution towards the likeliest character, a high one flattens it."
    )


q3 = Question(
    "nb09.q3",
    _check_q3,
    hints=[
        "The temperature rescales the logits before the softmax.",
        "return torch.softmax(logits / temperature, dim=-1)",
    ],
)

__all__ = ["q2", "q1", "q3"]
