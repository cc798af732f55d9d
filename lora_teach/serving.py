"""One frozen base model, many LoRA adapters, one batch: each row names its adapter, as in PEFT's
``model(ids, adapter_names=[...])``, answered by three strategies that give the same outputs.

``"grouped"``: the base once on the whole batch, then each adapter's ``scaling * B A x`` on its own
rows (PEFT's ``_mixed_batch_forward``). ``"gather"``: each row's A and B gathered from a stack padded
to the largest rank and applied with batched matrix products (the idea of Punica's and S-LoRA's
kernels). ``"merged"``: for each adapter in the batch, its rows run through the base with
``W + scaling * B A`` in place of W (the base's own tensors are never written).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lora_teach.adapters import lora_modules

BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names
STRATEGIES = ("grouped", "gather", "merged")


@dataclass(frozen=True)
class LayerFactors:
    """One adapted layer of one adapter: ``lora_A`` (r, in), ``lora_B`` (out, r), ``scaling``."""

    lora_A: torch.Tensor
    lora_B: torch.Tensor
    scaling: float

    @property
    def r(self) -> int:
        return self.lora_A.shape[0]


@dataclass(frozen=True)
class BankMemory:
    """Bytes of the bank: the base, each adapter's factors, the gather stacks (0 until used).

    ``merged_copies_bytes``: one merged copy of the whole base per adapter, the alternative to a bank.
    """

    base_bytes: int
    adapter_bytes: dict[str, int]
    gather_bytes: int

    @property
    def adapters_bytes(self) -> int:
        return sum(self.adapter_bytes.values())

    @property
    def total_bytes(self) -> int:
        return self.base_bytes + self.adapters_bytes + self.gather_bytes

    @property
    def merged_copies_bytes(self) -> int:
        return len(self.adapter_bytes) * self.base_bytes


def _one_line(error: Exception) -> str:
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _bytes(tensors: Iterator[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _frozen_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights other than LoRA's, under the names they have in the plain base model."""
    state = {}
    for key, value in model.state_dict().items():
        leaf = key.rpartition(".")[2]
        if leaf in ("lora_A", "lora_B", "lora_magnitude_vector"):
            continue
        key = key.replace(".base_layer.", ".").replace(".parametrizations.weight.original", ".weight")
        state[key] = value
    return state


