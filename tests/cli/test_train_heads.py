"""``genrectl train --arch encoder-head`` / ``mn04-zeroshot``: genre heads on the pretrained
encoder, scored out of fold on a fold file grouped by artist, beside the zero-shot model
and the MFCC baseline on the same folds, then fit on everything and registered."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import soundfile as sf

from tests.audio_fixtures import noise, song, tone
from tests.cli.conftest import Invoke, json_of

SR = 22050
GENRES = ("classical", "metal", "pop")  # genres the zero-shot map knows


def _audio(genre: str, index: int, seconds: float):  # type: ignore[no-untyped-def]
    if genre == "pop":
        return song(seconds=seconds, sample_rate=SR, seed=index)
    if genre == "metal":
        return noise(seconds=seconds, sample_rate=SR, amplitude=0.2, seed=index)
    return tone(seconds=seconds, sample_rate=SR, freq=220.0 + 40 * index)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two labelled folders (6 s "full tracks", 2.5 s "clips") and a fold file grouping
    their tracks by a made-up artist, three folds."""
    root = tmp_path_factory.mktemp("collection")
    rows = []
    for folder, seconds, offset in (("full", 6.0, 0), ("clips", 2.5, 10)):
        for genre in GENRES:
            for i in range(6):
                key = f"{genre}/{genre}.{offset + i:05d}"
                path = root / folder / f"{key}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, _audio(genre, offset + i, seconds), SR, subtype="PCM_16")
                artist = f"{genre}-artist-{i // 2}"
                rows.append(
                    {
                        "path": f"{key}.wav",
                        "folder": folder,
                        "genre": genre,
                        "artist": artist,
                        "fold": i // 2,
                    }
                )
    folds = root / "folds.csv"
    with folds.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "full", root / "clips", folds


def test_a_head_is_scored_out_of_fold_per_folder_and_registered(
    genrectl: Invoke, collection: tuple[Path, Path, Path]
) -> None:
    full, clips, folds = collection
    args = ("train", str(full), str(clips), "--folds", str(folds), "--name", "head")
    summary = json_of(genrectl(*args, "--variants", "gain-20", "--json"))
    cv = summary["cross_validation"]
    assert cv["folds"] == 3 and cv["untested_tracks"] == 0
    assert set(cv["scores"]) == {"model", "zeroshot", "baseline", "model on gain-20"}
    # The encoders hear peak-normalised windows: a quieter copy scores the same.
    assert cv["scores"]["model on gain-20"]["accuracy"] == cv["scores"]["model"]["accuracy"]
    model = cv["scores"]["model"]
    assert model["tracks"] == 36 and set(model["by_source"]) == {"full", "clips"}
    assert model["by_source"]["clips"]["tracks"] == 18
    assert model["accuracy"] > 0.8  # tones, noise and a tune are easy to tell apart
    assert len(cv["choices"]) == 3 and all({"lam", "C", "w"} <= set(c) for c in cv["choices"])
    shown = json_of(genrectl("models", "show", "head", "--json"))
    assert shown["arch"] == "encoder-head" and shown["classes"] == list(GENRES)
    assert [s["encoder"] for s in shown["feature_params"]["sets"]] == ["mn04", "msd_fcn"]
    assert shown["metrics"]["evaluated_on"].startswith("out of fold, 3 folds")
    # Per-class thresholds from inner out-of-fold answers, and their out-of-fold effect.
    assert set(shown["metrics"]["class_thresholds"]) == set(GENRES)
    assert set(cv["class_thresholds"]["per_class"]) == {"full", "clips"}


def test_the_zero_shot_model_needs_no_training_and_a_map_for_every_genre(
    genrectl: Invoke, collection: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    full, _, folds = collection
    summary = json_of(
        genrectl(
            "train",
            str(full),
            "--arch",
            "mn04-zeroshot",
            "--folds",
            str(folds),
            "--name",
            "zs",
            "--json",
        )
    )
    scores = summary["cross_validation"]["scores"]
    assert scores["model"]["accuracy"] == scores["zeroshot"]["accuracy"]
    odd = tmp_path / "odd"
    for i in range(3):
        for genre in ("polka", "pop"):
            path = odd / genre / f"{genre}.{i:05d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _audio("pop", i + (10 if genre == "pop" else 0), 4.0), SR)
    failed = genrectl("train", str(odd), "--arch", "mn04-zeroshot", "--name", "zs2", expect=2)
    assert "zeroshot-map.json" in failed.output and "polka" in failed.output
