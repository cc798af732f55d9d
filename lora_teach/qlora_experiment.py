"""The QLoRA sweep of notebook 10 and its command ``lora-teach experiment-qlora``: LoRA on the float TinyGPT
against LoRA on its NF4 + double-quantized copy (same targets, rank, learning-rate grid and seeds), every run
scored on two disjoint slices of the held-out code, and what each 4-bit format costs the model in bits/char.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lora_teach.adapters import add_lora, mark_only_lora_as_trainable
from lora_teach.gpt import (
    ALL_LINEAR,
    bits_per_char,
    gpt_data_dir,
    load_corpus,
    pretrained_tiny_gpt,
    train_steps,
)
from lora_teach.outputs import (
    RESUME_FIX,
    check_output_file,
    error_line,
    read_json_to_resume,
    write_new_file,
)
from lora_teach.quant import (
    BLOCKSIZES,
    Linear4bit,
    dequantize_4bit,
    dequantize_blockwise_from_code,
    int4_code,
    quantize_4bit,
    quantize_blockwise_to_code,
    quantize_model,
)

METHODS = {"lora": "LoRA, float base", "qlora": "QLoRA, NF4 + DQ base"}
FORMATS = ("int4", "fp4", "nf4", "nf4+dq")  # what the quantization table measures, per block size
REFERENCE = "float32"  # the table's reference row: the model as it is
QLORA_QUANT = {"quant_type": "nf4", "blocksize": 64, "compress_statistics": True}  # QLoRA's defaults

SETTINGS: dict[str, dict[str, Any]] = {
    # the committed sweep: 2 methods x 3 learning rates x 3 seeds, 200 steps of batch 8 (about 12 minutes on an
    # idle core); the bits/char of each format per block size and per alignment of the blocks (about a minute)
    "full": {
        "steps": 200,
        "batch_size": 8,
        "seeds": [0, 1, 2],
        "r": 8,
        "lora_alpha": 8.0,
        "target_modules": list(ALL_LINEAR),
        "lrs": [5e-3, 1e-2, 2e-2],
        "quant": QLORA_QUANT,
        "code_chars": None,  # each half of the held-out code whole (16,128 characters scored)
        "prose_chars": 16384,
        "table": {"formats": list(FORMATS), "blocksizes": list(BLOCKSIZES), "eval_chars": 16384},
        # the cost of each format at block 64 under four alignments of the blocks: a spread to compare with
        "shifts": {"formats": list(FORMATS), "blocksize": 64, "shifts": [0, 16, 32, 48], "eval_chars": 16384},
    },
    # for the tests: seconds
    "fast": {
        "steps": 3,
        "batch_size": 4,
        "seeds": [0, 1],
        "r": 2,
        "lora_alpha": 8.0,
        "target_modules": ["q_proj", "v_proj"],
        "lrs": [1e-2],
        "quant": QLORA_QUANT,
        "code_chars": 512,
        "prose_chars": 512,
        "table": {"formats": ["nf4", "nf4+dq"], "blocksizes": [64], "eval_chars": 512},
        "shifts": {"formats": ["nf4"], "blocksize": 64, "shifts": [0, 16], "eval_chars": 512},
    },
}


def code_slices() -> dict[str, torch.Tensor]:
    """The held-out code split in two disjoint halves: "select" (to choose a learning rate) and "report"."""
    code = load_corpus("code", "val")
    half = len(code) // 2
    return {"select": code[:half], "report": code[half:]}


def round_trip(weight: torch.Tensor, fmt: str, blocksize: int, shift: int = 0) -> torch.Tensor:
    """``weight`` quantized in ``fmt`` ("int4", "fp4", "nf4" or "nf4+dq") and dequantized, same shape;
    "float32" (the reference) leaves it as it is.

    ``shift``: the blocks start ``shift`` values later in the flattened weight (the first ``shift`` values
    join the last block), another equally good alignment of the same block size: its rounding is another draw.
    """
    if fmt == REFERENCE:
        return weight.detach().clone()
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS} or {REFERENCE!r}, got {fmt!r}")
    flat = weight.detach().reshape(-1).roll(-shift)
    if fmt == "int4":
        indices, absmax = quantize_blockwise_to_code(flat, int4_code(), blocksize)
        back = dequantize_blockwise_from_code(indices, absmax, int4_code(), blocksize, flat.shape)
    else:
        back = dequantize_4bit(*quantize_4bit(flat, blocksize, fmt[:3], compress_statistics=fmt == "nf4+dq"))
    return back.roll(shift).reshape(weight.shape)


def quantized_copy(base: nn.Module, fmt: str, blocksize: int, shift: int = 0) -> nn.Module:
    """A float copy of ``base`` whose block linear layers hold their ``round_trip`` in ``fmt``. It computes what
    a 4-bit model computes (``Linear4bit`` dequantizes the same values) and takes Int4, which bitsandbytes
    does not pack."""
    model = copy.deepcopy(base)
    with torch.no_grad():
        for module_name, module in model.named_modules():
            if module_name.rpartition(".")[2] in ALL_LINEAR:
                module.weight.copy_(round_trip(module.weight, fmt, blocksize, shift))
    return model


def qlora_model(base: nn.Module, method: str, settings: dict[str, Any]) -> nn.Module:
    """A copy of ``base`` ready to fine-tune: LoRA on the float weights ("lora") or on their 4-bit version
    ("qlora"), only the adapter trainable. Seed torch before calling: the adapter's A is drawn here."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    model = copy.deepcopy(base)
    if method == "qlora":
        quantize_model(model, settings["target_modules"], **settings["quant"])
    add_lora(
        model, settings["r"], lora_alpha=settings["lora_alpha"], target_modules=settings["target_modules"]
    )
    mark_only_lora_as_trainable(model)
    return model


