from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from db.registry import starter_metadata
from tests.cli.conftest import Invoke, json_of
from tests.worker.training.test_job import SR, _signal, make_labelled_folder

# The CNN path (the default arch is a head on mn04; its tests are in test_train_heads.py).
FAST = ("--epochs", "1", "--batch-size", "8")
TINY = ("--arch", "gapcnn", *FAST)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_labelled_folder(tmp_path_factory.mktemp("labelled"))


def _cache(home: Path) -> dict[str, bytes]:
    root = home / "data" / "training-cache"
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _is_png(path: str | Path) -> bool:
    return Path(path).read_bytes()[:4] == b"\x89PNG"


def test_train_registers_a_model_and_a_second_run_decodes_nothing(
    genrectl: Invoke, labelled: Path, tmp_path: Path
) -> None:
    first = json_of(genrectl("train", str(labelled), *TINY, "--augment", "--name", "one", "--json"))
    # Every file on the 6 s grid; the 12 train tracks pitch-shifted on the grid (the baseline
    # learns from the grid) and cut into 1 s-hop windows, as recorded and shifted.
    assert first["decoded_files"] == 18 + 12 + 12 + 12
    assert first["split"]["sizes"]["train"]["tracks"] == 12
    assert all(
        _is_png(first["artefacts"][k]) for k in ("confusion", "confusion_segments", "history")
    )
    assert 0.0 <= first["track_accuracy"] <= 1.0 and "track_accuracy" in first["baseline"]
    listed = {m["name"]: m for m in json_of(genrectl("models", "list", "--json"))}
    assert listed["one"]["arch"] == "gapcnn" and listed["one"]["track_accuracy"] is not None
    home = tmp_path / "home"
    snapshot = _cache(home)
    second = json_of(
        genrectl("train", str(labelled), *TINY, "--augment", "--name", "two", "--json")
    )
    assert second["decoded_files"] == 0
    assert _cache(home) == snapshot  # same index, no new shard
    shown = json_of(genrectl("models", "show", "two", "--json"))
    assert shown["classes"] == ["clicks", "noise", "tones"]
    assert shown["training"]["split"]["kind"] == "seeded 80/10/10 by track"
    assert shown["training"]["config"]["epochs"] == 1
    assert shown["metrics"]["per_genre"]["noise"]["support"] == 1


def test_train_prints_a_summary(genrectl: Invoke, tmp_path: Path) -> None:
    data = make_labelled_folder(tmp_path / "cv", genres=("noise", "tones"), per_genre=12)
    out = genrectl("train", str(data), *TINY, "--name", "text", "--folds", "2").stdout
    assert "Registered model text" in out
    assert "MFCC+LR baseline" in out and "2-fold CV" in out and "±" in out
    assert "confusion.png" in out and "cv-confusion.png" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--segment-seconds", "5"), "5 is not supported yet: only 6"),
        (("--from-library",), "exactly one"),
        (("--folds", "2", "--split-file", "{data}"), "cannot be cross-validated"),
        (("--arch", "gapcnn", "--pretrained", "{data}/noise/noise.00000.wav"), "not gapcnn"),
        (("--arch", "gapcnn", "--variants", "mp3-128k"), "score genre heads"),
        (("--folds", "{data}/nofile.csv"), "neither a number of folds nor a fold file"),
        (("--split-file", "{data}/noise/noise.00000.wav"), "three files"),
        (("--split-file", "{data}"), "has no train file"),
        (("--name", "bad name!"), "name='bad name!'"),
        (("--arch", "resnet"), "'resnet' is not one of"),
    ],
)
def test_bad_flags_name_the_value(
    genrectl: Invoke, labelled: Path, args: tuple[str, ...], message: str
) -> None:
    filled = [a.format(data=labelled) for a in args]
    result = genrectl("train", str(labelled), *filled, expect=2)
    assert message in result.output


