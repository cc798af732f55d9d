"""Exercises for notebook 04, LoRA with torch.nn.utils.parametrize."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from lora_teach.course.exercises import Incorrect, Question, call_student, expect_close, expect_equal

# q1 --------------------------------------------------------------------------------


def _check_q1(lora_param_count: Callable[[int, int, int], int]) -> str:
    cases = [(784, 256, 2, 2080), (256, 128, 2, 768), (128, 10, 2, 276), (100, 100, 5, 1000), (7, 3, 1, 10)]
    for in_features, out_features, r, expected in cases:
        got = call_student(lora_param_count, in_features, out_features, r, name="lora_param_count")
        expect_equal(
            "lora_param_count",
            got,
            expected,
            context=f"for in_features={in_features}, out_features={out_features}, r={r}",
        )
    return "A is (r, in) and B is (out, r), so a layer adds r * (in + out) parameters."


q1 = Question(
    "q1 LoRA parameters of a layer",
    _check_q1,
    hints=[
        "Write down the shapes of lora_A and lora_B for a layer with weight (out, in).",
        "lora_A has r * in_features entries and lora_B has out_features * r entries; add them.",
    ],
)

# q2 --------------------------------------------------------------------------------


def _check_q2(lora_weight: Callable) -> str:
    generator = torch.Generator().manual_seed(4)
    out_features, in_features, r, scaling = 5, 7, 2, 0.5
    weight32 = torch.randn(out_features, in_features, generator=generator)  # float32, as a model's weights
    lora_A32 = torch.randn(r, in_features, generator=generator)
    lora_B32 = torch.randn(out_features, r, generator=generator)
    weight, lora_A, lora_B = (t.double() for t in (weight32, lora_A32, lora_B32))  # compared in float64
    expected = weight + scaling * lora_B @ lora_A
    given = [t.clone() for t in (weight32, lora_A32, lora_B32)]
    # passed as they are (copies already), so that an in-place change to W can be named
    got = call_student(lora_weight, *given, scaling, name="lora_weight", copies=False)
    if not torch.equal(given[0], weight32):
        raise Incorrect(
            "`lora_weight` changed the weight W it was given (W += ... or W.add_(...)); return a new tensor "
            "(W + ...) so that the frozen weight stays as it was"
        )
    if not isinstance(got, torch.Tensor):
        raise Incorrect(f"`lora_weight` should return a tensor, got {type(got).__name__}")
    if got.is_floating_point():
        got = got.detach().to(torch.float64)  # float32 or float64, compared in float64
    if tuple(got.shape) == (in_features, out_features):
        raise Incorrect("`lora_weight` returns shape (in, out): the weight of nn.Linear is (out, in)")
    if got.shape == expected.shape and torch.allclose(got, weight + lora_B @ lora_A, atol=1e-5):
        raise Incorrect("`lora_weight` forgets the scaling: multiply B @ A by `scaling`")
    if got.shape == expected.shape and torch.allclose(got, scaling * lora_B @ lora_A, atol=1e-5):
        raise Incorrect("`lora_weight` returns only the update; add the frozen weight W as well")
    expect_close("lora_weight", got, expected, context="for a random (5, 7) weight with r=2, scaling=0.5")
    return "this is exactly what a LoRA parametrization's forward(W) returns."


q2 = Question(
    "q2 the parametrized weight",
    _check_q2,
    hints=[
        "lora_B is (out, r) and lora_A is (r, in): which order of the product gives (out, in)?",
        "The new weight is the old one plus the scaled low-rank update: W + scaling * (B @ A).",
    ],
)

# q3 --------------------------------------------------------------------------------


class _Factors(nn.Module):
    """A minimal LoRA parametrization for the check (same names as the package's)."""

    def __init__(self, in_features: int, out_features: int, r: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)  # never the student's global random state
        self.lora_A = nn.Parameter(torch.randn(r, in_features, generator=generator))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.lora_B @ self.lora_A


def _parametrized_model() -> nn.Module:
    """Adapted layers beside plain ones whose module names contain "A", "B" and "lora_A": only the
    last part of a parameter's name tells a LoRA factor apart."""
    model = nn.ModuleDict(
        {
            "encoder": nn.Linear(8, 6),
            "Block_B": nn.Linear(6, 6),
            "lora_A_head": nn.Linear(6, 4),
            "decoder": nn.Linear(4, 3),
        }
    )
    for name in ("encoder", "Block_B", "decoder"):
        layer = model[name]
        parametrize.register_parametrization(
            layer, "weight", _Factors(layer.in_features, layer.out_features, 2)
        )
    return model


def _check_q3(freeze_all_but_lora: Callable[[nn.Module], None]) -> str:
    with torch.random.fork_rng(devices=[]):  # building the model must not move the student's RNG
        model = _parametrized_model()
    # what the answer must reach, read from the model before the student's function sees it
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lora = {name for name in before if name.rpartition(".")[2] in ("lora_A", "lora_B")}
    # the function works in place on this model: that is the exercise
    call_student(freeze_all_but_lora, model, name="freeze_all_but_lora", returns=False, copies=False)
    after = dict(model.named_parameters())
    if set(after) != set(before) or any(
        after[n].shape != before[n].shape or not torch.equal(after[n].detach(), before[n]) for n in before
    ):
        raise Incorrect(
            "`freeze_all_but_lora` changed the model's parameters (removed, replaced or edited some); "
            "only set requires_grad"
        )
    trainable = {name for name, p in after.items() if p.requires_grad}
    if trainable == set(before):
        raise Incorrect("`freeze_all_but_lora` left every parameter trainable; set requires_grad to False")
    if lora - trainable:
        raise Incorrect(f"`freeze_all_but_lora` froze LoRA factors too: {sorted(lora - trainable)}")
    extra = sorted(trainable - lora)
    if extra:
        raise Incorrect(
            f"`freeze_all_but_lora` leaves {len(extra)} other tensors trainable, e.g. {extra[0]!r}; "
            "freeze the biases and the original weights as well, and decide from the last part of each "
            "name (a module may be called 'lora_A_head')"
        )
    return "only the LoRA factors train, whatever the modules around them are called."


q3 = Question(
    "q3 freeze all but LoRA",
    _check_q3,
    hints=[
        "Loop over model.named_parameters() and decide from each name whether it is a LoRA factor.",
        "The last part of the name (name.rpartition('.')[2]) is 'lora_A' or 'lora_B' for the factors; "
        "call param.requires_grad_(...) with True for those and False for everything else.",
    ],
)

__all__ = ["q1", "q2", "q3"]
