"""LoRA+ (Hayou, Ghosh and Yu, 2024): train B with a learning rate ``ratio`` times A's.

The groups are those of PEFT's ``create_loraplus_optimizer``, for ``torch.optim`` optimizers.
"""

from __future__ import annotations

import math

from torch import nn


def loraplus_param_groups(
    model: nn.Module, lr: float, ratio: float, *, weight_decay: float = 0.0
) -> list[dict]:
    """Optimizer parameter groups for LoRA+, grouped as PEFT does it.

    Trainable 2-d parameters other than ``lora_B`` (``lora_A``, an unfrozen embedding or weight):
    ``lr``. ``lora_B`` and every trainable 1-d parameter (biases, DoRA's magnitudes, norm
    weights): ``lr * ratio``; of these, biases and ``nn.LayerNorm`` parameters get no weight decay.
    Empty groups are left out. Use: ``torch.optim.AdamW(loraplus_param_groups(model, 1e-3, 16))``.
    """
    for argument, value in (("lr", lr), ("ratio", ratio)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{argument} must be a finite number > 0, got {value!r}")
        if value <= 0:
            raise ValueError(f"{argument} must be a finite number > 0, got {value!r}")
    in_norm = {
        f"{name}.{leaf}" if name else leaf
        for name, module in model.named_modules()
        if isinstance(module, nn.LayerNorm)
        for leaf, _ in module.named_parameters(recurse=False)
    }
    groups: dict[str, list] = {"A": [], "B": [], "B_no_decay": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.rpartition(".")[2] == "lora_B" or param.ndim == 1:
            no_decay = "bias" in name or name in in_norm
            groups["B_no_decay" if no_decay else "B"].append(param)
        else:
            groups["A"].append(param)
    if not any(groups.values()):
        raise ValueError(
            "the model has no trainable parameters; call add_lora and mark_only_lora_as_trainable first"
        )
    settings = {
        "A": {"lr": lr, "weight_decay": weight_decay},
        "B": {"lr": lr * ratio, "weight_decay": weight_decay},
        "B_no_decay": {"lr": lr * ratio, "weight_decay": 0.0},
    }
    return [{"params": params, **settings[key]} for key, params in groups.items() if params]
