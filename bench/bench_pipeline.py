"""End to end, as a user runs it: genrectl beside the reference pipeline, at scale, and the
latency of small jobs.

    .venv/bin/python bench/bench_pipeline.py [--gtzan DIR] [--tracks 100] [--scale 1000]
        [--cache DIR] [--skip-scale]

Every figure is the wall time of real processes started the way a user starts them
(start-up, imports and model loading included), each with a fresh GENRECTL_HOME whose
`genrectl db upgrade` ran first (untimed: once per installation):

1. **Side by side** on the mixed library (``bench/library.py``: ``--tracks`` GTZAN tracks as
   MP3, AAC/M4A, Vorbis, FLAC and Opus at 44.1/48 kHz stereo): the reference pipeline
   (``bench/reference_pipeline.py``: librosa.load, mel, 3x224x224 tensors, torch.save per
   segment; featurizing only), a plain ``ffmpeg`` decode + resample to 22.05 kHz mono per
   file (the decoder floor), and ``genrectl ingest`` (decode, the promoted model's feature
   sets, shards, database, labels) with GENRECTL_WORKERS=1 and 2.
2. **Scale**: ``--scale`` 30 s files in those codecs, every file's bytes different
   (``scaled_library``), ingested and labelled with both cores; then ingested again
   unchanged; peak RSS of the largest process (the CLI or a pool worker).
3. **Long tracks**: featurizing (in this process, warm) a 60-minute track against a 30 s
   one of the same codec.
4. **Small jobs**: one new track added to the ingested library with no warm worker
   running (the first command in GENRECTL_WARM_SECONDS: it starts one) and with one
   running (median of 2), `predict` of one file with a warm worker (median of 3) and with
   none (GENRECTL_WARM_SECONDS=0), `--help`.

Every ingest starts a warm worker (``scheduler.warm``, detached); each section stops the
ones it started, reading their peak RSS first.

Without --gtzan, tracks are generated tunes (labels then mean nothing; speed still does).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from library import CODECS, mixed_library, scaled_library  # noqa: E402

from scheduler.warm import runtime_dir, stop_workers_under  # noqa: E402
from tests.audio_fixtures import song  # noqa: E402

BIN = Path(sys.executable).parent
GENRECTL = str(BIN / "genrectl")
# "Per core": the reference and one-worker genrectl are pinned to one CPU (the reference's
# librosa.load otherwise decodes M4A in an ffmpeg subprocess on the other core).
ONE_CORE = ["taskset", "-c", "0"] if shutil.which("taskset") else []


@dataclass
class Row:
    """One line of the result table: what, the measured figure, the target, met or not."""

    what: str
    measured: str
    target: str = ""
    met: bool | None = None


# --warm-seconds N: every genrectl run with GENRECTL_WARM_SECONDS=N (0: no warm worker, the
# pool processes of before it).
FORCED: dict[str, str] = {}


def _env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENRECTL_")}
    settings = {**settings, **FORCED}
    env.update({"GENRECTL_HOME": str(home), **{f"GENRECTL_{k}": v for k, v in settings.items()}})
    return env


def timed(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``command``, which must succeed."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command[:4])}... failed:\n{done.stderr.decode()[-2000:]}")
    return elapsed


def fresh_home(base: Path, name: str) -> Path:
    home = base / name
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run([GENRECTL, "db", "upgrade"], env=_env(home), check=True, capture_output=True)
    return home


def ingest(home: Path, folder: Path, *, pin: bool = False, **settings: str) -> float:
    command = [*(ONE_CORE if pin else []), GENRECTL, "ingest", str(folder)]
    return timed(command, _env(home, **settings))


def warm_workers(root: Path) -> dict[int, float]:
    """Pid -> peak RSS in MB of each running warm worker whose home is under ``root``."""
    import json

    found = {}
    for path in runtime_dir().glob("warm-*.json"):
        try:
            status = json.loads(path.read_text())
            if Path(status["home"]).is_relative_to(root):
                text = Path(f"/proc/{status['pid']}/status").read_text()
                peak_kb = next(int(ln.split()[1]) for ln in text.splitlines() if "VmHWM" in ln)
                found[int(status["pid"])] = peak_kb / 1024
        except (OSError, ValueError, KeyError, StopIteration):
            continue
    return found


def stop_warm(root: Path) -> float:
    """Stop the warm workers under ``root`` and wait for them; their largest peak RSS (MB)."""
    peaks = warm_workers(root)
    stop_workers_under(root)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in peaks):
        time.sleep(0.1)
    return max(peaks.values(), default=0.0)


def _folder(files: Sequence[Path], folder: Path) -> Path:
    """A library folder of links to ``files``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in files:
        (folder / path.name).symlink_to(path)
    return folder


