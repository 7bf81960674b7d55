"""Album consistency and per-class thresholds, out of fold on a fold file (GTZAN).

    GENRECTL_HOME=$(mktemp -d) .venv/bin/python bench/bench_albums.py \\
        ../shared/data/gtzan-mini ../shared/data/gtzan-clips \\
        --folds ../shared/data/gtzan-clips/folds.csv [--max-album 12] [--json out.json]

Every probability comes from the training code's own out-of-fold run
(``worker.training.headjob.outer_oof``: the encoder-head recipe, the head fitted on four
folds, the fifth predicted; the MFCC baseline on the same folds), reading the training cache
``genrectl train ... --folds`` fills (GENRECTL_DATA_DIR/training-cache): nothing is
re-implemented here but the album grouping.

1. **Per-class thresholds**: per source folder, the share of tracks kept (not "unclear
   genre") and the accuracy of the labels kept, at global thresholds and at each fold's
   per-class thresholds (calibrated on that fold's inner out-of-fold answers, at several
   precision targets).
2. **Albums**: GTZAN has no album tags, so an album is a run of consecutive ids of one
   artist within a genre and a source folder (clips and full tracks apart), cut into near
   equal parts of at most ``--max-album`` tracks. Folds are artist-grouped, so an album
   never crosses folds. Track accuracy (top genre) at track scope and at album scope
   (``db.albums.decide_album``, the product's rule), by combination method and margin.
3. **Compilations**: albums of five tracks of five genres of one source, and **bonus
   tracks**: one track of another genre added to each real album of four or more: at album
   scope the disagreement rule should keep them apart.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.albums import METHODS, UNKNOWN, Evidence, decide_album
from genrectl.settings import Settings
from worker.training.data import FeatureStore
from worker.training.datasets import normalise_track_key
from worker.training.folds import read_fold_file
from worker.training.headjob import design, fit_tracks, fold_plan, head_data, outer_oof
from worker.training.heads import softmax
from worker.training.job import TrainSpec, load_data
from worker.training.runs import TrainReporter
from worker.training.thresholds import coverage_scores, precision_thresholds

ARCH = "encoder-head"
GLOBALS = (0.35, 0.5, 0.6, 0.7)
TARGETS = (0.7, 0.8, 0.9)
MARGINS = (0.3, 0.5, 0.7, math.inf)
_ID = re.compile(r"\.(\d+)$")


def gtzan_albums(fold_file: Path, index: dict[str, int], max_album: int) -> list[list[int]]:
    """Runs of consecutive GTZAN ids of one artist (per genre and source folder), cut into
    near equal parts of at most ``max_album``; tracks of unknown artist stay alone."""
    rows = []
    with fold_file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = normalise_track_key(row["path"])
            found = _ID.search(key)
            if key in index and found:
                rows.append((row["folder"], row["genre"], int(found.group(1)), row["artist"], key))
    rows.sort()
    runs: list[list[tuple[Any, ...]]] = []
    for row in rows:
        last = runs[-1][-1] if runs else None
        same = (
            last is not None
            and last[:2] == row[:2]
            and last[2] + 1 == row[2]
            and last[3] == row[3]
            and row[3] not in ("", "(unknown)")
        )
        if same:
            runs[-1].append(row)
        else:
            runs.append([row])
    albums = []
    for run in runs:
        parts = math.ceil(len(run) / max_album)
        for chunk in np.array_split(np.arange(len(run)), parts):
            albums.append([index[run[i][4]] for i in chunk])
    return albums


def compilations(
    tracks: list[int], genre_of: list[int], source_of: list[str], *, size: int, seed: int
) -> list[list[int]]:
    """Albums of ``size`` tracks of ``size`` different genres, each of one source."""
    rng = random.Random(seed)
    out = []
    for source in sorted(set(source_of)):
        pool: dict[int, list[int]] = defaultdict(list)
        for t in tracks:
            if source_of[t] == source:
                pool[genre_of[t]].append(t)
        for members in pool.values():
            rng.shuffle(members)
        while sum(1 for m in pool.values() if m) >= size:
            genres = sorted((g for g in pool if pool[g]), key=lambda g: -len(pool[g]))[:size]
            out.append([pool[g].pop() for g in genres])
    return out


def with_bonus(
    albums: list[list[int]], genre_of: list[int], source_of: list[str], *, seed: int
) -> list[tuple[list[int], int]]:
    """Each album of 4+ tracks with one track of another genre and the same source added
    (taken from another album): (album, the bonus track)."""
    rng = random.Random(seed)
    out = []
    for album in albums:
        if len(album) < 4:
            continue
        candidates = [
            a[0]
            for a in albums
            if genre_of[a[0]] != genre_of[album[0]] and source_of[a[0]] == source_of[album[0]]
        ]
        bonus = rng.choice(candidates)
        out.append(([*album, bonus], bonus))
    return out


def album_scope(
    albums: list[list[int]],
    probs: dict[int, np.ndarray],
    thresholds: dict[int, np.ndarray] | float,
    classes: list[str],
    seconds: list[float],
    *,
    method: str,
    margin: float,
) -> tuple[dict[int, int], dict[int, bool]]:
    """Per track of ``albums``: its class at album scope (its own top class where the
    scoped label is unknown) and whether it is unclear at that scope."""
    predicted, unclear = {}, {}
    for album in albums:
        limits = {
            t: np.full(len(classes), thresholds) if isinstance(thresholds, float) else thresholds[t]
            for t in album
        }
        evidence = []
        for t in album:
            top = int(np.argmax(probs[t]))
            sure = probs[t][top] >= limits[t][top]
            evidence.append(
                Evidence(
                    t,
                    probs[t].tolist(),
                    classes[top] if sure else UNKNOWN,
                    float(probs[t][top]),
                    seconds[t],
                )
            )
        shared = np.mean([limits[t] for t in album], axis=0).tolist()
        decision = decide_album(evidence, classes, shared, method=method, margin=margin)
        for t in album:
            genre = decision.tracks[t][0]
            unclear[t] = genre == UNKNOWN
            predicted[t] = int(np.argmax(probs[t])) if genre == UNKNOWN else classes.index(genre)
    return predicted, unclear


def accuracy(
    tracks: list[int], predicted: dict[int, int], truth: np.ndarray, source_of: list[str]
) -> dict[str, float]:
    out = {}
    for source in sorted({source_of[t] for t in tracks}):
        mine = [t for t in tracks if source_of[t] == source]
        out[source] = round(float(np.mean([predicted[t] == truth[t] for t in mine])), 4)
    out["all"] = round(float(np.mean([predicted[t] == truth[t] for t in tracks])), 4)
    return out


def duration(path: Path) -> float:
    info = sf.info(str(path))
    return float(info.frames / info.samplerate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--max-album", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--dump", type=Path, help="Also save the out-of-fold answers (.npz).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    settings = Settings.from_env()
    reporter = TrainReporter()
    spec = TrainSpec(
        name="bench-albums", data=tuple(map(str, args.data)), fold_file=str(args.folds)
    )
    stores = [
        FeatureStore(settings, s, progress=reporter.featurizing, warn=reporter.warn)
        for s in design(ARCH).sets
    ]
    data = load_data(settings, spec, stores[0])
    groups = read_fold_file(args.folds).group_of
    hd = head_data(settings, ARCH, data, stores, groups)
    plan = fold_plan(None, str(args.folds), data, args.seed)
    assert plan is not None
    oof = outer_oof(settings, ARCH, hd, plan, seed=args.seed, reporter=reporter)
    classes = list(data.classes)
    truth = hd.table.labels
    source_of = [s.replace("gtzan-", "") for s in hd.table.sources]
    tested = sorted(oof.scores["model"])
    model = {t: softmax(oof.scores["model"][t][None, :])[0] for t in tested}
    baseline = {t: np.asarray(oof.scores["baseline"][t]) for t in tested}
    seconds = [duration(t.path) for t in data.tracks]
    report: dict[str, Any] = {"classes": classes, "tracks": len(tested)}
    if args.dump:  # the out-of-fold answers, for looking at other rules without a rerun
        inner = {
            f"inner{i}_{k}": v
            for i, (_, f) in enumerate(oof.folds)
            for k, v in zip(("p", "y"), f.inner_oof or (), strict=False)
        }
        np.savez(
            args.dump,
            tested=np.asarray(tested),
            model=np.stack([model[t] for t in tested]),
            baseline=np.stack([baseline[t] for t in tested]),
            truth=truth[tested],
            sources=np.asarray([source_of[t] for t in tested]),
            fold=np.asarray([plan.folds_of[t] if plan.folds_of else 0 for t in tested]),
            test_of=np.concatenate([np.full(len(t), i) for i, (t, _) in enumerate(oof.folds)]),
            test_tracks=np.concatenate([t for t, _ in oof.folds]),
            **inner,
        )

    # 1. per-class thresholds
    probs = np.stack([model[t] for t in tested])
    sources = [source_of[t] for t in tested]
    rows = {f"global {g}": coverage_scores(truth[tested], probs, sources, g) for g in GLOBALS}
    product = np.stack([oof.thresholds[t] for t in tested])  # each fold's, the F1 rule
    rows["per-class, F1 (the product's)"] = coverage_scores(truth[tested], probs, sources, product)
    for target in TARGETS:
        limits: dict[int, np.ndarray] = {}
        for test, fitted in oof.folds:
            assert fitted.inner_oof is not None
            found = precision_thresholds(*fitted.inner_oof, target=target)
            limits.update((int(t), found) for t in test)
        per_track = np.stack([limits[t] for t in tested])
        rows[f"per-class, precision {target}"] = coverage_scores(
            truth[tested], probs, sources, per_track
        )
    base = np.stack([baseline[t] for t in tested])
    rows["baseline, global 0.35"] = coverage_scores(truth[tested], base, sources, 0.35)
    sweep = {
        g: coverage_scores(truth[tested], probs, sources, g)
        for g in np.round(np.arange(0.2, 0.91, 0.05), 2)
    }
    for by_source in rows.values():
        for source, r in by_source.items():
            r["global_at_same_coverage"] = at_coverage(sweep, source, r["coverage"])
    report["thresholds"] = rows
    report["secondary_genres"] = {
        "per-class, F1": secondary_share(probs, product, sources),
        "global 0.35": secondary_share(probs, np.full_like(probs, 0.35), sources),
    }
    report["fold_thresholds"] = [
        {c: float(v) for c, v in zip(classes, fitted.thresholds, strict=True)}
        for _, fitted in oof.folds
        if fitted.thresholds is not None
    ]
    everything = np.arange(len(data.tracks))
    shipped = fit_tracks(ARCH, hd, everything, folds_of=plan.folds_of, seed=args.seed)
    assert shipped.thresholds is not None
    report["all_tracks_thresholds"] = {
        c: float(v) for c, v in zip(classes, shipped.thresholds, strict=True)
    }

    # 2. albums
    index = data.by_key()
    albums = [a for a in gtzan_albums(args.folds, index, args.max_album) if set(a) <= set(tested)]
    sizes = [len(a) for a in albums]
    report["albums"] = {
        "albums": len(albums),
        "of_2_or_more": sum(1 for s in sizes if s > 1),
        "tracks_in_those": sum(s for s in sizes if s > 1),
        "max_size": max(sizes),
        "crossing_folds": sum(1 for a in albums if len({plan.folds_of[t] for t in a}) > 1)
        if plan.folds_of
        else None,
    }
    own = {t: int(np.argmax(model[t])) for t in tested}
    base_own = {t: int(np.argmax(baseline[t])) for t in tested}
    members = [t for a in albums for t in a]
    table: dict[str, Any] = {
        "model, track scope": accuracy(members, own, truth, source_of),
        "baseline, track scope": accuracy(members, base_own, truth, source_of),
    }
    chosen = oof.thresholds
    for method in METHODS:
        found, _ = album_scope(albums, model, chosen, classes, seconds, method=method, margin=0.5)
        table[f"model, album scope ({method}, margin 0.5)"] = accuracy(
            members, found, truth, source_of
        )
    found, _ = album_scope(albums, baseline, 0.35, classes, seconds, method="mean", margin=0.5)
    table["baseline, album scope (mean, margin 0.5)"] = accuracy(members, found, truth, source_of)
    found, _ = album_scope(albums, model, 0.35, classes, seconds, method="mean", margin=0.5)
    table["model, album scope (mean, margin 0.5), global 0.35"] = accuracy(
        members, found, truth, source_of
    )
    report["album_accuracy"] = table

    # 3. margins: real albums, compilations, bonus tracks
    comps = compilations(tested, list(truth), source_of, size=5, seed=args.seed)
    bonus = with_bonus([a for a in albums if len(a) > 1], list(truth), source_of, seed=args.seed)
    comp_members = [t for a in comps for t in a]
    bonus_tracks = [b for _, b in bonus]
    sweep = {}
    for margin in MARGINS:
        name = "never (album always)" if margin == math.inf else f"{margin}"
        real, unclear_real = album_scope(
            albums, model, chosen, classes, seconds, method="mean", margin=margin
        )
        comp, _ = album_scope(comps, model, chosen, classes, seconds, method="mean", margin=margin)
        hosts = [a for a, _ in bonus]
        with_b, _ = album_scope(
            hosts, model, chosen, classes, seconds, method="mean", margin=margin
        )
        sweep[name] = {
            "albums": accuracy(members, real, truth, source_of)["all"],
            "albums_unclear": round(float(np.mean([unclear_real[t] for t in members])), 4),
            "compilations": accuracy(comp_members, comp, truth, source_of)["all"],
            "bonus_tracks": accuracy(bonus_tracks, with_b, truth, source_of)["all"],
            "bonus_albums_others": accuracy(
                [t for a, b in bonus for t in a if t != b], with_b, truth, source_of
            )["all"],
        }
    report["margins"] = {
        "compilations": len(comps),
        "bonus_albums": len(bonus),
        "track_scope": {
            "albums": accuracy(members, own, truth, source_of)["all"],
            "compilations": accuracy(comp_members, own, truth, source_of)["all"],
            "bonus_tracks": accuracy(bonus_tracks, own, truth, source_of)["all"],
        },
        "by_margin": sweep,
    }
    unclear_track = {
        t: bool(probs[i].max() < chosen[t][int(probs[i].argmax())]) for i, t in enumerate(tested)
    }
    _, unclear_album = album_scope(
        albums, model, chosen, classes, seconds, method="mean", margin=0.5
    )
    report["album_coverage"] = {
        "track scope": round(1 - float(np.mean([unclear_track[t] for t in members])), 4),
        "album scope": round(1 - float(np.mean([unclear_album[t] for t in members])), 4),
    }
    print_thresholds(rows)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({k: v for k, v in report.items() if k != "thresholds"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def at_coverage(sweep: dict[float, Any], source: str, coverage: float) -> float:
    """The accuracy of the labels kept by one global threshold at ``coverage`` (linear
    between the sweep's points)."""
    points = sorted(
        (r[source]["coverage"], r[source]["accuracy_kept"] or 0.0) for r in sweep.values()
    )
    xs, ys = zip(*points, strict=True)
    return round(float(np.interp(coverage, xs, ys)), 4)


def secondary_share(probs: np.ndarray, limits: np.ndarray, sources: list[str]) -> dict[str, float]:
    """Per source, the share of tracks with a second genre: a class other than the top one
    at or above its threshold (what ``tags write --max-genres 2`` would add)."""
    others = probs.copy()
    others[np.arange(len(probs)), probs.argmax(axis=1)] = -1
    has = (others >= limits).any(axis=1)
    where = np.asarray(sources)
    return {s: round(float(has[where == s].mean()), 4) for s in sorted(set(sources))}


def print_thresholds(rows: dict[str, Any]) -> None:
    print(
        f"{'thresholds':30} {'source':6} {'coverage':>8} {'acc kept':>8} {'global, same cov':>16}"
    )
    for name, by_source in rows.items():
        for source, r in by_source.items():
            kept = "-" if r["accuracy_kept"] is None else f"{r['accuracy_kept']:.1%}"
            print(
                f"{name:30} {source[-6:]:6} {r['coverage']:8.1%} {kept:>8} "
                f"{r['global_at_same_coverage']:16.1%}"
            )


if __name__ == "__main__":
    main()
