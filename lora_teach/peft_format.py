"""Adapters on disk in Hugging Face PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

A folder written by ``save_adapter`` loads with ``PeftModel.from_pretrained``, and one written by
PEFT's ``save_pretrained`` loads with ``load_adapter``.
"""

from __future__ import annotations

import json
import math
import os
import re
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
from lora_teach.lora import LinearWithLoRA, check_bool, lora_scaling
from lora_teach.outputs import OutputError, atomic_folder, check_output_dir

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
    these two files). The files are written whole in a temporary folder beside it, then moved in as
    one unit: if a move fails, the old pair is put back. Folder and files get the umask's modes.
    Returns the folder.
    """
    from safetensors.torch import save_file  # a base dependency; imported here so lora_teach imports fast

    check_bool(overwrite, "overwrite")
    folder = Path(folder)
    config = adapter_config(model, bias)
    tensors = _to_peft_keys(model, lora_state_dict(model, bias))
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"folder {str(folder)!r} is a file; give save_adapter a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(
            f"folder {str(folder)!r} exists and is not empty; choose another folder or pass overwrite=True"
        )
    check_output_dir(folder, "save_adapter folder")
    try:
        with atomic_folder(folder, "save_adapter folder") as staging:
            (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
    except OSError as error:  # named by the user's folder, never the temporary one
        raise OutputError(
            f"save_adapter folder {folder}: could not write the adapter ({error.strerror or error}); "
            "nothing in it was changed"
        ) from error
    return folder


def read_adapter_config(folder: str | os.PathLike) -> dict:
    """Read and check ``folder/adapter_config.json``: a LoRA config whose options this package has."""
    path = Path(folder) / CONFIG_NAME
    if Path(folder).is_file():
        raise ValueError(
            f"{str(folder)!r} is a file; give load_adapter the adapter folder that holds {CONFIG_NAME}"
        )
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder, not a file; is {str(folder)!r} an adapter folder?")
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist; is {str(folder)!r} an adapter folder?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not text (binary bytes); save the adapter again") from None
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
    if not any(
        init is option or (isinstance(option, str) and init == option)
        for option in (True, False, "gaussian", "pissa")
    ):
        raise ValueError(f"{str(path)!r}: init_lora_weights {init!r} is not supported here")
    _check_config_types(config, str(path))
    return config


def _check_config_types(config: dict, where: str) -> None:
    """One-line ValueErrors naming the file and field for values of the wrong kind."""

    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if "r" not in config:
        raise ValueError(f"{where}: no 'r' (the rank); add \"r\": N as save_adapter writes it")
    r = config["r"]
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"{where}: 'r' must be a whole number of at least 1, got {r!r}")
    if not number(config.get("lora_alpha", 8)):
        raise ValueError(f"{where}: 'lora_alpha' must be a number, got {config.get('lora_alpha')!r}")
    targets = config.get("target_modules")
    if not (
        targets is None
        or isinstance(targets, str)
        or (isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets))
    ):
        raise ValueError(
            f"{where}: 'target_modules' must be a list of module names, a regular expression or null, got {targets!r}"
        )
    for field in ("rank_pattern", "alpha_pattern"):
        value = config.get(field)
        if value is not None and not isinstance(value, dict):
            raise ValueError(
                f"{where}: {field!r} must be an object from module names to values, got {value!r}"
            )
        for key, entry in (value or {}).items():
            try:
                re.compile(key)
            except re.error as error:
                raise ValueError(
                    f"{where}: {field!r} key {key!r} is not a valid regular expression ({error})"
                ) from None
            good = (
                isinstance(entry, int) and not isinstance(entry, bool) and entry >= 1
                if field == "rank_pattern"
                else number(entry) and math.isfinite(entry) and entry > 0
            )
            if not good:
                what = (
                    "a whole number of at least 1" if field == "rank_pattern" else "a finite number above 0"
                )
                raise ValueError(f"{where}: {field!r} value for {key!r} must be {what}, got {entry!r}")
    for field in ("use_rslora", "use_dora"):
        value = config.get(field, False)
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {field!r} must be true or false, got {value!r}")
    dropout = config.get("lora_dropout", 0.0)
    if not number(dropout):
        raise ValueError(f"{where}: 'lora_dropout' must be a number in [0, 1), got {dropout!r}")
    bias = config.get("bias", "none")
    if bias not in BIAS_MODES:
        raise ValueError(f"{where}: 'bias' must be one of {BIAS_MODES}, got {bias!r}")


def load_adapter(model: nn.Module, folder: str | os.PathLike, *, method: str = "wrapper") -> list[str]:
    """Load a PEFT-format adapter folder (ours or PEFT's ``save_pretrained``) into ``model``.

    A model without adapters gets the ones the config names (``add_lora`` with its r, lora_alpha,
    patterns, DoRA, rsLoRA, dropout; PiSSA re-splits the weight as PEFT does). A model with adapters
    must match the config and the file exactly. Everything is checked first; nothing changes when
    anything does not fit. With ``method="parametrize"`` the config's ``lora_dropout`` is not used
    (a parametrization never sees x). Returns the adapted layer names.
    """
    if method not in ("wrapper", "parametrize"):
        raise ValueError(f"method must be 'wrapper' or 'parametrize', got {method!r}")
    folder = Path(folder)
    config = read_adapter_config(folder)
    weights = folder / WEIGHTS_NAME
    state = _from_peft_keys(read_adapter_weights(weights))
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


def read_adapter_weights(weights: Path) -> dict[str, torch.Tensor]:
    """The tensors of an ``adapter_model.safetensors``: one-line errors naming the file (and the key)
    for a missing, empty, truncated or corrupt file and for tensors that are not floating point."""
    from safetensors.torch import load_file

    if weights.is_dir():
        raise ValueError(f"{str(weights)!r} is a folder, not a file; save the adapter again")
    if not weights.is_file():
        raise FileNotFoundError(f"{str(weights)!r} does not exist (only safetensors adapters are read)")
    try:
        tensors = load_file(str(weights))
    except Exception as error:  # noqa: BLE001 - SafetensorError, OSError, ...
        reason = " ".join(str(error).split())[:120] or type(error).__name__
        raise ValueError(
            f"{str(weights)!r} is not a readable safetensors file ({reason}); save the adapter again"
        ) from None
    for key, value in tensors.items():
        if not value.is_floating_point():
            raise ValueError(
                f"{str(weights)!r}: {key} holds {value.dtype} values; an adapter's tensors are floating point"
            )
        if not torch.isfinite(value).all():
            raise ValueError(
                f"{str(weights)!r}: {key} holds NaN or inf values; train or save the adapter again"
            )
    return tensors


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
