"""The eight small TinyGPT adapters of notebook 11, one per standard-library module of the code corpus
and one on prose, of different ranks and targets: how they are trained (``lora-teach
train-gpt-adapters``), where they are committed (``data/adapters/NAME/``, PEFT's format) and their sha256.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import torch

from lora_teach.gpt import (
    ALL_LINEAR,
    ATTENTION_LINEAR,
    MLP_LINEAR,
    _text,
    encode,
    gpt_data_dir,
    load_corpus,
    pretrained_tiny_gpt,
    sha256_of,
    train_steps,
)
from lora_teach.outputs import OutputError, _move_all_or_nothing, check_output_dir, error_line

TARGETS = {"q,v": ["q_proj", "v_proj"], "attention": list(ATTENTION_LINEAR), "mlp": list(MLP_LINEAR)}
TARGETS["all linear"] = list(ALL_LINEAR)
# name -> (the text it is trained on, target set, r); every adapter has lora_alpha = 8 (PEFT's default)
ADAPTERS = {
    "prose": ("prose", "all linear", 2),
    "argparse": ("argparse", "q,v", 8),
    "dataclasses": ("dataclasses", "all linear", 2),
    "functools": ("functools", "attention", 4),
    "fractions": ("fractions", "mlp", 1),
    "statistics": ("statistics", "all linear", 4),
    "random": ("random", "q,v", 2),
    "textwrap": ("textwrap", "mlp", 4),
}
TRAIN = {"steps": 150, "batch_size": 16, "lr": 1e-2, "warmup": 10, "seed": 0}
FOLDER = "adapters"  # under data/
FILES = ("adapter_config.json", "adapter_model.safetensors")
# sha256 of the committed files, data/adapters/NAME/FILE (see data/adapters/README.md)
SHA256: dict[str, str] = {
    "prose/adapter_config.json": "173831673bfdaa966ada712849addd16f1babd1dd368e0047512a8378886a0bb",
    "prose/adapter_model.safetensors": "44127c64c8548db7b33f03a9bcee5425708cffcd0a889a2da7bf40fcb278f71b",
    "argparse/adapter_config.json": "9c4696dc9af4e6ce6776d25944c69ae141b297972ad67c28009ad0b2d8be91eb",
    "argparse/adapter_model.safetensors": "011e901edbe62cd7176bdbe97fd7ffe7b7fc01c85f7fa05b3f4ae7d07e0cc22b",
    "dataclasses/adapter_config.json": "173831673bfdaa966ada712849addd16f1babd1dd368e0047512a8378886a0bb",
    "dataclasses/adapter_model.safetensors": "4552592f1ed06fda780100f78f3f43feab5b353658227613d5014a7d58ec8609",
    "functools/adapter_config.json": "1b5a17784b188d934a25e59543340165539de32a50e4cb2afb0fe4a1cee8d847",
    "functools/adapter_model.safetensors": "66c5077af82aa80f1dc270c8fed3fd5d28a9264587d39e56d60c3d95a9eb5c86",
    "fractions/adapter_config.json": "e672e54ee035c165727a0ce167bd5330079e02eb61a36f5ce449a9a4de68ddb1",
    "fractions/adapter_model.safetensors": "4dae8cb7fa2f8510dff1fa4c3d2ba7da82cb7fb8ae7aa3ee31d4d6809a3dc089",
    "statistics/adapter_config.json": "3afcc4062f02d70f3d50cf4fdc1c0177e43a16ada66691a313c7f1a2e338b37d",
    "statistics/adapter_model.safetensors": "a829394e9ab21e16104ea632e6123e32ca8e7e8b7fb3c97a119f77afb41faf55",
    "random/adapter_config.json": "b23638de0c4869fd5d421cb4ca32393486cd4206d03e9912e4498bbd984f8f14",
    "random/adapter_model.safetensors": "8d63717fd377de0234f61cdb7d0a340e317958566b39b96604ea8c24ce79dc4b",
    "textwrap/adapter_config.json": "1a730322f77bfef7fbb8e6aeac26b0e33a809945a543737f66c72e06fceaf143",
    "textwrap/adapter_model.safetensors": "f118378a08089ee7869b759e97f7f4d9844ac47e7fb2101d1a5caaec8cba69f4",
}
REGENERATE = "lora-teach train-gpt-adapters --force"


@cache
def code_modules() -> dict[str, str]:
    """The code corpus cut at its ``# ===== NAME.py =====`` lines: {module name: its source}."""
    parts = re.split(r"^# ===== (\w+)\.py =====\n", _text("code"), flags=re.MULTILINE)
    return {name: source for name, source in zip(parts[1::2], parts[2::2])}


