"""Genre heads: the balanced fits, the prior's calibration, inner cross-validation's choice,
and the head module the registry saves, on synthetic per-track numbers (no audio)."""

from __future__ import annotations

import numpy as np
import torch

from worker.models.heads import GenreHead
from worker.training.heads import (
    TrackTable,
    apply_calibration,
    choose_and_fit,
    class_weights,
    fit_calibration,
    fit_linear,
    fit_temperature,
    inner_folds,
    macro_recall,
)


def table(*, informative_x: bool, biased_prior: bool, seed: int = 0) -> TrackTable:
    """60 tracks of 3 genres by 20 artists: an embedding that carries the genre (or not), and
    two experts' genre logits, the first of which over-rates genre 0 (or not)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], 20)
    x = rng.normal(size=(60, 6))
    if informative_x:
        x[np.arange(60), labels] += 2.5
    z = rng.normal(scale=0.7, size=(60, 2, 3))
    z[np.arange(60), 0, labels] += 1.5
    z[np.arange(60), 1, labels] += 1.0
    if biased_prior:
        z[:, 0, 0] += 3.0
    return TrackTable(
        z=z,
        x=x,
        labels=labels,
        groups=[f"artist{i // 3}" for i in range(60)],
        sources=["full"] * 30 + ["clips"] * 30,
        n_classes=3,
    )


def test_every_genre_weighs_the_same() -> None:
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert np.isclose(weights[:3].sum(), weights[3]) and np.isclose(weights.mean(), 1.0)


def test_a_linear_head_learns_an_informative_embedding() -> None:
    t = table(informative_x=True, biased_prior=False)
    linear = fit_linear(t.x, t.labels, n_classes=3, c=0.1)  # type: ignore[arg-type]
    predicted = linear.log_probs(t.x).argmax(axis=1)  # type: ignore[arg-type]
    assert macro_recall(t.labels, predicted, 3) > 0.9


def test_calibration_learns_away_an_experts_bias() -> None:
    t = table(informative_x=False, biased_prior=True)
    assert t.z is not None
    raw = t.z[:, 0].argmax(axis=1)
    scales, bias = fit_calibration(t.z, t.labels, n_classes=3, lam=1e-3)
    calibrated = apply_calibration(t.z, scales, bias).argmax(axis=1)
    assert macro_recall(t.labels, raw, 3) < 0.6 < 0.8 < macro_recall(t.labels, calibrated, 3)
    assert bias[0] < bias[1] - 1 and bias[0] < bias[2] - 1  # genre 0's over-rating undone
    assert scales[1] > 0.1  # the second expert is heard


def test_the_temperature_undoes_over_and_under_confidence() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=4000)
    true_logits = rng.normal(size=(4000, 4))
    true_logits[np.arange(4000), labels] += 1.0
    # Draw the labels from softmax(true_logits): then T = 1 is right for them, and scores
    # scaled by k need T = k.
    p = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    drawn = np.array([rng.choice(4, p=row) for row in p])
    sources = np.array(["a", "b"] * 2000)
    for k in (0.3, 1.0, 4.0):  # inside the searched 0.1..10
        assert abs(np.log(fit_temperature(k * true_logits, drawn, sources, 4) / k)) < 0.15


def test_the_chosen_head_is_calibrated_out_of_fold() -> None:
    t = table(informative_x=True, biased_prior=False)
    tracks = np.arange(60)
    fitted = choose_and_fit(t, tracks, inner=inner_folds(t, tracks, folds_of=None, k=4, seed=0))
    assert fitted.chosen["T"] == round(fitted.temperature, 4) != 1.0
    scores = fitted.log_probs(t, tracks)
    unscaled = scores * fitted.temperature
    assert np.array_equal(scores.argmax(axis=1), unscaled.argmax(axis=1))  # answers unchanged


def test_inner_cross_validation_leans_on_the_prior_when_the_embedding_says_nothing() -> None:
    t = table(informative_x=False, biased_prior=False)
    tracks = np.arange(60)
    folds = inner_folds(t, tracks, folds_of=None, k=4, seed=0)
    assert len(folds) == 4 and all(m.any() for m in folds)
    fitted = choose_and_fit(t, tracks, inner=folds)
    assert fitted.chosen["inner_score"] > 0.8
    # Whatever mix was chosen (a strong prior, or a head regularised to nothing), the
    # answers are the calibrated prior's.
    assert t.z is not None and fitted.scales is not None and fitted.bias is not None
    prior = apply_calibration(t.z, fitted.scales, fitted.bias).argmax(axis=1)
    assert (fitted.log_probs(t, tracks).argmax(axis=1) == prior).mean() > 0.95, fitted.chosen


def test_inner_folds_follow_the_fold_file() -> None:
    t = table(informative_x=True, biased_prior=False)
    tracks = np.arange(0, 60, 2)
    folds_of = {i: i % 3 for i in range(60)}
    masks = inner_folds(t, tracks, folds_of=folds_of, k=4, seed=0)
    assert [sorted(tracks[m] % 3) for m in masks] == [[0] * 10, [1] * 10, [2] * 10]


def test_the_head_reads_the_largest_logit_of_each_genres_classes_and_blends() -> None:
    head = GenreHead(
        arch="mn04-zeroshot",
        n_classes=2,
        experts=[(0, 3), (1, 2)],
        inputs=[],
        head_weight=0.0,
        prior_weight=1.0,
    )
    head.set_prior(0, [[0, 1], [2]])
    head.set_prior(1, [[], [1]])  # the second expert knows nothing of genre 0
    features = [
        {"logits": torch.tensor([[-5.0, 3.0, 1.0], [-5.0, -4.0, 1.0]])},
        {"logits": torch.tensor([[0.5, 2.0], [0.5, -1.0]])},
    ]
    assert head.expert_logits(features).tolist() == [
        [[3.0, 1.0], [0.0, 2.0]],
        [[-4.0, 1.0], [0.0, -1.0]],
    ]
    assert head(features).argmax(dim=1).tolist() == [0, 1]  # first expert only (scales 1, 0)
    head.set_calibration(scales=torch.tensor([0.0, 1.0]), bias=torch.zeros(2))
    assert head(features).argmax(dim=1).tolist() == [1, 0]  # now the second alone
    assert head.needs(0) == ["logits"] and head.needs(1) == ["logits"]
