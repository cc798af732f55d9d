"""DigitsNet, the 784-256-128-10 MLP of the MNIST tutorial, in two variants."""

from __future__ import annotations

import torch
from torch import nn

VARIANTS = ("corrected", "original")


class DigitsNet(nn.Module):
    """x (batch, 784) or (batch, 1, 28, 28) -> logits (batch, 10).

    ``variant="corrected"``: ReLU between the layers, raw logits out.
    ``variant="original"``: the seed's forward, three Linear layers with no
    nonlinearity between them and one ReLU on the logits; the network is a
    single linear map followed by a clamp at zero.
    Layer names (``linear1``-``linear3``, ``relu``) match the seed's.
    """

    def __init__(
        self,
        variant: str = "corrected",
        in_features: int = 28 * 28,
        hidden: tuple[int, int] = (256, 128),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.linear1 = nn.Linear(in_features, hidden[0])
        self.linear2 = nn.Linear(hidden[0], hidden[1])
        self.linear3 = nn.Linear(hidden[1], num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.variant == "original":
            return self.relu(self.linear3(self.linear2(self.linear1(x))))
        x = self.relu(self.linear1(x))
        x = self.relu(self.linear2(x))
        return self.linear3(x)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"
