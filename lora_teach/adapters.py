"""Model-level verbs: add LoRA to a model, freeze it, switch it, merge it, save and load it.

Both methods are supported everywhere: ``"wrapper"`` replaces each target
``nn.Linear`` by a ``LinearWithLoRA``; ``"parametrize"`` registers a
``LoRAParametrization`` on its ``weight``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

from lora_teach.lora import LinearWithLoRA, LoRAFactors, LoRAParametrization, check_init, check_rank

METHODS = ("wrapper", "parametrize")
BIAS_MODES = ("none", "all", "lora_only")


def _lora_of(module: nn.Module) -> LoRAFactors | None:
    """The LoRA factors attached to ``module`` by either method, or None."""
    if isinstance(module, LinearWithLoRA):
        return module
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations["weight"]:
            if isinstance(p, LoRAParametrization):
                return p
    return None


def lora_modules(model: nn.Module) -> Iterator[tuple[str, LoRAFactors]]:
    """Yield (layer name, its LoRA factors) for every adapted layer, in model order."""
    for name, module in model.named_modules():
        lora = _lora_of(module)
        if lora is not None:
            yield name, lora


def _require_lora(model: nn.Module) -> list[tuple[str, LoRAFactors]]:
    found = list(lora_modules(model))
    if not found:
        raise ValueError("the model has no LoRA adapters; call add_lora(model, r=...) first")
    return found


def _select_targets(
    model: nn.Module, target_modules: str | Iterable[str] | None, linear_names: list[str]
) -> list[str]:
    """The names ``target_modules`` selects, as PEFT selects them (see ``add_lora``)."""
    names = [n for n, _ in model.named_modules() if n]
    if target_modules is None:
        wrapped = [n for n, m in model.named_modules() if isinstance(m, LinearWithLoRA)]
        if not linear_names and not wrapped:
            raise ValueError("the model has no nn.Linear modules to adapt")
        return [n for n in names if n in linear_names or n in wrapped]
    if isinstance(target_modules, str):
        try:
            pattern = re.compile(target_modules)
        except re.error as error:
            raise ValueError(
                f"target_modules {target_modules!r} is not a valid regular expression: {error}"
            ) from None
        chosen = [n for n in names if pattern.fullmatch(n)]
        if not chosen:
            raise ValueError(
                f"target_modules {target_modules!r} (a regular expression for the whole name) matches no "
                f"module; nn.Linear modules are {linear_names}"
            )
        return chosen
    entries = list(target_modules)  # a generator is read once, here
    if not entries or not all(isinstance(e, str) for e in entries):
        raise TypeError(
            f"target_modules must be None, a regular expression, or a non-empty list of module names, "
            f"got {entries!r}"
        )
    chosen = []
    for entry in entries:
        matched = [n for n in names if n == entry or n.endswith("." + entry)]
        if not matched:
            raise ValueError(
                f"target_modules entry {entry!r} matches no module; nn.Linear modules are {linear_names}"
            )
        chosen += [n for n in matched if n not in chosen]
    return [n for n in names if n in chosen]  # model order, each name once


def add_lora(
    model: nn.Module,
    r: int,
    *,
    lora_alpha: float = 8.0,
    target_modules: str | Iterable[str] | None = None,
    lora_dropout: float = 0.0,
    init_lora_weights: bool | str = True,
    use_rslora: bool = False,
    method: str = "wrapper",
) -> list[str]:
    """Add LoRA to the ``nn.Linear`` modules of ``model`` that ``target_modules`` selects, in place.

    ``target_modules`` as in PEFT: None adapts every ``nn.Linear``; a list selects each module whose
    name equals an entry or ends with "." + entry (``["q_proj", "v_proj"]`` finds them in every
    block); a string is a regular expression that must match the whole name. All or nothing: every
    target is checked before the model changes. Returns the adapted names, in model order.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "parametrize" and lora_dropout:
        raise ValueError(
            "lora_dropout acts on the input x, which a weight parametrization never sees; "
            "use method='wrapper' for lora_dropout > 0"
        )
    check_init(init_lora_weights)
    if isinstance(model, nn.Linear):
        raise TypeError(
            "model is a bare nn.Linear, which add_lora cannot replace in place; "
            "wrap it yourself with LinearWithLoRA(layer, r) or put it inside a module"
        )
    modules = dict(model.named_modules())
    inside_wrappers = {f"{n}.base_layer" for n, m in modules.items() if isinstance(m, LinearWithLoRA)}
    linear_names = [
        n for n, m in modules.items() if n and isinstance(m, nn.Linear) and n not in inside_wrappers
    ]
    targets = _select_targets(model, target_modules, linear_names)
    for name in targets:
        module = modules[name]
        if isinstance(module, LinearWithLoRA) or name in inside_wrappers or _lora_of(module):
            raise ValueError(
                f"{name!r} already has a LoRA adapter; add LoRA once per layer "
                "(or call merge_lora(model) first)"
            )
        if not isinstance(module, nn.Linear):
            raise TypeError(
                f"target {name!r} is a {type(module).__name__}, not an nn.Linear; "
                f"nn.Linear modules are {linear_names}"
            )
        check_rank(r, module.in_features, module.out_features)
    for name in targets:
        layer = modules[name]
        if method == "wrapper":
            parent_name, _, child = name.rpartition(".")
            parent = modules[parent_name] if parent_name else model
            wrapper = LinearWithLoRA(
                layer,
                r,
                lora_alpha=lora_alpha,
                init_lora_weights=init_lora_weights,
                use_rslora=use_rslora,
                lora_dropout=lora_dropout,
            )
            setattr(parent, child, wrapper)
        else:
            w = layer.weight
            lora = LoRAParametrization(
                layer.in_features,
                layer.out_features,
                r,
                lora_alpha=lora_alpha,
                init_lora_weights=init_lora_weights,
                use_rslora=use_rslora,
                device=w.device,
                dtype=w.dtype,
            )
            parametrize.register_parametrization(layer, "weight", lora)
    return targets


