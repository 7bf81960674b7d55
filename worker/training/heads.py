"""Training a genre head on cached encoder rows: seconds on a CPU.

The trained part of a :class:`~worker.models.heads.GenreHead` is a multinomial logistic
regression on standardised encoder outputs, fitted full-batch with L-BFGS. Two choices
protect it from what a small labelled collection teaches (its artists, its genre mix):

- **class and track balance**: every genre weighs the same in the loss, and within a genre
  every track the same, however many windows it has (a 30 s track has 3, a clip 1);
- **its strength and the zero-shot prior's weight are chosen by inner cross-validation**
  on the training tracks only, grouped by artist when artists are known, scored by the
  per-genre mean recall.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genrectl.errors import ConfigError
from worker.models.heads import GenreHead
from worker.training.folds import group_kfold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadRecipe:
    """How a head is trained. ``inputs``: stored arrays the trained part reads. ``l2s`` and
    ``prior_weights``: candidates inner cross-validation chooses among (``prior_weights``
    only matter where every genre has encoder classes mapped to it). ``variants``: degraded
    copies of every training track added to its rows (``worker.training.augment``)."""

    inputs: tuple[str, ...] = ("emb512",)
    l2s: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    prior_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
    temperature: float = 1.0
    inner_folds: int = 4
    variants: tuple[str, ...] = ()
    max_iter: int = 200

    def __post_init__(self) -> None:
        if not self.inputs and 0.0 in self.prior_weights and len(self.prior_weights) == 1:
            raise ConfigError("a head needs inputs or a prior")
        if self.inner_folds < 2:
            raise ConfigError(f"inner_folds={self.inner_folds} must be at least 2")


@dataclass(frozen=True)
class Rows:
    """Encoder rows of some tracks: ``arrays`` ``{name: [N, ...]}`` and ``owner`` ``[N]``,
    the index (into the caller's track list) of the track each row belongs to."""

    arrays: dict[str, np.ndarray]
    owner: np.ndarray

    def __post_init__(self) -> None:
        for name, array in self.arrays.items():
            if len(array) != len(self.owner):
                raise ConfigError(f"{name} has {len(array)} rows for {len(self.owner)} owners")

    def __len__(self) -> int:
        return len(self.owner)

    def of(self, tracks: np.ndarray) -> Rows:
        """The rows of the tracks whose indices are in ``tracks``."""
        mask = np.isin(self.owner, tracks)
        return Rows({k: v[mask] for k, v in self.arrays.items()}, self.owner[mask])

    @staticmethod
    def concatenate(parts: Sequence[Rows]) -> Rows:
        names = parts[0].arrays
        return Rows(
            {k: np.concatenate([p.arrays[k] for p in parts]) for k in names},
            np.concatenate([p.owner for p in parts]),
        )


def weights(owner: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per row: 1 / (its track's rows) x 1 / (its genre's tracks), normalised to mean 1."""
    tracks, rows_per_track = np.unique(owner, return_counts=True)
    per_track = dict(zip(tracks.tolist(), rows_per_track.tolist(), strict=True))
    track_labels = {t: labels[owner == t][0] for t in per_track}
    genre_tracks = np.bincount(list(track_labels.values()), minlength=n_classes)
    weights = np.array(
        [1.0 / (per_track[t] * genre_tracks[labels[i]]) for i, t in enumerate(owner.tolist())]
    )
    return weights / weights.mean()


def stacked_inputs(rows: Rows, inputs: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.asarray(rows.arrays[n], dtype=np.float32) for n in inputs], axis=1)


def fit_linear(
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    n_classes: int,
    l2: float,
    max_iter: int = 200,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted multinomial logistic regression on standardised ``features`` ``[N, F]``:
    returns (weight ``[C, F]``, bias ``[C]``, mean ``[F]``, std ``[F]``). ``l2`` is the
    penalty on the weights (per unit of mean row weight). Deterministic."""
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    mean, std = x.mean(dim=0), x.std(dim=0).clamp(min=1e-6)
    x = (x - mean) / std
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    w = torch.from_numpy(np.asarray(weights, dtype=np.float32))
    weight = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y, reduction="none")
        total = (loss * w).mean() + l2 * weight.square().sum()
        total.backward()
        return total

    optimizer.step(closure)
    return weight.detach(), bias.detach(), mean, std


def build_head(
    *,
    arch: str,
    classes: Sequence[str],
    recipe: HeadRecipe,
    sizes: dict[str, int],
    prior_map: Sequence[Sequence[int]] | None,
    n_encoder_classes: int,
    prior_weight: float,
    fitted: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> GenreHead:
    """A GenreHead holding a fitted linear part (or none) and the prior."""
    head = GenreHead(
        arch=arch,
        n_classes=len(classes),
        inputs=[(name, sizes[name]) for name in recipe.inputs] if fitted is not None else [],
        n_encoder_classes=n_encoder_classes,
        head_weight=1.0 if fitted is not None else 0.0,
        prior_weight=prior_weight if prior_map is not None else 0.0,
        temperature=recipe.temperature,
    )
    if prior_map is not None:
        head.set_prior(prior_map)
    if fitted is not None:
        weight, bias, mean, std = fitted
        with torch.no_grad():
            head.linear.weight.copy_(weight)
            head.linear.bias.copy_(bias)
        head.set_standardisation(mean=mean, std=std)
    return head.eval()


def track_scores(head: GenreHead, rows: Rows) -> dict[int, np.ndarray]:
    """Mean over each track's rows of the head's class probabilities: ``{track: [C]}``."""
    from worker.inference.predict import predict_rows, track_probabilities

    probs = predict_rows(head, rows.arrays)
    return track_probabilities(probs, rows.owner)


def macro_recall(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean over the genres present in ``truth`` of the share of their tracks predicted."""
    recalls = [
        float((predicted[truth == c] == c).mean()) for c in range(n_classes) if (truth == c).any()
    ]
    return float(np.mean(recalls)) if recalls else 0.0


@dataclass(frozen=True)
class HeadChoice:
    """What inner cross-validation chose, and the inner score of every candidate."""

    l2: float
    prior_weight: float
    scores: dict[str, float]


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=1)


def choose(
    rows: Rows,
    labels: np.ndarray,
    groups: Sequence[str],
    *,
    recipe: HeadRecipe,
    n_classes: int,
    prior: np.ndarray | None,
    seed: int,
) -> HeadChoice:
    """Inner cross-validation over the tracks of ``rows`` (``labels`` and ``groups`` per
    track index): the l2 and prior weight of best per-genre mean recall, ties to the
    stronger l2 and the stronger prior. ``prior``: the prior's per-row log-probabilities
    ``[N, C]`` (None: no prior)."""
    tracks = np.unique(rows.owner)
    masks = group_kfold(
        tracks.tolist(), [groups[t] for t in tracks], k=recipe.inner_folds, seed=seed
    )
    weights_all = weights(rows.owner, labels[rows.owner], n_classes)
    features = stacked_inputs(rows, recipe.inputs) if recipe.inputs else None
    prior_weights = recipe.prior_weights if prior is not None else (0.0,)
    l2s = recipe.l2s if features is not None else (0.0,)
    scores: dict[tuple[float, float], list[np.ndarray]] = {}
    truth = labels[tracks]
    oof: dict[tuple[float, float], np.ndarray] = {
        key: np.zeros((len(tracks), n_classes)) for key in itertools.product(l2s, prior_weights)
    }
    position = {t: i for i, t in enumerate(tracks.tolist())}
    for mask in masks:
        test_tracks = tracks[mask]
        test_rows = np.isin(rows.owner, test_tracks)
        train_rows = ~test_rows
        if not test_rows.any() or len(np.unique(labels[rows.owner[train_rows]])) < 2:
            continue
        for l2 in l2s:
            trained = None
            if features is not None:
                weight, bias, mean, std = fit_linear(
                    features[train_rows],
                    labels[rows.owner[train_rows]],
                    weights_all[train_rows],
                    n_classes=n_classes,
                    l2=l2,
                    max_iter=recipe.max_iter,
                )
                x = (torch.from_numpy(features[test_rows]) - mean) / std
                trained = _log_probs(x @ weight.T + bias)
            for prior_weight in prior_weights:
                parts = [] if trained is None else [trained]
                if prior_weight and prior is not None:
                    parts.append(prior_weight * torch.from_numpy(prior[test_rows]))
                probs = torch.softmax(torch.stack(parts).sum(dim=0), dim=1).numpy()
                owners = rows.owner[test_rows]
                for t in np.unique(owners):
                    oof[(l2, prior_weight)][position[int(t)]] = probs[owners == t].mean(axis=0)
    del scores
    ranked = {
        key: macro_recall(truth, table.argmax(axis=1), n_classes) for key, table in oof.items()
    }
    best = max(ranked, key=lambda key: (round(ranked[key], 6), key[0], key[1]))
    log.info("inner CV: %s -> %s", ranked, best)
    return HeadChoice(
        l2=best[0],
        prior_weight=best[1],
        scores={f"l2={k[0]:g},prior={k[1]:g}": round(v, 4) for k, v in ranked.items()},
    )
