"""Per-class thresholds: the precision rule on out-of-fold probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from worker.training.thresholds import (
    ABSENT,
    GRID,
    class_thresholds,
    coverage_scores,
    precision_thresholds,
    unclear,
)


def _probs(rows: list[tuple[int, float]], n_classes: int = 3) -> np.ndarray:
    """One row per (top class, its probability), the rest spread evenly."""
    out = np.zeros((len(rows), n_classes))
    for i, (c, p) in enumerate(rows):
        out[i] = (1 - p) / (n_classes - 1)
        out[i, c] = p
    return out


def test_the_precision_rule_a_class_always_right_low_a_noisy_one_high() -> None:
    # class 0: always right; class 1: right only above 0.7, wrong below.
    rows = [(0, p) for p in np.linspace(0.3, 0.95, 20)]
    labels = [0] * 20
    rows += [(1, p) for p in np.linspace(0.3, 0.95, 20)]
    labels += [1 if p >= 0.7 else 2 for p in np.linspace(0.3, 0.95, 20)]
    thresholds = precision_thresholds(_probs(rows), np.asarray(labels), target=0.8)
    assert thresholds[0] <= 0.35  # below it the other classes' tracks dilute it
    assert 0.65 <= thresholds[1] <= 0.75
    # class 2 is never the top with its labels right: nothing reaches the target.
    assert thresholds[2] == GRID[-1]


def test_a_higher_target_never_lowers_a_threshold() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=300)
    labels = np.asarray([rng.choice(4, p=p) for p in probs])  # calibrated by construction
    low = precision_thresholds(probs, labels, target=0.6)
    high = precision_thresholds(probs, labels, target=0.9)
    assert np.all(high >= low) and np.any(high > low)


def test_the_f1_rule_cuts_between_a_classs_tracks_and_the_others() -> None:
    # class 0's own tracks have p_0 >= 0.6, the others' p_0 <= 0.4; class 2 has no track.
    rows = [(0, p) for p in (0.6, 0.7, 0.8, 0.9)] + [(1, p) for p in (0.4, 0.5, 0.6, 0.7)]
    probs = _probs(rows)
    probs[4:, 0] = [0.4, 0.3, 0.2, 0.1]
    thresholds = class_thresholds(probs, np.asarray([0] * 4 + [1] * 4))
    assert 0.4 < thresholds[0] <= 0.6  # the lowest that leaves the others out
    assert thresholds[2] == ABSENT
    # Every threshold is on the grid.
    assert set(np.round(thresholds[:2], 2)) <= set(GRID.tolist())


def test_a_bad_target_is_refused() -> None:
    with pytest.raises(ValueError, match=r"target=1\.5"):
        precision_thresholds(np.ones((2, 2)) / 2, np.zeros(2, dtype=int), target=1.5)


def test_unclear_holds_each_track_to_its_top_class_threshold() -> None:
    probs = _probs([(0, 0.5), (1, 0.5)])
    assert unclear(probs, np.asarray([0.4, 0.6, 0.9])).tolist() == [False, True]
    scores = coverage_scores(np.asarray([0, 2]), probs, ["a", "a"], np.asarray([0.4, 0.6, 0.9]))
    assert scores["a"] == {"tracks": 2, "coverage": 0.5, "accuracy_kept": 1.0, "accuracy_all": 0.5}


def test_a_chosen_head_carries_thresholds_from_its_inner_out_of_fold_answers() -> None:
    from tests.worker.training.test_heads import table
    from worker.training.heads import choose_and_fit, inner_folds

    t = table(informative_x=True, biased_prior=False)
    tracks = np.arange(60)
    fitted = choose_and_fit(t, tracks, inner=inner_folds(t, tracks, folds_of=None, k=4, seed=0))
    assert fitted.thresholds is not None and fitted.inner_oof is not None
    probs, labels = fitted.inner_oof
    assert probs.shape == (60, t.n_classes) and np.allclose(probs.sum(axis=1), 1)
    assert np.array_equal(fitted.thresholds, class_thresholds(probs, labels))