def test_a_taken_name_is_refused(genrectl: Invoke, labelled: Path) -> None:
    genrectl("train", str(labelled), *TINY, "--name", "taken")
    assert "'taken' exists" in genrectl("train", str(labelled), "--name", "taken", expect=2).output


def test_split_files_fix_the_split(genrectl: Invoke, labelled: Path, tmp_path: Path) -> None:
    folder = tmp_path / "split"
    folder.mkdir()
    names = {g: [f"{g}.{i:05d}" for i in range(6)] for g in ("clicks", "noise", "tones")}
    (folder / "train.txt").write_text("\n".join(n for g in names.values() for n in g[:4]))
    (folder / "valid.txt").write_text("# GTZAN ids\nclicks/clicks.00004.wav\nnoise.00004\n")
    (folder / "test.txt").write_text("tones.00004\ntones.00005\nmissing.00001\n")
    summary = json_of(
        genrectl("train", str(labelled), *TINY, "--split-file", str(folder), "--json")
    )
    split = summary["split"]
    assert split["kind"] == "split files" and split["not_in_data"] == 1
    assert [split["sizes"][p]["tracks"] for p in ("train", "val", "test")] == [12, 2, 2]


def _tagged_flac(path: Path, *, genre: str | None, signal: str, index: int) -> None:
    from mutagen.flac import FLAC

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _signal(signal, 7.0, index), SR, format="FLAC")
    if genre is not None:
        tags = FLAC(path)
        tags["genre"] = genre
        tags.save()


def test_train_from_library_uses_genre_tags(genrectl: Invoke, tmp_path: Path) -> None:
    music = tmp_path / "music"
    hiphop = ["Hip-Hop", "Rap", "hip hop", "Hip Hop", "RAP", "Hip-Hop"]
    rock = ["Rock & Roll", "Rock", "rock", "Rock and Roll", "Classic Rock", "Krautrock"]
    for i, tag in enumerate(hiphop):
        _tagged_flac(music / f"h{i}.flac", genre=tag, signal="clicks", index=i)
    for i, tag in enumerate(rock):
        _tagged_flac(music / f"r{i}.flac", genre=tag, signal="noise", index=i)
    _tagged_flac(music / "untagged.flac", genre=None, signal="tones", index=1)
    _tagged_flac(music / "polka.flac", genre="Polka", signal="tones", index=2)
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "genre-map.json").write_text('{"krautrock": "rock"}')
    genrectl("ingest", str(music))  # labelled by the bundled starter model first
    genrectl("label", str(music / "untagged.flac"), "rock")  # the user's label is training data
    before = {t["path"]: t["model_genre"] for t in json_of(genrectl("tracks", "list", "--json"))}
    args = ("train", "--from-library", "--name", "lib", "--promote", "--json")
    summary = json_of(genrectl(*args))
    data = summary["data"]
    assert data["source"] == "library" and data["without_usable_tag"] == 0
    assert data["user_labels"] == 1
    assert data["rare_genres_dropped"] == {"polka": 1}
    assert data["tracks_per_genre"] == {"hiphop": 6, "rock": 7}
    assert summary["decoded_files"] == 0  # the starter's encoder features are in the shards
    assert json_of(genrectl("models", "show", "lib", "--json"))["classes"] == ["hiphop", "rock"]
    after = {t["path"]: t["model_genre"] for t in json_of(genrectl("tracks", "list", "--json"))}
    assert set(after.values()) <= {"hiphop", "rock", "unknown"}
    changed = sum(1 for path, genre in after.items() if before[path] != genre)
    assert summary["labelling"] == {"model": "lib", "labelled": 14, "changed_genre": changed}
    promoted = {m["name"]: m["promoted"] for m in json_of(genrectl("models", "list", "--json"))}
    assert promoted == {starter_metadata()["name"]: False, "lib": True}  # type: ignore[index]
    # A CNN reads the reference mel, which the library does not hold: decoded once, cached.
    args = ("train", "--from-library", *TINY, "--train-hop", "6", "--json")
    cnn = json_of(genrectl(*args, "--name", "lib-cnn"))
    assert cnn["decoded_files"] == 13 and cnn["split"]["sizes"]["train"]["tracks"] == 9
    assert json_of(genrectl(*args, "--name", "lib-cnn-2"))["decoded_files"] == 0


