from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from db.engine import dispose_engines
from db.migrate import upgrade
from genrectl.errors import ConfigError, ShardError
from genrectl.settings import Settings
from worker.features.mel import FeatureParams
from worker.training import runs as trainruns
from worker.training.cache import INDEX_NAME
from worker.training.data import FeatureStore, folder_data, genre_of_tag, load_genre_map
from worker.training.datasets import SegmentSet
from worker.training.job import TrainSpec, run_training, train_job
from worker.training.loop import EpochStats, TrainConfig
from worker.training.runs import TrainReporter

SR = 22050
FAST = TrainConfig(epochs=1, batch_size=8, seed=3)


def _signal(genre: str, seconds: float, index: int) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    rng = np.random.default_rng(index)
    if genre == "tones":
        audio = 0.3 * np.sin(2 * np.pi * (220 + 55 * index) * t)
    elif genre == "noise":
        audio = 0.1 * rng.standard_normal(len(t))
    else:  # clicks: a beat whose tempo varies by track
        audio = np.zeros(len(t))
        audio[:: round(SR * (0.2 + 0.02 * index))] = 0.8
    return audio.astype(np.float32)


def make_labelled_folder(
    root: Path, *, genres: tuple[str, ...] = ("clicks", "noise", "tones"), per_genre: int = 6
) -> Path:
    """GTZAN's layout, ``root/<genre>/<genre>.0000N.wav``: 6.5 to 12.5 s mono WAVs at 22050
    Hz (one or two 6 s segments each), of tones, white noise or clicks."""
    for genre in genres:
        for i in range(per_genre):
            path = root / genre / f"{genre}.{i:05d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _signal(genre, 6.5 + i % 7, i), SR, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_labelled_folder(tmp_path_factory.mktemp("labelled"))


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings.from_env(
        {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_DEVICE": "cpu"}
    )
    upgrade(settings)
    yield settings
    dispose_engines()


def _cache_files(settings: Settings) -> dict[str, bytes]:
    root = settings.data_dir / "training-cache"
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_genre_tags_map_to_classes(tmp_path: Path) -> None:
    (tmp_path / "genre-map.json").write_text('{"Krautrock": "rock", "Pop": null}')
    genre_map = load_genre_map(tmp_path)
    cases = {
        "Hip-Hop": "hiphop",
        "hip hop": "hiphop",
        "Rap": "hiphop",
        "Rock & Roll": "rock",
        "  Jazz ": "jazz",
        "Rock/Pop": "rock",
        "KRAUTROCK": "rock",
        "Pop": None,
        "(17)": None,
        "": None,
        None: None,
    }
    assert {tag: genre_of_tag(tag, genre_map) for tag in cases} == cases


def test_bad_genre_map_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "genre-map.json").write_text('["rock"]')
    with pytest.raises(ConfigError, match=r"genre-map\.json"):
        load_genre_map(tmp_path)


