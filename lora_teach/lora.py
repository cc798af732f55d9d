"""The two LoRA layers: a weight parametrization and a wrapper around nn.Linear.

Conventions (loralib and PEFT): ``weight`` is (out, in), ``lora_A`` is (r, in),
``lora_B`` is (out, r), delta W = ``lora_B @ lora_A`` times ``scaling``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# What ``init_lora_weights`` accepts (PEFT's name): True = kaiming-uniform (PEFT's and loralib's
# default), "gaussian" = N(0, 1/r) (PEFT's), "normal" = N(0, 1) (the tutorial's choice).
INITS = (True, "gaussian", "normal")


def check_init(init_lora_weights: bool | str) -> None:
    """Raise a ValueError unless ``init_lora_weights`` is one of INITS (True is not 1)."""
    if not any(
        init_lora_weights is option or (isinstance(option, str) and init_lora_weights == option)
        for option in INITS
    ):
        raise ValueError(
            f'init_lora_weights must be True (kaiming-uniform, PEFT\'s default), "gaussian" (N(0, 1/r)) '
            f'or "normal" (N(0, 1), the tutorial\'s), got {init_lora_weights!r}'
        )


def lora_scaling(r: int, lora_alpha: float, use_rslora: bool = False) -> float:
    """alpha / r (the paper), or alpha / sqrt(r) with ``use_rslora`` (rsLoRA)."""
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


def check_rank(r: int, in_features: int, out_features: int) -> None:
    """Raise a ValueError unless 1 <= r <= min(in_features, out_features)."""
    limit = min(in_features, out_features)
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= limit:
        raise ValueError(
            f"r must be an integer between 1 and min(in_features, out_features) = {limit}, got {r!r}"
        )


class LoRAFactors(nn.Module):
    """The trainable pair ``lora_A`` (r, in) and ``lora_B`` (out, r), and their scaling.

    Shared by both LoRA layers. ``lora_B`` starts at zero in every init mode,
    so a fresh adapter never changes the model's output.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        r: int,
        lora_alpha: float = 8.0,
        init_lora_weights: bool | str = True,
        use_rslora: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_rank(r, in_features, out_features)
        check_init(init_lora_weights)
        self.in_features, self.out_features, self.r = in_features, out_features, r
        self.lora_alpha, self.use_rslora = lora_alpha, use_rslora
        self.init_lora_weights = init_lora_weights
        self.scaling = lora_scaling(r, lora_alpha, use_rslora)
        self.enabled = True
        factory = {"device": device, "dtype": dtype}
        self.lora_A = nn.Parameter(torch.empty(r, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, **factory))
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A: kaiming-uniform a=sqrt(5) (True), N(0, 1/r) ("gaussian") or N(0, 1) ("normal"); B = 0."""
        if self.init_lora_weights == "normal":
            nn.init.normal_(self.lora_A, mean=0.0, std=1.0)
        elif self.init_lora_weights == "gaussian":
            nn.init.normal_(self.lora_A, mean=0.0, std=1.0 / self.r)
        else:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    @property
    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A: (out, r) @ (r, in) -> (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"lora_alpha={self.lora_alpha}, scaling={self.scaling:g}, enabled={self.enabled}"
        )


class LoRAParametrization(LoRAFactors):
    """LoRA as a ``torch.nn.utils.parametrize`` function of the weight.

    ``forward(W)``: W (out, in) -> W + scaling * B @ A (out, in) while enabled, W while not.
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        return weight + self.delta_weight


class LinearWithLoRA(LoRAFactors):
    """An ``nn.Linear`` (kept as ``base_layer``) plus a low-rank update beside it.

    ``forward(x)``: x (..., in) -> base_layer(x) + scaling * lora_dropout(x) @ A.T @ B.T (..., out),
    without ever forming delta W. ``merge()`` adds delta W into the base weight
    (then the forward is the plain base layer); ``unmerge()`` takes it out again.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        r: int,
        lora_alpha: float = 8.0,
        init_lora_weights: bool | str = True,
        use_rslora: bool = False,
        lora_dropout: float = 0.0,
    ) -> None:
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"base_layer must be an nn.Linear, got {type(base_layer).__name__}")
        if not 0.0 <= lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}")
        weight = base_layer.weight
        super().__init__(
            base_layer.in_features,
            base_layer.out_features,
            r,
            lora_alpha,
            init_lora_weights,
            use_rslora,
            device=weight.device,
            dtype=weight.dtype,
        )
        self.base_layer = base_layer
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged or not self.enabled:
            return out
        return out + self.scaling * ((self.lora_dropout(x) @ self.lora_A.T) @ self.lora_B.T)

    @torch.no_grad()
    def merge(self) -> None:
        """Add delta W into ``base_layer.weight``; the forward becomes one matmul."""
        if self.merged:
            raise RuntimeError("this LinearWithLoRA is already merged; call unmerge() first")
        if not self.enabled:
            raise RuntimeError("this adapter is disabled; enable it before merging")
        self.base_layer.weight += self.delta_weight
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract delta W from ``base_layer.weight`` again (equal up to float rounding)."""
        if not self.merged:
            raise RuntimeError("this LinearWithLoRA is not merged; there is nothing to unmerge")
        self.base_layer.weight -= self.delta_weight
        self.merged = False

    def extra_repr(self) -> str:
        return super().extra_repr() + f", merged={self.merged}"
