"""How well "is it music?" separates music from everything else, with the product's own gate.

    .venv/bin/python bench/bench_music_gate.py [--gtzan DIR] [--clips DIR] [--tracks N]

The gate is ``worker.inference.describe``'s: a track is not music when its level (the power
mean of its windows' ``rms_db``) is below -60 dBFS, or when the summed probability of
AudioSet's music-genre classes ("Pop music" ... "Independent music"), averaged over its mn04
windows, is below MIN_GENRE_MASS. Every input goes through the product's path: a WAV file →
``featurize_file`` with mn04's feature set → sigmoid of the stored logits averaged over the
windows → ``describe``. On one torch thread:

- about 27 generated signals of 10 s (22050 Hz, 16-bit WAV): espeak-ng speech in 7 voices
  (skipped with a note when espeak-ng is not on PATH), quiet speech and speech over pink
  noise, white, pink and brown noise, tones, mains hum, a log sweep, DTMF, clicks, applause,
  very quiet noise and digital silence (which the decoder refuses as silent), and the
  synthesized tune of ``tests.audio_fixtures.song``, which must pass as music;
- every WAV under --gtzan (GTZAN's 30 s tracks) and --clips (2-3 s GTZAN excerpts), reported
  separately, when those folders exist.

Prints one row per generated signal; for each GTZAN folder its count, how many pass and its
lowest genre mass; the margin in logit between the lowest music and the highest non-music
signal (full tracks, then with clips); and P(Music)'s range on both groups, which shows why
P(Music) alone would not do.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrectl.errors import DecodeError, UnusableAudioError
from tests.audio_fixtures import clicks, song
from worker.features.compute import featurize_file
from worker.features.encoder import LEVEL, mn04_features
from worker.inference.describe import MIN_GENRE_MASS, SILENCE_DB, describe, track_level
from worker.models.encoders import class_names

MN04 = mn04_features()
NAMES = class_names("mn04")
SR = 22050
SECONDS = 10.0
HERE = Path(__file__).resolve().parents[1]

VOICES = ("en", "en-us", "en+f3", "en+m3", "de", "fr", "es")
TEXTS = {
    "en": "The quarterly report is due on Friday, so please send your figures to the finance "
    "team by Wednesday afternoon. If you have any questions about the new format, call me "
    "or leave a message, and I will get back to you as soon as I can.",
    "de": "Der Zug nach München fährt heute mit zwanzig Minuten Verspätung ab. Bitte beachten "
    "Sie die Durchsagen am Bahnsteig und halten Sie Ihre Fahrkarten bereit. Wir bitten um "
    "Ihr Verständnis und wünschen Ihnen eine angenehme Reise.",
    "fr": "Bonjour à tous, et bienvenue dans cette émission consacrée à l'histoire des sciences. "
    "Aujourd'hui, nous allons parler des premières horloges mécaniques et de la manière dont "
    "elles ont changé la vie quotidienne des villes européennes.",
    "es": "Buenos días. Les recordamos que la biblioteca municipal cerrará a las ocho de la "
    "tarde durante todo el mes de agosto. Para renovar sus préstamos, pueden llamar por "
    "teléfono o visitar nuestra página web en cualquier momento.",
}


@dataclass(frozen=True)
class Verdict:
    """The gate's view of one file; ``refused``: the decoder's reason when it refused it."""

    name: str
    genre_mass: float = math.nan
    level_db: float = math.nan
    music: float = math.nan
    strongest: tuple[str, float] = ("", math.nan)
    is_music: bool = False
    reason: str = ""
    refused: str = ""

    @property
    def logit(self) -> float:
        p = min(max(self.genre_mass, 1e-7), 1 - 1e-7)
        return math.log(p / (1 - p))

    @property
    def verdict(self) -> str:
        if self.refused:
            return f"refused as silent ({self.refused})"
        return "music" if self.is_music else self.reason


def judge(path: Path, name: str) -> Verdict:
    """``path`` through featurize_file and describe, as genrectl sees it."""
    try:
        featurized = featurize_file(path, sets=[MN04], max_segments=20, min_seconds=1.0)
    except UnusableAudioError as error:
        return Verdict(name, refused=str(error).split(": ", 1)[-1])
    except DecodeError as error:
        return Verdict(name, refused=f"decode error: {error}")
    rows = featurized.rows[MN04.version].arrays
    probs = (1 / (1 + np.exp(-rows["logits"].astype(np.float64)))).mean(axis=0)
    view = describe(probs, NAMES, level_db=track_level(rows[LEVEL]))
    return Verdict(
        name,
        genre_mass=view.genre_mass,
        level_db=view.level_db,
        music=view.music,
        strongest=view.strongest,
        is_music=view.is_music,
        reason=view.reason,
    )


# Generated signals, float64 mono at SR, SECONDS long.


def at_rms(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (10 ** (dbfs / 20) / max(1e-12, float(np.sqrt(np.mean(np.square(x))))))


def at_peak(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return x * (peak / max(1e-12, float(np.abs(x).max())))


def coloured(exponent: float, seed: int, n: int = round(SR * SECONDS)) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spectrum[1:] /= f[1:] ** (exponent / 2)
    spectrum[0] = 0
    return at_rms(np.fft.irfft(spectrum, n), 0.0)


def t_axis() -> np.ndarray:
    return np.arange(round(SR * SECONDS)) / SR


def fit(x: np.ndarray) -> np.ndarray:
    """``x`` cut or tiled to SECONDS."""
    n = round(SR * SECONDS)
    return np.tile(x, -(-n // len(x)))[:n] if len(x) else np.zeros(n)


def speech(voice: str, scratch: Path) -> np.ndarray:
    """espeak-ng reading a paragraph in ``voice``, at SR, peak 0.5."""
    out = scratch / f"espeak-{voice}.wav"
    text = TEXTS.get(voice.split("+")[0].split("-")[0], TEXTS["en"])
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    audio, rate = sf.read(out, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SR:
        import torchaudio.functional as F

        audio = F.resample(torch.from_numpy(audio), rate, SR).numpy()
    return at_peak(fit(audio))


def dtmf() -> np.ndarray:
    rows, cols = (697, 770, 852, 941), (1209, 1336, 1477)
    keys = {str(d): (rows[(d - 1) // 3], cols[(d - 1) % 3]) for d in range(1, 10)}
    keys["0"] = (941, 1336)
    t = np.arange(round(0.12 * SR)) / SR
    gap = np.zeros(round(0.08 * SR))
    parts = []
    for digit in "0155523491" * 5:
        lo, hi = keys[digit]
        parts += [0.25 * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t)), gap]
    return fit(np.concatenate(parts))


def applause(claps_per_s: float, seed: int) -> np.ndarray:
    """Claps: short decaying bursts of bright noise at random times and levels."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round(SR * SECONDS))
    clap_t = np.arange(round(0.03 * SR)) / SR
    for _ in range(round(claps_per_s * SECONDS)):
        burst = np.diff(rng.standard_normal(len(clap_t) + 1)) * np.exp(-clap_t / 0.006)
        i = rng.integers(0, len(out) - len(burst))
        out[i : i + len(burst)] += rng.uniform(0.2, 1.0) * burst
    return at_peak(out, 0.8)