def test_second_featurizing_decodes_nothing(
    settings: Settings, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.audio.decode

    calls: list[Path] = []
    real = worker.audio.decode.load_windows
    monkeypatch.setattr(
        worker.audio.decode, "load_windows", lambda p, **kw: calls.append(p) or real(p, **kw)
    )
    first = folder_data(settings, folder, FeatureStore(settings, FeatureParams()))
    assert len(calls) == 18 and len(first.tracks) == 18
    snapshot = _cache_files(settings)
    assert INDEX_NAME in "".join(snapshot)
    store = FeatureStore(settings, FeatureParams())
    second = folder_data(settings, folder, store)
    assert len(calls) == 18 and store.cache.decoded == 0
    assert _cache_files(settings) == snapshot  # index and shards untouched, none added
    assert second == first


def test_unusable_and_duplicate_files_are_dropped_and_remembered(
    settings: Settings, folder: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    make_labelled_folder(data_dir, genres=("noise", "tones"))
    sf.write(data_dir / "noise" / "silent.wav", np.zeros(7 * SR, np.float32), SR)
    (data_dir / "tones" / "copy.wav").write_bytes(
        (data_dir / "noise" / "noise.00000.wav").read_bytes()
    )
    data = folder_data(settings, data_dir, FeatureStore(settings, FeatureParams()))
    assert [u["key"] for u in data.description["unusable"]] == ["noise/silent"]
    assert "silent" in data.description["unusable"][0]["reason"]
    assert data.description["duplicates_dropped"] == ["tones/copy"]
    assert len(data.tracks) == 12
    store = FeatureStore(settings, FeatureParams())
    folder_data(settings, data_dir, store)
    assert store.cache.decoded == 0  # the failure is cached too


def test_damaged_cache_is_refused_and_a_deleted_shard_recomputed(
    settings: Settings, folder: Path
) -> None:
    from worker.training.data import segment_set

    data = folder_data(settings, folder, FeatureStore(settings, FeatureParams()))
    [shard] = (settings.data_dir / "training-cache").rglob("shard-*.h5")
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(ShardError, match=r"checksum mismatch.*delete"):
        segment_set(data, data.keys[:2], FeatureStore(settings, FeatureParams()))
    shard.unlink()
    store = FeatureStore(settings, FeatureParams())
    again = folder_data(settings, folder, store)
    assert store.cache.decoded == 18
    assert len(segment_set(again, again.keys, store)[0]) == 18  # one segment per file


class Recorder(TrainReporter):
    def __init__(self, stop_at: int | None = None) -> None:
        self.epochs: list[tuple[str, int]] = []
        self.stop_at = stop_at

    def epoch(self, run: str, stats: EpochStats, epochs: int) -> None:
        self.epochs.append((run, stats.epoch))
        if stats.epoch == self.stop_at:
            raise KeyboardInterrupt


Part = tuple[set[str], int | None, float | None]


def _record_parts(monkeypatch: pytest.MonkeyPatch) -> list[Part]:
    """Capture the tracks, augmentation seed and window hop of every segment set
    run_training builds."""
    parts: list[Part] = []
    real = trainruns.segment_set

    def spy(
        data: Any,
        keys: Any,
        store: Any,
        *,
        augment_seed: int | None = None,
        hop_seconds: float | None = None,
    ) -> Any:
        parts.append((set(keys), augment_seed, hop_seconds))
        return real(data, keys, store, augment_seed=augment_seed, hop_seconds=hop_seconds)

    monkeypatch.setattr(trainruns, "segment_set", spy)
    return parts


def test_training_splits_by_track_without_leakage(
    settings: Settings, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = _record_parts(monkeypatch)
    spec = TrainSpec(name="leak-check", data=str(folder), config=FAST, augment=True)
    outcome = run_training(settings, spec)
    (train, train_seed, _), (val, val_seed, _), (test, test_seed, _) = parts
    assert not train & val and not train & test and not val & test
    assert len(train | val | test) == 18
    assert (train_seed, val_seed, test_seed) == (3, None, None)  # augment the train part only
    sizes = outcome.training["split"]["sizes"]
    assert sizes["train"]["augmented_copies"] == sizes["train"]["tracks"] == 12
    assert sizes["test"]["augmented_copies"] == 0
    assert (sizes["val"]["tracks"], sizes["test"]["tracks"]) == (3, 3)
    for name in ("confusion.png", "confusion-segments.png", "history.png"):
        assert (settings.model_dir / "leak-check" / name).read_bytes()[:4] == b"\x89PNG"
    assert not (settings.data_dir / "checkpoints" / "leak-check").exists()


def test_overlapping_windows_are_for_the_training_part_only(
    settings: Settings, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = _record_parts(monkeypatch)
    spec = TrainSpec(name="hop", data=str(folder), config=FAST, train_hop_seconds=1.0)
    outcome = run_training(settings, spec)
    (train, _, hop), (grid_train, _, grid_hop), (val, _, val_hop), (test, _, test_hop) = parts
    assert (hop, grid_hop, val_hop, test_hop) == (1.0, None, None, None)
    assert train == grid_train and not train & val and not train & test
    sizes = outcome.training["split"]["sizes"]
    # 6.5 to 12.5 s tracks: 1 or 2 grid segments each, 1 to 7 one-second windows
    assert sizes["train"]["segments"] > 2 * sizes["train"]["tracks"]
    assert sizes["test"]["segments"] <= 2 * sizes["test"]["tracks"]
    assert outcome.training["train_hop_seconds"] == 1.0
    again = run_training(
        settings, TrainSpec(name="hop-again", data=str(folder), config=FAST, train_hop_seconds=1.0)
    )
    assert again.decoded_files == 0  # the windows come from the training cache
    with pytest.raises(ConfigError, match="train_hop_seconds=7"):
        TrainSpec(name="x", data=str(folder), train_hop_seconds=7.0)


def test_cross_validation_tests_every_track_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_labelled_folder(tmp_path / "cv", genres=("noise", "tones"), per_genre=12)
    parts = _record_parts(monkeypatch)
    spec = TrainSpec(name="cv", data=str(root), config=FAST, folds=2)
    outcome = run_training(settings, spec)
    cv = outcome.metrics["cross_validation"]
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2
    assert set(cv["track_accuracy"]) == {"mean", "std"}
    assert 0.0 <= cv["baseline_track_accuracy"]["mean"] <= 1.0
    assert np.asarray(cv["track_confusion"]).sum() == 24  # each track tested once
    fold_tests = [parts[2][0], parts[5][0]]
    assert not fold_tests[0] & fold_tests[1] and len(fold_tests[0] | fold_tests[1]) == 24
    for i in range(3):  # within each fold and the final split: disjoint parts
        train, val, test = (parts[3 * i + j][0] for j in range(3))
        assert not (train & val) | (train & test) | (val & test)
    assert "one split" in outcome.metrics["note"]


def test_interrupted_training_resumes_from_its_checkpoint(settings: Settings, folder: Path) -> None:
    spec = TrainSpec(name="resumed", data=str(folder), config=TrainConfig(epochs=2, batch_size=8))
    with pytest.raises(KeyboardInterrupt):
        run_training(settings, spec, reporter=Recorder(stop_at=1))
    assert list((settings.data_dir / "checkpoints" / "resumed").glob("final-*/checkpoint.pt"))
    again = Recorder()
    outcome = run_training(settings, spec, reporter=again)
    assert again.epochs == [("model", 2)]  # epoch 1 came from the checkpoint
    assert [h["epoch"] for h in outcome.metrics["history"]] == [1, 2]


def test_train_job_checks_its_spec_and_tolerates_redelivery(
    settings: Settings, folder: Path
) -> None:
    with pytest.raises(ConfigError, match="unknown fields"):
        train_job(settings, spec={"name": "x", "data": str(folder), "colour": "red"})
    with pytest.raises(ConfigError, match="segment_seconds=5"):
        train_job(settings, spec={"name": "x", "data": str(folder), "segment_seconds": 5})
    with pytest.raises(ConfigError, match="name="):
        train_job(settings, spec={"name": "../evil", "data": str(folder)})
    spec = TrainSpec(name="job", data=str(folder), config=FAST).to_dict()
    first = train_job(settings, spec=spec)
    assert first["name"] == "job" and first["decoded_files"] >= 0
    assert train_job(settings, spec=spec) == {
        "model_id": first["model_id"],
        "name": "job",
        "already_registered": True,
    }
    with pytest.raises(ConfigError, match="'job' exists"):
        run_training(settings, TrainSpec.from_dict(spec))


def test_split_files_must_match_the_data(settings: Settings, folder: Path) -> None:
    split = (("tones/tones.00000",), ("nope/nope.00001",), ("noise/noise.00000",))
    spec = TrainSpec(name="s", data=str(folder), config=FAST, split=split)
    with pytest.raises(ConfigError, match=r"none of the 1 val tracks.*'nope/nope\.00001'"):
        run_training(settings, spec)


def test_segment_set_labels_tracks_by_position(settings: Settings, folder: Path) -> None:
    from worker.training.data import segment_set

    store = FeatureStore(settings, FeatureParams())
    data = folder_data(settings, folder, store)
    keys = ["noise/noise.00001", "tones/tones.00005"]
    part, counts = segment_set(data, keys, store, augment_seed=0)
    assert isinstance(part, SegmentSet) and part.mel.dtype == np.float16
    assert counts == {"tracks": 2, "segments": len(part), "augmented_copies": 2}
    assert set(part.track_ids.tolist()) == {data.by_key()[k] for k in keys}
    assert set(part.labels.tolist()) == {data.classes.index("noise"), data.classes.index("tones")}


@pytest.mark.gtzan
@pytest.mark.slow
def test_gtzan_three_epochs(settings: Settings) -> None:
    root = os.environ.get("GENRECTL_GTZAN_DIR")
    if not root:
        pytest.skip("set GENRECTL_GTZAN_DIR to a GTZAN folder (a folder per genre) to run")
    spec = TrainSpec(name="gtzan", data=root, config=TrainConfig(epochs=3))
    outcome = run_training(settings, spec)
    assert len(outcome.training["classes"]) == 10
    sizes = outcome.training["split"]["sizes"]
    n_tracks = sum(sizes[p]["tracks"] for p in ("train", "val", "test"))
    assert sizes["test"]["tracks"] == pytest.approx(0.1 * n_tracks, abs=10)
    assert outcome.metrics["track_accuracy"] > 0.2  # chance is 0.1
