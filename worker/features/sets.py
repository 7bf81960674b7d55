"""Feature sets: the reference mel (``FeatureParams``) or an encoder's outputs
(``EncoderParams``). A model declares the one it needs; a shard holds one; featurizing
computes every set a batch asks for from one decode of the track."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.features.encoder import EncoderParams
from worker.features.mel import FeatureParams

FeatureSet = FeatureParams | EncoderParams


def feature_set_from_dict(data: Mapping[str, Any]) -> FeatureSet:
    """The feature set a model file, a shard or a batch describes. Dicts without ``kind``
    are the reference mel's (as every model and shard before encoders had)."""
    kind = data.get("kind", FeatureParams.kind)
    if kind == EncoderParams.kind:
        return EncoderParams.from_dict(data)
    if kind != FeatureParams.kind:
        raise ValueError(f"unknown feature kind {kind!r}: mel or encoder")
    return FeatureParams.from_dict({k: v for k, v in data.items() if k != "kind"})
