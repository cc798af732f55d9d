"""The ``lora-teach`` command: ``experiment``, ``bench``, ``doctor``, ``student-edition``,
``instructor-guide``, ``build-site``.

Each subcommand lives in its own module, which provides ``add_arguments(parser)``
and ``run(args) -> int``; it is imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys

COMMANDS = {  # name -> (module, one-line help)
    "experiment": (
        "lora_teach.cli",
        "train DigitsNet, fine-tune it with LoRA on the weak digits, print before/after",
    ),
    "bench": ("lora_teach.bench.command", "measure speed and memory side by side, print a table (or --json)"),
    "doctor": ("lora_teach.course.doctor", "check versions, the device and the data, each with OK or a fix"),
    "student-edition": ("lora_teach.course.editions", "write the notebooks with the solutions taken out"),
    "instructor-guide": (
        "lora_teach.course.editions",
        "write the instructor guide (goals, run times, answers)",
    ),
    "build-site": ("lora_teach.course.site", "write the course as a static HTML site"),
    "grade": ("lora_teach.course.grade", "run each student's notebooks, write grades.csv and feedback"),
    # notebook 09: the tiny transformer (both in lora_teach.gpt_cli)
    "pretrain-gpt": ("lora_teach.gpt_cli", "pretrain the TinyGPT on prose and write its checkpoint"),
    "experiment-gpt": ("lora_teach.gpt_cli", "fine-tune TinyGPT on code (lr x seed x targets), write JSON"),
    # notebook 10: QLoRA
    "experiment-qlora": (
        "lora_teach.qlora_experiment",
        "fine-tune TinyGPT with LoRA on its float and its 4-bit base (lr x seed), write JSON",
    ),
    # notebook 11: serving many adapters
    "train-gpt-adapters": (
        "lora_teach.gpt_adapters",
        "train the eight small TinyGPT adapters of notebook 11 and write them to data/adapters",
    ),
}


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``2.0``, ``0`` and ``-3`` are refused)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _alpha(text: str) -> float:
    """An argparse type for lora_alpha: a finite number other than 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number such as 1 or 16, got {text!r}")
    if value == 0:
        raise argparse.ArgumentTypeError(
            "0 would switch the adapter off (scaling = alpha / r = 0); use e.g. 1"
        )
    return value


def _seed(text: str) -> int:
    """An argparse type: a random seed from 0 to 2**32 - 1 (what NumPy accepts)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 4294967295, got {text!r}")
    return value


def _digits(text: str) -> list[int]:
    """An argparse type: comma-separated digits 0-9 such as 2,3,5,8,9."""
    try:
        digits = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        digits = []
    if not digits or any(not 0 <= d <= 9 for d in digits):
        raise argparse.ArgumentTypeError(
            f"expected digits 0-9 separated by commas, such as 2,3,5,8,9, got {text!r}"
        )
    return digits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``lora-teach experiment`` (defaults: the seed's settings)."""
    parser.add_argument(
        "--variant",
        choices=["original", "corrected"],
        default="original",
        help="DigitsNet as in the seed (one ReLU on the logits) or corrected (default: original)",
    )
    parser.add_argument("--method", choices=["parametrize", "wrapper"], default="parametrize")
    parser.add_argument("--rank", "-r", type=positive_int, default=2, help="LoRA rank r (default: 2)")
    parser.add_argument(
        "--alpha", type=_alpha, default=1.0, help="lora_alpha; scaling = alpha / r (default: 1)"
    )
    parser.add_argument(
        "--digits", type=_digits, default=[2, 3, 5, 8, 9], help="digits to fine-tune on (default: 2,3,5,8,9)"
    )
    parser.add_argument(
        "--iterations", type=positive_int, default=200, help="fine-tuning steps (default: 200)"
    )
    parser.add_argument(
        "--bias",
        choices=["none", "all", "lora_only"],
        default="none",
        help="which biases train with LoRA (the seed's wrapper run used 'all')",
    )
    parser.add_argument(
        "--init-lora-weights",
        choices=["normal", "kaiming", "gaussian"],
        default="normal",
        help="A's init: normal = N(0, 1), the tutorial's (default); kaiming = PEFT's default "
        "(init_lora_weights=True); gaussian = PEFT's N(0, 1/r)",
    )
    parser.add_argument("--rslora", action="store_true", help="scale by alpha / sqrt(r)")
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")


def run(args: argparse.Namespace) -> int:
    from lora_teach.experiment import run_experiment

    digits = args.digits
    try:
        result = run_experiment(
            variant=args.variant,
            method=args.method,
            r=args.rank,
            lora_alpha=args.alpha,
            digits=digits,
            num_steps=args.iterations,
            bias=args.bias,
            seed=args.seed,
            progress=not args.no_progress,
            init_lora_weights=True if args.init_lora_weights == "kaiming" else args.init_lora_weights,
            use_rslora=args.rslora,
        )
    except ValueError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    before, after = result.before, result.after
    print(
        f"\nDigitsNet ({args.variant}), LoRA by {args.method}, r={args.rank}, alpha={args.alpha:g}, "
        f"{args.iterations} steps on digits {','.join(map(str, digits))}, seed {args.seed}"
    )
    print(
        f"trainable parameters: full model {result.trainable_full:,} | LoRA {result.trainable_lora:,} "
        f"| LoRA + all biases {result.trainable_lora_and_biases:,}"
    )
    print(f"\n{'digit':>5}  {'wrong before':>12}  {'wrong after':>11}  {'change':>6}")
    for d in range(10):
        mark = " *" if d in digits else ""
        wb, wa = before.wrong_counts[d], after.wrong_counts[d]
        print(f"{d:>5}  {wb:>12,}  {wa:>11,}  {wa - wb:>+6,}{mark}")
    print(f"{'all':>5}  {before.total - before.correct:>12,}  {after.total - after.correct:>11,}")
    print(
        f"\naccuracy: {100 * before.accuracy:.1f} % before, {100 * after.accuracy:.1f} % after  "
        f"(* = fine-tuned digits: {100 * before.accuracy_on(digits):.1f} % -> {100 * after.accuracy_on(digits):.1f} %)"
    )
    return 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (exit status 2), pointing to ``--help``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run ``lora-teach COMMAND ...``; bad arguments end with one line on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _Parser(prog="lora-teach", description="LoRA from first principles: course tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(module=module)
        if argv[:1] == [name]:  # import only the chosen subcommand's module
            importlib.import_module(module).add_arguments(command)
    args = parser.parse_args(argv)
    return importlib.import_module(args.module).run(args)


if __name__ == "__main__":
    sys.exit(main())
