"""The QLoRA sweep of notebook 10 (``lora-teach experiment-qlora``) at fast settings: every run and table row
written, no overwrite without --force, resumable; the two methods differ only in the base; bad input named."""

import json

import pytest
import torch

from lora_teach import cli
from lora_teach.gpt import pretrained_tiny_gpt
from lora_teach.qlora_experiment import (
    FORMATS,
    SETTINGS,
    best_lr,
    code_slices,
    model_bytes,
    planned_runs,
    qlora_model,
    quantized_copy,
    round_trip,
    run_sweep,
)
from lora_teach.quant import Linear4bit, dequantize_4bit, quantize_4bit


def test_experiment_qlora_fast_writes_every_run_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "q.json"
    assert cli.main(["experiment-qlora", "--fast", "--out", str(out), "--no-progress"]) == 0
    results = json.loads(out.read_text())
    planned = {(r["method"], r["lr"], r["seed"]) for r in planned_runs(SETTINGS["fast"])}
    assert {(r["method"], r["lr"], r["seed"]) for r in results["runs"]} == planned
    assert (
        len(results["table"]) == 2
        and len(results["shifts"]) == 2
        and results["reference"]["format"] == "float32"
    )
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["experiment-qlora", "--fast", "--out", str(out), "--no-progress"]) == 2
    assert "exists; pass --force to overwrite it or --resume" in capsys.readouterr().err
    assert cli.main(["experiment-qlora", "--fast", "--out", str(out), "--no-progress", "--resume"]) == 0
    assert json.loads(out.read_text())["runs"] == results["runs"]


def test_resume_refuses_a_file_made_with_other_settings(tmp_path):
    out = tmp_path / "q.json"
    out.write_text(json.dumps({"settings_name": "fast", "settings": {"steps": 1}, "runs": []}))
    with pytest.raises(ValueError, match="was made with other settings; pass --force to start again"):
        run_sweep(out, "fast", resume=True, progress=False)
    with pytest.raises(ValueError, match="settings must be one of \\['fast', 'full'\\], got 'huge'"):
        run_sweep(out, "huge")
    with pytest.raises(ValueError, match="either force .* or resume"):
        run_sweep(out, "fast", force=True, resume=True)


def test_the_two_methods_share_targets_rank_and_initial_adapter_and_differ_in_the_base():
    base, settings = pretrained_tiny_gpt(), SETTINGS["full"]
    models = {}
    for method in ("lora", "qlora"):
        torch.manual_seed(3)
        models[method] = qlora_model(base, method, settings)
    lora, qlora = models["lora"], models["qlora"]
    trained = {
        m: {n: p for n, p in model.named_parameters() if p.requires_grad} for m, model in models.items()
    }
    assert trained["lora"].keys() == trained["qlora"].keys()
    assert all(torch.equal(trained["lora"][n], trained["qlora"][n]) for n in trained["lora"])
    assert sum(isinstance(m, Linear4bit) for m in qlora.modules()) == 24
    assert not any(isinstance(m, Linear4bit) for m in lora.modules())
    assert model_bytes(qlora)["frozen"] < model_bytes(lora)["frozen"] / 4
    assert model_bytes(qlora)["adam"] == model_bytes(lora)["adam"] == 2 * model_bytes(lora)["trainable"]
    with pytest.raises(ValueError, match="method must be one of \\['lora', 'qlora'\\], got 'full'"):
        qlora_model(base, "full", settings)


def test_the_code_halves_are_disjoint_and_cover_the_held_out_code():
    halves = code_slices()
    from lora_teach.gpt import load_corpus

    assert torch.equal(torch.cat([halves["select"], halves["report"]]), load_corpus("code", "val"))


def test_a_round_trip_is_the_4bit_storage_and_a_shift_only_moves_the_blocks():
    weight = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(round_trip(weight, "nf4", 64), dequantize_4bit(*quantize_4bit(weight, 64, "nf4")))
    shifted = round_trip(weight, "fp4", 64, shift=16)
    rolled = dequantize_4bit(*quantize_4bit(weight.reshape(-1).roll(-16), 64, "fp4")).roll(16).reshape(16, 64)
    assert torch.equal(shifted, rolled)
    assert torch.equal(round_trip(weight, "float32", 64), weight)
    with pytest.raises(ValueError, match="fmt must be one of"):
        round_trip(weight, "nf8", 64)
    model = quantized_copy(pretrained_tiny_gpt(), "int4", 64)
    levels = model.blocks[0].mlp.up_proj.weight.reshape(-1, 64)
    assert all(len(row.unique()) <= 15 for row in levels[:8])
    assert set(FORMATS) == {"int4", "fp4", "nf4", "nf4+dq"}


def test_best_lr_reads_the_select_half_only():
    results = {"runs": []}
    for seed in (0, 1):
        for lr, select, report in [(1e-2, 2.0, 3.0), (2e-2, 2.5, 1.0)]:
            run = {"method": "qlora", "lr": lr, "seed": seed, "code_select_bpc": select}
            results["runs"].append(run | {"code_report_bpc": report, "prose_bpc": 2.0})
    assert best_lr(results, "qlora") == 1e-2
    with pytest.raises(ValueError, match="no runs of method 'lora'"):
        best_lr(results, "lora")
