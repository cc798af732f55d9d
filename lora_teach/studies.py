"""The seeded fine-tuning studies behind notebooks 07 and 08: mixing two adapters against a control,
LoRA's scaling over ranks, and LoRA variants each at its best learning rate on a held-out split."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from lora_teach.adapters import add_lora, lora_modules, mark_only_lora_as_trainable
from lora_teach.data import Batches, digit_subset
from lora_teach.progress import tqdm
from lora_teach.stats import Comparison, agreed_verdict, compare
from lora_teach.train import evaluate, set_seed, train

Adapt = Callable[[nn.Module], None]  # puts adapters into a model and marks what trains
Groups = Callable[[nn.Module, float], list[dict]]  # (model, lr) -> optimizer parameter groups
Data = tuple[torch.Tensor, torch.Tensor]  # x (N, 784), y (N,)


def heldout_splits(x_test: torch.Tensor, y_test: torch.Tensor, val_size: int = 5000) -> tuple[Data, Data]:
    """Split MNIST's test set into a validation slice (the first ``val_size`` images), used only to
    choose (learning rates, mixing weights), and a final test slice (the rest), used only to report.

    The baselines train on all 60,000 training images, so neither slice was seen by the base model.
    """
    if not 0 < val_size < len(x_test):
        raise ValueError(f"val_size must be between 1 and {len(x_test) - 1}, got {val_size!r}")
    return (x_test[:val_size], y_test[:val_size]), (x_test[val_size:], y_test[val_size:])


def lora_adapt(r: int, lora_alpha: float, **lora_options) -> Adapt:
    """An ``adapt`` function: ``add_lora`` (wrapper method) on every Linear, only the adapters train."""

    def adapt(model: nn.Module) -> None:
        add_lora(model, r=r, lora_alpha=lora_alpha, method="wrapper", **lora_options)
        mark_only_lora_as_trainable(model)

    return adapt


def finetune(
    base: nn.Module,
    adapt: Adapt,
    data: Data,
    *,
    seed: int,
    num_steps: int = 200,
    lr: float = 1e-3,
    batch_size: int = 10,
    param_groups: Groups | None = None,
) -> nn.Module:
    """A copy of ``base``, adapted by ``adapt`` and trained with Adam for ``num_steps`` on ``data``.

    ``seed`` fixes the adapter's init and the data order. ``param_groups(model, lr)`` may give the
    optimizer its own groups (LoRA+); else every trainable parameter trains at ``lr``.
    """
    model = copy.deepcopy(base)
    set_seed(seed)
    adapt(model)
    if param_groups is not None:
        groups = param_groups(model, lr)
    else:
        groups = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(groups, lr=lr)
    train(
        model, Batches(*data, batch_size=batch_size), num_steps=num_steps, optimizer=optimizer, progress=False
    )
    return model


def accuracy_on(model: nn.Module, data: Data, digits: Sequence[int] | None = None) -> float:
    """Accuracy in % of ``model`` on ``data``, on the images of ``digits`` only when given."""
    scores = evaluate(model, data)
    return 100 * (scores.accuracy if digits is None else scores.accuracy_on(digits))


def trainable_count(model: nn.Module) -> int:
    """Number of parameters that require grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def delta_norm(model: nn.Module) -> float:
    """||ΔW|| over all adapted layers: sqrt of the sum of squared entries of every scaling·B·A."""
    with torch.no_grad():
        return float(sum(lora.delta_weight.pow(2).sum() for _, lora in lora_modules(model)) ** 0.5)


@torch.no_grad()
def mixed_model(
    base: nn.Module, states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
) -> nn.Module:
    """A plain copy of ``base`` with W0 + Σ_i w_i · scaling_i · B_i @ A_i in every adapted Linear.

    ``states`` are adapters as ``lora_state_dict`` returns them ({layer}.lora_A, .lora_B, .scaling).
    """
    model = copy.deepcopy(base)
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear) and f"{name}.lora_A" in states[0]:
            for state, w in zip(states, weights):
                layer.weight += (
                    w * state[f"{name}.scaling"] * state[f"{name}.lora_B"] @ state[f"{name}.lora_A"]
                )
    return model