def random_clicks(per_s: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(round(SR * SECONDS))
    out[rng.integers(0, len(out), round(per_s * SECONDS))] = 0.8
    return out


def signals(scratch: Path) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(name, audio) of each non-music signal, and notes on what was skipped."""
    t, notes, out = t_axis(), [], []
    if shutil.which("espeak-ng"):
        for voice in VOICES:
            out.append((f"speech, espeak-ng {voice}", speech(voice, scratch)))
        en = speech("en", scratch)
        out.append(("speech (en) at -40 dBFS RMS", at_rms(en, -40)))
        noisy = en + at_rms(coloured(1, seed=7), 20 * math.log10(np.sqrt(np.mean(en**2))) - 10)
        out.append(("speech (en) over pink noise, 10 dB SNR", at_peak(noisy, 0.7)))
    else:
        notes.append("espeak-ng is not on PATH: the 9 speech signals were skipped")
    out += [
        ("white noise, -20 dBFS RMS", at_rms(coloured(0, seed=1), -20)),
        ("white noise, -6 dBFS RMS", np.clip(at_rms(coloured(0, seed=2), -6), -1, 1)),
        ("pink noise, -20 dBFS RMS", at_rms(coloured(1, seed=3), -20)),
        ("brown noise, -20 dBFS RMS", at_rms(coloured(2, seed=4), -20)),
        ("tone 440 Hz", 0.5 * np.sin(2 * np.pi * 440 * t)),
        ("tone 1 kHz", 0.5 * np.sin(2 * np.pi * 1000 * t)),
        (
            "hum 50 Hz + harmonics",
            at_peak(sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 4, 5))),
        ),
        (
            "log sweep 20 Hz-10 kHz",
            0.5
            * np.sin(
                2 * np.pi * 20 * SECONDS / math.log(500) * (np.exp(t / SECONDS * math.log(500)) - 1)
            ),
        ),
        ("DTMF digits", dtmf()),
        ("clicks, 1 per s", clicks(seconds=SECONDS, sample_rate=SR, every_s=1.0)[:, 0]),
        ("clicks, 4 per s", clicks(seconds=SECONDS, sample_rate=SR, every_s=0.25)[:, 0]),
        ("clicks, random, ~3 per s", random_clicks(3.0, seed=5)),
        ("applause, dense (~60 claps/s)", applause(60.0, seed=6)),
        ("applause, sparse (~4 claps/s)", applause(4.0, seed=8)),
        ("white noise, -50 dBFS RMS", at_rms(coloured(0, seed=9), -50)),
        ("white noise, -70 dBFS RMS", at_rms(coloured(0, seed=10), -70)),
        ("digital silence", np.zeros_like(t)),
    ]
    return out, notes


def write(scratch: Path, index: int, audio: np.ndarray) -> Path:
    path = scratch / f"signal-{index:02d}.wav"
    sf.write(path, np.clip(audio, -1, 1).astype(np.float32), SR, subtype="PCM_16")
    return path


def folder(root: Path | None, limit: int | None) -> list[Path]:
    if root is None or not root.is_dir():
        return []
    return sorted(root.rglob("*.wav"))[:limit]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, default=HERE.parent / "shared/data/gtzan-mini")
    parser.add_argument("--clips", type=Path, default=HERE.parent / "shared/data/gtzan-clips")
    parser.add_argument("--tracks", type=int, help="at most N files from each GTZAN folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-music-gate-") as tmp:
        scratch = Path(tmp)
        generated, notes = signals(scratch)
        others = [judge(write(scratch, i, a), name) for i, (name, a) in enumerate(generated)]
        tune = judge(write(scratch, 99, song(seconds=SECONDS, sample_rate=SR)[:, 0]), "tune")
    groups = {}
    for label, root in (
        ("GTZAN full tracks (30 s)", args.gtzan),
        ("GTZAN clips (2-3 s)", args.clips),
    ):
        paths = folder(root, args.tracks)
        if paths:
            groups[label] = [judge(p, str(p.relative_to(root))) for p in paths]
        else:
            notes.append(f"{label}: no WAVs under {root}, skipped")

    print(
        f"torch {torch.__version__}, 1 thread; MIN_GENRE_MASS {MIN_GENRE_MASS} "
        f"(logit {logit(MIN_GENRE_MASS):+.2f}), silence below {SILENCE_DB:g} dBFS; "
        f"{SECONDS:g} s signals at {SR} Hz"
    )
    for note in notes:
        print(f"\nNote: {note}")
    print(
        "\n| signal | genre mass | logit | level dBFS | P(Music) | strongest non-genre class "
        "| verdict |\n|---|---|---|---|---|---|---|"
    )
    for v in [*others, tune]:
        name = "synthesized tune (tests.audio_fixtures.song), must pass" if v is tune else v.name
        if v.refused:
            print(f"| {name} | - | - | - | - | - | {v.verdict} |")
            continue
        cls, p = v.strongest
        print(
            f"| {name} | {v.genre_mass:.4f} | {v.logit:+.2f} | {v.level_db:.1f} | "
            f"{v.music:.3f} | {cls} {p:.2f} | {v.verdict} |"
        )

    # Non-music signals that the genre mass must decide: decoded, and above the level gate.
    decided = [v for v in others if not v.refused and v.level_db >= SILENCE_DB]
    wrong = [v for v in others if v.is_music]
    print(
        "\n| GTZAN | files | pass as music | lowest genre mass (logit) | its file "
        "| P(Music) min-max |\n|---|---|---|---|---|---|"
    )
    for label, found in groups.items():
        scored = [v for v in found if not v.refused]
        low = min(scored, key=lambda v: v.genre_mass)
        passing = sum(v.is_music for v in found)
        print(
            f"| {label} | {len(found)} | {passing} ({100 * passing / len(found):.1f} %) | "
            f"{low.genre_mass:.4f} ({low.logit:+.2f}) | {low.name} | "
            f"{min(v.music for v in scored):.3f}-{max(v.music for v in scored):.3f} |"
        )
    failing = [(label, v) for label, found in groups.items() for v in found if not v.is_music]
    if failing:
        print("\n| GTZAN file called not music | set | genre mass (logit) | verdict |")
        print("|---|---|---|---|")
        for label, v in sorted(failing, key=lambda lv: lv[1].genre_mass):
            print(f"| {v.name} | {label} | {v.genre_mass:.4f} ({v.logit:+.2f}) | {v.verdict} |")

    if decided:
        top = max(decided, key=lambda v: v.genre_mass)
        threshold = logit(MIN_GENRE_MASS)
        print(
            "\n| margin in genre-mass logit | lowest music | highest non-music signal | "
            "margin | non-music below / music above the threshold |\n|---|---|---|---|---|"
        )
        pools = []
        if groups:
            full = next(iter(groups.values()))
            pools.append(("full tracks", full))
            if len(groups) > 1:
                pools.append(("full tracks + clips", [v for g in groups.values() for v in g]))
        pools.append(("the tune", [tune]))
        for label, pool in pools:
            scored = [v for v in pool if not v.refused]
            low = min(scored, key=lambda v: v.genre_mass)
            print(
                f"| {label} | {low.name} {low.logit:+.2f} | {top.name} {top.logit:+.2f} | "
                f"{low.logit - top.logit:+.2f} | {threshold - top.logit:+.2f} / "
                f"{low.logit - threshold:+.2f} |"
            )

        print("\n| P(Music) | min | max | the extreme item |\n|---|---|---|---|")
        loud = max(decided, key=lambda v: v.music)
        print(
            f"| non-music signals above the level gate ({len(decided)}) | "
            f"{min(v.music for v in decided):.3f} | "
            f"{loud.music:.3f} | max: {loud.name} |"
        )
        for label, found in groups.items():
            scored = [v for v in found if not v.refused]
            quiet = min(scored, key=lambda v: v.music)
            print(
                f"| {label}, {len(scored)} files | {quiet.music:.3f} | "
                f"{max(v.music for v in scored):.3f} | min: {quiet.name} |"
            )
    print(
        f"\n{len(others)} non-music signals: {len(wrong)} pass as music"
        + (f" ({', '.join(v.name for v in wrong)})" if wrong else "")
        + f"; the tune {'passes' if tune.is_music else 'FAILS'}"
        + f"; {time.perf_counter() - began:.0f} s in all"
    )


if __name__ == "__main__":
    main()
