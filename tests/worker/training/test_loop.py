from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from genrectl.errors import ConfigError
from tests.worker.synthetic_mel import synthetic_set
from worker.training.datasets import SegmentSet, mel_statistics
from worker.training.loop import (
    CHECKPOINT_NAME,
    EpochStats,
    TrainConfig,
    evaluate,
    fit,
    steps_per_epoch,
)

CLASSES = ["drone", "pulse"]
FAST = TrainConfig(arch="cnn", epochs=3, batch_size=8, lr=3e-3, seed=7, device="cpu")


@pytest.fixture(scope="module")
def train_set() -> SegmentSet:
    return synthetic_set(n_tracks=12, segments_per_track=2, seed=1)


@pytest.fixture(scope="module")
def val_set() -> SegmentSet:
    return synthetic_set(n_tracks=8, segments_per_track=2, seed=2, first_track_id=100)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("arch", ["cnn", "gapcnn"])
def test_training_learns_to_tell_synthetic_genres_apart(
    tmp_path: Path, train_set: SegmentSet, val_set: SegmentSet, arch: str
) -> None:
    seen: list[EpochStats] = []
    result = fit(
        config=replace(FAST, arch=arch, label_smoothing=0.1 if arch == "gapcnn" else 0.0),
        train=train_set,
        val=val_set,
        classes=CLASSES,
        checkpoint_dir=tmp_path,
        progress=seen.append,
    )
    assert [s.epoch for s in result.history] == [1, 2, 3] == [s.epoch for s in seen]
    best = result.history[result.best_epoch - 1]
    assert best.val_loss == result.best_val_loss == min(s.val_loss for s in result.history)
    _, val_acc = evaluate(result.model, val_set, device=torch.device("cpu"))
    assert val_acc == best.val_acc
    assert val_acc >= 0.9  # chance is 0.5
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert not result.stopped_early
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    assert result.normalisation["mean"] == pytest.approx(float(train_set.mel.mean()), abs=0.05)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
    tmp_path: Path, train_set: SegmentSet, val_set: SegmentSet, schedule: str
) -> None:
    config = replace(FAST, lr_schedule=schedule)
    straight = fit(
        config=config,
        train=train_set,
        val=val_set,
        classes=CLASSES,
        checkpoint_dir=tmp_path / "straight",
    )

    def crash_after_epoch_2(stats: EpochStats) -> None:
        if stats.epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(
            config=config,
            train=train_set,
            val=val_set,
            classes=CLASSES,
            checkpoint_dir=tmp_path / "resumed",
            progress=crash_after_epoch_2,
        )
    resumed_epochs: list[int] = []
    resumed = fit(
        config=config,
        train=train_set,
        val=val_set,
        classes=CLASSES,
        checkpoint_dir=tmp_path / "resumed",
        progress=lambda s: resumed_epochs.append(s.epoch),
    )
    assert resumed_epochs == [3]
    assert resumed.best_epoch == straight.best_epoch
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert {**asdict(a), "seconds": 0} == {**asdict(b), "seconds": 0}
    straight_state, resumed_state = straight.model.state_dict(), resumed.model.state_dict()
    for key, value in straight_state.items():
        assert torch.equal(value, resumed_state[key]), key


def test_onecycle_warms_up_then_anneals_to_zero_per_batch(
    tmp_path: Path, train_set: SegmentSet, val_set: SegmentSet
) -> None:
    config = replace(FAST, lr_schedule="onecycle", epochs=4, batch_size=5)
    per_epoch = steps_per_epoch(len(train_set), config.batch_size)
    assert (per_epoch, steps_per_epoch(11, 5), steps_per_epoch(12, 5)) == (5, 2, 3)
    result = fit(
        config=config, train=train_set, val=val_set, classes=CLASSES, checkpoint_dir=tmp_path
    )
    lrs = [s.lr for s in result.history]  # the lr each epoch started with
    assert lrs[0] == pytest.approx(config.lr / 25)
    assert lrs[1] > lrs[2] > lrs[3] > 0  # warm-up (2 of 20 steps) is over within epoch 1
    assert lrs[1] < config.lr


def test_resume_refuses_a_checkpoint_of_another_run(
    tmp_path: Path, train_set: SegmentSet, val_set: SegmentSet
) -> None:
    one_epoch = replace(FAST, epochs=1)
    fit(config=one_epoch, train=train_set, val=val_set, classes=CLASSES, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"lr 0\.003→0\.01"):
        fit(
            config=replace(one_epoch, lr=0.01),
            train=train_set,
            val=val_set,
            classes=CLASSES,
            checkpoint_dir=tmp_path,
        )
    # A finished run asked again (at-least-once delivery) trains nothing more.
    again = fit(
        config=one_epoch,
        train=train_set,
        val=val_set,
        classes=CLASSES,
        checkpoint_dir=tmp_path,
        progress=lambda s: pytest.fail("no epoch should run"),
    )
    assert len(again.history) == 1


def test_early_stopping_keeps_the_best_epoch(
    tmp_path: Path, train_set: SegmentSet, val_set: SegmentSet
) -> None:
    # Validation labels are swapped, so the better the model learns, the worse it validates.
    swapped = SegmentSet(val_set.mel, 1 - val_set.labels, val_set.track_ids)
    config = replace(FAST, epochs=10, early_stopping_patience=2, lr_schedule="constant")
    result = fit(
        config=config, train=train_set, val=swapped, classes=CLASSES, checkpoint_dir=tmp_path
    )
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch": "vgg"}, "arch='vgg'"),
        ({"epochs": 0}, "epochs=0"),
        ({"batch_size": 1}, "batch_size=1"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"early_stopping_patience": 0}, "early_stopping_patience=0"),
        ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
        ({"lr_schedule": "step"}, "lr_schedule='step'"),
    ],
)
def test_train_config_names_the_bad_value(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**change)  # type: ignore[arg-type]


def test_train_config_round_trips_through_a_dict() -> None:
    assert TrainConfig.from_dict(FAST.to_dict()) == FAST


def test_mel_statistics_match_numpy_in_chunks() -> None:
    mel = np.random.default_rng(0).normal(-40, 15, size=(50, 9, 13)).astype(np.float16)
    stats = mel_statistics(mel, chunk=7)
    assert stats["mean"] == pytest.approx(float(mel.astype(np.float64).mean()))
    assert stats["std"] == pytest.approx(float(mel.astype(np.float64).std()))


def test_densenet_trains_through_fit(tmp_path: Path) -> None:
    train = synthetic_set(n_tracks=4, segments_per_track=2, seed=3)
    val = synthetic_set(n_tracks=2, segments_per_track=1, seed=4, first_track_id=50)
    config = replace(FAST, arch="densenet121", epochs=1, batch_size=4)
    result = fit(config=config, train=train, val=val, classes=CLASSES, checkpoint_dir=tmp_path)
    assert result.best_epoch == 1
    assert np.isfinite(result.best_val_loss)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_uses_bf16_and_still_learns(
    tmp_path: Path, train_set: SegmentSet, val_set: SegmentSet
) -> None:
    result = fit(
        config=replace(FAST, device="cuda"),
        train=train_set,
        val=val_set,
        classes=CLASSES,
        checkpoint_dir=tmp_path,
    )
    assert next(result.model.parameters()).is_cuda
    assert result.history[result.best_epoch - 1].val_acc >= 0.9
