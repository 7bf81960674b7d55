from __future__ import annotations

import pytest

from genrectl.genres import genres_to_write, select_genres

CLASSES = ["blues", "jazz", "metal", "rock"]


def test_the_top_class_always_then_others_at_their_thresholds() -> None:
    probs = [0.30, 0.05, 0.40, 0.25]
    picked = select_genres(
        probs, CLASSES, thresholds={"rock": 0.2}, default_threshold=0.35, max_genres=3
    )
    # blues 0.30 is under the default 0.35; rock 0.25 passes its own 0.2.
    assert picked == [("metal", 0.40), ("rock", 0.25)]
    assert select_genres(probs, CLASSES, thresholds={}, default_threshold=0.9, max_genres=3) == [
        ("metal", 0.40)
    ]


def test_at_most_max_genres_best_first() -> None:
    probs = [0.5, 0.6, 0.7, 0.8]
    picked = select_genres(probs, CLASSES, thresholds={}, default_threshold=0.1, max_genres=2)
    assert picked == [("rock", 0.8), ("metal", 0.7)]
    one = select_genres(probs, CLASSES, thresholds={}, default_threshold=0.1, max_genres=1)
    assert one == [("rock", 0.8)]


def test_a_probability_equal_to_its_threshold_is_kept() -> None:
    picked = select_genres(
        [0.5, 0.3, 0.1, 0.1], CLASSES, thresholds={"jazz": 0.3}, default_threshold=0.9, max_genres=3
    )
    assert picked == [("blues", 0.5), ("jazz", 0.3)]


@pytest.mark.parametrize("max_genres", [0, 4])
def test_bad_arguments_name_the_value(max_genres: int) -> None:
    with pytest.raises(ValueError, match=f"max_genres={max_genres}"):
        select_genres(
            [1, 0, 0, 0], CLASSES, thresholds={}, default_threshold=0.3, max_genres=max_genres
        )
    with pytest.raises(ValueError, match="3 values for 4 classes"):
        select_genres([1, 0, 0], CLASSES, thresholds={}, default_threshold=0.3, max_genres=1)


def test_genres_to_write_starts_with_the_label_even_when_it_is_not_the_top_class() -> None:
    probs = [0.30, 0.05, 0.40, 0.25]
    # An album-level label "blues": the top class metal must pass its threshold to follow.
    assert genres_to_write(
        "blues", probs, CLASSES, thresholds={}, default_threshold=0.35, max_genres=3
    ) == ["blues", "metal"]
    assert genres_to_write(
        "blues", probs, CLASSES, thresholds={"metal": 0.5}, default_threshold=0.35, max_genres=3
    ) == ["blues"]
    assert genres_to_write(
        "metal", probs, CLASSES, thresholds={}, default_threshold=0.2, max_genres=2
    ) == ["metal", "blues"]
