"""lora_teach: the small package behind the course "LoRA from first principles"."""

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
