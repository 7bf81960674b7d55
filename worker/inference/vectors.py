"""Track vectors for "more like this": one vector per track from its encoder windows.

Written when a track is labelled (``worker.inference.label``), beside its prediction, so
that ``playlist create --like`` compares tracks from the database and never opens a shard
(``db.similar``). The recipe was chosen on GTZAN by the share of same-genre tracks among
the ten nearest neighbours, by artists other than the query's (BENCHMARKS.md, "More like
this"): the mean over a track's windows of each encoder's embedding, each L2-normalised,
concatenated; mn04's 512 dimensions first projected onto 128 by a fixed random matrix
(cosines kept within a point of same-genre share, and a 192-d float16 vector is a third of
the bytes to load at every ``--like`` evaluation).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete
from sqlalchemy.orm import Session

from db.models import TrackVector
from db.upsert import insert_ignore
from worker.features.encoder import EncoderParams
from worker.features.sets import FeatureSet
from worker.inference.predict import Rows

# recipe -> the parts concatenated, each (encoder, array, how): "mean" of the windows'
# embedding, "project128" that mean projected onto 128 dimensions (``projection``), or
# "prob", the mean of the windows' sigmoid class probabilities.
RECIPES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "fcn64": (("msd_fcn", "emb64", "mean"),),
    "mn512": (("mn04", "emb512", "mean"),),
    "fcn64+mn512": (("msd_fcn", "emb64", "mean"), ("mn04", "emb512", "mean")),
    "fcn64+mn128": (("msd_fcn", "emb64", "mean"), ("mn04", "emb512", "project128")),
    "fcn-tags": (("msd_fcn", "logits", "prob"),),
    "mn-classes": (("mn04", "logits", "prob"),),
    "fcn-tags+mn-classes": (("msd_fcn", "logits", "prob"), ("mn04", "logits", "prob")),
}
RECIPE = "fcn64+mn128"  # the one stored (chosen by measurement, see the module docstring)
RECIPE_VERSION = 1  # bump when the code computing a recipe changes
PROJECTED = 128
PROJECTION_SEED = 0


@functools.lru_cache(maxsize=1)
def projection(size: int = 512) -> np.ndarray:
    """The fixed random projection ``[size, PROJECTED]`` of "project128" (Gaussian, seeded:
    its checksum is part of ``vector_key``, so that vectors made with another never mix)."""
    rng = np.random.default_rng(PROJECTION_SEED)
    return (rng.standard_normal((size, PROJECTED)) / np.sqrt(PROJECTED)).astype(np.float32)


def _encoder_sets(sets: Sequence[FeatureSet]) -> dict[str, int]:
    return {s.encoder: i for i, s in enumerate(sets) if isinstance(s, EncoderParams)}


def usable(sets: Sequence[FeatureSet], recipe: str = RECIPE) -> bool:
    """Whether ``sets`` (a model's feature sets) hold every array ``recipe`` reads."""
    found = _encoder_sets(sets)
    return all(
        encoder in found and array in sets[found[encoder]].shapes
        for encoder, array, _ in RECIPES[recipe]
    )


def arrays_needed(sets: Sequence[FeatureSet], recipe: str | None = None) -> list[list[str]]:
    """Per feature set, the stored arrays ``recipe`` reads (every recipe's when None)."""
    wanted = RECIPES.values() if recipe is None else [RECIPES[recipe]]
    out: list[set[str]] = [set() for _ in sets]
    found = _encoder_sets(sets)
    for parts in wanted:
        for encoder, array, _ in parts:
            if encoder in found and array in sets[found[encoder]].shapes:
                out[found[encoder]].add(array)
    return [sorted(names) for names in out]


def with_vector_arrays(
    sets: Sequence[FeatureSet], needed: Sequence[Sequence[str]]
) -> list[list[str]]:
    """``needed`` (per feature set, the arrays labelling reads) with those of ``RECIPE``."""
    extra = arrays_needed(sets, RECIPE)
    return [sorted(set(a) | set(b)) for a, b in zip(needed, extra, strict=True)]


def vector_dim(sets: Sequence[FeatureSet], recipe: str = RECIPE) -> int:
    """How many values ``recipe``'s vectors have, from ``sets`` (a model's feature sets)."""
    found = _encoder_sets(sets)
    return sum(
        PROJECTED if how.startswith("project") else sets[found[encoder]].shapes[array][0]
        for encoder, array, how in RECIPES[recipe]
    )


def vector_key(sets: Sequence[FeatureSet], recipe: str = RECIPE) -> str:
    """``recipe/version:hash``: vectors compare only under one key (same recipe, same
    encoder parameters)."""
    found = _encoder_sets(sets)
    versions = "+".join(sets[found[e]].version for e, _, _ in RECIPES[recipe])
    if any(how.startswith("project") for _, _, how in RECIPES[recipe]):
        versions += ":" + hashlib.sha256(projection().tobytes()).hexdigest()
    digest = hashlib.sha256(f"{RECIPE_VERSION}:{versions}".encode()).hexdigest()[:12]
    return f"{recipe}:{digest}"


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def track_vectors(
    sets: Sequence[FeatureSet], rows: Sequence[Rows], *, recipe: str = RECIPE
) -> dict[int, np.ndarray]:
    """``{track id: float32 [dim]}`` of the tracks in ``rows`` (per feature set of
    ``sets``), unit length; ``{}`` when ``sets`` lack what ``recipe`` reads."""
    if not usable(sets, recipe) or not len(rows[0]):
        return {}
    found = _encoder_sets(sets)
    tracks = np.unique(rows[found[RECIPES[recipe][0][0]]].owner)
    parts = []
    for encoder, array, how in RECIPES[recipe]:
        part = rows[found[encoder]]
        if array not in part.arrays:
            return {}
        values = part.arrays[array].astype(np.float64)
        if how == "prob":
            values = 1 / (1 + np.exp(-values))
        means = Rows({"v": values}, part.owner).means(tracks, ["v"])["v"].astype(np.float64)
        if how.startswith("project"):
            means = _unit(means) @ projection(means.shape[1])
        parts.append(_unit(means))
    joined = _unit(np.concatenate(parts, axis=1)).astype(np.float32)
    return {int(t): joined[i] for i, t in enumerate(tracks.tolist())}


def store_track_vectors(
    session: Session, sets: Sequence[FeatureSet], vectors: dict[int, np.ndarray]
) -> None:
    """Replace the stored vectors of these tracks (float16 bytes, under ``vector_key``)."""
    if not vectors:
        return
    key = vector_key(sets)
    session.execute(
        delete(TrackVector).where(TrackVector.key == key, TrackVector.track_id.in_(list(vectors)))
    )
    rows = [
        {"track_id": t, "key": key, "dim": len(v), "vector": v.astype("<f2").tobytes()}
        for t, v in vectors.items()
    ]
    insert_ignore(session, TrackVector, rows, index_elements=["key", "track_id"])
