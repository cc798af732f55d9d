"""lora_teach.forgetting: rotation, frontiers read at matched learning, the Table 7 projection, bad inputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lora_teach.forgetting import (
    Score,
    best_learning,
    directions_for_energy,
    finetune,
    forgetting_at,
    half_accuracies,
    matched_range,
    projected_norm,
    random_batches,
    rotate_digits,
    rotated_digits_task,
)


def test_rotating_by_zero_degrees_keeps_the_pixels():
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert torch.allclose(rotate_digits(images, 0), images / 255, atol=1e-5)


def test_a_quarter_turn_moves_every_pixel_exactly():
    images = torch.zeros(1, 28, 28)
    images[0, 5:20, 10:14] = 255
    assert torch.allclose(rotate_digits(images, 90), images.transpose(1, 2).flip(1) / 255, atol=1e-5)


def test_rotate_digits_rejects_a_flat_batch():
    with pytest.raises(ValueError, match=r"images must be a \(N, 28, 28\) tensor"):
        rotate_digits(torch.zeros(3, 784), 40)


def test_rotated_task_has_the_requested_sizes_and_upright_old_task():
    task = rotated_digits_task(num_train=100, num_test=50)
    assert task.new_train[0].shape == (100, 784) and task.new_test[0].shape == (50, 784)
    assert torch.equal(task.new_test[1], task.old_test[1])
    assert not torch.allclose(task.new_test[0], task.old_test[0])


@pytest.mark.parametrize("num_train", [0, 40_000, 1.5])
def test_rotated_task_rejects_a_bad_num_train(num_train):
    with pytest.raises(ValueError, match="num_train must be an integer between 1 and 30,000"):
        rotated_digits_task(num_train=num_train)


def test_rotated_task_rejects_a_bad_num_test():
    with pytest.raises(ValueError, match="num_test must be an integer between 1 and 10,000"):
        rotated_digits_task(num_test=0)


def test_replay_fraction_of_each_batch_comes_from_the_old_task():
    task = rotated_digits_task(num_train=100, num_test=10)
    for x, _ in random_batches(task, seed=0, replay=0.2, num_steps=3, batch_size=10):
        from_old = torch.cdist(x, task.old_train[0]).min(dim=1).values < 0.1
        from_new = torch.cdist(x, task.new_train[0]).min(dim=1).values < 0.1
        assert from_old.tolist() == [False] * 8 + [True] * 2 and from_new[:8].all()


def test_replay_outside_zero_one_is_refused():
    task = rotated_digits_task(num_train=10, num_test=10)
    with pytest.raises(ValueError, match="replay must be a fraction between 0 and 1"):
        next(random_batches(task, seed=0, replay=1.5))


def _curve(points_per_seed):
    """lr -> Scores per seed, from [(learned, forgotten) by lr] per seed."""
    lrs = [1e-4, 1e-3, 1e-2][: len(points_per_seed[0])]
    return {lr: [Score(*seed[k]) for seed in points_per_seed] for k, lr in enumerate(lrs)}


def test_forgetting_is_read_by_straight_lines_between_learning_rates():
    curve = _curve([[(0, 0), (10, 2), (20, 10)], [(0, 1), (10, 3), (20, 11)]])
    assert forgetting_at(curve, 15) == pytest.approx([6.0, 7.0])


def test_forgetting_is_read_at_the_first_crossing_when_learning_falls_at_large_steps():
    curve = _curve([[(0, 0), (20, 4), (10, 30)], [(0, 0), (20, 4), (10, 30)]])
    assert forgetting_at(curve, 10) == pytest.approx([2.0, 2.0])


def test_forgetting_outside_a_seeds_range_is_refused():
    curve = _curve([[(0, 0), (10, 2)], [(0, 0), (5, 2)]])
    with pytest.raises(ValueError, match="outside seed 1's range"):
        forgetting_at(curve, 8)


def test_matched_range_is_what_every_seed_of_every_curve_reaches():
    a = _curve([[(1, 0), (30, 5)], [(2, 0), (25, 5)]])
    b = _curve([[(3, 0), (40, 5)], [(0, 0), (35, 5)]])
    assert matched_range(a, b) == (3, 25)


def test_matched_range_without_overlap_is_refused():
    with pytest.raises(ValueError, match="share no learning level"):
        matched_range(
            _curve([[(0, 0), (5, 1)], [(0, 0), (5, 1)]]), _curve([[(10, 0), (20, 1)], [(10, 0), (20, 1)]])
        )


def test_best_learning_picks_the_learning_rate_with_the_highest_mean():
    curve = _curve([[(5, 0), (30, 2), (20, 9)], [(6, 0), (28, 2), (25, 9)]])
    assert best_learning(curve) == (1e-3, [30, 28])


def _halves_curve(halves_per_lr):
    """lr -> Scores of two seeds, from [(first half, second half) per seed] per lr."""
    lrs = [1e-4, 1e-3, 1e-2]
    return {lr: [Score((a + b) / 2, 0.0, (a, b)) for a, b in seeds] for lr, seeds in zip(lrs, halves_per_lr)}


def test_best_learning_chooses_on_one_half_and_reports_the_other():
    # the first half favours 1e-3, the second half favours 1e-2
    curve = _halves_curve([[(5, 5), (6, 6)], [(30, 10), (28, 12)], [(20, 25), (21, 26)]])
    assert best_learning(curve, choose=0) == (1e-3, [10, 12])
    assert best_learning(curve, choose=1) == (1e-2, [20, 21])


halves = st.tuples(st.floats(-50, 50), st.floats(-50, 50))


@given(st.lists(st.lists(halves, min_size=2, max_size=2), min_size=1, max_size=3), st.sampled_from([0, 1]))
def test_best_learning_reports_the_other_half_of_the_rate_best_on_the_chosen_half(halves_per_lr, choose):
    curve = _halves_curve(halves_per_lr)
    lr, reported = best_learning(curve, choose=choose)
    best_mean = max(sum(s.learned_halves[choose] for s in scores) / 2 for scores in curve.values())
    assert sum(s.learned_halves[choose] for s in curve[lr]) / 2 == best_mean
    assert reported == [s.learned_halves[1 - choose] for s in curve[lr]]
    swapped = {
        k: [Score(s.learned, s.forgotten, s.learned_halves[::-1]) for s in v] for k, v in curve.items()
    }
    assert best_learning(swapped, choose=1 - choose) == (lr, reported)


@pytest.mark.parametrize("choose", [2, -1, True, "first", 0.0])
def test_best_learning_rejects_a_bad_choose(choose):
    curve = _halves_curve([[(5, 5), (6, 6)]])
    with pytest.raises(
        ValueError, match=r"choose must be None, 0 \(the first half\) or 1 \(the second half\)"
    ):
        best_learning(curve, choose=choose)


def test_best_learning_on_halves_refuses_scores_without_them():
    with pytest.raises(ValueError, match="curve has Scores without learned_halves"):
        best_learning(_curve([[(5, 0), (30, 2)], [(6, 0), (28, 2)]]), choose=0)


def test_finetune_scores_learning_on_each_half_of_the_new_test_images():
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(784, 10))
    task = rotated_digits_task(num_train=50, num_test=40)
    before = half_accuracies(base, task)
    model, score = finetune(base, task, seed=0, lr=1e-2, num_steps=5)
    after = half_accuracies(model, task)
    assert score.learned_halves == pytest.approx([100 * (a - b) for a, b in zip(after, before)])
    assert score.learned == pytest.approx(sum(score.learned_halves) / 2)  # two halves of 20 images


def test_half_accuracies_needs_two_images():
    base = torch.nn.Sequential(torch.nn.Linear(784, 10))
    with pytest.raises(ValueError, match="task.new_test needs at least 2 images"):
        half_accuracies(base, rotated_digits_task(num_train=10, num_test=1))


@given(st.lists(st.floats(0.01, 10), min_size=1, max_size=12), st.floats(0.05, 1.0))
def test_directions_for_energy_is_the_fewest_that_reach_the_fraction(values, fraction):
    S = torch.tensor(sorted(values, reverse=True), dtype=torch.float64)
    k = directions_for_energy(S, fraction)
    energy = S**2 / (S**2).sum()
    assert energy[:k].sum() >= fraction - 1e-9
    assert k == 1 or energy[: k - 1].sum() < fraction


def test_projected_norm_of_w_along_its_own_directions_is_its_top_singular_values():
    W = torch.randn(12, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    S = torch.linalg.svdvals(W)
    assert projected_norm(W, W, 3) == pytest.approx(S[:3].norm().item())


def test_projected_norm_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="W and M must be matrices of the same shape"):
        projected_norm(torch.zeros(4, 3), torch.zeros(3, 4), 1)


def test_projected_norm_rejects_a_rank_above_the_matrix():
    with pytest.raises(ValueError, match=r"r must be an integer between 1 and min\(out, in\) = 3"):
        projected_norm(torch.zeros(4, 3), torch.zeros(4, 3), 5)
