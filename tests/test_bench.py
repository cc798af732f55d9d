"""lora-teach bench on tiny sizes: it runs, produces every figure, and its JSON parses.

No test asserts a timing: the machine running the tests may be busy.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lora_teach import bench
from lora_teach.bench import command, latency, memory, timing
from lora_teach.cli import main

TINY = {
    "pipeline_steps": 8,
    "repeats": 1,
    "thread_counts": [1],
    "epoch_steps": 4,
    "widths": [16],  # one width: each width costs two fresh processes
    "latency_width": 32,
    "rounds": 3,
    "memory_steps": 1,
    "serving_rounds": 2,
    "serving_lengths": [4],
    "serving_distinct": [1, 2],
}


@pytest.fixture(scope="module")
def results():
    with bench.num_threads(1):
        return bench.run_benchmarks(quick=True, **TINY)


def test_run_benchmarks_produces_every_figure_for_the_cpu(results):
    assert set(bench.FIGURES) <= set(results)
    for figure in bench.FIGURES[:-1]:
        assert "cpu" in results[figure], figure
    assert results["course_seconds"] is None  # only with --full
    assert results["meta"]["devices"][0] == "cpu"


def test_data_pipeline_runs_the_same_steps_on_both_sides_and_reports_threads(results):
    r = results["data_pipeline_speedup_bs10"]["cpu"]
    assert r["steps"] == 8 and not r["full_epoch"] and r["threads"] == "seed 1, ours 1"
    assert r["speedup"] == pytest.approx(r["seed_ms_per_step"] / r["fast_ms_per_step"])
    assert 0 <= r["seed_accuracy"] <= 1 and 0 <= r["fast_accuracy"] <= 1
    assert set(r["by_threads"]) == {"1"}


def test_latency_covers_both_models_batch_sizes_and_methods(results):
    cases = results["merged_latency_ratio"]["cpu"]["cases"]
    assert {(c["model"], c["batch_size"]) for c in cases} == {
        ("DigitsNet", 1),
        ("DigitsNet", 256),
        ("MLP-32", 1),
        ("MLP-32", 256),
    }
    assert all(c["merged_ratio"] > 0 for c in cases)
    assert set(results["unmerged_latency_ratio"]["cpu"]) == {"wrapper", "parametrize"}


def test_lora_vs_full_counts_match_the_formulas(results):
    r = results["lora_vs_full_step"]["cpu"]
    for row in r["rows"]:
        d = row["width"]
        expected = 2 * (2 * d * 8) if row["method"] == "lora" else 2 * (d * d + d)
        assert row["trainable"] == expected
        assert row["grad_bytes"] == row["param_bytes"] == 4 * expected
        assert row["optimizer_state_bytes"] >= 2 * 4 * expected  # exp_avg and exp_avg_sq
        assert row["step_ms"] > 0 and row["forward_ms"] > 0  # timed by Timer.timeit in the child
    assert r["growth_exponent"]["full"]["trainable"] is None  # one width: nothing to fit


def test_the_timer_gives_a_positive_median_for_a_trivial_statement():
    assert timing.median_seconds(lambda: None, threads=1, min_run_time=0.01) > 0


@pytest.mark.parametrize("threads", [1, 2])
def test_the_timer_runs_the_statement_at_the_thread_count_it_is_given_then_restores_it(threads):
    seen = set()
    with bench.num_threads(3):
        timing.median_seconds(lambda: seen.add(torch.get_num_threads()), threads=threads, min_run_time=0.01)
        assert torch.get_num_threads() == 3
    assert seen == {threads}


def test_the_timer_without_a_thread_count_keeps_the_current_one_not_the_timers_default_of_one():
    seen = set()
    with bench.num_threads(2):
        timing.median_seconds(lambda: seen.add(torch.get_num_threads()), min_run_time=0.01)
    assert seen == {2}


def test_seconds_once_calls_the_function_exactly_once():
    calls = []
    assert timing.seconds_once(lambda: calls.append(1), torch.device("cpu")) >= 0
    assert calls == [1]


def test_importing_the_timer_prints_nothing():
    import subprocess
    import sys

    code = "from lora_teach.bench import timing; timing.make_timer(lambda: None).timeit(1)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stderr == ""


def test_growth_exponent_recovers_the_power_of_the_width():
    widths = [256, 1024, 4096]
    assert memory._slope(widths, [2 * 8 * w for w in widths]) == pytest.approx(1.0)
    assert memory._slope(widths, [w * w for w in widths]) == pytest.approx(2.0)
    assert memory._slope(widths, [0, 0, 0]) is None  # nothing positive to fit


def test_table_and_plot_are_written(results, tmp_path):
    table = bench.format_table(results)
    for figure in bench.FIGURES:
        assert figure in table
    assert "cpu" in table
    path = bench.plot_memory(results, tmp_path / "memory.png")
    assert path.stat().st_size > 0


def test_wrapper_merged_model_computes_the_same_function():
    torch.manual_seed(0)
    candidates = latency._latency_candidates(bench.wide_mlp(16))
    x = torch.randn(4, 16)
    torch.testing.assert_close(candidates["merged"](x), candidates["wrapper"](x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(candidates["parametrize"](x), candidates["wrapper"](x), atol=1e-5, rtol=1e-5)


def test_cli_json_parses_and_exits_zero(capsys):
    code = main(
        ["bench", "--json", "--steps", "4", "--repeats", "1", "--threads", "1", "--epoch-steps", "2"]
        + [
            "--latency-width",
            "16",
            "--rounds",
            "2",
            "--only",
            "data_pipeline_speedup_bs10,merged_latency_ratio",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"meta", "data_pipeline_speedup_bs10", "merged_latency_ratio"}


def test_cli_rejects_an_unknown_figure(capsys):
    assert main(["bench", "--only", "speed"]) == 2
    assert "only must name figures" in capsys.readouterr().err


def test_cli_rejects_bad_widths():
    with pytest.raises(SystemExit):
        main(["bench", "--widths", "0,abc"])


def test_memory_child_reports_its_own_peak_not_its_parents():
    config = {
        "width": 16,
        "mode": "forward",
        "r": 2,
        "batch_size": 2,
        "steps": 1,
        "threads": 1,
        "device": "cpu",
    }
    alone = memory._run_child(**config)["peak_bytes"]
    ballast = torch.ones(2**30 // 4)  # make this (parent) process 1 GiB bigger than any child
    with_ballast = memory._run_child(**config)["peak_bytes"]
    del ballast
    assert abs(with_ballast - alone) < 200 * 2**20, "the child's peak must not include the parent's memory"


# ---------------------------------------------------------------- bad input (issue 11, items 3, 14, 16, 17)


@pytest.mark.parametrize("option", ["--rounds", "--repeats", "--steps", "--epoch-steps", "--memory-steps"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_a_count_that_is_not_positive_is_an_argparse_error(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", option, value])
    assert exit_info.value.code == 2
    assert f"{option}: expected a positive integer, got '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["rounds", "repeats", "memory_steps", "latency_width"])
def test_run_benchmarks_refuses_zero_counts_instead_of_using_the_default(name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, got 0"):
        bench.run_benchmarks(**{name: 0})


@pytest.fixture
def saved(results, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path


@pytest.mark.parametrize(
    "content, words",
    [
        ("{}", "not a saved bench result (no 'meta')"),
        ('{"name": "other-tool", "version": 3}', "not a saved bench result (no 'meta')"),
        ("[1, 2, 3]", "not a saved bench result (no 'meta')"),
        ('{"meta": {}}', "'meta' lacks"),
        ("not json", "is not JSON"),
    ],
)
def test_from_json_refuses_anything_but_a_saved_result_in_one_line(tmp_path, capsys, content, words):
    path = tmp_path / "x.json"
    path.write_text(content)
    assert main(["bench", "--from-json", str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_from_json_with_a_broken_figure_is_one_line(saved, capsys):
    data = json.loads(saved.read_text())
    del data["merged_latency_ratio"]["cpu"]["worst"]
    saved.write_text(json.dumps(data))
    assert main(["bench", "--from-json", str(saved)]) == 2
    err = capsys.readouterr().err
    assert "not a complete bench result" in err and err.count("\n") == 1


def test_plot_into_a_missing_folder_is_made(saved, tmp_path, capsys):
    plot = tmp_path / "new" / "folder" / "memory.png"
    assert main(["bench", "--from-json", str(saved), "--plot", str(plot)]) == 0
    assert plot.stat().st_size > 0


@pytest.mark.parametrize("plot", ["file/memory.png", "memory.txt", "."])
def test_a_bad_plot_path_is_refused_before_anything_is_measured(tmp_path, capsys, monkeypatch, plot):
    (tmp_path / "file").write_text("a file, not a folder")
    monkeypatch.setattr(command, "_measure", lambda args: pytest.fail("measured before checking --plot"))
    assert main(["bench", "--plot", str(tmp_path / plot)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --plot") and err.count("\n") == 1


def test_a_plot_that_fails_after_measuring_still_prints_the_results(saved, tmp_path, capsys, monkeypatch):
    def fail(results, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(command, "plot_memory", fail)
    assert main(["bench", "--from-json", str(saved), "--plot", str(tmp_path / "memory.png")]) == 1
    captured = capsys.readouterr()
    assert "lora_vs_full_step" in captured.out
    assert captured.err.count("\n") == 1 and "the plot was not saved" in captured.err


# ---------------------------------------------------------------- serving_throughput


def test_serving_times_every_strategy_on_every_workload_in_every_round(results):
    r = results["serving_throughput"]["cpu"]
    assert r["rounds"] == 2 and r["rows"] == 16
    shapes = [(w["length"], w["distinct"], w["popularity"]) for w in r["workloads"]]
    assert shapes == [(4, 1, "uniform"), (4, 2, "uniform"), (4, 2, "skewed")]  # skewed = uniform at 1
    for w in r["workloads"]:
        for strategy in ("grouped", "gather", "merged"):
            values = w["chars_per_s"][strategy]
            assert len(values) == 2 and all(v > 0 for v in values)
            assert (
                w["range"][strategy]["min"] <= w["range"][strategy]["median"] <= w["range"][strategy]["max"]
            )
        assert set(w["merged_over"]) == {"grouped", "gather"}
    assert set(r["crossover"]) == {"4"}
    assert "merging stops paying" in bench.format_table(results)


@given(
    distinct=st.integers(1, 8),
    rows=st.integers(8, 40),
    popularity=st.sampled_from(["uniform", "skewed"]),
)
def test_popularity_names_use_every_chosen_adapter_and_only_those(distinct, rows, popularity):
    names = [f"a{i}" for i in range(8)]
    chosen = bench.popularity_names(names, distinct, rows, popularity)
    counts = [chosen.count(n) for n in names[:distinct]]
    assert len(chosen) == rows and set(chosen) == set(names[:distinct]) and min(counts) >= 1
    if popularity == "uniform":
        assert max(counts) - min(counts) <= 1
    else:
        assert counts == sorted(counts, reverse=True)  # the first adapter is the most requested


def test_popularity_names_refuses_more_distinct_adapters_than_rows_or_names():
    with pytest.raises(ValueError, match="distinct must be between 1 and"):
        bench.popularity_names(["a", "b"], 3, 16, "uniform")
    with pytest.raises(ValueError, match="popularity must be one of"):
        bench.popularity_names(["a", "b"], 2, 16, "zipf")


def _workload(distinct, low, high, popularity="uniform"):
    span = {"median": (low + high) / 2, "min": low, "max": high}
    return {"length": 16, "distinct": distinct, "popularity": popularity, "merged_over": {"gather": span}}


def test_the_crossover_is_the_first_count_where_merging_lost_every_round():
    from lora_teach.bench.serving import crossover

    workloads = [
        _workload(1, 1.1, 1.3),
        _workload(2, 0.8, 1.05),
        _workload(4, 0.6, 0.9),
        _workload(8, 0.5, 0.7),
    ]
    assert crossover(workloads, 16) == 4  # at 2 the range still reaches above 1
    assert crossover(workloads[:2], 16) is None
    assert crossover(workloads, 64) is None
    assert crossover([*workloads, _workload(2, 0.5, 0.6, "skewed")], 16, "skewed") == 2


def test_serving_rounds_below_two_are_refused():
    with pytest.raises(ValueError, match="serving_rounds must be at least 2"):
        bench.run_benchmarks(quick=True, only=["serving_throughput"], serving_rounds=1)
