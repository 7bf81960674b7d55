"""Training as plain functions: ``train_one_epoch``, ``evaluate`` and ``fit``.

``fit`` keeps the weights of lowest validation loss (the reference's rule), writes a
checkpoint after every epoch (atomically) and, given the same inputs, resumes from the last
finished epoch to exactly the weights an uninterrupted run ends with on CPU: every epoch
reseeds its randomness (shuffle order, dropout) from ``(seed, epoch)``. Models train in
channels-last layout everywhere and under bf16 autocast on CUDA only (on CPU it is slower).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from genrectl.errors import ConfigError, ModelError
from worker.models.cnn import (
    ARCHS,
    INPUT_SIZES,
    build_model,
    get_normalisation,
    set_normalisation,
)
from worker.models.device import resolve_device, to_device
from worker.models.encoders import HEAD_ARCHS
from worker.training.datasets import SegmentSet, mel_statistics
from worker.training.specaugment import spec_augment

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LR_SCHEDULES: tuple[str, ...] = ("cosine", "onecycle", "constant")
_WARMUP_FRACTION = 0.1
_WARMUP_START = 1 / 25  # of lr, as torch's OneCycleLR starts
# Fields that may change between a run and its resumption without changing its results.
_RESUMABLE_CHANGES = frozenset({"epochs", "early_stopping_patience", "device", "num_workers"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (plus where it runs).

    ``lr_schedule``: ``"cosine"`` (to zero over ``epochs``, stepped per epoch), ``"onecycle"``
    (per batch: linear warm-up from ``lr / 25`` over the first 10 % of the steps, then cosine
    to zero; the first epochs cannot overshoot, so the lowest validation loss is not an
    accident of epoch 1) or ``"constant"``.
    ``standardise``: scale dB inputs by the training set's mean and std (kept in the model).
    ``pretrained``: local ImageNet densenet121 weights file, for ``arch="densenet121"``.
    ``spec_augment``: mask random mel bands and frames of each training segment (SpecAugment).
    ``label_smoothing``: training targets keep ``1 - x`` on the true genre and spread ``x``
    over all; a network that is never pushed to certainty makes fewer confident mistakes,
    which is what the validation loss (plain cross-entropy) picks the epoch by.
    """

    arch: str = "cnn"
    input_size: str = "native"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    early_stopping_patience: int | None = None
    device: str = "auto"
    num_workers: int = 0
    lr_schedule: str = "cosine"
    standardise: bool = True
    pretrained: str | None = None
    spec_augment: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            (
                self.arch in ARCHS + HEAD_ARCHS,
                f"arch={self.arch!r} must be one of {', '.join(ARCHS + HEAD_ARCHS)}",
            ),
            (
                self.input_size in INPUT_SIZES,
                f"input_size={self.input_size!r} must be one of {', '.join(INPUT_SIZES)}",
            ),
            (self.epochs >= 1, f"epochs={self.epochs} must be at least 1"),
            (self.batch_size >= 2, f"batch_size={self.batch_size} must be at least 2"),
            (self.lr > 0, f"lr={self.lr} must be positive"),
            (self.weight_decay >= 0, f"weight_decay={self.weight_decay} must not be negative"),
            (
                self.early_stopping_patience is None or self.early_stopping_patience >= 1,
                f"early_stopping_patience={self.early_stopping_patience} must be at least 1",
            ),
            (
                self.device in ("auto", "cpu", "cuda"),
                f"device={self.device!r} must be auto, cpu or cuda",
            ),
            (self.num_workers >= 0, f"num_workers={self.num_workers} must not be negative"),
            (
                0 <= self.label_smoothing < 1,
                f"label_smoothing={self.label_smoothing} must be in [0, 1)",
            ),
            (
                self.lr_schedule in LR_SCHEDULES,
                f"lr_schedule={self.lr_schedule!r} must be one of {', '.join(LR_SCHEDULES)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class EpochStats:
    """One finished epoch (1-based): mean losses, accuracies over segments, lr, wall seconds."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


@dataclass
class FitResult:
    """The trained model (holding the best epoch's weights) and how it got there."""

    model: nn.Module
    history: list[EpochStats]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    normalisation: dict[str, float]
    checkpoint: Path


@dataclass
class _RunState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class _SegmentBatches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Whole batches by a list of indices: ``[b, 1, n_mels, n_frames]`` float32, ``[b]`` int64."""

    def __init__(self, data: SegmentSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        mel = np.asarray(self.data.mel[indices], dtype=np.float32)
        return torch.from_numpy(mel).unsqueeze(1), torch.from_numpy(self.data.labels[indices])


def segment_batches(
    data: SegmentSet, *, batch_size: int, shuffle_seed: int | None = None, num_workers: int = 0
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``data``; shuffled by ``shuffle_seed`` when given, else in order. A final
    batch of one is dropped when shuffling, since batch norm cannot train on it."""
    dataset = _SegmentBatches(data)
    sampler: RandomSampler | SequentialSampler
    if shuffle_seed is None:
        sampler = SequentialSampler(dataset)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(shuffle_seed))
    drop_last = shuffle_seed is not None and len(data) % batch_size == 1
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers)


