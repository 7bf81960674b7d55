"""Which genres of a model's answer go into a file: the top one, and the few others it is
sure enough of. Pure Python (the CLI imports it; no numpy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MAX_GENRES = 3  # the most genres ``tags write --max-genres`` puts into one file


def _check(probabilities: Sequence[float], classes: Sequence[str], max_genres: int) -> None:
    if len(probabilities) != len(classes):
        raise ValueError(
            f"probabilities has {len(probabilities)} values for {len(classes)} classes"
        )
    if not 1 <= max_genres <= MAX_GENRES:
        raise ValueError(f"max_genres={max_genres} must be between 1 and {MAX_GENRES}")


def select_genres(
    probabilities: Sequence[float],
    classes: Sequence[str],
    *,
    thresholds: Mapping[str, float],
    default_threshold: float,
    max_genres: int,
) -> list[tuple[str, float]]:
    """The genres to keep, best first, as (class, probability): the top class always, then
    each further class, in order of probability, whose probability is at least its own
    threshold (``thresholds.get(cls, default_threshold)``), at most ``max_genres`` in all.

    ``probabilities`` are the model's, in ``classes``' order. Ties keep the class order."""
    _check(probabilities, classes, max_genres)
    if not classes:
        return []
    ranked = sorted(zip(classes, probabilities, strict=True), key=lambda cp: -cp[1])
    kept = [ranked[0]]
    for cls, probability in ranked[1:]:
        if len(kept) == max_genres:
            break
        if probability >= thresholds.get(cls, default_threshold):
            kept.append((cls, probability))
    return kept


def genres_to_write(
    primary: str,
    probabilities: Sequence[float],
    classes: Sequence[str],
    *,
    thresholds: Mapping[str, float],
    default_threshold: float,
    max_genres: int,
) -> list[str]:
    """``primary`` (the track's label), then up to ``max_genres - 1`` secondary genres.

    A secondary genre is a class other than ``primary`` at or above its threshold, best first.
    The label usually is the top class; where it is not (the label came from elsewhere, e.g.
    an album's), the top class must pass its threshold like any other secondary one."""
    _check(probabilities, classes, max_genres)
    chosen = [primary]
    for cls, probability in sorted(zip(classes, probabilities, strict=True), key=lambda cp: -cp[1]):
        if len(chosen) == max_genres:
            break
        if cls != primary and probability >= thresholds.get(cls, default_threshold):
            chosen.append(cls)
    return chosen
