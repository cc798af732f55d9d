"""A tiny character-level GPT, its two corpora from Python's standard library, and the committed
checkpoint pretrained on the prose one: the transformer on which notebook 09 asks its LoRA questions.
"""

from __future__ import annotations

import hashlib
import math
import operator
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lora_teach.data import data_root

CORPORA = ("prose", "code")
SPLITS = ("train", "val")
VAL_FRACTION = 0.10  # the last 10 % of each corpus is held out
ATTENTION_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEAR = ("up_proj", "down_proj")
ALL_LINEAR = (
    ATTENTION_LINEAR + MLP_LINEAR
)  # every linear layer inside the blocks (not the output head, as in PEFT)

# sha256 of the committed files (see data/text/README.md and data/README.md)
SHA256 = {
    "text/prose.txt": "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee",
    "text/code.txt": "ecdbf5638e011fde7302bb526f8b92b6ff6040ca0e1ff0dde2a6bcca8be93575",
    "tiny_gpt_prose.pt": "8688c747aaf84a99347671e5870654a140ce322422944df186c1e9b129b8a40e",
}
CHECKPOINT = "tiny_gpt_prose.pt"
REGENERATE = {
    "text/prose.txt": "python scripts/make_text_corpora.py",
    "text/code.txt": "python scripts/make_text_corpora.py",
    "tiny_gpt_prose.pt": "lora-teach pretrain-gpt --force",
}


def gpt_data_dir() -> Path:
    """The ``data/`` folder holding ``text/`` and the checkpoint (found as ``data.data_root`` finds MNIST)."""
    return data_root("text")


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def verified_path(name: str) -> Path:
    """The path of committed file ``name`` (e.g. "text/prose.txt"), after checking its sha256.

    Raises FileNotFoundError or ValueError with a one-line message saying how to regenerate it.
    """
    path = gpt_data_dir() / name
    fix = f"regenerate it with `{REGENERATE[name]}` (or restore it with `git checkout -- data/{name}`)"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {fix}")
    expected = SHA256[name]
    if expected and sha256_of(path) != expected:
        raise ValueError(f"{path} does not match its sha256 (corrupted or changed); {fix}")
    return path


# ---------------------------------------------------------------- the corpora and the vocabulary


@cache
def _text(name: str) -> str:
    return verified_path(f"text/{name}.txt").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def vocabulary() -> str:
    """Every character of both corpora, sorted: character i has token id i."""
    return "".join(sorted(set(_text("prose")) | set(_text("code"))))


def encode(text: str) -> torch.Tensor:
    """Token ids (len(text),) of a string; every character must be in the vocabulary."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    index = {c: i for i, c in enumerate(vocabulary())}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise ValueError(f"text has characters outside the vocabulary: {unknown!r}; remove or replace them")
    return torch.tensor([index[c] for c in text], dtype=torch.long)


def decode(ids: torch.Tensor | list[int]) -> str:
    """The string of a 1-D sequence of token ids, each from 0 to len(vocabulary()) - 1."""
    chars = vocabulary()
    try:
        values = [operator.index(i) for i in ids]
    except TypeError:
        raise ValueError(
            f"ids must be a 1-D sequence of whole-number token ids, got {_describe(ids)}"
        ) from None
    bad = [i for i in values if not 0 <= i < len(chars)]
    if bad:
        raise ValueError(f"ids must be token ids from 0 to {len(chars) - 1}, got {bad[0]}")
    return "".join(chars[i] for i in values)


def _check_count(value: object, name: str, minimum: int = 1) -> None:
    """A whole number (not a bool) of at least ``minimum``, or a one-line ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, got {value!r}")


