"""The ``lora-teach bench`` command: its options, the checks made before measuring, and
``load_results`` for ``--from-json``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lora_teach.bench.report import format_table, markdown_summary, plot_memory
from lora_teach.bench.suite import FIGURES, run_benchmarks
from lora_teach.cli import positive_int
from lora_teach.outputs import OutputError, check_output_file, error_line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _at_least_two(text: str) -> int:
    """An argparse type for --serving-rounds: a whole number of at least 2 (its figures are ranges)."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"expected at least 2 (its figures are ranges over rounds), got {text!r}"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``lora-teach bench``."""
    parser.add_argument("--full", action="store_true", help="whole epochs, more repeats, and the notebooks")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--markdown", action="store_true", help="print the headline figures as a Markdown table"
    )
    parser.add_argument(
        "--steps", type=positive_int, help="steps per side at batch size 10 (quick default: 600)"
    )
    parser.add_argument("--epoch-steps", type=positive_int, help="cap the batch-128 epoch at this many steps")
    parser.add_argument("--repeats", type=positive_int, help="training repeats per side (quick 2, full 3)")
    parser.add_argument("--threads", type=_int_list, help="thread counts to try at batch size 10, e.g. 1,2")
    parser.add_argument(
        "--widths", type=_int_list, help="MLP widths for LoRA vs full (default 256,1024,4096)"
    )
    parser.add_argument(
        "--latency-width", type=positive_int, default=4096, help="width of the wide MLP (default 4096)"
    )
    parser.add_argument("--rounds", type=positive_int, help="interleaved latency rounds (quick 15, full 41)")
    parser.add_argument(
        "--serving-rounds",
        type=_at_least_two,
        help="interleaved serving rounds, at least 2 (quick 5, full 15)",
    )
    parser.add_argument("--memory-steps", type=positive_int, default=5, help="timed steps per memory child")
    parser.add_argument("--notebooks", default="notebooks", help="folder of notebooks for course_seconds")
    parser.add_argument("--only", help=f"comma-separated figures to measure, among {', '.join(FIGURES)}")
    parser.add_argument("--plot", help="also save the LoRA-vs-full memory plot to this PNG path")
    parser.add_argument(
        "--from-json", help="measure nothing: read results saved with --json and print/plot them"
    )


def _measure(args: argparse.Namespace) -> dict:
    only = [f.strip() for f in args.only.split(",") if f.strip()] if args.only else None
    return run_benchmarks(
        quick=not args.full,
        pipeline_steps=args.steps if args.steps else ("default" if not args.full else None),
        repeats=args.repeats,
        thread_counts=args.threads,
        epoch_steps=args.epoch_steps,
        widths=args.widths,
        latency_width=args.latency_width,
        rounds=args.rounds,
        memory_steps=args.memory_steps,
        serving_rounds=args.serving_rounds,
        notebook_dir=args.notebooks,
        only=only,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )


META_KEYS = ("mode", "torch", "cpu_count", "devices", "date")


def load_results(path: Path | str) -> dict:
    """Results saved with ``lora-teach bench --json``; ValueError (one line) for anything else."""
    where = f"--from-json {path}"
    if Path(path).is_dir():
        raise ValueError(f"{where} is a folder; give the JSON file saved with `lora-teach bench --json`")
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{where} cannot be read ({error_line(error)})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not JSON ({error.msg}, line {error.lineno})") from error
    if not isinstance(results, dict) or not isinstance(results.get("meta"), dict):
        raise ValueError(
            f"{where} is not a saved bench result (no 'meta'); save one with `lora-teach bench --json`"
        )
    missing = [key for key in META_KEYS if key not in results["meta"]]
    unknown = sorted(set(results) - set(FIGURES) - {"meta"})
    if missing or unknown:
        what = f"'meta' lacks {missing}" if missing else f"unknown keys {unknown}"
        raise ValueError(
            f"{where} is not a saved bench result ({what}); save one with `lora-teach bench --json`"
        )
    return results


def _check_plot_path(path: str) -> None:
    """Refuse a plot path matplotlib cannot save to, before anything is measured."""
    from matplotlib.figure import Figure

    check_output_file(path, "--plot")
    formats = Figure().canvas.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise OutputError(f"--plot {path}: give a file name ending in .png (or {', '.join(sorted(formats))})")


def run(args: argparse.Namespace) -> int:
    """Check every option and output path, measure (or load), print, then save the plot."""
    try:
        if args.only is not None and not [f for f in args.only.split(",") if f.strip()]:
            raise ValueError(f"--only {args.only!r} names no figure; name some among {', '.join(FIGURES)}")
        only = [f.strip() for f in args.only.split(",") if f.strip()] if args.only else list(FIGURES)
        unknown = sorted(set(only) - set(FIGURES))
        if unknown:
            raise ValueError(f"--only must name figures among {', '.join(FIGURES)}, got {', '.join(unknown)}")
        if args.plot:
            _check_plot_path(args.plot)
            if not args.from_json and "lora_vs_full_step" not in only:
                raise ValueError("--plot draws lora_vs_full_step; add it to --only or drop --plot")
        if (
            args.full
            and "course_seconds" in only
            and not args.from_json
            and not Path(args.notebooks).is_dir()
        ):
            raise ValueError(
                f"--notebooks {args.notebooks} is not a folder (course_seconds runs its notebooks)"
            )
        results = load_results(args.from_json) if args.from_json else _measure(args)
        if args.plot and "lora_vs_full_step" not in results:
            raise ValueError(f"--from-json {args.from_json} has no lora_vs_full_step to plot; drop --plot")
        text = (
            json.dumps(results, indent=2)
            if args.json
            else markdown_summary(results)
            if args.markdown
            else format_table(results)
        )
    except (KeyError, TypeError) as error:
        if not args.from_json:
            raise
        print(
            f"error: --from-json {args.from_json} is not a complete bench result "
            f"({type(error).__name__}: {error}); save one with `lora-teach bench --json`",
            file=sys.stderr,
        )
        return 2
    except (ValueError, OSError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(text)
    if args.plot:
        try:
            print(f"plot saved to {plot_memory(results, args.plot)}", file=sys.stderr)
        except Exception as error:  # noqa: BLE001 - the results are printed; the plot error is one line
            print(f"error: the plot was not saved to {args.plot}: {error_line(error)}", file=sys.stderr)
            return 1
    return 0
