"""Learning versus forgetting, as Biderman et al. (2024) measure it: a rotated-digits task for DigitsNet,
one fine-tuning function for LoRA and full fine-tuning, learning-rate sweeps and frontiers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lora_teach.adapters import add_lora, mark_only_lora_as_trainable
from lora_teach.data import MEAN, STD, load_raw_mnist
from lora_teach.progress import tqdm
from lora_teach.train import evaluate, set_seed, train

ANGLE = 40.0  # degrees: the shift of the new task (notebook 07 uses the same angle)
NUM_STEPS, BATCH_SIZE = 300, 10


def rotate_digits(images: Tensor, degrees: float) -> Tensor:
    """Turn images about their centre: (N, 28, 28) uint8 or float in [0, 255] -> (N, 28, 28) float in [0, 1]."""
    if not isinstance(images, Tensor) or images.dim() != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, 28, 28) tensor of pixels, got {shape}")
    angle = math.radians(float(degrees))
    rotation = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]]
    )
    pixels = images.unsqueeze(1).to(torch.float32) / 255  # (N, 1, 28, 28)
    grid = F.affine_grid(rotation.expand(len(pixels), 2, 3), list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, align_corners=False).squeeze(1)


def _normalize(pixels: Tensor) -> Tensor:
    """(N, 28, 28) in [0, 1] -> (N, 784), normalized as load_mnist does."""
    return pixels.reshape(len(pixels), -1).sub(MEAN).div(STD)


@dataclass(frozen=True)
class ShiftTask:
    """Fine-tune on the new task, measure forgetting on the old one. Each pair is x (N, 784), y (N,)."""

    name: str
    new_train: tuple[Tensor, Tensor]
    new_test: tuple[Tensor, Tensor]
    old_train: tuple[Tensor, Tensor]  # for replay only
    old_test: tuple[Tensor, Tensor]


def rotated_digits_task(
    degrees: float = ANGLE,
    num_train: int = 12_000,
    device: torch.device | str | None = None,
    num_test: int = 10_000,
) -> ShiftTask:
    """New task: MNIST turned by ``degrees`` (the first ``num_train`` training images and the first
    ``num_test`` test images). Old task: the same digits upright, as the base model was trained on."""
    if isinstance(num_train, bool) or not isinstance(num_train, int) or not 1 <= num_train <= 30_000:
        raise ValueError(f"num_train must be an integer between 1 and 30,000, got {num_train!r}")
    if isinstance(num_test, bool) or not isinstance(num_test, int) or not 1 <= num_test <= 10_000:
        raise ValueError(f"num_test must be an integer between 1 and 10,000, got {num_test!r}")
    raw_train, labels_train = load_raw_mnist("train")
    raw_test, labels_test = load_raw_mnist("test")
    raw_test, labels_test = raw_test[:num_test], labels_test[:num_test]

    def ready(pixels: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        x = _normalize(pixels)
        return (x.to(device), labels.to(device)) if device is not None else (x, labels)

    return ShiftTask(
        name=f"rotated {degrees:g}°",
        new_train=ready(rotate_digits(raw_train[:num_train], degrees), labels_train[:num_train]),
        new_test=ready(rotate_digits(raw_test, degrees), labels_test),
        old_train=ready(raw_train[num_train : 2 * num_train] / 255, labels_train[num_train : 2 * num_train]),
        old_test=ready(raw_test / 255, labels_test),
    )


@dataclass(frozen=True)
class Score:
    """One fine-tuning run: percentage points gained on the new task and lost on the old one, and the points
    gained on each half of the new task's test images (first, second), so that a learning rate can be chosen
    on one half and reported on the other (see best_learning)."""

    learned: float
    forgotten: float
    learned_halves: tuple[float, float] | None = None


def base_accuracies(base: nn.Module, task: ShiftTask) -> tuple[float, float]:
    """Accuracy (0-1) of ``base`` on the new task's and the old task's test sets."""
    return evaluate(base, task.new_test).accuracy, evaluate(base, task.old_test).accuracy


def half_accuracies(model: nn.Module, task: ShiftTask) -> tuple[float, float]:
    """Accuracy (0-1) of ``model`` on the first and on the second half of ``task.new_test``."""
    x, y = task.new_test
    half = len(y) // 2
    if half == 0:
        raise ValueError(f"task.new_test needs at least 2 images to be split in halves, got {len(y)}")
    return evaluate(model, (x[:half], y[:half])).accuracy, evaluate(model, (x[half:], y[half:])).accuracy


def random_batches(
    task: ShiftTask, seed: int, replay: float = 0.0, num_steps: int = NUM_STEPS, batch_size: int = BATCH_SIZE
):
    """``num_steps`` batches (x (batch_size, 784), y): a ``replay`` fraction of each from the old task.

    The order depends only on ``seed``, so every method sees the same examples for the same seed.
    """
    if not 0.0 <= replay <= 1.0:
        raise ValueError(f"replay must be a fraction between 0 and 1, got {replay!r}")
    generator = torch.Generator().manual_seed(seed)
    (x_new, y_new), (x_old, y_old) = task.new_train, task.old_train
    n_old = round(replay * batch_size)
    for _ in range(num_steps):
        i = torch.randint(len(y_new), (batch_size - n_old,), generator=generator).to(y_new.device)
        j = torch.randint(len(y_old), (n_old,), generator=generator).to(y_old.device)
        yield torch.cat([x_new[i], x_old[j]]), torch.cat([y_new[i], y_old[j]])


def finetune(
    base: nn.Module,
    task: ShiftTask,
    *,
    seed: int,
    lr: float,
    lora: Mapping | None = None,
    replay: float = 0.0,
    num_steps: int = NUM_STEPS,
    batch_size: int = BATCH_SIZE,
    before: tuple[float, float] | None = None,
    before_halves: tuple[float, float] | None = None,
) -> tuple[nn.Module, Score]:
    """Fine-tune a copy of ``base`` on ``task.new_train`` with Adam at ``lr``: fully (``lora=None``) or
    through adapters (``lora`` = add_lora's keyword options, e.g. ``dict(r=8, lora_alpha=8)``).

    ``seed`` fixes the adapter init and the batches. Returns the model and its Score against ``base``
    (``before``: base_accuracies(base, task), ``before_halves``: half_accuracies(base, task), each computed
    when not given).
    """
    if not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    before = before if before is not None else base_accuracies(base, task)
    before_halves = before_halves if before_halves is not None else half_accuracies(base, task)
    model = copy.deepcopy(base)
    set_seed(seed)
    if lora is not None:
        options = dict(lora)
        add_lora(model, options.pop("r"), **options)
        mark_only_lora_as_trainable(model)
    train(model, random_batches(task, seed, replay, num_steps, batch_size), lr=lr, progress=False)
    after = base_accuracies(model, task)
    halves = tuple(100 * (a - b) for a, b in zip(half_accuracies(model, task), before_halves))
    return model, Score(100 * (after[0] - before[0]), 100 * (before[1] - after[1]), halves)


def lr_sweep(
    base: nn.Module,
    task: ShiftTask,
    methods: Mapping[str, tuple[Mapping | None, Sequence[float]]],
    seeds: Sequence[int],
    progress: bool = True,
    **finetune_options,
) -> dict[str, dict[float, list[Score]]]:
    """Every method at every one of its learning rates and seeds.

    ``methods``: name -> (lora options or None for full fine-tuning, learning rates).
    Returns name -> lr -> one Score per seed. Shows one short progress bar that disappears.
    """
    before = dict(before=base_accuracies(base, task), before_halves=half_accuracies(base, task))
    total = sum(len(lrs) for _, lrs in methods.values()) * len(seeds)
    results: dict[str, dict[float, list[Score]]] = {}
    with tqdm(total=total, desc="fine-tuning runs", leave=False, disable=not progress) as bar:
        for name, (lora, lrs) in methods.items():
            for lr in lrs:
                for seed in seeds:
                    _, score = finetune(base, task, seed=seed, lr=lr, lora=lora, **before, **finetune_options)
                    results.setdefault(name, {}).setdefault(lr, []).append(score)
                    bar.update()
    return results


def forgetting_at(curve: Mapping[float, Sequence[Score]], learned: float) -> list[float]:
    """Forgetting (pp) at a learning level (pp), one value per seed, read off each seed's frontier.

    ``curve``: lr -> one Score per seed. Each seed's points are joined in order of the learning rate,
    and the level is read at the first crossing (the smallest step that learns that much);
    ``learned`` must be reached by every seed (see matched_range).
    """
    per_seed = list(zip(*(curve[lr] for lr in sorted(curve))))  # seed -> its Scores by growing lr
    values = []
    for i, scores in enumerate(per_seed):
        points = [(s.learned, s.forgotten) for s in scores]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if min(x0, x1) <= learned <= max(x0, x1):
                t = 0.0 if x1 == x0 else (learned - x0) / (x1 - x0)
                values.append(y0 + t * (y1 - y0))
                break
        else:
            reached = [x for x, _ in points]
            raise ValueError(
                f"learned = {learned:.2f} pp is outside seed {i}'s range {min(reached):.2f} to "
                f"{max(reached):.2f} pp; pick a level inside matched_range(...)"
            )
    return values


def matched_range(*curves: Mapping[float, Sequence[Score]]) -> tuple[float, float]:
    """The learning levels (pp) that every seed of every curve reaches: (low, high), low < high."""
    lows, highs = [], []
    for curve in curves:
        for scores in zip(*curve.values()):
            learned = [s.learned for s in scores]
            lows.append(min(learned))
            highs.append(max(learned))
    low, high = max(lows), min(highs)
    if not low < high:
        raise ValueError(
            f"the curves share no learning level (every seed reaches {low:.2f} pp but some stop at "
            f"{high:.2f} pp); widen the learning-rate grids"
        )
    return low, high


def best_learning(
    curve: Mapping[float, Sequence[Score]], choose: int | None = None
) -> tuple[float, list[float]]:
    """The learning rate whose mean learning is highest, and the learning (pp) of each seed there.

    ``choose=None``: both measured on all the new task's test images (the rate is chosen on the images it is
    reported on). ``choose=0``: the rate is chosen on the first half of the images and its learning reported on
    the second half; ``choose=1``: the reverse.
    """
    if choose is None:
        lr = max(curve, key=lambda k: float(np.mean([s.learned for s in curve[k]])))
        return lr, [s.learned for s in curve[lr]]
    if isinstance(choose, bool) or not isinstance(choose, int) or choose not in (0, 1):
        raise ValueError(f"choose must be None, 0 (the first half) or 1 (the second half), got {choose!r}")
    if any(s.learned_halves is None for scores in curve.values() for s in scores):
        raise ValueError("curve has Scores without learned_halves; score the runs with finetune or lr_sweep")
    lr = max(curve, key=lambda k: float(np.mean([s.learned_halves[choose] for s in curve[k]])))
    return lr, [s.learned_halves[1 - choose] for s in curve[lr]]


def directions_for_energy(S: Tensor, fraction: float) -> int:
    """The fewest singular directions whose squared singular values hold ``fraction`` of sum(S**2).

    S: (k,) singular values, largest first; 0 < fraction <= 1.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    energy = S.double() ** 2
    share = torch.cumsum(energy, dim=0) / energy.sum()
    return int((share < fraction - 1e-12).sum().item()) + 1


def projected_norm(W: Tensor, M: Tensor, r: int) -> float:
    """||U^T W V^T||_F with U (out, r), V^T (in, r) the top-r singular vectors of M: how much of W
    lies along M's top-r directions (the LoRA paper's Table 7). W, M: (out, in)."""
    if W.shape != M.shape or W.dim() != 2:
        raise ValueError(
            f"W and M must be matrices of the same shape, got {tuple(W.shape)} and {tuple(M.shape)}"
        )
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= min(W.shape):
        raise ValueError(f"r must be an integer between 1 and min(out, in) = {min(W.shape)}, got {r!r}")
    U, _, Vh = torch.linalg.svd(M.double(), full_matrices=False)
    return torch.linalg.matrix_norm(U[:, :r].T @ W.double() @ Vh[:r].T).item()