def score(model: nn.Module, settings: dict[str, Any]) -> dict[str, float]:
    """Bits/char on both halves of the held-out code (their first ``code_chars``; None: all) and on the first
    ``prose_chars`` of the held-out prose."""
    slices = code_slices()
    return {
        "code_select_bpc": bits_per_char(model, slices["select"], settings["code_chars"]),
        "code_report_bpc": bits_per_char(model, slices["report"], settings["code_chars"]),
        "prose_bpc": bits_per_char(model, load_corpus("prose", "val"), settings["prose_chars"]),
    }


def fine_tune_once(
    base: nn.Module, method: str, lr: float, seed: int, settings: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of ``base`` on the code training split (one thread, seeded) and score it.

    Returns the model and a record: method, lr, seed, trainable count, the three bits/char, seconds.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)  # the adapter's initial A: the same for both methods at one seed
        model = qlora_model(base, method, settings)
        start = time.perf_counter()
        train_steps(model, load_corpus("code", "train"), settings["steps"], lr, settings["batch_size"], seed)
        seconds = time.perf_counter() - start
        scores = score(model, settings)
    finally:
        torch.set_num_threads(threads)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    record = {"method": method, "lr": lr, "seed": seed, "steps": settings["steps"], "trainable": trainable}
    return model, record | scores | {"seconds": round(seconds, 1)}


def quantization_cost(
    base: nn.Module, fmt: str, blocksize: int, shift: int = 0, eval_chars: int = 16384
) -> dict:
    """Bits/char on held-out prose and code (first ``eval_chars``) of ``base`` with its block linear layers
    quantized (one thread): a row of the table."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = quantized_copy(base, fmt, blocksize, shift)
        prose = bits_per_char(model, load_corpus("prose", "val"), eval_chars)
        code = bits_per_char(model, load_corpus("code", "val"), eval_chars)
    finally:
        torch.set_num_threads(threads)
    return {"format": fmt, "blocksize": blocksize, "shift": shift, "prose_bpc": prose, "code_bpc": code}


def quantization_table(base: nn.Module, table: dict[str, Any]) -> list[dict[str, Any]]:
    """``quantization_cost`` for each format and block size of ``table``."""
    return [
        quantization_cost(base, fmt, blocksize, 0, table["eval_chars"])
        for fmt in table["formats"]
        for blocksize in table["blocksizes"]
    ]


def shift_table(base: nn.Module, shifts: dict[str, Any]) -> list[dict[str, Any]]:
    """``quantization_cost`` for each format at one block size and several alignments (``shift``) of the blocks."""
    return [
        quantization_cost(base, fmt, shifts["blocksize"], shift, shifts["eval_chars"])
        for fmt in shifts["formats"]
        for shift in shifts["shifts"]
    ]


def planned_runs(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (method, lr, seed), seed by seed, the two methods side by side."""
    return [
        {"method": method, "lr": lr, "seed": seed}
        for seed in settings["seeds"]
        for lr in settings["lrs"]
        for method in METHODS
    ]


def _key(run: dict[str, Any]) -> tuple:
    return (run["method"], run["lr"], run["seed"])


def _write(out: Path, results: dict[str, Any], replace: bool) -> None:
    """Write through a unique temporary file beside ``out`` (never ``out.tmp``, which may be the
    user's); without ``replace``, ``out`` is created exclusively (a file that appeared is kept)."""
    text = json.dumps(results, indent=1) + "\n"
    write_new_file(out, lambda tmp: tmp.write_text(text), force=replace, option="--out")


