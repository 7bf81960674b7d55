"""Per-class thresholds, calibrated out of fold: when a genre's probability is worth saying.

The rule (``class_thresholds``), for each class ``c``, on a head's inner out-of-fold
probabilities (the answers its temperature is fitted on, so no test track of an outer fold
is ever seen): the threshold ``t`` on a grid (0.20 .. 0.90 by 0.01) that maximises the F1 of
"``c`` is among the track's genres" (``p_c >= t``) against the true genre; ties go to the
lower ``t``; a class with no inner track gets 0.5. The same numbers decide whether a
track's top genre is kept (else "unclear genre") and whether another genre is written
beside it (``tags write --max-genres``: a class other than the top one is a secondary
genre when its probability reaches its threshold), which is what an F1 on "among the
track's genres" scores.

Measured against the alternative the issue also named, a precision target per class
(``precision_thresholds``: the lowest ``t`` whose tracks with ``p_c >= t`` are of genre
``c`` at a smoothed precision of at least the target), out of fold on GTZAN's artist-grouped
folds (BENCHMARKS.md "Albums and per-class thresholds"): at the same coverage, every
per-class rule kept labels slightly less accurate than one global threshold, the precision
rule by 2-8 points (its thresholds swung from 0.2 to 0.9 between folds: a genre's inner
tracks are 20-30 of a few artists), the F1 rule by about half a point. The F1 rule is the
one kept: within a track or two of the global threshold for the unclear decision, and it
gives secondary genres a cut per class that a global threshold cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TARGET = 0.8
GRID = np.round(np.arange(0.20, 0.9001, 0.01), 2)
MIN_SAID = 5
ABSENT = 0.5  # a class no inner track has


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Thresholds ``[C]`` from probabilities ``probs`` ``[N, C]`` (calibrated, out of fold)
    and true classes ``labels`` ``[N]``: per class the F1-maximising one (module docstring)."""
    out = np.full(probs.shape[1], ABSENT)
    for c in range(probs.shape[1]):
        truth = labels == c
        if not truth.any():
            continue
        said = probs[:, c][None, :] >= GRID[:, None]  # [G, N]
        right = (said & truth[None, :]).sum(axis=1)
        f1 = 2 * right / (said.sum(axis=1) + truth.sum())
        out[c] = GRID[int(np.argmax(f1))]  # the first maximum: the lower threshold
    return out


def precision_thresholds(
    probs: np.ndarray, labels: np.ndarray, *, target: float = TARGET
) -> np.ndarray:
    """The alternative rule: per class the lowest threshold from which, at every grid point
    above it with at least ``MIN_SAID`` tracks, the tracks with ``p_c >= t`` are of genre
    ``c`` at a smoothed precision ``(right + 1) / (said + 2)`` of at least ``target``; the
    ceiling (0.9) where none is."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target={target} must be between 0 and 1")
    n_classes = probs.shape[1]
    out = np.full(n_classes, GRID[-1])
    for c in range(n_classes):
        above = probs[:, c][None, :] >= GRID[:, None]  # [G, N]
        said = above.sum(axis=1)
        right = (above & (labels == c)[None, :]).sum(axis=1)
        precision = (right + 1) / (said + 2)
        chosen = GRID[-1]
        for i in range(len(GRID) - 1, -1, -1):  # from the top down, while precision holds
            if said[i] < MIN_SAID:  # too few to judge either way
                continue
            if precision[i] < target:
                break
            chosen = GRID[i]
        out[c] = chosen
    return out


def unclear(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``[N]`` booleans: the top class's probability is below its own threshold.
    ``thresholds`` is ``[C]`` or per track ``[N, C]``."""
    top = probs.argmax(axis=1)
    per_track = np.broadcast_to(thresholds, probs.shape)
    rows = np.arange(len(probs))
    return np.asarray(probs[rows, top] < per_track[rows, top])


def coverage_scores(
    truth: np.ndarray,
    probs: np.ndarray,
    sources: Sequence[str] | np.ndarray,
    thresholds: float | np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Per source folder: the share of tracks kept (not "unclear genre") and the accuracy of
    the labels kept, at one global threshold (a float) or per-class ``thresholds`` (``[C]``,
    or ``[N, C]`` when each fold has its own)."""
    where = np.asarray(sources)
    per_class = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape)
    kept = ~unclear(probs, per_class)
    right = probs.argmax(axis=1) == truth
    out = {}
    for source in sorted(set(where.tolist())):
        mask = where == source
        sure = mask & kept
        out[source] = {
            "tracks": int(mask.sum()),
            "coverage": round(float(sure.sum() / mask.sum()), 4),
            "accuracy_kept": round(float(right[sure].mean()), 4) if sure.any() else None,
            "accuracy_all": round(float(right[mask].mean()), 4),
        }
    return out
