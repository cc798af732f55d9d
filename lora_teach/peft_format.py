"""Adapters on disk in Hugging Face PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

A folder written by ``save_adapter`` loads with ``PeftModel.from_pretrained``, and one written by
PEFT's ``save_pretrained`` loads with ``load_adapter``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from lora_teach.adapters import (
    BIAS_MODES,
    _require_lora,
    _select_targets,
    add_lora,
    load_lora_state_dict,
    lora_modules,
    lora_state_dict,
    pattern_key,
    plan_lora,
)
from lora_teach.lora import LinearWithLoRA, lora_scaling

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."  # PEFT's name for the user's model inside a PeftModel
# PEFT options this package does not have: a config that sets one of them is refused
UNSUPPORTED = (
    "fan_in_fan_out",
    "lora_bias",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
    "exclude_modules",
    "target_parameters",
    "trainable_token_indices",
    "layer_replication",
    "use_qalora",
    "use_bdlora",
    "alora_invocation_tokens",
)


def _most_common(values: list) -> object:
    return Counter(values).most_common(1)[0][0]


def _patterns(per_layer: dict[str, object], default: object, anchored: bool) -> dict[str, object]:
    key = (lambda n: "^" + re.escape(n)) if anchored else (lambda n: n)
    return {key(name): value for name, value in per_layer.items() if value != default}


def _plain_names(model: nn.Module, adapted: list[str]) -> list[str]:
    """The module names PEFT would see in the model without its adapters."""
    return [n for n, _ in model.named_modules() if n and not any(n.startswith(a + ".") for a in adapted)]


def adapter_config(model: nn.Module, bias: str = "none") -> dict:
    """The ``adapter_config.json`` (as a dict) that describes the model's adapters to PEFT.

    ``r`` and ``lora_alpha`` are the most common values, ``rank_pattern`` / ``alpha_pattern`` name the
    layers that differ. Adapters that one config cannot describe (mixed DoRA, rsLoRA, dropout or
    init) are refused.
    """
    if bias not in BIAS_MODES:
        raise ValueError(f"bias must be one of {BIAS_MODES}, got {bias!r}")
    found = _require_lora(model)
    names = [name for name, _ in found]
    dropouts = [
        lora.lora_dropout.p if isinstance(lora, LinearWithLoRA) and hasattr(lora.lora_dropout, "p") else 0.0
        for _, lora in found
    ]
    # "normal" (ours only) is written as True: once the weights are loaded the init no longer matters
    inits = [
        lo.init_lora_weights if lo.init_lora_weights in ("pissa", "gaussian") else True for _, lo in found
    ]
    for field, values in (
        ("use_dora", [lora.use_dora for _, lora in found]),
        ("use_rslora", [lora.use_rslora for _, lora in found]),
        ("lora_dropout", dropouts),
        ("init_lora_weights", inits),
    ):
        if len(set(values)) > 1:
            raise ValueError(
                f"the adapters differ in {field} ({dict(zip(names, values))}); one adapter_config.json "
                "describes one value, so add them with the same setting"
            )
    ranks = {name: lora.r for name, lora in found}
    alphas = {name: lora.lora_alpha for name, lora in found}
    r, alpha = _most_common(list(ranks.values())), _most_common(list(alphas.values()))
    for anchored in (False, True):
        rank_pattern, alpha_pattern = _patterns(ranks, r, anchored), _patterns(alphas, alpha, anchored)
        resolved = {
            name: (
                rank_pattern[k] if (k := pattern_key(rank_pattern, name)) is not None else r,
                alpha_pattern[k] if (k := pattern_key(alpha_pattern, name)) is not None else alpha,
            )
            for name in names
        }
        if all(resolved[n] == (ranks[n], alphas[n]) for n in names):
            break
    plain = _plain_names(model, names)
    target_modules: list[str] | str = names
    if set(_select_targets(plain, names, plain)) != set(names):  # a name is also the end of another
        target_modules = "|".join(re.escape(n) for n in names)
    return {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": None,
        "r": r,
        "lora_alpha": alpha,
        "target_modules": target_modules,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "lora_dropout": dropouts[0],
        "use_rslora": found[0][1].use_rslora,
        "use_dora": found[0][1].use_dora,
        "init_lora_weights": inits[0],
        "bias": bias,
        "fan_in_fan_out": False,
        "lora_bias": False,
        "modules_to_save": None,
        "inference_mode": True,
    }


def _to_peft_keys(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    adapted = {name for name, _ in lora_modules(model)}
    out = {}
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        if leaf == "scaling":
            continue
        if leaf in ("lora_A", "lora_B"):
            key = f"{key}.weight"
        elif leaf == "bias" and owner in adapted:
            key = f"{owner}.base_layer.bias"
        out[PREFIX + key] = value.contiguous()
    return out


def _from_peft_keys(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in tensors.items():
        name = key.removeprefix(PREFIX)
        for suffix, ours in (
            (".lora_A.weight", ".lora_A"),
            (".lora_B.weight", ".lora_B"),
            (".base_layer.bias", ".bias"),
        ):
            if name.endswith(suffix):
                name = name[: -len(suffix)] + ours
        state[name] = value
    return state


def save_adapter(
    model: nn.Module, folder: str | os.PathLike, *, bias: str = "none", overwrite: bool = False
) -> Path:
    """Write the adapters as PEFT does: ``folder/adapter_config.json`` and ``adapter_model.safetensors``.

    Refuses a folder that exists and is not empty unless ``overwrite=True`` (which replaces only
    these two files). The files are written whole, then moved into place. Returns the folder.
    """
    from safetensors.torch import save_file  # a base dependency; imported here so lora_teach imports fast

    folder = Path(folder)
    config = adapter_config(model, bias)
    tensors = _to_peft_keys(model, lora_state_dict(model, bias))
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"folder {str(folder)!r} is a file; give save_adapter a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(
            f"folder {str(folder)!r} exists and is not empty; choose another folder or pass overwrite=True"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        if not folder.exists():
            staging.rename(folder)
        else:
            for name in (WEIGHTS_NAME, CONFIG_NAME):
                os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def read_adapter_config(folder: str | os.PathLike) -> dict:
    """Read and check ``folder/adapter_config.json``: a LoRA config whose options this package has."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist; is {str(folder)!r} an adapter folder?")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise ValueError(f'{str(path)!r} is not a LoRA adapter config (peft_type must be "LORA")')
    used = [field for field in UNSUPPORTED if config.get(field)]
    if used:
        raise ValueError(f"{str(path)!r} uses PEFT options that lora_teach does not have: {used}")
    if config.get("target_modules") == "all-linear":
        raise ValueError(f"{str(path)!r}: target_modules 'all-linear' is not supported; name the modules")
    init = config.get("init_lora_weights", True)
    if init not in (True, False, "gaussian", "pissa"):
        raise ValueError(f"{str(path)!r}: init_lora_weights {init!r} is not supported here")
    return config