def side_by_side(files: list[Path], scratch: Path) -> tuple[list[Row], Path]:
    """Reference, ffmpeg floor and genrectl on 1 and 2 workers; returns the rows and the
    home genrectl ingested the library into with one worker."""
    library = _folder(files, scratch / "library")
    n = len(files)
    script = str(ROOT / "bench" / "reference_pipeline.py")
    reference = timed([*ONE_CORE, sys.executable, script, str(scratch / "ref"), *map(str, files)])
    start = time.perf_counter()
    for path in files:
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path)]
        command += ["-ac", "1", "-ar", "22050", "-f", "f32le", "-y", "/dev/null"]
        subprocess.run(command, check=True)
    floor = time.perf_counter() - start
    home1 = fresh_home(scratch, "home-1")
    one = ingest(home1, library, pin=True, WORKERS="1")
    stop_warm(scratch)
    two = ingest(fresh_home(scratch, "home-2"), library, WORKERS="2")
    stop_warm(scratch)
    rows = [
        Row(f"reference pipeline, {n} files, featurize only (1 core)", f"{reference:.1f} s"),
        Row(
            f"ffmpeg decode + resample, {n} files (decoder floor, 1 process each)", f"{floor:.1f} s"
        ),
        Row(f"genrectl ingest, {n} files, featurize + label, 1 worker (1 core)", f"{one:.1f} s"),
        Row(f"genrectl ingest, {n} files, 2 workers", f"{two:.1f} s"),
        Row(
            "end to end: reference / genrectl (1 worker)",
            f"{reference / one:.2f}x",
            "≥ 1.5x (aim 2.5x)",
            reference / one >= 1.5,
        ),
        Row("2 workers / 1 worker", f"{one / two:.2f}x", "≥ 1.8x", one / two >= 1.8),
    ]
    return rows, home1


