"""lora_teach: the small package behind the course "LoRA from first principles"."""

import importlib
import sys
import types
from typing import TYPE_CHECKING

# Names are imported on first use (PEP 562), so that `import lora_teach` (and every `lora-teach` command
# that refuses a bad argument) does not pay for importing torch.
_WHERE = {
    "adapters": [
        "add_lora",
        "load_lora_state_dict",
        "lora_disabled",
        "lora_modules",
        "lora_state_dict",
        "mark_only_lora_as_trainable",
        "merge_lora",
        "set_lora_enabled",
    ],
    "lora": ["LinearWithLoRA", "LoRAFactors", "LoRAParametrization", "lora_scaling", "pissa_factors"],
    "loraplus": ["loraplus_param_groups"],
    "models": ["DigitsNet"],
    "params": ["count_parameters", "trainable_report"],
    "peft_format": ["load_adapter", "save_adapter"],
    "train": ["evaluate", "get_device", "set_seed", "train"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"lora_teach.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lora_teach' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps ``lora_teach.train`` the function, as an eager import did: importing the submodule
    ``lora_teach.train`` must not replace it (the submodule stays in ``sys.modules``)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _MODULE_OF and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:
    from lora_teach.adapters import (
        add_lora,
        load_lora_state_dict,
        lora_disabled,
        lora_modules,
        lora_state_dict,
        mark_only_lora_as_trainable,
        merge_lora,
        set_lora_enabled,
    )
    from lora_teach.lora import LinearWithLoRA, LoRAFactors, LoRAParametrization, lora_scaling, pissa_factors
    from lora_teach.loraplus import loraplus_param_groups
    from lora_teach.models import DigitsNet
    from lora_teach.params import count_parameters, trainable_report
    from lora_teach.peft_format import load_adapter, save_adapter
    from lora_teach.train import evaluate, get_device, set_seed, train

__version__ = "0.1.0"
__all__ = [
    "DigitsNet",
    "LinearWithLoRA",
    "LoRAFactors",
    "LoRAParametrization",
    "add_lora",
    "count_parameters",
    "evaluate",
    "get_device",
    "load_adapter",
    "load_lora_state_dict",
    "lora_disabled",
    "lora_modules",
    "lora_scaling",
    "loraplus_param_groups",
    "lora_state_dict",
    "mark_only_lora_as_trainable",
    "merge_lora",
    "pissa_factors",
    "save_adapter",
    "set_lora_enabled",
    "set_seed",
    "train",
    "trainable_report",
]
