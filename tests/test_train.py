"""Training loop, evaluation and the DigitsNet model."""

import pytest
import torch
from torch import nn

from lora_teach import DigitsNet, evaluate, get_device, set_seed, train
from lora_teach.data import Batches
from lora_teach.train import make_optimizer


def test_get_device_is_cpu_without_an_accelerator():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device().type == expected


def test_set_seed_makes_draws_repeat():
    set_seed(3)
    first = torch.randn(4)
    set_seed(3)
    assert torch.equal(first, torch.randn(4))


def separable_data(n=200):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 784, generator=g)
    y = (x[:, 0] > 0).long() * 3
    return x, y


def test_train_lowers_the_loss_and_stops_at_num_steps():
    set_seed(0)
    model = DigitsNet()
    x, y = separable_data()
    losses = train(model, Batches(x, y, 20), num_epochs=5, num_steps=30, progress=False)
    assert len(losses) == 30
    assert sum(losses[-5:]) < sum(losses[:5])


def test_train_runs_every_epoch_without_a_limit():
    model = DigitsNet()
    x, y = separable_data(50)
    assert len(train(model, Batches(x, y, 10), num_epochs=3, progress=False)) == 15


def test_train_updates_only_trainable_parameters():
    model = DigitsNet()
    model.linear1.requires_grad_(False)
    frozen = model.linear1.weight.clone()
    x, y = separable_data(40)
    train(model, Batches(x, y, 10), progress=False)
    assert torch.equal(model.linear1.weight, frozen)


def test_nothing_to_train_is_refused():
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer([])


def test_bad_num_steps_is_refused():
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        train(DigitsNet(), [], num_steps=0, progress=False)


class Constant(nn.Module):
    """Predicts the same digit for everything."""

    def __init__(self, digit):
        super().__init__()
        self.digit = digit
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(torch.full((len(x),), self.digit), 10).float()


def test_evaluate_counts_wrong_predictions_per_true_digit():
    y = torch.tensor([0, 1, 1, 2, 2, 2, 7])
    result = evaluate(Constant(2), (torch.zeros(7, 784), y), batch_size=3)
    assert result.correct == 3 and result.total == 7
    assert result.wrong_counts == [1, 2, 0, 0, 0, 0, 0, 1, 0, 0]
    assert result.digit_totals == [1, 2, 3, 0, 0, 0, 0, 1, 0, 0]
    assert result.confusion[:, 2].tolist() == [1, 2, 3, 0, 0, 0, 0, 1, 0, 0]
    assert result.accuracy == pytest.approx(3 / 7)
    assert result.accuracy_on([1, 2]) == pytest.approx(3 / 5)
    assert "accuracy: 42.9 %" in str(result)


def test_evaluate_accepts_an_iterable_of_batches():
    y = torch.tensor([4, 4, 5])
    batches = [(torch.zeros(2, 784), y[:2]), (torch.zeros(1, 784), y[2:])]
    assert evaluate(Constant(4), batches).correct == 2


def test_digitsnet_shapes_and_parameter_count():
    for variant in ["corrected", "original"]:
        model = DigitsNet(variant)
        assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
        assert sum(p.numel() for p in model.parameters()) == 235_146


def test_original_digitsnet_is_one_linear_map_then_a_relu():
    model = DigitsNet("original")
    x = torch.randn(5, 784)
    W = model.linear3.weight @ model.linear2.weight @ model.linear1.weight
    b = (
        model.linear3.weight @ (model.linear2.weight @ model.linear1.bias + model.linear2.bias)
        + model.linear3.bias
    )
    torch.testing.assert_close(model(x), torch.relu(x @ W.T + b), rtol=1e-4, atol=1e-5)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        DigitsNet("fixed")


# ---------------------------------------------------------------- zero and negative counts (issue 11, item 14)


@pytest.mark.parametrize("num_epochs", [0, -1, 1.5, True, None])
def test_num_epochs_that_is_not_a_positive_integer_is_refused(num_epochs):
    x, y = separable_data(20)
    with pytest.raises(ValueError, match=f"num_epochs must be a positive integer, got {num_epochs!r}"):
        train(DigitsNet(), Batches(x, y, 10), num_epochs=num_epochs, progress=False)


@pytest.mark.parametrize("num_steps", [-5, 2.5, True])
def test_num_steps_of_the_wrong_kind_is_refused(num_steps):
    with pytest.raises(ValueError, match="num_steps must be a positive integer or None"):
        train(DigitsNet(), [], num_steps=num_steps, progress=False)


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), float("inf")])
def test_a_learning_rate_that_is_not_positive_and_finite_is_refused(lr):
    x, y = separable_data(20)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        train(DigitsNet(), Batches(x, y, 10), lr=lr, progress=False)


def test_batches_that_yield_nothing_are_an_error_not_an_empty_loss_list():
    with pytest.raises(ValueError, match="batches yielded no batch"):
        train(DigitsNet(), [], progress=False)


def test_evaluate_refuses_a_zero_batch_size_and_accuracy_on_absent_digits():
    x, y = separable_data(20)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        evaluate(DigitsNet(), (x, y), batch_size=0)
    result = evaluate(DigitsNet(), (x, y))
    with pytest.raises(ValueError, match=r"no examples of the digits \[7\] were evaluated"):
        result.accuracy_on([7])
