"""Moods: which of the encoders' classes stand for each mood, and when a track has it.

Light on purpose (no numpy): the CLI validates ``--mood`` with it and the worker scores
with it (``worker.inference.moods``). A mood's score is a probability in 0..1: the mean
over a track's windows of the sigmoid of the encoder's logit for its class, the largest
where a mood has several classes (mn04's "Happy music" and msd_fcn's "happy" both stand for
happy). A track *has* a mood when its score reaches the mood's threshold (``THRESHOLDS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# mood -> encoder -> its classes (the encoders' own names, as `genrectl models classes`
# lists them). AudioSet's seven mood classes; msd_fcn's Last.fm mood tags.
MOOD_CLASSES: dict[str, dict[str, tuple[str, ...]]] = {
    "happy": {"mn04": ("Happy music",), "msd_fcn": ("happy",)},
    "sad": {"mn04": ("Sad music",), "msd_fcn": ("sad",)},
    "tender": {"mn04": ("Tender music",)},
    "exciting": {"mn04": ("Exciting music",)},
    "angry": {"mn04": ("Angry music",)},
    "scary": {"mn04": ("Scary music",)},
    "funny": {"mn04": ("Funny music",)},
    "mellow": {"msd_fcn": ("Mellow", "chill", "chillout", "easy listening")},
    "party": {"msd_fcn": ("party",)},
    "beautiful": {"msd_fcn": ("beautiful",)},
    "sexy": {"msd_fcn": ("sexy",)},
    "catchy": {"msd_fcn": ("catchy",)},
}
MOODS: tuple[str, ...] = tuple(MOOD_CLASSES)
# The score from which a track has the mood: the 85th percentile of the mood's scores on
# gtzan-mini's 100 tracks (bench/bench_moods.py), so that a mood names about the sixth of a
# varied library whose score stands out. The encoders' mood probabilities are small (a
# median of 0.000-0.014 on GTZAN: their training clips rarely carried mood labels), so an
# absolute 0.5 would name no track. A choice, not a measurement of truth: no mood ground
# truth exists for these tracks.
THRESHOLDS: dict[str, float] = {
    "happy": 0.019,
    "sad": 0.008,
    "tender": 0.009,
    "exciting": 0.041,
    "angry": 0.007,
    "scary": 0.002,
    "funny": 0.013,
    "mellow": 0.037,
    "party": 0.010,
    "beautiful": 0.022,
    "sexy": 0.009,
    "catchy": 0.007,
}
MAX_SHOWN = 3  # moods named per track (tags, tables): its strongest above threshold


def check_mood(name: str) -> str:
    """``name`` lower-cased and trimmed; ValueError naming the known moods otherwise."""
    mood = " ".join(name.split()).lower()
    if mood not in MOOD_CLASSES:
        raise ValueError(f"unknown mood {name!r}; known: {', '.join(MOODS)}")
    return mood


def track_mood_names(scores: Mapping[str, float], *, limit: int = MAX_SHOWN) -> list[str]:
    """The moods a track has (score at or above the threshold), strongest first (by score
    over threshold: the moods' scores differ in scale), at most
    ``limit``: what ``tracks list`` shows and ``tags write --field mood`` writes."""
    over = [(s / THRESHOLDS[m], m) for m, s in scores.items() if s >= THRESHOLDS.get(m, 2.0)]
    return [m for _, m in sorted(over, key=lambda pair: (-pair[0], pair[1]))[:limit]]


def mood_class_names(encoder: str) -> list[str]:
    """Every class of ``encoder`` some mood reads."""
    return [c for by in MOOD_CLASSES.values() for c in by.get(encoder, ())]


def parse_tempo(text: str) -> tuple[float, float]:
    """``"100-130"`` -> (100.0, 130.0); ``"120"`` -> (120.0, 120.0); ValueError otherwise."""
    parts = text.replace(" ", "").split("-")
    try:
        low, high = (float(parts[0]), float(parts[-1])) if 1 <= len(parts) <= 2 else (0, -1)
    except ValueError:
        low, high = 0.0, -1.0
    if not (0 < low <= high <= 400):
        raise ValueError(f"{text!r} must be a tempo range in BPM such as 100-130 (0..400]")
    return low, high


def describe_scores(scores: Mapping[str, float]) -> str:
    """``happy 0.031 (1.6x), party 0.012 (1.2x)``: the moods a track has, strongest first,
    with each score and how far above its threshold it is."""
    return ", ".join(
        f"{m} {scores[m]:.3f} ({scores[m] / THRESHOLDS[m]:.1f}x)"
        for m in track_mood_names(scores, limit=len(scores))
    )


def mood_sources(moods: Sequence[str]) -> dict[str, list[str]]:
    """encoder -> the classes ``moods`` read, for documentation and checks."""
    out: dict[str, list[str]] = {}
    for mood in moods:
        for encoder, classes in MOOD_CLASSES[mood].items():
            out.setdefault(encoder, []).extend(classes)
    return out
