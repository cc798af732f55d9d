"""A QLoRA adapter (trained on the 4-bit TinyGPT, saved by save_adapter) in the real PEFT: on the float base it
gives what our float base with that adapter gives, and on bitsandbytes' 4-bit base what our QLoRA model gives."""

import copy

import pytest
import torch

from lora_teach import add_lora, load_adapter, mark_only_lora_as_trainable, save_adapter
from lora_teach.gpt import load_corpus, pretrained_tiny_gpt, train_steps
from lora_teach.quant import quantize_model

pytest.importorskip("peft", reason="the PEFT cross-checks need `pip install -e .[test]`")
from peft import PeftModel  # noqa: E402

TARGETS = ["q_proj", "v_proj", "up_proj"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = pretrained_tiny_gpt()
    qlora = copy.deepcopy(base)
    quantize_model(qlora)
    torch.manual_seed(0)
    add_lora(qlora, 4, target_modules=TARGETS)
    mark_only_lora_as_trainable(qlora)
    train_steps(qlora, load_corpus("code", "train"), 3, 1e-2, batch_size=2)
    folder = tmp_path_factory.mktemp("qlora") / "adapter"
    save_adapter(qlora, folder)
    return base, qlora, folder


def ids():
    return load_corpus("code", "val")[:96][None]


def test_a_qlora_adapter_in_peft_on_the_float_base_equals_ours_on_the_float_base(trained):
    base, _, folder = trained
    theirs = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()
    ours = copy.deepcopy(base)
    load_adapter(ours, folder)
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids()), ours(ids()), rtol=0, atol=1e-5)


def test_a_qlora_adapter_in_peft_on_bitsandbytes_4bit_base_equals_our_qlora_model(trained):
    pytest.importorskip("bitsandbytes", reason="the bitsandbytes cross-checks need `pip install -e .[test]`")
    from tests.test_quant_bitsandbytes import bnb_tiny_gpt

    base, qlora, folder = trained
    # Training mode (no dropout here): in eval mode on a CPU with AVX-512 BF16, bitsandbytes' Linear4bit
    # repacks its weight for a bfloat16 kernel, which moves TinyGPT's logits by up to 0.27 from the float
    # computation that QLoRA defines (dequantize, then multiply in the compute dtype).
    theirs = PeftModel.from_pretrained(bnb_tiny_gpt(base), folder).train()
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids()), qlora.eval()(ids()), rtol=0, atol=1e-5)
