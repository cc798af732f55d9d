"""The MNIST tutorial's experiment: train DigitsNet, then fine-tune it with LoRA on its weak digits."""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from lora_teach.adapters import add_lora, mark_only_lora_as_trainable
from lora_teach.data import Batches, check_digits, data_root, load_mnist
from lora_teach.models import DigitsNet
from lora_teach.outputs import umask_mode
from lora_teach.params import count_parameters
from lora_teach.train import Evaluation, evaluate, set_seed, train

WEAK_DIGITS = (2, 3, 5, 8, 9)  # the digits the seed fine-tunes on


def train_baseline(
    variant: str = "corrected",
    seed: int = 0,
    batch_size: int = 10,
    num_epochs: int = 1,
    lr: float = 1e-3,
    progress: bool = True,
) -> DigitsNet:
    """The tutorial's recipe: one epoch of Adam (lr 1e-3) at batch size 10 on all of MNIST.

    Trained on one CPU thread, whatever the caller's setting, so the same seed gives the same
    weights bit for bit at any thread count (and batch 10 runs faster on one thread anyway).
    """
    set_seed(seed)
    model = DigitsNet(variant)
    x, y = load_mnist("train")
    with one_thread():
        train(
            model,
            Batches(x, y, batch_size),
            num_epochs=num_epochs,
            lr=lr,
            desc=f"baseline ({variant})",
            progress=progress,
        )
    return model


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block; restore the caller's count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def checkpoint_dir() -> Path:
    """Where trained baselines are kept: $LORA_TEACH_CHECKPOINTS, else ``data/checkpoints`` (gitignored)."""
    return Path(os.environ.get("LORA_TEACH_CHECKPOINTS") or data_root() / "checkpoints")


def recipe_key(variant: str, seed: int) -> str:
    """12 hex digits naming everything that makes a baseline: variant, seed, the recipe's defaults, the
    source of the code that trains it (this recipe, the training loop, the model, the data batches) and
    torch's version. A change to any of them names a new checkpoint, so a stale one is never loaded."""
    from lora_teach import data, models
    from lora_teach import train as training

    recipe = {
        "variant": variant,
        "seed": seed,
        "defaults": {k: v.default for k, v in inspect.signature(train_baseline).parameters.items()},
        "code": [inspect.getsource(m) for m in (train_baseline, training, models, data.Batches)],
        "torch": torch.__version__.split("+")[0],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]


def checkpoint_path(variant: str = "corrected", seed: int = 0) -> Path:
    """Where the baseline of ``train_baseline(variant, seed)`` is cached, keyed by ``recipe_key``."""
    return checkpoint_dir() / f"digitsnet-{variant}-seed{seed}-{recipe_key(variant, seed)}.pt"


