"""Genre heads over pretrained encoders' stored outputs, read per track.

A :class:`GenreHead` turns a track's encoder rows, averaged over the track's windows for each
feature set it reads, into genre logits from two parts:

- a **prior** from the encoders' own classes ("experts"): for each genre and each expert,
  the largest logit among the expert's classes mapped to that genre (AudioSet's "Jazz",
  Last.fm's "jazz"...; 0 where an expert has none), calibrated as ``log_softmax(sum_k
  scale_k * z_k + bias)``. With scales 1 and no bias this is the zero-shot model, which
  needs no training data;
- a **trained part**: a linear layer on standardised encoder outputs (an embedding).

They are blended in log space, ``head_weight * log_softmax(trained) + prior_weight *
prior``; either weight may be 0. Everything that decides the output (maps, scales, biases,
statistics) is in the state dict or ``config``, so a model file rebuilds exactly this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from genrectl.errors import ConfigError, ModelError
from worker.models.encoders import HEAD_ARCHS

Features = Sequence[Mapping[str, torch.Tensor]]  # per feature set: {array: [T, ...]}


class GenreHead(nn.Module):
    """Genre logits ``[T, n_classes]`` for T tracks (see the module docstring).

    ``experts``: ``(feature set position, number of the encoder's classes)`` per expert; its
    map ``prior_map_<k>`` (bool ``[n_classes, n_encoder_classes]``) says which classes stand
    for each genre. ``inputs``: ``(feature set position, array name, size)`` the trained part
    reads, concatenated in this order.
    """

    mean: torch.Tensor
    std: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor

    def __init__(
        self,
        *,
        arch: str,
        n_classes: int,
        experts: Sequence[tuple[int, int]],
        inputs: Sequence[tuple[int, str, int]],
        head_weight: float = 1.0,
        prior_weight: float = 0.0,
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
        if head_weight and not inputs:
            raise ConfigError("a trained part needs inputs")
        if prior_weight and not experts:
            raise ConfigError("a prior needs experts")
        self.arch = arch
        self.n_classes = n_classes
        self.experts = [(int(s), int(n)) for s, n in experts]
        self.inputs = [(int(s), str(name), int(size)) for s, name, size in inputs]
        self.head_weight = float(head_weight)
        self.prior_weight = float(prior_weight)
        width = max(1, sum(size for _, _, size in self.inputs))
        self.linear = nn.Linear(width, n_classes)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.register_buffer("scales", torch.tensor([1.0] + [0.0] * (len(self.experts) - 1)))
        self.register_buffer("bias", torch.zeros(n_classes))
        for k, (_, n_encoder) in enumerate(self.experts):
            self.register_buffer(
                f"prior_map_{k}", torch.zeros(n_classes, n_encoder, dtype=torch.bool)
            )

    @property
    def config(self) -> dict[str, Any]:
        """What ``from_config`` needs to rebuild this module (the weights are separate)."""
        return {
            "arch": self.arch,
            "n_classes": self.n_classes,
            "experts": [list(e) for e in self.experts],
            "inputs": [list(i) for i in self.inputs],
            "head_weight": self.head_weight,
            "prior_weight": self.prior_weight,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GenreHead:
        try:
            return cls(
                arch=config["arch"],
                n_classes=int(config["n_classes"]),
                experts=[(int(s), int(n)) for s, n in config["experts"]],
                inputs=[(int(s), str(a), int(n)) for s, a, n in config["inputs"]],
                head_weight=float(config["head_weight"]),
                prior_weight=float(config["prior_weight"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"bad genre head description {dict(config)!r}: {exc}") from None

    def prior_map(self, k: int) -> torch.Tensor:
        found = getattr(self, f"prior_map_{k}")
        assert isinstance(found, torch.Tensor)
        return found

    def needs(self, position: int) -> list[str]:
        """The arrays of the feature set at ``position`` that ``forward`` reads."""
        names = {name for s, name, _ in self.inputs if s == position and self.head_weight}
        if self.prior_weight and any(s == position for s, _ in self.experts):
            names.add("logits")
        return sorted(names)

    def set_prior(self, k: int, mapping: Sequence[Sequence[int]]) -> None:
        """``mapping[c]``: the classes of expert ``k`` that stand for genre ``c``."""
        if len(mapping) != self.n_classes:
            raise ConfigError(f"prior mapping has {len(mapping)} genres, not {self.n_classes}")
        table = self.prior_map(k)
        table.zero_()
        for genre, indices in enumerate(mapping):
            for index in indices:
                if not 0 <= index < table.shape[1]:
                    raise ConfigError(f"class {index} is out of range for expert {k}")
                table[genre, index] = True

    def set_calibration(self, *, scales: torch.Tensor, bias: torch.Tensor) -> None:
        self.scales.copy_(scales)
        self.bias.copy_(bias)

    def set_standardisation(self, *, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise the trained part's inputs with these per-feature statistics."""
        self.mean.copy_(mean)
        self.std.copy_(torch.clamp(std, min=1e-6))

    def expert_logits(self, features: Features) -> torch.Tensor:
        """``[T, K, n_classes]``: per expert and genre, the largest logit of its classes
        (0 where the expert has none for the genre)."""
        columns = []
        for k, (position, _) in enumerate(self.experts):
            logits = features[position]["logits"].float()
            table = self.prior_map(k)
            masked = logits.unsqueeze(1).masked_fill(~table, float("-inf")).amax(dim=2)
            columns.append(torch.where(table.any(dim=1), masked, torch.zeros_like(masked)))
        return torch.stack(columns, dim=1)

    def prior(self, features: Features) -> torch.Tensor:
        """The calibrated prior's log-probabilities ``[T, n_classes]``."""
        z = self.expert_logits(features)
        return torch.log_softmax((self.scales[None, :, None] * z).sum(dim=1) + self.bias, dim=1)

    def standardised(self, features: Features) -> torch.Tensor:
        """The trained part's input ``[T, width]``."""
        x = torch.cat([features[s][name].float().flatten(1) for s, name, _ in self.inputs], dim=1)
        return (x - self.mean) / self.std

    def forward(self, features: Features) -> torch.Tensor:
        """Genre scores (log-probabilities up to a constant) ``[T, n_classes]``."""
        parts = []
        if self.head_weight:
            trained = self.linear(self.standardised(features))
            parts.append(self.head_weight * torch.log_softmax(trained, dim=1))
        if self.prior_weight:
            parts.append(self.prior_weight * self.prior(features))
        return torch.stack(parts).sum(dim=0)
