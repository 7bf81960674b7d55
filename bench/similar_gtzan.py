"""`playlist create --like` on gtzan-mini, through the CLI: for each metal track as the
seed, how many of its first ten are metal or rock (GTZAN's genre, from the folder), with
and without `--max-per-artist 1`, and whether the cap holds.

GTZAN's WAVs carry no tags, so the files are first copied as FLAC (lossless: the same
audio) with the artist and title of folds.csv as tags ("(unknown)" left untagged), into
OUT, then ingested with the starter model into GENRECTL_HOME:

    GENRECTL_HOME=$(mktemp -d) python bench/similar_gtzan.py ../shared/data/gtzan-mini \\
        --folds ../shared/data/gtzan-clips/folds.csv --out /tmp/gtzan-mini-tagged
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
from collections import Counter
from pathlib import Path

import mutagen
import soundfile as sf
from click.testing import CliRunner

from cli.main import cli


def tagged_copies(source: Path, folds: Path, out: Path) -> int:
    """FLAC copies of ``source``'s WAVs with folds.csv's artist and title as tags."""
    with folds.open(newline="") as handle:
        rows = {r["path"]: r for r in csv.DictReader(handle) if r["folder"] == source.name}
    for relative, row in rows.items():
        target = (out / relative).with_suffix(".flac")
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        audio, rate = sf.read(source / relative, dtype="int16")
        sf.write(target, audio, rate, format="FLAC", subtype="PCM_16")
        tags = mutagen.File(target, easy=True)
        if row["artist"] != "(unknown)":
            tags["artist"] = row["artist"]
        if row["title"]:
            tags["title"] = row["title"]
        tags.save()
    return len(rows)


def genrectl(*args: str) -> object:
    result = CliRunner(env=dict(os.environ)).invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(f"{tagged_copies(args.source, args.folds, args.out)} tagged FLAC copies in {args.out}")
    ingested = genrectl("ingest", str(args.out), "--json")
    print(f"ingested: {ingested['featurized']} featurized")  # type: ignore[index]
    seeds = sorted((args.out / "metal").glob("*.flac"))
    for cap in ((), ("--max-per-artist", "1")):
        hits, worst = [], 0
        for i, seed in enumerate(seeds):
            name = f"like metal {i}{' capped' if cap else ''}"
            genrectl("playlist", "create", name, "--like", str(seed), "--limit", "10", *cap,
                     "--replace")  # fmt: skip
            shown = genrectl("playlist", "show", name, "--json")
            tracks = shown["tracks"]  # type: ignore[index]
            genres = [Path(t["path"]).parent.name for t in tracks]
            hits.append(sum(g in ("metal", "rock") for g in genres))
            artists = Counter(t["artist"].casefold() for t in tracks if t["artist"])
            worst = max(worst, max(artists.values(), default=0))
        label = " ".join(cap) or "no cap"
        print(
            f"{label}: metal+rock in the first ten, mean {statistics.mean(hits):.1f} "
            f"(per seed {' '.join(map(str, hits))}); most tracks of one artist: {worst}"
        )


if __name__ == "__main__":
    main()