def mark_only_lora_as_trainable(model: nn.Module, bias: str = "none") -> None:
    """Freeze everything but ``lora_A`` and ``lora_B``. ``bias``: "none" keeps every
    bias frozen, "all" trains every bias, "lora_only" the biases of adapted layers.
    """
    if bias not in BIAS_MODES:
        raise ValueError(f"bias must be one of {BIAS_MODES}, got {bias!r}")
    adapted = [name for name, _ in _require_lora(model)]
    for name, param in model.named_parameters():
        leaf = name.rpartition(".")[2]
        trainable = leaf in ("lora_A", "lora_B")
        if leaf == "bias":
            owner = name[: -len(".bias")].removesuffix(".base_layer")
            trainable = bias == "all" or (bias == "lora_only" and owner in adapted)
        param.requires_grad_(trainable)


def set_lora_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every adapter on or off (off: the model computes its base function)."""
    for name, lora in _require_lora(model):
        if getattr(lora, "merged", False) and not enabled:
            raise RuntimeError(f"the adapter of {name!r} is merged; unmerge it before disabling")
        lora.enabled = bool(enabled)


@contextmanager
def lora_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """``with lora_disabled(model):`` runs the base model, then restores each adapter's state."""
    found = _require_lora(model)
    before = [lora.enabled for _, lora in found]
    set_lora_enabled(model, False)
    try:
        yield model
    finally:
        for (_, lora), was in zip(found, before):
            lora.enabled = was


def merge_lora(model: nn.Module) -> nn.Module:
    """Bake every adapter into its weight, in place, leaving plain ``nn.Linear`` layers.

    Bakes what the model computes now: a disabled adapter adds nothing.
    Returns ``model``.
    """
    found = _require_lora(model)
    modules = dict(model.named_modules())
    for name, lora in found:
        if isinstance(lora, LinearWithLoRA):
            if lora.enabled and not lora.merged:
                lora.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else model, child, lora.base_layer)
        else:
            layer = modules[name]
            requires_grad = layer.parametrizations["weight"].original.requires_grad
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
            layer.weight.requires_grad_(requires_grad)
    return model


def lora_state_dict(model: nn.Module, bias: str = "none") -> dict[str, torch.Tensor]:
    """The adapter alone: ``{layer}.lora_A``, ``{layer}.lora_B`` and ``{layer}.scaling``
    per adapted layer (the same names for both methods), plus biases as in
    ``mark_only_lora_as_trainable``. Tensors are detached copies on the CPU.
    """
    if bias not in BIAS_MODES:
        raise ValueError(f"bias must be one of {BIAS_MODES}, got {bias!r}")
    state = {}
    found = _require_lora(model)
    for name, lora in found:
        state[f"{name}.lora_A"] = lora.lora_A
        state[f"{name}.lora_B"] = lora.lora_B
        state[f"{name}.scaling"] = torch.tensor(lora.scaling)
    if bias != "none":
        adapted = {name for name, _ in found}
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                owner = name[: -len(".bias")].removesuffix(".base_layer")
                if bias == "all" or owner in adapted:
                    state[f"{owner}.bias"] = param
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an adapter saved by ``lora_state_dict`` into a model with the same adapters.

    Checks every name, shape and scaling first, and says what does not match;
    nothing is copied unless everything matches.
    """
    found = dict(_require_lora(model))
    merged = [name for name, lora in found.items() if getattr(lora, "merged", False)]
    if merged:
        raise RuntimeError(f"the adapters of {merged} are merged; unmerge them before loading")
    modules = dict(model.named_modules())
    expected: dict[str, torch.Tensor] = {}
    for name, lora in found.items():
        expected[f"{name}.lora_A"] = lora.lora_A
        expected[f"{name}.lora_B"] = lora.lora_B
    problems = []
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        if leaf == "scaling":
            if owner in found and abs(float(value) - found[owner].scaling) > 1e-6 * max(
                1.0, abs(float(value))
            ):
                problems.append(
                    f"{owner}: the adapter was trained with scaling {float(value):g}, the model's "
                    f"layer has {found[owner].scaling:g} (use the same r, lora_alpha and use_rslora)"
                )
            continue
        if leaf == "bias":
            target = modules.get(owner)
            target = getattr(target, "base_layer", target)
            param = getattr(target, "bias", None)
            if param is None:
                problems.append(f"unexpected key {key!r}: the model has no such bias")
                continue
            expected[key] = param
        if key not in expected:
            problems.append(f"unexpected key {key!r}: the model's adapters are {sorted(found)}")
        elif tuple(value.shape) != tuple(expected[key].shape):
            problems.append(
                f"{key}: shape {tuple(value.shape)} in the adapter, "
                f"{tuple(expected[key].shape)} in the model (was it trained with another r?)"
            )
    missing = [k for k in expected if k not in state and not k.endswith(".bias")]
    problems += [f"missing key {k!r}" for k in missing]
    if problems:
        raise ValueError("the adapter does not fit this model:\n  " + "\n  ".join(problems))
    with torch.no_grad():
        for key, value in state.items():
            if key in expected:
                expected[key].copy_(value)
