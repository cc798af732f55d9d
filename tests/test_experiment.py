"""The seed's experiment: cached baselines, the LoRA fine-tune, and the CLI that runs it."""

import pytest
import torch

from lora_teach import experiment, lora_modules
from lora_teach.cli import main
from lora_teach.models import DigitsNet


def test_pretrained_digitsnet_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TEACH_CHECKPOINTS", str(tmp_path))
    calls = []

    def quick_baseline(variant, seed, progress=True):
        calls.append((variant, seed))
        torch.manual_seed(seed)
        return DigitsNet(variant)

    monkeypatch.setattr(experiment, "train_baseline", quick_baseline)
    first = experiment.pretrained_digitsnet("original", seed=4)
    second = experiment.pretrained_digitsnet("original", seed=4)
    assert calls == [("original", 4)]
    assert [p.name for p in tmp_path.iterdir()] == [experiment.checkpoint_path("original", 4).name]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_a_checkpoint_of_another_recipe_or_code_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TEACH_CHECKPOINTS", str(tmp_path))
    before = experiment.checkpoint_path("corrected", 0)
    assert before.name.startswith("digitsnet-corrected-seed0-")
    assert experiment.checkpoint_path("corrected", 1) != before
    assert experiment.checkpoint_path("original", 0) != before

    def other_recipe(variant="corrected", seed=0, batch_size=10, num_epochs=1, lr=3e-3, progress=True):
        return DigitsNet(variant)

    monkeypatch.setattr(experiment, "train_baseline", other_recipe)  # another lr: another file
    assert experiment.checkpoint_path("corrected", 0) != before
    monkeypatch.undo()
    monkeypatch.setenv("LORA_TEACH_CHECKPOINTS", str(tmp_path))
    monkeypatch.setattr(experiment.torch, "__version__", "0.0.1")  # another torch: another file
    assert experiment.checkpoint_path("corrected", 0) != before


def test_both_methods_give_identical_results_with_the_same_seed():
    torch.manual_seed(0)
    base = DigitsNet()
    tuned = {
        method: experiment.finetune_lora(base, method=method, num_steps=20, seed=1, progress=False)
        for method in ["parametrize", "wrapper"]
    }
    factors = {
        m: [(lora.lora_A, lora.lora_B) for _, lora in lora_modules(model)] for m, model in tuned.items()
    }
    for (a1, b1), (a2, b2) in zip(factors["parametrize"], factors["wrapper"]):
        torch.testing.assert_close(a1, a2, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b1, b2, rtol=1e-3, atol=1e-5)
    x = torch.randn(64, 784)
    torch.testing.assert_close(tuned["parametrize"](x), tuned["wrapper"](x), rtol=1e-4, atol=1e-4)


def test_finetune_leaves_the_base_model_untouched():
    base = DigitsNet()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    experiment.finetune_lora(base, num_steps=3, progress=False)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())


def test_cli_experiment_reproduces_the_seed_counts_and_prints_a_table(capsys):
    # the seed's settings, with the fine-tune shortened; the baseline is the full epoch (~10 s)
    assert main(["experiment", "--iterations", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "full model 235,146 | LoRA 3,124 | LoRA + all biases 3,518" in out
    assert "digit  wrong before  wrong after  change" in out
    before = float(out.split("accuracy: ")[1].split(" %")[0])
    assert 85.0 <= before <= 92.0, f"the seed's network should land near 89 %, got {before} %"


def _refused(argv: list[str], capsys) -> str:
    """The one-line error of a command line argparse refuses (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_cli_rejects_a_bad_rank_with_a_message(capsys):
    assert "--rank/-r: expected a positive integer, got '0'" in _refused(
        ["experiment", "--rank", "0"], capsys
    )


def test_cli_rejects_a_rank_too_large_for_digitsnet_before_training(capsys):
    assert main(["experiment", "--rank", "11", "--iterations", "1", "--no-progress"]) == 2
    assert "r must be an integer between 1 and" in capsys.readouterr().err


def test_cli_rejects_bad_digits_with_a_message(capsys):
    assert "--digits: expected digits 0-9" in _refused(["experiment", "--digits", "two,three"], capsys)


def test_cli_rejects_a_digit_out_of_range_before_training(capsys):
    assert "--digits: expected digits 0-9" in _refused(["experiment", "--digits", "2,12"], capsys)


def test_baseline_trains_on_one_thread_and_restores_the_callers_count(monkeypatch):
    """Thread count changes float sums; the baseline is trained on one thread so it never depends on it."""
    import lora_teach.experiment as experiment

    seen = []
    monkeypatch.setattr(
        experiment, "load_mnist", lambda split: (torch.zeros(20, 784), torch.zeros(20).long())
    )
    monkeypatch.setattr(experiment, "train", lambda *args, **kwargs: seen.append(torch.get_num_threads()))
    torch.set_num_threads(2)
    try:
        experiment.train_baseline("corrected", seed=3, progress=False)
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def _tiny_baseline(monkeypatch):
    import lora_teach.experiment as experiment

    monkeypatch.setattr(
        experiment, "load_mnist", lambda split: (torch.zeros(20, 784), torch.zeros(20).long())
    )


def test_saved_baseline_checkpoint_gets_the_umask_mode(monkeypatch, tmp_path):
    import os

    _tiny_baseline(monkeypatch)
    monkeypatch.setenv("LORA_TEACH_CHECKPOINTS", str(tmp_path))
    old = os.umask(0o022)
    try:
        experiment.pretrained_digitsnet("corrected", seed=5, progress=False)
    finally:
        os.umask(old)
    (saved,) = tmp_path.glob("*.pt")
    assert saved.stat().st_mode & 0o777 == 0o644


def test_failed_checkpoint_save_leaves_no_temporary_file(monkeypatch, tmp_path):
    import lora_teach.experiment as experiment

    _tiny_baseline(monkeypatch)
    monkeypatch.setenv("LORA_TEACH_CHECKPOINTS", str(tmp_path))

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(experiment.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        experiment.pretrained_digitsnet("corrected", seed=6, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_accuracy_among_picks_the_top_score_among_the_digits_only():
    model = torch.nn.Sequential(torch.nn.Linear(3, 10))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.arange(10.0))  # always predicts 9 out of ten, the largest of any subset
    x, y = torch.zeros(4, 3), torch.tensor([2, 3, 3, 7])
    assert experiment.accuracy_among(model, (x, y), [2, 3]) == pytest.approx(2 / 3)  # 3 wins among 2, 3
    with pytest.raises(ValueError, match="no images of the digits"):
        experiment.accuracy_among(model, (x, y), [5, 6])


def test_a_score_shift_moves_predictions_but_not_the_ranking_among_the_shifted_digits():
    torch.manual_seed(0)
    base = DigitsNet("corrected")
    x, y = torch.randn(200, 784), torch.randint(0, 10, (200,))
    shifted = experiment.shift_scores(base, [2, 3, 5], 3.0)
    assert torch.equal(
        shifted.linear3.bias - base.linear3.bias, torch.tensor([0, 0, 3, 3, 0, 3, 0, 0, 0, 0.0])
    )
    assert experiment.accuracy_among(shifted, (x, y), [2, 3, 5]) == experiment.accuracy_among(
        base, (x, y), [2, 3, 5]
    )
    assert (shifted(x).argmax(1) == 2).sum() + (shifted(x).argmax(1) == 3).sum() > (
        base(x).argmax(1) == 2
    ).sum()
    with pytest.raises(ValueError, match="digits must be"):
        experiment.shift_scores(base, [11], 1.0)
