"""The verdicts notebook 09 states in its prose and summary hold for the committed full sweep
(data/gpt_experiment_full.json), by the course's rule (a difference beyond its 95 % t interval over seeds, each
method's rate chosen on one slice of the held-out code and reported on the other, both ways round);
and a fine-tuning run gives the same numbers whatever the kernel's thread count."""

from __future__ import annotations

import json

import pytest
import torch

from lora_teach.gpt import gpt_data_dir, pretrained_tiny_gpt
from lora_teach.gpt_experiment import METHODS, best_lr, fine_tune_once, grouped
from lora_teach.stats import agreed_verdict, compare


@pytest.fixture(scope="module")
def results():
    return json.loads((gpt_data_dir() / "gpt_experiment_full.json").read_text())


A, B = (
    "code_bpc",
    "code_report_bpc",
)  # the two slices of held-out code: a rate chosen on one is reported on the other
ALL2, QV8, QV64 = ("lora", "all", 2), ("lora", "qv", 8), ("lora", "qv", 64)


def _tuned(results, spec, choose):
    return grouped(results)[(*spec, best_lr(results, *spec, on=choose))]


def _both_ways(results, a, b, quantity=None):
    """The agreed verdict of a against b, each at its rate chosen on slice A and measured on B, then chosen on B
    and measured on A (quantity None: code on the other slice), as notebook 09's both_ways says it."""
    ways = []
    for choose, other in ((A, B), (B, A)):
        measured = quantity or other
        ways.append(
            compare(_tuned(results, a, choose)[measured], _tuned(results, b, choose)[measured], paired=True)
        )
    return agreed_verdict(ways)


def test_the_committed_sweep_is_the_full_one_complete_and_scored_on_both_slices(results):
    from lora_teach.gpt_experiment import SETTINGS, planned_runs

    assert results["settings_name"] == "full"
    assert results["settings"] == json.loads(json.dumps(SETTINGS["full"]))
    planned = {tuple(run.values()) for run in planned_runs(SETTINGS["full"])}
    done = {(r["kind"], r["targets"], r["r"], r["lr"], r["seed"]) for r in results["runs"]}
    assert done == planned
    assert all(isinstance(run[B], float) and run[B] != run[A] for run in results["runs"])
    assert isinstance(results["base"][B], float)


def test_at_an_equal_budget_all_linear_r2_learns_more_than_qv_r8_and_no_more_than_qv_r64(results):
    assert _both_ways(results, ALL2, QV8) == "lower"  # the summary: learned more, both ways round
    assert _both_ways(results, ALL2, QV8, "prose_bpc") == "depends"  # the summary: no forgetting verdict
    assert _both_ways(results, ALL2, QV64) == "indistinguishable"
    assert _tuned(results, QV64, A)["trainable"] == 8 * _tuned(results, QV8, A)["trainable"]


def test_the_qv_rank_sweep_learns_more_at_every_step_from_r4_on_both_slices(results):
    groups, lr = grouped(results), results["settings"]["rank_sweep"]["lr"]
    ranks = sorted(set(results["settings"]["rank_sweep"]["ranks"]) | {8})
    for a, b in zip(ranks, ranks[1:]):
        low, high = groups[("lora", "qv", a, lr)], groups[("lora", "qv", b, lr)]
        verdict = agreed_verdict([compare(high[s], low[s], paired=True) for s in (A, B)])
        assert verdict == ("lower" if a >= 4 else "depends"), (a, b)


def test_full_fine_tuning_at_its_smallest_rate_learns_as_much_as_the_best_lora_point_and_forgets_less(
    results,
):
    groups = grouped(results)
    full = groups[min(k for k in groups if k[0] == "full")]
    lora = [k for k in groups if k[0] == "lora" and (k[1], k[2]) in [(t, r) for _, t, r in METHODS.values()]]
    for choose, other in ((A, B), (B, A)):  # the best LoRA point chosen on one slice, compared on the other
        best = min(lora, key=lambda k: sum(groups[k][choose]))
        assert compare(full[other], groups[best][other], paired=True).verdict == "indistinguishable"
    for key in lora:
        assert compare(full["prose_bpc"], groups[key]["prose_bpc"], paired=True).verdict == "lower", key


def test_a_fine_tuning_run_does_not_depend_on_the_thread_count():
    base = pretrained_tiny_gpt()
    before = torch.get_num_threads()
    records = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _, record = fine_tune_once(
                base, "lora", "qv", 2, 1e-2, seed=0, steps=3, batch_size=4, eval_chars=512
            )
            records.append((record["code_bpc"], record["prose_bpc"]))
    finally:
        torch.set_num_threads(before)
    assert records[0] == records[1]
