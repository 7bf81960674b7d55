"""bench/bench_inference.py at a tiny size: each table has a row per model, and every rate
it measured is positive (no timed assertions: the machine's speed is not under test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import bench_inference as bench
from worker.training.datasets import SegmentSet


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def test_labelling_table_has_a_positive_rate_per_model_and_batch(tmp_path: Path) -> None:
    models = bench.subjects(tmp_path)
    table = bench.labelling_table(
        models, (1, 2), threads_batch=2, min_seconds=0.0, skip_seconds=600.0
    )
    rows = [_cells(row) for row in table[2:]]
    assert [row[0] for row in rows] == [model.name for model in models]
    assert {"densenet121 (224)", "encoder-head", "mn04 encoder", "msd_fcn encoder"} <= {
        row[0] for row in rows
    }
    for row in rows:
        assert len(row) == len(_cells(table[0]))
        assert all(float(cell) > 0 for cell in row[2:]), row


def test_a_batch_that_would_take_too_long_is_skipped() -> None:
    cnn = bench.mel_subject("cnn", "native")
    table = bench.labelling_table(
        [cnn], (1, 256), threads_batch=256, min_seconds=0.0, skip_seconds=0.0
    )
    assert _cells(table[2])[2:5] == [_cells(table[2])[2], "skipped (time)", "skipped (time)"]
    assert float(_cells(table[2])[2]) > 0


def test_training_table_sets_each_model_beside_the_shard_reader(tmp_path: Path) -> None:
    table = bench.training_table(
        tmp_path,
        n_tracks=12,
        mel_archs=[("cnn", "native")],
        head_archs=["encoder-head", "mn04-zeroshot"],
        batch_size=8,
        min_seconds=0.0,
        skip_seconds=600.0,
    )
    header, rows = _cells(table[0]), {_cells(row)[0]: _cells(row) for row in table[2:]}
    assert list(rows) == ["cnn (native)", "encoder-head", "mn04-zeroshot"]
    cnn, head, zeroshot = rows.values()
    column = header.index
    for row in (cnn, head):
        for name in ("training rows/s", "shard reader rows/s", "reader MB/s"):
            assert float(row[column(name)]) > 0, (row, name)
        assert row[column("fed?")] in ("yes", "no")
    assert float(cnn[column("epoch batches rows/s")]) > 0
    assert zeroshot[column("training rows/s")] == "no training"
    assert float(zeroshot[column("shard reader rows/s")]) > 0


def test_a_training_step_that_would_take_too_long_falls_back_to_the_probe_batch() -> None:
    rng = np.random.default_rng(0)
    train = SegmentSet(
        rng.uniform(-80, 0, (16, 90, 130)).astype(np.float16),
        np.arange(16) % 10,
        np.arange(16) // 4,
    )
    used, rate = bench.mel_training_rate(
        "cnn", "native", train, batch_size=16, min_seconds=0.0, skip_seconds=0.0
    )
    assert used == bench.PROBE_BATCH
    assert rate > 0
