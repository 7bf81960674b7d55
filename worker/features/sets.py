"""Feature sets: the reference mel (``FeatureParams``) or an encoder's outputs
(``EncoderParams``). A shard holds one; a model declares the ones it reads (a genre head may
read two encoders'); featurizing computes every set a batch asks for from one decode.

A model's ``feature_params`` is one set's dict, or ``{"kind": "sets", "sets": [...]}`` for
several; its ``feature_version`` is the one set's version, or a hash of theirs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from worker.features.encoder import EncoderParams
from worker.features.mel import FeatureParams

FeatureSet = FeatureParams | EncoderParams
SETS = "sets"


def feature_set_from_dict(data: Mapping[str, Any]) -> FeatureSet:
    """The feature set a shard, a batch or a one-set model describes. Dicts without
    ``kind`` are the reference mel's (as every model and shard before encoders had)."""
    kind = data.get("kind", FeatureParams.kind)
    if kind == EncoderParams.kind:
        return EncoderParams.from_dict(data)
    if kind != FeatureParams.kind:
        raise ValueError(f"unknown feature kind {kind!r}: mel or encoder")
    return FeatureParams.from_dict({k: v for k, v in data.items() if k != "kind"})


def model_feature_sets(data: Mapping[str, Any]) -> list[FeatureSet]:
    """The feature sets a model's ``feature_params`` declares, in the model's order."""
    if data.get("kind") == SETS:
        return [feature_set_from_dict(d) for d in data[SETS]]
    return [feature_set_from_dict(data)]


def model_feature_params(sets: Sequence[FeatureSet]) -> dict[str, Any]:
    """``feature_params`` for a model reading ``sets`` (``model_feature_sets`` reverses it)."""
    if len(sets) == 1:
        return sets[0].to_dict()
    return {"kind": SETS, SETS: [s.to_dict() for s in sets]}


def model_feature_version(sets: Sequence[FeatureSet]) -> str:
    """The model-level version: the one set's, or 12 hex characters over all of theirs."""
    if len(sets) == 1:
        return sets[0].version
    joined = "+".join(s.version for s in sets)
    return hashlib.sha256(joined.encode()).hexdigest()[:12]
