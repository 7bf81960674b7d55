"""Training a genre head on cached encoder rows: seconds on a CPU.

A head (``worker.models.heads.GenreHead``) is fitted at the track level, from each track's
mean encoder outputs, in three parts:

- the **prior's calibration**: a scale per expert and a bias per genre on the experts'
  genre logits (12 numbers for two experts and ten genres), a class-balanced multinomial
  log-loss with an L2 pull (``lam``) towards "first expert as it is, others off";
- the **trained part**: a standardised multinomial logistic regression on an embedding,
  class-balanced, with an L2 penalty ``1 / (2 C N)`` on the mean loss (``C`` as in
  scikit-learn);
- the **blend**: ``(log_softmax(trained) + w * prior) / T``.

``lam``, ``C`` and ``w`` are chosen by inner cross-validation on the training tracks only,
grouped by artist when artists are known, scored by the per-genre mean recall (averaged
over the data's source folders, so 2 s clips and full tracks weigh the same). Few
parameters that generalise across artists: on GTZAN, heads with more capacity learnt the
artists of the training folds, not their genres (README, "Models and accuracy").

The temperature ``T`` then makes the blend's confidence mean what it says: it is fitted to
the chosen blend's inner out-of-fold scores (the log-loss, weighted as the choice is), so
"unclear genre" (a confidence under GENRECTL_UNKNOWN_THRESHOLD) means the same for every
head. Without it the confidence depends on the chosen ``w`` and ``C``: the first
encoder-head starter was right about 9 times in 10 on its own training tracks, yet called
a fifth of them unclear at 0.35.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from genrectl.errors import ConfigError
from worker.training.evaluation import macro_recall
from worker.training.folds import group_kfold
from worker.training.thresholds import class_thresholds

log = logging.getLogger(__name__)

LAMS: tuple[float, ...] = (1e-3, 1e-2, 0.1, 1.0)
CS: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
WS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1000.0)


@dataclass(frozen=True)
class TrackTable:
    """What a head learns from, per track: ``z`` ``[T, K, C]`` the experts' genre logits
    (None without a prior), ``x`` ``[T, F]`` the trained part's input (None without one),
    ``labels`` ``[T]``, ``groups`` (artist, or the track itself) and ``sources`` (the data
    folder) per track."""

    z: np.ndarray | None
    x: np.ndarray | None
    labels: np.ndarray
    groups: Sequence[str]
    sources: Sequence[str]
    n_classes: int


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per track, 1 / (its genre's tracks), normalised to mean 1: every genre weighs the same."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = 1.0 / counts[labels]
    return weights / weights.mean()


def fit_calibration(
    z: np.ndarray, labels: np.ndarray, *, n_classes: int, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scales ``[K]`` and biases ``[C]`` for ``log_softmax(sum_k a_k z_k + b)``: class-
    balanced log-loss + ``lam * (|a - a0|^2 + |b|^2)``, a0 = (1, 0, ...). Deterministic."""
    zt = torch.from_numpy(np.asarray(z, dtype=np.float64))
    y = torch.from_numpy(labels)
    w = torch.from_numpy(class_weights(labels, n_classes))
    a0 = torch.zeros(zt.shape[1], dtype=torch.float64)
    a0[0] = 1.0
    a = a0.clone().requires_grad_(True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([a, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        scores = (a[None, :, None] * zt).sum(dim=1) + b
        loss = torch.nn.functional.cross_entropy(scores, y, reduction="none")
        total = (loss * w).mean() + lam * ((a - a0).square().sum() + b.square().sum())
        total.backward()
        return total

    optimizer.step(closure)
    return a.detach().numpy(), b.detach().numpy()


def apply_calibration(z: np.ndarray, scales: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The calibrated prior's log-probabilities ``[T, C]``."""
    scores = (scales[None, :, None] * z).sum(axis=1) + bias
    return np.asarray(torch.log_softmax(torch.from_numpy(scores), dim=1).numpy())


@dataclass(frozen=True)
class Linear:
    """A fitted trained part: ``weight`` ``[C, F]``, ``bias`` ``[C]`` on ``(x - mean) / std``."""

    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def log_probs(self, x: np.ndarray) -> np.ndarray:
        scores = ((x - self.mean) / self.std) @ self.weight.T + self.bias
        return np.asarray(torch.log_softmax(torch.from_numpy(scores), dim=1).numpy())


def fit_linear(
    x: np.ndarray, labels: np.ndarray, *, n_classes: int, c: float, max_iter: int = 200
) -> Linear:
    """Class-balanced multinomial logistic regression on standardised ``x`` ``[N, F]``, with
    scikit-learn's penalty ``|W|^2 / (2 C)`` against the summed loss. Deterministic."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    mean, std = xt.mean(dim=0), xt.std(dim=0, unbiased=False).clamp(min=1e-6)
    xt = (xt - mean) / std
    y = torch.from_numpy(labels)
    w = torch.from_numpy(class_weights(labels, n_classes))
    weight = torch.zeros(n_classes, xt.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")
    penalty = 1.0 / (2.0 * c * len(y))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ weight.T + bias, y, reduction="none")
        total = (loss * w).mean() + penalty * weight.square().sum()
        total.backward()
        return total

    optimizer.step(closure)
    return Linear(weight.detach().numpy(), bias.detach().numpy(), mean.numpy(), std.numpy())


def source_score(
    truth: np.ndarray, predicted: np.ndarray, sources: Sequence[str], n_classes: int
) -> float:
    """The per-genre mean recall of each source folder, averaged over the sources."""
    where = np.asarray(sources)
    return float(
        np.mean(
            [
                macro_recall(truth[where == s], predicted[where == s], n_classes)
                for s in sorted(set(where.tolist()))
            ]
        )
    )


@dataclass(frozen=True)
class Fitted:
    """A head's fitted numbers: the calibration (None without a prior), the trained part
    (None without one), the blend weight, and the inner-CV scores behind the choice."""

    scales: np.ndarray | None
    bias: np.ndarray | None
    linear: Linear | None
    w: float
    chosen: dict[str, float] = field(default_factory=dict)
    inner: dict[str, float] = field(default_factory=dict)
    temperature: float = 1.0
    # Per-class thresholds from the inner out-of-fold answers (worker.training.thresholds).
    thresholds: np.ndarray | None = None
    # The inner out-of-fold probabilities [N, C] and true classes [N] they were chosen on.
    inner_oof: tuple[np.ndarray, np.ndarray] | None = None

    def log_probs(self, table: TrackTable, tracks: np.ndarray) -> np.ndarray:
        """Scores ``[len(tracks), C]`` of ``tracks`` (indices into ``table``)."""
        parts = []
        if self.linear is not None:
            assert table.x is not None
            parts.append(self.linear.log_probs(table.x[tracks]))
        if self.scales is not None:
            assert table.z is not None and self.bias is not None
            parts.append(self.w * apply_calibration(table.z[tracks], self.scales, self.bias))
        return np.sum(parts, axis=0) / self.temperature


def fit_head(
    table: TrackTable,
    tracks: np.ndarray,
    *,
    lam: float | None,
    c: float | None,
    w: float,
) -> Fitted:
    """Calibrate the prior with ``lam`` and fit the trained part with ``c`` (either None:
    that part is left out) on ``tracks``."""
    y = table.labels[tracks]
    scales = bias = None
    if lam is not None and table.z is not None:
        scales, bias = fit_calibration(table.z[tracks], y, n_classes=table.n_classes, lam=lam)
    linear = None
    if c is not None and table.x is not None:
        linear = fit_linear(table.x[tracks], y, n_classes=table.n_classes, c=c)
    if scales is None and linear is None:
        raise ConfigError("a head needs a prior or a trained part")
    return Fitted(scales, bias, linear, w if linear is not None else 1.0)


def choose_and_fit(
    table: TrackTable,
    tracks: np.ndarray,
    *,
    inner: list[np.ndarray],
    lams: Sequence[float | None] = LAMS,
    cs: Sequence[float | None] = CS,
    ws: Sequence[float] = WS,
) -> Fitted:
    """Choose (lam, C, w) by cross-validation over the ``inner`` folds (boolean test masks
    over ``tracks``), then fit on all of ``tracks``. Ties go to the first candidate in
    grid order (weaker calibration, stronger regularisation, less prior)."""
    lams = lams if table.z is not None else [None]
    cs = cs if table.x is not None else [None]
    ws = ws if table.x is not None and table.z is not None else [1.0]
    n = table.n_classes
    prior_oof = {lam: np.zeros((len(tracks), n)) for lam in lams}
    head_oof = {c: np.zeros((len(tracks), n)) for c in cs}
    tested = np.zeros(len(tracks), dtype=bool)
    for mask in inner:
        train, test = tracks[~mask], tracks[mask]
        if len(set(table.labels[train].tolist())) < 2 or not len(test):
            continue
        tested |= mask
        for lam in lams:
            if lam is not None:
                fitted = fit_head(table, train, lam=lam, c=None, w=1.0)
                prior_oof[lam][mask] = fitted.log_probs(table, test)
        for c in cs:
            if c is not None:
                fitted = fit_head(table, train, lam=None, c=c, w=1.0)
                head_oof[c][mask] = fitted.log_probs(table, test)
    truth = table.labels[tracks]
    sources = [table.sources[i] for i in tracks]
    scores: dict[tuple[float | None, float | None, float], float] = {}

    def blend(lam: float | None, c: float | None, w: float) -> np.ndarray:
        out = np.zeros((len(tracks), n))
        if c is not None:
            out += head_oof[c]
        if lam is not None:
            out += w * prior_oof[lam]
        return out

    for lam, c, w in itertools.product(lams, cs, ws):
        predicted = np.argmax(blend(lam, c, w), axis=1)
        scores[(lam, c, w)] = source_score(truth, predicted, sources, n)
    best = max(scores, key=lambda key: round(scores[key], 9))
    lam, c, w = best
    fitted = fit_head(table, tracks, lam=lam, c=c, w=w)
    temperature = (
        fit_temperature(blend(*best)[tested], truth[tested], np.asarray(sources)[tested], n)
        if tested.any()
        else 1.0
    )
    inner_probs = softmax(blend(*best)[tested] / temperature)
    thresholds = class_thresholds(inner_probs, truth[tested]) if tested.any() else None
    log.info("inner CV chose lam=%s C=%s w=%s T=%.2f (%.3f)", lam, c, w, temperature, scores[best])
    chosen = {k: v for k, v in (("lam", lam), ("C", c), ("w", w)) if v is not None}
    return Fitted(
        fitted.scales,
        fitted.bias,
        fitted.linear,
        fitted.w,
        chosen={**chosen, "T": round(temperature, 4), "inner_score": round(scores[best], 4)},
        inner={f"lam={k[0]},C={k[1]},w={k[2]}": round(v, 4) for k, v in scores.items()},
        temperature=temperature,
        thresholds=thresholds,
        inner_oof=(inner_probs, truth[tested]) if tested.any() else None,
    )


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``scores`` ``[N, C]``."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


TEMPERATURES = np.exp(np.linspace(np.log(0.1), np.log(10.0), 121))


def fit_temperature(
    scores: np.ndarray, labels: np.ndarray, sources: np.ndarray, n_classes: int
) -> float:
    """The ``T`` in 0.1..10 minimising the log-loss of ``softmax(scores / T)``: ``scores``
    ``[N, C]`` out of fold, ``labels`` ``[N]``; every genre and every source folder weighs
    the same, as in the choice of the blend."""
    weights = np.zeros(len(labels))
    kinds = sorted(set(sources.tolist()))
    for source in kinds:
        where = sources == source
        weights[where] = class_weights(labels[where], n_classes) / where.sum() / len(kinds)
    scaled = scores[None, :, :] / TEMPERATURES[:, None, None]
    scaled = scaled - scaled.max(axis=2, keepdims=True)
    log_p = scaled - np.log(np.exp(scaled).sum(axis=2, keepdims=True))
    picked = np.take_along_axis(log_p, labels[None, :, None], axis=2)[:, :, 0]
    losses = -(picked * weights[None, :]).sum(axis=1)
    return float(TEMPERATURES[int(np.argmin(losses))])


def inner_folds(
    table: TrackTable, tracks: np.ndarray, *, folds_of: dict[int, int] | None, k: int, seed: int
) -> list[np.ndarray]:
    """Test masks over ``tracks`` for inner cross-validation: leave one of the fold file's
    folds out (``folds_of``: track → fold), else ``k`` folds grouped by artist."""
    if folds_of is not None:
        labels = sorted({folds_of[int(t)] for t in tracks})
        if len(labels) >= 2:
            return [np.asarray([folds_of[int(t)] == f for t in tracks]) for f in labels]
    groups = [table.groups[int(t)] for t in tracks]
    return group_kfold(list(map(str, tracks)), groups, k=min(k, len(set(groups))), seed=seed)
