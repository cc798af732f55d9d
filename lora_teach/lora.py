"""The two LoRA layers: a weight parametrization and a wrapper around nn.Linear, with DoRA and PiSSA.

Conventions (loralib and PEFT): ``weight`` is (out, in), ``lora_A`` is (r, in),
``lora_B`` is (out, r), delta W = ``lora_B @ lora_A`` times ``scaling``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lora_teach.quant import MERGE_REFUSAL, Linear4bit

# What ``init_lora_weights`` accepts (PEFT's name): True = kaiming-uniform (PEFT's and loralib's
# default), "gaussian" = N(0, 1/r) (PEFT's), "normal" = N(0, 1) (the tutorial's choice),
# "pissa" = the top-r singular directions of the weight (PiSSA), the rest left in the frozen weight.
INITS = (True, "gaussian", "normal", "pissa")


def check_init(init_lora_weights: bool | str) -> None:
    """Raise a ValueError unless ``init_lora_weights`` is one of INITS (True is not 1)."""
    if not any(
        init_lora_weights is option or (isinstance(option, str) and init_lora_weights == option)
        for option in INITS
    ):
        raise ValueError(
            f'init_lora_weights must be True (kaiming-uniform, PEFT\'s default), "gaussian" (N(0, 1/r)), '
            f'"normal" (N(0, 1), the tutorial\'s) or "pissa", got {init_lora_weights!r}'
        )


def check_bool(value: object, name: str) -> None:
    """Raise a ValueError unless ``value`` is True or False (a NumPy or tensor bool counts too;
    the string "False" is refused, since it would count as true)."""
    if isinstance(value, bool):
        return
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.numel() == 1:
        return
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return
    raise ValueError(f"{name} must be True or False, got {value!r}")


def check_alpha(lora_alpha: float) -> None:
    """Raise a ValueError unless ``lora_alpha`` is a finite number > 0 (0 would switch LoRA off)."""
    if (
        isinstance(lora_alpha, bool)
        or not isinstance(lora_alpha, (int, float))
        or not math.isfinite(lora_alpha)
        or lora_alpha <= 0
    ):
        raise ValueError(
            f"lora_alpha must be a finite number > 0 (PEFT's default is 8; 0 would make the adapter "
            f"do nothing), got {lora_alpha!r}"
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


def pissa_factors(
    weight: torch.Tensor, r: int, scaling: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PiSSA: W (out, in) = U S Vh; B = U_r sqrt(S_r/scaling) (out, r), A = sqrt(S_r/scaling) Vh_r (r, in).

    Returns (A, B, residual) with residual = W - scaling * B @ A, so residual + scaling * B @ A = W.
    """
    w = weight.detach().float()
    U, S, Vh = torch.linalg.svd(w, full_matrices=False)
    root = torch.sqrt(S[:r] / scaling)
    lora_A = root[:, None] * Vh[:r]
    lora_B = U[:, :r] * root[None, :]
    residual = w - scaling * (lora_B @ lora_A)
    return lora_A.to(weight.dtype), lora_B.to(weight.dtype), residual.to(weight.dtype)


def check_dora_norm(norm: torch.Tensor, name: str) -> None:
    """Refuse DoRA on a weight with an all-zero row: m / ||W|| would be NaN (PEFT gives NaN outputs)."""
    zero = (norm == 0).nonzero().flatten()
    if len(zero):
        raise ValueError(
            f"{name}: weight row {int(zero[0])} is all zeros, so DoRA's m / ||W + delta W|| is 0/0 (NaN "
            "outputs); use LoRA without use_dora for this layer, or leave it out of target_modules"
        )


def dora_weight_norm(weight: torch.Tensor, delta_weight: torch.Tensor) -> torch.Tensor:
    """DoRA's ||W + delta W|| per output row: (out, in), (out, in) -> (out,), detached from the graph."""
    return torch.linalg.norm((weight + delta_weight).detach(), dim=1)


