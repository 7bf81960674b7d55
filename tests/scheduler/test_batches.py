"""How a batch's tracks are cut into chunks (scheduler.batches)."""

from __future__ import annotations

import pytest

from scheduler.batches import chunked


@pytest.mark.parametrize(
    ("n", "size", "slots", "sizes"),
    [
        (100, 16, 2, [13, 13, 13, 13, 12, 12, 12, 12]),  # 8 chunks: both workers run 4
        (100, 16, 1, [15, 15, 14, 14, 14, 14, 14]),
        (1000, 16, 2, [16] * 40 + [15] * 24),
        (3, 16, 2, [3]),  # one chunk: a second process would start longer than it works
        (20, 16, 2, [10, 10]),
        (1, 16, 4, [1]),
        (0, 16, 2, []),
    ],
)
def test_chunks_are_balanced_over_the_workers(
    n: int, size: int, slots: int, sizes: list[int]
) -> None:
    chunks = list(chunked(list(range(n)), size, slots=slots))
    assert [len(c) for c in chunks] == sizes
    assert [t for c in chunks for t in c] == list(range(n))  # every track once, in order
