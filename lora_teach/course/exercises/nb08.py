"""Exercises for notebook 08, beyond LoRA: LoRA+ parameter groups, the DoRA weight and PiSSA's factors."""

from __future__ import annotations

import torch
from torch import nn

from lora_teach.adapters import add_lora, mark_only_lora_as_trainable
from lora_teach.course.exercises import Incorrect, Question, as_number, call_student


def _check_lora_plus_groups(lora_plus_groups) -> str:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    add_lora(model, r=2, lora_alpha=1.0, init_lora_weights="normal")
    mark_only_lora_as_trainable(model)
    # what the answer must cover, read before the student's function sees the model
    trainable_before = {n for n, p in model.named_parameters() if p.requires_grad}
    values_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # the groups must hold this model's own parameters, so the function gets the model itself
    groups = call_student(lora_plus_groups, model, 1e-3, 16.0, name="lora_plus_groups", copies=False)
    after = dict(model.named_parameters())
    if (
        set(after) != set(values_before)
        or {n for n, p in after.items() if p.requires_grad} != trainable_before
        or any(not torch.equal(after[n].detach(), v) for n, v in values_before.items())
    ):
        raise Incorrect(
            "`lora_plus_groups(...)` changed the model (which parameters train, or their values); "
            "only read it and return the groups"
        )
    groups = list(groups) if isinstance(groups, (list, tuple)) else groups
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise Incorrect(
            "`lora_plus_groups(model, lr, ratio)` should return a list of dicts with 'params' and 'lr'"
        )
    lr_of = {}
    for group in groups:
        if "params" not in group or "lr" not in group:
            raise Incorrect("each group of `lora_plus_groups(...)` needs the keys 'params' and 'lr'")
        if not isinstance(group["params"], (list, tuple)):
            raise Incorrect("each group's 'params' in `lora_plus_groups(...)` should be a list of parameters")
        lr = as_number("each group's 'lr' in `lora_plus_groups(...)`", group["lr"])
        for p in group["params"]:
            lr_of[id(p)] = lr
    names = {id(p): n for n, p in model.named_parameters()}
    for name, p in model.named_parameters():
        if not p.requires_grad and id(p) in lr_of:
            raise Incorrect(
                f"`lora_plus_groups(...)` includes the frozen parameter {name!r}; keep only lora_A and lora_B"
            )
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) not in lr_of:
            raise Incorrect(f"`lora_plus_groups(...)` leaves out the trainable parameter {name!r}")
        expected = 1e-3 * 16.0 if name.endswith("lora_B") else 1e-3
        if abs(lr_of[id(p)] - expected) > 1e-12:
            which = "lora_B gets lr * ratio" if name.endswith("lora_B") else "lora_A keeps the base lr"
            raise Incorrect(
                f"`lora_plus_groups(...)` gives {name!r} lr {lr_of[id(p)]:g}, not the right one ({which})"
            )
    unknown = [i for i in lr_of if i not in names]
    if unknown:
        raise Incorrect("`lora_plus_groups(...)` holds tensors that are not parameters of the model")
    torch.optim.Adam(groups)  # must be accepted by an optimizer
    return "lora_A at lr, lora_B at lr * ratio"


q1 = Question(
    "q1 LoRA+ parameter groups",
    _check_lora_plus_groups,
    hints=[
        "An optimizer takes a list of groups, e.g. [{'params': [...], 'lr': 1e-3}, {'params': [...], 'lr': 1.6e-2}].",
        "Split model.named_parameters() that require grad by whether the name ends in 'lora_B'.",
    ],
)


def _reference_dora(weight, lora_A, lora_B, scaling, magnitude):
    directed = weight + scaling * lora_B @ lora_A
    return magnitude[:, None] * directed / directed.norm(dim=1, keepdim=True)