@dataclass
class MixingResult:
    """Accuracy (%) per variant, one value per seed, on the final test slice (``accuracy``) and on the
    validation slice (``val_accuracy``), and the weights each seed chose on the validation slice. The other
    way round: ``swapped_mix``, the mix whose weights were chosen on the test slice, scored on the validation
    slice (``swapped_chosen`` its weights)."""

    accuracy: dict[str, list[float]]
    chosen: list[tuple[float, float]]
    seeds: tuple[int, ...]
    val_accuracy: dict[str, list[float]] = field(default_factory=dict)
    swapped_mix: list[float] = field(default_factory=list)
    swapped_chosen: list[tuple[float, float]] = field(default_factory=list)

    def better_single(self, on: str = "val") -> str:
        """The single half-adapter with the higher mean accuracy on slice ``on`` ("val" or "test"), the slice
        it is chosen on (and then compared on the other)."""
        if on not in ("val", "test"):
            raise ValueError(f'on must be "val" or "test", got {on!r}')
        scores = self.val_accuracy if on == "val" else self.accuracy
        if not scores:
            raise ValueError(
                "val_accuracy is empty: run mixing_study, which fills it, to choose the better single"
            )
        return max(("first half only", "second half only"), key=lambda k: np.mean(scores[k]))

    def mix_against(self, other: str) -> list[tuple[str, Comparison]]:
        """The searched mix against ``other`` (a variant, or "better single"), paired over seeds, both ways
        round: weights (and the better single) chosen on the validation slice and scored on the test slice,
        then chosen on the test slice and scored on the validation slice."""
        if not self.swapped_mix:
            raise ValueError("swapped_mix is empty: run mixing_study, which fills it, to compare both ways")
        ways = []
        for label, on, report, mix in [
            ("chosen on the validation slice", "val", self.accuracy, self.accuracy["searched mix"]),
            ("chosen on the test slice", "test", self.val_accuracy, self.swapped_mix),
        ]:
            name = self.better_single(on) if other == "better single" else other
            if name not in report:
                raise ValueError(
                    f'other must be a variant of {sorted(report)} or "better single", got {other!r}'
                )
            ways.append((label, compare(mix, report[name], paired=True)))
        return ways


def mixing_study(
    base: nn.Module,
    train_data: Data,
    val: Data,
    test: Data,
    halves: tuple[Sequence[int], Sequence[int]],
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    r: int = 2,
    lora_alpha: float = 8.0,
    num_steps: int = 200,
    lr: float = 1e-3,
    grid: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25),
    progress: bool = True,
) -> MixingResult:
    """Two rank-``r`` adapters, one per half of the digits, mixed with weights searched on ``val``,
    against the control: one adapter of rank 2r trained on all digits for 2·num_steps (the same
    total rank and the same number of training steps as the two halves together, no search).

    Every variant is scored on all ten digits of ``test``; the weights never see ``test``.
    """
    from lora_teach.adapters import lora_state_dict

    variants = ("base", "first half only", "second half only", "sum (1, 1)", "searched mix", "control")
    accuracy: dict[str, list[float]] = {name: [] for name in variants}
    val_accuracy: dict[str, list[float]] = {name: [] for name in variants}
    chosen, swapped_chosen, swapped_mix = [], [], []
    bar = tqdm(total=len(seeds), desc="mixing study", leave=False, disable=not progress)
    for seed in seeds:
        states = []
        for digits in halves:
            model = finetune(
                base,
                lora_adapt(r, lora_alpha),
                digit_subset(*train_data, digits),
                seed=seed,
                num_steps=num_steps,
                lr=lr,
            )
            states.append(lora_state_dict(model))
        control = finetune(
            base, lora_adapt(2 * r, lora_alpha), train_data, seed=seed, num_steps=2 * num_steps, lr=lr
        )
        # every grid pair scored on both slices; weights outside the grid are scored when first asked for
        val_acc = {w: accuracy_on(mixed_model(base, states, w), val) for w in _grid_pairs(grid)}
        test_acc = {w: accuracy_on(mixed_model(base, states, w), test) for w in _grid_pairs(grid)}
        best = max(val_acc, key=val_acc.get)  # first best in grid order: ties break the same way always
        chosen.append(best)
        # the other way round: the weights chosen on the test slice, scored on the validation slice
        swapped_chosen.append(max(test_acc, key=test_acc.get))
        swapped_mix.append(val_acc[swapped_chosen[-1]])
        for name, weights in [
            ("base", (0.0, 0.0)),
            ("first half only", (1.0, 0.0)),
            ("second half only", (0.0, 1.0)),
            ("sum (1, 1)", (1.0, 1.0)),
            ("searched mix", best),
        ]:
            for scores, data, table in ((test_acc, test, accuracy), (val_acc, val, val_accuracy)):
                if weights not in scores:  # a grid without 0 or 1
                    scores[weights] = accuracy_on(mixed_model(base, states, weights), data)
                table[name].append(scores[weights])
        accuracy["control"].append(accuracy_on(control, test))
        val_accuracy["control"].append(accuracy_on(control, val))
        bar.update()
    bar.close()
    return MixingResult(accuracy, chosen, tuple(seeds), val_accuracy, swapped_mix, swapped_chosen)


def _grid_pairs(grid: Sequence[float]) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a in grid for b in grid]


