"""Which track vector makes "more like this" find the same genre: measured on GTZAN.

Reads the encoder outputs an ingested library's shards hold (``genrectl ingest`` of
gtzan-mini and gtzan-clips with the starter model), builds each candidate track vector
(``worker.inference.vectors.RECIPES``), and prints, per recipe, the share of the 10 nearest
neighbours (cosine, leave-one-out) that share the query's genre: over all tracks, excluding
neighbours by the same artist (folds.csv), and excluding neighbours from the same fold
(artist-grouped: the strictest), beside the random baseline. Then, per metal track of
gtzan-mini as the seed, how many of its first ten are metal or rock.

    GENRECTL_HOME=... python bench/similar_vectors.py --folds ../shared/data/gtzan-clips/folds.csv
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.engine import session_scope
from db.models import Track, TrackStatus
from db.registry import promoted_model
from genrectl.settings import Settings
from worker.features.sets import model_feature_sets
from worker.inference.label import read_rows
from worker.inference.vectors import RECIPES, arrays_needed, track_vectors

K = 10


def load_folds(path: Path) -> dict[tuple[str, str], tuple[str, str, int]]:
    """(folder, relative path) -> (genre, artist, fold)."""
    with path.open(newline="") as handle:
        return {
            (r["folder"], r["path"]): (r["genre"], r["artist"], int(r["fold"]))
            for r in csv.DictReader(handle)
        }


def neighbours(vectors: np.ndarray, banned: np.ndarray) -> np.ndarray:
    """The K most similar rows of each row (cosine), never itself nor a ``banned`` pair."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    sims[banned] = -np.inf
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :K]


def share(genres: np.ndarray, near: np.ndarray) -> float:
    return float(np.mean(genres[near] == genres[:, None]))


def baseline(genres: np.ndarray, banned: np.ndarray) -> float:
    """The expected share for neighbours drawn at random among the allowed ones."""
    same = genres[:, None] == genres[None, :]
    allowed = ~banned & ~np.eye(len(genres), dtype=bool)
    return float(np.mean((same & allowed).sum(1) / allowed.sum(1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=Path, required=True)
    args = parser.parse_args()
    folds = load_folds(args.folds)
    settings = Settings.from_env(dict(os.environ))
    with session_scope(settings) as session:
        model = promoted_model(session)
        assert model is not None, "no promoted model: ingest with the starter first"
        sets = model_feature_sets(model.feature_params)
        tracks = session.execute(
            select(Track.id, Track.path).where(Track.status == TrackStatus.OK).order_by(Track.id)
        ).all()
        rows = read_rows(session, [t for t, _ in tracks], sets, arrays_needed(sets))
    meta = {}
    for track_id, path in tracks:
        parts = Path(path).parts
        meta[track_id] = (parts[-3], *folds[(parts[-3], "/".join(parts[-2:]))])
    heads = ["all", "other artists", "other folds"]
    columns = [f"{part} {h}" for part in ("mini", "clips", "both") for h in heads]
    columns.insert(3, "metal seeds: metal+rock of 10")
    print("share of same genre among the 10 nearest / random, per recipe")
    print("| recipe | dim | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for recipe in RECIPES:
        built = track_vectors(sets, rows, recipe=recipe)
        ids = [t for t in built if t in meta]
        matrix = np.stack([built[t] for t in ids]).astype(np.float32)
        folder = np.array([meta[t][0] for t in ids])
        genre = np.array([meta[t][1] for t in ids])
        artist = np.array([meta[t][2] for t in ids])
        fold = np.array([meta[t][3] for t in ids])
        known = artist != "(unknown)"
        same_artist = (artist[:, None] == artist[None, :]) & known[:, None] & known[None, :]
        same_fold = fold[:, None] == fold[None, :]
        cells = []
        for name, subset in (("mini", folder == "gtzan-mini"), ("clips", folder == "gtzan-clips"),
                             ("both", np.ones(len(ids), bool))):  # fmt: skip
            sub = np.ix_(subset, subset)
            for banned in (np.zeros_like(same_fold), same_artist, same_fold):
                near = neighbours(matrix[subset], banned[sub])
                chance = baseline(genre[subset], banned[sub])
                cells.append(f"{share(genre[subset], near):.1%}/{chance:.1%}")
            if name == "mini":
                metal = np.flatnonzero(genre[subset] == "metal")
                near = neighbours(matrix[subset], np.zeros((subset.sum(),) * 2, bool))
                hits = np.isin(genre[subset][near[metal]], ["metal", "rock"]).sum(1)
                cells.append(f"{hits.mean():.1f} ({' '.join(map(str, hits))})")
        print(f"| {recipe} | {matrix.shape[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
