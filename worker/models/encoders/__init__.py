"""Pretrained audio encoders: which ones genrectl ships, and where their weights and class
names are. Light on purpose (no torch): feature parameters and the CLI read it."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import genrectl
from genrectl.errors import ConfigError

PRETRAINED_DIR = Path(genrectl.__file__).resolve().parent / "models" / "pretrained"


@dataclass(frozen=True)
class EncoderSpec:
    """A shipped encoder: its weights file (under PRETRAINED_DIR) and their sha256, the rate
    in Hz its front end takes, its classes (names in ``labels``) and its outputs per window
    with their sizes."""

    name: str
    weights: str
    sha256: str
    sample_rate: int
    labels: str
    outputs: tuple[tuple[str, int], ...]

    @property
    def weights_path(self) -> Path:
        return PRETRAINED_DIR / self.weights

    @property
    def output_sizes(self) -> dict[str, int]:
        return dict(self.outputs)


MN04 = EncoderSpec(
    name="mn04",
    weights="mn04_as_mAP_432.pt",
    sha256="899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c",
    sample_rate=32_000,
    labels="audioset_class_labels_indices.csv",
    # logits: the 527 AudioSet classes; emb384: global average pool of the last feature
    # map; emb512: the first classifier layer after hardswish.
    outputs=(("logits", 527), ("emb384", 384), ("emb512", 512)),
)
ENCODERS: dict[str, EncoderSpec] = {MN04.name: MN04}
# The registry's names for genre heads on an encoder: trained (with the zero-shot prior) or
# the zero-shot map alone.
HEAD_ARCHS: tuple[str, ...] = ("mn04-head", "mn04-zeroshot")


def encoder_spec(name: str) -> EncoderSpec:
    """The shipped encoder called ``name``; ConfigError naming the known ones otherwise."""
    if name not in ENCODERS:
        raise ConfigError(f"encoder={name!r} is not one genrectl ships: {', '.join(ENCODERS)}")
    return ENCODERS[name]


@functools.lru_cache(maxsize=4)
def class_names(name: str) -> tuple[str, ...]:
    """The encoder's class names in the order of its logits (AudioSet's display names)."""
    path = PRETRAINED_DIR / encoder_spec(name).labels
    with path.open(newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["index"]))
    return tuple(row["display_name"] for row in rows)
