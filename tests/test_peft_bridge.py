"""Cross-checks against the real Hugging Face PEFT (no mocks): same weights in, same numbers out."""

import copy
import json

import pytest
import torch
from torch import nn

from lora_teach import (
    add_lora,
    load_adapter,
    lora_modules,
    loraplus_param_groups,
    mark_only_lora_as_trainable,
    merge_lora,
    save_adapter,
)

peft = pytest.importorskip("peft", reason="the PEFT cross-checks need `pip install -e .[peft]`")
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.optimizers import create_loraplus_optimizer  # noqa: E402

TARGETS = ["q_proj", "v_proj", "head"]


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.q_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.v_proj(torch.relu(self.q_proj(self.norm(h))))


class Net(nn.Module):
    """Embedding, two blocks with q_proj/v_proj, a head: names like a small transformer's."""

    def __init__(self, d: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, d)
        self.blocks = nn.Sequential(Block(d), Block(d))
        self.head = nn.Linear(d, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(tokens)))


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(seed))


def base_net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def peft_layer(peft_model, name):
    return peft_model.base_model.model.get_submodule(name)


def randomize(model, seed=1):
    """Non-zero factors (and magnitudes), as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, lora in lora_modules(model):
            for p in lora.parameters(recurse=False):
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def copy_into_peft(ours, peft_model):
    with torch.no_grad():
        for name, lora in lora_modules(ours):
            layer = peft_layer(peft_model, name)
            layer.lora_A["default"].weight.copy_(lora.lora_A)
            layer.lora_B["default"].weight.copy_(lora.lora_B)
            if lora.use_dora:
                layer.lora_magnitude_vector["default"].weight.copy_(lora.lora_magnitude_vector)


def pair(method="wrapper", r=2, lora_alpha=4, seed=0, **options):
    """Our model and PEFT's, on the same base weights, with the same (trained-like) adapters."""
    ours = base_net(seed)
    theirs = get_peft_model(
        copy.deepcopy(ours), LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=TARGETS, **options)
    )
    add_lora(ours, r, lora_alpha=lora_alpha, target_modules=TARGETS, method=method, **options)
    randomize(ours)
    copy_into_peft(ours, theirs)
    return ours, theirs


def grads(model, rename):
    return {rename(n): p.grad for n, p in model.named_parameters() if p.requires_grad}


def our_name(peft_name: str) -> str:
    name = peft_name.removeprefix("base_model.model.")
    for leaf in ("lora_A", "lora_B", "lora_magnitude_vector"):
        name = name.replace(f".{leaf}.default.weight", f".{leaf}")
    return name


def our_param_name(name: str) -> str:
    return name.replace(".parametrizations.weight.0", "")