def adapter_text(name: str, split: str) -> torch.Tensor:
    """Token ids of what adapter ``name`` learns from: its module's source (or the prose), the first 90 %
    for ``split="train"``, the last 10 % for ``"val"`` (as ``lora_teach.gpt.load_corpus`` splits)."""
    if name not in ADAPTERS:
        raise ValueError(f"name must be one of {list(ADAPTERS)}, got {name!r}")
    corpus = ADAPTERS[name][0]
    if corpus == "prose":
        return load_corpus("prose", split)
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    ids = encode(code_modules()[corpus])
    cut = int(len(ids) * 0.9)
    return ids[:cut] if split == "train" else ids[cut:]


def adapters_dir() -> Path:
    """``data/adapters``, where the eight adapter folders are committed."""
    return gpt_data_dir() / FOLDER


def train_adapter(name: str, base: torch.nn.Module | None = None, progress: bool = False) -> torch.nn.Module:
    """A copy of the committed TinyGPT with adapter ``name`` trained on its text (one thread, seeded)."""
    import copy

    from lora_teach.adapters import add_lora, mark_only_lora_as_trainable

    _, targets, r = ADAPTERS[name]
    model = copy.deepcopy(base if base is not None else pretrained_tiny_gpt())
    torch.manual_seed(TRAIN["seed"])  # the adapter's initial A
    add_lora(model, r, target_modules=TARGETS[targets])
    mark_only_lora_as_trainable(model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same bits on any machine's thread count
    try:
        settings = {k: TRAIN[k] for k in ("steps", "lr", "batch_size", "seed", "warmup")}
        train_steps(model, adapter_text(name, "train"), progress=progress, **settings)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def write_adapters(folder: Path | None = None, force: bool = False, progress: bool = True) -> dict:
    """Train the eight adapters and save each to ``folder/NAME`` (default data/adapters); refuses to
    replace existing folders without ``force``. Returns the provenance, also written as provenance.json."""
    import platform

    from lora_teach.peft_format import save_adapter

    folder = check_output_dir(Path(folder) if folder is not None else adapters_dir(), "--out")
    existing = [name for name in ADAPTERS if (folder / name).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{folder} already holds adapters {existing}; pass --force (force=True) to replace them"
        )
    base = pretrained_tiny_gpt()
    staging = Path(tempfile.mkdtemp(prefix=".adapters.", dir=_parent(folder)))
    provenance = {
        "command": REGENERATE,
        "train": TRAIN,
        "lora_alpha": 8,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "base_sha256": sha256_of(gpt_data_dir() / "tiny_gpt_prose.pt"),
        "adapters": {},
    }
    try:
        for name, (text, targets, r) in ADAPTERS.items():
            start = time.perf_counter()
            model = train_adapter(name, base, progress)
            try:
                save_adapter(model, staging / name)
            except (OSError, OutputError) as error:  # save_adapter's names the temporary folder
                cause = error if isinstance(error, OSError) else error.__cause__
                reason = getattr(cause, "strerror", None) or type(cause).__name__
                raise OutputError(
                    f"--out {folder}: could not write the adapter {name} ({reason}); nothing in {folder} was changed"
                ) from None
            provenance["adapters"][name] = {
                "text": text,
                "target_modules": targets,
                "r": r,
                "seconds": round(time.perf_counter() - start, 1),
                "sha256": {f: sha256_of(staging / name / f) for f in FILES},
            }
        (staging / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        entries = [staging / name for name in [*ADAPTERS, "provenance.json"]]
        for entry in entries:
            for path in [entry, *entry.glob("*")]:  # temporary folders are private
                os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
        # all or nothing, and without force nothing that appeared while training is replaced
        _move_all_or_nothing(entries, folder, staging, "--out", replace=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return provenance


def _parent(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent


def course_adapters() -> dict[str, Path]:
    """{name: folder} of the eight committed adapters, after checking every file's sha256.

    Raises FileNotFoundError or ValueError with a one-line message saying how to regenerate them.
    """
    folders = {}
    fix = f"regenerate them with `{REGENERATE}` (or restore them with `git checkout -- data/{FOLDER}`)"
    for name in ADAPTERS:
        for file in FILES:
            path = adapters_dir() / name / file
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing; {fix}")
            expected = SHA256.get(f"{name}/{file}")
            if expected and sha256_of(path) != expected:
                raise ValueError(f"{path} does not match its sha256 (corrupted or changed); {fix}")
        folders[name] = adapters_dir() / name
    return folders


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``lora-teach train-gpt-adapters``."""
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: data/adapters)")
    parser.add_argument("--force", action="store_true", help="replace existing adapter folders")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")


def run(args: argparse.Namespace) -> int:
    """Train and write the adapters; a refused overwrite prints one line and returns 2."""
    try:
        provenance = write_adapters(args.out, force=args.force, progress=not args.no_progress)
    except (ValueError, OSError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    for name, record in provenance["adapters"].items():
        sums = ", ".join(f"{f}: {s}" for f, s in record["sha256"].items())
        print(f"{name}: r={record['r']} on {record['target_modules']}, {record['seconds']} s; {sums}")
    return 0