def _autocast(device: torch.device) -> torch.autocast:
    # bf16 needs no loss scaling; on CPU autocast is slower than float32, so CUDA only.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _batch_to(
    batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> Iterator[torch.Tensor]:
    return (t.to(device, non_blocking=True) for t in batch)


def train_one_epoch(
    model: nn.Module,
    batches: DataLoader[tuple[torch.Tensor, torch.Tensor]],
    *,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    label_smoothing: float = 0.0,
) -> tuple[float, float]:
    """One pass over ``batches`` updating ``model``; returns (mean loss, accuracy) over the
    segments seen, measured on the fly in training mode. ``augment`` maps each input batch;
    ``scheduler``, if given, is stepped after every batch."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for batch in batches:
        mel, labels = _batch_to(batch, device)
        if augment is not None:
            mel = augment(mel)
        with _autocast(device):
            logits = model(mel)
            loss = nn.functional.cross_entropy(
                logits.float(), labels, label_smoothing=label_smoothing
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += float(loss.detach()) * len(labels)
        correct += int((logits.argmax(dim=1) == labels).sum())
        seen += len(labels)
    if seen == 0:
        raise ConfigError("the training set gave no batch; it needs at least 2 segments")
    return loss_sum / seen, correct / seen


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: SegmentSet, *, device: torch.device, batch_size: int = 64
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` over the segments of ``data``."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for batch in segment_batches(data, batch_size=batch_size):
        mel, labels = _batch_to(batch, device)
        with _autocast(device):
            logits = model(mel).float()
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(dim=1) == labels).sum())
    return loss_sum / max(len(data), 1), correct / max(len(data), 1)


def _new_run(
    config: TrainConfig, train: SegmentSet, n_classes: int, device: torch.device
) -> _RunState:
    seed_everything(config.seed)
    model = build_model(
        arch=config.arch,
        n_classes=n_classes,
        input_size=config.input_size,
        pretrained=Path(config.pretrained) if config.pretrained else None,
        n_mels=train.mel.shape[1],
        n_frames=train.mel.shape[2],
    )
    if config.standardise:
        set_normalisation(model, **mel_statistics(train.mel))
    # On the device before the optimizer exists, so its state is created there too.
    to_device(model, device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = None
    if config.lr_schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _onecycle(config, steps_per_epoch(len(train), config.batch_size))
        )
    if config.lr_schedule == "cosine":
        # Reads config.epochs at each step: a resumed run given more epochs stretches the curve.
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, config.epochs) / config.epochs)),
        )
    return _RunState(model=model, optimizer=optimizer, scheduler=scheduler)


def steps_per_epoch(n_segments: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``n_segments`` (see ``segment_batches``: a last
    batch of one is dropped)."""
    full, rest = divmod(n_segments, batch_size)
    return full + (rest > 1)


def _onecycle(config: TrainConfig, per_epoch: int) -> Callable[[int], float]:
    """The ``onecycle`` lr factor by step. Reads ``config.epochs`` at each step, like the
    cosine schedule, so a resumed run given more epochs stretches the curve."""

    def factor(step: int) -> float:
        total = max(1, config.epochs * per_epoch)
        warmup = max(1, round(_WARMUP_FRACTION * total))
        if step < warmup:
            return _WARMUP_START + (1 - _WARMUP_START) * step / warmup
        done = min(step - warmup, total - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * done))

    return factor


