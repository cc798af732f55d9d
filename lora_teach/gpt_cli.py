"""``lora-teach pretrain-gpt`` (write the TinyGPT checkpoint) and ``lora-teach experiment-gpt`` (the
fine-tuning sweep of notebook 09, written as a results JSON)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from lora_teach.cli import _seed, positive_int


def _positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number above 0 such as 3e-3, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pretrain-gpt`` or ``experiment-gpt``, whichever ``parser`` is for."""
    if parser.prog.endswith("pretrain-gpt"):
        from lora_teach.gpt import PRETRAIN

        parser.add_argument(
            "--out", type=Path, default=None, help="where to write (default: data/tiny_gpt_prose.pt)"
        )
        parser.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
        parser.add_argument(
            "--steps",
            type=positive_int,
            default=PRETRAIN["steps"],
            help="training steps (default: %(default)s)",
        )
        parser.add_argument(
            "--batch-size", type=positive_int, default=PRETRAIN["batch_size"], help="(default: %(default)s)"
        )
        parser.add_argument(
            "--lr",
            type=_positive_float,
            default=PRETRAIN["lr"],
            help="peak learning rate (default: %(default)s)",
        )
        parser.add_argument("--seed", type=_seed, default=PRETRAIN["seed"])
    else:
        size = parser.add_mutually_exclusive_group()
        size.add_argument(
            "--full", action="store_true", help="the whole grid, 3 seeds, rank sweep (about 45 min)"
        )
        size.add_argument("--fast", action="store_true", help="a few steps per run, for tests (seconds)")
        parser.add_argument(
            "--out", type=Path, default=None, help="results JSON (default: data/gpt_experiment_SETTINGS.json)"
        )
        again = parser.add_mutually_exclusive_group()
        again.add_argument("--force", action="store_true", help="overwrite an existing results file")
        again.add_argument(
            "--resume", action="store_true", help="keep the finished runs of an existing results file"
        )
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bar")


def run(args: argparse.Namespace) -> int:
    """Run the chosen command; a bad input or a refused overwrite prints one line and returns 2."""
    try:
        if args.command == "pretrain-gpt":
            from lora_teach.gpt import sha256_of, write_pretrained

            path, meta = write_pretrained(
                args.out,
                force=args.force,
                progress=not args.no_progress,
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=args.seed,
            )
            print(json.dumps(meta))
            print(f"wrote {path} (sha256 {sha256_of(path)})")
            return 0
        from lora_teach.gpt import gpt_data_dir
        from lora_teach.gpt_experiment import run_experiment

        settings = "full" if args.full else "fast" if args.fast else "reduced"
        out = args.out or gpt_data_dir() / f"gpt_experiment_{settings}.json"
        results = run_experiment(
            out, settings, force=args.force, resume=args.resume, progress=not args.no_progress
        )
        print(f"wrote {out} ({len(results['runs'])} runs)")
        return 0
    except (ValueError, OSError, FloatingPointError) as error:
        from lora_teach.outputs import error_line

        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