def mixing_verdicts(*results: MixingResult) -> dict[str, str]:
    """The searched mix against the control, the better single half and the base, paired over seeds, each
    asked both ways round (``MixingResult.mix_against``) in every result (e.g. one per base checkpoint): the
    verdict all of them give, or "depends"."""
    if not results:
        raise ValueError("mixing_verdicts needs at least one MixingResult, got none")
    return {
        f"searched mix vs {label}": agreed_verdict([c for r in results for _, c in r.mix_against(other)])
        for other, label in [("control", "control"), ("better single", "best single half"), ("base", "base")]
    }


@dataclass
class Run:
    """One fine-tuning run: its settings and its scores (accuracies in %)."""

    method: str
    lr: float
    seed: int
    trainable: int
    val_target: float
    test_target: float
    test_others: float
    delta_norm: float | None = None
    val_others: float = float("nan")


@dataclass
class VariantStudy:
    """Every run of ``variant_study``, and each method's learning rate chosen on validation."""

    runs: list[Run] = field(default_factory=list)
    best_lr: dict[str, float] = field(default_factory=dict)
    val_means: dict[tuple[str, float], float] = field(default_factory=dict)  # over ``seeds``, at selection
    test_lr: dict[str, float] = field(default_factory=dict)  # chosen on the test slice (``both_ways``)
    test_means: dict[tuple[str, float], float] = field(default_factory=dict)  # over ``seeds``, on test

    def swapped(self) -> VariantStudy:
        """The other way round: each method's rate chosen on the test slice, reported on the validation
        slice (the two slices' scores trade places, so ``variant_comparisons`` reads validation scores)."""
        if not self.test_lr:
            raise ValueError(
                "swapped needs a study run both ways round: call variant_study(..., both_ways=True)"
            )
        runs = [
            replace(
                run,
                val_target=run.test_target,
                test_target=run.val_target,
                val_others=run.test_others,
                test_others=run.val_others,
            )
            for run in self.runs
        ]
        return VariantStudy(
            runs, dict(self.test_lr), dict(self.test_means), dict(self.best_lr), dict(self.val_means)
        )

    def at_edge(self, method: str) -> bool:
        """Whether ``method``'s chosen rate is the smallest or the largest of its grid: the grid may not have
        reached its best, so a verdict at that rate is provisional."""
        grid = sorted(lr for name, lr in self.val_means if name == method)
        return self.best_lr[method] in (grid[0], grid[-1])

    def at(self, method: str, lr: float | None = None) -> list[Run]:
        """The runs of ``method`` at ``lr`` (default: its best), in seed order."""
        lr = self.best_lr[method] if lr is None else lr
        return sorted(
            (run for run in self.runs if run.method == method and run.lr == lr), key=lambda run: run.seed
        )

    def values(self, method: str, what: str, lr: float | None = None) -> list[float]:
        """One number per seed: ``what`` is "val_target", "test_target", "test_others" or "delta_norm"."""
        return [getattr(run, what) for run in self.at(method, lr)]


def variant_study(
    base: nn.Module,
    methods: Mapping[str, tuple[Adapt, Groups | None]],
    train_data: Data,
    val: Data,
    test: Data,
    target: Sequence[int],
    others: Sequence[int],
    *,
    lrs: Sequence[float] = (3e-4, 1e-3, 3e-3),
    seeds: Sequence[int] = (0, 1, 2),
    extra_seeds: Sequence[int] = (),
    num_steps: int = 200,
    both_ways: bool = False,
    progress: bool = True,
) -> VariantStudy:
    """Each method at each learning rate over ``seeds``; its best learning rate is the one with the
    highest mean accuracy on the ``target`` digits of ``val``; ``extra_seeds`` then run at that rate
    only. Reported: accuracy on the ``target`` and on the ``others`` digits of ``test``.
    With ``both_ways`` a rate is also chosen on ``test`` (``test_lr``) and ``extra_seeds`` run there too,
    so that ``study.swapped()`` reports it on ``val``; the grid runs serve both ways.
    """
    study = VariantStudy()
    total = len(methods) * (len(lrs) * len(seeds) + len(extra_seeds))
    bar = tqdm(total=total, desc="runs", leave=False, disable=not progress)

    def one(name: str, lr: float, seed: int) -> None:
        adapt, groups = methods[name]
        bar.set_description(f"{name}, lr {lr:g}, seed {seed}")
        model = finetune(base, adapt, train_data, seed=seed, num_steps=num_steps, lr=lr, param_groups=groups)
        study.runs.append(
            Run(
                name,
                lr,
                seed,
                trainable_count(model),
                accuracy_on(model, val, target),
                accuracy_on(model, test, target),
                accuracy_on(model, test, others),
                val_others=accuracy_on(model, val, others),
            )
        )
        bar.update()

    for name in methods:
        for lr in lrs:
            for seed in seeds:
                one(name, lr, seed)
        means = {lr: float(np.mean(study.values(name, "val_target", lr))) for lr in lrs}
        study.val_means.update({(name, lr): mean for lr, mean in means.items()})
        study.best_lr[name] = max(lrs, key=lambda lr: means[lr])  # first best in grid order on ties
        chosen = [study.best_lr[name]]
        if both_ways:
            means = {lr: float(np.mean(study.values(name, "test_target", lr))) for lr in lrs}
            study.test_means.update({(name, lr): mean for lr, mean in means.items()})
            study.test_lr[name] = max(lrs, key=lambda lr: means[lr])
            chosen += [study.test_lr[name]] if study.test_lr[name] != study.best_lr[name] else []
        bar.total += len(extra_seeds) * (len(chosen) - 1)
        for lr in chosen:
            for seed in extra_seeds:
                one(name, lr, seed)
    bar.close()
    return study


