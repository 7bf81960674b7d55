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
MSD_FCN = EncoderSpec(
    name="msd_fcn",
    weights="msd_fcn.pth",
    sha256="6012aa7eecf864a8081faedca56af054521e8dfb9c5c98659a3dd5d3e1e66f21",
    sample_rate=16_000,
    labels="msd_50tagList.txt",
    # logits: the 50 Last.fm tags (genres, decades, moods); emb64: the last conv block's map.
    outputs=(("logits", 50), ("emb64", 64)),
)
ENCODERS: dict[str, EncoderSpec] = {MN04.name: MN04, MSD_FCN.name: MSD_FCN}
# The registry's names for genre heads on the encoders: trained (mn04 and msd_fcn's classes
# calibrated, and a head on an embedding) or mn04's zero-shot map alone.
HEAD_ARCHS: tuple[str, ...] = ("encoder-head", "mn04-zeroshot")


def encoder_spec(name: str) -> EncoderSpec:
    """The shipped encoder called ``name``; ConfigError naming the known ones otherwise."""
    if name not in ENCODERS:
        raise ConfigError(f"encoder={name!r} is not one genrectl ships: {', '.join(ENCODERS)}")
    return ENCODERS[name]


@functools.lru_cache(maxsize=4)
@functools.lru_cache(maxsize=8)
def class_names(name: str) -> tuple[str, ...]:
    """The encoder's class names in the order of its logits: AudioSet's display names for
    mn04 (a CSV), the Last.fm tags for msd_fcn (a name per line). Read once per process."""
    path = PRETRAINED_DIR / encoder_spec(name).labels
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix != ".csv":
            return tuple(line.strip() for line in handle if line.strip())
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["index"]))
    return tuple(row["display_name"] for row in rows)