def test_evaluate_scores_a_model_on_a_folder(
    genrectl: Invoke, labelled: Path, tmp_path: Path
) -> None:
    genrectl("train", str(labelled), *TINY, "--name", "judge")
    holdout = make_labelled_folder(
        tmp_path / "holdout", genres=("noise", "tones", "jazz"), per_genre=2
    )
    report = json_of(genrectl("evaluate", "judge", str(holdout), "--json"))
    assert report["n_tracks"] == 4 and report["skipped_genres"] == {"jazz": 2}
    assert np.asarray(report["track_confusion"]).sum() == 4
    assert _is_png(report["confusion_png"])
    text = genrectl("evaluate", "judge", str(holdout)).stdout
    assert "precision" in text and "skipped 2 tracks of 'jazz'" in text
    assert (
        "no model named 'nobody'" in genrectl("evaluate", "nobody", str(holdout), expect=3).output
    )


def _reference_table(genrectl: Invoke, data: Path, out: Path, *archs: str) -> dict:
    flags = [f"--arch={a}" for a in archs]
    args = ("experiment", "reference-table", str(data), *FAST, *flags, "--output-dir", str(out))
    return json_of(genrectl(*args, "--json"))


def test_reference_table_for_the_cnn(genrectl: Invoke, labelled: Path, tmp_path: Path) -> None:
    table = _reference_table(genrectl, labelled, tmp_path / "out", "cnn")
    rows = {(r["arch"], r["variant"]): r for r in table["rows"]}
    assert set(rows) == {("cnn", "tracks"), ("cnn", "augmented"), ("cnn", "segments")}
    assert rows[("cnn", "segments")]["reference_accuracy"] == pytest.approx(0.658)
    assert all(_is_png(r["confusion_png"]) for r in rows.values())
    assert (tmp_path / "out" / "table.json").is_file()
    assert table["tracks"] == {"30.0": 18, "6.0": 18}


@pytest.mark.slow
def test_reference_table_all_six(genrectl: Invoke, labelled: Path, tmp_path: Path) -> None:
    small = make_labelled_folder(tmp_path / "small", genres=("noise", "tones"))
    table = _reference_table(genrectl, small, tmp_path / "out")
    assert [(r["arch"], r["input_size"]) for r in table["rows"]] == [
        *[("cnn", "native")] * 3,
        *[("densenet121", "224")] * 3,
    ]
    text = genrectl("experiment", "reference-table", str(labelled), *FAST, "--arch", "cnn").stdout
    assert "65.8%" in text and "reference" in text


@pytest.mark.slow
def test_sigterm_stops_training_says_what_is_kept_and_registers_nothing(
    labelled: Path, tmp_path: Path
) -> None:
    import signal

    from tests.cli.runs import Run, genrectl, leftovers
    from tests.scheduler.cluster import wait_for

    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_STARTER_MODEL": "0"}
    args = ("train", str(labelled), "--arch", "gapcnn", "--batch-size", "8", "--train-hop", "6")
    run = Run.start(env, *args, "--epochs", "200", "--name", "stopme", logs=tmp_path / "logs")
    checkpoints = tmp_path / "home" / "data" / "checkpoints" / "stopme"
    try:
        wait_for(
            lambda: any(checkpoints.rglob("checkpoint.pt")),
            timeout=180,
            what="the first epoch's checkpoint",
            every=0.2,
        )
        run.process.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 143, run.stderr
    finally:
        run.stop()
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted (SIGTERM): stopme is not registered;"), run.stderr
    assert "the same command with `--name stopme` resumes from there" in last
    assert any(checkpoints.rglob("checkpoint.pt"))  # kept for the resumed run (test_loop)
    assert leftovers(tmp_path / "home") == []
    assert "stopme" not in genrectl(env, "models", "list").stdout