def pretrained_digitsnet(variant: str = "corrected", seed: int = 0, progress: bool = True) -> DigitsNet:
    """The baseline of ``train_baseline(variant, seed)``, loaded from its checkpoint, or
    trained and saved (atomically) when the checkpoint is missing. The file name carries the
    recipe and code version (``recipe_key``): a checkpoint of another recipe is never reused."""
    path = checkpoint_path(variant, seed)
    model = DigitsNet(variant)
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as error:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError (other shapes), ...
            raise ValueError(
                f"{path} is not a DigitsNet checkpoint ({type(error).__name__}); delete it and it is trained again"
            ) from None
        return model
    model = train_baseline(variant, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(model.state_dict(), tmp)
        os.chmod(tmp, umask_mode())  # readable by others as the umask allows, like any new file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return model


def finetune_lora(
    base: torch.nn.Module,
    digits: Sequence[int] = WEAK_DIGITS,
    r: int = 2,
    lora_alpha: float = 1.0,
    method: str = "parametrize",
    bias: str = "none",
    num_steps: int = 200,
    batch_size: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    init_lora_weights: bool | str = "normal",
    **lora_options,
) -> torch.nn.Module:
    """A copy of ``base`` with LoRA on every Linear, trained for ``num_steps`` on ``digits``.

    ``seed`` fixes the LoRA init and the data order: the same seed gives both
    methods the same A and the same batches. ``init_lora_weights`` defaults to the
    tutorial's N(0, 1); other keywords go to ``add_lora``.
    """
    model = copy.deepcopy(base)
    set_seed(seed)
    add_lora(
        model, r=r, lora_alpha=lora_alpha, method=method, init_lora_weights=init_lora_weights, **lora_options
    )
    mark_only_lora_as_trainable(model, bias=bias)
    x, y = load_mnist("train", digits=digits)
    train(
        model,
        Batches(x, y, batch_size),
        num_steps=num_steps,
        lr=lr,
        desc=f"LoRA ({method})",
        progress=progress,
    )
    return model


@dataclass
class ExperimentResult:
    """Before and after, and how many parameters each stage trains."""

    before: Evaluation
    after: Evaluation
    trainable_full: int
    trainable_lora: int
    trainable_lora_and_biases: int
    model: torch.nn.Module


def run_experiment(
    variant: str = "original",
    method: str = "parametrize",
    r: int = 2,
    lora_alpha: float = 1.0,
    digits: Sequence[int] = WEAK_DIGITS,
    num_steps: int = 200,
    bias: str = "none",
    seed: int = 0,
    progress: bool = True,
    init_lora_weights: bool | str = "normal",
    **lora_options,
) -> ExperimentResult:
    """Train the baseline (seed's recipe), fine-tune with LoRA on ``digits``, evaluate both."""
    check_digits(digits)  # bad input fails here, before any training
    counts = {}
    for mode in ("none", "all"):
        probe = DigitsNet(variant)
        add_lora(probe, r=r, lora_alpha=lora_alpha, method=method, **lora_options)  # counts only
        mark_only_lora_as_trainable(probe, bias=mode)
        counts[mode] = count_parameters(probe)
    base = train_baseline(variant, seed, progress=progress)
    tuned = finetune_lora(
        base,
        digits,
        r,
        lora_alpha,
        method,
        bias,
        num_steps,
        seed=seed,
        progress=progress,
        init_lora_weights=init_lora_weights,
        **lora_options,
    )
    test = load_mnist("test")
    return ExperimentResult(
        before=evaluate(base, test),
        after=evaluate(tuned, test),
        trainable_full=count_parameters(base),
        trainable_lora=counts["none"],
        trainable_lora_and_biases=counts["all"],
        model=tuned,
    )


@torch.no_grad()
def accuracy_among(
    model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], digits: Sequence[int]
) -> float:
    """k-way accuracy (0-1) on the images of ``digits``, each predicted as the top score among ``digits``
    only: x (N, 784), y (N,). It measures telling those digits apart, not how often they are predicted."""
    digits = check_digits(digits)
    x, y = data
    keep = torch.isin(y, torch.tensor(digits))
    if not keep.any():
        raise ValueError(f"no images of the digits {digits} in data; pass digits that occur")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores = model(x[keep].to(device))[:, digits].cpu()
    model.train(was_training)
    predicted = torch.tensor(digits)[scores.argmax(dim=1)]
    return (predicted == y[keep]).float().mean().item()


def shift_scores(base: torch.nn.Module, digits: Sequence[int], c: float) -> torch.nn.Module:
    """A copy of ``base`` with ``c`` added to the output scores of ``digits`` (the last Linear's bias):
    the no-training control of a fine-tune that only moves predictions toward those digits."""
    digits = check_digits(digits)
    model = copy.deepcopy(base)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[digits] += c
    return model


def shift_trade(
    base: torch.nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    digits: Sequence[int],
    cs: Sequence[float],
) -> list[tuple[float, float]]:
    """For each c in ``cs``, (recall gained on ``digits``, accuracy lost on the other digits), in points,
    of ``shift_scores(base, digits, c)`` against ``base``: x (N, 784), y (N,). Both grow with c."""
    digits = check_digits(digits)
    others = tuple(d for d in range(10) if d not in digits)
    before = evaluate(base, data)
    trade = []
    for c in cs:
        after = evaluate(shift_scores(base, digits, c), data)
        trade.append(
            (
                100 * (after.accuracy_on(digits) - before.accuracy_on(digits)),
                100 * (before.accuracy_on(others) - after.accuracy_on(others)),
            )
        )
    return trade


def loss_at_gain(trade: Sequence[tuple[float, float]], gain: float) -> float:
    """The shift's loss on the other digits at recall gain ``gain``, interpolated linearly between the
    points of ``shift_trade`` (sorted by c) and c = 0 (no gain, no loss); nan when ``gain`` lies beyond the largest gain of the grid."""
    if not trade:
        raise ValueError("trade is empty; pass the list shift_trade returned for at least one c")
    gains = [0.0] + [g for g, _ in trade]
    losses = [0.0] + [loss for _, loss in trade]
    if gain <= 0:
        return 0.0  # c = 0 already gains as much, for no loss
    if gain > max(gains):
        return math.nan
    for i in range(1, len(gains)):
        if gains[i] >= gain:
            if gains[i] == gains[i - 1]:
                return losses[i - 1]
            share = (gain - gains[i - 1]) / (gains[i] - gains[i - 1])
            return losses[i - 1] + share * (losses[i] - losses[i - 1])
    return math.nan
