"""An adapter saved by lora_state_dict loads back even when its scaling is not exact in float32."""

import pytest
import torch
from torch import nn

from lora_teach import add_lora, load_lora_state_dict, lora_state_dict


@pytest.mark.parametrize("r, lora_alpha, use_rslora", [(3, 1.0, False), (3, 2.0, True), (5, 7.0, True)])
def test_state_dict_round_trip_with_inexact_scaling(r, lora_alpha, use_rslora):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6))
    add_lora(model, r=r, lora_alpha=lora_alpha, use_rslora=use_rslora)
    load_lora_state_dict(model, lora_state_dict(model))


def test_a_real_scaling_mismatch_is_still_refused():
    source, target = nn.Sequential(nn.Linear(8, 6)), nn.Sequential(nn.Linear(8, 6))
    add_lora(source, r=3, lora_alpha=1.0)
    add_lora(target, r=3, lora_alpha=1.01)
    with pytest.raises(ValueError, match="scaling"):
        load_lora_state_dict(target, lora_state_dict(source))
