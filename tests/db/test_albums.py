"""Album consistency's rules (db.albums): the key, the combined evidence, the disagreement."""

from __future__ import annotations

import pytest

from db.albums import UNKNOWN, Evidence, album_key, combine, decide_album

CLASSES = ["blues", "jazz", "metal"]
LOW = [0.35, 0.35, 0.35]


def _track(tid: int, probs: list[float], *, seconds: float = 30.0, **kw: object) -> Evidence:
    top = max(range(3), key=lambda i: probs[i])
    genre = CLASSES[top] if probs[top] >= 0.35 else UNKNOWN
    return Evidence(tid, probs, genre, probs[top], seconds, **kw)  # type: ignore[arg-type]


def test_album_key_is_album_artist_and_album_else_the_folder() -> None:
    a = album_key("/m/x/1.flac", artist="Miles Davis", album_artist=None, album="Kind of Blue")
    b = album_key("/m/y/2.mp3", artist="miles  davis", album_artist=None, album="kind of blue ")
    assert a == b
    featuring = album_key("/m/3.mp3", artist="Miles feat. X", album_artist="Miles Davis", album="K")
    assert featuring == album_key("/m/4.mp3", artist="Miles Davis", album_artist=None, album="K")
    assert album_key("/m/z/5.wav", artist="A", album_artist=None, album=None) == "dir:/m/z"


def test_a_weak_track_takes_the_albums_genre() -> None:
    album = [_track(i, [0.1, 0.8, 0.1]) for i in range(4)]
    weak = _track(9, [0.34, 0.33, 0.33])  # unclear on its own
    split = _track(8, [0.5, 0.4, 0.1])  # blues by a little: not a clear disagreement
    decision = decide_album([*album, weak, split], CLASSES, LOW)
    assert decision.genre == "jazz"
    assert decision.tracks[9][:1] == ("jazz",) and decision.tracks[8][0] == "jazz"
    assert decision.tracks[9][2] is False


def test_a_track_that_clearly_disagrees_keeps_its_own_genre() -> None:
    album = [_track(i, [0.1, 0.8, 0.1]) for i in range(4)]
    bonus = _track(9, [0.02, 0.03, 0.95])
    decision = decide_album([*album, bonus], CLASSES, LOW)
    assert decision.genre == "jazz"
    assert decision.tracks[9] == ("metal", 0.95, True)


def test_a_compilation_of_different_genres_keeps_every_track_apart() -> None:
    tracks = [
        _track(1, [0.9, 0.05, 0.05]),
        _track(2, [0.05, 0.9, 0.05]),
        _track(3, [0.05, 0.05, 0.9]),
    ]
    decision = decide_album(tracks, CLASSES, [0.5, 0.5, 0.5])
    assert decision.genre == UNKNOWN  # the mean is a third each: unclear
    assert {t: g for t, (g, _, _) in decision.tracks.items()} == {1: "blues", 2: "jazz", 3: "metal"}


def test_the_users_label_is_evidence_and_not_music_is_none() -> None:
    unsure = [_track(i, [0.4, 0.3, 0.3]) for i in range(3)]
    labelled = [_track(i, [0.4, 0.3, 0.3], user_genre="jazz") for i in range(3, 7)]
    talk = _track(9, [0.0, 0.0, 1.0], not_music=True)
    decision = decide_album([*unsure, *labelled, talk], CLASSES, LOW)
    assert decision.genre == "jazz"
    assert decision.tracks[9][0] == "metal" and decision.tracks[9][2] is True  # kept as it was


def test_combine_weights_by_seconds_and_the_product_is_sharper() -> None:
    full, clip = [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]
    weighted = combine([full, clip], [1.0, 0.1], method="mean")
    assert weighted[0] > 0.7
    assert combine([full, clip], [1.0, 0.1], method="mean-unweighted")[0] == pytest.approx(0.45)
    same = [[0.6, 0.3, 0.1]] * 3
    assert combine(same, [1.0] * 3, method="product")[0] == pytest.approx(0.6, abs=1e-6)
    assert combine([[0.6, 0.3, 0.1], [0.6, 0.1, 0.3]], [1, 1], method="product")[0] > 0.6
    with pytest.raises(ValueError, match="method='max'"):
        combine(same, [1.0] * 3, method="max")
