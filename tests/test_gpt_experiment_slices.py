"""A sweep chooses a learning rate on one slice of the held-out code and reports on another, disjoint one."""

import torch

from lora_teach.gpt import bits_per_char, load_corpus
from lora_teach.gpt_experiment import fine_tune_once
from tests.test_gpt import small_model


def test_code_is_scored_on_two_disjoint_slices():
    base = small_model()
    model, record = fine_tune_once(base, "lora", "qv", 2, 1e-2, seed=0, steps=2, batch_size=2, eval_chars=256)
    code = load_corpus("code", "val")
    torch.testing.assert_close(record["code_bpc"], bits_per_char(model, code[:257], 256))
    torch.testing.assert_close(record["code_report_bpc"], bits_per_char(model, code[256:], 256))
    assert record["code_bpc"] != record["code_report_bpc"]  # other characters, another number