def _check_positive(value: object, name: str) -> None:
    """A finite real number above 0, or a one-line ValueError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number above 0, got {value!r}")


def load_corpus(name: str, split: str) -> torch.Tensor:
    """Token ids (N,) of corpus ``name`` ("prose" or "code"), ``split`` "train" (first 90 %) or "val"."""
    if name not in CORPORA:
        raise ValueError(f"name must be one of {CORPORA}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ids = _encoded(name)
    cut = int(len(ids) * (1 - VAL_FRACTION))
    return ids[:cut] if split == "train" else ids[cut:]


@cache
def _encoded(name: str) -> torch.Tensor:
    return encode(_text(name))


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a TinyGPT; the defaults are the committed checkpoint's (832,512 parameters)."""

    vocab_size: int = 107
    context: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128

    def __post_init__(self) -> None:
        for field in ("vocab_size", "context", "n_layer", "n_head", "d_model"):
            _check_count(getattr(self, field), field)
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head}): each head gets d_model / n_head"
            )


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees only positions <= t."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        d = config.d_model
        self.n_head = config.n_head
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        B, T, d = x.shape
        # (B, T, d) -> (B, n_head, T, d / n_head): each head attends in its own slice of d
        q, k, v = (
            p(x).view(B, T, self.n_head, d // self.n_head).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.n_head)  # (B, n_head, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(B, T, d)
        return self.o_proj(out)


class MLP(nn.Module):
    """Position-wise feed-forward layer: d_model -> 4 d_model -> d_model."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.d_model, 4 * config.d_model, bias=False)
        self.down_proj = nn.Linear(4 * config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    """Decoder-only transformer over characters: token ids (B, T) -> logits (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig | None = None):
        super().__init__()
        self.config = config = config or GPTConfig()
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        for module in self.modules():  # small initial weights, as in GPT-2
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T), T <= context -> logits (B, T, vocab_size) for the next token at each position."""
        if ids.dim() != 2 or ids.shape[1] > self.config.context:
            raise ValueError(
                f"ids must have shape (batch, T) with T <= {self.config.context}, got {tuple(ids.shape)}"
            )
        _check_ids(ids, self.config.vocab_size)
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.tok_emb(ids) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


# ---------------------------------------------------------------- training, measuring, sampling


def random_windows(ids: torch.Tensor, batch_size: int, context: int, generator: torch.Generator):
    """A batch of inputs (B, context) and their next-token targets (B, context) from random offsets."""
    starts = torch.randint(0, len(ids) - context - 1, (batch_size,), generator=generator)
    rows = starts[:, None] + torch.arange(context + 1)
    windows = ids[rows]
    return windows[:, :-1], windows[:, 1:]


def train_steps(
    model: nn.Module,
    ids: torch.Tensor,
    steps: int,
    lr: float,
    batch_size: int = 16,
    seed: int = 0,
    warmup: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train the parameters with requires_grad on next-character prediction over ``ids`` (N,), AdamW,
    linear warm-up then cosine decay to 10 % of ``lr``. Returns the loss (nats/char) of every step.

    Stops with a one-line FloatingPointError at the first loss that is not finite (lower ``lr``).
    """
    _check_count(steps, "steps")
    _check_count(batch_size, "batch_size")
    _check_count(warmup, "warmup", minimum=0)
    _check_positive(lr, "lr")
    context = _context(model)
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        raise ValueError(f"ids must be a 1-D tensor of token ids (torch.long), got {_describe(ids)}")
    if len(ids) < context + 2:
        raise ValueError(
            f"ids must hold at least context + 2 = {context + 2} tokens (one window and its targets), "
            f"got {len(ids)}; use a longer corpus"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters; call mark_only_lora_as_trainable or unfreeze it")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    bar = range(steps)
    if progress:
        from lora_teach.progress import tqdm

        bar = tqdm(bar, desc="training", unit="step")
    model.train()
    for _ in bar:
        x, y = random_windows(ids, batch_size, context, generator)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if not torch.isfinite(loss):
            model.eval()
            raise FloatingPointError(
                f"training stopped at step {len(losses) + 1}: the loss is {loss.item()} (lr = {lr:g} is "
                "probably too high); lower lr, and reload the weights, which may no longer be finite"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if progress and len(losses) % 50 == 0:
            bar.set_postfix(bits_per_char=f"{loss.item() / math.log(2):.2f}")
    model.eval()
    return losses


def _check_ids(ids: torch.Tensor, vocab_size: int) -> None:
    """Token ids: an integer tensor with every value from 0 to vocab_size - 1."""
    if ids.dtype not in (torch.long, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"ids must be integer token ids (torch.long), got {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"ids must be token ids from 0 to vocab_size - 1 = {vocab_size - 1}, got values from "
            f"{int(ids.min())} to {int(ids.max())}"
        )


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dim()}-D {value.dtype} tensor"
    return type(value).__name__


def _context(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if not isinstance(config, GPTConfig):
        raise TypeError(f"model must be a TinyGPT, got {type(model).__name__}")
    return config.context


@torch.no_grad()
def bits_per_char(model: nn.Module, ids: torch.Tensor, max_chars: int | None = 16384) -> float:
    """Mean bits per character of predicting ``ids`` (N,), in non-overlapping windows of the context.

    The first ``max_chars`` characters only (None: all), so a measurement takes about a second.
    """
    context = _context(model)
    if max_chars is not None:
        _check_count(max_chars, "max_chars")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D tensor of token ids, got {_describe(ids)}")
    if max_chars is not None:
        ids = ids[: max_chars + 1]
    n = (len(ids) - 1) // context
    if n < 1:
        raise ValueError(f"ids must hold more than context = {context} tokens, got {len(ids)}")
    x = ids[: n * context].view(n, context)
    y = ids[1 : n * context + 1].view(n, context)
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, n, 64):
        logits = model(x[i : i + 64])
        total += F.cross_entropy(logits.flatten(0, 1), y[i : i + 64].flatten(), reduction="sum").item()
    model.train(was_training)
    return total / (n * context) / math.log(2)


@torch.no_grad()
def generate(model: nn.Module, prompt: str, n: int = 200, temperature: float = 0.8, seed: int = 0) -> str:
    """The prompt followed by ``n`` sampled characters; the same seed gives the same text.

    temperature 0 picks the most likely character each time. ``n`` >= 0, ``seed`` from 0 to 2**64 - 1.
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(
            f"temperature must be a finite number >= 0 (0: the most likely), got {temperature!r}"
        )
    _check_count(n, "n", minimum=0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be a whole number from 0 to 2**64 - 1, got {seed!r}")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(
            f"prompt must be a string of at least one character, e.g. prompt='\\n', got {prompt!r}"
        )
    context = _context(model)
    vocab = model.config.vocab_size
    if vocab != len(vocabulary()):
        raise ValueError(
            f"the model's vocab_size is {vocab}, the vocabulary has {len(vocabulary())} characters: "
            "generate needs a TinyGPT(GPTConfig(vocab_size=len(vocabulary())))"
        )
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    ids = encode(prompt)[None, :]
    for _ in range(n):
        logits = model(ids[:, -context:])[0, -1]
        if temperature == 0:
            nxt = logits.argmax()[None]
        else:
            probs = F.softmax(logits.double() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        ids = torch.cat([ids, nxt[None, :]], dim=1)
    model.train(was_training)
    return decode(ids[0])


# ---------------------------------------------------------------- pretraining and the checkpoint

PRETRAIN = {"steps": 3000, "batch_size": 16, "lr": 3e-3, "warmup": 100, "seed": 0}


def pretrain(
    steps: int = PRETRAIN["steps"],
    batch_size: int = PRETRAIN["batch_size"],
    lr: float = PRETRAIN["lr"],
    seed: int = PRETRAIN["seed"],
    progress: bool = True,
) -> tuple[TinyGPT, list[float]]:
    """A TinyGPT trained from scratch on the prose training split (one thread, seeded). Returns it and its losses."""
    torch.manual_seed(seed)
    model = TinyGPT(GPTConfig(vocab_size=len(vocabulary())))
    warmup = min(PRETRAIN["warmup"], steps // 10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same bits at any machine's thread count
    try:
        losses = train_steps(
            model, load_corpus("prose", "train"), steps, lr, batch_size, seed, warmup, progress
        )
    finally:
        torch.set_num_threads(threads)
    return model, losses


def save_checkpoint(model: TinyGPT, path: Path, meta: dict) -> None:
    """Write the weights in fp16 with the config and ``meta`` (how it was made)."""
    state = {k: v.detach().to(torch.float16).clone() for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state, "meta": meta}, path)


def load_checkpoint(path: Path | str) -> TinyGPT:
    """A TinyGPT (float32) from a file written by ``save_checkpoint``.

    Anything else (an empty, truncated or foreign file, another config, non-float or non-finite
    weights) is a one-line ValueError naming the file (and the key); nothing is ever unpickled
    beyond tensors and plain containers.
    """
    path = Path(path)
    fix = "write one with `lora-teach pretrain-gpt --out FILE`"
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a TinyGPT checkpoint file; {fix}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {fix}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - EOFError, UnpicklingError, RuntimeError, ...
        raise ValueError(
            f"{path} is not a TinyGPT checkpoint (torch.load: {type(error).__name__}); {fix}"
        ) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f"{path} is not a TinyGPT checkpoint (no 'config' dict); {fix}")
    fields = set(GPTConfig.__dataclass_fields__)
    config = saved["config"]
    unknown, missing = sorted(set(config) - fields), sorted(fields - set(config))
    if (
        unknown
        or missing
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in config.values())
    ):
        raise ValueError(
            f"{path}: 'config' must give the positive whole numbers {sorted(fields)}"
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
        )
    state = saved.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a TinyGPT checkpoint (no 'state_dict' dict); {fix}")
    model = TinyGPT(GPTConfig(**config))
    expected = model.state_dict()
    for key, value in state.items():
        if key not in expected:
            raise ValueError(f"{path}: unexpected key {key!r}; the checkpoint is for another model")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"{path}: {key} must be a floating-point tensor, got {_describe(value)}")
        if value.shape != expected[key].shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(value.shape)}, the config needs {tuple(expected[key].shape)}"
            )
        if not torch.isfinite(value).all():
            raise ValueError(f"{path}: {key} holds NaN or inf; {fix}")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; {fix}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def pretrained_tiny_gpt() -> TinyGPT:
    """The committed TinyGPT pretrained on prose, after checking the checkpoint's sha256 (eval mode, float32)."""
    return load_checkpoint(verified_path(CHECKPOINT))


def write_pretrained(
    path: Path | None = None, force: bool = False, progress: bool = True, **settings
) -> tuple[Path, dict]:
    """Pretrain (``settings`` override PRETRAIN) and write the checkpoint; refuses to overwrite without force.

    Returns the path and the provenance written with it (settings, validation bits/char, sha256).
    """
    import platform
    import time

    from lora_teach.outputs import check_output_file, write_new_file

    if not isinstance(force, bool):
        raise ValueError(f"force must be True or False, got {force!r}")
    path = Path(path) if path is not None else gpt_data_dir() / CHECKPOINT
    check_output_file(path, "--out")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force (force=True) to overwrite it")
    unknown = set(settings) - set(PRETRAIN)
    if unknown:
        raise ValueError(f"unknown pretraining settings {sorted(unknown)}; known: {sorted(PRETRAIN)}")
    chosen = {**PRETRAIN, **settings}
    _check_count(chosen["steps"], "steps")
    _check_count(chosen["batch_size"], "batch_size")
    _check_positive(chosen["lr"], "lr")
    if (
        isinstance(chosen["seed"], bool)
        or not isinstance(chosen["seed"], int)
        or not 0 <= chosen["seed"] < 2**63
    ):
        raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, got {chosen['seed']!r}")
    chosen.pop("warmup")
    start = time.perf_counter()
    model, losses = pretrain(progress=progress, **chosen)
    meta = {
        **chosen,
        "seconds": round(time.perf_counter() - start, 1),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "final_train_loss_nats": round(sum(losses[-50:]) / len(losses[-50:]), 4),
        "corpora_sha256": {k: v for k, v in SHA256.items() if k.startswith("text/")},
    }
    write_new_file(path, lambda tmp: save_checkpoint(model, tmp, meta), force=force, option="--out")
    return path, meta
