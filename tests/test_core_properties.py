"""Issue 11's property: on random models, every verb either refuses with a clear error and leaves the
model bit-identical, or does what it documents (output unchanged at init, merged == unmerged,
unmerge restores W, a saved adapter reloads to the same outputs, in PEFT's format too).
"""

import copy
import math
import tempfile
from pathlib import Path

import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import nn

from lora_teach import (
    LinearWithLoRA,
    add_lora,
    load_adapter,
    load_lora_state_dict,
    lora_modules,
    lora_state_dict,
    merge_lora,
    save_adapter,
)
from tests.test_core_guarantees import assert_unchanged, snapshot


class Chain(nn.Module):
    """Stages applied in order with tanh between them; a stage may sit inside a container, and the
    same layer may appear at two places."""

    def __init__(self, stages: list[nn.Module]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = torch.tanh(stage(x))
        return x


class Holder(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


@st.composite
def models(draw):
    widths = draw(st.lists(st.integers(2, 6), min_size=2, max_size=5))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    stages = []
    for d_in, d_out in zip(widths, widths[1:]):
        layer = nn.Linear(d_in, d_out, bias=draw(st.booleans()))
        nest = draw(st.sampled_from(["flat", "sequential", "holder"]))
        stages.append(
            layer if nest == "flat" else nn.Sequential(layer) if nest == "sequential" else Holder(layer)
        )
        if d_in == d_out and draw(st.booleans()):  # the same layer again, at a second place
            stages.append(Holder(layer))
    return Chain(stages), widths[0]


def linear_names(model):
    return [n for n, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.Linear)]


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    models(),
    st.data(),
    st.sampled_from(["wrapper", "parametrize"]),
    st.integers(0, 4),
    st.sampled_from([math.nan, 0.0, 0.5, 1, 2, 4.0, 8, 16]),
    st.sampled_from([True, "gaussian", "normal", "pissa"]),
    st.booleans(),
    st.booleans(),
)
def test_every_verb_refuses_cleanly_or_keeps_its_promise(
    model_and_width, data, method, r, alpha, init, use_dora, use_rslora
):
    model, d_in = model_and_width
    names = linear_names(model)
    targets = data.draw(
        st.one_of(st.none(), st.lists(st.sampled_from([*names, "missing"]), min_size=1, max_size=4))
    )
    x = torch.randn(3, d_in)
    expected = model(x)
    plain = copy.deepcopy(model)
    before = snapshot(model)
    try:
        adapted = add_lora(
            model,
            r,
            lora_alpha=alpha,
            target_modules=targets,
            init_lora_weights=init,
            use_dora=use_dora,
            use_rslora=use_rslora,
            method=method,
        )
    except (ValueError, TypeError) as error:
        assert str(error).splitlines()[0]  # a message, not a bare exception
        assert_unchanged(model, before)
        event("refused")
        return
    event("adapted")
    assert adapted == [n for n, _ in lora_modules(model)]
    close(model(x), expected)  # a fresh adapter (PiSSA, DoRA included) starts as the base model

    g = torch.Generator().manual_seed(r)
    with torch.no_grad():
        for _, lora in lora_modules(model):
            lora.lora_B.add_(torch.randn(lora.lora_B.shape, generator=g) * 0.1)
    trained = model(x)
    state = lora_state_dict(model)

    original = copy.deepcopy(model)
    merged = merge_lora(copy.deepcopy(model))
    assert not list(lora_modules(merged))
    close(merged(x), trained)
    assert torch.equal(model(x), trained)  # merging a copy leaves this model as it was

    wrappers = [lora for _, lora in lora_modules(model) if isinstance(lora, LinearWithLoRA)]
    weights = [w.base_layer.weight.detach().clone() for w in wrappers]
    for wrapper in wrappers:
        wrapper.merge()
    close(model(x), trained)
    for wrapper, weight in zip(wrappers, weights):
        wrapper.unmerge()
        close(wrapper.base_layer.weight, weight)

    with torch.no_grad():  # load into the copy made before merging, after scrambling its factors
        for _, lora in lora_modules(original):
            lora.lora_A.mul_(-2.0)
    bad = dict(state)
    key = next(k for k in bad if k.endswith(".lora_A"))
    bad[key] = torch.full_like(bad[key], math.nan)
    before = snapshot(original)
    try:
        load_lora_state_dict(original, bad)
        raise AssertionError("a NaN adapter was loaded")
    except ValueError as error:
        assert "holds NaN or inf" in str(error)
    assert_unchanged(original, before)
    load_lora_state_dict(original, state)
    close(original(x), trained)

    with tempfile.TemporaryDirectory() as folder:  # PEFT's format, into the model before add_lora
        save_adapter(original, Path(folder) / "adapter")
        assert load_adapter(plain, Path(folder) / "adapter", method=method) == adapted
    close(plain(x), trained)