@pytest.mark.parametrize("method", ["wrapper", "parametrize"])
@pytest.mark.parametrize(
    "options", [{}, {"use_rslora": True}, {"use_dora": True}, {"use_dora": True, "use_rslora": True}]
)
def test_forward_and_gradients_equal_peft(method, options):
    ours, theirs = pair(method, **options)
    mark_only_lora_as_trainable(ours)
    x = tokens()
    out_ours, out_theirs = ours(x), theirs(x)
    if method == "wrapper" and not options:
        assert torch.equal(out_ours, out_theirs)
    torch.testing.assert_close(out_ours, out_theirs, rtol=1e-5, atol=1e-6)
    out_ours.square().sum().backward()
    out_theirs.square().sum().backward()
    g_ours, g_theirs = grads(ours, our_param_name), grads(theirs, our_name)
    assert set(g_ours) == set(g_theirs)
    for name in g_ours:
        torch.testing.assert_close(g_ours[name], g_theirs[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("use_dora", [False, True])
def test_dropout_in_training_equals_peft_with_the_same_random_mask(use_dora):
    ours, theirs = pair(lora_dropout=0.5, use_dora=use_dora)
    ours.train(), theirs.train()
    x = tokens()
    torch.manual_seed(5)
    out_ours = ours(x)
    torch.manual_seed(5)
    out_theirs = theirs(x)
    torch.testing.assert_close(out_ours, out_theirs, rtol=1e-5, atol=1e-6)
    ours.eval(), theirs.eval()
    assert not torch.allclose(ours(x), out_ours)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["wrapper", "parametrize"])
def test_fresh_dora_magnitudes_equal_peft(method):
    ours = base_net()
    theirs = get_peft_model(copy.deepcopy(ours), LoraConfig(r=2, target_modules=TARGETS, use_dora=True))
    add_lora(ours, 2, target_modules=TARGETS, use_dora=True, method=method)
    for name, lora in lora_modules(ours):
        magnitude = peft_layer(theirs, name).lora_magnitude_vector["default"].weight
        torch.testing.assert_close(lora.lora_magnitude_vector, magnitude)


@pytest.mark.parametrize("method", ["wrapper", "parametrize"])
@pytest.mark.parametrize("use_rslora", [False, True])
def test_pissa_factors_and_residual_equal_peft(method, use_rslora):
    ours = base_net()
    x = tokens()
    before = ours(x)
    config = LoraConfig(
        r=3, lora_alpha=5, target_modules=TARGETS, init_lora_weights="pissa", use_rslora=use_rslora
    )
    theirs = get_peft_model(copy.deepcopy(ours), config)
    add_lora(
        ours,
        3,
        lora_alpha=5,
        target_modules=TARGETS,
        init_lora_weights="pissa",
        use_rslora=use_rslora,
        method=method,
    )
    torch.testing.assert_close(ours(x), before, rtol=1e-5, atol=1e-5)
    for name, lora in lora_modules(ours):
        layer = peft_layer(theirs, name)
        torch.testing.assert_close(lora.lora_A, layer.lora_A["default"].weight)
        torch.testing.assert_close(lora.lora_B, layer.lora_B["default"].weight)
        residual = ours.get_submodule(name)
        residual = (
            residual.base_layer.weight if method == "wrapper" else residual.parametrizations.weight.original
        )
        torch.testing.assert_close(residual, layer.base_layer.weight)


@pytest.mark.parametrize("use_dora", [False, True])
def test_merge_and_unmerge_give_peft_weights(use_dora):
    ours, theirs = pair(use_dora=use_dora)
    for name, lora in lora_modules(ours):
        layer = peft_layer(theirs, name)
        lora.merge()
        layer.merge()
        torch.testing.assert_close(lora.base_layer.weight, layer.base_layer.weight, rtol=1e-6, atol=1e-6)
        lora.unmerge()
        layer.unmerge()
        torch.testing.assert_close(lora.base_layer.weight, layer.base_layer.weight, rtol=1e-6, atol=1e-6)
    x = tokens()
    torch.testing.assert_close(merge_lora(ours)(x), theirs.merge_and_unload()(x), rtol=1e-5, atol=1e-6)


def test_loraplus_groups_equal_peft_create_loraplus_optimizer():
    ours, theirs = pair(use_dora=True)
    mark_only_lora_as_trainable(ours, bias="all")
    for model in (ours, theirs):  # PEFT's bias="all" by hand, plus an unfrozen norm and embedding
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name or "bias" in name or "norm" in name or "embed" in name)
    optimizer = create_loraplus_optimizer(
        theirs, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16, loraplus_weight_decay=0.01
    )
    names = {id(p): our_name(n).replace(".base_layer", "") for n, p in theirs.named_parameters()}
    peft_groups = {
        (g["lr"], g["weight_decay"], frozenset(names[id(p)] for p in g["params"]))
        for g in optimizer.param_groups
        if g["params"]
    }
    names = {id(p): n.replace(".base_layer", "") for n, p in ours.named_parameters()}
    our_groups = {
        (g["lr"], g["weight_decay"], frozenset(names[id(p)] for p in g["params"]))
        for g in loraplus_param_groups(ours, lr=1e-3, ratio=16, weight_decay=0.01)
    }
    assert our_groups == peft_groups
    assert len(our_groups) == 3  # A and the embedding; B and DoRA's magnitudes; biases and norms (no decay)


@pytest.mark.parametrize("method", ["wrapper", "parametrize"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"use_dora": True},
        {"use_rslora": True, "rank_pattern": {"head": 1}, "alpha_pattern": {"blocks.1.q_proj": 3}},
        {"init_lora_weights": "pissa"},
    ],
)
def test_our_folder_loads_in_peft_with_equal_outputs(tmp_path, method, options):
    base = base_net()
    ours = copy.deepcopy(base)
    add_lora(ours, 2, lora_alpha=4, target_modules=TARGETS, method=method, **options)
    randomize(ours)
    save_adapter(ours, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["peft_type"] == "LORA"
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    x = tokens()
    torch.testing.assert_close(loaded(x), ours(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("into", ["plain", "adapted"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"use_dora": True, "lora_dropout": 0.1},
        {"use_rslora": True, "rank_pattern": {"head": 1}, "alpha_pattern": {"q_proj": 3}},
        {"init_lora_weights": "pissa"},
    ],
)
def test_peft_folder_loads_here_with_equal_outputs(tmp_path, into, options):
    base = base_net()
    theirs = get_peft_model(
        copy.deepcopy(base), LoraConfig(r=2, lora_alpha=4, target_modules=TARGETS, **options)
    )
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * 0.3)
    theirs.save_pretrained(tmp_path / "peft")
    ours = base
    if into == "adapted":
        add_lora(ours, 2, lora_alpha=4, target_modules=TARGETS, **options)
    names = load_adapter(ours, tmp_path / "peft")
    assert names == ["blocks.0.q_proj", "blocks.0.v_proj", "blocks.1.q_proj", "blocks.1.v_proj", "head"]
    ours.eval(), theirs.eval()
    x = tokens()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