def _save_checkpoint(path: Path, run: _RunState, config: TrainConfig, classes: list[str]) -> None:
    """Write the run's state to a temporary name, then rename it over ``path``."""
    checkpoint = {
        "format": "genrectl-checkpoint",
        "epoch": run.history[-1].epoch if run.history else 0,
        "config": config.to_dict(),
        "classes": list(classes),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler else None,
        "history": [asdict(s) for s in run.history],
        "best": {"epoch": run.best_epoch, "val_loss": run.best_val_loss, "model": run.best_weights},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(checkpoint, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # stopped half-way (Ctrl-C, a full disk): no leftover


def _restore(path: Path, run: _RunState, config: TrainConfig, classes: list[str]) -> None:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or not ours: refuse rather than guess
        raise ModelError(
            f"cannot read checkpoint '{path}': {exc}; delete it to start over"
        ) from exc
    saved = TrainConfig.from_dict(checkpoint["config"]).to_dict()
    changed = [k for k, v in config.to_dict().items() if saved.get(k) != v]
    if set(changed) - _RESUMABLE_CHANGES or checkpoint["classes"] != list(classes):
        what = ", ".join(f"{k} {saved.get(k)!r}→{config.to_dict()[k]!r}" for k in changed)
        raise ConfigError(
            f"checkpoint '{path}' belongs to another run ({what or 'other classes'}); "
            "delete it or pass resume=False"
        )
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.history = [EpochStats(**s) for s in checkpoint["history"]]
    best = checkpoint["best"]
    run.best_epoch, run.best_val_loss, run.best_weights = (
        best["epoch"],
        best["val_loss"],
        best["model"],
    )


def _stop_early(run: _RunState, patience: int | None) -> bool:
    return bool(patience and run.history and run.history[-1].epoch - run.best_epoch >= patience)


def _run_epoch(
    run: _RunState,
    *,
    epoch: int,
    config: TrainConfig,
    train: SegmentSet,
    val: SegmentSet,
    device: torch.device,
) -> EpochStats:
    started = time.perf_counter()
    seed_everything(_epoch_seed(config.seed, epoch))
    lr = run.optimizer.param_groups[0]["lr"]
    batches = segment_batches(
        train,
        batch_size=config.batch_size,
        shuffle_seed=_epoch_seed(config.seed, epoch),
        num_workers=config.num_workers,
    )
    train_loss, train_acc = train_one_epoch(
        run.model,
        batches,
        optimizer=run.optimizer,
        device=device,
        augment=spec_augment if config.spec_augment else None,
        scheduler=run.scheduler if config.lr_schedule == "onecycle" else None,
        label_smoothing=config.label_smoothing,
    )
    val_loss, val_acc = evaluate(run.model, val, device=device, batch_size=2 * config.batch_size)
    if not math.isfinite(train_loss + val_loss):
        raise ModelError(
            f"training diverged at epoch {epoch} (train loss {train_loss}, val loss {val_loss}); "
            f"lower lr={config.lr}"
        )
    if run.scheduler is not None and config.lr_schedule != "onecycle":
        run.scheduler.step()
    if val_loss < run.best_val_loss:
        run.best_epoch, run.best_val_loss = epoch, val_loss
        run.best_weights = {
            k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()
        }
    stats = EpochStats(
        epoch, train_loss, train_acc, val_loss, val_acc, lr, time.perf_counter() - started
    )
    run.history.append(stats)
    return stats


def fit(
    *,
    config: TrainConfig,
    train: SegmentSet,
    val: SegmentSet,
    classes: list[str],
    checkpoint_dir: Path,
    resume: bool = True,
    progress: Callable[[EpochStats], None] | None = None,
) -> FitResult:
    """Train a ``config.arch`` model on ``train``, choosing the epoch of lowest loss on ``val``.

    ``train``/``val``: segments with labels indexing ``classes``. After each epoch the state is
    checkpointed to ``checkpoint_dir/checkpoint.pt`` and ``progress`` is called; with
    ``resume`` an existing checkpoint of the same run is continued from its last epoch.
    """
    if len(train) < 2 or len(val) < 1:
        raise ConfigError(
            f"need at least 2 training and 1 validation segments, got {len(train)}/{len(val)}"
        )
    device = resolve_device(config.device)
    run = _new_run(config, train, len(classes), device)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_dir / CHECKPOINT_NAME
    if resume and path.exists():
        _restore(path, run, config, classes)
        log.info("resuming %s after epoch %d", path, len(run.history))
    for epoch in range(len(run.history) + 1, config.epochs + 1):
        if _stop_early(run, config.early_stopping_patience):
            break
        stats = _run_epoch(run, epoch=epoch, config=config, train=train, val=val, device=device)
        _save_checkpoint(path, run, config, classes)
        log.info("epoch %d: %s", epoch, stats)
        if progress is not None:
            progress(stats)
    run.model.load_state_dict(run.best_weights)
    return FitResult(
        model=run.model,
        history=list(run.history),
        best_epoch=run.best_epoch,
        best_val_loss=run.best_val_loss,
        stopped_early=len(run.history) < config.epochs,
        normalisation=get_normalisation(run.model),
        checkpoint=path,
    )