def variant_comparisons(study: VariantStudy, reference: str = "LoRA") -> dict[tuple[str, str], Comparison]:
    """Each method against ``reference``, each at its best learning rate, paired over seeds, on the target
    digits and on the other digits: (method, "test_target" or "test_others") -> its Comparison."""
    return {
        (name, what): compare(study.values(name, what), study.values(reference, what), paired=True)
        for name in study.best_lr
        if name != reference
        for what in ("test_target", "test_others")
    }


def variant_verdicts(*studies: VariantStudy, reference: str = "LoRA") -> dict[str, str]:
    """The verdicts of ``variant_comparisons``: "higher", "lower" or "indistinguishable". Given several
    studies (the same study on other base checkpoints), the verdict they all agree on, else "depends"."""
    if not studies:
        raise ValueError("variant_verdicts needs at least one VariantStudy, got none")
    agreed = _agreed([variant_comparisons(study, reference) for study in studies])
    return {f"{name} vs {reference}, {what}": verdict for (name, what), verdict in agreed.items()}


def rank_sweep(
    base: nn.Module,
    train_data: Data,
    test: Data,
    target: Sequence[int],
    others: Sequence[int],
    *,
    ranks: Sequence[int] = (1, 2, 4, 8),
    lora_alpha: float = 4.0,
    seeds: Sequence[int] = (0, 1, 2),
    num_steps: int = 200,
    lr: float = 1e-3,
    progress: bool = True,
    **lora_options,
) -> VariantStudy:
    """LoRA (alpha / r) and rsLoRA (alpha / sqrt r) at each rank, same alpha and learning rate; each
    run records ||ΔW|| (all layers) and the test accuracies. Method names: "LoRA r=4", "rsLoRA r=4"."""
    study = VariantStudy()
    bar = tqdm(total=2 * len(ranks) * len(seeds), desc="rank sweep", leave=False, disable=not progress)
    for use_rslora in (False, True):
        for r in ranks:
            name = f"{'rsLoRA' if use_rslora else 'LoRA'} r={r}"
            for seed in seeds:
                adapt = lora_adapt(r, lora_alpha, use_rslora=use_rslora, **lora_options)
                model = finetune(base, adapt, train_data, seed=seed, num_steps=num_steps, lr=lr)
                study.runs.append(
                    Run(
                        name,
                        lr,
                        seed,
                        trainable_count(model),
                        float("nan"),
                        accuracy_on(model, test, target),
                        accuracy_on(model, test, others),
                        delta_norm(model),
                    )
                )
                bar.update()
            study.best_lr[name] = lr
    bar.close()
    return study


def rank_comparisons(study: VariantStudy, low: int = 1, high: int = 8) -> dict[tuple[str, str], Comparison]:
    """For each rule, rank ``high`` against rank ``low`` (paired over seeds) on ||ΔW|| and the accuracies:
    (rule, "delta_norm", "test_target" or "test_others") -> its Comparison."""
    return {
        (rule, what): compare(
            study.values(f"{rule} r={high}", what), study.values(f"{rule} r={low}", what), paired=True
        )
        for rule in ("LoRA", "rsLoRA")
        for what in ("delta_norm", "test_target", "test_others")
    }


def rank_verdicts(*studies: VariantStudy, low: int = 1, high: int = 8) -> dict[str, str]:
    """The verdicts of ``rank_comparisons``. Given several sweeps (the same sweep on other base
    checkpoints), the verdict they all agree on, else "depends"."""
    if not studies:
        raise ValueError("rank_verdicts needs at least one rank sweep, got none")
    agreed = _agreed([rank_comparisons(study, low, high) for study in studies])
    return {f"{rule} r={high} vs r={low}, {what}": verdict for (rule, what), verdict in agreed.items()}


def _agreed(each: Sequence[Mapping[tuple[str, str], Comparison]]) -> dict[tuple[str, str], str]:
    """Key by key, the verdict every mapping of Comparisons gives (one mapping per study), else "depends"."""
    return {key: agreed_verdict([comparisons[key] for comparisons in each]) for key in each[0]}
