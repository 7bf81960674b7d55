"""Genre heads over a pretrained encoder's stored outputs, one row per window.

A :class:`GenreHead` turns the arrays a shard holds for each window (``logits``: the
encoder's own classes; ``emb512``: an embedding) into genre logits from two parts:

- a **prior**: for each genre, the largest logit among the encoder classes mapped to it
  (``prior_map``; AudioSet has "Jazz", "Reggae", "Heavy metal"...). With no trained part
  this is the zero-shot model; it needs no training data and is the same on any library.
- a **trained part**: a linear layer on standardised inputs, learnt from labelled tracks.

They are blended in log space, ``head_weight * log_softmax(trained) + prior_weight *
log_softmax(prior / temperature)``; either weight may be 0. Everything that decides the
output (map, weights, statistics) is in the state dict or ``config``, so a model file
rebuilds exactly this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from genrectl.errors import ConfigError, ModelError
from worker.models.encoders import HEAD_ARCHS

# A prior logit for a genre none of whose classes fired; finite so log_softmax stays finite.
_NO_CLASS = -30.0


class GenreHead(nn.Module):
    """Genre logits ``[B, n_classes]`` from per-window encoder outputs (see module docstring).

    ``inputs``: the stored arrays the trained part reads, concatenated in this order, with
    their sizes. ``prior_map``: bool ``[n_classes, n_encoder_classes]``, which encoder
    classes stand for each genre (a genre with none gets no prior: its prior logit is low).
    """

    mean: torch.Tensor
    std: torch.Tensor
    prior_map: torch.Tensor

    def __init__(
        self,
        *,
        arch: str,
        n_classes: int,
        inputs: Sequence[tuple[str, int]],
        n_encoder_classes: int,
        head_weight: float = 1.0,
        prior_weight: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if arch not in HEAD_ARCHS:
            raise ConfigError(f"arch={arch!r} must be one of {', '.join(HEAD_ARCHS)}")
        if n_classes < 2:
            raise ConfigError(f"n_classes={n_classes} must be at least 2")
        if head_weight < 0 or prior_weight < 0 or head_weight + prior_weight == 0:
            raise ConfigError(
                f"head_weight={head_weight} and prior_weight={prior_weight} must be >= 0 "
                "and not both 0"
            )
        if not temperature > 0:
            raise ConfigError(f"temperature={temperature} must be positive")
        self.arch = arch
        self.n_classes = n_classes
        self.inputs = [(str(name), int(size)) for name, size in inputs]
        self.n_encoder_classes = n_encoder_classes
        self.head_weight = float(head_weight)
        self.prior_weight = float(prior_weight)
        self.temperature = float(temperature)
        width = sum(size for _, size in self.inputs)
        self.linear = nn.Linear(max(width, 1), n_classes)
        self.register_buffer("mean", torch.zeros(max(width, 1)))
        self.register_buffer("std", torch.ones(max(width, 1)))
        self.register_buffer(
            "prior_map", torch.zeros(n_classes, n_encoder_classes, dtype=torch.bool)
        )

    @property
    def config(self) -> dict[str, Any]:
        """What ``from_config`` needs to rebuild this module (the weights are separate)."""
        return {
            "arch": self.arch,
            "n_classes": self.n_classes,
            "inputs": [list(pair) for pair in self.inputs],
            "n_encoder_classes": self.n_encoder_classes,
            "head_weight": self.head_weight,
            "prior_weight": self.prior_weight,
            "temperature": self.temperature,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GenreHead:
        try:
            return cls(
                arch=config["arch"],
                n_classes=int(config["n_classes"]),
                inputs=[(str(n), int(s)) for n, s in config["inputs"]],
                n_encoder_classes=int(config["n_encoder_classes"]),
                head_weight=float(config["head_weight"]),
                prior_weight=float(config["prior_weight"]),
                temperature=float(config["temperature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"bad genre head description {dict(config)!r}: {exc}") from None

    @property
    def needs(self) -> list[str]:
        """The stored arrays ``forward`` reads."""
        names = [name for name, _ in self.inputs] if self.head_weight else []
        return sorted({*names, *(["logits"] if self.prior_weight else [])})

    def set_prior(self, mapping: Sequence[Sequence[int]]) -> None:
        """``mapping[c]``: the encoder class indices that stand for genre ``c``."""
        if len(mapping) != self.n_classes:
            raise ConfigError(f"prior mapping has {len(mapping)} genres, not {self.n_classes}")
        self.prior_map.zero_()
        for genre, indices in enumerate(mapping):
            for index in indices:
                if not 0 <= index < self.n_encoder_classes:
                    raise ConfigError(f"encoder class {index} is out of range")
                self.prior_map[genre, index] = True

    def set_standardisation(self, *, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise the trained part's inputs with these per-feature statistics."""
        self.mean.copy_(mean)
        self.std.copy_(torch.clamp(std, min=1e-6))

    def features(self, arrays: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The trained part's input ``[B, width]``: the named arrays, standardised."""
        x = torch.cat([arrays[name].float() for name, _ in self.inputs], dim=1)
        return (x - self.mean) / self.std

    def prior_logits(self, encoder_logits: torch.Tensor) -> torch.Tensor:
        """``[B, n_classes]``: per genre, the largest logit of its encoder classes."""
        masked = encoder_logits.float().unsqueeze(1).masked_fill(~self.prior_map, _NO_CLASS)
        return masked.amax(dim=2)

    def forward(self, arrays: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Genre logits (log-probabilities up to a constant) ``[B, n_classes]``."""
        parts = []
        if self.head_weight:
            trained = self.linear(self.features(arrays))
            parts.append(self.head_weight * torch.log_softmax(trained, dim=1))
        if self.prior_weight:
            prior = self.prior_logits(arrays["logits"]) / self.temperature
            parts.append(self.prior_weight * torch.log_softmax(prior, dim=1))
        return torch.stack(parts).sum(dim=0)