def _check_dora_weight(dora_weight) -> str:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(4, 7, generator=generator)
    lora_A, lora_B = torch.randn(2, 7, generator=generator), torch.randn(4, 2, generator=generator)
    magnitude = torch.rand(4, generator=generator) + 0.5
    args = (weight, lora_A, lora_B, 0.5, magnitude)
    exact = [t.double() if isinstance(t, torch.Tensor) else t for t in args]  # compared in float64
    expected = _reference_dora(*exact)
    directed = exact[0] + 0.5 * exact[2] @ exact[1]
    per_column = exact[4][:, None] * directed / directed.norm(dim=0, keepdim=True)
    unnormalised = exact[4][:, None] * directed
    got = call_student(dora_weight, *args, name="dora_weight")
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (4, 7):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise Incorrect(f"`dora_weight(...)` should return a (out, in) = (4, 7) tensor, got {shape}")
    if not got.is_floating_point():
        raise Incorrect(f"`dora_weight(...)` should return a floating-point tensor, got {got.dtype}")
    got = got.detach().to(torch.float64)
    if torch.allclose(got, per_column, atol=1e-5):
        raise Incorrect(
            "`dora_weight(...)` normalises columns (dim=0); DoRA normalises each output row (dim=1)"
        )
    if torch.allclose(got, unnormalised, atol=1e-5):
        raise Incorrect("`dora_weight(...)` forgets to divide by the row norms of W0 + scaling * B @ A")
    if not torch.allclose(got, expected, atol=1e-5):
        raise Incorrect(
            "`dora_weight(...)` should be magnitude[:, None] * V / ||V|| per row, V = W0 + scaling * B @ A"
        )
    return "every row has length magnitude[i] and the direction of W0 + scaling * B @ A"


q2 = Question(
    "q2 the DoRA weight",
    _check_dora_weight,
    hints=[
        "First form the direction V = weight + scaling * lora_B @ lora_A, shape (out, in).",
        "Divide V by V.norm(dim=1, keepdim=True) (one norm per output row) and multiply by magnitude[:, None].",
    ],
)


def _check_pissa_factors(pissa_factors) -> str:
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(6, 9, generator=generator)
    r, scaling = 2, 0.5
    exact = weight.double()  # compared in float64, whatever float type the answer has
    U, S, Vh = torch.linalg.svd(exact, full_matrices=False)
    principal = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
    got = call_student(pissa_factors, weight, r, scaling, name="pissa_factors")
    if (
        not isinstance(got, (tuple, list))
        or len(got) != 3
        or not all(isinstance(t, torch.Tensor) for t in got)
    ):
        raise Incorrect(
            "`pissa_factors(weight, r, scaling)` should return three tensors (lora_B, lora_A, residual)"
        )
    if not all(t.is_floating_point() for t in got):
        raise Incorrect("`pissa_factors(...)` should return floating-point tensors")
    lora_B, lora_A, residual = (t.detach().to(torch.float64) for t in got)
    shapes = tuple(tuple(t.shape) for t in got)
    if shapes != ((6, 2), (2, 9), (6, 9)):
        raise Incorrect(
            f"`pissa_factors(...)` for a (6, 9) weight and r=2 should give shapes (6, 2), (2, 9), (6, 9), got {shapes}"
        )
    if not torch.allclose(residual + scaling * lora_B @ lora_A, exact, atol=1e-5):
        raise Incorrect("`pissa_factors(...)`: residual + scaling * lora_B @ lora_A must equal the weight")
    if torch.allclose(lora_B @ lora_A, principal, atol=1e-4):
        raise Incorrect(
            "`pissa_factors(...)`: lora_B @ lora_A is the principal part; divide S_r by scaling first"
        )
    if not torch.allclose(scaling * lora_B @ lora_A, principal, atol=1e-4):
        raise Incorrect("`pissa_factors(...)`: scaling * lora_B @ lora_A should be the top-r part of the SVD")
    if not torch.allclose(lora_B.T @ lora_B, lora_A @ lora_A.T, atol=1e-4):
        raise Incorrect(
            "`pissa_factors(...)`: split sqrt(S_r) evenly: lora_B = U_r sqrt(S_r), lora_A = sqrt(S_r) V_r^T"
        )
    return "the adapter holds the top-r singular directions, the frozen residual holds the rest"


q3 = Question(
    "q3 PiSSA's factors",
    _check_pissa_factors,
    hints=[
        "U, S, Vh = torch.linalg.svd(weight, full_matrices=False); keep the first r columns of U, "
        "the first r values of S and the first r rows of Vh.",
        "With root = (S[:r] / scaling).sqrt(): lora_B = U[:, :r] * root, lora_A = root[:, None] * Vh[:r], "
        "residual = weight - scaling * lora_B @ lora_A.",
    ],
)

__all__ = ["q1", "q2", "q3"]
