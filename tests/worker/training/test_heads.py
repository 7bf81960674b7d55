"""Genre heads: the balanced logistic regression, inner cross-validation's choice, and the
head module the registry saves, on synthetic encoder rows (no audio needed)."""

from __future__ import annotations

import numpy as np
import torch

from worker.training.heads import (
    HeadRecipe,
    Rows,
    build_head,
    choose,
    fit_linear,
    macro_recall,
    track_scores,
    weights,
)

N_ENCODER = 12  # a small stand-in for AudioSet's 527 classes


def rows_of(
    labels: np.ndarray, *, rows_per_track: list[int], informative: bool, seed: int = 0
) -> Rows:
    """Encoder rows: an embedding that carries the track's label (or not), and logits whose
    class ``label`` is high (a prior that knows the genre)."""
    rng = np.random.default_rng(seed)
    owner = np.repeat(np.arange(len(labels)), rows_per_track)
    y = labels[owner]
    emb = rng.normal(size=(len(owner), 8)).astype(np.float32)
    if informative:
        emb[np.arange(len(owner)), y] += 3.0
    logits = rng.normal(scale=0.5, size=(len(owner), N_ENCODER)).astype(np.float32)
    logits[np.arange(len(owner)), y] += 2.0
    return Rows({"emb512": emb, "logits": logits}, owner)


def test_each_genre_and_each_track_weighs_the_same() -> None:
    labels = np.array([0, 0, 0, 1])
    owner = np.array([0, 0, 0, 1, 2, 3])  # track 0 has 3 rows; genre 1 has one track
    w = weights(owner, labels[owner], 2)
    per_track = [w[owner == t].sum() for t in range(4)]
    assert np.isclose(sum(per_track[:3]), per_track[3])  # genre 0's three tracks = genre 1's one
    assert np.allclose(per_track[:3], per_track[0])  # whatever their number of rows


def test_a_linear_head_learns_an_informative_embedding() -> None:
    labels = np.repeat([0, 1, 2], 10)
    rows = rows_of(labels, rows_per_track=[3] * 30, informative=True)
    fitted = fit_linear(
        rows.arrays["emb512"], labels[rows.owner], np.ones(len(rows)), n_classes=3, l2=1e-3
    )
    head = build_head(
        arch="mn04-head",
        classes=["a", "b", "c"],
        recipe=HeadRecipe(),
        sizes={"emb512": 8},
        prior_map=None,
        n_encoder_classes=N_ENCODER,
        prior_weight=0.0,
        fitted=fitted,
    )
    scores = track_scores(head, rows)
    predicted = np.array([scores[t].argmax() for t in range(30)])
    assert macro_recall(labels, predicted, 3) > 0.9


def test_inner_cross_validation_leans_on_the_prior_when_the_embedding_says_nothing() -> None:
    labels = np.repeat([0, 1, 2], 12)
    rows = rows_of(labels, rows_per_track=[2] * 36, informative=False, seed=1)
    prior_map = [[0], [1], [2]]
    head = build_head(
        arch="mn04-zeroshot",
        classes=["a", "b", "c"],
        recipe=HeadRecipe(inputs=()),
        sizes={},
        prior_map=prior_map,
        n_encoder_classes=N_ENCODER,
        prior_weight=1.0,
        fitted=None,
    )
    with torch.no_grad():
        prior = torch.log_softmax(head.prior_logits(torch.from_numpy(rows.arrays["logits"])), 1)
    groups = [f"artist{i // 3}" for i in range(36)]  # three tracks per artist
    choice = choose(
        rows, labels, groups, recipe=HeadRecipe(), n_classes=3, prior=prior.numpy(), seed=0
    )
    assert choice.prior_weight >= 2.0, choice.scores
    assert max(choice.scores.values()) > 0.9


def test_the_zero_shot_head_reads_the_largest_logit_of_each_genres_classes() -> None:
    head = build_head(
        arch="mn04-zeroshot",
        classes=["rock", "jazz"],
        recipe=HeadRecipe(inputs=()),
        sizes={},
        prior_map=[[0, 1], [2]],
        n_encoder_classes=3,
        prior_weight=1.0,
        fitted=None,
    )
    logits = torch.tensor([[-5.0, 3.0, 1.0], [-5.0, -4.0, 1.0]])
    assert head.prior_logits(logits).tolist() == [[3.0, 1.0], [-4.0, 1.0]]
    assert head({"logits": logits}).argmax(dim=1).tolist() == [0, 1]
    assert head.needs == ["logits"]
