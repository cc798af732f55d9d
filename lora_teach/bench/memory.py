"""``lora_vs_full_step``: memory and time of one training step, LoRA against full fine-tuning.
Each configuration runs in a fresh child process (a process's peak memory cannot be reset);
inside it, ``Timer.timeit`` times the steps."""

from __future__ import annotations

import json
import math
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lora_teach.adapters import add_lora, mark_only_lora_as_trainable
from lora_teach.bench.timing import LORA_R, make_timer
from lora_teach.train import make_optimizer

MEMORY_BATCH = 64

_CHILD = """
import json, sys
from lora_teach.bench.memory import memory_child
print(json.dumps(memory_child(**json.loads(sys.argv[1]))))
"""


def wide_mlp(width: int, depth: int = 2) -> nn.Sequential:
    """``depth`` square Linear(width, width) layers with ReLU between: x (batch, width) -> (batch, width)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.ReLU()] if i else []
        layers.append(nn.Linear(width, width))
    return nn.Sequential(*layers)


def memory_child(
    width: int, mode: str, r: int, batch_size: int, steps: int, threads: int, device: str
) -> dict:
    """Run in a fresh process: build ``wide_mlp(width)``, then ``mode`` = "forward"
    (forward passes of x (batch_size, width) under no_grad: the baseline), "lora"
    (wrapper, r) or "full", and train ``steps`` steps of MSE regression. Returns the
    process's peak memory (max RSS on the CPU, max allocated on CUDA), the mean step time
    (``Timer.timeit``: its warm-up, 2 steps below 300, then ``steps`` timed) and byte counts."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    # One step on a 1x1 layer first, in every mode: it loads what backward and Adam load
    # (about 150 MB of RSS on the CPU, whatever the width), so the subtraction leaves
    # only what grows with the model.
    tiny = nn.Linear(1, 1).to(dev)
    tiny_optimizer = make_optimizer(tiny.parameters())
    tiny(torch.ones(1, 1, device=dev)).sum().backward()
    tiny_optimizer.step()
    del tiny, tiny_optimizer
    model = wide_mlp(width).to(dev)
    x = torch.randn(batch_size, width, device=dev)
    target = torch.randn(batch_size, width, device=dev)
    result = {"trainable": 0, "param_bytes": 0, "grad_bytes": 0, "optimizer_state_bytes": 0}
    if mode == "forward":
        with torch.no_grad():
            seconds = make_timer(lambda: model(x), threads).timeit(steps).mean
    else:
        if mode == "lora":
            add_lora(model, r=r, lora_alpha=2 * r, method="wrapper")
            mark_only_lora_as_trainable(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(trainable, lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x), target).backward()
            optimizer.step()

        seconds = make_timer(step, threads).timeit(steps).mean
        result = {
            "trainable": sum(p.numel() for p in trainable),
            "param_bytes": sum(p.nbytes for p in trainable),
            "grad_bytes": sum(p.grad.nbytes for p in trainable),
            "optimizer_state_bytes": sum(
                t.nbytes for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)
            ),
        }
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = _peak_rss_bytes()
    return {**result, "peak_bytes": int(peak), "step_ms": 1000 * seconds}


def _peak_rss_bytes() -> int:
    """This process's peak resident set size. On Linux, VmHWM of /proc/self/status: it
    belongs to the address space made at exec, whereas ru_maxrss carries over the peak
    of the parent that forked this child (which made every child read the parent's peak)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _run_child(**kwargs: object) -> dict:
    """``memory_child(**kwargs)`` in a fresh Python process; its result (a dict)."""
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(kwargs)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the memory benchmark child {kwargs} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _slope(widths: Sequence[int], values: Sequence[float]) -> float | None:
    """Exponent k of values ~ width**k, a least-squares line in log-log (None if it can't be fit)."""
    points = [(math.log(w), math.log(v)) for w, v in zip(widths, values) if v > 0]
    if len(points) < 2:
        return None
    mean_x = statistics.fmean(p[0] for p in points)
    mean_y = statistics.fmean(p[1] for p in points)
    spread = sum((px - mean_x) ** 2 for px, _ in points)
    return sum((px - mean_x) * (py - mean_y) for px, py in points) / spread if spread else None


def bench_lora_vs_full(
    widths: Sequence[int] = (256, 1024, 4096),
    r: int = LORA_R,
    batch_size: int = MEMORY_BATCH,
    steps: int = 5,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> dict:
    """Per training step of ``wide_mlp(width)`` (two width x width layers), LoRA (wrapper,
    r) against full fine-tuning: trainable parameters, bytes of trainable params +
    gradients + Adam state (from the tensors), peak memory in a child process minus a
    child that only runs the forward (same model and batch, no_grad), and step time."""
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    rows = []
    for width in widths:
        common = {"width": width, "r": r, "batch_size": batch_size, "steps": steps, "threads": threads}
        baseline = _run_child(mode="forward", device=device.type, **common)
        for mode in ("lora", "full"):
            child = _run_child(mode=mode, device=device.type, **common)
            tensor_bytes = child["param_bytes"] + child["grad_bytes"] + child["optimizer_state_bytes"]
            rows.append(
                {
                    "width": width,
                    "method": mode,
                    "trainable": child["trainable"],
                    "param_bytes": child["param_bytes"],
                    "grad_bytes": child["grad_bytes"],
                    "optimizer_state_bytes": child["optimizer_state_bytes"],
                    "tensor_bytes": tensor_bytes,
                    "peak_bytes": child["peak_bytes"],
                    "baseline_peak_bytes": baseline["peak_bytes"],
                    "peak_minus_forward_bytes": child["peak_bytes"] - baseline["peak_bytes"],
                    "step_ms": child["step_ms"],
                    "forward_ms": baseline["step_ms"],
                }
            )
    growth = {}
    for mode in ("lora", "full"):
        mine = [row for row in rows if row["method"] == mode]
        ws = [row["width"] for row in mine]
        growth[mode] = {
            key: _slope(ws, [row[key] for row in mine])
            for key in ("trainable", "tensor_bytes", "peak_minus_forward_bytes", "step_ms")
        }
    return {
        "device": device.type,
        "threads": threads if device.type == "cpu" else None,
        "r": r,
        "batch_size": batch_size,
        "model": "two Linear(width, width) layers with ReLU between; LoRA on both (wrapper); biases frozen",
        "peak_measure": (
            "max RSS of a child process (CUDA: max allocated) minus that of a child building the same "
            "model and running the forward under no_grad (both first take one step of a 1x1 layer, "
            "so what backward and Adam load whatever the width cancels)"
        ),
        "rows": rows,
        "growth_exponent": growth,
    }
