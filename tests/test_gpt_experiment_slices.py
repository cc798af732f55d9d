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


def _results(select, report):
    """Two learning rates over two seeds: mean code_bpc and code_report_bpc per rate as given."""
    runs = [
        {"kind": "lora", "targets": "qv", "r": 8, "lr": lr, "seed": seed, "trainable": 1, "prose_bpc": 2.0}
        | {"code_bpc": select[lr] + 0.01 * seed, "code_report_bpc": report[lr] - 0.01 * seed}
        for lr in select
        for seed in (0, 1)
    ]
    return {"runs": runs}


def test_best_lr_chooses_on_the_slice_it_is_told_and_grouped_keeps_both():
    from lora_teach.gpt_experiment import best_lr, grouped

    results = _results({1e-2: 2.5, 3e-2: 2.6}, {1e-2: 2.4, 3e-2: 2.3})
    assert best_lr(results, "lora", "qv", 8) == 1e-2
    assert best_lr(results, "lora", "qv", 8, on="code_bpc") == 1e-2
    assert best_lr(results, "lora", "qv", 8, on="code_report_bpc") == 3e-2
    g = grouped(results)[("lora", "qv", 8, 3e-2)]
    assert g["code_bpc"] == [2.6, 2.61] and g["code_report_bpc"] == [2.3, 2.29] and g["seed"] == [0, 1]


def test_best_lr_refuses_a_slice_it_does_not_know_or_the_runs_lack():
    import pytest

    from lora_teach.gpt_experiment import best_lr

    results = _results({1e-2: 2.5}, {1e-2: 2.4})
    with pytest.raises(ValueError, match="on must be one of"):
        best_lr(results, "lora", "qv", 8, on="prose_bpc")
    for run in results["runs"]:
        del run["code_report_bpc"]  # a sweep made before the second slice was scored
    with pytest.raises(ValueError, match="no code_report_bpc; rerun the sweep"):
        best_lr(results, "lora", "qv", 8, on="code_report_bpc")