class LoRAFactors(nn.Module):
    """The trainable pair ``lora_A`` (r, in) and ``lora_B`` (out, r), and their scaling.

    Shared by both LoRA layers. With ``use_dora`` also ``lora_magnitude_vector`` (out,).
    A fresh adapter never changes the model's output: ``lora_B`` starts at zero, except
    for PiSSA, whose ``init_from_base`` moves the top-r part of the weight into B @ A.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        r: int,
        lora_alpha: float = 8.0,
        init_lora_weights: bool | str = True,
        use_rslora: bool = False,
        use_dora: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_bool(use_rslora, "use_rslora")
        check_bool(use_dora, "use_dora")
        check_rank(r, in_features, out_features)
        check_alpha(lora_alpha)
        check_init(init_lora_weights)
        self.in_features, self.out_features, self.r = in_features, out_features, r
        self.lora_alpha, self.use_rslora, self.use_dora = lora_alpha, bool(use_rslora), bool(use_dora)
        self.init_lora_weights = init_lora_weights
        self.scaling = lora_scaling(r, lora_alpha, use_rslora)
        self.enabled = True
        factory = {"device": device, "dtype": dtype}
        self.lora_A = nn.Parameter(torch.empty(r, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, **factory))
        if self.use_dora:  # set from the base weight by init_from_base
            self.lora_magnitude_vector = nn.Parameter(torch.ones(out_features, **factory))
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A: kaiming-uniform a=sqrt(5) (True), N(0, 1/r) ("gaussian") or N(0, 1) ("normal"); B = 0.

        ("pissa" starts like True until ``init_from_base`` sees the weight.)
        """
        if self.init_lora_weights == "normal":
            nn.init.normal_(self.lora_A, mean=0.0, std=1.0)
        elif self.init_lora_weights == "gaussian":
            nn.init.normal_(self.lora_A, mean=0.0, std=1.0 / self.r)
        else:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    @torch.no_grad()
    def init_from_base(self, weight: torch.Tensor) -> torch.Tensor:
        """The inits that need the base weight W (out, in); returns the frozen weight to use.

        PiSSA: A and B from W's top-r singular triplets, returns the residual (else W itself).
        DoRA: ``lora_magnitude_vector`` = ||W + scaling * B @ A|| per row, as PEFT does.
        """
        if self.init_lora_weights == "pissa":
            lora_A, lora_B, weight = pissa_factors(weight, self.r, self.scaling)
            self.lora_A.copy_(lora_A)
            self.lora_B.copy_(lora_B)
        if self.use_dora:
            norm = dora_weight_norm(weight, self.delta_weight)
            check_dora_norm(norm, "base_layer")
            self.lora_magnitude_vector.copy_(norm)
        return weight

    @property
    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A: (out, r) @ (r, in) -> (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def adapted_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """W (out, in) -> W + delta W, or with DoRA m * (W + delta W) / ||W + delta W||_row (norm detached)."""
        combined = weight + self.delta_weight
        if not self.use_dora:
            return combined
        return (self.lora_magnitude_vector / dora_weight_norm(weight, self.delta_weight))[:, None] * combined

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"lora_alpha={self.lora_alpha}, scaling={self.scaling:g}, use_dora={self.use_dora}, "
            f"enabled={self.enabled}"
        )