def run_sweep(
    out: Path | str,
    settings: str = "full",
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    base: nn.Module | None = None,
) -> dict[str, Any]:
    """Run the sweep ``settings`` ("full" or "fast") and write the results JSON to ``out`` after every run.
    Refuses to overwrite ``out`` unless ``force``; ``resume`` keeps its finished runs (and table)."""
    if settings not in SETTINGS:
        raise ValueError(f"settings must be one of {sorted(SETTINGS)}, got {settings!r}")
    if force and resume:
        raise ValueError("pass either force (start again) or resume (keep finished runs), not both")
    out = check_output_file(out, "--out")
    chosen = SETTINGS[settings]
    results: dict[str, Any] = {"settings_name": settings, "settings": chosen, "runs": []}
    replace = force or (resume and out.exists())  # later writes replace the file this run made
    if out.exists():
        if resume:
            results = _read_results(out)
            if results.get("settings") != json.loads(json.dumps(chosen)):
                raise ValueError(f"{out} was made with other settings; pass --force to start again")
        elif not force:
            raise FileExistsError(f"{out} exists; pass --force to overwrite it or --resume to continue it")
    base = base if base is not None else pretrained_tiny_gpt()
    if "base" not in results:
        results["base"] = score(base, chosen) | {"parameters": sum(p.numel() for p in base.parameters())}
    if "table" not in results:
        results["table"] = quantization_table(base, chosen["table"])
        _write(out, results, replace)
        replace = True
    if "reference" not in results:
        results["reference"] = quantization_cost(base, REFERENCE, 0, 0, chosen["table"]["eval_chars"])
        _write(out, results, replace)
        replace = True
    if "shifts" not in results:
        results["shifts"] = shift_table(base, chosen["shifts"])
        _write(out, results, replace)
        replace = True
    done = {_key(run) for run in results["runs"]}
    todo = [run for run in planned_runs(chosen) if _key(run) not in done]
    bar = todo
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(todo, desc=f"experiment-qlora ({settings})", unit="run")
    for run in bar:
        _, record = fine_tune_once(base, run["method"], run["lr"], run["seed"], chosen)
        results["runs"].append(record)
        _write(out, results, replace)
        replace = True
    _write(out, results, replace)
    return results


def _read_results(out: Path) -> dict[str, Any]:
    """The results JSON that ``--resume`` continues, or a one-line ValueError naming the file."""
    fix = RESUME_FIX
    results = read_json_to_resume(out)
    runs = results.get("runs") if isinstance(results, dict) else None
    if not isinstance(runs, list) or not all(
        isinstance(r, dict) and {"method", "lr", "seed"} <= set(r) for r in runs
    ):
        raise ValueError(
            f"--resume: {out} is not an experiment-qlora results file (no list of 'runs'); {fix}"
        )
    return results


def grouped(results: dict[str, Any]) -> dict[tuple[str, float], dict[str, list[float]]]:
    """Runs grouped by (method, lr): lists over seeds (in seed order) of each score."""
    groups: dict[tuple[str, float], dict[str, list[float]]] = {}
    for run in sorted(results["runs"], key=lambda r: r["seed"]):
        g = groups.setdefault((run["method"], run["lr"]), {"seed": []})
        g["seed"].append(run["seed"])
        for quantity in ("code_select_bpc", "code_report_bpc", "prose_bpc"):
            g.setdefault(quantity, []).append(run[quantity])
    return groups


def best_lr(results: dict[str, Any], method: str) -> float:
    """The learning rate with the lowest mean bits/char on the *select* half of the held-out code."""
    groups = {k: v for k, v in grouped(results).items() if k[0] == method}
    if not groups:
        raise ValueError(f"no runs of method {method!r} in the results; methods are {sorted(METHODS)}")
    return min(groups, key=lambda k: sum(groups[k]["code_select_bpc"]) / len(groups[k]["code_select_bpc"]))[1]


def model_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes a model holds: "frozen" (float parameters that do not train, and the 4-bit layers' buffers),
    "trainable" (parameters with requires_grad), and "adam" (AdamW's two float32 moments per trainable value)."""
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    frozen += sum(
        m.nbytes() - (0 if m.bias is None else m.bias.numel() * m.bias.element_size())
        for m in model.modules()
        if isinstance(m, Linear4bit)
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"frozen": frozen, "trainable": 4 * trainable, "adam": 2 * 4 * trainable}


def sweep_path() -> Path:
    """Where the committed sweep lives: data/qlora_experiment_full.json."""
    return gpt_data_dir() / "qlora_experiment_full.json"


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``lora-teach experiment-qlora``."""
    parser.add_argument("--fast", action="store_true", help="a few steps per run, for tests (seconds)")
    parser.add_argument(
        "--out", type=Path, default=None, help="results JSON (default: data/qlora_experiment_SETTINGS.json)"
    )
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--force", action="store_true", help="overwrite an existing results file")
    again.add_argument(
        "--resume", action="store_true", help="keep the finished runs of an existing results file"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bar")


def run(args: argparse.Namespace) -> int:
    """Run the sweep; a bad input or a refused overwrite prints one line and returns 2."""
    settings = "fast" if args.fast else "full"
    out = args.out or gpt_data_dir() / f"qlora_experiment_{settings}.json"
    try:
        results = run_sweep(
            out, settings, force=args.force, resume=args.resume, progress=not args.no_progress
        )
    except (ValueError, OSError, FloatingPointError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(
        f"wrote {out} ({len(results['runs'])} runs, {len(results['table']) + len(results['shifts'])} table rows)"
    )
    return 0
