"""Cross-validation folds given as a file, so that folds can be grouped by artist.

A fold file is a CSV with a header, one row per track: ``path`` (``genre/genre.00001.wav``
or any form ``normalise_track_key`` reads) and ``fold`` (an integer), optionally ``artist``
(used to group inner cross-validation too) and ``folder`` (which data folder the path is
in). ``gtzan-clips/folds.csv`` is one: artist-grouped, so no artist is in two folds, which
is the only honest way to score a model on music it never heard.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrectl.errors import ConfigError
from worker.training.datasets import Split, normalise_track_key, split_tracks


@dataclass(frozen=True)
class FoldAssignment:
    """Track key → fold, and track key → group (artist; the key itself when unknown)."""

    fold_of: dict[str, int]
    group_of: dict[str, str]
    source: str

    @property
    def folds(self) -> list[int]:
        return sorted(set(self.fold_of.values()))


def read_fold_file(path: Path) -> FoldAssignment:
    """Parse a fold file (see the module docstring). Raises ConfigError naming the file and
    the line at fault."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read fold file '{path}': {exc}") from None
    if not rows or not {"path", "fold"} <= set(rows[0]):
        raise ConfigError(f"fold file '{path}' needs a header with 'path' and 'fold' columns")
    fold_of: dict[str, int] = {}
    group_of: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        key = normalise_track_key(row["path"] or "")
        try:
            fold = int(row["fold"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"fold file '{path}' line {line}: fold={row['fold']!r} is not an integer"
            ) from None
        if fold_of.setdefault(key, fold) != fold:
            raise ConfigError(f"fold file '{path}' puts track '{key}' in two folds")
        artist = (row.get("artist") or "").strip()
        group_of[key] = artist if artist and artist != "(unknown)" else f"track:{key}"
    if len(set(fold_of.values())) < 2:
        raise ConfigError(f"fold file '{path}' names fewer than 2 folds")
    return FoldAssignment(fold_of, group_of, str(path))


def fold_splits(
    keys: Sequence[str],
    labels: Sequence[str],
    assignment: FoldAssignment,
    *,
    seed: int,
    val_fraction: float = 0.1,
) -> tuple[list[Split], list[str]]:
    """One Split per fold of the file: test = the fold's tracks, the rest split into train
    and ``val_fraction`` validation (stratified, seeded). Tracks of ``keys`` the file does
    not name are left out of every split and returned second."""
    label_of = dict(zip(keys, labels, strict=True))
    named = [k for k in keys if k in assignment.fold_of]
    unnamed = [k for k in keys if k not in assignment.fold_of]
    if not named:
        example = next(iter(assignment.fold_of))
        raise ConfigError(
            f"the fold file {assignment.source} names none of the {len(keys)} tracks (it has "
            f"keys like {example!r})"
        )
    splits = []
    for fold in sorted({assignment.fold_of[k] for k in named}):
        test = sorted(k for k in named if assignment.fold_of[k] == fold)
        rest = sorted(k for k in named if assignment.fold_of[k] != fold)
        inner = split_tracks(
            rest,
            [label_of[k] for k in rest],
            seed=seed * 1_000 + fold,
            fractions=(1.0 - val_fraction, val_fraction, 0.0),
        )
        splits.append(Split(inner.train, inner.val, test))
    return splits, unnamed


def group_kfold(
    keys: Sequence[str], groups: Sequence[str], *, k: int, seed: int
) -> list[np.ndarray]:
    """``k`` folds over ``keys`` with no group in two folds: a boolean test mask per fold.
    Groups are dealt largest first to the fold with fewest tracks so far (ties by a seeded
    order), so folds come out about equal."""
    rng = np.random.default_rng(seed)
    sizes: dict[str, int] = {}
    for group in groups:
        sizes[group] = sizes.get(group, 0) + 1
    order = sorted(sizes, key=lambda g: (-sizes[g], rng.random()))
    load = [0] * k
    fold_of_group: dict[str, int] = {}
    for group in order:
        fold = int(np.argmin(load))
        fold_of_group[group] = fold
        load[fold] += sizes[group]
    folds = np.asarray([fold_of_group[g] for g in groups])
    return [folds == f for f in range(k)]