def scale(sources: list[Path], n: int, cache: Path, scratch: Path) -> list[Row]:
    files = scaled_library(sources, cache / f"scaled-{len(sources)}", n=n)
    library = _folder(files, scratch / "scaled")
    home = fresh_home(scratch, "home-scale")
    first = ingest(home, library)
    again = ingest(home, library)
    warm_mb = stop_warm(scratch)
    peak_mb = max(warm_mb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return [
        Row(
            f"{n} x 30 s files (5 codecs), ingest + label, 2 workers",
            f"{first:.1f} s",
            "< 180 s",
            first < 180,
        ),
        Row(f"the same {n} files again, unchanged", f"{again:.1f} s", "< 5 s", again < 5),
        Row("peak RSS of the largest process (CLI, worker or warm worker)", f"{peak_mb:.0f} MB"),
    ]


def long_track(source: Path, scratch: Path) -> list[Row]:
    """A 60-minute MP3 (the source looped) against a 30 s one, featurized warm in here."""
    from db.registry import starter_metadata
    from worker.features.compute import featurize_file
    from worker.features.sets import model_feature_sets

    meta = starter_metadata()
    assert meta is not None
    sets = model_feature_sets(meta["feature_params"])
    paths = {}
    for minutes in (0.5, 60):
        path = scratch / f"long-{minutes:g}.mp3"
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1"]
        command += ["-i", str(source), "-t", str(minutes * 60), "-ac", "2", "-ar", "44100"]
        subprocess.run([*command, "-b:a", "192k", str(path)], check=True)
        paths[minutes] = path
    cost = {}
    for minutes, path in paths.items():
        featurize_file(path, sets=sets, max_segments=20, min_seconds=3.0)  # warm
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            featurize_file(path, sets=sets, max_segments=20, min_seconds=3.0)
            runs.append(time.perf_counter() - start)
        cost[minutes] = min(runs)
    ratio = cost[60] / cost[0.5]
    return [
        Row("featurize a 30 s MP3 (warm, in process)", f"{cost[0.5]:.2f} s"),
        Row(
            "featurize a 60-minute MP3",
            f"{cost[60]:.2f} s ({ratio:.2f}x)",
            "≤ 2x the 30 s",
            ratio <= 2,
        ),
    ]


def small_jobs(home: Path, library: Path, extra: list[Path], scratch: Path) -> list[Row]:
    stop_warm(scratch)
    adds = []
    for path in extra[:3]:
        (library / path.name).symlink_to(path)
        adds.append(ingest(home, library))
    cold, warm = adds[0], statistics.median(adds[1:])
    predict = statistics.median(
        timed([GENRECTL, "predict", str(extra[0])], _env(home)) for _ in range(3)
    )
    stop_warm(scratch)
    predict_cold = timed([GENRECTL, "predict", str(extra[0])], _env(home, WARM_SECONDS="0"))
    helps = statistics.median(timed([GENRECTL, "--help"], _env(home)) for _ in range(5))
    return [
        Row(
            "one new track ingested and labelled (library of 100), warm worker running",
            f"{warm:.1f} s",
            "≤ 3 s",
            warm <= 3,
        ),
        Row("the same with no warm worker (the first command; it starts one)", f"{cold:.1f} s"),
        Row("predict one file, warm worker running", f"{predict:.1f} s", "≤ 2 s", predict <= 2),
        Row("predict one file, GENRECTL_WARM_SECONDS=0", f"{predict_cold:.1f} s"),
        Row("genrectl --help", f"{helps:.2f} s", "≤ 0.5 s", helps <= 0.5),
    ]


def table(rows: list[Row]) -> str:
    lines = ["| what | measured | target | met |", "|---|---|---|---|"]
    for row in rows:
        met = "" if row.met is None else ("met" if row.met else "missed")
        lines.append(f"| {row.what} | {row.measured} | {row.target} | {met} |")
    return "\n".join(lines)


def sources_from(args: argparse.Namespace, scratch: Path) -> list[Path]:
    if args.gtzan:
        return sorted(args.gtzan.glob("*/*.wav"))
    sources = []
    for i in range(100):
        sources.append(scratch / f"tune-{i:03d}.wav")
        sf.write(sources[-1], song(seconds=30, sample_rate=22050, seed=i), 22050)
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, help="GTZAN-layout folder of 30 s WAVs")
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--warm-seconds", help="GENRECTL_WARM_SECONDS for every genrectl run")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "genrectl-bench")
    args = parser.parse_args()
    if args.warm_seconds is not None:
        FORCED["WARM_SECONDS"] = args.warm_seconds
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        sources = sources_from(args, scratch)
        files = mixed_library(sources[: args.tracks], args.cache / f"mixed-{len(sources)}")
        extra = mixed_library(sources[-3:][::-1], args.cache / f"extra-{len(sources)}")
        print(f"{len(files)} files ({', '.join(c.name for c in CODECS)} in turn); 2 cores")
        rows, home = side_by_side(files, scratch)
        print(table(rows), flush=True)
        more = long_track(sources[0], scratch)
        more += small_jobs(home, scratch / "library", extra, scratch)
        if not args.skip_scale:
            more += scale(sources, args.scale, args.cache, scratch)
        stop_warm(scratch)
        print(table(more))


if __name__ == "__main__":
    main()