def load_adapter(model: nn.Module, folder: str | os.PathLike, *, method: str = "wrapper") -> list[str]:
    """Load a PEFT-format adapter folder (ours or PEFT's ``save_pretrained``) into ``model``.

    A model without adapters gets the ones the config names (``add_lora`` with its r, lora_alpha,
    patterns, DoRA, rsLoRA, dropout; PiSSA re-splits the weight as PEFT does). A model with adapters
    must match the config and the file exactly. Everything is checked first; nothing changes when
    anything does not fit. With ``method="parametrize"`` the config's ``lora_dropout`` is not used
    (a parametrization never sees x). Returns the adapted layer names.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_adapter_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{str(weights)!r} does not exist (only safetensors adapters are read)")
    state = _from_peft_keys(load_file(str(weights)))
    init = config.get("init_lora_weights", True)
    init = True if init is False else init
    r, alpha = config.get("r", 8), config.get("lora_alpha", 8)
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    use_rslora, use_dora = bool(config.get("use_rslora")), bool(config.get("use_dora"))
    existing = list(lora_modules(model))
    if existing:
        names = [name for name, _ in existing]
        problems = [
            f"{name}: the adapter has {field}={wanted!r}, the model's layer {have!r}"
            for name, lora in existing
            for field, wanted, have in (
                ("use_dora", use_dora, lora.use_dora),
                ("use_rslora", use_rslora, lora.use_rslora),
                ("init_lora_weights='pissa'", init == "pissa", lora.init_lora_weights == "pissa"),
            )
            if wanted != have
        ]
        if problems:
            raise ValueError(
                "the adapter does not fit this model's adapters (load it into a model without adapters "
                "instead):\n  " + "\n  ".join(problems)
            )
        layers = {n: (lora.in_features, lora.out_features) for n, lora in existing}
    else:
        plan = plan_lora(model, r, alpha, config.get("target_modules"), rank_pattern, alpha_pattern)
        names = [name for name, *_ in plan]
        layers = {n: (layer.in_features, layer.out_features) for n, layer, *_ in plan}
    scalings = {}
    for name in names:
        key = pattern_key(rank_pattern, name)
        layer_r = r if key is None else rank_pattern[key]
        key = pattern_key(alpha_pattern, name)
        layer_alpha = alpha if key is None else alpha_pattern[key]
        scalings[name] = (layer_r, layer_alpha)
    if not existing:
        _check_before_adding(state, layers, scalings, use_dora, model)
        add_lora(
            model,
            r,
            lora_alpha=alpha,
            target_modules=config.get("target_modules"),
            rank_pattern=rank_pattern or None,
            alpha_pattern=alpha_pattern or None,
            lora_dropout=config.get("lora_dropout", 0.0) if method == "wrapper" else 0.0,
            init_lora_weights=init,
            use_rslora=use_rslora,
            use_dora=use_dora,
            method=method,
        )
    state.update(
        {f"{n}.scaling": torch.tensor(lora_scaling(lr, la, use_rslora)) for n, (lr, la) in scalings.items()}
    )
    load_lora_state_dict(model, state)
    return names


def _check_before_adding(
    state: dict[str, torch.Tensor],
    layers: dict[str, tuple[int, int]],
    ranks: dict[str, tuple[int, float]],
    use_dora: bool,
    model: nn.Module,
) -> None:
    """The checks of ``load_lora_state_dict``, made before ``add_lora`` changes the model."""
    expected = {}
    for name, (d_in, d_out) in layers.items():
        r = ranks[name][0]
        expected[f"{name}.lora_A"] = (r, d_in)
        expected[f"{name}.lora_B"] = (d_out, r)
        if use_dora:
            expected[f"{name}.lora_magnitude_vector"] = (d_out,)
    modules = dict(model.named_modules())
    problems = []
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        shape = expected.get(key)
        if leaf == "bias" and getattr(modules.get(owner), "bias", None) is not None:
            shape = tuple(modules[owner].bias.shape)
        if shape is None:
            problems.append(f"unexpected key {key!r}: the config's targets are {sorted(layers)}")
        elif tuple(value.shape) != shape:
            problems.append(f"{key}: shape {tuple(value.shape)} in the adapter, {shape} from the config")
        elif not torch.isfinite(value).all():
            problems.append(f"{key}: holds NaN or inf values")
    problems += [f"missing key {k!r}" for k in expected if k not in state]
    if problems:
        raise ValueError("the adapter does not fit this model:\n  " + "\n  ".join(problems))
