"""Model-level verbs: add LoRA to a model, freeze it, switch it, merge it, save and load it.

Both methods are supported everywhere: ``"wrapper"`` replaces each target
``nn.Linear`` by a ``LinearWithLoRA``; ``"parametrize"`` registers a
``LoRAParametrization`` on its ``weight``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

from lora_teach.lora import (
    LinearWithLoRA,
    LoRAFactors,
    LoRAParametrization,
    check_alpha,
    check_bool,
    check_dora_norm,
    check_dropout,
    check_init,
    check_materialized,
    check_rank,
    dora_weight_norm,
)
from lora_teach.quant import MERGE_REFUSAL, Linear4bit

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


def check_no_cycle(model: nn.Module) -> None:
    """Refuse a model that contains itself (a module among its own submodules), which would make
    every walk over it endless."""
    done: set[int] = set()

    def visit(module: nn.Module, path: str, ancestors: set[int]) -> None:
        if id(module) in ancestors:
            raise ValueError(
                f"the model contains itself: {path!r} is one of its own parents; remove that attribute"
            )
        if id(module) in done:
            return
        ancestors.add(id(module))
        for name, child in module._modules.items():
            if child is not None:
                visit(child, f"{path}.{name}" if path else name, ancestors)
        ancestors.discard(id(module))
        done.add(id(module))

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    visit(model, "", set())


def tied_elsewhere(model: nn.Module, layer: nn.Module) -> list[str]:
    """The names of the other modules that hold ``layer.weight`` itself (tied weights, such as an
    embedding tied to the output head)."""
    weight = layer._parameters.get("weight")
    if weight is None:
        return []
    return [
        name
        for name, module in model.named_modules()
        if module is not layer and any(p is weight for p in module._parameters.values())
    ]


def _places(model: nn.Module) -> dict[int, list[str]]:
    """Every name under which each submodule sits (a shared module has several), first name first."""
    check_no_cycle(model)
    places: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name:
            places.setdefault(id(module), []).append(name)
    return places


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def pattern_key(patterns: dict, name: str) -> str | None:
    """The first key of ``rank_pattern``/``alpha_pattern`` that selects ``name``, as PEFT matches
    them: the key is a regular expression for the end of the name after a dot (or the whole name).
    """
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", name):
            return key
    return None


def _select_targets(
    names: list[str], target_modules: str | Iterable[str] | None, linear_names: list[str]
) -> list[str]:
    """The names ``target_modules`` selects, as PEFT selects them (see ``add_lora``)."""
    if target_modules is None:
        if not linear_names:
            raise ValueError("the model has no nn.Linear modules to adapt")
        return list(linear_names)
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
    if isinstance(target_modules, dict):
        raise TypeError(
            f"target_modules must be None, a regular expression, or a list of module names, not a dict "
            f"({target_modules!r}); per-layer ranks go in rank_pattern"
        )
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
    return chosen


def _check_pattern_rank(r: int) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"rank_pattern values must be integers r >= 1, got {r!r}")


def _check_patterns(patterns: dict | None, argument: str, check_value) -> dict:
    if patterns is None:
        return {}
    if not isinstance(patterns, dict) or not all(isinstance(k, str) for k in patterns):
        raise TypeError(f"{argument} must be a dict from module names to values, got {patterns!r}")
    for key, value in patterns.items():
        try:
            re.compile(key)
        except re.error as error:
            raise ValueError(f"{argument} key {key!r} is not a valid regular expression: {error}") from None
        check_value(value)
    return patterns


def plan_lora(
    model: nn.Module,
    r: int,
    lora_alpha: float = 8.0,
    target_modules: str | Iterable[str] | None = None,
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, float] | None = None,
) -> list[tuple[str, nn.Linear, int, float]]:
    """Check everything ``add_lora`` would do, change nothing: (name, layer, r, lora_alpha) per target."""
    check_no_cycle(model)
    check_alpha(lora_alpha)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(
            f"r must be an integer between 1 and min(in_features, out_features) of each target, got {r!r}"
        )
    rank_pattern = _check_patterns(rank_pattern, "rank_pattern", _check_pattern_rank)
    alpha_pattern = _check_patterns(alpha_pattern, "alpha_pattern", check_alpha)
    if isinstance(model, nn.Linear):
        raise TypeError(
            "model is a bare nn.Linear, which add_lora cannot replace in place; "
            "wrap it yourself with LinearWithLoRA(layer, r) or put it inside a module"
        )
    places = _places(model)
    named = [(n, m) for n, m in model.named_modules(remove_duplicate=False) if n]
    inside_wrappers = {f"{n}.base_layer" for n, m in named if isinstance(m, LinearWithLoRA)}
    linear_names = list(
        dict.fromkeys(
            places[id(m)][0]
            for n, m in named
            if isinstance(m, nn.Linear)
            and n not in inside_wrappers
            and places[id(m)][0] not in inside_wrappers
        )
    )
    wrapped = [n for n, m in model.named_modules() if n and isinstance(m, LinearWithLoRA)]
    modules = dict(named)
    chosen = _select_targets(
        [n for n, _ in named], target_modules, linear_names + [n for n in wrapped if n not in linear_names]
    )
    # one entry per module, under its first name, in model order: a shared layer is adapted once
    first_names = {places[id(modules[n])][0] for n in chosen}
    plan = []
    for name, module in model.named_modules():
        if name not in first_names:
            continue
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
        check_materialized(module, repr(name))
        key = pattern_key(rank_pattern, name)
        layer_r = r if key is None else rank_pattern[key]
        key = pattern_key(alpha_pattern, name)
        layer_alpha = lora_alpha if key is None else alpha_pattern[key]
        check_rank(layer_r, module.in_features, module.out_features)
        plan.append((name, module, layer_r, layer_alpha))
    for argument, patterns in (("rank_pattern", rank_pattern), ("alpha_pattern", alpha_pattern)):
        for key in patterns:
            if not any(re.match(rf"(.*\.)?({key})$", name) for name, *_ in plan):
                raise ValueError(
                    f"{argument} key {key!r} matches no target; the targets are {[n for n, *_ in plan]}"
                )
    return plan


def add_lora(
    model: nn.Module,
    r: int,
    *,
    lora_alpha: float = 8.0,
    target_modules: str | Iterable[str] | None = None,
    lora_dropout: float = 0.0,
    init_lora_weights: bool | str = True,
    use_rslora: bool = False,
    use_dora: bool = False,
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, float] | None = None,
    method: str = "wrapper",
) -> list[str]:
    """Add LoRA to the ``nn.Linear`` modules of ``model`` that ``target_modules`` selects, in place.

    ``target_modules`` as in PEFT: None adapts every ``nn.Linear``; a list selects each module whose
    name equals an entry or ends with "." + entry (``["q_proj", "v_proj"]`` finds them in every
    block); a string is a regular expression that must match the whole name. ``rank_pattern`` /
    ``alpha_pattern`` give some layers another r / lora_alpha (keys match as in PEFT). A layer
    shared by several parents gets one adapter, installed at every place. All or nothing: every
    target is checked before the model changes. Returns the adapted names, in model order.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_bool(use_rslora, "use_rslora")
    check_bool(use_dora, "use_dora")
    check_dropout(lora_dropout)
    if method == "parametrize" and lora_dropout:
        raise ValueError(
            "lora_dropout acts on the input x, which a weight parametrization never sees; "
            "use method='wrapper' for lora_dropout > 0"
        )
    check_init(init_lora_weights)
    plan = plan_lora(model, r, lora_alpha, target_modules, rank_pattern, alpha_pattern)
    four_bit = [name for name, layer, *_ in plan if isinstance(layer, Linear4bit)]
    if four_bit and (method == "parametrize" or init_lora_weights == "pissa"):
        raise ValueError(
            f"{four_bit[0]!r} is a 4-bit layer, whose weight cannot change: add LoRA to it with "
            "method='wrapper' and an init other than 'pissa' (QLoRA keeps the quantized base frozen)"
        )
    places = _places(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    for name, layer, *_ in plan:
        parents = [modules[p.rpartition(".")[0]] for p in places[id(layer)]]
        if method == "wrapper" and any(isinstance(p, nn.MultiheadAttention) for p in parents):
            raise ValueError(
                f"{name!r} is the out_proj of an nn.MultiheadAttention, which reads out_proj.weight "
                "directly, past any wrapper: use method='parametrize' for it, or leave it out of target_modules"
            )
        if use_dora:
            with torch.no_grad():
                check_dora_norm(dora_weight_norm(layer.weight, torch.zeros(())), repr(name))
        tied = tied_elsewhere(model, layer)
        if tied and init_lora_weights == "pissa":
            raise ValueError(
                f"{name!r}.weight is tied to {tied}: PiSSA's residual would change them too; untie the "
                "weights or use another init_lora_weights"
            )
        if tied:
            warnings.warn(
                f"{name!r}.weight is tied to {tied} (shared weights, as with a tied lm_head in PEFT): the "
                f"adapter changes {name!r} only, and merge_lora gives it its own weight, so {tied} keep theirs",
                UserWarning,
                stacklevel=2,
            )
    options = {"init_lora_weights": bool(use_rslora) and init_lora_weights or init_lora_weights}
    options = {"init_lora_weights": init_lora_weights, "use_rslora": use_rslora, "use_dora": use_dora}
    for _, layer, layer_r, layer_alpha in plan:
        if method == "wrapper":
            wrapper = LinearWithLoRA(
                layer, layer_r, lora_alpha=layer_alpha, lora_dropout=lora_dropout, **options
            )
            for place in places[id(layer)]:
                _set_module(model, place, wrapper)
        else:
            w = layer.weight
            lora = LoRAParametrization(
                layer.in_features,
                layer.out_features,
                layer_r,
                lora_alpha=layer_alpha,
                device=w.device,
                dtype=w.dtype,
                **options,
            )
            with torch.no_grad():
                residual = lora.init_from_base(w)
                if residual is not w:
                    w.copy_(residual)
            parametrize.register_parametrization(layer, "weight", lora)
    return [name for name, *_ in plan]


def mark_only_lora_as_trainable(model: nn.Module, bias: str = "none") -> None:
    """Freeze everything but ``lora_A``, ``lora_B`` (and DoRA's magnitudes). ``bias``: "none" keeps every
    bias frozen, "all" trains every bias, "lora_only" the biases of adapted layers.
    """
    if bias not in BIAS_MODES:
        raise ValueError(f"bias must be one of {BIAS_MODES}, got {bias!r}")
    adapted = [name for name, _ in _require_lora(model)]
    for name, param in model.named_parameters():
        leaf = name.rpartition(".")[2]
        trainable = leaf in ("lora_A", "lora_B", "lora_magnitude_vector")
        if leaf == "bias":
            owner = name[: -len(".bias")].removesuffix(".base_layer")
            trainable = bias == "all" or (bias == "lora_only" and owner in adapted)
        param.requires_grad_(trainable)


def set_lora_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every adapter on or off (off: the model computes its base function)."""
    check_bool(enabled, "enabled")
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


def merge_lora(model: nn.Module, dequantize: bool = False) -> nn.Module:
    """Bake every adapter into its weight, in place, leaving plain ``nn.Linear`` layers.

    Bakes what the model computes now: a disabled adapter adds nothing. A parametrized layer is
    replaced by a fresh ``nn.Linear`` (so a deepcopy's original stays intact). An adapter on a 4-bit
    base (QLoRA) is never silently requantized: refused unless ``dequantize=True``, which gives a float
    ``nn.Linear`` holding the dequantized weight plus the update. All or nothing: refuses, changing no
    layer, if any merged weight would hold NaN or inf. A layer whose weight is tied to another module
    gets its own merged weight, so the other module keeps computing what it did. Returns ``model``
    (for a bare ``LinearWithLoRA``, its merged ``base_layer``).
    """
    check_bool(dequantize, "dequantize")
    if isinstance(model, LinearWithLoRA):  # the root has no parent to put the plain layer into
        holder = nn.Module()
        holder.layer = model
        return merge_lora(holder, dequantize).layer
    found = _require_lora(model)
    four_bit = [n for n, lora in found if isinstance(getattr(lora, "base_layer", None), Linear4bit)]
    if four_bit and not dequantize:
        raise ValueError(f"{four_bit[0]!r}: {MERGE_REFUSAL}; nothing was merged")
    modules = dict(model.named_modules())
    places = _places(model)
    for name, _ in found:
        check_materialized(modules[name], repr(name))
    tied = {
        name: tied_elsewhere(model, lora.base_layer)
        for name, lora in found
        if isinstance(lora, LinearWithLoRA) and not isinstance(lora.base_layer, Linear4bit)
    }
    with torch.no_grad():
        for name, lora in found:
            if isinstance(lora, LinearWithLoRA):
                merged = (
                    lora.merged
                    or not lora.enabled
                    or torch.isfinite(lora.adapted_weight(lora.base_layer.weight)).all()
                )
            else:
                merged = torch.isfinite(modules[name].weight).all()
            if not merged:
                raise ValueError(
                    f"merging {name!r} would put NaN or inf into its weight (the adapter's factors are "
                    "not finite); nothing was merged"
                )
    for name, lora in found:
        layer = modules[name]
        if isinstance(lora, LinearWithLoRA) and isinstance(lora.base_layer, Linear4bit):
            base = lora.base_layer
            replacement = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
            with torch.no_grad():
                weight = base.weight
                merged_weight = lora.adapted_weight(weight) if lora.enabled else weight
                replacement.weight = nn.Parameter(merged_weight.detach().clone(), requires_grad=False)
            replacement.bias = base.bias
            replacement.train(layer.training)
        elif isinstance(lora, LinearWithLoRA) and tied.get(name) and not lora.merged:
            base = lora.base_layer  # its weight is tied elsewhere: the merged layer gets its own
            weight = base.weight
            replacement = nn.Linear(
                base.in_features,
                base.out_features,
                bias=base.bias is not None,
                device=weight.device,
                dtype=weight.dtype,
            )
            with torch.no_grad():
                merged_weight = lora.adapted_weight(weight) if lora.enabled else weight
                replacement.weight = nn.Parameter(merged_weight.detach().clone(), weight.requires_grad)
            replacement.bias = base.bias
            replacement.train(layer.training)
        elif isinstance(lora, LinearWithLoRA):
            if lora.enabled and not lora.merged:
                lora.merge()
            replacement = lora.base_layer
        else:
            original = layer.parametrizations["weight"].original
            replacement = nn.Linear(
                layer.in_features,
                layer.out_features,
                bias=layer.bias is not None,
                device=original.device,
                dtype=original.dtype,
            )
            with torch.no_grad():
                replacement.weight = nn.Parameter(layer.weight.detach().clone(), original.requires_grad)
            replacement.bias = layer.bias
            replacement.train(layer.training)
        for place in places[id(layer)]:
            _set_module(model, place, replacement)
    return model


def _factors(name: str, lora: LoRAFactors) -> dict[str, torch.Tensor]:
    state = {f"{name}.lora_A": lora.lora_A, f"{name}.lora_B": lora.lora_B}
    if lora.use_dora:
        state[f"{name}.lora_magnitude_vector"] = lora.lora_magnitude_vector
    return state


def lora_state_dict(model: nn.Module, bias: str = "none") -> dict[str, torch.Tensor]:
    """The adapter alone: ``{layer}.lora_A`` (r, in), ``{layer}.lora_B`` (out, r), with DoRA
    ``{layer}.lora_magnitude_vector`` (out,), and ``{layer}.scaling`` (a 0-d tensor) per adapted
    layer (the same names for both methods), plus biases as in ``mark_only_lora_as_trainable``.
    Tensors are detached copies on the CPU.
    """
    if bias not in BIAS_MODES:
        raise ValueError(f"bias must be one of {BIAS_MODES}, got {bias!r}")
    state = {}
    found = _require_lora(model)
    for name, lora in found:
        state.update(_factors(name, lora))
        state[f"{name}.scaling"] = torch.tensor(lora.scaling)
    if bias != "none":
        adapted = {name for name, _ in found}
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                owner = name[: -len(".bias")].removesuffix(".base_layer")
                if bias == "all" or owner in adapted:
                    state[f"{owner}.bias"] = param
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _scaling_problem(key: str, value: object, lora: LoRAFactors | None, adapters: list[str]) -> str | None:
    owner = key.rpartition(".")[0]
    if lora is None:
        return f"unexpected key {key!r}: {owner!r} has no adapter; the model's adapters are {adapters}"
    try:
        scaling = float(value)
    except (TypeError, ValueError, RuntimeError):
        return f"{key}: a scaling must be one number, got {value!r}"
    if not math.isfinite(scaling):
        return f"{key}: the scaling is {scaling}, not a finite number"
    if abs(scaling - lora.scaling) > 1e-6 * max(1.0, abs(scaling)):
        return (
            f"{owner}: the adapter was trained with scaling {scaling:g}, the model's "
            f"layer has {lora.scaling:g} (use the same r, lora_alpha and use_rslora)"
        )
    return None


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an adapter saved by ``lora_state_dict`` into a model with the same adapters.

    Checks every name, shape, scaling and value (all finite) first, and says what does not
    fit; nothing is copied unless everything fits.
    """
    found = dict(_require_lora(model))
    merged = [name for name, lora in found.items() if getattr(lora, "merged", False)]
    if merged:
        raise RuntimeError(f"the adapters of {merged} are merged; unmerge them before loading")
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from names to tensors, got {type(state).__name__}")
    modules = dict(model.named_modules())
    expected: dict[str, torch.Tensor] = {}
    for name, lora in found.items():
        expected.update(_factors(name, lora))
    problems = []
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        if leaf == "scaling":
            problem = _scaling_problem(key, value, found.get(owner), sorted(found))
            if problem:
                problems.append(problem)
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
        elif not isinstance(value, torch.Tensor):
            problems.append(f"{key}: expected a tensor, got {type(value).__name__}")
        elif not value.is_floating_point():
            problems.append(f"{key}: holds {value.dtype} values; adapter tensors are floating point")
        elif tuple(value.shape) != tuple(expected[key].shape):
            problems.append(
                f"{key}: shape {tuple(value.shape)} in the adapter, "
                f"{tuple(expected[key].shape)} in the model (was it trained with another r?)"
            )
        elif not torch.isfinite(value).all():
            problems.append(f"{key}: holds NaN or inf values")
    missing = [k for k in expected if k not in state and not k.endswith(".bias")]
    problems += [f"missing key {k!r}" for k in missing]
    if problems:
        raise ValueError("the adapter does not fit this model:\n  " + "\n  ".join(problems))
    with torch.no_grad():
        for key, value in state.items():
            if key in expected:
                expected[key].copy_(value)