class AdapterBank:
    """A frozen ``base`` model and named LoRA adapters, answering batches whose rows name their adapter.

    ``adapters``: {name: folder written by ``save_adapter`` (PEFT's format) or a model with LoRA layers
    (``add_lora``, either method) whose other weights are the base's}. Adapters may differ in rank and
    in target modules. DoRA, PiSSA and adapters that train biases are refused: they change the base.
    The bank keeps detached copies of the factors; the base's weights are never written.
    """

    def __init__(self, base: nn.Module, adapters: Mapping[str, str | os.PathLike | nn.Module]) -> None:
        if not isinstance(base, nn.Module):
            raise TypeError(f"base must be an nn.Module (the frozen base model), got {type(base).__name__}")
        if any(True for _ in lora_modules(base)):
            raise ValueError(
                "base already has LoRA layers; give the plain base model and put the adapters in `adapters`"
            )
        if not isinstance(adapters, Mapping):
            raise TypeError(
                f"adapters must be a dict {{name: adapter folder or adapted model}}, got {type(adapters).__name__}"
            )
        if not adapters:
            raise ValueError("adapters is empty; give at least one, e.g. {'code': 'path/to/adapter_folder'}")
        self.base = base
        self._linears = {n: m for n, m in base.named_modules() if isinstance(m, nn.Linear)}
        self._base_state = base.state_dict()
        self.adapters: dict[str, dict[str, LayerFactors]] = {}
        for name, source in adapters.items():
            if not isinstance(name, str) or not name or name == BASE:
                raise ValueError(
                    f"adapter names must be non-empty strings other than {BASE!r} (which means no adapter), "
                    f"got {name!r}"
                )
            self.adapters[name] = self._read(name, source)
        self._slots = {BASE: 0, **{name: i + 1 for i, name in enumerate(self.adapters)}}
        self._stacks: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    # ------------------------------------------------------------ reading adapters

    def _read(self, name: str, source: str | os.PathLike | nn.Module) -> dict[str, LayerFactors]:
        if isinstance(source, nn.Module):
            model, where = source, f"adapter {name!r}"
        elif isinstance(source, (str, os.PathLike)):
            model, where = self._load_folder(name, Path(source)), f"adapter {name!r} ({source})"
        else:
            raise TypeError(
                f"adapter {name!r} must be an adapter folder (str or Path) or a model with LoRA layers, "
                f"got {type(source).__name__}"
            )
        found = list(lora_modules(model))
        if not found:
            raise ValueError(f"{where} has no LoRA layers; add_lora(model, r=...) and train it first")
        factors = {}
        for layer, lora in found:
            if lora.use_dora:
                raise ValueError(
                    f"{where} uses DoRA, which a mixed batch cannot serve (PEFT refuses it too); "
                    "merge it into a model of its own"
                )
            if getattr(lora, "merged", False) or not lora.enabled:
                state = "merged" if getattr(lora, "merged", False) else "disabled"
                raise ValueError(f"{where}: layer {layer!r} is {state}; unmerge or enable it first")
            target = self._linears.get(layer)
            if target is None:
                raise ValueError(
                    f"{where} adapts {layer!r}, which is not an nn.Linear of the base "
                    f"(is it an adapter for another model?); the base's are {list(self._linears)}"
                )
            if (lora.in_features, lora.out_features) != (target.in_features, target.out_features):
                raise ValueError(
                    f"{where} does not fit the base: {layer!r} is {lora.in_features} -> {lora.out_features} "
                    f"in the adapter, {target.in_features} -> {target.out_features} in the base "
                    "(an adapter for another model?)"
                )
            weight = target.weight
            factors[layer] = LayerFactors(
                lora.lora_A.detach().to(weight.device, weight.dtype).clone(),
                lora.lora_B.detach().to(weight.device, weight.dtype).clone(),
                float(lora.scaling),
            )
        self._check_same_base(where, model)
        return factors

    def _load_folder(self, name: str, folder: Path) -> nn.Module:
        from lora_teach.peft_format import load_adapter, read_adapter_config

        where = f"adapter {name!r} ({folder})"
        try:
            config = read_adapter_config(folder)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(f"{where}: {_one_line(error)}") from None
        if config.get("init_lora_weights") == "pissa":
            raise ValueError(
                f"{where} is a PiSSA adapter, which moves part of W into B A and so needs its own base; "
                "a bank serves adapters of one unchanged base"
            )
        if config.get("bias", "none") != "none":
            raise ValueError(
                f"{where} trains biases of the base (bias={config['bias']!r}), which would change the "
                "shared base; save it with bias='none'"
            )
        model = copy.deepcopy(self.base)
        try:
            load_adapter(model, folder)
        except (FileNotFoundError, ValueError, TypeError) as error:
            raise ValueError(f"{where} does not fit the base: {_one_line(error)}") from None
        return model

    def _check_same_base(self, where: str, model: nn.Module) -> None:
        """The adapted model's frozen weights must be the bank's base, name for name, bit for bit."""
        state = _frozen_state(model)
        for key, value in self._base_state.items():
            theirs = state.get(key)
            if theirs is None or theirs.shape != value.shape:
                shape = "missing" if theirs is None else f"shape {tuple(theirs.shape)}"
                raise ValueError(
                    f"{where} does not fit the base: {key!r} is {shape} in the adapted model, "
                    f"{tuple(value.shape)} in the base (an adapter for another model?)"
                )
            if not torch.equal(theirs.to(value.device), value):
                raise ValueError(
                    f"{where} was trained on another base: its frozen {key!r} differs from the bank's; "
                    "save it with save_adapter and give the bank the folder"
                )

    # ------------------------------------------------------------ the batch

    @property
    def names(self) -> tuple[str, ...]:
        """The adapters' names, in the order given."""
        return tuple(self.adapters)

    def _check(self, rows: int, adapter_names: Sequence[str], strategy: str, what: str) -> list[str]:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if isinstance(adapter_names, str) or not isinstance(adapter_names, Sequence):
            raise TypeError(
                f"adapter_names must be a list with one name per row, got {adapter_names!r}; "
                f"e.g. [{adapter_names!r}] * {rows}"
                if isinstance(adapter_names, str)
                else f"adapter_names must be a list with one name per row, got {type(adapter_names).__name__}"
            )
        if rows == 0:
            raise ValueError(f"{what} is an empty batch (0 rows); give at least one row")
        if len(adapter_names) != rows:
            raise ValueError(
                f"adapter_names has {len(adapter_names)} names for {rows} rows of {what}; "
                f"give one name per row ({BASE!r} for the base alone)"
            )
        for i, name in enumerate(adapter_names):
            if not isinstance(name, str):
                raise TypeError(f"adapter_names[{i}] must be a string, got {name!r}")
        unknown = sorted(set(adapter_names) - set(self._slots))
        if unknown:
            raise ValueError(
                f"unknown adapter name(s) {', '.join(map(repr, unknown))}; the bank holds "
                f"{', '.join(map(repr, self.adapters))} (and {BASE!r} for the base alone)"
            )
        return list(adapter_names)

    @staticmethod
    def groups(adapter_names: Sequence[str]) -> dict[str, list[int]]:
        """{adapter name: the rows that name it}, in order of first appearance."""
        rows: dict[str, list[int]] = {}
        for i, name in enumerate(adapter_names):
            rows.setdefault(name, []).append(i)
        return rows

    @torch.no_grad()
    def __call__(
        self, ids: torch.Tensor, adapter_names: Sequence[str], strategy: str = "grouped"
    ) -> torch.Tensor:
        """The base's output on ``ids`` (batch, ...), row i computed with adapter ``adapter_names[i]``
        (``"__base__"``: none); equal, up to float rounding, to each adapter loaded alone."""
        if not isinstance(ids, torch.Tensor) or ids.dim() < 1:
            raise TypeError(f"ids must be a tensor (batch, ...), got {type(ids).__name__}")
        names = self._check(ids.shape[0], adapter_names, strategy, f"ids of shape {tuple(ids.shape)}")
        was_training = self.base.training
        self.base.eval()
        try:
            if strategy == "merged":
                return self._merged(ids, names)
            with self._hooks(names, strategy):
                return self.base(ids)
        finally:
            self.base.train(was_training)

    def _merged(self, ids: torch.Tensor, names: list[str]) -> torch.Tensor:
        out = None
        for name, rows in self.groups(names).items():
            index = torch.tensor(rows, device=ids.device)
            if name == BASE:
                part = self.base(ids[index])
            else:
                weights = {
                    f"{layer}.weight": self._linears[layer].weight + f.scaling * (f.lora_B @ f.lora_A)
                    for layer, f in self.adapters[name].items()
                }
                part = functional_call(self.base, weights, (ids[index],))
            if out is None:
                out = part.new_empty((len(names), *part.shape[1:]))
            out[index] = part
        return out

    @contextmanager
    def _hooks(self, names: list[str], strategy: str) -> Iterator[None]:
        """Forward hooks on the adapted layers that add each row's LoRA term, removed on exit."""
        groups = self.groups(names)
        used = [name for name in groups if name != BASE]
        layers = sorted({layer for name in used for layer in self.adapters[name]})
        device = self.base_device
        if strategy == "grouped":
            index = {name: torch.tensor(rows, device=device) for name, rows in groups.items()}
            whole = len(groups) == 1
            add = {layer: self._grouped_term(layer, used, index, whole) for layer in layers}
        else:
            stacks = self._gather_stacks()
            slots = torch.tensor([self._slots[name] for name in names], device=device)
            add = {layer: self._gather_term(stacks[layer], slots) for layer in layers}
        handles = []
        try:
            for layer in layers:
                handles.append(
                    self._linears[layer].register_forward_hook(self._hook(layer, len(names), add[layer]))
                )
            yield
        finally:
            for handle in handles:
                handle.remove()

    @property
    def base_device(self) -> torch.device:
        return next(iter(self._linears.values())).weight.device

    @staticmethod
    def _hook(layer: str, rows: int, add):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            x = args[0]
            if x.shape[0] != rows or out.shape[0] != rows:
                raise RuntimeError(
                    f"layer {layer!r} saw an input of shape {tuple(x.shape)}, whose first dimension is not "
                    f"the batch of {rows} rows; the bank needs linear layers that see the batch first"
                )
            return add(x, out)

        return hook

    def _grouped_term(self, layer: str, used: list[str], index: dict[str, torch.Tensor], whole: bool):
        """PEFT's way: for each adapter, its rows' x -> scaling * B (A x), added to those rows."""
        parts = [(index[name], self.adapters[name][layer]) for name in used if layer in self.adapters[name]]

        def add(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            for rows, f in parts:
                if whole:  # every row uses this adapter: no copies of x
                    out += F.linear(F.linear(x, f.lora_A), f.lora_B) * f.scaling
                else:
                    out[rows] += F.linear(F.linear(x[rows], f.lora_A), f.lora_B) * f.scaling
            return out

        return add

    @staticmethod
    def _gather_term(stack: tuple[torch.Tensor, torch.Tensor, torch.Tensor], slots: torch.Tensor):
        """Punica's and S-LoRA's way: each row's A and B gathered, two batched products for all rows."""
        stack_A, stack_B, scalings = stack

        def add(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            rows = x.shape[0]
            A, B, s = (
                stack_A[slots],
                stack_B[slots],
                scalings[slots],
            )  # (rows, r, in), (rows, out, r), (rows,)
            h = torch.bmm(x.reshape(rows, -1, x.shape[-1]), A.transpose(1, 2))  # (rows, tokens, r)
            term = torch.bmm(h, B.transpose(1, 2)) * s[:, None, None]  # (rows, tokens, out)
            return out + term.view(out.shape)

        return add

    def _gather_stacks(self) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per adapted layer: A (slots, r_max, in), B (slots, out, r_max), scaling (slots,), zero-padded;
        slot 0 (the base, and adapters without this layer) is all zeros. Built once, on first use."""
        if self._stacks is None:
            stacks = {}
            layers = sorted({layer for factors in self.adapters.values() for layer in factors})
            for layer in layers:
                weight = self._linears[layer].weight
                out_features, in_features = weight.shape
                present = [(self._slots[n], f[layer]) for n, f in self.adapters.items() if layer in f]
                r_max = max(f.r for _, f in present)
                stack_A = weight.new_zeros(len(self._slots), r_max, in_features)
                stack_B = weight.new_zeros(len(self._slots), out_features, r_max)
                scalings = weight.new_zeros(len(self._slots))
                for slot, f in present:
                    stack_A[slot, : f.r] = f.lora_A
                    stack_B[slot, :, : f.r] = f.lora_B
                    scalings[slot] = f.scaling
                stacks[layer] = (stack_A, stack_B, scalings)
            self._stacks = stacks
        return self._stacks

    # ------------------------------------------------------------ generation and memory

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        adapter_names: Sequence[str],
        n: int = 200,
        temperature: float = 0.8,
        seed: int = 0,
        strategy: str = "grouped",
    ) -> list[str]:
        """For a TinyGPT base: each prompt followed by ``n`` characters sampled with its own adapter.

        Row i samples with its own generator seeded with ``seed``, as ``lora_teach.gpt.generate`` does,
        so it writes what that adapter alone writes (exactly, where the logits are bit for bit the same).
        Prompts of different lengths are batched by length (TinyGPT has no padding mask).
        """
        from lora_teach.gpt import _context, decode, encode

        context = _context(self.base)
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise TypeError(f"prompts must be a list of strings, one per row, got {type(prompts).__name__}")
        names = self._check(len(prompts), adapter_names, strategy, "prompts")
        if any(not isinstance(p, str) or not p for p in prompts):
            raise ValueError("every prompt must be a string of at least one character, e.g. '\\n'")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a whole number of characters >= 0, got {n!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        texts = [encode(p) for p in prompts]
        by_length: dict[int, list[int]] = {}
        for i, t in enumerate(texts):
            by_length.setdefault(len(t), []).append(i)
        out: list[str] = [""] * len(prompts)
        device = self.base_device
        for rows in by_length.values():
            ids = torch.stack([texts[i] for i in rows]).to(device)
            generators = [torch.Generator().manual_seed(seed) for _ in rows]
            row_names = [names[i] for i in rows]
            for _ in range(n):
                logits = self(ids[:, -context:], row_names, strategy)[:, -1].cpu()
                if temperature == 0:
                    nxt = logits.argmax(dim=-1)
                else:
                    probs = F.softmax(logits.double() / temperature, dim=-1)
                    nxt = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])
                ids = torch.cat([ids, nxt[:, None].to(device)], dim=1)
            for j, i in enumerate(rows):
                out[i] = decode(ids[j].cpu())
        return out

    def memory(self) -> BankMemory:
        """The bytes the bank holds: the base, each adapter, the gather stacks (once built)."""
        stacks = [t for stack in (self._stacks or {}).values() for t in stack]
        return BankMemory(
            base_bytes=_bytes(t for t in self._base_state.values()),
            adapter_bytes={
                name: _bytes(t for f in factors.values() for t in (f.lora_A, f.lora_B))
                for name, factors in self.adapters.items()
            },
            gather_bytes=_bytes(iter(stacks)),
        )

    def __repr__(self) -> str:
        ranks = {name: sorted({f.r for f in factors.values()}) for name, factors in self.adapters.items()}
        return f"AdapterBank({type(self.base).__name__}, adapters {ranks} (ranks))"


__all__ = ["BASE", "STRATEGIES", "AdapterBank", "BankMemory", "LayerFactors"]
