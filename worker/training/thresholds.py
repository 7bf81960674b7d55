"""Per-class thresholds, calibrated out of fold: when a genre's probability is worth saying.

The rule, for each class ``c``, on a head's inner out-of-fold probabilities (the same
answers its temperature is fitted on, so no test track of an outer fold is ever seen):
the **lowest** threshold ``t`` on a grid (0.20 .. 0.90 by 0.01) such that, at ``t`` and at
every grid point above it, the tracks with ``p_c >= t`` are of genre ``c`` with a precision
of at least ``target`` (default 0.8: "right at least 4 times in 5 on artists it never
heard"). The precision is smoothed, ``(right + 1) / (said + 2)``, and a grid point with
fewer than 5 tracks above it is skipped (too few to judge), so that a few lucky (or
unlucky) tracks at the top do not set a threshold. A class whose precision never reaches
the target gets the ceiling (0.90): its label is only kept when the model is nearly sure.

Why precision over every track's ``p_c`` and not only the top class: the same numbers
decide both whether a track's top genre is kept (else "unclear genre") and whether a
second genre is written (``tags write --max-genres``: a class other than the top one is a
secondary genre when its probability reaches its threshold). A precision rule makes a kept
label equally trustworthy whatever its genre: a weak class (GTZAN's rock, blues) needs more
confidence than a strong one (metal, classical), which one global threshold cannot say.
An F1-optimal threshold (about half the class's best F1 when calibrated) does the
opposite: it lowers the bar for the classes the model is bad at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TARGET = 0.8
GRID = np.round(np.arange(0.20, 0.9001, 0.01), 2)
MIN_SAID = 5


def class_thresholds(
    probs: np.ndarray, labels: np.ndarray, *, target: float = TARGET
) -> np.ndarray:
    """Thresholds ``[C]`` from probabilities ``probs`` ``[N, C]`` (calibrated, out of fold)
    and true classes ``labels`` ``[N]``, by the rule of the module docstring."""
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