class LoRAParametrization(LoRAFactors):
    """LoRA as a ``torch.nn.utils.parametrize`` function of the weight.

    ``forward(W)``: W (out, in) -> W + scaling * B @ A (out, in) while enabled (with DoRA,
    rescaled per row), W while not. With PiSSA or DoRA call ``init_from_base`` before registering
    (``add_lora`` does).
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        return self.adapted_weight(weight)


class LinearWithLoRA(LoRAFactors):
    """An ``nn.Linear`` (kept as ``base_layer``) plus a low-rank update beside it.

    ``forward(x)``: x (..., in) -> base_layer(x) + scaling * lora_dropout(x) @ A.T @ B.T (..., out),
    without ever forming delta W (DoRA forms it once per call, for the row norms).
    ``merge()`` adds delta W into the base weight (then the forward is the plain base layer);
    ``unmerge()`` subtracts exactly what ``merge()`` added.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        r: int,
        lora_alpha: float = 8.0,
        init_lora_weights: bool | str = True,
        use_rslora: bool = False,
        lora_dropout: float = 0.0,
        use_dora: bool = False,
    ) -> None:
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"base_layer must be an nn.Linear, got {type(base_layer).__name__}")
        check_materialized(base_layer, "base_layer")
        check_dropout(lora_dropout)
        weight = base_layer.weight
        super().__init__(
            base_layer.in_features,
            base_layer.out_features,
            r,
            lora_alpha,
            init_lora_weights,
            use_rslora,
            use_dora,
            device=weight.device,
            dtype=weight.dtype,
        )
        self.base_layer = base_layer
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.merged = False
        self._merged_delta: torch.Tensor | None = None
        with torch.no_grad():
            residual = self.init_from_base(weight)
            if residual is not weight:
                weight.copy_(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged or not self.enabled:
            return out
        dropped = self.lora_dropout(x)
        lora_out = self.scaling * ((dropped @ self.lora_A.T) @ self.lora_B.T)
        if not self.use_dora:
            return out + lora_out
        # DoRA as PEFT computes it: out + (m/||V|| - 1) * W x' + m/||V|| * lora(x'), x' = dropout(x)
        weight, bias = self.base_layer.weight, self.base_layer.bias
        ratio = self.lora_magnitude_vector / dora_weight_norm(weight, self.delta_weight)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            base = out if bias is None else out - bias
        else:
            base = dropped @ weight.T
        return out + (ratio - 1) * base + ratio * lora_out

    @torch.no_grad()
    def merge(self) -> None:
        """Add delta W (DoRA: the change to m * V / ||V||) into ``base_layer.weight``.

        Refuses, leaving the weight as it was, when the merged weight would not be finite.
        """
        if self.merged:
            raise RuntimeError("this LinearWithLoRA is already merged; call unmerge() first")
        if isinstance(self.base_layer, Linear4bit):
            raise RuntimeError(MERGE_REFUSAL)
        if not self.enabled:
            raise RuntimeError("this adapter is disabled; enable it before merging")
        weight = self.base_layer.weight
        delta = self.adapted_weight(weight) - weight if self.use_dora else self.delta_weight
        if not torch.isfinite(weight + delta).all():
            raise ValueError(
                "merging would put NaN or inf into the base weight (the adapter's factors are not "
                "finite); the base weight is unchanged"
            )
        weight += delta
        self._merged_delta = delta
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract exactly what ``merge()`` added (equal to the old weight up to float rounding)."""
        if not self.merged or self._merged_delta is None:
            raise RuntimeError("this LinearWithLoRA is not merged; there is nothing to unmerge")
        self.base_layer.weight -= self._merged_delta
        self._merged_delta = None
        self.merged = False

    def extra_repr(self) -> str:
        return super().extra_repr() + f", merged={self.merged}"


def check_materialized(layer: nn.Module, name: str) -> None:
    """Refuse a layer whose weight has no values yet: a LazyLinear before its first forward pass,
    or a weight on the meta device."""
    weight = getattr(layer, "weight", None)
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"{name} is a {type(layer).__name__} whose shape is not known yet; run one forward pass "
            "(model(x)) before adding LoRA"
        )
    if isinstance(weight, torch.Tensor) and weight.is_meta:
        raise ValueError(
            f"{name}'s weight is on the meta device (no values yet); load the weights first "
            "(model.to_empty(device='cpu') then load_state_dict)"
        )


def check_dropout(lora_dropout: float) -> None:
    """Raise a ValueError unless 0 <= ``lora_dropout`` < 1."""
    if isinstance(lora_dropout, bool) or not isinstance(lora_dropout, (int, float)):
        raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}")
    if not 0.0 <= lora_dropout < 1.0:
        raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}")
