"""``lora-teach bench`` (docs/performance.md). Figures: pipeline (data_pipeline_speedup_bs10), epoch
(epoch_seconds_bs128), latency (merged/unmerged_latency_ratio), memory (lora_vs_full_step), serving
(serving_throughput), course (course_seconds). timing: the clocks; suite: runs them all; report: prints; command: the CLI."""

from lora_teach.bench.command import add_arguments, load_results, run
from lora_teach.bench.course import bench_course
from lora_teach.bench.epoch import bench_epoch
from lora_teach.bench.latency import bench_latency
from lora_teach.bench.memory import bench_lora_vs_full, memory_child, wide_mlp
from lora_teach.bench.pipeline import bench_data_pipeline, bench_data_pipeline_threads
from lora_teach.bench.report import format_table, markdown_summary, plot_memory
from lora_teach.bench.serving import bench_serving, popularity_names, synthetic_bank
from lora_teach.bench.suite import FIGURES, TARGETS, run_benchmarks
from lora_teach.bench.timing import devices_to_measure, make_timer, median_seconds, num_threads, seconds_once

__all__ = [
    "FIGURES",
    "TARGETS",
    "add_arguments",
    "bench_course",
    "bench_data_pipeline",
    "bench_data_pipeline_threads",
    "bench_epoch",
    "bench_latency",
    "bench_lora_vs_full",
    "bench_serving",
    "devices_to_measure",
    "format_table",
    "load_results",
    "make_timer",
    "markdown_summary",
    "median_seconds",
    "memory_child",
    "num_threads",
    "plot_memory",
    "popularity_names",
    "run",
    "run_benchmarks",
    "seconds_once",
    "synthetic_bank",
    "wide_mlp",
]
